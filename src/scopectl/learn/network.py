"""The network of Rivenson et al. 2018 ("Deep learning enhanced mobile-phone microscopy").

Architecture (Methods, "Deep neural network architecture and implementation")::

    input RGB (3, S, T), values in [0, 1]
    conv 3×3, 3 → 32, ReLU
    5 residual blocks, k = 1..5:   X_k = pad(X_{k-1}) + ReLU(conv_k2(ReLU(conv_k1(X_{k-1}))))
        widths A_k = A_{k-1} + floor(α·k/K + 0.5), α = 10, K = 5, A_0 = 32  →  32, 34, 38, 44, 52, 62
        conv_k1: A_{k-1} → A_k, conv_k2: A_k → A_k; pad() appends zero-valued feature maps
    conv 3×3, 62 → 3·p², ReLU              (75 channels for the paper's ratio 5/2)
    pixel shuffle by p                      (3·p² channels at S×T → 3 channels at pS×pT)
    conv 3×3 stride q, 3 → 3               (linear; output ⌈S·p/q⌉ × ⌈T·p/q⌉)

The paper gives the channel sequence ``… 62 → 75 → 3 → 3`` and the output size ``⌈S·L⌉`` with L = 2.5 but
not the operators of the last two layers.  The reading implemented here — a pixel shuffle by 5 (75 = 3·5²)
followed by a stride-2 convolution — is the only common pair of operators that fits both the channel
sequence and the output size; it also generalises to any ratio p/q (2 = 2/1, 3 = 3/1, 1 = 1/1).
All convolutions are 3×3 with zero padding 1; weights start from a normal distribution with σ 0.05
truncated at ±2σ, biases at 0 (as in the paper).  The network has 229,197 parameters at ratio 5/2.

Centring (the paper does not state its intensity normalisation): the layers see ``x − 0.5`` and ``0.5`` is
added to their output, so a freshly initialised network (output ≈ 0) starts at mid-grey instead of black.
This fixed affine pre/post-processing has no parameters and does not change the architecture; it removes
the first phase of training in which the network only learns the mean intensity (measured:
``docs/performance.md``).

Global residual (``residual=True``, the default recipe's network): the output is the bicubic ×p/q
enlargement of the input plus the network's correction, ``y = bicubic(x) + tail(shuffle(…))``, with no
centring.  The expansion layer starts from ICNR (Aitken et al. 2017: every group of p² sub-pixel
channels starts with the same kernel, so the shuffled output has no checkerboard) and the last layer
from weights 10× smaller than the paper's, so an untrained network is bicubic interpolation plus a small
smooth correction.  Same layers and parameter count as the paper's network; only the output is added to.

Geometry: output pixel ``j`` is centred at pixel-shuffle position ``q·j``, i.e. at input coordinate
``(q·j + 0.5)/p − 0.5`` (0.4·j − 0.4 for 5/2).  Input tiles must therefore start at multiples of ``q``
for tiled outputs to line up (see :mod:`scopectl.learn.enhance`).
"""

from __future__ import annotations

import math
from fractions import Fraction

import torch
from torch import nn
from torch.nn import functional as F  # noqa: N812

__all__ = [
    "CENTRE",
    "INIT_STD",
    "EnhanceNet",
    "bicubic_up",
    "block_widths",
    "build_network",
    "icnr_",
    "parse_ratio",
    "receptive_field_radius",
]

#: Standard deviation of the truncated-normal weight initialisation (paper: 0.05).
INIT_STD = 0.05
#: Fixed centring: the layers see ``x − 0.5`` and their output is shifted by ``+0.5`` (no parameters).
CENTRE = 0.5
#: Largest supported numerator and denominator of the upsampling ratio.
MAX_RATIO_TERM = 8


def block_widths(*, a0: int = 32, alpha: float = 10.0, blocks: int = 5) -> list[int]:
    """Feature-map counts A_0..A_K of the pyramidal residual blocks (paper's equation 3).

    Returns ``[32, 34, 38, 44, 52, 62]`` for the paper's values.
    """
    widths = [a0]
    for k in range(1, blocks + 1):
        widths.append(widths[-1] + math.floor(alpha * k / blocks + 0.5))
    return widths


def parse_ratio(ratio: str | tuple[int, int] | float | Fraction) -> tuple[int, int]:
    """Turn ``"5/2"``, ``"2.5"``, ``(5, 2)`` or ``2.5`` into a reduced fraction ``(p, q)``.

    Raises
    ------
    ValueError
        If the ratio is not positive, smaller than 1, or has a term above 8 after reduction.
    """
    if isinstance(ratio, tuple):
        if len(ratio) != 2 or not all(isinstance(v, int) for v in ratio):
            raise ValueError(f"ratio {ratio!r}: expected two integers (p, q)")
        frac = Fraction(ratio[0], ratio[1]) if ratio[1] != 0 else None
    else:
        try:
            frac = Fraction(str(ratio).strip()) if not isinstance(ratio, Fraction) else ratio
        except (ValueError, ZeroDivisionError):
            frac = None
        if frac is not None and not isinstance(ratio, Fraction):
            frac = frac.limit_denominator(MAX_RATIO_TERM)
    if frac is None or frac < 1:
        raise ValueError(f"ratio {ratio!r}: must be a fraction p/q ≥ 1, e.g. 5/2, 2 or 3")
    p, q = frac.numerator, frac.denominator
    if p > MAX_RATIO_TERM or q > 3:
        raise ValueError(f"ratio {ratio!r}: p/q = {p}/{q} is not supported (p ≤ {MAX_RATIO_TERM}, q ≤ 3)")
    return p, q


