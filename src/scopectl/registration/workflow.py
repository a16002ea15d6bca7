"""Register every capture of a slide store and read registered pairs back.

:func:`register_slide` locates each phone capture in the slide's mosaic, registers it elastically,
writes a :class:`~scopectl.store.RegistrationRecord` per capture (failed ones with their reason) and
optionally PNG figures.  :func:`load_pair` rebuilds a registered pair from the store alone (the raw
capture, the homography, the shift map and the target crop), which is what the training-set builder
uses.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from scopectl.errors import RegistrationError, StoreError
from scopectl.registration.checks import CaptureChecks
from scopectl.registration.distortion import DistortionAccumulator, DistortionMap
from scopectl.registration.elastic import DisplacementField
from scopectl.registration.figures import write_pair_figures
from scopectl.registration.fov import MosaicIndex
from scopectl.registration.pair import (
    PairGeometry,
    RegisteredPair,
    RegisterParams,
    register_pair,
    render_registered,
)
from scopectl.store import CaptureMeta, MosaicInfo, RegistrationRecord, SlideStore

__all__ = [
    "CaptureReport",
    "StoredPair",
    "accumulate_distortion",
    "flagged_checks",
    "load_pair",
    "register_slide",
]

F32 = NDArray[np.float32]


@dataclass(frozen=True)
class CaptureReport:
    """One line of the per-capture table."""

    index: int
    ok: bool
    reason: str
    inliers: int
    scale: float | None
    quality: float | None
    residual_px: float | None
    coverage: float | None
    seconds: float
    figures: list[str] = field(default_factory=list)
    consistency: float | None = None
    inlier_ratio: float | None = None
    blur_sigma_px: float | None = None
    flags: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "ok": self.ok,
            "reason": self.reason,
            "inliers": self.inliers,
            "scale": self.scale,
            "quality": self.quality,
            "residual_px": self.residual_px,
            "coverage": self.coverage,
            "seconds": self.seconds,
            "figures": self.figures,
            "consistency": self.consistency,
            "inlier_ratio": self.inlier_ratio,
            "blur_sigma_px": self.blur_sigma_px,
            "flags": self.flags,
        }


def _prior(meta: CaptureMeta, info: MosaicInfo) -> tuple[float, float] | None:
    x, y = meta.stage_x_um, meta.stage_y_um
    if x is None or y is None or not (math.isfinite(x) and math.isfinite(y)):
        return None
    return ((y - info.origin_y_um) / info.pixel_size_um, (x - info.origin_x_um) / info.pixel_size_um)


def _failed_record(reason: str, *, pixel_size_um: float, extra: dict[str, Any]) -> RegistrationRecord:
    return RegistrationRecord(
        ok=False,
        reason=reason,
        homography=np.full((3, 3), np.nan),
        scale=float("nan"),
        inliers=0,
        shift_map=None,
        similarity_maps=[],
        quality=0.0,
        pixel_size_um=pixel_size_um,
        residual_px=None,
        extra=extra,
    )


def _correction_extra(correction: DistortionMap | None) -> dict[str, Any] | None:
    if correction is None:
        return None
    return {
        "values": np.round(correction.values.astype(np.float64), 4).tolist(),
        "spacing_px": correction.spacing_px,
        "phone_shape": list(correction.phone_shape),
    }


def _correction_from_extra(extra: dict[str, Any]) -> DisplacementField | None:
    c = extra.get("correction")
    if not c:
        return None
    return DisplacementField(np.asarray(c["values"], np.float32), (0.0, 0.0), float(c["spacing_px"]))


def _record(
    pair: RegisteredPair, *, params: RegisterParams, pixel_size_um: float, correction: DistortionMap | None
) -> RegistrationRecord:
    el = pair.elastic
    extra: dict[str, Any] = {
        "geometry": pair.geometry.to_dict(),
        "fov": {k: v for k, v in pair.match.to_dict().items() if k != "homography"},
        "params": params.model_dump(mode="json"),
        "timings_s": pair.timings_s,
        "channel_weights": pair.channel_weights,
        "elastic": {
            "levels": [
                {
                    "n_blocks": list(lev.match.n_blocks),
                    "block_px": list(lev.match.block_px),
                    "downsample": lev.match.downsample,
                    "kept_fraction": float(lev.match.kept.mean()),
                    "rms_shift_px": lev.match.rms_shift_px(),
                }
                for lev in el.levels
            ],
            "coverage": el.coverage,
            "check_kept": el.check.kept.astype(int).tolist(),
            "check_centres_px": [el.check.centre_px[0][:, 0].tolist(), el.check.centre_px[1][0, :].tolist()],
            "timings_s": el.timings_s,
        },
        "correction": _correction_extra(correction),
        "checks": pair.checks.to_dict() if pair.checks is not None else None,
        "flags": [f.to_dict() for f in pair.flags],
        "limits": params.limits.model_dump(mode="json"),
    }
    return RegistrationRecord(
        ok=pair.failure is None,
        reason=pair.failure or "",
        homography=pair.match.homography,
        scale=pair.match.scale,
        inliers=pair.match.inliers,
        shift_map=pair.shift_map,
        similarity_maps=el.similarity_maps,
        quality=el.quality,
        pixel_size_um=pixel_size_um,
        residual_px=el.residual_px,
        extra=extra,
    )


def register_slide(
    store: SlideStore,
    *,
    params: RegisterParams | None = None,
    captures: Sequence[int] | None = None,
    correction: DistortionMap | None = None,
    figures_dir: Path | None = None,
    on_capture: Callable[[CaptureReport], None] | None = None,
) -> list[CaptureReport]:
    """Register the captures of a slide opened for appending, writing one record per capture.

    Parameters
    ----------
    store
        The slide, opened with ``mode="a"``.
    params
        Registration parameters.
    captures
        Capture indices to register (default: all).
    correction
        A fixed distortion correction of this rig, applied to every capture first.
    figures_dir
        Where to write PNG figures per capture (none when None).
    on_capture
        Called after each capture (progress reporting).

    Raises
    ------
    StoreError
        If the slide has no mosaic or no captures.
    """
    p = params or RegisterParams()
    info, indices = _checked_targets(store, captures)
    mosaic = store.mosaic()
    out_pixel_um = info.pixel_size_um * float(p.ratio_fraction)
    index_cache: dict[int, MosaicIndex] = {}
    field_corr = correction.field() if correction is not None else None
    reports: list[CaptureReport] = []
    store.log("registration started", captures=indices, params=p.model_dump(mode="json"))
    for i in indices:
        t0 = time.perf_counter()
        rgb, meta = store.read_capture(i)
        phone_um = meta.pixel_size_um
        factor = _index_factor(rgb, phone_pixel_um=phone_um, info=info, params=p)

        def get_index(factor: int = factor) -> MosaicIndex:
            if factor not in index_cache:
                index_cache[factor] = _LazyIndex(mosaic, factor, p.fov.max_features).get()
            return index_cache[factor]

        pair: RegisteredPair | None = None
        try:
            pair = register_pair(
                rgb,
                mosaic,
                phone_pixel_um=phone_um,
                mosaic_pixel_um=info.pixel_size_um,
                params=p,
                index=get_index,
                prior_center_px=_prior(meta, info),
                correction=field_corr,
            )
            rec = _record(pair, params=p, pixel_size_um=out_pixel_um, correction=correction)
        except RegistrationError as exc:
            rec = _failed_record(
                exc.one_line(), pixel_size_um=out_pixel_um, extra={"params": p.model_dump(mode="json")}
            )
        store.write_registration(i, rec)
        figs = _pair_figures(pair, figures_dir, stem=f"{store.slide_id}-capture-{i:05d}")
        report = _capture_report(i, rec, pair, seconds=time.perf_counter() - t0, figures=figs)
        reports.append(report)
        if on_capture is not None:
            on_capture(report)
    store.log(
        "registration finished",
        ok=sum(r.ok for r in reports),
        failed=[{"index": r.index, "reason": r.reason} for r in reports if not r.ok],
    )
    return reports


def _checked_targets(store: SlideStore, captures: Sequence[int] | None) -> tuple[MosaicInfo, list[int]]:
    """The slide's mosaic info and the capture indices to register, or a :class:`StoreError`."""
    info = store.mosaic_info()
    if info is None:
        raise StoreError(
            f"{store.path}: slide '{store.slide_id}' has no benchtop mosaic.",
            hint="Acquire or import the benchtop tiles and stitch them first.",
        )
    metas = {m.index: m for m in store.captures()}
    if not metas:
        raise StoreError(f"{store.path}: slide '{store.slide_id}' has no phone captures to register.")
    indices = list(captures) if captures is not None else sorted(metas)
    unknown = [i for i in indices if i not in metas]
    if unknown:
        raise StoreError(f"{store.path}: no capture(s) {unknown} in slide '{store.slide_id}'.")
    return info, indices


