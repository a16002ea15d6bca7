"""The MDA engine of the benchtop and the frame handler that writes tiles into a slide store.

:class:`BenchtopEngine` is pymmcore-plus's :class:`~pymmcore_plus.mda.MDAEngine` with three changes:

- ``useq.HardwareAutofocus`` events run the image-based software autofocus (there is no Python
  autofocus device); the z found becomes the per-position z correction, as with a hardware autofocus;
- a failed stage move or snap *raises* (the stock engine logs a warning and goes on, which would store
  a tile at the wrong place or silently lose it);
- a Python shutter is opened around each snap when auto-shutter is on (UniMMCore's auto-shutter only
  drives C++ shutters).

:class:`TileHandler` is the ``frameReady`` handler: it builds :class:`scopectl.store.TileRecord` objects and
hands them to a :class:`TileSink`.  pymmcore-plus calls handlers on a relay thread and swallows their
exceptions, so the handler records the first failure, cancels the run, ignores later frames, and
:meth:`Benchtop.scan` re-raises the failure after the runner returns.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np
from pymmcore_plus.mda import MDAEngine
from useq import HardwareAutofocus, MDAEvent

from scopectl.store import TileRecord

from .focus import AutofocusResult, focus_score

if TYPE_CHECKING:
    from pymmcore_plus import CMMCorePlus

__all__ = ["BenchtopEngine", "MemorySink", "TileHandler", "TileSink"]

logger = logging.getLogger(__name__)


@runtime_checkable
class TileSink(Protocol):
    """Where scanned tiles go (:class:`scopectl.store.SlideStore` implements it)."""

    def add_tile(self, rec: TileRecord) -> int:
        """Store one tile durably; return its index."""
        ...


@dataclass
class MemorySink:
    """A :class:`TileSink` that keeps the tiles in memory, in the order they arrive (tests, benchmarks)."""

    tiles: list[TileRecord] = field(default_factory=list)

    def add_tile(self, rec: TileRecord) -> int:
        """Append the tile; return its index in :attr:`tiles`."""
        self.tiles.append(rec)
        return len(self.tiles) - 1


def snap_with_shutter(core: CMMCorePlus) -> None:
    """Snap one image, opening a Python shutter around it when auto-shutter is on."""
    shutter = core.getShutterDevice()
    manual = bool(shutter) and core.getAutoShutter() and _is_py_device(core, shutter)
    if manual:
        core.setShutterOpen(True)
    try:
        core.snapImage()
    finally:
        if manual:
            core.setShutterOpen(False)


def _is_py_device(core: CMMCorePlus, label: str) -> bool:
    is_py = getattr(core, "isPyDevice", None)
    return bool(is_py(label)) if callable(is_py) else False


class BenchtopEngine(MDAEngine):
    """MDA engine with software autofocus and fail-loud moves and snaps.

    Parameters
    ----------
    core
        The core.
    autofocus
        ``autofocus(start_z_um) -> AutofocusResult``; called for ``HardwareAutofocus`` events, at the
        event's position (the focus drive is left at the height found, or at the start when not ``ok``).
    move_xy
        ``move_xy(x_um, y_um)``: moves the stage and waits (with a timeout); used instead of the stock
        move so that unidirectional approach and error translation apply.
    """

    def __init__(
        self,
        core: CMMCorePlus,
        *,
        autofocus: Callable[[float], AutofocusResult],
        move_xy: Callable[[float, float], None],
    ) -> None:
        super().__init__(core, use_hardware_sequencing=False, restore_initial_state=False)
        self._autofocus = autofocus
        self._move_xy = move_xy
        self.autofocus_results: list[tuple[dict[str, int], AutofocusResult]] = []

    def setup_single_event(self, event: MDAEvent) -> None:
        """Move XY ourselves (raising on failure), then let the stock engine do the rest."""
        if event.x_pos is not None and event.y_pos is not None:
            self._move_xy(float(event.x_pos), float(event.y_pos))
            event = event.model_copy(update={"x_pos": None, "y_pos": None})
        super().setup_single_event(event)

    def exec_event(self, event: MDAEvent) -> Iterable[Any]:
        """Run software autofocus for ``HardwareAutofocus`` events; otherwise as the stock engine."""
        action = getattr(event, "action", None)
        if isinstance(action, HardwareAutofocus):
            core = self.mmcore
            z_before = float(core.getPosition())
            result = self._autofocus(z_before)
            self.autofocus_results.append((dict(event.index), result))
            if result.ok:
                p_idx = event.index.get("p", None)
                self._z_correction[p_idx] = self._z_correction.get(p_idx, 0.0) + (result.z_um - z_before)
            else:
                logger.warning("autofocus at %s: %s", dict(event.index), result.reason)
            return ()
        return super().exec_event(event)

    def exec_single_event(self, event: MDAEvent) -> Iterator[Any]:
        """Snap one frame; unlike the stock engine, a failed snap raises."""
        core = self.mmcore
        t0 = event.metadata.get("runner_t0") or time.perf_counter()
        snap_with_shutter(core)
        elapsed_ms = (time.perf_counter() - t0) * 1000
        meta = self.get_frame_metadata(
            event, runner_time_ms=elapsed_ms, camera_device=core.getCameraDevice(), include_position=True
        )
        yield (core.getImage(), event, meta)


class TileHandler:
    """``frameReady`` handler that turns frames into :class:`TileRecord` and stores them.

    Parameters
    ----------
    sink
        Receives every tile (``add_tile``).
    cancel
        Called once on the first failure (cancels the MDA run).
    to_rgb
        Converts a raw camera frame to ``(H, W, 3) uint8`` (raises on unsupported formats).
    focus_downsample
        Downsampling of the per-tile focus score.
    """

    def __init__(
        self,
        sink: TileSink,
        *,
        cancel: Callable[[], None],
        to_rgb: Callable[[np.ndarray], np.ndarray],
        focus_downsample: int = 2,
    ) -> None:
        self.sink = sink
        self._cancel = cancel
        self._to_rgb = to_rgb
        self._downsample = focus_downsample
        self._lock = threading.Lock()
        self.error: BaseException | None = None
        self.stored: list[tuple[int, int, int]] = []  # (row, col, sink index)

    def frameReady(self, img: np.ndarray, event: MDAEvent, meta: Mapping[str, Any], /) -> None:  # noqa: N802
        """Store one frame (called by pymmcore-plus, on its relay thread)."""
        with self._lock:
            if self.error is not None:
                return
            try:
                rgb = self._to_rgb(np.asarray(img))
                pos = meta.get("position") or {}
                x = pos.get("x", event.x_pos)
                y = pos.get("y", event.y_pos)
                z = pos.get("z", event.z_pos)
                rec = TileRecord(
                    rgb=rgb,
                    row=int(event.metadata["tile_row"]),
                    col=int(event.metadata["tile_col"]),
                    stage_x_um=float(x if x is not None else np.nan),
                    stage_y_um=float(y if y is not None else np.nan),
                    stage_z_um=float(z if z is not None else np.nan),
                    pixel_size_um=float(meta["pixel_size_um"]),
                    focus_score=focus_score(rgb, downsample=self._downsample),
                    timestamp=time.time(),
                    exposure_ms=float(meta.get("exposure_ms", np.nan)),
                    extra={
                        "planned_x_um": event.x_pos,
                        "planned_y_um": event.y_pos,
                        "planned_z_um": event.z_pos,
                        "grid_index": event.index.get("g"),
                        "runner_time_ms": meta.get("runner_time_ms"),
                        "camera": meta.get("camera_device"),
                    },
                )
                index = self.sink.add_tile(rec)
                self.stored.append((rec.row, rec.col, int(index)))
            except BaseException as exc:  # recorded and re-raised by Benchtop.scan after the run
                self.error = exc
                try:
                    self._cancel()
                except Exception:  # the run is finishing anyway; the recorded error is what matters
                    logger.exception("cancelling the MDA run after a handler failure failed")
