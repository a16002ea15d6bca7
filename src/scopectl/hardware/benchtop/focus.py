"""Image-based (software) autofocus: a focus measure and a coarse-to-fine search.

The search is independent of the hardware: it is given a function that moves the focus drive to a height,
snaps and returns the focus measure, so the same code serves the real and the simulated benchtop, the
interactive ``Benchtop.autofocus`` call and ``useq.HardwareAutofocus`` events inside an MDA run.

Robustness
----------
- **Empty fields** (bare glass, a gap in the tissue): the measure is flat apart from noise.  The search
  compares the peak with the baseline (median of the coarse sweep) and reports ``ok=False, reason="no
  contrast ..."`` instead of returning the noisiest height.
- **Tilted slides**: focus is searched per position, starting from a prediction (a :class:`FocusPlane`
  fitted through earlier results); if the best coarse height is at the end of the sweep the sweep is
  extended in that direction.
- **Noise**: the measure is computed on a downsampled green channel (averaging suppresses shot noise) and
  the final height is interpolated by a Gaussian (parabola in log score) through the best fine samples.

References
----------
Groen, Young & Ligthart, "A comparison of different focus functions for use in autofocus algorithms",
Cytometry 6 (1985); Pertuz, Puig & Garcia, "Analysis of focus measure operators for shape-from-focus",
Pattern Recognition 46 (2013) — normalised variance of the Laplacian is among the most robust operators.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import cv2
import numpy as np

__all__ = ["AutofocusResult", "AutofocusSettings", "FocusPlane", "focus_score", "search_focus"]


def focus_score(image: np.ndarray, *, downsample: int = 2) -> float:
    """Normalised variance of the Laplacian of the (downsampled) green channel.

    Parameters
    ----------
    image
        ``(H, W, 3)`` RGB or ``(H, W)`` grey image, any numeric dtype.
    downsample
        Integer area-averaging factor applied first (suppresses noise, widens the capture range).

    Returns
    -------
    float
        ``var(Laplacian(g)) / mean(g)**2`` — independent of exposure; 0 for a uniform or black image.
    """
    img = np.asarray(image)
    grey = img[..., 1] if img.ndim == 3 else img
    grey = grey.astype(np.float32)
    if downsample > 1:
        rows = grey.shape[0] // downsample
        cols = grey.shape[1] // downsample
        if rows < 3 or cols < 3:
            raise ValueError(f"image {img.shape} is too small for downsample={downsample}")
        grey = cv2.resize(
            grey[: rows * downsample, : cols * downsample], (cols, rows), interpolation=cv2.INTER_AREA
        )
    mean = float(grey.mean())
    if mean <= 1e-6:
        return 0.0
    lap = cv2.Laplacian(grey, cv2.CV_32F, ksize=3)
    core = lap[1:-1, 1:-1]
    return float(core.var()) / (mean * mean)


@dataclass(frozen=True)
class FocusPlane:
    """A (tilted) focal plane ``z = z0_um + slope_x·x_um + slope_y·y_um`` in stage coordinates."""

    z0_um: float = 0.0
    slope_x: float = 0.0
    slope_y: float = 0.0

    def z_at(self, x_um: float, y_um: float) -> float:
        """Focus height (µm) at a stage position."""
        return self.z0_um + self.slope_x * x_um + self.slope_y * y_um

    @classmethod
    def fit(cls, points: np.ndarray) -> FocusPlane:
        """Least-squares plane through ``(x_um, y_um, z_um)`` rows.

        One point gives a flat plane at its height, two or collinear points a plane tilted only along
        the line through them (minimum-norm solution).
        """
        pts = np.asarray(points, dtype=np.float64).reshape(-1, 3)
        if len(pts) == 0:
            raise ValueError("FocusPlane.fit needs at least one point")
        if len(pts) == 1:
            return cls(float(pts[0, 2]), 0.0, 0.0)
        cx, cy = pts[:, 0].mean(), pts[:, 1].mean()
        design = np.column_stack([np.ones(len(pts)), pts[:, 0] - cx, pts[:, 1] - cy])
        coef, *_ = np.linalg.lstsq(design, pts[:, 2], rcond=None)
        z0 = float(coef[0] - coef[1] * cx - coef[2] * cy)
        return cls(z0, float(coef[1]), float(coef[2]))


@dataclass(frozen=True)
class AutofocusSettings:
    """Parameters of the coarse-to-fine focus search.

    Attributes
    ----------
    range_um
        Half-width of the coarse sweep around the starting height.
    steps_um
        Step of each level, coarse first.  Each finer level samples ±(previous step) around the best
        height so far.
    min_peak_ratio
        The coarse peak must exceed the baseline (median of the coarse sweep) by this factor, otherwise
        the field has no usable contrast.
    max_extensions
        How many times the coarse sweep may be extended when its best point is at an end.
    downsample
        Downsampling factor of :func:`focus_score` at the coarse level (finer levels use half, ≥ 1).
    roi_px
        ``(rows, cols)`` of the central camera region used for focusing (``None``: the whole frame).
    """

    range_um: float = 20.0
    steps_um: tuple[float, ...] = (3.0, 0.75)
    min_peak_ratio: float = 1.5
    max_extensions: int = 3
    downsample: int = 4
    roi_px: tuple[int, int] | None = (256, 256)

    def __post_init__(self) -> None:
        if self.range_um <= 0 or not self.steps_um or any(s <= 0 for s in self.steps_um):
            raise ValueError("autofocus: range_um and every step must be positive")
        if any(b >= a for a, b in zip(self.steps_um, self.steps_um[1:], strict=False)):
            raise ValueError("autofocus: steps_um must decrease from coarse to fine")
        if self.min_peak_ratio < 1.0 or self.max_extensions < 0 or self.downsample < 1:
            raise ValueError("autofocus: min_peak_ratio >= 1, max_extensions >= 0, downsample >= 1")


@dataclass(frozen=True)
class AutofocusResult:
    """Outcome of one focus search.

    Attributes
    ----------
    z_um
        The focus height found (``ok``), or the starting height (not ``ok``).
    score
        Interpolated focus measure at ``z_um`` (the best sample's score when interpolation is not used).
    scores
        Every ``(z_um, score, level)`` sample, in the order taken.
    ok
        False when the field had no contrast or the search failed.
    reason
        Why not ``ok`` (empty when ``ok``).
    start_z_um
        Where the search started.
    peak_ratio
        Coarse peak divided by the coarse baseline.
    """

    z_um: float
    score: float
    scores: tuple[tuple[float, float, int], ...]
    ok: bool = True
    reason: str = ""
    start_z_um: float = float("nan")
    peak_ratio: float = float("nan")
    extra: dict[str, float] = field(default_factory=dict)


def _sweep(
    measure: Callable[[float, int], float],
    zs: np.ndarray,
    level: int,
    samples: list[tuple[float, float, int]],
) -> list[tuple[float, float]]:
    out = []
    for z in zs:
        s = float(measure(float(z), level))
        if not math.isfinite(s):
            s = 0.0
        samples.append((float(z), s, level))
        out.append((float(z), s))
    return out


def _grid(center: float, half: float, step: float, lo: float, hi: float) -> np.ndarray:
    n = int(np.rint(half / step))
    zs = center + step * np.arange(-n, n + 1)
    zs = zs[(zs >= lo - 1e-9) & (zs <= hi + 1e-9)]
    return np.unique(np.round(zs, 6))


def _interpolate_peak(points: list[tuple[float, float]]) -> tuple[float, float]:
    """Gaussian (log-parabola) interpolation through the best sample and its neighbours."""
    pts = sorted(points)
    zs = np.array([p[0] for p in pts])
    ss = np.array([p[1] for p in pts])
    i = int(np.argmax(ss))
    if i == 0 or i == len(pts) - 1 or ss[i] <= 0:
        return float(zs[i]), float(ss[i])
    y = np.log(np.maximum(ss[i - 1 : i + 2], 1e-12))
    x = zs[i - 1 : i + 2]
    # fit y = a x^2 + b x + c through three points
    a, b, c = np.polyfit(x - x[1], y, 2)
    if a >= 0:
        return float(zs[i]), float(ss[i])
    dz = -b / (2 * a)
    dz = float(np.clip(dz, x[0] - x[1], x[2] - x[1]))
    return float(x[1] + dz), float(math.exp(a * dz * dz + b * dz + c))


def search_focus(
    measure: Callable[[float, int], float],
    *,
    start_z_um: float,
    settings: AutofocusSettings | None = None,
    z_limits_um: tuple[float, float] | None = None,
) -> AutofocusResult:
    """Coarse-to-fine search for the height that maximises a focus measure.

    Parameters
    ----------
    measure
        ``measure(z_um, level) -> score``: move the focus to ``z_um``, snap, return the focus measure
        (``level`` 0 is the coarse sweep; the caller may use it to choose the downsampling).
    start_z_um
        Centre of the coarse sweep (current height or a prediction from a focus map).
    settings
        Search parameters.
    z_limits_um
        Travel limits of the focus drive; samples outside are not taken.

    Returns
    -------
    AutofocusResult
        ``ok=False`` with ``reason`` starting ``"no contrast"`` for an empty field.
    """
    cfg = settings if settings is not None else AutofocusSettings()
    lo, hi = z_limits_um if z_limits_um is not None else (-math.inf, math.inf)
    samples: list[tuple[float, float, int]] = []
    coarse = _coarse_sweep(measure, start_z_um, cfg, lo, hi, samples)
    if not coarse:
        return AutofocusResult(
            start_z_um, 0.0, (), False, "start height outside the focus drive limits", start_z_um
        )
    scores = np.array([p[1] for p in coarse])
    baseline = float(np.median(scores))
    peak = float(scores.max())
    ratio = peak / baseline if baseline > 0 else (math.inf if peak > 0 else 1.0)
    best_z = coarse[int(np.argmax(scores))][0]
    reason = _coarse_failure(coarse, best_z, ratio, start_z_um=start_z_um, settings=cfg, lo=lo, hi=hi)
    if reason:
        return AutofocusResult(start_z_um, peak, tuple(samples), False, reason, start_z_um, ratio)
    level_points = coarse
    prev_step = cfg.steps_um[0]
    for level, step in enumerate(cfg.steps_um[1:], start=1):
        level_points = _sweep(measure, _grid(best_z, prev_step, step, lo, hi), level, samples)
        best_z = max(level_points, key=lambda p: p[1])[0]
        prev_step = step
    z_final, s_final = _interpolate_peak(level_points)
    return AutofocusResult(z_final, s_final, tuple(samples), True, "", start_z_um, ratio)


def _coarse_sweep(
    measure: Callable[[float, int], float],
    start_z_um: float,
    cfg: AutofocusSettings,
    lo: float,
    hi: float,
    samples: list[tuple[float, float, int]],
) -> list[tuple[float, float]]:
    """The coarse sweep around ``start_z_um``, extended while the best point is at one of its ends."""
    step0 = cfg.steps_um[0]
    coarse = _sweep(measure, _grid(start_z_um, cfg.range_um, step0, lo, hi), 0, samples)
    if not coarse:
        return coarse
    for _ in range(cfg.max_extensions):
        zs = [p[0] for p in coarse]
        best = max(coarse, key=lambda p: p[1])[0]
        if best == min(zs) and best - step0 >= lo:
            new = _grid(best - cfg.range_um, cfg.range_um, step0, lo, hi)
            new = new[new < best - 1e-9]
        elif best == max(zs) and best + step0 <= hi:
            new = _grid(best + cfg.range_um, cfg.range_um, step0, lo, hi)
            new = new[new > best + 1e-9]
        else:
            break
        if len(new) == 0:
            break
        coarse += _sweep(measure, new, 0, samples)
    return coarse


def _coarse_failure(
    coarse: list[tuple[float, float]],
    best_z: float,
    ratio: float,
    *,
    start_z_um: float,
    settings: AutofocusSettings,
    lo: float,
    hi: float,
) -> str:
    """Why the coarse sweep cannot be refined (no contrast, peak not bracketed), or ``""``."""
    if ratio < settings.min_peak_ratio:
        return (
            f"no contrast within {start_z_um - settings.range_um:.1f}..{start_z_um + settings.range_um:.1f} um: "
            f"focus peak is only {ratio:.2f}x the baseline (need {settings.min_peak_ratio:.2f}x)"
        )
    step0 = settings.steps_um[0]
    at_end = best_z in (min(p[0] for p in coarse), max(p[0] for p in coarse))
    if at_end and not (best_z - step0 < lo or best_z + step0 > hi):
        return f"focus not bracketed: best coarse height {best_z:.1f} um is at the end of the sweep"
    return ""
