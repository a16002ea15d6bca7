"""Capture checks that judge the alignment of a registered pair, not the optics of the phone.

A blurry phone image correlates poorly with a sharp benchtop image however well the two are aligned, so a
correlation score's absolute value says as much about the phone's lens as about the registration.  The
checks here therefore compare the phone image with the benchtop image **degraded to the phone's
resolution**: the benchtop target blurred by the Gaussian that makes it most similar to the registered
phone image (fitted per capture, :func:`fit_phone_blur`), and judge a capture by what the registration
measured against that reference:

``coverage``
    the fraction of the final check's blocks whose correlation passes the block threshold;
``residual_px``
    the RMS shift (benchtop pixels) of those blocks after the final warp, i.e. the misregistration left;
``consistency``
    the fraction of those blocks whose remaining shift lies within ``consistency_px`` of their median
    (a capture whose blocks disagree has a local failure, a fold or a bubble);
``inlier_ratio``
    RANSAC inliers / ratio-test matches of the FOV match (a low ratio is a doubtful location);
``quality``
    the mean block correlation against the degraded reference (reported; a limit on it is optional).

Every limit is a field of :class:`CaptureLimits` and a command-line option of ``scopectl register`` (and of
``scopectl dataset build``, which can admit a capture that ``register`` flagged when a limit is loosened).
The defaults were checked against three foreign phone models on real tissue and the twin's three samples
(``docs/registration.md``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray
from pydantic import Field

from scopectl.config.base import FrozenModel

__all__ = [
    "BLUR_SIGMAS_PX",
    "CaptureChecks",
    "CaptureLimits",
    "Flag",
    "fit_phone_blur",
    "judge",
]

F32 = NDArray[np.float32]

#: Gaussian sigmas (benchtop pixels) tried when degrading the benchtop image to the phone's resolution.
BLUR_SIGMAS_PX = (0.0, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0, 7.0)

#: Command-line option of each limit (the same in ``register`` and ``dataset build``).
OPTIONS = {
    "min_coverage": "--min-coverage",
    "max_residual_px": "--max-residual-px",
    "min_consistency": "--min-consistency",
    "min_inlier_ratio": "--min-inlier-ratio",
    "min_quality": "--min-quality",
}


class CaptureLimits(FrozenModel):
    """Limits a registered capture must meet to be used (all measured against the degraded benchtop)."""

    min_coverage: float = Field(default=0.3, ge=0.0, le=1.0)
    """Fewest of the check's blocks that must pass the block correlation threshold."""
    max_residual_px: float = Field(default=1.5, gt=0.0)
    """Largest RMS residual shift of the check's blocks after registration, in benchtop pixels, for a
    capture no blurrier than ``residual_blur_ref_px``; it grows in proportion to the fitted blur beyond."""
    residual_blur_ref_px: float = Field(default=2.5, gt=0.0)
    """Blur σ (benchtop pixels) up to which ``max_residual_px`` applies as it is.  The block shifts of a
    blurrier capture scatter more for the same alignment: on real skin tissue, the halo phone (fitted σ
    3.5 px) showed RMS residuals of 0.76–1.63 px for captures whose true median error was 0.23–0.33 phone
    px, the sharper budget phone (σ 2.5) 0.42–0.79 px for 0.14–0.22 (docs/registration.md)."""
    min_consistency: float = Field(default=0.6, ge=0.0, le=1.0)
    """Fewest of the passing blocks whose residual shift lies within ``consistency_px`` of their median."""
    consistency_px: float = Field(default=1.0, gt=0.0)
    """Tolerance of the consistency check, in benchtop pixels."""
    min_inlier_ratio: float = Field(default=0.1, ge=0.0, le=1.0)
    """Fewest RANSAC inliers per ratio-test match of the FOV match."""
    min_quality: float = Field(default=0.0, ge=0.0, le=1.0)
    """Lowest mean block correlation against the degraded benchtop (0: not a criterion)."""


@dataclass(frozen=True)
class Flag:
    """One limit a capture did not meet."""

    check: str
    value: float
    limit: float
    option: str
    scale: float = 1.0
    """The residual limit's blur factor: ``value`` and ``limit`` are divided by it (the option's terms)."""

    def describe(self) -> str:
        """``residual 1.4 px > 1.0 px`` style text."""
        if self.check == "max_residual_px":
            if self.scale > 1.0:
                return (
                    f"residual {self.value * self.scale:.2f} px > {self.limit * self.scale:.2f} px "
                    f"({self.option} {self.limit:g} × {self.scale:.2f} for the capture's blur)"
                )
            return f"residual {self.value:.2f} px > {self.limit:g} px"
        name = self.check.removeprefix("min_").replace("_", " ")
        if self.check in ("min_coverage", "min_consistency"):
            return f"{name} {100 * self.value:.0f}% < {100 * self.limit:.0f}%"
        return f"{name} {self.value:.2f} < {self.limit:g}"

    def admit_with(self) -> str:
        """The option (and a value) that would admit the capture."""
        if self.check == "max_residual_px":
            value = math.ceil(self.value * 100 + 1e-9) / 100
        else:
            value = math.floor(self.value * 100 - 1e-9) / 100
        return f"{self.option} {max(value, 0.0):g}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "check": self.check,
            "value": self.value,
            "limit": self.limit,
            "option": self.option,
            "scale": self.scale,
        }


