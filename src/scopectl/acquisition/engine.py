"""The acquisition engine: executes a saved plan against a rig, into a slide store, resumably.

Order: benchtop focus map → tile scan (pymmcore-plus MDA runner, tiles committed one by one) → stitching →
phone fields (move, light, settle, battery, trigger, pull, decode, check, store).  Every item is committed on
its own, so a run killed at any moment loses at most the item in flight, and ``--resume`` continues with the
same plan.  Checks run at acquisition time, so a bad dataset is caught at the bench.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from scopectl.acquisition.plan import AcquisitionPlan, FieldPos
from scopectl.acquisition.protocol import AcquisitionProtocol
from scopectl.errors import DeviceError, InputFileError, ScopectlError, StoreError
from scopectl.hardware.phone import CaptureFiles
from scopectl.imageio import decode_dng, decode_jpeg
from scopectl.store import CaptureMeta, CaptureRecord, SlideStore, TileRecord

__all__ = ["AcquisitionEngine", "CaptureChecks", "Operator", "evaluate_capture"]


class Operator(Protocol):
    """The person at the bench (or nobody, on the simulated rig)."""

    def notice(self, message: str) -> None: ...

    def pause(self, message: str) -> None:
        """Stop until the operator has fixed something (e.g. a low battery); raise to abort."""
        ...


@dataclass
class CaptureChecks:
    """Acquisition-time quality checks of one phone capture."""

    overexposed_fraction: float
    sharpness: float
    located: bool | None = None
    location_x_um: float | None = None
    location_y_um: float | None = None
    location_error_um: float | None = None
    match_inliers: int | None = None
    match_reason: str = ""
    flags: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "overexposed_fraction": self.overexposed_fraction,
            "sharpness": self.sharpness,
            "located": self.located,
            "location_x_um": self.location_x_um,
            "location_y_um": self.location_y_um,
            "location_error_um": self.location_error_um,
            "match_inliers": self.match_inliers,
            "match_reason": self.match_reason,
            "flags": list(self.flags),
        }


#: locate(capture_rgb, store, capture_pixel_size_um, planned_xy_um) -> (ok, x_um, y_um, inliers, reason)
Locator = Callable[[np.ndarray, SlideStore, float, tuple[float, float]], tuple[bool, float, float, int, str]]
#: stitch(store) builds and commits the mosaic from the store's tiles
Stitcher = Callable[[SlideStore], Any]


def evaluate_capture(
    rgb: np.ndarray,
    *,
    protocol: AcquisitionProtocol,
    planned_xy_um: tuple[float, float],
    locator: Locator | None,
    store: SlideStore | None,
) -> CaptureChecks:
    """Exposure, sharpness and location checks of one capture, with flags for the failures."""
    import cv2  # OpenCV (heavy) loads only when this runs

    c = protocol.checks
    over = float(np.mean(np.any(rgb >= 250, axis=2)))
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32) / 255.0
    sharp = float(cv2.Laplacian(gray, cv2.CV_32F, ksize=3).var())
    checks = CaptureChecks(overexposed_fraction=over, sharpness=sharp)
    if over > c.max_overexposed_fraction:
        checks.flags.append(f"overexposed ({100 * over:.1f}% of pixels saturated)")
    if sharp < c.min_sharpness:
        checks.flags.append(f"blurred (sharpness {sharp:.2e} < {c.min_sharpness:.2e})")
    if c.locate and locator is not None and store is not None:
        ok, x, y, inliers, reason = locator(rgb, store, protocol.phone.pixel_size_um, planned_xy_um)
        checks.located, checks.match_inliers, checks.match_reason = ok, inliers, reason
        if ok:
            checks.location_x_um, checks.location_y_um = x, y
            err = float(np.hypot(x - planned_xy_um[0], y - planned_xy_um[1]))
            checks.location_error_um = err
            if inliers < c.min_match_inliers:
                checks.flags.append(f"poor match with the mosaic ({inliers} inliers)")
            if err > c.max_location_error_um:
                checks.flags.append(f"off the planned field by {err:.0f} µm")
        else:
            checks.flags.append(f"not found in the scanned region ({reason})")
    return checks


class _TileSink:
    """Commits tiles to the store and reports progress."""

    def __init__(self, store: SlideStore, on_tile: Callable[[], None]) -> None:
        self.store = store
        self.on_tile = on_tile

    def add_tile(self, rec: TileRecord) -> int:
        index = self.store.add_tile(rec)
        self.on_tile()
        return index


@dataclass
class Progress:
    """Callbacks the CLI uses to draw progress bars (all optional)."""

    start: Callable[[str, int, int], None] = lambda name, total, done: None
    advance: Callable[[str], None] = lambda name: None


class AcquisitionEngine:
    """Runs an :class:`AcquisitionPlan` on a rig into a slide store.

    Parameters
    ----------
    rig
        An open :class:`scopectl.hardware.rig.Rig`.
    store
        The slide store, open for writing, whose saved plan is ``plan``.
    operator
        Receives notices and battery pauses.
    locator, stitcher
        The mosaic locator used by the checks and the stitcher (image code, injected).
    recapture_flagged
        Retake fields whose stored capture was flagged.
    pull_dir
        A private folder for the files being pulled from the phone (e.g.
        :meth:`scopectl.store.DataRoot.private_dir`); by default a temporary folder next to the slide file,
        so a killed run leaves nothing in a shared temporary folder.
    """

    def __init__(
        self,
        rig: Any,
        store: SlideStore,
        plan: AcquisitionPlan,
        *,
        operator: Operator,
        locator: Locator | None,
        stitcher: Stitcher,
        progress: Progress | None = None,
        recapture_flagged: bool = False,
        sleep: Callable[[float], None] = time.sleep,
        pull_dir: Path | None = None,
    ) -> None:
        self.rig = rig
        self.pull_dir = pull_dir
        self.store = store
        self.plan = plan
        self.protocol = plan.protocol_model()
        self.operator = operator
        self.locator = locator
        self.stitcher = stitcher
        self.progress = progress or Progress()
        self.recapture_flagged = recapture_flagged
        self.sleep = sleep
        self.timings: dict[str, list[float]] = {"tile_s": [], "capture_s": []}
        self.battery: list[float] = []
        self.retries = 0

    # ------------------------------------------------------------------ benchtop
    def run_benchtop(self) -> dict[str, Any]:
        """Focus map (saved, reused on resume), tile scan of the missing tiles, then stitching."""
        # pymmcore-plus (Micro-Manager) loads only for the benchtop
        from scopectl.hardware.benchtop import FocusPlane, ScanRegion

        if self.store.mosaic_info() is not None:
            return {"skipped": "mosaic already complete"}
        bench = self.rig.benchtop
        b = self.protocol.benchtop
        if abs(bench.pixel_size_um - b.pixel_size_um) / b.pixel_size_um > 0.02:
            raise DeviceError(
                f"benchtop {bench.name}: pixel size {bench.pixel_size_um:.4g} µm but protocol "
                f"'{self.protocol.name}' expects {b.pixel_size_um:.4g} µm.",
                hint="Select the right objective / pixel size preset, or use a protocol for this objective.",
            )
        bench.set_exposure_ms(b.exposure_ms)
        scan = self.plan.scan_event()
        region = ScanRegion(scan.left_um, scan.top_um, scan.right_um, scan.bottom_um)
        scan_plan = bench.plan_scan(
            region, overlap=scan.overlap, focus="map" if b.autofocus.method == "software" else "fixed"
        )
        done = {(m.row, m.col) for m in self.store.tiles_meta()}
        total = len(scan_plan.tiles)

        plane_json = self.store.h5.attrs.get("focus_plane_json")
        plane: Any = None
        if plane_json is not None:
            d = json.loads(str(plane_json))
            plane = FocusPlane(d["z0_um"], d["slope_x"], d["slope_y"])
        elif b.autofocus.method == "software" and len(done) < total:
            fmap = bench.focus_map(list(self.plan.focus_points), start_z_um=bench.position_um()[2])
            if fmap.plane is None:
                raise DeviceError(
                    f"benchtop {bench.name}: autofocus found no contrast at any of {len(self.plan.focus_points)} "
                    "focus-map points.",
                    hint="Check that the slide is in place, lit, and that benchtop.region lies on the specimen.",
                )
            plane = fmap.plane
            self.store.set_attr(
                "focus_plane_json",
                json.dumps({"z0_um": plane.z0_um, "slope_x": plane.slope_x, "slope_y": plane.slope_y}),
            )
            self.store.log("focus map", points=[[x, y, r.z_um, r.ok] for x, y, r in fmap.points])
        self.store.set_attr("scan_plan_json", scan_plan.to_json())

        self.progress.start("tiles", total, len(done))
        t_last = [time.monotonic()]

        def on_tile() -> None:
            now = time.monotonic()
            self.timings["tile_s"].append(now - t_last[0])
            t_last[0] = now
            self.progress.advance("tiles")

        result = None
        if len(done) < total:
            result = bench.scan(scan_plan, sink=_TileSink(self.store, on_tile), done=done, focus_plane=plane)
        self.operator.notice("stitching the benchtop tiles")
        self.stitcher(self.store)
        return {
            "tiles_total": total,
            "tiles_acquired_now": 0 if result is None else len(result.stored),
            "warnings": [] if result is None else list(result.warnings),
        }

    # ------------------------------------------------------------------ phone
    def _latest_per_field(self) -> dict[int, CaptureMeta]:
        """The newest capture of each field (a recapture supersedes earlier ones)."""
        return {m.field_index: m for m in self.store.captures()}

    def _fields_to_do(self) -> list[FieldPos]:
        latest = self._latest_per_field()
        todo = []
        for f in self.plan.fields:
            last = latest.get(f.index)
            if last is None or (self.recapture_flagged and last.flags):
                todo.append(f)
        return todo

    def capture_field(self, f: FieldPos, workdir: Path) -> int:
        """Take, check and store one field; returns the capture index."""
        p, led_spec = self.protocol, self.protocol.led
        total = len(self.plan.fields)
        label = f"field {f.index + 1} of {total}"
        t0 = time.monotonic()
        stage_xy = self.rig.phone_stage.move_to(f.x_um, f.y_um, label=label)
        state = self.rig.led.set_all(tuple(led_spec.color_rgb), brightness=led_spec.brightness)
        self.sleep(led_spec.settle_ms / 1000.0)
        mv = self._battery_ok()
        t_shutter = time.monotonic()
        files = self._capture_with_retries(workdir, label=label)
        dng = files.dng.read_bytes() if files.dng is not None else None
        jpeg = files.jpeg.read_bytes() if files.jpeg is not None else None
        rgb, settings = self._decode(files, dng=dng, jpeg=jpeg)
        checks = evaluate_capture(
            rgb, protocol=p, planned_xy_um=(f.x_um, f.y_um), locator=self.locator, store=self.store
        )
        latencies = {k: float(v) for k, v in files.latencies_s.items()}
        latencies["field_total_s"] = time.monotonic() - t0
        latencies["led_to_shutter_s"] = t_shutter - t0
        for fname in (files.dng, files.jpeg):
            if fname is not None:
                fname.unlink(missing_ok=True)
        rec = CaptureRecord(
            rgb=rgb,
            field_index=f.index,
            pixel_size_um=p.phone.pixel_size_um,
            dng=dng,
            jpeg=jpeg,
            source=None,
            source_name=files.dng_remote or files.jpeg_remote or "",
            settings=settings,
            led_state=state.to_dict(),
            battery_mv=mv,
            stage_x_um=None if stage_xy is None else stage_xy[0],
            stage_y_um=None if stage_xy is None else stage_xy[1],
            timestamp=float(files.timestamp),
            latencies_s=latencies,
            extra={
                "planned_x_um": f.x_um,
                "planned_y_um": f.y_um,
                "checks": checks.to_dict(),
                "flags": checks.flags,
                "phone_stage": "manual" if self.rig.phone_stage.manual else "motorised",
            },
        )
        index = self.store.add_capture(rec)
        self.timings["capture_s"].append(time.monotonic() - t0)
        if checks.flags:
            self.operator.notice(f"{label}: flagged: {'; '.join(checks.flags)}")
        return index

    def _battery_ok(self) -> float:
        """The LED battery's voltage, once it is above the protocol's minimum (the operator is asked to
        charge or swap it until then)."""
        minimum = self.protocol.checks.min_battery_mv
        mv = float(self.rig.led.battery_mv())
        while mv < minimum:
            self.operator.pause(
                f"LED battery at {mv:.0f} mV, below the protocol's {minimum:.0f} mV: charge or swap the battery"
            )
            mv = float(self.rig.led.battery_mv())
        self.battery.append(mv)
        return mv

    def _capture_with_retries(self, workdir: Path, *, label: str) -> CaptureFiles:
        """One phone capture, retried up to the protocol's ``max_retries`` on device errors."""
        last_error: ScopectlError | None = None
        for attempt in range(self.protocol.checks.max_retries + 1):
            try:
                files: CaptureFiles = self.rig.phone.capture(workdir, delete_after=True)
                return files
            except DeviceError as exc:
                last_error = exc
                self.retries += 1
                self.operator.notice(f"{label}: capture attempt {attempt + 1} failed: {exc.one_line()}")
        assert last_error is not None
        raise last_error

    def _decode(
        self, files: CaptureFiles, *, dng: bytes | None, jpeg: bytes | None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """The capture's pixels (from the DNG when there is one) and its settings (with the raw decoder's)."""
        settings = dict(files.settings)
        if dng is not None:
            rgb, raw_settings = decode_dng(dng, source=f"{self.rig.phone.address}:{files.dng_remote}")
            settings.update({f"raw_{k}": v for k, v in raw_settings.items()})
        elif jpeg is not None:
            try:
                rgb = decode_jpeg(jpeg, source=f"{self.rig.phone.address}:{files.jpeg_remote}")
            except InputFileError as exc:
                raise DeviceError(f"phone {exc.message}", hint="Take the capture again.") from None
        else:
            raise DeviceError(f"phone {self.rig.phone.address}: the capture produced neither DNG nor JPEG.")
        return rgb, settings

    def run_phone(self) -> None:
        todo = self._fields_to_do()
        self.progress.start("captures", len(self.plan.fields), len(self.plan.fields) - len(todo))
        if self.pull_dir is not None:
            for f in todo:
                self.capture_field(f, self.pull_dir)
                self.progress.advance("captures")
            return
        with tempfile.TemporaryDirectory(prefix=f".pull-{os.getpid()}-", dir=self.store.path.parent) as tmp:
            for f in todo:
                self.capture_field(f, Path(tmp))
                self.progress.advance("captures")

    # ------------------------------------------------------------------ all
    def run(self) -> dict[str, Any]:
        """Run (or continue) the whole acquisition; returns the summary."""
        t0 = time.monotonic()
        bench = self.run_benchtop()
        if self.store.mosaic_info() is None:
            raise StoreError(f"{self.store.path}: stitching did not produce a mosaic.")
        self.run_phone()
        self.store.log("acquisition complete", **self.store.completeness())
        return self.summary(bench, time.monotonic() - t0)

    def summary(self, bench: dict[str, Any], elapsed_s: float) -> dict[str, Any]:
        metas = self.store.captures()
        latest = self._latest_per_field()
        flagged = {i: m.extra.get("flags", []) for i, m in latest.items() if m.extra.get("flags")}
        all_mv = [m.battery_mv for m in metas if m.battery_mv is not None]
        verify = self.store.verify()
        mi = self.store.mosaic_info()

        def med(v: list[float]) -> float | None:
            return float(np.median(v)) if v else None

        return {
            "slide_id": self.store.slide_id,
            "path": str(self.store.path),
            "simulated": self.store.simulated,
            "protocol": self.protocol.name,
            "tiles": self.store.tile_count(),
            "mosaic_shape": None if mi is None else [mi.rows, mi.cols],
            "fields_planned": len(self.plan.fields),
            "captures": len(metas),
            "fields_captured": len(latest),
            "flagged_fields": {str(k): v for k, v in sorted(flagged.items())},
            "located_fields": sum(1 for m in latest.values() if m.extra.get("checks", {}).get("located")),
            "capture_retries": self.retries,
            "time_per_tile_s": med(self.timings["tile_s"]),
            "time_per_capture_s": med(self.timings["capture_s"]),
            "battery_mv_range": [min(all_mv), max(all_mv)] if all_mv else None,
            "elapsed_s": elapsed_s,
            "benchtop": bench,
            "store_bytes": os.path.getsize(self.store.path),
            "verified": verify["ok"],
        }
