"""The smartphone microscope of the paper: a Nokia Lumia 1020 behind a 2.6 mm external lens (~2.77×),
lit by a 12-LED ring through a diffuser.

A capture goes through, in order (each step one line in ``docs/twin.md``):

1. geometry: phone pixel → slide µm, a homography (stage position error, rotation, holder tilt)
   after a smooth warp (barrel distortion about the optical axis + random low-frequency modes); red
   and blue are magnified slightly differently (lateral colour);
2. the slide is rendered on a fine grid (phone pixel / 1.5) and converted to light per camera
   channel with the LED spectrum at the axis and the phone sensor's spectral responses;
3. each depth layer is blurred by a spatially varying PSF (sharp at the centre, growing as rho², a
   different width per colour) combined with the defocus of that layer at the phone's low NA;
4. the fine image is resampled onto the sensor through the ground-truth mapping (per channel);
5. vignetting and the LED ring's uneven, coloured illumination multiply the image;
6. auto exposure picks the exposure time; photon shot noise, read noise and pixel gain
   non-uniformity; 10-bit RGGB raw with black level 64;
7. outputs: a DNG of the raw frame (the phone's white balance 'cloudy' as AsShotNeutral), and the
   phone's JPEG (demosaic, white balance, colour matrix, tone curve, sharpening, quality 92).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray

from scopectl.twin.benchtop import srgb_encode
from scopectl.twin.dng import write_dng
from scopectl.twin.illumination import Illumination, IlluminationGeometry
from scopectl.twin.noise import Grid, fractal_noise, upsample_step_grid
from scopectl.twin.optics import blur_varying, defocus_sigma_um, layer_transmittance
from scopectl.twin.slide import Slide, SlideRender
from scopectl.twin.spectra import (
    LED_EMITTERS,
    N_BANDS,
    WAVELENGTHS_NM,
    blackbody,
    cie_xyz_cmfs,
    gaussian_band,
    srgb_from_xyz_matrix,
)
from scopectl.twin.truth import PhoneGroundTruth, WarpMode

__all__ = ["PhoneCapture", "PhoneModel", "PhoneParams"]

_XYZ_FROM_SRGB = np.linalg.inv(srgb_from_xyz_matrix())


@dataclass(frozen=True)
class PhoneParams:
    """Parameters of the phone microscope model; defaults follow the paper's Methods.

    Optics
        ``sensor_pixel_um`` 1.12 µm (Lumia 1020) / ``magnification`` 2.77 → 0.404 µm at the sample.
        ``psf_sigma_um`` Gaussian PSF sigma at the field centre for green (gives ~0.87 µm half-pitch
        resolution: a 1.74 µm period is resolved, 1.0 µm is not); ``psf_channel_scale`` per R, G, B;
        ``psf_edge_growth``: sigma × (1 + growth · rho²), rho = field radius / ``field_radius_um``
        (0.564 mm: a ~1 mm² field); ``effective_na`` for defocus (large depth of field).
    Geometry
        ``distortion_k1`` radial (barrel < 0) at rho = 1; ``lateral_colour`` relative magnification of
        R, G, B; ``warp_rms_px`` and ``warp_period_px`` of the random warp (``warp_modes`` sinusoids);
        ``rotation_deg`` of the sensor relative to the stage axes, ``rotation_jitter_deg``,
        ``position_jitter_um`` (stage error of each capture), ``tilt_per_px`` perspective terms.
    Illumination and sensor
        ``vignetting`` fall-off at rho = 1; ``flux_e_per_s`` electrons/s of a green pixel through glass
        under 12 white LEDs at full brightness; ``full_well_e``, ``read_noise_e`` (ISO 100),
        ``prnu`` pixel gain spread, ``black_level``/``white_level`` (10 bit), ``cfa``;
        ``ae_target`` mean green raw level as a fraction of white, ``ae_jitter``; ``cloudy_k`` colour
        temperature of the 'cloudy' white-balance preset, ``wb_jitter``.
    Processing
        ``tone_contrast`` S-curve strength after the sRGB curve, ``sharpen_amount`` and
        ``sharpen_sigma_px`` of the unsharp mask, ``render_oversample`` of the fine rendering grid.
    """

    sensor_pixel_um: float = 1.12
    magnification: float = 2.77
    lens_focal_length_mm: float = 2.6
    psf_sigma_um: float = 0.50
    psf_channel_scale: tuple[float, float, float] = (1.10, 1.0, 1.15)
    psf_edge_growth: float = 2.0
    field_radius_um: float = 564.0
    effective_na: float = 0.22
    distortion_k1: float = -0.02
    lateral_colour: tuple[float, float, float] = (0.0015, 0.0, -0.0015)
    warp_rms_px: float = 1.0
    warp_period_px: tuple[float, float] = (350.0, 1400.0)
    warp_modes: int = 5
    rotation_deg: float = 0.8
    rotation_jitter_deg: float = 0.2
    position_jitter_um: float = 3.0
    tilt_per_px: float = 2e-6
    optical_axis_offset_px: tuple[float, float] = (0.0, 0.0)
    vignetting: float = 0.30
    veiling_glare: float = 0.04
    flux_e_per_s: float = 1.2e6
    full_well_e: float = 3500.0
    read_noise_e: float = 3.0
    prnu: float = 0.01
    black_level: int = 64
    white_level: int = 1023
    cfa: str = "RGGB"
    iso: int = 100
    ae_target: float = 0.55
    ae_percentile: float = 99.0
    ae_jitter: float = 0.04
    exposure_limits_s: tuple[float, float] = (1.0 / 16000.0, 0.25)
    cloudy_k: float = 7000.0
    wb_jitter: float = 0.02
    tone_contrast: float = 0.12
    sharpen_amount: float = 1.0
    sharpen_sigma_px: float = 1.0
    render_oversample: float = 1.5
    illumination: IlluminationGeometry = field(default_factory=IlluminationGeometry)
    sensor_seed: int = 1020

    @property
    def pixel_size_um(self) -> float:
        return self.sensor_pixel_um / self.magnification


@dataclass
class PhoneCapture:
    """One capture as the phone writes it, plus the ground truth.

    Attributes
    ----------
    dng
        The raw frame as a DNG file (rawpy-decodable).
    jpeg
        The phone's JPEG.
    rgb
        (rows, columns, 3) uint8: the JPEG's decoded pixels.
    settings
        Capture settings as the phone reports them (iso, exposure_s, white_balance, as_shot_neutral,
        color_matrix, black_level, white_level, cfa, jpeg_quality, ...) and the twin's state
        (illumination, focus_z_um).
    truth
        Exact mapping of phone pixels to slide µm.
    """

    dng: bytes
    jpeg: bytes
    rgb: NDArray[np.uint8]
    settings: dict[str, Any]
    truth: PhoneGroundTruth


def _sensor_responses() -> NDArray[np.float64]:
    """Spectral responses (N_BANDS, 3) of a small-pixel BSI CMOS behind an IR-cut filter (R, G, B)."""
    ir_cut = 1.0 / (1.0 + np.exp((WAVELENGTHS_NM - 655.0) / 12.0))
    r = gaussian_band(598.0, 34.0) + 0.10 * gaussian_band(520.0, 40.0) + 0.05 * gaussian_band(450.0, 30.0)
    g = gaussian_band(535.0, 40.0) + 0.06 * gaussian_band(610.0, 30.0) + 0.10 * gaussian_band(470.0, 25.0)
    b = gaussian_band(462.0, 30.0) + 0.08 * gaussian_band(530.0, 35.0)
    return np.stack([r * ir_cut, g * ir_cut, b * ir_cut], axis=1)


def _fit_color_matrix(sens: NDArray[np.float64]) -> NDArray[np.float64]:
    """ColorMatrix1 (XYZ D65 → camera) fitted on smooth test spectra under a D65-like source."""
    rng = np.random.default_rng(24)
    lam = WAVELENGTHS_NM
    spectra = [np.ones(N_BANDS)]
    for _ in range(200):
        s = 0.1 + sum(
            rng.uniform(0, 0.6) * np.exp(-0.5 * ((lam - rng.uniform(400, 700)) / rng.uniform(20, 80)) ** 2)
            for _ in range(3)
        )
        spectra.append(np.clip(s, 0, 1))
    refl = np.array(spectra)
    d65 = blackbody(6504.0)
    xyz = (refl * d65) @ cie_xyz_cmfs()
    cam = (refl * d65) @ sens
    m, *_ = np.linalg.lstsq(xyz, cam, rcond=None)  # xyz @ m ≈ cam
    cm = m.T  # camera = cm @ xyz
    white = cm @ (d65 @ cie_xyz_cmfs())
    return np.asarray(cm / float(np.max(white)), dtype=np.float64)


def _rgb_from_cam(color_matrix: NDArray[np.float64]) -> NDArray[np.float64]:
    """dcraw/LibRaw's camera → linear sRGB matrix derived from ColorMatrix1 (rows of cam←sRGB sum to 1)."""
    cam_rgb = color_matrix @ _XYZ_FROM_SRGB
    cam_rgb = cam_rgb / cam_rgb.sum(axis=1, keepdims=True)
    out: NDArray[np.float64] = np.linalg.inv(cam_rgb)
    return out


