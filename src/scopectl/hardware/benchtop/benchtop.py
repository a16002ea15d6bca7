"""The benchtop microscope: one driver for any Micro-Manager scope, real or simulated.

:class:`Benchtop` wraps a pymmcore-plus ``UniMMCore`` that has an XY stage, a focus drive, a camera and
(optionally) a shutter.  Every pymmcore / device-adapter exception is translated into a
:class:`~scopectl.errors.DeviceError` at one boundary (:meth:`Benchtop._device`); every wait uses the core's
timeout (``timeout_s``).  The driver is handed a loaded core and knows nothing of simulation: the
simulated scope (:mod:`scopectl.hardware.benchtop.sim`) builds a core of simulated devices and hands it
over.

Not thread-safe: drive one ``Benchtop`` from one thread (the MDA runner's relay thread only writes tiles).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import time
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Self

import numpy as np
import useq
from pymmcore_plus import find_micromanager
from pymmcore_plus.experimental.unicore import UniMMCore
from pymmcore_plus.mda import MDAEngine

from scopectl.errors import (
    ConfigError,
    DeviceError,
    DeviceNotFoundError,
    DeviceProtocolError,
    DeviceTimeoutError,
    ScopectlError,
)

from .engine import BenchtopEngine, TileHandler, TileSink, snap_with_shutter
from .focus import AutofocusResult, AutofocusSettings, FocusPlane, focus_score, search_focus

__all__ = ["Benchtop", "FocusMapResult", "ScanPlan", "ScanRegion", "ScanResult", "set_pixel_size_preset"]

FocusMode = Literal["map", "each", "fixed"]
PIXEL_PRESET = "scopectl"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__).rstrip(".")


@dataclass(frozen=True)
class ScanRegion:
    """A rectangle of the slide to cover with tiles, in stage micrometres (x right, y down)."""

    left_um: float
    top_um: float
    right_um: float
    bottom_um: float

    def __post_init__(self) -> None:
        vals = (self.left_um, self.top_um, self.right_um, self.bottom_um)
        if not all(math.isfinite(v) for v in vals):
            raise ConfigError(f"scan region {vals}: every edge must be a finite number of micrometres.")
        if not (self.left_um < self.right_um and self.top_um < self.bottom_um):
            raise ConfigError(
                f"scan region {vals}: need left < right and top < bottom (y grows downwards on the slide)."
            )

    @classmethod
    def around(cls, center_x_um: float, center_y_um: float, width_um: float, height_um: float) -> ScanRegion:
        """A region of the given size centred on a stage position."""
        return cls(
            center_x_um - width_um / 2,
            center_y_um - height_um / 2,
            center_x_um + width_um / 2,
            center_y_um + height_um / 2,
        )


@dataclass(frozen=True)
class PlannedTile:
    """One tile of a scan plan (row 0 is the smallest stage y, column 0 the smallest x)."""

    row: int
    col: int
    x_um: float
    y_um: float


@dataclass(frozen=True)
class ScanPlan:
    """A tile scan planned with a useq-schema grid plan (kept apart from its execution).

    ``sequence`` is the serialisable :class:`useq.MDASequence` (grid plan, autofocus plan); ``tiles`` the
    positions it expands to with their (row, col); ``fov_um`` the field of view ``(width, height)``.
    """

    region: ScanRegion
    overlap: float
    sequence: useq.MDASequence
    tiles: tuple[PlannedTile, ...]
    grid_shape: tuple[int, int]
    fov_um: tuple[float, float]
    focus: FocusMode

    def to_json(self) -> str:
        """The plan as JSON (for provenance in the slide store)."""
        return json.dumps(
            {
                "region_um": [
                    self.region.left_um,
                    self.region.top_um,
                    self.region.right_um,
                    self.region.bottom_um,
                ],
                "overlap": self.overlap,
                "grid_shape": list(self.grid_shape),
                "fov_um": list(self.fov_um),
                "focus": self.focus,
                "sequence": json.loads(self.sequence.model_dump_json(exclude_unset=True)),
            }
        )


@dataclass(frozen=True)
class FocusMapResult:
    """Autofocus at a few points and the plane fitted through the successful ones (``None`` if none)."""

    plane: FocusPlane | None
    points: tuple[tuple[float, float, AutofocusResult], ...]


@dataclass
class ScanResult:
    """What a tile scan did."""

    plan: ScanPlan
    stored: list[tuple[int, int, int]]  # (row, col, sink index)
    skipped: list[tuple[int, int]]  # (row, col) already done before this run
    focus_map: FocusMapResult | None
    autofocus: list[tuple[dict[str, int], AutofocusResult]]
    duration_s: float
    pixel_size_um: float
    tile_shape: tuple[int, int]
    warnings: list[str] = field(default_factory=list)


class Benchtop:
    """A motorised benchtop microscope driven through Micro-Manager (pymmcore-plus).

    Use :meth:`from_config` for a real microscope, or
    :func:`scopectl.hardware.benchtop.sim.simulated_benchtop` for the simulated one; both give the same
    interface.  Use as a context manager (or call :meth:`close`).

    Parameters
    ----------
    core
        A loaded and initialised ``UniMMCore`` with current XY stage, focus and camera devices.
    name
        Used in error messages (the configuration file, or ``"simulated"``).
    timeout_s
        Timeout of every wait for a device.
    z_limits_um
        Travel of the focus drive used to bound autofocus searches (``None``: unbounded).
    approach_um
        If > 0, XY moves always end travelling in +x and +y, coming from this far away (takes up
        mechanical backlash; leave 0 if the stage controller already does it).
    autofocus_settings
        Default focus search parameters.
    """

    def __init__(
        self,
        core: UniMMCore,
        *,
        name: str,
        timeout_s: float = 30.0,
        z_limits_um: tuple[float, float] | None = None,
        approach_um: float = 0.0,
        autofocus_settings: AutofocusSettings | None = None,
    ) -> None:
        if timeout_s <= 0:
            raise ConfigError(f"benchtop {name}: timeout_s must be positive, got {timeout_s}.")
        self.core = core
        self.name = name
        self.timeout_s = float(timeout_s)
        self.z_limits_um = z_limits_um
        self.approach_um = float(approach_um)
        self.autofocus_settings = (
            autofocus_settings if autofocus_settings is not None else AutofocusSettings()
        )
        self._closed = False
        with self._device("set up the core"):
            core.setTimeoutMs(int(self.timeout_s * 1000))
            missing = [
                role
                for role, label in (
                    ("camera", core.getCameraDevice()),
                    ("XY stage", core.getXYStageDevice()),
                    ("focus drive", core.getFocusDevice()),
                )
                if not label
            ]
            if missing:
                raise DeviceNotFoundError(
                    f"benchtop {name}: no current {', '.join(missing)} device.",
                    hint="Set Core,Camera / Core,XYStage / Core,Focus in the Micro-Manager configuration.",
                )
            if not core.getShutterDevice():
                core.setAutoShutter(False)  # the MDA runner needs a shutter label otherwise
            if core.getPixelSizeUm() <= 0:
                raise ConfigError(
                    f"benchtop {name}: no pixel size is calibrated.",
                    hint="Define a pixel size preset in the configuration or pass pixel_size_um.",
                )
            core.mda.set_engine(BenchtopEngine(core, autofocus=self._autofocus_from, move_xy=self.move_xy_um))

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_config(
        cls,
        mm_config_path: str | Path,
        *,
        pixel_size_um: float | None = None,
        mm_path: str | Path | None = None,
        timeout_s: float = 30.0,
        z_limits_um: tuple[float, float] | None = None,
        approach_um: float = 0.0,
        autofocus_settings: AutofocusSettings | None = None,
    ) -> Benchtop:
        """Load a Micro-Manager configuration file (real adapters and ``#py pyDevice`` lines).

        Parameters
        ----------
        mm_config_path
            The ``.cfg`` file.
        pixel_size_um
            Camera pixel size at the sample; needed when the file defines no pixel size preset
            (the paper's 7.4 µm camera behind a 20× objective: 0.37).
        mm_path
            Micro-Manager installation with the device adapters (default: pymmcore-plus's search,
            then the configuration's folder).

        Raises
        ------
        ConfigError
            The file is missing or has no pixel size.
        DeviceError
            A device failed to load or initialise.
        """
        path = Path(mm_config_path)
        if not path.is_file():
            raise ConfigError(f"{path}: Micro-Manager configuration file not found.", hint="Check the path.")
        if pixel_size_um is not None and not (0 < pixel_size_um < 100):
            raise ConfigError(f"{path}: pixel_size_um must be in (0, 100), got {pixel_size_um}.")
        adapters = str(mm_path) if mm_path is not None else (_find_adapters() or str(path.resolve().parent))
        core = UniMMCore(mm_path=adapters)
        try:
            core.loadSystemConfiguration(str(path.resolve()))
        except ScopectlError:
            raise
        except Exception as exc:
            cause = exc.__cause__ if exc.__cause__ is not None else exc
            if isinstance(cause, ScopectlError):
                raise cause from exc
            raise DeviceError(
                f"{path}: loading the Micro-Manager configuration failed ({_first_line(exc)}"
                + (f": {_first_line(cause)}" if cause is not exc else "")
                + ").",
                hint="Check the device adapters are installed and the hardware is connected and powered.",
            ) from exc
        try:
            if pixel_size_um is not None:
                set_pixel_size_preset(core, pixel_size_um)
            return cls(
                core,
                name=str(path),
                timeout_s=timeout_s,
                z_limits_um=z_limits_um,
                approach_um=approach_um,
                autofocus_settings=autofocus_settings,
            )
        except BaseException:
            with contextlib.suppress(Exception):
                core.unloadAllDevices()
            raise

    # ------------------------------------------------------------------ lifecycle
    def close(self) -> None:
        """Unload all devices (idempotent)."""
        if self._closed:
            return
        with self._device("unload the devices"):
            self.core.mda.set_engine(MDAEngine(self.core))
            self.core.unloadAllDevices()
        self._closed = True

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def simulated_scope(self) -> bool:
        """True for the simulated benchtop (:class:`~scopectl.hardware.benchtop.sim.SimulatedBenchtop`)."""
        return False

    # ------------------------------------------------------------------ error boundary
    @contextlib.contextmanager
    def _device(self, action: str) -> Iterator[None]:
        """Translate pymmcore / adapter exceptions into DeviceError (the one boundary)."""
        if self._closed:
            raise DeviceError(f"benchtop {self.name}: cannot {action}, it is closed.", hint="Open it again.")
        try:
            yield
        except ScopectlError:
            raise
        except TimeoutError as exc:
            raise DeviceTimeoutError(
                f"benchtop {self.name}: {action} timed out after {self.timeout_s:g} s ({_first_line(exc)}).",
                hint="Check the device is powered and not blocked, or raise timeout_s.",
            ) from exc
        except (RuntimeError, ValueError, OSError, KeyError, NotImplementedError) as exc:
            msg = _first_line(exc)
            cls = (
                DeviceTimeoutError if "timed out" in msg.lower() or "timeout" in msg.lower() else DeviceError
            )
            raise cls(
                f"benchtop {self.name}: cannot {action} ({msg}).",
                hint="Check the value is within the device's range and the device is connected.",
            ) from exc

    # ------------------------------------------------------------------ basic control
    def info(self) -> dict[str, Any]:
        """Devices, pixel size and frame shape (for provenance)."""
        with self._device("read the device list"):
            core = self.core
            return {
                "name": self.name,
                "simulated": self.simulated_scope,
                "camera": core.getCameraDevice(),
                "xy_stage": core.getXYStageDevice(),
                "focus": core.getFocusDevice(),
                "shutter": core.getShutterDevice(),
                "pixel_size_um": core.getPixelSizeUm(),
                "frame_shape": list(self.frame_shape),
                "exposure_ms": core.getExposure(),
            }

    @property
    def pixel_size_um(self) -> float:
        """Camera pixel size at the sample (µm)."""
        with self._device("read the pixel size"):
            return float(self.core.getPixelSizeUm())

    @property
    def frame_shape(self) -> tuple[int, int]:
        """``(rows, cols)`` of a frame with the current ROI."""
        with self._device("read the image size"):
            return int(self.core.getImageHeight()), int(self.core.getImageWidth())

    def set_exposure_ms(self, exposure_ms: float) -> None:
        """Set the camera exposure."""
        if not (math.isfinite(exposure_ms) and exposure_ms > 0):
            raise DeviceError(
                f"benchtop {self.name}: exposure must be a positive number of ms, got {exposure_ms}."
            )
        with self._device(f"set the exposure to {exposure_ms} ms"):
            self.core.setExposure(float(exposure_ms))

    def exposure_ms(self) -> float:
        """Current camera exposure (ms)."""
        with self._device("read the exposure"):
            return float(self.core.getExposure())

    def position_um(self) -> tuple[float, float, float]:
        """``(x, y, z)`` as reported by the stage and focus drive (µm)."""
        with self._device("read the stage position"):
            x, y = self.core.getXYPosition()
            z = self.core.getPosition()
            return float(x), float(y), float(z)

    def move_xy_um(self, x: float, y: float) -> None:
        """Move the stage to ``(x, y)`` µm and wait until it has settled (with backlash approach if set)."""
        if not (math.isfinite(x) and math.isfinite(y)):
            raise DeviceError(f"benchtop {self.name}: XY target ({x}, {y}) is not finite.")
        with self._device(f"move the stage to ({x:.1f}, {y:.1f}) um"):
            core = self.core
            if self.approach_um > 0:
                cx, cy = core.getXYPosition()
                if x < cx - 1e-6 or y < cy - 1e-6:
                    core.setXYPosition(float(x) - self.approach_um, float(y) - self.approach_um)
                    core.waitForDevice(core.getXYStageDevice())
            core.setXYPosition(float(x), float(y))
            core.waitForDevice(core.getXYStageDevice())

    def set_z_um(self, z: float) -> None:
        """Move the focus drive to ``z`` µm and wait."""
        if not math.isfinite(z):
            raise DeviceError(f"benchtop {self.name}: Z target {z} is not finite.")
        with self._device(f"move the focus to {z:.2f} um"):
            self.core.setPosition(float(z))
            self.core.waitForDevice(self.core.getFocusDevice())

    def snap_raw(self) -> np.ndarray:
        """Snap one frame as the camera delivers it."""
        with self._device("snap an image"):
            snap_with_shutter(self.core)
            return np.asarray(self.core.getImage())

    def snap(self) -> np.ndarray:
        """Snap one frame as ``(H, W, 3) uint8`` RGB."""
        return self._to_rgb(self.snap_raw())

    def _to_rgb(self, img: np.ndarray) -> np.ndarray:
        """Camera frame to RGB uint8 (grey cameras are replicated, >8-bit scaled by the bit depth)."""
        a = np.asarray(img)
        if a.ndim == 3 and a.shape[2] in (3, 4) and a.dtype == np.uint8:
            return np.ascontiguousarray(a[..., :3])
        if a.ndim == 2 and a.dtype in (np.uint8, np.uint16):
            with self._device("read the camera bit depth"):
                bits = int(self.core.getImageBitDepth()) or 8 * a.dtype.itemsize
            shift = max(0, bits - 8)
            grey = (a >> shift).astype(np.uint8) if shift else a.astype(np.uint8)
            return np.repeat(grey[..., None], 3, axis=2)
        raise DeviceProtocolError(
            f"benchtop {self.name}: camera delivered an unsupported frame ({a.dtype}, shape {a.shape}).",
            hint="Use an 8-bit RGB or an 8/16-bit grey camera mode.",
        )

    # ------------------------------------------------------------------ autofocus
    @contextlib.contextmanager
    def _focus_roi(self, roi_px: tuple[int, int] | None) -> Iterator[None]:
        """Use a central camera ROI while focusing (falls back to the full frame if unsupported)."""
        core = self.core
        if roi_px is None:
            yield
            return
        with self._device("read the camera ROI"):
            x0, y0, w0, h0 = (int(v) for v in core.getROI())
        rows, cols = min(roi_px[0], h0), min(roi_px[1], w0)
        changed = False
        if (rows, cols) != (h0, w0):
            try:
                core.setROI(x0 + (w0 - cols) // 2, y0 + (h0 - rows) // 2, cols, rows)
                changed = True
            except Exception:  # camera without ROI support: focus on the full frame
                changed = False
        try:
            yield
        finally:
            if changed:
                with self._device("restore the camera ROI"):
                    core.setROI(x0, y0, w0, h0)

    def autofocus(
        self, *, start_z_um: float | None = None, settings: AutofocusSettings | None = None
    ) -> AutofocusResult:
        """Image-based autofocus at the current XY position.

        Searches coarse-to-fine around ``start_z_um`` (default: the current height) and leaves the focus
        at the best height.  On an empty field (no contrast) or a failed search, returns ``ok=False`` with
        the reason and moves back to the start height.
        """
        cfg = settings if settings is not None else self.autofocus_settings
        z0 = self.position_um()[2] if start_z_um is None else float(start_z_um)

        def measure(z_um: float, level: int) -> float:
            self.set_z_um(z_um)
            img = self.snap()
            return focus_score(img, downsample=max(1, cfg.downsample >> level))

        with self._focus_roi(cfg.roi_px):
            result = search_focus(measure, start_z_um=z0, settings=cfg, z_limits_um=self.z_limits_um)
        self.set_z_um(result.z_um if result.ok else z0)
        return result

    def _autofocus_from(self, start_z_um: float) -> AutofocusResult:
        return self.autofocus(start_z_um=start_z_um)

    def focus_map(
        self, points_um: Collection[tuple[float, float]], *, start_z_um: float | None = None
    ) -> FocusMapResult:
        """Autofocus at each ``(x, y)`` and fit a focal plane through the successful points.

        Each search starts at the plane predicted from the points found so far, so tilted slides are
        followed; points without contrast are reported and left out of the fit.
        """
        found: list[tuple[float, float, float]] = []
        out: list[tuple[float, float, AutofocusResult]] = []
        z_start = self.position_um()[2] if start_z_um is None else float(start_z_um)
        for x, y in points_um:
            self.move_xy_um(x, y)
            guess = FocusPlane.fit(np.array(found)).z_at(x, y) if found else z_start
            res = self.autofocus(start_z_um=guess)
            out.append((float(x), float(y), res))
            if res.ok:
                found.append((float(x), float(y), res.z_um))
        plane = FocusPlane.fit(np.array(found)) if found else None
        return FocusMapResult(plane, tuple(out))

    # ------------------------------------------------------------------ tile scan
    def plan_scan(self, region: ScanRegion, *, overlap: float = 0.1, focus: FocusMode = "map") -> ScanPlan:
        """Plan a tile scan covering ``region`` with a useq-schema ``GridFromEdges`` plan.

        Parameters
        ----------
        region
            Area to cover (stage µm); tiles are centred so that the grid covers it completely.
        overlap
            Fractional overlap of neighbouring tiles (0.05–0.5; 0.1 is typical for stitching).
        focus
            ``"map"``: autofocus at up to five points and follow the fitted plane; ``"each"``: autofocus
            at every tile (a ``HardwareAutofocus`` event run by the engine); ``"fixed"``: current height.
        """
        if not (0.05 <= overlap <= 0.5):
            raise ConfigError(f"benchtop {self.name}: tile overlap must be within 0.05..0.5, got {overlap}.")
        if focus not in ("map", "each", "fixed"):
            raise ConfigError(f"benchtop {self.name}: focus must be 'map', 'each' or 'fixed', got {focus!r}.")
        rows, cols = self.frame_shape
        px = self.pixel_size_um
        fov_w, fov_h = cols * px, rows * px
        grid = useq.GridFromEdges(
            top=region.top_um,
            left=region.left_um,
            bottom=region.bottom_um,
            right=region.right_um,
            overlap=(overlap * 100.0, overlap * 100.0),
            fov_width=fov_w,
            fov_height=fov_h,
            mode="row_wise_snake",
        )
        af_plan = useq.AxesBasedAF(axes=("g",)) if focus == "each" else None
        seq = useq.MDASequence(
            grid_plan=grid,
            autofocus_plan=af_plan,
            metadata={"scopectl": {"kind": "benchtop tile scan", "focus": focus, "overlap": overlap}},
        )
        positions = [(float(p.x), float(p.y)) for p in grid if p.x is not None and p.y is not None]
        xs = sorted({round(p[0], 6) for p in positions})
        ys = sorted({round(p[1], 6) for p in positions})
        tiles = tuple(PlannedTile(ys.index(round(y, 6)), xs.index(round(x, 6)), x, y) for x, y in positions)
        return ScanPlan(region, float(overlap), seq, tiles, (len(ys), len(xs)), (fov_w, fov_h), focus)

    def scan(
        self,
        region: ScanRegion | ScanPlan,
        overlap: float = 0.1,
        sink: TileSink | None = None,
        *,
        focus: FocusMode = "map",
        done: Collection[tuple[int, int]] = (),
        focus_points: int = 5,
        focus_plane: FocusPlane | None = None,
    ) -> ScanResult:
        """Acquire a tile scan with the pymmcore-plus MDA runner; tiles go to ``sink.add_tile``.

        Parameters
        ----------
        region
            The area (or a plan from :meth:`plan_scan`, then ``overlap`` and ``focus`` are the plan's).
        overlap
            Fractional tile overlap.
        sink
            Receives a :class:`scopectl.store.TileRecord` per tile (a ``SlideStore`` does).
        focus
            See :meth:`plan_scan`.
        done
            ``(row, col)`` of tiles already acquired (resuming an interrupted scan): skipped.
        focus_points
            Number of focus-map points (``focus="map"``): 1 (centre), 3, 4 (corners) or 5 (corners and
            centre).
        focus_plane
            A focal plane measured earlier (e.g. saved when an interrupted scan started): with
            ``focus="map"`` it is used instead of measuring a new focus map.

        Raises
        ------
        DeviceError
            A device failed (the run stops).
        Exception
            Whatever the sink raised for a tile: the run is cancelled and the same error is raised.
        """
        if sink is None:
            raise ConfigError(f"benchtop {self.name}: scan needs a sink (a SlideStore or another TileSink).")
        plan = (
            region if isinstance(region, ScanPlan) else self.plan_scan(region, overlap=overlap, focus=focus)
        )
        t_start = time.monotonic()
        done_set = {(int(r), int(c)) for r, c in done}
        todo = [t for t in plan.tiles if (t.row, t.col) not in done_set]
        skipped = [(t.row, t.col) for t in plan.tiles if (t.row, t.col) in done_set]
        warnings: list[str] = []
        z_now = self.position_um()[2]
        plane, fmap = self._scan_focus_plane(plan, todo, z_now, focus_points, focus_plane, warnings)
        events = _scan_events(plan, todo, plane, z_now)
        engine = self.core.mda.engine
        if isinstance(engine, BenchtopEngine):
            engine.autofocus_results.clear()
        handler = TileHandler(sink, cancel=self.core.mda.cancel, to_rgb=self._to_rgb)
        with self._device("run the tile scan"):
            self.core.mda.run(events, output=handler)
        if handler.error is not None:
            raise handler.error
        af = list(engine.autofocus_results) if isinstance(engine, BenchtopEngine) else []
        failed_af = [r for _, r in af if not r.ok]
        if failed_af:
            warnings.append(f"per-tile autofocus failed at {len(failed_af)} of {len(af)} tiles")
        return ScanResult(
            plan=plan,
            stored=list(handler.stored),
            skipped=skipped,
            focus_map=fmap,
            autofocus=af,
            duration_s=time.monotonic() - t_start,
            pixel_size_um=self.pixel_size_um,
            tile_shape=self.frame_shape,
            warnings=warnings,
        )

    def _scan_focus_plane(
        self,
        plan: ScanPlan,
        todo: list[PlannedTile],
        z_now: float,
        focus_points: int,
        focus_plane: FocusPlane | None,
        warnings: list[str],
    ) -> tuple[FocusPlane, FocusMapResult | None]:
        """The plane the tiles are focused on (and the focus map measured for it, if one was)."""
        if plan.focus == "map" and focus_plane is not None:
            return focus_plane, None
        flat = FocusPlane(z_now, 0.0, 0.0)
        if plan.focus != "map" or not todo:
            return flat, None
        fmap = self.focus_map(_focus_points(todo, focus_points), start_z_um=z_now)
        if fmap.plane is None:
            warnings.append("focus map: no point had contrast; scanning at the current height")
            return flat, fmap
        failed = [p for p in fmap.points if not p[2].ok]
        if failed:
            warnings.append(f"focus map: {len(failed)} of {len(fmap.points)} points had no usable focus")
        return fmap.plane, fmap


def _scan_events(
    plan: ScanPlan, todo: list[PlannedTile], plane: FocusPlane, z_now: float
) -> list[useq.MDAEvent]:
    """The plan's events for the tiles still to do, with tile row/column and focus height."""
    by_pos = {(round(t.x_um, 6), round(t.y_um, 6)): t for t in todo}
    events: list[useq.MDAEvent] = []
    for ev in plan.sequence:
        if ev.x_pos is None or ev.y_pos is None:
            continue
        tile = by_pos.get((round(float(ev.x_pos), 6), round(float(ev.y_pos), 6)))
        if tile is None:
            continue
        update: dict[str, Any] = {
            "metadata": {**ev.metadata, "tile_row": tile.row, "tile_col": tile.col},
            "sequence": None,
        }
        if plan.focus == "map":
            update["z_pos"] = plane.z_at(tile.x_um, tile.y_um)
        elif plan.focus == "fixed":
            update["z_pos"] = z_now
        events.append(ev.model_copy(update=update))
    return events


def _focus_points(tiles: list[PlannedTile], n: int) -> list[tuple[float, float]]:
    """Corners and centre of the tile centres' bounding box (n = 1, 3, 4 or 5 points)."""
    xs = [t.x_um for t in tiles]
    ys = [t.y_um for t in tiles]
    x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
    center = ((x0 + x1) / 2, (y0 + y1) / 2)
    corners = [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]
    if n <= 1:
        pts = [center]
    elif n == 2 or n == 3:
        pts = [corners[0], corners[1], corners[3]]
    elif n == 4:
        pts = corners
    else:
        pts = [*corners, center]
    unique: list[tuple[float, float]] = []
    for p in pts:
        if p not in unique:
            unique.append(p)
    return unique


def _find_adapters() -> str | None:
    """pymmcore-plus's Micro-Manager search, without its ERROR log when nothing is installed."""
    log = logging.getLogger("pymmcore-plus")
    level = log.level
    log.setLevel(logging.CRITICAL)
    try:
        return find_micromanager()
    finally:
        log.setLevel(level)


def set_pixel_size_preset(core: UniMMCore, pixel_size_um: float) -> None:
    """Set the core's pixel size as an empty preset (the only form that works with Python devices)."""
    if PIXEL_PRESET not in core.getAvailablePixelSizeConfigs():
        core.definePixelSizeConfig(PIXEL_PRESET)
    core.setPixelSizeUm(PIXEL_PRESET, float(pixel_size_um))
    core.setPixelSizeConfig(PIXEL_PRESET)