def receptive_field_radius() -> int:
    """Receptive-field radius of the network in input pixels.

    Twelve 3×3 convolutions run at input resolution (the first, ten in the residual blocks and the one
    before the pixel shuffle), so an output pixel depends on inputs up to 12 pixels away (plus less than
    one input pixel from the final stride-q convolution at output resolution).
    """
    return 12


class _ResidualBlock(nn.Module):
    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1)
        self.extra = out_ch - in_ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.conv2(F.relu(self.conv1(x))))
        if self.extra:
            # Zero-valued feature maps appended to the shortcut (paper: "augmented X_k with zero-valued
            # feature maps").  Adding into the first channels is the same sum without a padded copy.
            head = y[:, : y.shape[1] - self.extra] + x
            return torch.cat([head, y[:, y.shape[1] - self.extra :]], dim=1)
        return y + x


class EnhanceNet(nn.Module):
    """The paper's network for an upsampling ratio p/q (default 5/2).

    Parameters
    ----------
    ratio
        ``(p, q)``: output size is ``⌈S·p/q⌉ × ⌈T·p/q⌉`` for an ``S × T`` input.

    Notes
    -----
    Input: float tensor ``(N, 3, S, T)`` with values in [0, 1] (uint8 / 255).  Output: the same scale,
    not clamped.  Works in any memory format; channels-last is fastest on CPUs and GPUs.
    """

    def __init__(self, ratio: tuple[int, int] = (5, 2), *, residual: bool = False) -> None:
        super().__init__()
        p, q = parse_ratio(ratio)
        self.ratio = (p, q)
        self.residual = residual
        widths = block_widths()
        self.head = nn.Conv2d(3, widths[0], 3, padding=1)
        self.blocks = nn.ModuleList(_ResidualBlock(widths[i], widths[i + 1]) for i in range(len(widths) - 1))
        self.expand = nn.Conv2d(widths[-1], 3 * p * p, 3, padding=1)
        self.shuffle = nn.PixelShuffle(p)
        self.tail = nn.Conv2d(3, 3, 3, stride=q, padding=1)
        self.reset_parameters()

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """Paper's initialisation: weights ~ N(0, 0.05²) truncated at ±2σ, biases 0."""
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.trunc_normal_(
                    module.weight,
                    mean=0.0,
                    std=INIT_STD,
                    a=-2 * INIT_STD,
                    b=2 * INIT_STD,
                    generator=generator,
                )
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        if self.residual:
            icnr_(self.expand.weight, self.ratio[0], generator=generator)
            with torch.no_grad():
                self.tail.weight.mul_(0.1)

    def output_shape(self, rows: int, cols: int) -> tuple[int, int]:
        """Output size for an input of ``rows × cols`` pixels: ``(⌈rows·p/q⌉, ⌈cols·p/q⌉)``."""
        p, q = self.ratio
        return -(-rows * p // q), -(-cols * p // q)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.head(x - CENTRE))
        for block in self.blocks:
            y = block(y)
        y = F.relu(self.expand(y))
        out: torch.Tensor = self.tail(self.shuffle(y))
        if self.residual:
            return out + bicubic_up(x, self.ratio, out.shape[-2:])
        return out + CENTRE


def bicubic_up(x: torch.Tensor, ratio: tuple[int, int], size: tuple[int, int] | torch.Size) -> torch.Tensor:
    """Bicubic enlargement of ``x`` by exactly ``p/q`` (area-aligned pixel centres, a = −0.75), cropped or
    edge-padded to ``size`` (the network's ⌈S·p/q⌉), so that tiles and whole images agree."""
    p, q = ratio
    up = F.interpolate(
        x, scale_factor=p / q, mode="bicubic", align_corners=False, recompute_scale_factor=False
    )
    dr, dc = int(size[0]) - up.shape[-2], int(size[1]) - up.shape[-1]
    if dr or dc:
        up = F.pad(up, (0, max(dc, 0), 0, max(dr, 0)), mode="replicate")[..., : int(size[0]), : int(size[1])]
    return up


def icnr_(weight: torch.Tensor, upscale: int, *, generator: torch.Generator | None = None) -> None:
    """ICNR initialisation of a convolution that feeds a pixel shuffle by ``upscale`` (in place).

    The ``C·r²`` output channels are filled so that the ``r²`` channels of each group (shuffled into one
    output channel) share one kernel drawn like the paper's (truncated normal, σ 0.05): the shuffled
    output then starts as a nearest-neighbour enlargement, without the checkerboard of independent
    sub-pixel kernels (Aitken et al. 2017, "Checkerboard artifact free sub-pixel convolution").
    """
    out_ch, in_ch, kh, kw = weight.shape
    groups = out_ch // (upscale * upscale)
    sub = torch.empty(groups, in_ch, kh, kw)
    nn.init.trunc_normal_(sub, mean=0.0, std=INIT_STD, a=-2 * INIT_STD, b=2 * INIT_STD, generator=generator)
    with torch.no_grad():
        weight.copy_(sub.repeat_interleave(upscale * upscale, dim=0).to(weight))


def build_network(ratio: tuple[int, int] = (5, 2), *, residual: bool = False) -> EnhanceNet:
    """The paper's network for upsampling ratio ``p/q`` (default 5/2 = 2.5), freshly initialised;
    ``residual`` adds the global bicubic path (see the module docstring)."""
    return EnhanceNet(ratio, residual=residual)
