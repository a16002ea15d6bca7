"""The paper's training loss: mean-squared error plus λ times the Sobel gradient energy of the output.

Equation (4) of Rivenson et al. 2018::

    ℓ(Θ) = 1/(3·S·T·L²) · [ Σ (Y^Θ − Y^Label)² + λ · Σ |∇Y^Θ|² ],   |∇Y|² = (h * Y)² + (hᵀ * Y)²

with ``h`` the 3×3 Sobel kernel and λ = 0.001.  Both sums run over every output pixel and colour
channel, so both terms are means.  The gradient is computed with replicated borders so that image edges
do not count as gradients.  The ratio of the two terms does not depend on the intensity scale (both are
quadratic); scopectl uses images scaled to [0, 1].
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.nn import functional as F  # noqa: N812

__all__ = ["SOBEL_WEIGHT", "LossTerms", "enhancement_loss", "sobel_energy"]

#: λ of the paper.
SOBEL_WEIGHT = 1e-3

_SOBEL = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])


@dataclass(frozen=True)
class LossTerms:
    """The loss and its two terms (0-dimensional tensors)."""

    total: torch.Tensor
    mse: torch.Tensor
    sobel: torch.Tensor


def sobel_energy(images: torch.Tensor) -> torch.Tensor:
    """Mean of ``(h * Y)² + (hᵀ * Y)²`` over all pixels and channels of ``images`` (N, C, H, W)."""
    channels = images.shape[1]
    kernel = _SOBEL.to(device=images.device, dtype=images.dtype)
    weight = torch.stack([kernel, kernel.T]).unsqueeze(1).repeat(channels, 1, 1, 1)  # (2C, 1, 3, 3)
    padded = F.pad(images, (1, 1, 1, 1), mode="replicate")
    grads = F.conv2d(padded, weight, groups=channels)
    # Sum of the two squared gradients per pixel, averaged over the C·H·W pixels (not the 2C maps).
    return grads.square().mean() * 2.0


def enhancement_loss(
    output: torch.Tensor, target: torch.Tensor, *, sobel_weight: float = SOBEL_WEIGHT
) -> LossTerms:
    """The paper's loss for a batch (both tensors N×3×H×W, same scale; computed in float32)."""
    if output.shape != target.shape:
        raise ValueError(
            f"output shape {tuple(output.shape)} differs from target shape {tuple(target.shape)}"
        )
    out = output.float()
    mse = (out - target.float()).square().mean()
    sobel = sobel_energy(out)
    return LossTerms(total=mse + sobel_weight * sobel, mse=mse, sobel=sobel)
