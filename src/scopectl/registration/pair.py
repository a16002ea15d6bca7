"""Register one phone capture against the benchtop mosaic and render the registered pair.

Geometry (all benchtop quantities in full-resolution mosaic pixels, pixel centres, (row, col)):

* FOV matching gives ``H``: phone (col, row, 1) -> mosaic (col, row, 1).
* The *target* is an axis-aligned crop of the mosaic, ``target_origin_px`` (r0, c0) and
  ``target_shape_px``, inside the capture's footprint (inset by ``margin_px``), with sides that are
  multiples of the ratio's numerator, so that the registered phone image has integer size.  The target
  is never resampled: training targets are mosaic pixels.
* The elastic step warps the phone image onto the target: with ``D`` the displacement field, target
  pixel ``x`` shows the phone content at mosaic point ``x + D(x)``, i.e. at phone pixel
  ``H⁻¹(x + D(x) + origin)`` (then through the optional fixed distortion correction ``p + δ(p)``).
* The registered phone image has a pixel exactly ``L`` (= ratio, 5/2 by default) target pixels wide:
  its pixel ``i`` covers target pixels ``[L i, L (i + 1))``, centre ``L i + (L - 1) / 2``.  So a
  60×60 input patch at (i, j) (i, j multiples of the ratio's denominator) corresponds exactly to the
  150×150 target patch at (L i, L j).
* The stored ``shift_map`` (2, H, W) is ``D`` at the registered pixels' centres divided by ``L``, i.e.
  in registered-phone pixels; :func:`render_registered` rebuilds the registered image from the raw
  capture, ``H``, the shift map and the target origin alone.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Literal

import cv2
import numpy as np
from numpy.typing import NDArray
from pydantic import Field

from scopectl.config.base import FrozenModel
from scopectl.errors import RegistrationError
from scopectl.metrics import LUMA_BT601
from scopectl.registration.checks import (
    CaptureChecks,
    CaptureLimits,
    Flag,
    consistency,
    fit_phone_blur,
    judge,
)
from scopectl.registration.elastic import (
    DisplacementField,
    ElasticParams,
    ElasticResult,
    check_only,
    elastic_register,
)
from scopectl.registration.fov import (
    FovMatch,
    FovParams,
    MosaicIndex,
    MosaicLike,
    match_fov,
    project_points,
)

__all__ = [
    "PairGeometry",
    "RegisterParams",
    "RegisteredPair",
    "parse_ratio",
    "register_pair",
    "registration_images",
    "render_registered",
    "target_region",
]

F32 = NDArray[np.float32]
F64 = NDArray[np.float64]


def parse_ratio(text: str) -> Fraction:
    """Parse "5/2" or "2.5" into a positive fraction with a small denominator.

    Raises
    ------
    RegistrationError
        If the text is not a positive number or fraction.
    """
    try:
        value = Fraction(text.strip()).limit_denominator(16)
    except (ValueError, ZeroDivisionError):
        raise RegistrationError(f"ratio '{text}' is not a number or fraction such as 5/2.") from None
    if value <= 0:
        raise RegistrationError(f"ratio '{text}' must be positive.")
    return value


class RegisterParams(FrozenModel):
    """Parameters of the registration of one capture."""

    ratio: str = "5/2"
    """Registered phone pixel / benchtop pixel (L; the paper: 2.5 = 0.925 µm / 0.37 µm)."""
    margin_px: int = Field(default=32, ge=0, le=1024)
    """Target crop inset from the capture's footprint, and extra phone data kept around it (mosaic px)."""
    elastic: bool = True
    """Run the pyramid elastic registration (else only the homography and any fixed correction)."""
    limits: CaptureLimits = CaptureLimits()
    """Alignment limits a capture must meet (:mod:`scopectl.registration.checks`); a capture that misses one
    is stored with its measurements and flagged, and ``dataset build`` can admit it with looser limits."""
    channel: Literal["green", "luma", "matched"] = "green"
    """Image the elastic step correlates (see :func:`registration_images`)."""
    fov: FovParams = FovParams()
    elastic_params: ElasticParams = ElasticParams()

    @property
    def ratio_fraction(self) -> Fraction:
        return parse_ratio(self.ratio)


