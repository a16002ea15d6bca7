"""The paper's image-quality metrics: SSIM, the CIE-94 colour distance, bicubic resampling, and luma.

A low module (NumPy and SciPy only): every layer may import it (learning scores its validation
patches with it, the twin its simulated pairs, evaluation its tables).

Every choice that moves the numbers is fixed here and stated, so that results can be compared with
Rivenson et al. 2018 (Tables 2 and 3) and with other tools:

* :func:`ssim` follows Wang et al. 2004: an 11-tap Gaussian window with sigma 1.5 (truncated at 3.5
  sigma), population (biased) covariances, K = (0.01, 0.03), an explicit data range, and the mean
  taken over the image with a 5-pixel border excluded. It equals scikit-image's
  ``structural_similarity(..., gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
  data_range=...)``. The default channel is the BT.601 luminance Y = 0.299 R + 0.587 G + 0.114 B.
* :func:`cie94` converts sRGB (IEC 61966-2-1) to CIE L*a*b* (D65, 2° observer) and applies the
  graphic-arts CIE-94 formula (kL = kC = kH = 1, K1 = 0.045, K2 = 0.015) with the first image as the
  reference (the metric is asymmetric).
* :data:`LUMA_BT601` and :func:`luma`: the BT.601 luma weights (R, G, B), written once for the
  whole package.
* :func:`bicubic_resize` uses the Keys cubic kernel with a = -0.5 (MATLAB ``imresize`` and PIL), pixel
  centres aligned as MATLAB does, an antialiasing (widened) kernel when shrinking, and mirrored edges.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import scipy.sparse
from numpy.typing import NDArray
from scipy import ndimage

__all__ = ["LUMA_BT601", "bicubic_resize", "cie94", "cie94_stats", "luma", "rgb_to_lab", "ssim"]

_SSIM_SIGMA = 1.5
_SSIM_TRUNCATE = 3.5  # radius int(3.5 * 1.5 + 0.5) = 5 -> 11 taps
_SSIM_K1 = 0.01
_SSIM_K2 = 0.03

#: ITU-R BT.601 luma weights (R, G, B): Y = 0.299 R + 0.587 G + 0.114 B (float64, read-only).
LUMA_BT601: NDArray[np.float64] = np.array([0.299, 0.587, 0.114])
LUMA_BT601.setflags(write=False)

# sRGB (linear) -> XYZ, D65, as in IEC 61966-2-1 / scikit-image
_SRGB_TO_XYZ = np.array(
    [
        [0.412453, 0.357580, 0.180423],
        [0.212671, 0.715160, 0.072169],
        [0.019334, 0.119193, 0.950227],
    ]
)
_D65_WHITE = np.array([0.95047, 1.0, 1.08883])


def luma(rgb: np.ndarray, *, dtype: type[np.floating[Any]] = np.float64) -> NDArray[Any]:
    """BT.601 luma of an RGB image (channels on the last axis), computed in ``dtype``.

    Parameters
    ----------
    rgb : ndarray
        ``(..., 3)`` image, any numeric dtype (0–255 stays 0–255).
    dtype : numpy floating type, keyword-only
        The precision of the product (``np.float32`` for large images).

    Returns
    -------
    ndarray
        ``rgb.shape[:-1]``: Y = 0.299 R + 0.587 G + 0.114 B.
    """
    result: NDArray[Any] = np.asarray(rgb, dtype=dtype) @ LUMA_BT601.astype(dtype)
    return result


def _as_float(img: np.ndarray, name: str) -> NDArray[np.float64]:
    arr = np.asarray(img)
    if arr.dtype == np.bool_ or not (
        np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)
    ):
        raise ValueError(f"{name}: expected a numeric image, got dtype {arr.dtype}")
    return arr.astype(np.float64, copy=False)


def _check_pair(reference: np.ndarray, test: np.ndarray) -> None:
    if reference.shape != test.shape:
        raise ValueError(f"images differ in shape: reference {reference.shape} vs test {test.shape}")


def _ssim_2d(x: NDArray[np.float64], y: NDArray[np.float64], data_range: float) -> float:
    if min(x.shape) < 11:
        raise ValueError(f"SSIM needs images of at least 11x11 pixels, got {x.shape}")

    def filt(a: NDArray[np.float64]) -> NDArray[np.float64]:
        out: NDArray[np.float64] = ndimage.gaussian_filter(a, sigma=_SSIM_SIGMA, truncate=_SSIM_TRUNCATE)
        return out

    ux, uy = filt(x), filt(y)
    vx = filt(x * x) - ux * ux
    vy = filt(y * y) - uy * uy
    vxy = filt(x * y) - ux * uy
    c1 = (_SSIM_K1 * data_range) ** 2
    c2 = (_SSIM_K2 * data_range) ** 2
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
    pad = 5
    return float(s[pad:-pad, pad:-pad].mean())


def ssim(
    reference: np.ndarray,
    test: np.ndarray,
    *,
    data_range: float = 255.0,
    channel: Literal["luminance", "rgb"] = "luminance",
) -> float:
    """Mean structural similarity of ``test`` against ``reference`` (Wang et al. 2004).

    Parameters
    ----------
    reference, test
        Images of the same shape: (rows, columns) grey, or (rows, columns, 3) RGB.
    data_range
        The dynamic range of the data (255 for 8-bit images, 1.0 for float images in [0, 1]).
    channel
        ``"luminance"``: SSIM of the BT.601 luminance (Y = 0.299 R + 0.587 G + 0.114 B) of RGB inputs;
        ``"rgb"``: the mean of the three per-channel SSIMs. Ignored for grey inputs.

    Returns
    -------
    float
        The mean SSIM over the image, excluding a 5-pixel border.

    Notes
    -----
    Gaussian window of 11 taps, sigma 1.5; population covariances; K1 = 0.01, K2 = 0.03. Identical to
    ``skimage.metrics.structural_similarity`` with ``gaussian_weights=True, sigma=1.5,
    use_sample_covariance=False`` and the same ``data_range``.
    """
    ref = _as_float(reference, "reference")
    tst = _as_float(test, "test")
    _check_pair(ref, tst)
    if data_range <= 0:
        raise ValueError(f"data_range must be positive, got {data_range}")
    if ref.ndim == 2:
        return _ssim_2d(ref, tst, data_range)
    if ref.ndim != 3 or ref.shape[2] != 3:
        raise ValueError(f"expected (rows, columns) or (rows, columns, 3) images, got {ref.shape}")
    if channel == "luminance":
        return _ssim_2d(ref @ LUMA_BT601, tst @ LUMA_BT601, data_range)
    if channel == "rgb":
        return float(np.mean([_ssim_2d(ref[..., k], tst[..., k], data_range) for k in range(3)]))
    raise ValueError(f"channel must be 'luminance' or 'rgb', got {channel!r}")


def _rgb_unit(img: np.ndarray, name: str) -> NDArray[np.float64]:
    arr = np.asarray(img)
    if arr.ndim < 1 or arr.shape[-1] != 3:
        raise ValueError(f"{name}: expected an RGB image (..., 3), got shape {arr.shape}")
    if arr.dtype == np.uint8:
        return arr.astype(np.float64) / 255.0
    if arr.dtype == np.uint16:
        return arr.astype(np.float64) / 65535.0
    if np.issubdtype(arr.dtype, np.floating):
        return arr.astype(np.float64, copy=False)
    raise ValueError(f"{name}: expected uint8, uint16 or float RGB in [0, 1], got dtype {arr.dtype}")


def rgb_to_lab(rgb: np.ndarray) -> NDArray[np.float64]:
    """Convert sRGB to CIE L*a*b* (D65 white, 2° observer).

    Parameters
    ----------
    rgb
        (..., 3) uint8 (0-255), uint16 (0-65535) or float in [0, 1].

    Returns
    -------
    ndarray
        (..., 3) float64 L*, a*, b*. Matches ``skimage.color.rgb2lab``.
    """
    c = _rgb_unit(rgb, "rgb")
    lin = np.where(c > 0.04045, ((c + 0.055) / 1.055) ** 2.4, c / 12.92)
    xyz = lin @ _SRGB_TO_XYZ.T / _D65_WHITE
    eps = 0.008856
    f = np.where(xyz > eps, np.cbrt(xyz), 7.787 * xyz + 16.0 / 116.0)
    L = np.where(xyz[..., 1] > eps, 116.0 * f[..., 1] - 16.0, 903.3 * xyz[..., 1])
    a = 500.0 * (f[..., 0] - f[..., 1])
    b = 200.0 * (f[..., 1] - f[..., 2])
    return np.stack([L, a, b], axis=-1)


def cie94(reference_rgb: np.ndarray, test_rgb: np.ndarray) -> NDArray[np.float64]:
    """Per-pixel CIE-94 colour difference (graphic arts) of ``test_rgb`` against ``reference_rgb``.

    Parameters
    ----------
    reference_rgb, test_rgb
        (..., 3) sRGB images of the same shape (uint8, uint16, or float in [0, 1]). The reference (the
        benchtop image) comes first: its chroma weights the chroma and hue terms.

    Returns
    -------
    ndarray
        ΔE94 per pixel, float64, shape ``reference_rgb.shape[:-1]``.

    Notes
    -----
    ΔE94 = sqrt[(ΔL/(kL·SL))² + (ΔC/(kC·SC))² + (ΔH/(kH·SH))²], SL = 1, SC = 1 + 0.045·C1,
    SH = 1 + 0.015·C1, kL = kC = kH = 1, C1 the reference chroma; ΔH² = 2(C1·C2 − a1·a2 − b1·b2).
    Equals ``skimage.color.deltaE_ciede94(rgb2lab(ref), rgb2lab(test))``.
    """
    _check_pair(np.asarray(reference_rgb), np.asarray(test_rgb))
    return cie94_lab(rgb_to_lab(reference_rgb), rgb_to_lab(test_rgb))


def cie94_lab(lab1: np.ndarray, lab2: np.ndarray) -> NDArray[np.float64]:
    """CIE-94 graphic-arts difference of L*a*b* arrays (..., 3); ``lab1`` is the reference."""
    l1 = np.asarray(lab1, dtype=np.float64)
    l2 = np.asarray(lab2, dtype=np.float64)
    _check_pair(l1, l2)
    c1 = np.hypot(l1[..., 1], l1[..., 2])
    c2 = np.hypot(l2[..., 1], l2[..., 2])
    dl = l1[..., 0] - l2[..., 0]
    dc = c1 - c2
    dh2 = 2.0 * (c1 * c2 - (l1[..., 1] * l2[..., 1] + l1[..., 2] * l2[..., 2]))
    sc = 1.0 + 0.045 * c1
    sh = 1.0 + 0.015 * c1
    de2 = dl**2 + (dc / sc) ** 2 + dh2 / sh**2
    out: NDArray[np.float64] = np.sqrt(np.maximum(de2, 0.0))
    return out


def cie94_stats(reference_rgb: np.ndarray, test_rgb: np.ndarray) -> tuple[float, float]:
    """Mean and (population) standard deviation of the per-pixel ΔE94 (see :func:`cie94`)."""
    d = cie94(reference_rgb, test_rgb)
    return float(d.mean()), float(d.std())


def _cubic(x: NDArray[np.float64], a: float) -> NDArray[np.float64]:
    ax = np.abs(x)
    ax2, ax3 = ax * ax, ax * ax * ax
    out = np.where(
        ax <= 1,
        (a + 2) * ax3 - (a + 3) * ax2 + 1,
        np.where(ax < 2, a * ax3 - 5 * a * ax2 + 8 * a * ax - 4 * a, 0.0),
    )
    return out


def resize_weights(in_len: int, out_len: int, *, a: float = -0.5) -> scipy.sparse.csr_matrix:
    """The (out_len, in_len) sparse matrix of MATLAB-style bicubic resampling along one axis.

    Output sample ``i`` (0-based) sits at input coordinate ``(i + 0.5)/scale - 0.5`` with
    ``scale = out_len / in_len``; when shrinking, the kernel is widened by ``1/scale`` (antialiasing);
    indices beyond the edges are mirrored (symmetric, edge sample repeated); rows sum to 1.
    """
    if in_len < 1 or out_len < 1:
        raise ValueError(f"lengths must be positive, got {in_len} -> {out_len}")
    scale = out_len / in_len
    kscale = min(scale, 1.0)
    width = 4.0 / kscale
    u = (np.arange(out_len, dtype=np.float64) + 0.5) / scale - 0.5
    left = np.floor(u - width / 2).astype(np.int64)
    taps = int(np.ceil(width)) + 2
    idx = left[:, None] + np.arange(taps)[None, :]
    w = kscale * _cubic(kscale * (u[:, None] - idx), a)
    w /= w.sum(axis=1, keepdims=True)
    period = 2 * in_len
    m = np.mod(idx, period)
    m = np.where(m >= in_len, period - 1 - m, m)
    rows = np.repeat(np.arange(out_len), taps)
    mat = scipy.sparse.coo_matrix((w.ravel(), (rows, m.ravel())), shape=(out_len, in_len))
    return mat.tocsr()


def bicubic_resize(img: np.ndarray, *, shape: tuple[int, int]) -> np.ndarray:
    """Resize an image with the bicubic kernel a = -0.5 (MATLAB ``imresize`` / PIL ``BICUBIC``).

    Parameters
    ----------
    img
        (rows, columns) or (rows, columns, channels) image, integer or float.
    shape
        Output (rows, columns).

    Returns
    -------
    ndarray
        The resized image with the input's dtype (integers are rounded and clipped to their range).

    Notes
    -----
    The paper's bicubic ×2.5 baseline was presumably MATLAB's; OpenCV and PyTorch use a = -0.75 and
    give slightly sharper (and different) results. Pixel centres are aligned (output pixel ``i`` at
    input ``(i + 0.5)/s - 0.5``); shrinking uses a kernel widened by the reduction factor, as MATLAB
    and PIL do; edges are mirrored.
    """
    arr = np.asarray(img)
    if arr.ndim not in (2, 3):
        raise ValueError(f"expected a (rows, columns[, channels]) image, got shape {arr.shape}")
    rows, cols = int(shape[0]), int(shape[1])
    if rows < 1 or cols < 1:
        raise ValueError(f"output shape must be positive, got {shape}")
    data = arr.astype(np.float64, copy=False)
    h, w = arr.shape[:2]
    tail = arr.shape[2:]
    wr = resize_weights(h, rows)
    wc = resize_weights(w, cols)
    tmp = wr @ data.reshape(h, -1)  # (rows, w*channels)
    tmp = tmp.reshape(rows, w, -1).transpose(1, 0, 2).reshape(w, -1)  # (w, rows*channels)
    out = (wc @ tmp).reshape(cols, rows, -1).transpose(1, 0, 2).reshape((rows, cols, *tail))
    if np.issubdtype(arr.dtype, np.integer):
        info = np.iinfo(arr.dtype)
        result: np.ndarray = np.clip(np.rint(out), info.min, info.max).astype(arr.dtype)
        return result
    result = np.asarray(out).astype(arr.dtype, copy=False)
    return result