@dataclass(frozen=True)
class CaptureChecks:
    """What the registration of one capture measured (see the module docstring)."""

    coverage: float
    residual_px: float | None
    consistency: float
    inlier_ratio: float
    quality: float
    blur_sigma_px: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "coverage": self.coverage,
            "residual_px": self.residual_px,
            "consistency": self.consistency,
            "inlier_ratio": self.inlier_ratio,
            "quality": self.quality,
            "blur_sigma_px": self.blur_sigma_px,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CaptureChecks:
        res = d.get("residual_px")
        return cls(
            coverage=float(d["coverage"]),
            residual_px=None if res is None else float(res),
            consistency=float(d["consistency"]),
            inlier_ratio=float(d["inlier_ratio"]),
            quality=float(d["quality"]),
            blur_sigma_px=float(d.get("blur_sigma_px", 0.0)),
        )


def judge(checks: CaptureChecks, limits: CaptureLimits) -> list[Flag]:
    """The limits ``checks`` do not meet (empty: the capture is usable)."""
    flags: list[Flag] = []

    def flag(check: str, value: float, limit: float, scale: float = 1.0) -> None:
        flags.append(Flag(check, float(value), float(limit), OPTIONS[check], scale))

    if checks.coverage < limits.min_coverage:
        flag("min_coverage", checks.coverage, limits.min_coverage)
    residual = checks.residual_px if checks.residual_px is not None else math.inf
    blur = max(1.0, checks.blur_sigma_px / limits.residual_blur_ref_px)
    if residual > limits.max_residual_px * blur:
        flag("max_residual_px", residual / blur, limits.max_residual_px, blur)
    if checks.consistency < limits.min_consistency:
        flag("min_consistency", checks.consistency, limits.min_consistency)
    if checks.inlier_ratio < limits.min_inlier_ratio:
        flag("min_inlier_ratio", checks.inlier_ratio, limits.min_inlier_ratio)
    if checks.quality < limits.min_quality:
        flag("min_quality", checks.quality, limits.min_quality)
    return flags


def consistency(shift_px: F32, kept: NDArray[np.bool_], *, tolerance_px: float) -> float:
    """Fraction of the kept blocks whose shift lies within ``tolerance_px`` of the kept blocks' median."""
    if not kept.any():
        return 0.0
    s = shift_px[:, kept]
    med = np.median(s, axis=1, keepdims=True)
    return float(np.mean(np.hypot(s[0] - med[0], s[1] - med[1]) <= tolerance_px))


def fit_phone_blur(moving: F32, reference: F32, *, margin_px: int, field_rc: tuple[F32, F32]) -> float:
    """The Gaussian sigma (benchtop pixels) that makes the benchtop reference most like the phone image.

    ``moving`` (reference shape + ``margin_px`` per side) is warped by the registration's displacement
    ``field_rc`` (full-resolution row and column maps over the reference) and compared with the reference
    blurred by each of :data:`BLUR_SIGMAS_PX`, on detail images (minus a σ = 8 px Gaussian) so that
    illumination differences do not count; the sigma of the highest Pearson correlation is returned.
    """
    rows, cols = reference.shape
    rr, cc = np.meshgrid(np.arange(rows, dtype=np.float32), np.arange(cols, dtype=np.float32), indexing="ij")
    warped = cv2.remap(
        moving,
        cc + field_rc[1] + margin_px,
        rr + field_rc[0] + margin_px,
        cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_REFLECT_101,
    )
    step = max(1, int(math.sqrt(rows * cols / 250_000)))

    def detail(img: NDArray[np.float32]) -> NDArray[np.float64]:
        low = cv2.GaussianBlur(img, (0, 0), 8.0, borderType=cv2.BORDER_REFLECT)
        d: NDArray[np.float64] = np.asarray(img - low, np.float64)[8:-8:step, 8:-8:step]
        return np.asarray(d - d.mean(), np.float64)

    w = detail(np.asarray(warped, np.float32))
    best, best_sigma = -2.0, 0.0
    for sigma in BLUR_SIGMAS_PX:
        ref = reference if sigma == 0 else cv2.GaussianBlur(reference, (0, 0), sigma)
        r = detail(np.asarray(ref, np.float32))
        den = math.sqrt(float(np.sum(w * w)) * float(np.sum(r * r)))
        corr = float(np.sum(w * r)) / den if den > 0 else -1.0
        if corr > best:
            best, best_sigma = corr, sigma
    return float(best_sigma)