def _index_factor(rgb: np.ndarray, *, phone_pixel_um: float, info: MosaicInfo, params: RegisterParams) -> int:
    """The mosaic downsampling factor of the feature index for this capture (1 for an invalid pixel size)."""
    if not (math.isfinite(phone_pixel_um) and phone_pixel_um > 0):
        return 1  # register_pair reports the invalid pixel size as this capture's failure
    return MosaicIndex.factor_for(
        phone_shape=(int(rgb.shape[0]), int(rgb.shape[1])),
        phone_pixel_um=phone_pixel_um,
        mosaic_pixel_um=info.pixel_size_um,
        params=params.fov,
    )


def _pair_figures(pair: RegisteredPair | None, figures_dir: Path | None, *, stem: str) -> list[str]:
    """Write the PNG figures of a registered pair; none when no directory was asked for or it failed."""
    if figures_dir is None or pair is None:
        return []
    return [str(f) for f in write_pair_figures(pair, directory=figures_dir, stem=stem)]


def _capture_report(
    index: int,
    rec: RegistrationRecord,
    pair: RegisteredPair | None,
    *,
    seconds: float,
    figures: list[str],
) -> CaptureReport:
    """One line of the per-capture table from the written record and the pair (None when it failed)."""
    el = pair.elastic if pair is not None else None
    chk = pair.checks if pair is not None else None
    return CaptureReport(
        index=index,
        ok=rec.ok,
        reason=rec.reason,
        inliers=rec.inliers,
        scale=rec.scale if math.isfinite(rec.scale) else None,
        quality=rec.quality if rec.ok or pair is not None else None,
        residual_px=rec.residual_px,
        coverage=el.coverage if el is not None else None,
        seconds=seconds,
        figures=figures,
        consistency=chk.consistency if chk is not None else None,
        inlier_ratio=chk.inlier_ratio if chk is not None else None,
        blur_sigma_px=chk.blur_sigma_px if chk is not None else None,
        flags=[f.to_dict() for f in pair.flags] if pair is not None else [],
    )


