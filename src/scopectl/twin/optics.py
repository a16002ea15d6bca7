"""Image formation shared by both instruments: Beer-Lambert colour, depth-dependent and spatially
varying blur.

Modelling choices (each documented in ``docs/twin.md``):

* Transmitted light per camera channel is ``sum_b w[b, c] · 10^(-OD_b)`` over 10 wavelength bands,
  with ``w`` = illumination spectrum × channel spectral response (normalised so clear glass gives 1).
* Objects at different depths are separate layers; each layer is blurred with its own defocus and the
  blurred transmittances multiply (thin-layer incoherent approximation).
* Point-spread functions are Gaussians: in-focus sigma ``0.21 λ / NA`` (or a set value for the phone
  lens) combined in quadrature with a geometric defocus blur of radius ``|dz| · tan(asin(NA))``
  (a disc of radius r has sigma r / 2).
* Spatially varying blur is applied by blurring with a few sigmas spanning the range and blending
  per pixel by linear interpolation in sigma ("PSF zones blended by weights").
"""

from __future__ import annotations

import math

import cv2
import numpy as np
from numpy.typing import NDArray

from scopectl.twin.slide import SlideLayer, SlideRender

__all__ = ["blur_varying", "defocus_sigma_um", "layer_transmittance"]

_LN10 = math.log(10.0)


def _absorb(
    amounts: NDArray[np.float32], spectra: NDArray[np.float32], weights: NDArray[np.float32]
) -> NDArray[np.float32]:
    """``exp(amounts @ spectra) @ weights`` for an (rows, cols, S) array, S ≤ 4 (OpenCV, SIMD)."""
    n_bands = spectra.shape[1]
    out = np.zeros((*amounts.shape[:2], weights.shape[1]), dtype=np.float32)
    for b0 in range(0, n_bands, 4):
        b1 = min(b0 + 4, n_bands)
        od = cv2.transform(amounts, np.ascontiguousarray(spectra[:, b0:b1].T))
        trans = cv2.exp(od)
        if trans.ndim == 2:
            trans = trans[..., None]
        out += np.asarray(
            cv2.transform(trans, np.ascontiguousarray(weights[b0:b1].T)), dtype=np.float32
        ).reshape(out.shape)
    return out


def layer_transmittance(
    render: SlideRender, layer: SlideLayer, weights: NDArray[np.float64]
) -> NDArray[np.float32] | None:
    """Per-channel transmittance of one layer, (rows, columns, channels) float32, or None if clear.

    Parameters
    ----------
    weights
        (N_BANDS, channels) spectral weights (illumination × channel response), each column summing to 1.
    """
    if not np.any(layer.amounts):
        return None
    spectra = np.stack([s.absorbance for s in render.stains], axis=0).astype(np.float32) * np.float32(-_LN10)
    w = weights.astype(np.float32)
    amounts = layer.amounts
    if amounts.shape[2] <= 4 and w.shape[1] <= 4:
        return _absorb(np.ascontiguousarray(amounts), spectra, w)
    od = amounts.reshape(-1, amounts.shape[2]) @ spectra
    np.exp(od, out=od)
    return np.asarray(od @ w, dtype=np.float32).reshape(*amounts.shape[:2], w.shape[1])


def defocus_sigma_um(dz_um: NDArray[np.float32] | float, *, na: float) -> NDArray[np.float32] | float:
    """Gaussian sigma (µm) of the geometric defocus blur for a defocus ``dz_um`` at numerical aperture ``na``."""
    slope = math.tan(math.asin(min(na, 0.99)))
    if np.ndim(dz_um) == 0:
        return abs(float(dz_um)) * (slope / 2.0)
    return np.asarray(np.abs(dz_um) * np.float32(slope / 2.0), dtype=np.float32)


def _gauss(img: NDArray[np.float32], sigma_px: float) -> NDArray[np.float32]:
    if sigma_px < 0.05:
        return img
    out = cv2.GaussianBlur(img, (0, 0), sigmaX=sigma_px, sigmaY=sigma_px, borderType=cv2.BORDER_REFLECT)
    return np.asarray(out, dtype=np.float32)


#: blur levels (pixels) of the fixed ladder used by :func:`blur_varying`: 0, then geometric from 0.3 px
BLUR_LADDER_PX: tuple[float, ...] = (0.0, *(0.3 * 1.6**k for k in range(12)))


def blur_varying(img: NDArray[np.float32], sigma_px: NDArray[np.float32] | float) -> NDArray[np.float32]:
    """Gaussian blur whose sigma (pixels) varies smoothly over the image.

    The image is blurred at the levels of a fixed ladder (0, then 0.3 px × 1.6^k) that bracket the
    range of ``sigma_px``, and each pixel interpolates linearly in sigma between its two neighbouring
    levels. Exact where sigma is a ladder level; because the ladder is fixed, neighbouring tiles of a
    frame blend identically (no seams).
    """
    if np.isscalar(sigma_px) or np.ndim(sigma_px) == 0:
        return _gauss(img, float(sigma_px))
    smap = np.asarray(sigma_px, dtype=np.float32)
    lo, hi = float(smap.min()), float(smap.max())
    if hi - lo < 1e-3:
        return _gauss(img, 0.5 * (lo + hi))
    ladder = np.asarray(BLUR_LADDER_PX)
    if hi > ladder[-1]:
        ladder = np.append(ladder, hi * 1.01)
    k_lo = max(int(np.searchsorted(ladder, lo, side="right")) - 1, 0)
    k_hi = min(int(np.searchsorted(ladder, hi, side="left")), ladder.size - 1)
    # fractional ladder position of every pixel
    idx = np.clip(np.searchsorted(ladder, smap, side="right") - 1, 0, ladder.size - 2)
    left = ladder[idx].astype(np.float32)
    right = ladder[idx + 1].astype(np.float32)
    pos = idx.astype(np.float32) + np.clip((smap - left) / (right - left), 0.0, 1.0)
    out = np.zeros_like(img)
    for k in range(k_lo, k_hi + 1):
        w = np.clip(np.float32(1.0) - np.abs(pos - np.float32(k)), 0.0, 1.0)
        if not np.any(w):
            continue
        out += _gauss(img, float(ladder[k])) * (w[..., None] if img.ndim == 3 else w)
    return out