def _jpeg_round_trip(processed: NDArray[np.uint8], *, jpeg_quality: int) -> tuple[bytes, NDArray[np.uint8]]:
    """The JPEG file of a processed RGB image and the RGB image decoded back from it."""
    ok, enc = cv2.imencode(
        ".jpg", cv2.cvtColor(processed, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)]
    )
    if not ok:
        raise RuntimeError("OpenCV failed to encode the JPEG")
    jpeg = enc.tobytes()
    decoded = cv2.imdecode(enc, cv2.IMREAD_COLOR)
    if decoded is None:
        raise RuntimeError("OpenCV failed to decode its own JPEG")
    rgb = np.asarray(cv2.cvtColor(decoded, cv2.COLOR_BGR2RGB), dtype=np.uint8)
    return jpeg, rgb


class PhoneModel:
    """Simulates captures of the smartphone microscope (see the module docstring)."""

    def __init__(self, params: PhoneParams | None = None) -> None:
        self.params = params if params is not None else PhoneParams()
        p = self.params
        if p.cfa not in ("RGGB", "BGGR", "GRBG", "GBRG"):
            raise ValueError(f"unknown CFA pattern {p.cfa!r}")
        self._sens = _sensor_responses()
        self.color_matrix = _fit_color_matrix(self._sens)
        self.rgb_from_camera = _rgb_from_cam(self.color_matrix)
        cloudy = blackbody(p.cloudy_k) @ self._sens
        self.cloudy_neutral = cloudy / cloudy[1]

    @property
    def pixel_size_um(self) -> float:
        """Phone pixel size at the sample (~0.404 µm)."""
        return self.params.pixel_size_um

    # ------------------------------------------------------------------ geometry
    def make_truth(
        self,
        *,
        center_x_um: float,
        center_y_um: float,
        shape: tuple[int, int],
        rng: np.random.Generator,
        axis_offset_px: tuple[float, float] | None = None,
    ) -> PhoneGroundTruth:
        """Draw the geometry of one capture: its centre pixel images (center_x_um, center_y_um) ± stage error."""
        p = self.params
        rows, cols = shape
        off = p.optical_axis_offset_px if axis_offset_px is None else axis_offset_px
        centre = ((rows - 1) / 2, (cols - 1) / 2)
        axis = (centre[0] + off[0], centre[1] + off[1])
        theta = math.radians(p.rotation_deg + p.rotation_jitter_deg * rng.standard_normal())
        cx = center_x_um + p.position_jitter_um * rng.standard_normal()
        cy = center_y_um + p.position_jitter_um * rng.standard_normal()
        s = self.pixel_size_um
        ct, st = math.cos(theta), math.sin(theta)
        a = np.array([[s * ct, -s * st, 0.0], [s * st, s * ct, 0.0], [0.0, 0.0, 1.0]])
        # perspective (holder tilt) about the axis, then translate so the centre pixel lands on the stage position
        tilt = np.array(
            [
                [1.0, 0.0, 0.0],
                [0.0, 1.0, 0.0],
                [p.tilt_per_px * rng.standard_normal(), p.tilt_per_px * rng.standard_normal(), 1.0],
            ]
        )
        to_axis = np.array([[1.0, 0.0, -axis[1]], [0.0, 1.0, -axis[0]], [0.0, 0.0, 1.0]])
        h = a @ tilt @ to_axis
        h = h / h[2, 2]
        modes: list[WarpMode] = []
        if p.warp_modes > 0 and p.warp_rms_px > 0:
            amp = p.warp_rms_px * math.sqrt(2.0 / p.warp_modes)
            for _ in range(p.warp_modes):
                period = math.exp(rng.uniform(math.log(p.warp_period_px[0]), math.log(p.warp_period_px[1])))
                ang = rng.uniform(0, 2 * math.pi)
                dang = rng.uniform(0, 2 * math.pi)
                modes.append(
                    WarpMode(
                        amp_col_px=amp * math.cos(dang),
                        amp_row_px=amp * math.sin(dang),
                        freq_col=math.cos(ang) / period,
                        freq_row=math.sin(ang) / period,
                        phase=rng.uniform(0, 2 * math.pi),
                    )
                )
        truth = PhoneGroundTruth(
            homography=h,
            shape=(rows, cols),
            axis_px=axis,
            field_radius_px=p.field_radius_um / s,
            distortion_k1=p.distortion_k1,
            warp_modes=tuple(modes),
            lateral_colour=p.lateral_colour,
            pixel_size_um=s,
            extra={"center_x_um": cx, "center_y_um": cy, "rotation_deg": math.degrees(theta)},
        )
        # translate so that the centre pixel (after the warp) images exactly (cx, cy)
        x0, y0 = truth.to_slide_um(np.array([centre[0]]), np.array([centre[1]]))
        shift = np.array([[1.0, 0.0, cx - float(x0[0])], [0.0, 1.0, cy - float(y0[0])], [0.0, 0.0, 1.0]])
        return dataclasses.replace(truth, homography=shift @ h)

    # ------------------------------------------------------------------ capture
    def capture(
        self,
        slide: Slide,
        *,
        center_x_um: float,
        center_y_um: float,
        focus_z_um: float = 0.0,
        illumination: Illumination,
        seed: int,
        shape: tuple[int, int] = (1024, 1024),
        jpeg_quality: int = 92,
        axis_offset_px: tuple[float, float] | None = None,
    ) -> PhoneCapture:
        """Simulate one capture (DNG + JPEG) of the slide field centred near (center_x_um, center_y_um).

        Parameters
        ----------
        slide
            The specimen.
        center_x_um, center_y_um
            Requested slide position imaged at the capture's centre pixel (the actual one, with the stage
            error, is in ``truth``).
        focus_z_um
            Focus of the phone optics relative to the slide's nominal focal plane.
        illumination
            LED ring state and battery voltage.
        seed
            Seed of everything random in this capture (geometry jitter, exposure, white balance, noise).
        shape
            (rows, columns) of the capture, even numbers (a region of the sensor around the axis).
        jpeg_quality
            JPEG quality (1-100).
        axis_offset_px
            Position (rows, columns) of the optical axis relative to the capture's centre; default
            ``params.optical_axis_offset_px`` (0, 0). The paper's phone images were four 1024² tiles around
            the axis, i.e. offsets of (±512, ±512).
        """
        rows, cols = int(shape[0]), int(shape[1])
        if rows < 16 or cols < 16 or rows > 8192 or cols > 8192 or rows % 2 or cols % 2:
            raise ValueError(f"capture shape must be even and within 16..8192, got {shape}")
        if not 1 <= jpeg_quality <= 100:
            raise ValueError(f"jpeg_quality must be 1..100, got {jpeg_quality}")
        p = self.params
        rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, 0x70686F6E])
        truth = self.make_truth(
            center_x_um=center_x_um,
            center_y_um=center_y_um,
            shape=(rows, cols),
            rng=rng,
            axis_offset_px=axis_offset_px,
        )
        linear, illum_info = self._optical_image(
            slide, truth, focus_z_um=focus_z_um, illumination=illumination
        )
        raw, exposure_s = self._expose(linear, illum_info["flux_e_per_s"], rng=rng)
        neutral = self.cloudy_neutral * (1.0 + p.wb_jitter * rng.standard_normal(3))
        neutral = neutral / neutral[1]
        dng = write_dng(
            raw,
            cfa=p.cfa,
            black_level=p.black_level,
            white_level=p.white_level,
            color_matrix=self.color_matrix,
            as_shot_neutral=neutral,
            exposure_s=exposure_s,
            iso=p.iso,
        )
        processed = self.process(raw, as_shot_neutral=neutral)
        jpeg, rgb = _jpeg_round_trip(processed, jpeg_quality=jpeg_quality)
        settings = self._settings(
            exposure_s=exposure_s,
            neutral=neutral,
            jpeg_quality=jpeg_quality,
            focus_z_um=focus_z_um,
            illumination=illumination,
        )
        return PhoneCapture(dng=dng, jpeg=jpeg, rgb=np.ascontiguousarray(rgb), settings=settings, truth=truth)

    def _settings(
        self,
        *,
        exposure_s: float,
        neutral: NDArray[np.float64],
        jpeg_quality: int,
        focus_z_um: float,
        illumination: Illumination,
    ) -> dict[str, Any]:
        """The capture settings a real phone app would record (EXIF and DNG tags, the LED ring state)."""
        p = self.params
        return {
            "iso": p.iso,
            "exposure_s": exposure_s,
            "white_balance": "cloudy",
            "as_shot_neutral": neutral.tolist(),
            "color_matrix": self.color_matrix.tolist(),
            "black_level": p.black_level,
            "white_level": p.white_level,
            "cfa": p.cfa,
            "jpeg_quality": int(jpeg_quality),
            "focus_z_um": float(focus_z_um),
            "pixel_size_um": self.pixel_size_um,
            "lens_focal_length_mm": p.lens_focal_length_mm,
            "magnification": p.magnification,
            "illumination": illumination.to_dict(),
            "make": "Nokia",
            "model": "Lumia 1020 (scopectl twin)",
        }

    def _illumination_spectrum(
        self, illumination: Illumination, x_mm: NDArray[np.float64], y_mm: NDArray[np.float64]
    ) -> NDArray[np.float64]:
        """Relative spectral irradiance (..., N_BANDS) at sample points (mm from the axis)."""
        irr = self.params.illumination.die_irradiance(illumination, x_mm, y_mm)  # (..., 3 dies)
        spec = np.stack([e.power * e.spectrum for e in LED_EMITTERS], axis=0)  # (3, bands)
        out: NDArray[np.float64] = irr @ spec
        return out

    def _optical_image(
        self, slide: Slide, truth: PhoneGroundTruth, *, focus_z_um: float, illumination: Illumination
    ) -> tuple[NDArray[np.float32], dict[str, Any]]:
        """Light per channel on the sensor, relative to clear glass at the axis: (rows, cols, 3) float32."""
        p = self.params
        rows, cols = truth.shape
        render = self._render_field(slide, truth)

        # spectrum at the axis; spatial colour variation applied below as per-channel gains
        spec0 = self._illumination_spectrum(illumination, np.zeros(()), np.zeros(()))
        resp0 = spec0[:, None] * self._sens
        chan0 = resp0.sum(axis=0)  # clear-glass signal per channel at the axis (relative units)
        weights = resp0 / np.maximum(chan0, 1e-12)[None, :]

        fine = self._blurred_layers(render, truth, weights, focus_z_um=focus_z_um)
        sensor = self._to_sensor(fine, render.grid, truth)
        step = 16  # the illumination gain is computed every 16 sensor pixels, then resized
        gain = self._illumination_gain(truth, illumination, chan0, step=step)
        # veiling glare of the uncoated external lens: a fraction of the light spread evenly
        if p.veiling_glare:
            sensor = (1.0 - p.veiling_glare) * sensor + p.veiling_glare * sensor.mean(
                axis=(0, 1), keepdims=True
            )
        sensor *= upsample_step_grid(gain, step=step, shape=(rows, cols))
        # absolute flux: electrons/s per channel through clear glass at the axis
        white_chan = (
            self._illumination_spectrum(Illumination.white(), np.zeros(()), np.zeros(())) @ self._sens
        )
        flux = p.flux_e_per_s * chan0 / white_chan[1]
        return sensor, {"flux_e_per_s": flux}

    def _render_field(self, slide: Slide, truth: PhoneGroundTruth) -> SlideRender:
        """The slide rendered at the fine sampling over the capture's extent (all channels), plus room for
        the blur."""
        p = self.params
        rows, cols = truth.shape
        fine_px = self.pixel_size_um / p.render_oversample
        edge_r = np.concatenate(
            [np.zeros(cols), np.full(cols, rows - 1), np.arange(rows), np.arange(rows)]
        ).astype(np.float64)
        edge_c = np.concatenate(
            [np.arange(cols), np.arange(cols), np.zeros(rows), np.full(rows, cols - 1)]
        ).astype(np.float64)
        xs_all, ys_all = [], []
        for ch in range(3):
            ex, ey = truth.to_slide_um(edge_r, edge_c, channel=ch)
            xs_all.append(ex)
            ys_all.append(ey)
        ex = np.concatenate(xs_all)
        ey = np.concatenate(ys_all)
        max_sigma = p.psf_sigma_um * max(p.psf_channel_scale) * (1 + p.psf_edge_growth * 2.0) + 8.0
        margin = 4.0 * max_sigma + 2.0 * fine_px
        x0 = math.floor((ex.min() - margin) / fine_px) * fine_px
        y0 = math.floor((ey.min() - margin) / fine_px) * fine_px
        fshape = (
            math.ceil((ey.max() + margin - y0) / fine_px) + 1,
            math.ceil((ex.max() + margin - x0) / fine_px) + 1,
        )
        return slide.render(x0_um=x0, y0_um=y0, shape=fshape, pixel_size_um=fine_px)

    def _blurred_layers(
        self,
        render: SlideRender,
        truth: PhoneGroundTruth,
        weights: NDArray[np.float64],
        *,
        focus_z_um: float,
    ) -> NDArray[np.float32]:
        """Transmittance per channel on the fine grid, every layer blurred by the PSF that grows towards the
        field edge and by its defocus: (rows, cols, 3) float32."""
        p = self.params
        px = self.pixel_size_um
        fine_px = px / p.render_oversample
        grid = render.grid
        # field position of each fine pixel (for the aberration growth)
        ax_x, ax_y = truth.to_slide_um(np.array([truth.axis_px[0]]), np.array([truth.axis_px[1]]))
        dx = grid.xs[None, :] - ax_x[0]
        dy = grid.ys[:, None] - ax_y[0]
        rho2 = ((dx * dx + dy * dy) / p.field_radius_um**2).astype(np.float32)
        pix_sigma2 = (px**2) / 12.0
        fine = np.ones((*grid.shape, 3), dtype=np.float32)
        for layer in render.layers:
            trans = layer_transmittance(render, layer, weights)
            if trans is None:
                continue
            dz = layer.z_um + render.surface_um - np.float32(focus_z_um)
            def2 = np.square(defocus_sigma_um(dz, na=p.effective_na)).astype(np.float32)
            for ch in range(3):
                s0 = p.psf_sigma_um * p.psf_channel_scale[ch]
                sig = s0 * (1.0 + p.psf_edge_growth * rho2)
                sig_px = np.sqrt(sig * sig + def2 + np.float32(pix_sigma2)) / np.float32(fine_px)
                fine[..., ch] *= blur_varying(np.ascontiguousarray(trans[..., ch]), sig_px.astype(np.float32))
        return fine

    def _to_sensor(
        self, fine: NDArray[np.float32], grid: Grid, truth: PhoneGroundTruth
    ) -> NDArray[np.float32]:
        """The fine image resampled onto the sensor through the ground-truth mapping, per channel."""
        rows, cols = truth.shape
        fine_px = self.pixel_size_um / self.params.render_oversample
        # (the mapping is smooth: evaluate it every 8 pixels and interpolate, error < 1e-3 px)
        step_m = 8
        rr, cc = np.meshgrid(
            np.arange(0, rows + step_m, step_m, dtype=np.float64),
            np.arange(0, cols + step_m, step_m, dtype=np.float64),
            indexing="ij",
        )
        sensor = np.empty((rows, cols, 3), dtype=np.float32)
        for ch in range(3):
            sx, sy = truth.to_slide_um(rr, cc, channel=ch)
            coarse_map = np.stack([(sx - grid.x0_um) / fine_px, (sy - grid.y0_um) / fine_px], axis=2)
            full_map = upsample_step_grid(coarse_map.astype(np.float32), step=step_m, shape=(rows, cols))
            map_x = np.ascontiguousarray(full_map[..., 0])
            map_y = np.ascontiguousarray(full_map[..., 1])
            sensor[..., ch] = cv2.remap(
                np.ascontiguousarray(fine[..., ch]),
                map_x,
                map_y,
                cv2.INTER_LINEAR,
                borderMode=cv2.BORDER_REPLICATE,
            )
        return sensor

    def _illumination_gain(
        self, truth: PhoneGroundTruth, illumination: Illumination, chan0: NDArray[np.float64], *, step: int
    ) -> NDArray[np.float32]:
        """Vignetting and illumination gain per channel relative to the axis, on a coarse sensor grid (every
        ``step`` pixels; the caller resizes it)."""
        p = self.params
        rows, cols = truth.shape
        px = self.pixel_size_um
        cr = np.arange(0, rows + step, step, dtype=np.float64)
        ccol = np.arange(0, cols + step, step, dtype=np.float64)
        gr, gc = np.meshgrid(cr, ccol, indexing="ij")
        drow = gr - truth.axis_px[0]
        dcol = gc - truth.axis_px[1]
        rho2_s = (drow * drow + dcol * dcol) / truth.field_radius_px**2
        vig = 1.0 - p.vignetting * rho2_s
        x_mm = dcol * px * 1e-3
        y_mm = drow * px * 1e-3
        spec = self._illumination_spectrum(illumination, x_mm, y_mm)
        chan = (spec @ self._sens) / np.maximum(chan0, 1e-12)[None, None, :]
        geo = p.illumination
        ugrid = Grid(x0_um=0.0, y0_um=0.0, shape=gr.shape, pixel_size_um=step * px)
        uneven = 1.0 + geo.nonuniformity * fractal_noise(
            ugrid, seed=geo.unit_seed, salt=3, scale_um=400.0, octaves=2
        )
        return (chan * (vig * uneven)[..., None]).astype(np.float32)

    def _cfa_masks(self, shape: tuple[int, int]) -> NDArray[np.int64]:
        """Channel index (0 R, 1 G, 2 B) of every pixel."""
        code = {"R": 0, "G": 1, "B": 2}
        pat = [code[ch] for ch in self.params.cfa]
        idx = np.empty(shape, dtype=np.int64)
        idx[0::2, 0::2] = pat[0]
        idx[0::2, 1::2] = pat[1]
        idx[1::2, 0::2] = pat[2]
        idx[1::2, 1::2] = pat[3]
        return idx

    def _expose(
        self, light: NDArray[np.float32], flux: NDArray[np.float64], *, rng: np.random.Generator
    ) -> tuple[NDArray[np.uint16], float]:
        """Auto exposure, noise and quantisation to a 10-bit raw CFA frame."""
        p = self.params
        rows, cols = light.shape[:2]
        idx = self._cfa_masks((rows, cols))
        mosaic = np.take_along_axis(light, idx[..., None], axis=2)[..., 0]
        rate = mosaic * flux.astype(np.float32)[idx]  # electrons per second
        green = rate[idx == 1]
        metered = float(np.percentile(green, p.ae_percentile)) if green.size else 0.0
        target = p.ae_target * (1.0 + p.ae_jitter * rng.standard_normal()) * p.full_well_e
        exposure = target / max(metered, 1e-9)
        lo, hi = p.exposure_limits_s
        exposure = float(np.clip(exposure, lo, hi))
        exposure = round(exposure * 1e6) / 1e6
        exposure = max(exposure, 1e-6)
        prnu_rng = np.random.default_rng([p.sensor_seed, rows, cols])
        gain = 1.0 + p.prnu * prnu_rng.standard_normal((rows, cols))
        electrons = np.clip(rate.astype(np.float64) * exposure * gain, 0.0, 4.0 * p.full_well_e)
        electrons = rng.poisson(electrons).astype(np.float64) + p.read_noise_e * rng.standard_normal(
            (rows, cols)
        )
        electrons = np.minimum(electrons, p.full_well_e)
        dn = p.black_level + electrons * ((p.white_level - p.black_level) / p.full_well_e)
        raw = np.clip(np.rint(dn), 0, p.white_level).astype(np.uint16)
        return raw, exposure

    def process(self, raw: NDArray[np.uint16], *, as_shot_neutral: NDArray[np.float64]) -> NDArray[np.uint8]:
        """The phone's image processing: demosaic, white balance, colour matrix, tone curve, sharpening.

        Returns the 8-bit sRGB image that is then JPEG-encoded.
        """
        p = self.params
        codes = {
            "RGGB": "COLOR_BayerRGGB2RGB",
            "BGGR": "COLOR_BayerBGGR2RGB",
            "GRBG": "COLOR_BayerGRBG2RGB",
            "GBRG": "COLOR_BayerGBRG2RGB",
        }
        name = codes[p.cfa]
        code = getattr(cv2, name + "_EA", None) or getattr(cv2, name)
        rgb = cv2.cvtColor(raw, code).astype(np.float32)
        rgb = (rgb - np.float32(p.black_level)) / np.float32(p.white_level - p.black_level)
        wb = (1.0 / np.asarray(as_shot_neutral, dtype=np.float64)).astype(np.float32)
        rgb = np.clip(rgb * wb, 0.0, 1.0)
        lin = rgb @ self.rgb_from_camera.T.astype(np.float32)
        enc = srgb_encode(np.clip(lin, 0.0, 1.0))
        if p.tone_contrast:
            enc = enc - np.float32(p.tone_contrast / (2 * math.pi)) * np.sin(np.float32(2 * math.pi) * enc)
        if p.sharpen_amount:
            blur = cv2.GaussianBlur(enc, (0, 0), sigmaX=p.sharpen_sigma_px, sigmaY=p.sharpen_sigma_px)
            enc = enc + np.float32(p.sharpen_amount) * (enc - blur)
        out: NDArray[np.uint8] = np.clip(np.rint(enc * 255.0), 0, 255).astype(np.uint8)
        return out