def flagged_checks(reg: RegistrationRecord) -> CaptureChecks | None:
    """The stored capture checks of a registration record that has its geometry (None otherwise)."""
    extra = reg.extra or {}
    data = extra.get("checks")
    if not data or "geometry" not in extra:
        return None
    try:
        return CaptureChecks.from_dict(data)
    except (KeyError, TypeError, ValueError):
        return None


class _LazyIndex:
    """Builds a :class:`MosaicIndex`, translating read errors of the mosaic."""

    def __init__(self, mosaic: Any, factor: int, max_features: int) -> None:
        self.mosaic, self.factor, self.max_features = mosaic, factor, max_features

    def get(self) -> MosaicIndex:
        try:
            return MosaicIndex(self.mosaic, factor=self.factor, max_features=self.max_features)
        except OSError as exc:
            raise StoreError(
                f"cannot read the benchtop mosaic ({exc}).", hint="Run `scopectl store verify`."
            ) from None


@dataclass(frozen=True)
class StoredPair:
    """A registered pair rebuilt from a store: the phone image at L× the benchtop pixel and its target."""

    capture_index: int
    registered: NDArray[np.uint8]
    target: NDArray[np.uint8]
    geometry: PairGeometry
    quality: float
    similarity: F32
    check_kept: NDArray[np.bool_]
    check_centres_px: tuple[NDArray[np.float64], NDArray[np.float64]]
    input_pixel_size_um: float
    target_pixel_size_um: float


