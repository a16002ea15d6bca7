"""Pairwise registration of overlapping tiles by phase correlation, with ASHLAR-style acceptance.

For each pair of tiles whose nominal rectangles overlap, the overlap strip is cut from both tiles at
the nominal offset, Hann-windowed and phase-correlated (sub-pixel by upsampled DFT, Guizar-Sicairos
et al. 2008).  The shift is accepted when the Pearson correlation of the re-aligned strips exceeds a
threshold learnt from *unrelated* strips (random non-overlapping tile regions): the 99th percentile of
their best-shift correlation, as in ASHLAR (Muhlich et al., Bioinformatics 2022), and never less than
``min_correlation``.  Blank glass or out-of-focus strips therefore do not produce confident nonsense.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
from skimage.registration import phase_cross_correlation

_LOWPASS_SIGMA = 0.2
_HIGHPASS_SIGMA = 4.0
_MAX_REFINE = 5

__all__ = ["PairResult", "candidate_pairs", "null_threshold", "register_pair", "to_grey"]


@dataclass(frozen=True)
class PairResult:
    """Registration of tile ``j`` relative to tile ``i``.

    Offsets are ``position_j - position_i`` in pixels, ``(rows, cols)``.
    """

    i: int
    j: int
    nominal_offset_px: tuple[float, float]
    offset_px: tuple[float, float]
    correlation: float
    accepted: bool
    reason: str
    overlap_px: tuple[int, int]

    def to_dict(self) -> dict[str, object]:
        """JSON-serialisable form."""
        return {
            "i": self.i,
            "j": self.j,
            "nominal_offset_px": list(self.nominal_offset_px),
            "offset_px": list(self.offset_px),
            "correlation": self.correlation,
            "accepted": self.accepted,
            "reason": self.reason,
            "overlap_px": list(self.overlap_px),
        }


def to_grey(tile: np.ndarray) -> np.ndarray:
    """Green channel of an RGB tile (or the tile itself if grey) as float32."""
    a = np.asarray(tile)
    if a.ndim == 3:
        a = a[..., 1] if a.shape[2] >= 2 else a[..., 0]
    if a.ndim != 2:
        raise ValueError(f"tile must be (H, W) or (H, W, C), got shape {np.asarray(tile).shape}")
    return a.astype(np.float32)


def candidate_pairs(
    nominal_positions_px: np.ndarray, tile_shape: tuple[int, int], *, min_overlap_px: int = 8
) -> list[tuple[int, int]]:
    """Neighbour pairs ``(i, j)``, ``i < j``, that share an edge-long overlap.

    A pair qualifies when its nominal overlap is at least ``min_overlap_px`` across and at least half a
    tile along (side neighbours; diagonal neighbours share only a small corner, which registers poorly).
    """
    pos = np.asarray(nominal_positions_px, dtype=np.float64)
    rows, cols = tile_shape
    pairs = []
    for i in range(len(pos)):
        d = pos[i + 1 :] - pos[i]
        ov_r = rows - np.abs(d[:, 0])
        ov_c = cols - np.abs(d[:, 1])
        ok = (ov_r >= min_overlap_px) & (ov_c >= min_overlap_px) & ((ov_r >= rows / 2) | (ov_c >= cols / 2))
        for k in np.nonzero(ok)[0]:
            pairs.append((i, i + 1 + int(k)))
    return pairs


def _hann2d(shape: tuple[int, int]) -> np.ndarray:
    return np.outer(np.hanning(shape[0]), np.hanning(shape[1])).astype(np.float32)


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    a = a - a.mean()
    b = b - b.mean()
    den = float(np.sqrt((a * a).sum() * (b * b).sum()))
    return float((a * b).sum() / den) if den > 0 else 0.0


def _aligned_correlation(a: np.ndarray, b: np.ndarray, shift: tuple[float, float]) -> float:
    """Pearson correlation of ``a`` and ``b`` where they overlap once ``b`` is moved by ``shift``.

    ``b[r] ≈ a[r + shift]``: compare ``a[r + s]`` with ``b[r]`` on the common support.
    """
    sr, sc = int(np.rint(shift[0])), int(np.rint(shift[1]))
    h, w = a.shape
    r0, r1 = max(0, -sr), min(h, h - sr)
    c0, c1 = max(0, -sc), min(w, w - sc)
    if r1 - r0 < 4 or c1 - c0 < 4:
        return 0.0
    return _pearson(a[r0 + sr : r1 + sr, c0 + sc : c1 + sc], b[r0:r1, c0:c1])


def _phase_shift(a: np.ndarray, b: np.ndarray, *, upsample: int) -> tuple[float, float]:
    """Shift ``s`` with ``b[r] ≈ a[r + s]`` by windowed, partially whitened phase correlation.

    The cross-power spectrum is divided by the square root of its magnitude (half-way between plain
    cross-correlation and pure phase correlation) and weighted by a Gaussian low-pass (σ = 0.2
    cycles/pixel): pure phase correlation gives equal weight to the noisy high frequencies and was
    ~4× less precise on noisy synthetic tiles (0.17 vs 0.04 px RMS).
    """
    win = _hann2d(a.shape)
    fa = np.fft.fft2((a - a.mean()) * win)
    fb = np.fft.fft2((b - b.mean()) * win)
    cross = fa * np.conj(fb)
    mag = np.abs(cross)
    if not np.any(mag > 0):
        return (0.0, 0.0)
    cross = cross / np.sqrt(np.maximum(mag, 1e-12 * mag.max()))
    fy = np.fft.fftfreq(a.shape[0])[:, None]
    fx = np.fft.fftfreq(a.shape[1])[None, :]
    cross = cross * np.exp(-(fx * fx + fy * fy) / (2 * _LOWPASS_SIGMA**2))
    shift, _, _ = phase_cross_correlation(  # type: ignore[no-untyped-call]
        cross, np.ones_like(cross), space="fourier", upsample_factor=upsample, normalization=None
    )
    return float(shift[0]), float(shift[1])


def _strips(
    tile_i: np.ndarray, tile_j: np.ndarray, offset: tuple[int, int], margin: int
) -> tuple[np.ndarray, np.ndarray, tuple[int, int]] | None:
    """Equal-size regions of both tiles around their overlap at ``offset``, widened by ``margin``.

    Returns ``(a, b, base)`` with ``b[k] ≈ a[k + (offset_true - base)]``, or ``None`` if too small.
    """
    starts_a, starts_b, sizes = [], [], []
    for axis in range(2):
        n = tile_i.shape[axis]
        d = offset[axis]
        size = min(n, n - abs(d) + margin)
        if size < 8:
            return None
        if d >= 0:
            starts_a.append(n - size)
            starts_b.append(0)
        else:
            starts_a.append(0)
            starts_b.append(n - size)
        sizes.append(size)
    a = tile_i[starts_a[0] : starts_a[0] + sizes[0], starts_a[1] : starts_a[1] + sizes[1]]
    b = tile_j[starts_b[0] : starts_b[0] + sizes[0], starts_b[1] : starts_b[1] + sizes[1]]
    return a, b, (starts_a[0] - starts_b[0], starts_a[1] - starts_b[1])


def register_pair(
    tile_i: np.ndarray,
    tile_j: np.ndarray,
    *,
    nominal_offset_px: tuple[float, float],
    max_shift_px: float,
    upsample: int = 20,
) -> tuple[tuple[float, float], float, tuple[int, int]]:
    """Measure the offset of tile ``j`` relative to tile ``i`` near the nominal one.

    A first, coarse pass correlates the nominal overlap widened by ``max_shift_px`` (so the true overlap
    lies inside both regions even when the stage was far off); a second pass correlates the overlap cut
    at the measured integer offset, where the window no longer biases the estimate.

    Parameters
    ----------
    tile_i, tile_j
        Grey float tiles of the same shape (see :func:`to_grey`).
    nominal_offset_px
        Expected ``position_j - position_i`` (rows, cols).
    max_shift_px
        Largest plausible deviation from the nominal offset per axis; larger shifts get correlation 0.
    upsample
        Sub-pixel precision is ``1 / upsample`` pixel.

    Returns
    -------
    offset_px, correlation, overlap_px
        The measured offset, the correlation of the re-aligned overlap strips (after a high-pass, so
        shared coarse structure such as a tissue edge does not count), and the strip size.
    """
    if tile_i.shape != tile_j.shape:
        raise ValueError(f"tiles differ in shape: {tile_i.shape} vs {tile_j.shape}")
    d0 = (int(np.rint(nominal_offset_px[0])), int(np.rint(nominal_offset_px[1])))
    nominal_overlap = (max(0, tile_i.shape[0] - abs(d0[0])), max(0, tile_i.shape[1] - abs(d0[1])))
    margin = int(np.ceil(max_shift_px))
    cut = _strips(tile_i, tile_j, d0, margin)
    if cut is None or min(nominal_overlap) < 8:
        return (float(d0[0]), float(d0[1])), 0.0, nominal_overlap
    a, b, base = cut
    shift = _masked_ncc_shift(_highpass(a), _highpass(b))
    coarse = (base[0] + shift[0], base[1] + shift[1])
    if abs(coarse[0] - d0[0]) > max_shift_px or abs(coarse[1] - d0[1]) > max_shift_px:
        return coarse, 0.0, nominal_overlap
    d1 = (int(np.rint(coarse[0])), int(np.rint(coarse[1])))
    visited = set()
    for _ in range(_MAX_REFINE):
        cut = _strips(tile_i, tile_j, d1, 0)
        if cut is None or d1 in visited:
            break
        visited.add(d1)
        a, b, base = cut
        fine = _phase_shift(a, b, upsample=upsample)
        offset = (base[0] + fine[0], base[1] + fine[1])
        if abs(fine[0]) <= 0.5 and abs(fine[1]) <= 0.5:
            corr = _aligned_correlation(_highpass(a), _highpass(b), fine)
            return offset, corr, (int(a.shape[0]), int(a.shape[1]))
        # the window biases a residual shift towards zero: re-cut at the new estimate and repeat
        d1 = (int(np.rint(offset[0])), int(np.rint(offset[1])))
        if abs(d1[0] - d0[0]) > max_shift_px or abs(d1[1] - d0[1]) > max_shift_px:
            break
    return coarse, 0.0, nominal_overlap  # did not converge: unreliable


def _masked_ncc_shift(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """Integer shift ``s`` with ``b[r] ≈ a[r + s]`` by masked normalised cross-correlation.

    Normalised over the actual overlap of each trial shift (Padfield, IEEE TIP 2012), so partial overlaps
    at region edges are handled correctly, without a window or a periodicity assumption.
    """
    mask = np.ones(a.shape, dtype=bool)
    shift = phase_cross_correlation(  # type: ignore[no-untyped-call]
        a, b, reference_mask=mask, moving_mask=mask, overlap_ratio=0.25
    )
    vec = shift[0] if isinstance(shift, tuple) else shift
    return float(vec[0]), float(vec[1])


def _highpass(img: np.ndarray) -> np.ndarray:
    """Image minus its Gaussian blur (σ = 4 px): keeps the detail registration relies on."""
    return img - cv2.GaussianBlur(img, (0, 0), _HIGHPASS_SIGMA)


def null_threshold(
    tiles: Sequence[np.ndarray],
    *,
    pairs: Sequence[tuple[int, int]],
    strip_shapes: Sequence[tuple[int, int]],
    samples: int = 40,
    percentile: float = 99.0,
    seed: int = 0,
    upsample: int = 4,
) -> float | None:
    """Best-shift correlation of unrelated strips: the ``percentile`` of ``samples`` draws.

    Draws pairs of tiles that are *not* neighbours, cuts a strip of a typical overlap shape at random
    places in each and registers them as if they overlapped.  Returns ``None`` when every pair of tiles
    overlaps (nothing unrelated to sample).
    """
    n = len(tiles)
    neighbours = {(min(i, j), max(i, j)) for i, j in pairs}
    unrelated = [(i, j) for i in range(n) for j in range(i + 1, n) if (i, j) not in neighbours]
    if not unrelated or not strip_shapes:
        return None
    rng = np.random.default_rng(seed)
    scores = []
    for _ in range(samples):
        i, j = unrelated[int(rng.integers(len(unrelated)))]
        sh = strip_shapes[int(rng.integers(len(strip_shapes)))]
        ti, tj = tiles[i], tiles[j]
        h, w = ti.shape
        sr, sc = min(sh[0], h), min(sh[1], w)
        ri, ci = int(rng.integers(h - sr + 1)), int(rng.integers(w - sc + 1))
        rj, cj = int(rng.integers(h - sr + 1)), int(rng.integers(w - sc + 1))
        a = ti[ri : ri + sr, ci : ci + sc]
        b = tj[rj : rj + sr, cj : cj + sc]
        shift = _phase_shift(a, b, upsample=upsample)
        scores.append(_aligned_correlation(_highpass(a), _highpass(b), shift))
    return float(np.percentile(scores, percentile))
