"""The benchtop microscope of the paper (the gold standard): 20×/0.75 NA, 0.55 NA condenser, 7.4 µm
camera pixels (0.37 µm at the sample), near-true colour, shallow depth of field.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from scopectl.twin.optics import blur_varying, defocus_sigma_um, layer_transmittance
from scopectl.twin.slide import Slide
from scopectl.twin.spectra import blackbody, cie_xyz_cmfs, srgb_from_xyz_matrix

__all__ = ["BenchtopModel", "BenchtopParams", "srgb_encode"]


@dataclass(frozen=True)
class BenchtopParams:
    """Parameters of the benchtop model (defaults: the paper's Olympus IX83 + Retiga 4000R).

    Attributes
    ----------
    camera_pixel_um, magnification
        Camera pixel pitch and objective magnification (pixel at the sample = 7.4 / 20 = 0.37 µm).
    objective_na, condenser_na
        Numerical apertures; the in-focus PSF sigma is ``0.21 λ / NA_obj`` broadened by partial
        coherence with the condenser (``NA_eff = (NA_obj + NA_cond) / 2`` for the in-focus blur), the
        defocus blur uses the objective NA.
    wavelength_um
        Central wavelength for the diffraction blur.
    colour_temperature_k
        Lamp (halogen with a daylight filter) colour temperature; the camera is white-balanced on glass.
    colour_crosstalk
        Mixing between channels of the camera relative to ideal sRGB primaries (0 = colorimetric).
    vignetting
        Relative fall-off of brightness at the corner of a full 2048×2048 frame.
    full_well_e, read_noise_e
        Sensor noise model (photon shot noise + Gaussian read noise).
    glass_fill_per_ms
        Fraction of full well reached through clear glass per millisecond of exposure.
    tile_px
        Frames are rendered in tiles of at most this size (plus a blur margin) to bound memory.
    """

    camera_pixel_um: float = 7.4
    magnification: float = 20.0
    objective_na: float = 0.75
    condenser_na: float = 0.55
    wavelength_um: float = 0.55
    colour_temperature_k: float = 5500.0
    colour_crosstalk: float = 0.03
    vignetting: float = 0.05
    full_well_e: float = 40000.0
    read_noise_e: float = 12.0
    glass_fill_per_ms: float = 0.092
    tile_px: int = 768

    @property
    def pixel_size_um(self) -> float:
        return self.camera_pixel_um / self.magnification


def _srgb_exact(x: NDArray[np.float64]) -> NDArray[np.float64]:
    out: NDArray[np.float64] = np.where(
        x <= 0.0031308, 12.92 * x, 1.055 * np.power(np.maximum(x, 0.0031308), 1.0 / 2.4) - 0.055
    )
    return out


_SRGB_LUT_SIZE = 65536
_SRGB_LUT: NDArray[np.float32] = _srgb_exact(np.linspace(0.0, 1.0, _SRGB_LUT_SIZE)).astype(np.float32)


def srgb_encode(lin: NDArray[np.float32]) -> NDArray[np.float32]:
    """Linear [0, 1] to sRGB-encoded [0, 1] (IEC 61966-2-1), via a 16-bit lookup table (error < 2e-4)."""
    idx = np.clip(lin * np.float32(_SRGB_LUT_SIZE - 1) + np.float32(0.5), 0, _SRGB_LUT_SIZE - 1).astype(
        np.uint16
    )
    out: NDArray[np.float32] = _SRGB_LUT[idx]
    return out


class BenchtopModel:
    """Renders what the benchtop camera records for a field of a slide.

    Pixel ``(r, c)`` of a frame of shape ``(H, W)`` centred on ``(center_x_um, center_y_um)`` images the
    slide point ``x = center_x_um + (c - (W - 1) / 2) · p``, ``y = center_y_um + (r - (H - 1) / 2) · p``
    with ``p = pixel_size_um``; the frame is axis-aligned with the slide.
    """

    def __init__(self, params: BenchtopParams | None = None) -> None:
        self.params = params if params is not None else BenchtopParams()
        p = self.params
        illum = blackbody(p.colour_temperature_k)
        srgb = cie_xyz_cmfs() @ srgb_from_xyz_matrix().T  # (bands, 3) ideal sRGB responses
        mix = np.full((3, 3), p.colour_crosstalk) + np.eye(3) * (1.0 - 3 * p.colour_crosstalk)
        resp = illum[:, None] * (srgb @ mix.T)
        self._weights = resp / resp.sum(axis=0, keepdims=True)

    @property
    def pixel_size_um(self) -> float:
        """Pixel size at the sample (0.37 µm by default)."""
        return self.params.pixel_size_um

    def frame_origin_um(
        self, *, center_x_um: float, center_y_um: float, shape: tuple[int, int]
    ) -> tuple[float, float]:
        """Slide position (x, y) µm of the centre of pixel (0, 0) of a frame."""
        p = self.pixel_size_um
        return center_x_um - (shape[1] - 1) / 2 * p, center_y_um - (shape[0] - 1) / 2 * p

    def render(
        self,
        slide: Slide,
        *,
        center_x_um: float,
        center_y_um: float,
        focus_z_um: float = 0.0,
        shape: tuple[int, int] = (2048, 2048),
        exposure_ms: float = 10.0,
        seed: int = 0,
    ) -> NDArray[np.uint8]:
        """Render one camera frame.

        Parameters
        ----------
        slide
            The specimen.
        center_x_um, center_y_um
            Slide position imaged at the frame centre.
        focus_z_um
            Objective focus relative to the slide's nominal focal plane (0 = in focus on average).
        shape
            (rows, columns) of the frame (a region of interest of the 2048×2048 sensor).
        exposure_ms
            Exposure time; 10 ms puts clear glass at ~92% of full scale.
        seed
            Seed of the camera noise.

        Returns
        -------
        ndarray
            (rows, columns, 3) uint8 sRGB.
        """
        if shape[0] < 1 or shape[1] < 1 or shape[0] > 8192 or shape[1] > 8192:
            raise ValueError(f"frame shape must be within 1..8192 pixels, got {shape}")
        if not exposure_ms > 0:
            raise ValueError(f"exposure_ms must be positive, got {exposure_ms}")
        p = self.params
        px = self.pixel_size_um
        x0, y0 = self.frame_origin_um(center_x_um=center_x_um, center_y_um=center_y_um, shape=shape)
        na_infocus = 0.5 * (p.objective_na + p.condenser_na)
        sigma0_um = 0.21 * p.wavelength_um / na_infocus
        # render in tiles (bounded memory); each tile carries a margin wider than the largest blur
        worst_dz = slide.depth_extent_um() + abs(focus_z_um)
        worst_sigma = math.hypot(sigma0_um, float(defocus_sigma_um(worst_dz, na=p.objective_na)))
        margin = math.ceil(4.0 * worst_sigma / px) + 2
        tile = max(64, p.tile_px)
        out = np.empty((*shape, 3), dtype=np.uint8)
        for r0 in range(0, shape[0], tile):
            for c0 in range(0, shape[1], tile):
                r1, c1 = min(r0 + tile, shape[0]), min(c0 + tile, shape[1])
                signal = self._optical_tile(
                    slide,
                    x0_um=x0 + (c0 - margin) * px,
                    y0_um=y0 + (r0 - margin) * px,
                    shape=(r1 - r0 + 2 * margin, c1 - c0 + 2 * margin),
                    focus_z_um=focus_z_um,
                    sigma0_um=sigma0_um,
                )[margin:-margin, margin:-margin]
                # vignetting relative to the corner of a full 2048 frame
                rr = (np.arange(r0, r1) - (shape[0] - 1) / 2)[:, None]
                cc = (np.arange(c0, c1) - (shape[1] - 1) / 2)[None, :]
                rho2 = (rr * rr + cc * cc) / (2 * 1024.0**2)
                signal *= (1.0 - p.vignetting * rho2).astype(np.float32)[..., None]
                full = np.float32(p.glass_fill_per_ms * exposure_ms * p.full_well_e)
                electrons = np.clip(signal, 0.0, None) * full
                rng = np.random.default_rng([seed, 0x62656E63, r0, c0])
                noise_sd = np.sqrt(electrons + np.float32(p.read_noise_e**2))
                electrons += noise_sd * rng.standard_normal(electrons.shape, dtype=np.float32)
                lin = np.clip(electrons / np.float32(p.full_well_e), 0.0, 1.0)
                out[r0:r1, c0:c1] = np.rint(srgb_encode(lin) * 255.0).astype(np.uint8)
        return out

    def _optical_tile(
        self,
        slide: Slide,
        *,
        x0_um: float,
        y0_um: float,
        shape: tuple[int, int],
        focus_z_um: float,
        sigma0_um: float,
    ) -> NDArray[np.float32]:
        """Light through the slide and the objective on one tile, relative to clear glass."""
        p = self.params
        px = self.pixel_size_um
        render = slide.render(x0_um=x0_um, y0_um=y0_um, shape=shape, pixel_size_um=px)
        signal = np.ones((*shape, 3), dtype=np.float32)
        for layer in render.layers:
            trans = layer_transmittance(render, layer, self._weights)
            if trans is None:
                continue
            dz = layer.z_um + render.surface_um - np.float32(focus_z_um)
            sig_def = defocus_sigma_um(dz, na=p.objective_na)
            sigma_px = np.sqrt(np.float32(sigma0_um**2) + np.square(sig_def)) / np.float32(px)
            signal *= blur_varying(trans, sigma_px.astype(np.float32))
        return signal

    def depth_of_field_um(self) -> float:
        """Classical depth of field λ/NA² + pixel term (informational)."""
        p = self.params
        return p.wavelength_um / p.objective_na**2 + self.pixel_size_um / (
            p.objective_na * math.tan(math.asin(p.objective_na))
        )
