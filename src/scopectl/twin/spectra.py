"""Spectral data of the twin: wavelength bands, stains, light sources, camera responses, colorimetry.

All spectra are sampled at the centres of :data:`N_BANDS` bands 30 nm wide from 415 to 685 nm. Stain
absorbance spectra are sums of Gaussians in wavelength fitted by eye to published absorption spectra
(peak positions and widths); they are normalised to an optical density of 1 at their peak, so a stain
"amount" is the peak optical density it adds. The CIE 1931 colour-matching functions use the
multi-lobe Gaussian fit of Wyman, Sloan & Shirley (JCGT 2013).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "LED_EMITTERS",
    "N_BANDS",
    "STAINS",
    "WAVELENGTHS_NM",
    "Stain",
    "band_average",
    "blackbody",
    "cie_xyz_cmfs",
    "gaussian_band",
    "srgb_from_xyz_matrix",
]

WAVELENGTHS_NM: NDArray[np.float64] = np.arange(415.0, 686.0, 30.0)  # 400-700 nm in 9 bands
N_BANDS = int(WAVELENGTHS_NM.size)

XYZ_TO_LINEAR_SRGB = np.array(
    [
        [3.2404542, -1.5371385, -0.4985314],
        [-0.9692660, 1.8760108, 0.0415560],
        [0.0556434, -0.2040259, 1.0572252],
    ]
)


_BAND_WIDTH_NM = 30.0
# 1 nm samples inside each band (band k covers centre_k +- 15 nm)
_FINE_NM: NDArray[np.float64] = WAVELENGTHS_NM[:, None] + np.arange(-14.5, 15.0, 1.0)[None, :]


def band_average(fine_values: NDArray[np.float64]) -> NDArray[np.float64]:
    """Average a function sampled on :data:`_FINE_NM` (N_BANDS, 30) over each band."""
    out: NDArray[np.float64] = fine_values.mean(axis=1)
    return out


def gaussian_band(center_nm: float, sigma_nm: float) -> NDArray[np.float64]:
    """A Gaussian emission line (peak 1) averaged over each band."""
    return band_average(np.exp(-0.5 * ((_FINE_NM - center_nm) / sigma_nm) ** 2))


def _lobes(*lobes: tuple[float, float, float]) -> NDArray[np.float64]:
    """Sum of (weight, centre, sigma) Gaussians averaged over each band, normalised to a peak of 1."""
    fine = sum(w * np.exp(-0.5 * ((_FINE_NM - c) / s) ** 2) for w, c, s in lobes)
    sampled = band_average(np.asarray(fine, dtype=np.float64))
    out: NDArray[np.float64] = sampled / float(np.max(sampled))
    return out


@dataclass(frozen=True)
class Stain:
    """A dye (or an intrinsic absorber such as haemoglobin): name and absorbance per band (peak OD 1)."""

    name: str
    absorbance: NDArray[np.float64]


def _stain(name: str, *lobes: tuple[float, float, float], floor: float = 0.0) -> Stain:
    spec = _lobes(*lobes)
    spec = (spec + floor) / (1.0 + floor)
    return Stain(name=name, absorbance=spec)


STAINS: dict[str, Stain] = {
    s.name: s
    for s in (
        # Weigert's iron haematoxylin: nearly neutral, blue-black (broad band with a 590 nm maximum)
        _stain("iron_haematoxylin", (1.0, 590.0, 75.0), floor=0.45),
        # Harris haematoxylin (Pap nuclei): blue-purple, maximum ~ 590 nm
        _stain("haematoxylin", (1.0, 590.0, 50.0), (0.35, 540.0, 30.0)),
        # Biebrich scarlet + acid fuchsin (Masson's plasma stain): absorbs green, maximum 505-545 nm
        _stain("biebrich_fuchsin", (1.0, 510.0, 32.0), (0.8, 548.0, 25.0)),
        # Aniline blue (Masson's fibre stain): absorbs orange-red, maximum ~ 600 nm
        _stain("aniline_blue", (1.0, 600.0, 42.0), (0.3, 560.0, 30.0)),
        # Eosin Y: narrow band, maximum 525 nm, shoulder 490 nm
        _stain("eosin", (1.0, 527.0, 20.0), (0.35, 495.0, 20.0)),
        # Orange G: maximum 478 nm
        _stain("orange_g", (1.0, 478.0, 32.0)),
        # Light green SF yellowish (EA-50 cytoplasm): maximum 630 nm, shoulder 420 nm
        _stain("light_green", (1.0, 632.0, 32.0), (0.25, 425.0, 25.0)),
        # Methylene blue / azure B (Romanowsky basic dye): maximum 650 nm, dimer shoulder 600 nm
        _stain("azure", (1.0, 652.0, 28.0), (0.6, 605.0, 28.0)),
        # Romanowsky purple (azure-eosin complex bound to chromatin): maximum ~ 555 nm, broad
        _stain("romanowsky_purple", (1.0, 555.0, 45.0), (0.4, 630.0, 35.0)),
        # Oxy-haemoglobin in red cells: Soret band 415 nm, Q bands 541 and 577 nm
        _stain("haemoglobin", (1.0, 415.0, 14.0), (0.12, 541.0, 10.0), (0.12, 577.0, 8.0)),
        # Neutral absorber (chrome of a resolution target, dust, pigment)
        Stain("neutral", np.ones(N_BANDS)),
    )
}


def blackbody(temperature_k: float) -> NDArray[np.float64]:
    """Planck spectral radiance at the band centres, normalised to a mean of 1."""
    lam = _FINE_NM * 1e-9
    c2 = 1.4387769e-2
    b = band_average(1.0 / (lam**5 * (np.exp(c2 / (lam * temperature_k)) - 1.0)))
    out: NDArray[np.float64] = b / b.mean()
    return out


def cie_xyz_cmfs() -> NDArray[np.float64]:
    """CIE 1931 2° colour-matching functions at the band centres, shape (N_BANDS, 3) (Wyman et al. 2013)."""
    lam = _FINE_NM

    def g(x: NDArray[np.float64], mu: float, s1: float, s2: float) -> NDArray[np.float64]:
        out: NDArray[np.float64] = np.where(
            x < mu, np.exp(-0.5 * ((x - mu) / s1) ** 2), np.exp(-0.5 * ((x - mu) / s2) ** 2)
        )
        return out

    x = (
        1.056 * g(lam, 599.8, 37.9, 31.0)
        + 0.362 * g(lam, 442.0, 16.0, 26.7)
        - 0.065 * g(lam, 501.1, 20.4, 26.2)
    )
    y = 0.821 * g(lam, 568.8, 46.9, 40.5) + 0.286 * g(lam, 530.9, 16.3, 31.1)
    z = 1.217 * g(lam, 437.0, 11.8, 36.0) + 0.681 * g(lam, 459.0, 26.0, 13.8)
    return np.stack([band_average(x), band_average(y), band_average(z)], axis=1)


def srgb_from_xyz_matrix() -> NDArray[np.float64]:
    """XYZ (D65) to linear sRGB."""
    return XYZ_TO_LINEAR_SRGB.copy()


# WS2812B (NeoPixel) emitters: peak wavelength and spectral sigma (FWHM ~ 20-30 nm), relative
# radiant power of each die at full drive, and the forward voltage used by the battery model. Powers
# follow the datasheet luminous intensities (R ~410, G ~690, B ~190 mcd) divided by the photopic
# efficiency at each peak (0.32, 0.79, 0.09), with blue at the low end of its tolerance.
@dataclass(frozen=True)
class LedEmitter:
    """One die of an RGB LED: spectrum, relative power at full drive, forward voltage."""

    name: str
    spectrum: NDArray[np.float64]
    power: float
    forward_v: float


LED_EMITTERS: tuple[LedEmitter, LedEmitter, LedEmitter] = (
    LedEmitter("red", gaussian_band(623.0, 9.0), 1.85, 2.05),
    LedEmitter("green", gaussian_band(522.0, 14.0), 1.25, 3.05),
    LedEmitter("blue", gaussian_band(467.0, 10.0), 2.30, 3.10),
)