def load_pair(store: SlideStore, capture_index: int, *, allow_flagged: bool = False) -> StoredPair:
    """Rebuild the registered pair of one capture from its registration record.

    ``allow_flagged`` also loads a capture that was registered but flagged by a capture check (its
    record has the geometry); ``dataset build`` uses it when the user loosens a limit.

    Raises
    ------
    StoreError
        If the capture has no successful (or, with ``allow_flagged``, flagged) registration or its
        record is inconsistent.
    """
    reg = store.registration(capture_index)
    if reg is None:
        raise StoreError(
            f"{store.path}: capture {capture_index} is not registered; run `scopectl register` first."
        )
    if not reg.ok and not (allow_flagged and flagged_checks(reg) is not None):
        raise StoreError(f"{store.path}: capture {capture_index} failed registration ({reg.reason}).")
    info = store.mosaic_info()
    if info is None:
        raise StoreError(f"{store.path}: slide '{store.slide_id}' has no benchtop mosaic.")
    extra = reg.extra
    try:
        geom = PairGeometry.from_dict(extra["geometry"])
    except (KeyError, TypeError, ValueError, RegistrationError):
        raise StoreError(
            f"{store.path}: registration record of capture {capture_index} lacks its geometry; register again."
        ) from None
    expected_um = info.pixel_size_um * float(geom.ratio)
    if not math.isclose(reg.pixel_size_um, expected_um, rel_tol=1e-6):
        raise StoreError(
            f"{store.path}: capture {capture_index} was registered at {reg.pixel_size_um:.4g} µm/px but the mosaic "
            f"({info.pixel_size_um:.4g} µm/px) × ratio gives {expected_um:.4g}; register the slide again."
        )
    (r0, c0), (rows, cols) = geom.target_origin_px, geom.target_shape_px
    if r0 < 0 or c0 < 0 or r0 + rows > info.rows or c0 + cols > info.cols:
        raise StoreError(
            f"{store.path}: capture {capture_index}'s target lies outside the mosaic; register again."
        )
    rgb, _meta = store.read_capture(capture_index)
    registered = render_registered(
        rgb,
        homography=np.asarray(reg.homography, np.float64),
        geometry=geom,
        shift_map=None if reg.shift_map is None else np.asarray(reg.shift_map, np.float32),
        correction=_correction_from_extra(extra),
    )
    target = np.asarray(store.mosaic()[r0 : r0 + rows, c0 : c0 + cols], dtype=np.uint8)
    sims = reg.similarity_maps
    el = extra.get("elastic") or {}
    centres = el.get("check_centres_px")
    similarity = np.asarray(sims[-1], np.float32) if sims else np.zeros((0, 0), np.float32)
    kept = np.asarray(el.get("check_kept", []), bool)
    if centres is None or kept.shape != similarity.shape or similarity.ndim != 2 or similarity.size == 0:
        raise StoreError(
            f"{store.path}: registration record of capture {capture_index} lacks its block check; register again."
        )
    return StoredPair(
        capture_index=capture_index,
        registered=registered,
        target=target,
        geometry=geom,
        quality=float(reg.quality),
        similarity=similarity,
        check_kept=kept,
        check_centres_px=(np.asarray(centres[0], np.float64), np.asarray(centres[1], np.float64)),
        input_pixel_size_um=float(reg.pixel_size_um),
        target_pixel_size_um=info.pixel_size_um,
    )


def accumulate_distortion(stores: Sequence[SlideStore], *, spacing_px: int = 16) -> DistortionMap:
    """The mean distortion map over the successfully registered captures of some slides.

    Raises
    ------
    RegistrationError
        If there are no usable registrations or capture sizes differ.
    """
    acc: DistortionAccumulator | None = None
    for store in stores:
        for i in store.registered_indices():
            reg = store.registration(i)
            if reg is None or not reg.ok or reg.shift_map is None:
                continue
            if reg.extra.get("correction"):
                continue  # registered with a fixed correction already: its δ is not the raw distortion
            meta = next(m for m in store.captures() if m.index == i)
            shape = (meta.shape[0], meta.shape[1])
            if acc is None:
                acc = DistortionAccumulator(shape, spacing_px=spacing_px)
            acc.add(
                homography=np.asarray(reg.homography, np.float64),
                geometry=PairGeometry.from_dict(reg.extra["geometry"]),
                shift_map=np.asarray(reg.shift_map, np.float32),
                phone_shape=shape,
                source={"slide": store.slide_id, "capture": i},
            )
    if acc is None:
        raise RegistrationError(
            "no successfully registered captures (without a fixed correction) to average."
        )
    return acc.result()