@dataclass(frozen=True)
class PairGeometry:
    """Where the registered pair lies in the mosaic.

    ``target_origin_px`` (r0, c0) and ``target_shape_px`` give the target crop; ``ratio`` is L;
    ``registered_shape`` the registered phone image's (rows, cols).
    """

    target_origin_px: tuple[int, int]
    target_shape_px: tuple[int, int]
    ratio: Fraction

    @property
    def registered_shape(self) -> tuple[int, int]:
        return (int(self.target_shape_px[0] / self.ratio), int(self.target_shape_px[1] / self.ratio))

    def registered_centres(self) -> tuple[F64, F64]:
        """1-D target-crop coordinates of the registered pixels' centres (rows, cols)."""
        lf = float(self.ratio)
        rows = lf * np.arange(self.registered_shape[0], dtype=np.float64) + (lf - 1) / 2
        cols = lf * np.arange(self.registered_shape[1], dtype=np.float64) + (lf - 1) / 2
        return rows, cols

    def to_dict(self) -> dict[str, Any]:
        return {
            "target_origin_px": list(self.target_origin_px),
            "target_shape_px": list(self.target_shape_px),
            "ratio": f"{self.ratio.numerator}/{self.ratio.denominator}",
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PairGeometry:
        o, s = d["target_origin_px"], d["target_shape_px"]
        return cls((int(o[0]), int(o[1])), (int(s[0]), int(s[1])), parse_ratio(str(d["ratio"])))


def target_region(
    footprint_px: F64, *, mosaic_shape: tuple[int, int], margin_px: int, ratio: Fraction
) -> PairGeometry:
    """The largest axis-aligned target crop inside a capture's footprint, inset by ``margin_px``.

    ``footprint_px`` are the (row, col) of the capture's corners TL, TR, BL, BR in the mosaic.  The
    crop's sides are multiples of ``ratio.numerator`` so the registered image has integer size.

    Raises
    ------
    RegistrationError
        If the crop would be empty.
    """
    tl, tr, bl, br = footprint_px
    top = max(tl[0], tr[0]) + margin_px
    bottom = min(bl[0], br[0]) - margin_px
    left = max(tl[1], bl[1]) + margin_px
    right = min(tr[1], br[1]) - margin_px
    r0 = max(0, math.ceil(top))
    c0 = max(0, math.ceil(left))
    r1 = min(mosaic_shape[0] - 1, math.floor(bottom))
    c1 = min(mosaic_shape[1] - 1, math.floor(right))
    q = ratio.numerator
    rows = (r1 - r0 + 1) // q * q
    cols = (c1 - c0 + 1) // q * q
    if rows < 2 * q or cols < 2 * q:
        raise RegistrationError(
            "the capture's footprint inside the mosaic is too small for a registered pair."
        )
    # centre the (shrunk) crop in the available span
    r0 += (r1 - r0 + 1 - rows) // 2
    c0 += (c1 - c0 + 1 - cols) // 2
    return PairGeometry((r0, c0), (rows, cols), ratio)


def _phone_map(
    homography: F64,
    geom: PairGeometry,
    rows: F64,
    cols: F64,
    disp_r: F32 | F64,
    disp_c: F32 | F64,
    correction: DisplacementField | None,
) -> tuple[F32, F32]:
    """Phone (row, col) showing the target-crop points (rows, cols) displaced by (disp_r, disp_c)."""
    hinv = np.linalg.inv(homography)
    mr = rows + disp_r + geom.target_origin_px[0]
    mc = cols + disp_c + geom.target_origin_px[1]
    pr, pc = project_points(hinv, mr, mc)
    if correction is not None:
        dr, dc = correction.sample(pr.astype(np.float32), pc.astype(np.float32))
        pr, pc = pr + dr, pc + dc
    return pr.astype(np.float32), pc.astype(np.float32)


def _antialias(phone_rgb: NDArray[np.uint8], *, reduction: float) -> NDArray[np.uint8]:
    """Gaussian pre-filter before sampling at ``reduction`` phone pixels per output pixel.

    σ = (reduction - 1) / 2 phone pixels, the choice of scikit-image's ``rescale(anti_aliasing=True)``.
    """
    if reduction <= 1.0:
        return phone_rgb
    sigma = (reduction - 1.0) / 2.0
    return np.asarray(cv2.GaussianBlur(phone_rgb, (0, 0), sigma), dtype=np.uint8)


def render_registered(
    phone_rgb: NDArray[np.uint8],
    *,
    homography: F64,
    geometry: PairGeometry,
    shift_map: F32 | None,
    correction: DisplacementField | None = None,
) -> NDArray[np.uint8]:
    """The registered phone image (pixel = L target pixels) from the raw capture.

    Parameters
    ----------
    phone_rgb
        The capture as stored (H×W×3 uint8).
    homography
        Phone (col, row, 1) -> mosaic (col, row, 1).
    geometry
        The target crop and ratio.
    shift_map
        (2, h, w) displacement at the registered pixels in registered pixels (None: homography only).
    correction
        Fixed phone-side distortion correction (phone pixels), if one was applied.
    """
    rows_c, cols_c = geometry.registered_centres()
    rr, cc = np.meshgrid(rows_c, cols_c, indexing="ij")
    lf = float(geometry.ratio)
    if shift_map is None:
        dr = np.zeros(rr.shape, np.float32)
        dc = np.zeros(rr.shape, np.float32)
    else:
        if shift_map.shape != (2, *geometry.registered_shape):
            raise RegistrationError(
                f"shift map has shape {shift_map.shape}, expected (2, {geometry.registered_shape[0]}, "
                f"{geometry.registered_shape[1]}); the registration record is inconsistent, register again."
            )
        dr, dc = lf * shift_map[0], lf * shift_map[1]
    pr, pc = _phone_map(homography, geometry, rr, cc, dr, dc, correction)
    scale = math.sqrt(abs(float(np.linalg.det(homography[:2, :2]))))  # mosaic px per phone px (approx.)
    src = _antialias(phone_rgb, reduction=lf / max(scale, 1e-6))
    return np.asarray(
        cv2.remap(src, pc, pr, cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT_101), dtype=np.uint8
    )


@dataclass(frozen=True)
class RegisteredPair:
    """A registered phone/benchtop pair and everything needed to reproduce and judge it."""

    match: FovMatch
    geometry: PairGeometry
    registered: NDArray[np.uint8]
    target: NDArray[np.uint8]
    shift_map: F32 | None
    elastic: ElasticResult
    unregistered: NDArray[np.uint8]
    failure: str | None = None
    channel_weights: list[float] = field(default_factory=list)
    timings_s: dict[str, float] = field(default_factory=dict)
    checks: CaptureChecks | None = None
    flags: list[Flag] = field(default_factory=list)

    @property
    def quality(self) -> float:
        return self.elastic.quality


def _project(
    phone_rgb: NDArray[np.uint8],
    homography: F64,
    geom: PairGeometry,
    margin_px: int,
    correction: DisplacementField | None,
) -> F32:
    """The phone image (float RGB) in target geometry, extended by ``margin_px`` per side."""
    rows, cols = geom.target_shape_px
    src = phone_rgb.astype(np.float32)
    if correction is None:
        shift = np.array(
            [
                [1.0, 0.0, margin_px - geom.target_origin_px[1]],
                [0.0, 1.0, margin_px - geom.target_origin_px[0]],
                [0.0, 0.0, 1.0],
            ]
        )
        warped = cv2.warpPerspective(
            src,
            shift @ homography,
            (cols + 2 * margin_px, rows + 2 * margin_px),
            flags=cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_REFLECT_101,
        )
        return np.asarray(warped, dtype=np.float32)
    r = np.arange(-margin_px, rows + margin_px, dtype=np.float64)
    c = np.arange(-margin_px, cols + margin_px, dtype=np.float64)
    rr, cc = np.meshgrid(r, c, indexing="ij")
    z = np.zeros(rr.shape, np.float32)
    pr, pc = _phone_map(homography, geom, rr, cc, z, z, correction)
    return np.asarray(
        cv2.remap(src, pc, pr, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101), dtype=np.float32
    )


_LUMA = LUMA_BT601.astype(np.float32)


def registration_images(
    projected: F32, target: NDArray[np.uint8], *, channel: str, margin_px: int
) -> tuple[F32, F32, list[float]]:
    """The single-channel moving and reference images the elastic step correlates.

    ``green``: both green channels.  ``luma``: both BT.601 luma.  ``matched``: the benchtop green
    channel, and the phone's RGB combined with the weights (and offset) that best predict it,
    fitted by least squares on blurred images (σ = 3 px, so that the homography's residual
    misalignment hardly matters).  The two instruments render stains with different spectra: a
    fixed channel can show one cell type dark on the benchtop and pale on the phone, which biases
    the correlation; the fitted combination makes the intensities comparable.  Returns the moving
    image, the reference image and the weights (R, G, B, offset).
    """
    tgt = target.astype(np.float32)
    if channel == "green":
        return (
            np.ascontiguousarray(projected[..., 1]),
            np.ascontiguousarray(tgt[..., 1]),
            [0.0, 1.0, 0.0, 0.0],
        )
    if channel == "luma":
        return projected @ _LUMA, tgt @ _LUMA, [*_LUMA.tolist(), 0.0]
    ref = np.ascontiguousarray(tgt[..., 1])
    rows, cols = ref.shape
    inner = projected[margin_px : margin_px + rows, margin_px : margin_px + cols]
    step = max(1, int(math.sqrt(rows * cols / 250_000)))
    xb = np.asarray(cv2.GaussianBlur(inner, (0, 0), 3.0), np.float32)[::step, ::step].reshape(-1, 3)
    yb = np.asarray(cv2.GaussianBlur(ref, (0, 0), 3.0), np.float32)[::step, ::step].ravel()
    a = np.concatenate([xb, np.ones((xb.shape[0], 1), np.float32)], axis=1).astype(np.float64)
    coef, *_ = np.linalg.lstsq(a, yb.astype(np.float64), rcond=None)
    if not np.all(np.isfinite(coef)) or np.allclose(coef[:3], 0.0):
        return np.ascontiguousarray(projected[..., 1]), ref, [0.0, 1.0, 0.0, 0.0]
    moving = projected @ coef[:3].astype(np.float32) + np.float32(coef[3])
    return np.asarray(moving, np.float32), ref, [float(v) for v in coef]


@contextmanager
def _opencv_errors() -> Iterator[None]:
    """Turn OpenCV exceptions into one-line registration errors."""
    try:
        yield
    except cv2.error as exc:
        first = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        raise RegistrationError(f"OpenCV failed while registering the capture ({first}).") from None


def _corrected(phone_rgb: NDArray[np.uint8], correction: DisplacementField | None) -> NDArray[np.uint8]:
    """The capture with a fixed distortion correction applied (itself when there is none)."""
    if correction is None:
        return phone_rgb
    rows_p, cols_p = phone_rgb.shape[:2]
    pr, pc = np.meshgrid(
        np.arange(rows_p, dtype=np.float32), np.arange(cols_p, dtype=np.float32), indexing="ij"
    )
    dr, dc = correction.sample(pr, pc)
    return np.asarray(
        cv2.remap(phone_rgb, pc + dc, pr + dr, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101),
        dtype=np.uint8,
    )


def _elastic(
    moving: F32, reference: F32, geom: PairGeometry, *, params: RegisterParams
) -> tuple[ElasticResult, F32 | None]:
    """The elastic registration and its shift map on the registered grid (only the block check, and no shift
    map, when ``params.elastic`` is off)."""
    p = params
    if not p.elastic:
        return check_only(moving, reference, params=p.elastic_params, margin_px=p.margin_px), None
    elastic = elastic_register(moving, reference, params=p.elastic_params, margin_px=p.margin_px)
    rc, cc = geom.registered_centres()
    shift_map = (elastic.field.sample_grid(rc, cc) / float(p.ratio_fraction)).astype(np.float32)
    return elastic, shift_map


def _judge_alignment(
    moving: F32, reference: F32, elastic: ElasticResult, match: FovMatch, *, params: RegisterParams
) -> tuple[ElasticResult, CaptureChecks]:
    """The capture checks, with the block check redone against the benchtop degraded to the phone's
    resolution, so that the phone's blur alone does not lower the scores (scopectl.registration.checks)."""
    p = params
    rows_t, cols_t = reference.shape
    fr, fc = elastic.field.sample_grid(
        np.arange(rows_t, dtype=np.float32), np.arange(cols_t, dtype=np.float32)
    )
    sigma = fit_phone_blur(moving, reference, margin_px=p.margin_px, field_rc=(fr, fc))
    degraded = reference if sigma == 0 else np.asarray(cv2.GaussianBlur(reference, (0, 0), sigma), np.float32)
    check = check_only(
        moving, degraded, params=p.elastic_params, margin_px=p.margin_px, initial=elastic.field
    ).check
    elastic = dataclasses.replace(elastic, check=check)
    checks = CaptureChecks(
        coverage=elastic.coverage,
        residual_px=elastic.residual_px,
        consistency=consistency(check.shift_px, check.kept, tolerance_px=p.limits.consistency_px),
        inlier_ratio=match.inliers / max(1, match.matches),
        quality=elastic.quality,
        blur_sigma_px=sigma,
    )
    return elastic, checks


def _check_inputs(phone_rgb: NDArray[np.uint8], *, phone_pixel_um: float, mosaic_pixel_um: float) -> None:
    """Raise a :class:`RegistrationError` unless the capture is H×W×3 uint8 and both pixel sizes are positive."""
    if phone_rgb.ndim != 3 or phone_rgb.shape[2] != 3 or phone_rgb.dtype != np.uint8:
        raise RegistrationError(
            f"the capture must be an H×W×3 uint8 image, got {phone_rgb.shape} {phone_rgb.dtype}."
        )
    if not (
        math.isfinite(phone_pixel_um)
        and phone_pixel_um > 0
        and math.isfinite(mosaic_pixel_um)
        and mosaic_pixel_um > 0
    ):
        raise RegistrationError(
            f"pixel sizes must be positive (phone {phone_pixel_um} µm, mosaic {mosaic_pixel_um} µm); check the slide's metadata."
        )


def _target_crop(
    phone_rgb: NDArray[np.uint8],
    mosaic: MosaicLike,
    match: FovMatch,
    *,
    correction: DisplacementField | None,
    params: RegisterParams,
) -> tuple[PairGeometry, NDArray[np.uint8], NDArray[np.uint8]]:
    """The target geometry inside the located footprint, the benchtop crop it covers and the capture
    resampled onto it by the homography alone (the unregistered view)."""
    geom = target_region(
        match.footprint_px,
        mosaic_shape=(int(mosaic.shape[0]), int(mosaic.shape[1])),
        margin_px=params.margin_px,
        ratio=params.ratio_fraction,
    )
    (r0, c0), (rows, cols) = geom.target_origin_px, geom.target_shape_px
    target = np.ascontiguousarray(np.asarray(mosaic[r0 : r0 + rows, c0 : c0 + cols]), dtype=np.uint8)
    unregistered = render_registered(
        phone_rgb, homography=match.homography, geometry=geom, shift_map=None, correction=correction
    )
    return geom, target, unregistered


def _align(
    phone_rgb: NDArray[np.uint8],
    target: NDArray[np.uint8],
    match: FovMatch,
    geom: PairGeometry,
    *,
    correction: DisplacementField | None,
    params: RegisterParams,
) -> tuple[list[float], ElasticResult, F32 | None, CaptureChecks]:
    """The elastic step on the projected capture: channel weights, elastic result, shift map and checks."""
    projected = _project(phone_rgb, match.homography, geom, params.margin_px, correction)
    moving, reference, weights = registration_images(
        projected, target, channel=params.channel, margin_px=params.margin_px
    )
    elastic, shift_map = _elastic(moving, reference, geom, params=params)
    elastic, checks = _judge_alignment(moving, reference, elastic, match, params=params)
    return weights, elastic, shift_map, checks


def register_pair(
    phone_rgb: NDArray[np.uint8],
    mosaic: MosaicLike,
    *,
    phone_pixel_um: float,
    mosaic_pixel_um: float,
    params: RegisterParams | None = None,
    index: MosaicIndex | Callable[[], MosaicIndex] | None = None,
    prior_center_px: tuple[float, float] | None = None,
    correction: DisplacementField | None = None,
) -> RegisteredPair:
    """Locate, elastically register and resample one phone capture.

    Parameters
    ----------
    phone_rgb
        The capture (H×W×3 uint8).
    mosaic
        The benchtop mosaic (lazy H×W×3 uint8).
    phone_pixel_um, mosaic_pixel_um
        Nominal pixel sizes at the sample.
    params
        Registration parameters.
    index
        The mosaic's coarse SIFT index (shared between captures of one slide), or a function that
        returns it when it is needed.
    prior_center_px
        Expected (row, col) of the capture's centre in the mosaic.
    correction
        Fixed phone-side distortion correction (see :mod:`scopectl.registration.distortion`), applied
        before the elastic step.

    Returns
    -------
    RegisteredPair
        With ``checks`` (the alignment measured against the benchtop degraded to the phone's
        resolution), and ``flags``/``failure`` set when a limit of ``params.limits`` is not met.

    Raises
    ------
    RegistrationError
        When the capture cannot be located (the message says why).
    """
    _check_inputs(phone_rgb, phone_pixel_um=phone_pixel_um, mosaic_pixel_um=mosaic_pixel_um)
    with _opencv_errors():
        p = params or RegisterParams()
        t0 = time.perf_counter()
        match = match_fov(
            _corrected(phone_rgb, correction),
            mosaic,
            phone_pixel_um=phone_pixel_um,
            mosaic_pixel_um=mosaic_pixel_um,
            params=p.fov,
            index=index,
            prior_center_px=prior_center_px,
        )
        t1 = time.perf_counter()
        geom, target, unregistered = _target_crop(phone_rgb, mosaic, match, correction=correction, params=p)
        t2 = time.perf_counter()
        weights, elastic, shift_map, checks = _align(
            phone_rgb, target, match, geom, correction=correction, params=p
        )
        flags = judge(checks, p.limits)
        t3 = time.perf_counter()
        registered = render_registered(
            phone_rgb, homography=match.homography, geometry=geom, shift_map=shift_map, correction=correction
        )
        t4 = time.perf_counter()
        return RegisteredPair(
            match=match,
            geometry=geom,
            registered=registered,
            target=target,
            shift_map=shift_map,
            elastic=elastic,
            unregistered=unregistered,
            failure="; ".join(f.describe() for f in flags) if flags else None,
            channel_weights=weights,
            timings_s={"fov": t1 - t0, "elastic": t3 - t2, "render": (t4 - t3) + (t2 - t1), "total": t4 - t0},
            checks=checks,
            flags=flags,
        )
