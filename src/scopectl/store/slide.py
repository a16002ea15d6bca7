"""The per-slide HDF5 store: one file per slide at ``<root>/slides/<slide-id>.h5``.

Layout (schema version 1; ``docs/store.md`` is the reader's guide)::

    /                       attrs: format="scopectl-slide", schema_version, slide_id, created,
                                   software_version, simulated, rig_json, protocol_json, plan_json
    /benchtop/tiles/NNNNN   group per tile; dataset ``rgb`` (rows, cols, 3) uint8, chunked, deflate;
                            attrs row, col, stage_x_um, stage_y_um, stage_z_um, pixel_size_um,
                            focus_score, exposure_ms, timestamp, extra_json, complete
    /benchtop/mosaic        dataset (rows, cols, 3) uint8, chunked 512×512, deflate; attrs pixel_size_um,
                            origin_x_um, origin_y_um, method_json, complete
    /phone/captures/NNNNN   group per capture; datasets ``rgb`` (decoded), ``dng``/``jpeg``/``source`` (the
                            raw bytes exactly as pulled or imported, uint8 1-D, attrs sha256, size);
                            attrs field_index, pixel_size_um, source_name, settings_json, led_state_json,
                            battery_mv, stage_x_um, stage_y_um, timestamp, latencies_json, extra_json, complete
    /registration/NNNNN     group per capture index; datasets homography (3,3), shift_map (2,rows,cols),
                            similarity/level_K; attrs ok, reason, scale, inliers, quality, pixel_size_um,
                            residual_px, extra_json, complete
    /provenance/log         1-D variable-length UTF-8 strings, one JSON object per event

Crash safety: every item is written, flushed, then marked ``complete`` and flushed again.  An item
without ``complete`` (a process killed mid-write) is invisible to readers and deleted when the store is
reopened for writing (``mode="a"``), so ``--resume`` continues after the last complete item.  Only one
process writes a slide at a time (:class:`~scopectl.store.lock.WriteLock`).

Thread-safety: a :class:`SlideStore` must be used from one thread at a time (h5py serialises calls,
but the item bookkeeping here does not).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import math
import os
import resource
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, ParamSpec, TypeVar

import h5py
import numpy as np

from scopectl import __version__
from scopectl.errors import (
    FilesystemError,
    InputFileError,
    ScopectlError,
    StoreCorruptError,
    StoreError,
    StoreExistsError,
    from_os_error,
)
from scopectl.store.h5safe import (
    SafeDataset,
    attr_bool,
    attr_float,
    attr_int,
    attr_json,
    attr_str,
    open_h5,
    reading,
)
from scopectl.store.lock import WriteLock
from scopectl.store.paths import validate_slide_id

__all__ = [
    "FORMAT",
    "SCHEMA_VERSION",
    "CaptureRecord",
    "MosaicInfo",
    "RegistrationRecord",
    "SlideStore",
    "TileRecord",
]

FORMAT = "scopectl-slide"
SCHEMA_VERSION = 1
MOSAIC_CHUNK = 512
_RAW_KINDS: tuple[Literal["dng", "jpeg", "source"], ...] = ("dng", "jpeg", "source")


def _json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, default=_json_default)


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, bytes):
        return obj.hex()
    raise TypeError(f"not JSON-serialisable: {type(obj).__name__}")


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _check_rgb(name: str, rgb: np.ndarray) -> np.ndarray:
    arr = np.asarray(rgb)
    if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3 or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise StoreError(f"{name}: expected an RGB uint8 image (rows, cols, 3), got {arr.dtype} {arr.shape}.")
    return arr


def _finite(name: str, value: float | None) -> float:
    if value is None:
        return math.nan
    v = float(value)
    if math.isinf(v):
        raise StoreError(f"{name} must be finite, got {value}.")
    return v


def _opt(value: Any) -> float | None:
    v = float(value)
    return None if math.isnan(v) else v


_P = ParamSpec("_P")
_R = TypeVar("_R")
#: :meth:`SlideStore.verify`'s ``check(what, read)``: ``read()``, or None after noting a problem.
_Check = Callable[[str, Callable[[], Any]], Any]

#: Largest phone capture or benchtop tile read whole (pixels); the mosaic is read lazily, in blocks.
MAX_ITEM_PIXELS = 400_000_000


def _reads(what: str) -> Callable[[Callable[_P, _R]], Callable[_P, _R]]:
    """Decorate a :class:`SlideStore` reader: h5py, numpy and JSON errors become one clear store error."""

    def wrap(fn: Callable[_P, _R]) -> Callable[_P, _R]:
        @functools.wraps(fn)
        def inner(*args: _P.args, **kwargs: _P.kwargs) -> _R:
            store = args[0]
            assert isinstance(store, SlideStore)
            with reading(store.path, what):
                return fn(*args, **kwargs)

        return inner

    return wrap


def _rgb_dataset(g: h5py.Group, what: str) -> h5py.Dataset:
    """The ``rgb`` dataset of an item, checked: uint8, (rows, cols, 3), not absurdly large."""
    ds = g.get("rgb")
    if not isinstance(ds, h5py.Dataset):
        raise KeyError(f"{what} has no rgb dataset")
    shape = ds.shape
    if ds.dtype != np.uint8 or len(shape) != 3 or shape[2] != 3 or shape[0] == 0 or shape[1] == 0:
        raise ValueError(f"{what}: rgb is {ds.dtype} {shape}, not RGB uint8 (rows, cols, 3)")
    if int(shape[0]) * int(shape[1]) > MAX_ITEM_PIXELS:
        raise ValueError(f"{what}: rgb of {shape[0]}×{shape[1]} pixels exceeds {MAX_ITEM_PIXELS:,}")
    return ds


def _raw_bytes(ds: Any, what: str) -> bytes:
    """The bytes of a raw-file dataset (1-D uint8), checked against its recorded size."""
    if not isinstance(ds, h5py.Dataset) or ds.dtype != np.uint8 or ds.ndim != 1:
        raise ValueError(f"{what} is not a 1-D uint8 dataset")
    size = attr_int(ds, "size")
    if int(ds.shape[0]) != size:
        raise ValueError(f"{what} holds {ds.shape[0]} bytes but records {size}")
    return bytes(np.asarray(ds[()], dtype=np.uint8).tobytes())


@dataclass(frozen=True)
class TileRecord:
    """One benchtop camera frame at a stage position."""

    rgb: np.ndarray
    row: int
    col: int
    stage_x_um: float
    stage_y_um: float
    stage_z_um: float
    pixel_size_um: float
    focus_score: float
    timestamp: float
    exposure_ms: float
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class CaptureRecord:
    """One phone capture: the raw files as pulled (or imported) and the decoded image."""

    rgb: np.ndarray
    field_index: int
    pixel_size_um: float
    dng: bytes | None
    jpeg: bytes | None
    source: bytes | None
    source_name: str
    settings: dict[str, Any]
    led_state: dict[str, Any]
    battery_mv: float | None
    stage_x_um: float | None
    stage_y_um: float | None
    timestamp: float
    latencies_s: dict[str, float]
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RegistrationRecord:
    """The registration of one phone capture into the benchtop mosaic."""

    ok: bool
    reason: str
    homography: np.ndarray
    scale: float
    inliers: int
    shift_map: np.ndarray | None
    similarity_maps: list[np.ndarray]
    quality: float
    pixel_size_um: float
    residual_px: float | None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class MosaicInfo:
    """Geometry of the stitched mosaic: pixel (r, c) is centred at (origin + c·p, origin + r·p) µm."""

    pixel_size_um: float
    origin_x_um: float
    origin_y_um: float
    rows: int
    cols: int


@dataclass(frozen=True)
class TileMeta:
    """A stored tile as :class:`TileRecord` wrote it, without its pixels (:meth:`SlideStore.read_tile` reads them)."""

    index: int
    row: int
    col: int
    stage_x_um: float
    stage_y_um: float
    stage_z_um: float
    pixel_size_um: float
    focus_score: float
    exposure_ms: float
    timestamp: float
    shape: tuple[int, ...]
    extra: dict[str, Any]


@dataclass(frozen=True)
class CaptureMeta:
    """A stored capture as :class:`CaptureRecord` wrote it, without its pixels and raw bytes.

    ``raw`` maps each stored raw file (``dng``, ``jpeg``, ``source``) to its size in bytes
    (:meth:`SlideStore.read_capture_raw` reads them); NaN-stored unknowns are ``None``.
    """

    index: int
    field_index: int
    pixel_size_um: float
    source_name: str
    settings: dict[str, Any]
    led_state: dict[str, Any]
    battery_mv: float | None
    stage_x_um: float | None
    stage_y_um: float | None
    timestamp: float
    latencies_s: dict[str, float]
    extra: dict[str, Any]
    shape: tuple[int, ...]
    raw: dict[str, int]

    @property
    def flags(self) -> list[str]:
        """The acquisition-time check failures recorded with the capture (``extra["flags"]``)."""
        flags = self.extra.get("flags")
        return [str(f) for f in flags] if isinstance(flags, list) else []


@dataclass(frozen=True)
class ProvenanceEvent:
    """One entry of the slide's provenance log, as :meth:`SlideStore.log` wrote it."""

    time: str
    event: str
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The entry as stored: ``{"time": ..., "event": ..., **details}``."""
        return {"time": self.time, "event": self.event, **self.details}

    @classmethod
    def from_dict(cls, entry: dict[str, Any]) -> ProvenanceEvent:
        details = {k: v for k, v in entry.items() if k not in ("time", "event")}
        return cls(time=str(entry.get("time", "")), event=str(entry.get("event", "")), details=details)


class SlideStore:
    """One slide's HDF5 file.  Open with :meth:`create` or :meth:`open`; use as a context manager."""

    def __init__(self, path: Path, h5: h5py.File, lock: WriteLock | None, *, writable: bool) -> None:
        self.path = path
        self._h5 = h5
        self._lock = lock
        self.writable = writable
        self.discarded: list[str] = []
        #: When opened read-only while another process writes the slide: that writer's description.
        self.writer: dict[str, Any] | None = None
        #: The path messages name (an importer writes a temporary file that becomes another path).
        self.display_path = path
        #: What to do when the disk is full.
        self.space_hint = "Free some space (or move --root), then continue with --resume."

    # ------------------------------------------------------------------ opening
    @classmethod
    def create(
        cls,
        path: Path | str,
        *,
        slide_id: str,
        rig: dict[str, Any],
        simulated: bool,
        protocol: dict[str, Any] | None = None,
        force: bool = False,
        display_path: Path | None = None,
        space_hint: str | None = None,
    ) -> SlideStore:
        """Create a new slide file (taking its write lock).

        ``display_path`` is the path messages name (an importer writes a temporary file renamed later) and
        ``space_hint`` what a full-disk error advises.

        Raises
        ------
        StoreExistsError
            If the file exists and ``force`` is false.
        StoreLockedError
            If another process holds the slide's lock.
        FilesystemError
            If the disk (or the file-size limit) has no room, or the folder cannot be written.
        """
        path = Path(path)
        validate_slide_id(slide_id)
        lock = WriteLock(path)
        lock.acquire()
        try:
            if path.exists() and not force:
                raise StoreExistsError(
                    f"{path}: slide '{slide_id}' already exists.",
                    hint="Use --resume to continue it or --force to replace it (its data will be lost).",
                )
            path.parent.mkdir(parents=True, exist_ok=True)
            if force and path.exists():
                path.unlink()  # its space counts as free below; a failed create leaves no half-truncated file
            shown = display_path if display_path is not None else path
            _check_space(
                path, 0, shown=shown, hint=space_hint or "Free some space (or move --root), then try again."
            )
            h5 = open_h5(path, "x", what="slide file")
            h5.attrs["format"] = FORMAT
            h5.attrs["schema_version"] = SCHEMA_VERSION
            h5.attrs["slide_id"] = slide_id
            h5.attrs["created"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
            h5.attrs["software_version"] = f"scopectl {__version__}"
            h5.attrs["simulated"] = bool(simulated)
            h5.attrs["rig_json"] = _json(rig)
            h5.attrs["protocol_json"] = _json(protocol or {})
            h5.attrs["plan_json"] = "{}"
            for g in ("benchtop/tiles", "phone/captures", "registration", "provenance"):
                h5.require_group(g)
            h5["provenance"].create_dataset(
                "log", shape=(0,), maxshape=(None,), dtype=h5py.string_dtype("utf-8"), chunks=(64,)
            )
            h5.flush()
        except BaseException:
            lock.release()
            raise
        store = cls(path, h5, lock, writable=True)
        if display_path is not None:
            store.display_path = display_path
        if space_hint is not None:
            store.space_hint = space_hint
        store.log("created", slide_id=slide_id, simulated=bool(simulated))
        return store

    @classmethod
    def open(cls, path: Path | str, *, mode: Literal["r", "a"] = "r") -> SlideStore:
        """Open an existing slide, read-only (``"r"``) or for appending (``"a"``, takes the write lock).

        Opening for appending discards items a killed writer left incomplete.
        """
        path = Path(path)
        if mode not in ("r", "a"):
            raise ValueError(f"mode {mode!r}: expected 'r' or 'a'")
        lock: WriteLock | None = None
        if mode == "a":
            if not path.exists():
                raise StoreError(
                    f"{path}: no such slide file.", hint="Check the slide id and --root; `scopectl store ls`."
                )
            lock = WriteLock(path)
            lock.acquire()
        try:
            # Checked read-only first (links, external data, sizes: see scopectl.store.h5safe); a writer's
            # reopen for writing happens only after that and the format check passed, so a damaged or
            # foreign file is never modified.  Readers do not take HDF5's file lock, so `store info` works
            # while an acquisition writes; writers are serialised by our own WriteLock.
            h5 = open_h5(path, "r", what="slide file")
            try:
                _check_format(path, h5)
            finally:
                if mode == "a":
                    h5.close()
            if mode == "a":
                h5 = open_h5(path, "r+", what="slide file", check=False)
        except BaseException:
            if lock is not None:
                lock.release()
            raise
        store = cls(path, h5, lock, writable=mode == "a")
        if mode == "r":
            store.writer = WriteLock(path).probe()
        if mode == "a":
            store._discard_incomplete()
            store.log("opened for append", discarded=store.discarded)
        return store

    def close(self) -> None:
        """Flush, close the file and release the lock (idempotent)."""
        try:
            if self._h5.id.valid:
                if self.writable:
                    self._h5.flush()
                self._h5.close()
        finally:
            if self._lock is not None:
                self._lock.release()
                self._lock = None

    def __enter__(self) -> SlideStore:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # ------------------------------------------------------------------ attributes
    @property
    def h5(self) -> h5py.File:
        """The underlying h5py file (for readers that need lazy access)."""
        return self._h5

    @property
    @_reads("root attributes")
    def slide_id(self) -> str:
        return attr_str(self._h5, "slide_id")

    @property
    @_reads("root attributes")
    def simulated(self) -> bool:
        return attr_bool(self._h5, "simulated")

    @property
    @_reads("root attributes")
    def schema_version(self) -> int:
        return attr_int(self._h5, "schema_version")

    @_reads("root attributes")
    def rig(self) -> dict[str, Any]:
        return dict(attr_json(self._h5, "rig_json"))

    @_reads("root attributes")
    def protocol(self) -> dict[str, Any]:
        return dict(attr_json(self._h5, "protocol_json"))

    @_reads("the acquisition plan")
    def plan(self) -> dict[str, Any]:
        return dict(attr_json(self._h5, "plan_json", default={}))

    def set_plan(self, plan: dict[str, Any]) -> None:
        """Save the frozen acquisition plan (so a resumed run executes the same plan)."""
        self._require_writable()
        self._h5.attrs["plan_json"] = _json(plan)
        self._h5.flush()

    def set_attr(self, name: str, value: str | int | float | bool) -> None:
        """Set a root attribute (for information that fits no other place)."""
        self._require_writable()
        if name in ("format", "schema_version", "slide_id", "created"):
            raise StoreError(f"{self.path}: root attribute '{name}' is fixed at creation.")
        self._h5.attrs[name] = value
        self._h5.flush()

    # ------------------------------------------------------------------ internals
    def _require_writable(self) -> None:
        if not self.writable:
            raise StoreError(f"{self.path}: opened read-only.", hint="Open it with mode='a' to write.")

    #: Kept free beyond an item's own size (HDF5 metadata, chunk index, provenance log).
    SPACE_MARGIN_BYTES = 512 * 1024

    def ensure_space(self, nbytes: int) -> None:
        """Refuse to start an item that the disk (or the process's file-size limit) cannot hold.

        HDF5 without a journal cannot survive a write that fails halfway (the file's own metadata would
        point past its end, and HDF5 2.0 may even crash on the next call), so every item checks for room
        first, for the worst case (data that does not compress): a full disk stops the writer with this
        error and everything already stored stays intact.

        Raises
        ------
        FilesystemError
            Naming :attr:`display_path`, with :attr:`space_hint` as what to do.
        """
        _check_space(self.path, nbytes, shown=self.display_path, hint=self.space_hint)

    def _commit(self, group: h5py.Group) -> None:
        """Mark an item complete only after its data is on disk."""
        self._h5.flush()
        group.attrs["complete"] = True
        self._h5.flush()

    def _items(self, parent: str) -> Iterator[tuple[int, h5py.Group]]:
        grp = self._h5.get(parent)
        if grp is None:
            return
        for name in sorted(grp.keys()):
            g = _safe_item(grp, name)
            if g is not None and attr_bool(g, "complete", default=False):
                yield int(name), g

    def _next_index(self, parent: str) -> int:
        grp = self._h5[parent]
        names = [int(n) for n in grp]
        return max(names) + 1 if names else 0

    def _discard_incomplete(self) -> None:
        """Unlink items without their completion mark, and items a failed write left unreadable."""
        for parent in ("benchtop/tiles", "phone/captures", "registration"):
            grp = self._h5.get(parent)
            if grp is None:
                continue
            for name in list(grp.keys()):
                g = _safe_item(grp, name)
                if g is None or not bool(g.attrs.get("complete", False)):
                    del grp[name]
                    self.discarded.append(f"{parent}/{name}")
        try:
            mosaic = self._h5.get("benchtop/mosaic")
            complete = mosaic is not None and bool(mosaic.attrs.get("complete", False))
        except (KeyError, OSError, RuntimeError):
            mosaic, complete = True, False
        if mosaic is not None and not complete:
            del self._h5["benchtop/mosaic"]
            self.discarded.append("benchtop/mosaic")
        self._h5.flush()

    # ------------------------------------------------------------------ tiles
    def add_tile(self, rec: TileRecord) -> int:
        """Write one benchtop tile and commit it; returns its index."""
        self._require_writable()
        rgb = _check_rgb("tile", rec.rgb)
        self.ensure_space(rgb.nbytes)
        index = self._next_index("benchtop/tiles")
        g = self._h5["benchtop/tiles"].create_group(f"{index:05d}")
        ch = (min(512, rgb.shape[0]), min(512, rgb.shape[1]), 3)
        g.create_dataset("rgb", data=rgb, chunks=ch, compression="gzip", compression_opts=1, shuffle=True)
        a = g.attrs
        a["row"], a["col"] = int(rec.row), int(rec.col)
        a["stage_x_um"] = _finite("stage_x_um", rec.stage_x_um)
        a["stage_y_um"] = _finite("stage_y_um", rec.stage_y_um)
        a["stage_z_um"] = _finite("stage_z_um", rec.stage_z_um)
        a["pixel_size_um"] = _finite("pixel_size_um", rec.pixel_size_um)
        a["focus_score"] = _finite("focus_score", rec.focus_score)
        a["exposure_ms"] = _finite("exposure_ms", rec.exposure_ms)
        a["timestamp"] = float(rec.timestamp)
        a["extra_json"] = _json(rec.extra)
        self._commit(g)
        return index

    @_reads("the benchtop tiles")
    def tile_count(self) -> int:
        return sum(1 for _ in self._items("benchtop/tiles"))

    @_reads("the benchtop tiles")
    def tiles_meta(self) -> list[TileMeta]:
        """Every complete tile (without pixels), in index order."""
        return [self._tile_meta(i, g) for i, g in self._items("benchtop/tiles")]

    @staticmethod
    def _tile_meta(index: int, g: h5py.Group) -> TileMeta:
        return TileMeta(
            index=index,
            row=attr_int(g, "row"),
            col=attr_int(g, "col"),
            stage_x_um=attr_float(g, "stage_x_um"),
            stage_y_um=attr_float(g, "stage_y_um"),
            stage_z_um=attr_float(g, "stage_z_um"),
            pixel_size_um=attr_float(g, "pixel_size_um"),
            focus_score=attr_float(g, "focus_score"),
            exposure_ms=attr_float(g, "exposure_ms"),
            timestamp=attr_float(g, "timestamp"),
            shape=tuple(int(v) for v in _rgb_dataset(g, f"tile {index}").shape),
            extra=attr_json(g, "extra_json"),
        )

    def read_tile(self, index: int) -> tuple[np.ndarray, TileMeta]:
        g = self._get_item("benchtop/tiles", index, "tile")
        with reading(self.path, f"tile {index}"):
            meta = self._tile_meta(index, g)
            return np.asarray(_rgb_dataset(g, f"tile {index}")[()]), meta

    def _get_item(self, parent: str, index: int, what: str) -> h5py.Group:
        with reading(self.path, f"{what} {index}"):
            g = _safe_item(self._h5[parent], f"{index:05d}") if parent in self._h5 else None
            complete = g is not None and attr_bool(g, "complete", default=False)
        if g is None or not complete:
            raise StoreError(f"{self.path}: no complete {what} {index}.")
        return g

    # ------------------------------------------------------------------ mosaic
    def write_mosaic(
        self,
        rgb: np.ndarray | None,
        *,
        shape: tuple[int, int] | None = None,
        pixel_size_um: float,
        origin_x_um: float,
        origin_y_um: float,
        method: dict[str, Any],
    ) -> h5py.Dataset:
        """Create the mosaic dataset (replacing an earlier one).

        With ``rgb`` the mosaic is written and committed at once.  With ``rgb=None`` an empty chunked
        dataset of ``shape`` is created for the caller to fill block by block; call
        :meth:`finish_mosaic` when done.
        """
        self._require_writable()
        if rgb is not None:
            rgb = _check_rgb("mosaic", rgb)
            shape = (rgb.shape[0], rgb.shape[1])
        if shape is None or shape[0] <= 0 or shape[1] <= 0:
            raise StoreError(f"{self.path}: mosaic needs a positive shape, got {shape}.")
        self.ensure_space(shape[0] * shape[1] * 3)  # the worst case: pixels that do not compress
        if "benchtop/mosaic" in self._h5:
            del self._h5["benchtop/mosaic"]
        ch = (min(MOSAIC_CHUNK, shape[0]), min(MOSAIC_CHUNK, shape[1]), 3)
        ds = self._h5["benchtop"].create_dataset(
            "mosaic",
            shape=(shape[0], shape[1], 3),
            dtype=np.uint8,
            chunks=ch,
            compression="gzip",
            compression_opts=1,
            shuffle=True,
            fillvalue=0,
        )
        ds.attrs["pixel_size_um"] = _finite("pixel_size_um", pixel_size_um)
        ds.attrs["origin_x_um"] = _finite("origin_x_um", origin_x_um)
        ds.attrs["origin_y_um"] = _finite("origin_y_um", origin_y_um)
        ds.attrs["method_json"] = _json(method)
        if rgb is not None:
            for r0 in range(0, shape[0], MOSAIC_CHUNK * 4):
                ds[r0 : r0 + MOSAIC_CHUNK * 4] = rgb[r0 : r0 + MOSAIC_CHUNK * 4]
            self.finish_mosaic()
        return ds

    def finish_mosaic(self) -> None:
        """Mark the mosaic complete (after its data is flushed)."""
        self._require_writable()
        ds = self._h5.get("benchtop/mosaic")
        if ds is None:
            raise StoreError(f"{self.path}: no mosaic to finish.")
        self._h5.flush()
        ds.attrs["complete"] = True
        self._h5.flush()
        self.log("mosaic written", shape=list(ds.shape))

    def _mosaic_dataset(self) -> h5py.Dataset | None:
        """The complete mosaic dataset, checked (uint8, rows × cols × 3), or None."""
        ds = self._h5.get("benchtop/mosaic")
        if ds is None:
            return None
        if not isinstance(ds, h5py.Dataset):
            raise TypeError("/benchtop/mosaic is not a dataset")
        if not attr_bool(ds, "complete", default=False):
            return None
        shape = ds.shape
        if ds.dtype != np.uint8 or len(shape) != 3 or shape[2] != 3 or shape[0] == 0 or shape[1] == 0:
            raise ValueError(f"the mosaic is {ds.dtype} {shape}, not RGB uint8 (rows, cols, 3)")
        return ds

    @_reads("the benchtop mosaic")
    def mosaic(self) -> SafeDataset:
        """The complete mosaic, read lazily (index it to read pixels; read errors are store errors)."""
        ds = self._mosaic_dataset()
        if ds is None:
            raise StoreError(
                f"{self.path}: slide '{self.slide_id}' has no benchtop mosaic yet.",
                hint="Acquire or import the benchtop images first.",
            )
        return SafeDataset(ds, path=self.path, what="the benchtop mosaic")

    @_reads("the benchtop mosaic")
    def mosaic_info(self) -> MosaicInfo | None:
        ds = self._mosaic_dataset()
        if ds is None:
            return None
        return MosaicInfo(
            pixel_size_um=attr_float(ds, "pixel_size_um"),
            origin_x_um=attr_float(ds, "origin_x_um"),
            origin_y_um=attr_float(ds, "origin_y_um"),
            rows=int(ds.shape[0]),
            cols=int(ds.shape[1]),
        )

    # ------------------------------------------------------------------ captures
    def add_capture(self, rec: CaptureRecord) -> int:
        """Write one phone capture (raw bytes with SHA-256, decoded image, settings) and commit it."""
        self._require_writable()
        rgb = _check_rgb("capture", rec.rgb)
        self.ensure_space(rgb.nbytes + sum(len(b) for b in (rec.dng, rec.jpeg, rec.source) if b is not None))
        index = self._next_index("phone/captures")
        g = self._h5["phone/captures"].create_group(f"{index:05d}")
        ch = (min(512, rgb.shape[0]), min(512, rgb.shape[1]), 3)
        g.create_dataset("rgb", data=rgb, chunks=ch, compression="gzip", compression_opts=1, shuffle=True)
        for kind in _RAW_KINDS:
            data: bytes | None = getattr(rec, kind)
            if data is None:
                continue
            ds = g.create_dataset(kind, data=np.frombuffer(data, dtype=np.uint8))
            ds.attrs["sha256"] = _sha256(data)
            ds.attrs["size"] = len(data)
        a = g.attrs
        a["field_index"] = int(rec.field_index)
        a["pixel_size_um"] = _finite("pixel_size_um", rec.pixel_size_um)
        a["source_name"] = str(rec.source_name)
        a["settings_json"] = _json(rec.settings)
        a["led_state_json"] = _json(rec.led_state)
        a["battery_mv"] = _finite("battery_mv", rec.battery_mv)
        a["stage_x_um"] = _finite("stage_x_um", rec.stage_x_um)
        a["stage_y_um"] = _finite("stage_y_um", rec.stage_y_um)
        a["timestamp"] = float(rec.timestamp)
        a["latencies_json"] = _json(rec.latencies_s)
        a["extra_json"] = _json(rec.extra)
        self._commit(g)
        return index

    @_reads("the phone captures")
    def capture_count(self) -> int:
        return sum(1 for _ in self._items("phone/captures"))

    @_reads("the phone captures")
    def captures(self) -> list[CaptureMeta]:
        """Every complete capture (without pixels), in index order."""
        return [self._capture_meta(i, g) for i, g in self._items("phone/captures")]

    @staticmethod
    def _capture_meta(index: int, g: h5py.Group) -> CaptureMeta:
        what = f"capture {index}"
        return CaptureMeta(
            index=index,
            field_index=attr_int(g, "field_index"),
            pixel_size_um=attr_float(g, "pixel_size_um"),
            source_name=attr_str(g, "source_name"),
            settings=attr_json(g, "settings_json"),
            led_state=attr_json(g, "led_state_json"),
            battery_mv=_opt(attr_float(g, "battery_mv")),
            stage_x_um=_opt(attr_float(g, "stage_x_um")),
            stage_y_um=_opt(attr_float(g, "stage_y_um")),
            timestamp=attr_float(g, "timestamp"),
            latencies_s=attr_json(g, "latencies_json"),
            extra=attr_json(g, "extra_json"),
            shape=tuple(int(v) for v in _rgb_dataset(g, what).shape),
            raw={k: attr_int(g[k], "size") for k in _RAW_KINDS if k in g},
        )

    def read_capture(self, index: int) -> tuple[np.ndarray, CaptureMeta]:
        g = self._get_item("phone/captures", index, "capture")
        with reading(self.path, f"capture {index}"):
            meta = self._capture_meta(index, g)
            return np.asarray(_rgb_dataset(g, f"capture {index}")[()]), meta

    def read_capture_raw(self, index: int, kind: Literal["dng", "jpeg", "source"]) -> bytes | None:
        """The raw bytes of a capture, verified against their SHA-256 (None when not stored)."""
        g = self._get_item("phone/captures", index, "capture")
        with reading(self.path, f"capture {index} {kind} bytes"):
            if kind not in g:
                return None
            ds = g[kind]
            data = _raw_bytes(ds, f"capture {index} {kind}")
            recorded = attr_str(ds, "sha256")
        if _sha256(data) != recorded:
            raise StoreCorruptError(
                f"{self.path}: capture {index} {kind}: SHA-256 mismatch (the stored bytes were modified or damaged).",
                hint="The file is damaged; restore it from a backup or re-acquire this field.",
            )
        return data

    # ------------------------------------------------------------------ registration
    def write_registration(self, capture_index: int, rec: RegistrationRecord) -> None:
        """Store (or replace) the registration result of a capture."""
        self._require_writable()
        self._get_item("phone/captures", capture_index, "capture")
        self.ensure_space(
            int(np.asarray(rec.shift_map).nbytes if rec.shift_map is not None else 0)
            + sum(int(np.asarray(m).nbytes) for m in rec.similarity_maps)
            + 64 * 1024
        )
        name = f"registration/{capture_index:05d}"
        if name in self._h5:
            del self._h5[name]
        g = self._h5.create_group(name)
        hom = np.asarray(rec.homography, dtype=np.float64)
        if hom.shape != (3, 3):
            raise StoreError(
                f"registration of capture {capture_index}: homography must be 3×3, got {hom.shape}."
            )
        g.create_dataset("homography", data=hom)
        if rec.shift_map is not None:
            sm = np.asarray(rec.shift_map, dtype=np.float32)
            g.create_dataset("shift_map", data=sm, compression="gzip", compression_opts=1)
        sim = g.create_group("similarity")
        for k, m in enumerate(rec.similarity_maps):
            sim.create_dataset(f"level_{k}", data=np.asarray(m, dtype=np.float32))
        a = g.attrs
        a["ok"] = bool(rec.ok)
        a["reason"] = str(rec.reason)
        a["scale"] = float(rec.scale)
        a["inliers"] = int(rec.inliers)
        a["quality"] = float(rec.quality)
        a["pixel_size_um"] = float(rec.pixel_size_um)
        a["residual_px"] = _finite("residual_px", rec.residual_px)
        a["extra_json"] = _json(rec.extra)
        self._commit(g)

    @_reads("the registrations")
    def registration(self, capture_index: int) -> RegistrationRecord | None:
        """A capture's registration as it was written, or None if it has none."""
        grp = self._h5.get("registration")
        g = _safe_item(grp, f"{capture_index:05d}") if isinstance(grp, h5py.Group) else None
        if g is None or not attr_bool(g, "complete", default=False):
            return None
        what = f"registration {capture_index}"
        sim = g["similarity"]
        if not isinstance(sim, h5py.Group):
            raise TypeError(f"{what}: similarity is not a group")
        hom = np.asarray(g["homography"][()], dtype=np.float64)
        if hom.shape != (3, 3):
            raise ValueError(f"{what}: homography has shape {hom.shape}, not (3, 3)")
        shift = np.asarray(g["shift_map"][()], dtype=np.float32) if "shift_map" in g else None
        if shift is not None and (shift.ndim != 3 or shift.shape[0] != 2):
            raise ValueError(f"{what}: shift_map has shape {shift.shape}, not (2, rows, cols)")
        levels = sorted(sim.keys(), key=lambda k: int(k.split("_")[1]) if k.startswith("level_") else -1)
        maps = [np.asarray(sim[k][()], dtype=np.float32) for k in levels]
        if any(k.split("_")[-1] != str(n) for n, k in enumerate(levels)) or any(m.ndim != 2 for m in maps):
            raise ValueError(f"{what}: similarity maps are not level_0..level_N of 2-D arrays")
        return RegistrationRecord(
            ok=attr_bool(g, "ok"),
            reason=attr_str(g, "reason"),
            homography=hom,
            scale=attr_float(g, "scale"),
            inliers=attr_int(g, "inliers"),
            shift_map=shift,
            similarity_maps=maps,
            quality=attr_float(g, "quality"),
            pixel_size_um=attr_float(g, "pixel_size_um"),
            residual_px=_opt(attr_float(g, "residual_px")),
            extra=attr_json(g, "extra_json"),
        )

    @_reads("the registrations")
    def registered_indices(self) -> list[int]:
        return [i for i, _g in self._items("registration")]

    # ------------------------------------------------------------------ provenance
    def log(self, event: str, **details: Any) -> None:
        """Append a provenance event (no-op on a read-only store)."""
        if not self.writable:
            return
        ds = self._h5["provenance/log"]
        entry = _json({"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "event": event, **details})
        n = ds.shape[0]
        ds.resize((n + 1,))
        ds[n] = entry
        self._h5.flush()

    @_reads("the provenance log")
    def provenance(self) -> list[ProvenanceEvent]:
        """The provenance log, oldest first (entries that are not JSON objects are skipped)."""
        ds = self._h5["provenance/log"]
        out = []
        for raw in ds[()]:
            text = raw.decode("utf-8") if isinstance(raw, bytes) else str(raw)
            with contextlib.suppress(ValueError):
                entry = json.loads(text)
                if isinstance(entry, dict):
                    out.append(ProvenanceEvent.from_dict(entry))
        return out

    # ------------------------------------------------------------------ summary and checks
    @_reads("the acquisition record")
    def completeness(self) -> dict[str, Any]:
        """Whether the slide's acquisition is complete: planned, acquired and flagged counts.

        Computed from what the store holds, so it is right after a crash too: the frozen plan (phone fields)
        and the benchtop scan plan (tiles) are saved before anything is acquired, and only committed items
        count.  A field counts as acquired when it has a capture (a recapture supersedes earlier ones) and as
        flagged when its latest capture failed a check (``extra["flags"]``).  A slide without a saved plan
        (``scopectl import``, written whole or not at all) plans what it holds.  ``complete`` means the mosaic
        exists and every planned field was captured; flagged fields are counted, not held against it.
        """
        latest = {m.field_index: m for m in self.captures()}
        planned = self.plan().get("fields")
        planned_fields = len(planned) if isinstance(planned, list) else None
        planned_indices = (
            {int(f["index"]) for f in planned if isinstance(f, dict) and "index" in f}
            if isinstance(planned, list)
            else set(latest)
        )
        acquired = sum(1 for i in latest if i in planned_indices)
        flagged = sorted(i for i, m in latest.items() if m.extra.get("flags"))
        scan = attr_json(self._h5, "scan_plan_json", default={})
        grid = scan.get("grid_shape") if isinstance(scan, dict) else None
        planned_tiles = int(grid[0]) * int(grid[1]) if isinstance(grid, list) and len(grid) == 2 else None
        mosaic = self.mosaic_info() is not None
        complete = mosaic and (planned_fields is None or acquired >= planned_fields)
        return {
            "complete": bool(complete),
            "source": "import" if planned_fields is None else "acquisition",
            "planned_fields": planned_fields if planned_fields is not None else len(latest),
            "acquired_fields": acquired,
            "flagged_fields": len(flagged),
            "flagged_field_indices": flagged,
            "planned_tiles": planned_tiles,
            "acquired_tiles": self.tile_count(),
            "mosaic": mosaic,
        }

    @_reads("root attributes")
    def info(self) -> dict[str, Any]:
        """A JSON-serialisable summary of the slide."""
        mi = self.mosaic_info()
        regs = [self.registration(i) for i in self.registered_indices()]
        return {
            "path": str(self.path),
            "slide_id": self.slide_id,
            "format": attr_str(self._h5, "format"),
            "schema_version": self.schema_version,
            "created": attr_str(self._h5, "created"),
            "software_version": attr_str(self._h5, "software_version"),
            "simulated": self.simulated,
            "rig": self.rig(),
            "protocol": self.protocol().get("name"),
            "tiles": self.tile_count(),
            "captures": self.capture_count(),
            "registered_ok": sum(1 for r in regs if r is not None and r.ok),
            "registered_failed": sum(1 for r in regs if r is not None and not r.ok),
            "mosaic": None
            if mi is None
            else {
                "rows": mi.rows,
                "cols": mi.cols,
                "pixel_size_um": mi.pixel_size_um,
                "origin_x_um": mi.origin_x_um,
                "origin_y_um": mi.origin_y_um,
            },
            "completeness": self.completeness(),
            "size_bytes": os.path.getsize(self.path),
            "being_written_by": self.writer,
        }

    @_reads("its datasets")
    def data_bytes(self) -> int:
        """Bytes of image data a deep :meth:`verify` reads (declared, uncompressed sizes of every dataset)."""
        total = 0

        def add(_name: str, obj: Any) -> None:
            nonlocal total
            if isinstance(obj, h5py.Dataset) and obj.shape is not None:
                total += int(np.prod(obj.shape, dtype=np.int64)) * int(obj.dtype.itemsize)

        self._h5.visititems(add)
        return total

    def _root_meta(self) -> tuple[Any, ...]:
        return (self.slide_id, self.simulated, self.rig(), self.protocol(), self.plan())

    def _indices(self, parent: str) -> list[int]:
        return [i for i, _g in self._items(parent)]

    def _tile_pixels(self, index: int) -> np.ndarray:
        return self.read_tile(index)[0]

    def _capture_pixels(self, index: int) -> np.ndarray:
        return self.read_capture(index)[0]

    def _item_meta(self, parent: str, index: int) -> TileMeta | CaptureMeta:
        if parent == "benchtop/tiles":
            return self._tile_meta(index, self._get_item(parent, index, "tile"))
        return self._capture_meta(index, self._get_item(parent, index, "capture"))

    def verify(self, *, deep: bool = True, on_item: Callable[[str], None] | None = None) -> dict[str, Any]:
        """Check the slide; returns ``{"ok": bool, "problems": [...], "incomplete": [...], ...}``.

        The quick check reads the structure, every item's metadata and every raw file (against its SHA-256).
        The deep check (``deep=True``) also decodes every image: each tile and capture, every registration
        array and the whole mosaic, block by block -- everything ``register``, ``enhance``, ``evaluate`` and
        ``dataset build`` read -- so a slide that passes it does not fail them on a damaged chunk.

        Parameters
        ----------
        deep
            Decode every image chunk as well.
        on_item
            Called with the name of each item checked (progress).
        """
        problems: list[str] = []
        incomplete: list[str] = []
        checked = 0
        read_bytes = 0
        tell = on_item or (lambda _name: None)

        def check(what: str, fn: Callable[[], Any]) -> Any:
            tell(what)
            try:
                with reading(self.path, what):
                    return fn()
            except StoreError as exc:
                detail = _detail(exc, self.path)
                problems.append(detail if detail.startswith(what) else f"{what}: {detail}")
            return None

        check("root attributes", self._root_meta)
        self._verify_groups(check, problems, incomplete)
        tiles = check("benchtop tiles", functools.partial(self._indices, "benchtop/tiles")) or []
        for i in tiles:
            if deep:
                rgb = check(f"tile {i}", functools.partial(self._tile_pixels, i))
                read_bytes += 0 if rgb is None else int(rgb.nbytes)
            else:
                check(f"tile {i}", functools.partial(self._item_meta, "benchtop/tiles", i))
        captures = check("phone captures", functools.partial(self._indices, "phone/captures")) or []
        for i in captures:
            if deep:
                rgb = check(f"capture {i}", functools.partial(self._capture_pixels, i))
                read_bytes += 0 if rgb is None else int(rgb.nbytes)
            else:
                check(f"capture {i}", functools.partial(self._item_meta, "phone/captures", i))
            for kind in _RAW_KINDS:
                data = check(f"capture {i} {kind}", functools.partial(self.read_capture_raw, i, kind))
                if data is not None:
                    checked += 1
                    read_bytes += len(data)
        for i in check("registrations", self.registered_indices) or []:
            rec = check(f"registration {i}", functools.partial(self.registration, i))
            if rec is not None and i not in captures:
                problems.append(f"registration {i}: refers to a missing capture")
        mosaic_ok, mosaic_bytes = self._verify_mosaic(check, problems, incomplete, deep=deep)
        read_bytes += mosaic_bytes
        check("provenance log", self.provenance)
        return {
            "ok": not problems,
            "deep": deep,
            "problems": problems,
            "incomplete": incomplete,
            "raw_files_checked": checked,
            "bytes_read": read_bytes,
            "tiles": len(tiles),
            "captures": len(captures),
            "mosaic": mosaic_ok,
        }

    def _verify_groups(self, check: _Check, problems: list[str], incomplete: list[str]) -> None:
        """The item groups of :meth:`verify`: each must be a group; items not marked complete are listed."""
        for parent in ("benchtop/tiles", "phone/captures", "registration"):
            grp = self._h5.get(parent)
            if not isinstance(grp, h5py.Group):
                problems.append(f"/{parent} is missing or not a group")
                continue
            for name in grp:
                g = _safe_item(grp, name)
                if g is None:
                    incomplete.append(f"{parent}/{name}")
                    continue
                done = check(f"{parent}/{name}", functools.partial(attr_bool, g, "complete", default=False))
                if done is False:
                    incomplete.append(f"{parent}/{name}")

    def _verify_mosaic(
        self, check: _Check, problems: list[str], incomplete: list[str], *, deep: bool
    ) -> tuple[bool, int]:
        """The mosaic part of :meth:`verify`: whether the mosaic is there and (when ``deep``) decodes, and the
        bytes read."""
        read_bytes = 0
        mosaic_ok = False
        try:
            mosaic = self._h5.get("benchtop/mosaic")
            if mosaic is not None and not isinstance(mosaic, h5py.Dataset):
                problems.append("/benchtop/mosaic is not a dataset")
            elif mosaic is not None and not attr_bool(mosaic, "complete", default=False):
                incomplete.append("benchtop/mosaic")
        except (OSError, KeyError, ValueError, TypeError) as exc:
            problems.append(f"benchtop/mosaic: {type(exc).__name__}: {exc}")
        info = check("benchtop mosaic", self.mosaic_info)
        if info is not None:
            mosaic_ok = True
            if deep:
                ds = self.mosaic()
                step = MOSAIC_CHUNK * 4
                for r0 in range(0, info.rows, step):
                    block = check(
                        f"benchtop mosaic rows {r0}–{min(info.rows, r0 + step)}",
                        functools.partial(ds.__getitem__, slice(r0, r0 + step)),
                    )
                    if block is None:
                        mosaic_ok = False
                        break
                    read_bytes += int(block.nbytes)
        return mosaic_ok, read_bytes


def _detail(exc: ScopectlError, path: Path) -> str:
    """An error's message without the leading file name (the verify report names the file once)."""
    text = exc.message
    prefix = f"{path}: "
    return text[len(prefix) :] if text.startswith(prefix) else text


def _check_space(path: Path, nbytes: int, *, shown: Path, hint: str) -> None:
    """Raise FilesystemError unless ``nbytes`` (+5 % and a margin) fit on ``path``'s disk and file-size limit."""

    need = int(nbytes * 1.05) + SlideStore.SPACE_MARGIN_BYTES
    try:
        st = os.statvfs(path.parent)
        size = os.path.getsize(path) if path.exists() else 0
    except OSError as exc:
        raise from_os_error(exc, path=shown, action="check the free space") from None
    free = st.f_bavail * st.f_frsize
    soft, _hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    if soft != resource.RLIM_INFINITY:
        free = min(free, soft - size)
    if free < need:
        raise FilesystemError(
            f"{shown}: not enough disk space for the next item ({need / 1e6:.1f} MB needed, "
            f"{max(free, 0) / 1e6:.1f} MB available, counting the file-size limit); nothing was written.",
            hint=hint,
        )


def _safe_item(grp: h5py.Group, name: str) -> h5py.Group | None:
    """``grp[name]`` if it is a readable group, else None (a write interrupted by a full disk or a crash)."""
    try:
        item = grp[name]
        if not isinstance(item, h5py.Group):
            return None
        item.attrs.get("complete", False)
    except (KeyError, OSError, RuntimeError, ValueError, TypeError):
        return None
    return item


def _item_class(grp: h5py.Group, name: str) -> type | None:
    """The class of ``grp[name]`` without opening it (None when even that is unreadable: a crashed write)."""
    try:
        cls = grp.get(name, getclass=True)
    except (KeyError, OSError, RuntimeError, ValueError):
        return None
    return cls if isinstance(cls, type) else None


#: Root attributes every slide has, and groups (and the log dataset) it must hold.
_ROOT_ATTRS = ("slide_id", "created", "software_version", "simulated", "rig_json", "protocol_json")
_GROUPS = ("benchtop", "benchtop/tiles", "phone", "phone/captures", "registration", "provenance")


def _check_format(path: Path, h5: h5py.File) -> None:
    """Check the format, schema version and skeleton of a slide file (closing ``h5`` when it fails)."""
    try:
        with reading(path, "its format"):
            fmt = h5.attrs.get("format")
            if isinstance(fmt, bytes):
                fmt = fmt.decode("utf-8", "replace")
            if not isinstance(fmt, str) or fmt != FORMAT:
                raise StoreCorruptError(
                    f"{path}: HDF5 file is not a scopectl slide (format attribute is {fmt!r})."
                )
            ver = attr_int(h5, "schema_version") if "schema_version" in h5.attrs else -1
            if ver > SCHEMA_VERSION:
                raise StoreError(
                    f"{path}: written with slide schema {ver}, this scopectl reads up to {SCHEMA_VERSION}.",
                    hint="Upgrade scopectl.",
                )
            if ver < 1:
                raise StoreCorruptError(f"{path}: invalid schema_version {ver}.")
        with reading(path, "its structure"):
            missing = [a for a in _ROOT_ATTRS if a not in h5.attrs]
            if missing:
                raise KeyError(f"root attribute(s) {', '.join(missing)} missing")
            validate_slide_id(attr_str(h5, "slide_id"))
            for g in _GROUPS:
                if not isinstance(h5.get(g), h5py.Group):
                    raise TypeError(f"/{g} is missing or not a group")
            log = h5.get("provenance/log")
            if not isinstance(log, h5py.Dataset) or log.ndim != 1:
                raise TypeError("/provenance/log is missing or not a 1-D dataset")
            for parent in ("benchtop/tiles", "phone/captures", "registration"):
                for name in h5[parent]:
                    if not (len(name) == 5 and name.isdigit()):
                        raise ValueError(f"/{parent}/{name}: item names are 5-digit indices")
                    if _item_class(h5[parent], name) is h5py.Dataset:
                        raise TypeError(f"/{parent}/{name} is a dataset, not an item group")
    except InputFileError as exc:
        h5.close()
        raise StoreCorruptError(
            f"{path}: the slide_id attribute is not a valid id ({exc.message})."
        ) from None
    except BaseException:
        h5.close()
        raise
