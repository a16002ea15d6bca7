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
import hashlib
import json
import math
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

import h5py
import numpy as np

from scopectl import __version__
from scopectl.errors import (
    InputFileError,
    StoreCorruptError,
    StoreError,
    StoreExistsError,
)
from scopectl.store.lock import WriteLock

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
_RAW_KINDS = ("dng", "jpeg", "source")


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
    ) -> SlideStore:
        """Create a new slide file (taking its write lock).

        Raises
        ------
        StoreExistsError
            If the file exists and ``force`` is false.
        StoreLockedError
            If another process holds the slide's lock.
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
            try:
                h5 = h5py.File(path, "w" if force else "x")
            except (OSError, FileExistsError) as exc:
                raise StoreError(f"{path}: cannot create the slide file ({exc}).") from None
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
        store.log("created", slide_id=slide_id, simulated=bool(simulated))
        return store

    @classmethod
    def open(cls, path: Path | str, *, mode: Literal["r", "a"] = "r") -> SlideStore:
        """Open an existing slide, read-only (``"r"``) or for appending (``"a"``, takes the write lock).

        Opening for appending discards items a killed writer left incomplete.
        """
        path = Path(path)
        if not path.exists():
            raise StoreError(
                f"{path}: no such slide file.", hint="Check the slide id and --root; `scopectl store ls`."
            )
        lock: WriteLock | None = None
        if mode == "a":
            lock = WriteLock(path)
            lock.acquire()
        try:
            try:
                # Readers do not take HDF5's file lock, so `store info` works while an acquisition writes;
                # writers are serialised by our own WriteLock.
                h5 = h5py.File(path, "r+") if mode == "a" else h5py.File(path, "r", locking=False)
            except OSError as exc:
                raise StoreCorruptError(
                    f"{path}: not a readable HDF5 slide file ({str(exc).splitlines()[0]}).",
                    hint="If a writer was killed, try `scopectl store verify`; otherwise restore it from a backup.",
                ) from None
            _check_format(path, h5)
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
    def slide_id(self) -> str:
        return str(self._h5.attrs["slide_id"])

    @property
    def simulated(self) -> bool:
        return bool(self._h5.attrs["simulated"])

    @property
    def schema_version(self) -> int:
        return int(self._h5.attrs["schema_version"])

    def rig(self) -> dict[str, Any]:
        return dict(json.loads(str(self._h5.attrs["rig_json"])))

    def protocol(self) -> dict[str, Any]:
        return dict(json.loads(str(self._h5.attrs["protocol_json"])))

    def plan(self) -> dict[str, Any]:
        return dict(json.loads(str(self._h5.attrs.get("plan_json", "{}"))))

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
        point past its end), so every item checks for room first: a full disk stops the acquisition with
        this error and everything already stored stays intact.
        """
        import resource

        need = int(nbytes * 1.05) + self.SPACE_MARGIN_BYTES
        st = os.statvfs(self.path.parent)
        free = st.f_bavail * st.f_frsize
        soft, _hard = resource.getrlimit(resource.RLIMIT_FSIZE)
        if soft != resource.RLIM_INFINITY:
            free = min(free, soft - os.path.getsize(self.path))
        if free < need:
            raise StoreError(
                f"{self.path}: not enough disk space for the next item ({need / 1e6:.1f} MB needed, "
                f"{max(free, 0) / 1e6:.1f} MB available); nothing was written.",
                hint="Free some space (or move --root), then continue with --resume.",
            )

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
            if g is not None and bool(g.attrs.get("complete", False)):
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

    def tile_count(self) -> int:
        return sum(1 for _ in self._items("benchtop/tiles"))

    def tiles_meta(self) -> list[dict[str, Any]]:
        """Metadata of every complete tile, in index order."""
        out = []
        for i, g in self._items("benchtop/tiles"):
            a = g.attrs
            out.append(
                {
                    "index": i,
                    "row": int(a["row"]),
                    "col": int(a["col"]),
                    "stage_x_um": float(a["stage_x_um"]),
                    "stage_y_um": float(a["stage_y_um"]),
                    "stage_z_um": float(a["stage_z_um"]),
                    "pixel_size_um": float(a["pixel_size_um"]),
                    "focus_score": float(a["focus_score"]),
                    "exposure_ms": float(a["exposure_ms"]),
                    "timestamp": float(a["timestamp"]),
                    "shape": [int(v) for v in g["rgb"].shape],
                    "extra": json.loads(str(a["extra_json"])),
                }
            )
        return out

    def read_tile(self, index: int) -> tuple[np.ndarray, dict[str, Any]]:
        g = self._get_item("benchtop/tiles", index, "tile")
        meta = next(m for m in self.tiles_meta() if m["index"] == index)
        return np.asarray(g["rgb"][()]), meta

    def _get_item(self, parent: str, index: int, what: str) -> h5py.Group:
        g = self._h5.get(f"{parent}/{index:05d}")
        if g is None or not bool(g.attrs.get("complete", False)):
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
        self.ensure_space(shape[0] * shape[1] * 3 // 2)  # deflate: stained tissue compresses about 2:1
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

    def mosaic(self) -> h5py.Dataset:
        """The complete mosaic as a lazy h5py dataset (index it to read pixels)."""
        ds = self._h5.get("benchtop/mosaic")
        if ds is None or not bool(ds.attrs.get("complete", False)):
            raise StoreError(
                f"{self.path}: slide '{self.slide_id}' has no benchtop mosaic yet.",
                hint="Acquire or import the benchtop images first.",
            )
        return ds

    def mosaic_info(self) -> MosaicInfo | None:
        ds = self._h5.get("benchtop/mosaic")
        if ds is None or not bool(ds.attrs.get("complete", False)):
            return None
        return MosaicInfo(
            pixel_size_um=float(ds.attrs["pixel_size_um"]),
            origin_x_um=float(ds.attrs["origin_x_um"]),
            origin_y_um=float(ds.attrs["origin_y_um"]),
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

    def capture_count(self) -> int:
        return sum(1 for _ in self._items("phone/captures"))

    def captures_meta(self) -> list[dict[str, Any]]:
        """Metadata of every complete capture, in index order."""
        out = []
        for i, g in self._items("phone/captures"):
            out.append(self._capture_meta(i, g))
        return out

    @staticmethod
    def _capture_meta(index: int, g: h5py.Group) -> dict[str, Any]:
        a = g.attrs
        return {
            "index": index,
            "field_index": int(a["field_index"]),
            "pixel_size_um": float(a["pixel_size_um"]),
            "source_name": str(a["source_name"]),
            "settings": json.loads(str(a["settings_json"])),
            "led_state": json.loads(str(a["led_state_json"])),
            "battery_mv": _opt(a["battery_mv"]),
            "stage_x_um": _opt(a["stage_x_um"]),
            "stage_y_um": _opt(a["stage_y_um"]),
            "timestamp": float(a["timestamp"]),
            "latencies_s": json.loads(str(a["latencies_json"])),
            "extra": json.loads(str(a["extra_json"])),
            "shape": [int(v) for v in g["rgb"].shape],
            "raw": {k: int(g[k].attrs["size"]) for k in _RAW_KINDS if k in g},
        }

    def read_capture(self, index: int) -> tuple[np.ndarray, dict[str, Any]]:
        g = self._get_item("phone/captures", index, "capture")
        return np.asarray(g["rgb"][()]), self._capture_meta(index, g)

    def read_capture_raw(self, index: int, kind: Literal["dng", "jpeg", "source"]) -> bytes | None:
        """The raw bytes of a capture, verified against their SHA-256 (None when not stored)."""
        g = self._get_item("phone/captures", index, "capture")
        if kind not in g:
            return None
        ds = g[kind]
        data = bytes(np.asarray(ds[()], dtype=np.uint8).tobytes())
        if _sha256(data) != str(ds.attrs["sha256"]):
            raise StoreCorruptError(
                f"{self.path}: capture {index} {kind} bytes fail their SHA-256 check.",
                hint="The file is damaged; restore it from a backup or re-acquire this field.",
            )
        return data

    # ------------------------------------------------------------------ registration
    def write_registration(self, capture_index: int, rec: RegistrationRecord) -> None:
        """Store (or replace) the registration result of a capture."""
        self._require_writable()
        self._get_item("phone/captures", capture_index, "capture")
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

    def read_registration(self, capture_index: int) -> dict[str, Any] | None:
        """A capture's registration (arrays and attributes), or None if it has none."""
        g = self._h5.get(f"registration/{capture_index:05d}")
        if g is None or not bool(g.attrs.get("complete", False)):
            return None
        a = g.attrs
        sim = g["similarity"]
        return {
            "capture_index": capture_index,
            "ok": bool(a["ok"]),
            "reason": str(a["reason"]),
            "homography": np.asarray(g["homography"][()]),
            "shift_map": np.asarray(g["shift_map"][()]) if "shift_map" in g else None,
            "similarity_maps": [
                np.asarray(sim[k][()]) for k in sorted(sim.keys(), key=lambda s: int(s.split("_")[1]))
            ],
            "scale": float(a["scale"]),
            "inliers": int(a["inliers"]),
            "quality": float(a["quality"]),
            "pixel_size_um": float(a["pixel_size_um"]),
            "residual_px": _opt(a["residual_px"]),
            "extra": json.loads(str(a["extra_json"])),
        }

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

    def provenance(self) -> list[dict[str, Any]]:
        ds = self._h5["provenance/log"]
        out = []
        for raw in ds[()]:
            text = raw.decode("utf-8") if isinstance(raw, bytes) else str(raw)
            with contextlib.suppress(ValueError):
                out.append(json.loads(text))
        return out

    # ------------------------------------------------------------------ summary and checks
    def completeness(self) -> dict[str, Any]:
        """Whether the slide's acquisition is complete: planned, acquired and flagged counts.

        Computed from what the store holds, so it is right after a crash too: the frozen plan (phone fields)
        and the benchtop scan plan (tiles) are saved before anything is acquired, and only committed items
        count.  A field counts as acquired when it has a capture (a recapture supersedes earlier ones) and as
        flagged when its latest capture failed a check (``extra["flags"]``).  A slide without a saved plan
        (``scopectl import``, written whole or not at all) plans what it holds.  ``complete`` means the mosaic
        exists and every planned field was captured; flagged fields are counted, not held against it.
        """
        latest = {int(m["field_index"]): m for m in self.captures_meta()}
        planned = self.plan().get("fields")
        planned_fields = len(planned) if isinstance(planned, list) else None
        planned_indices = (
            {int(f["index"]) for f in planned if isinstance(f, dict) and "index" in f}
            if isinstance(planned, list)
            else set(latest)
        )
        acquired = sum(1 for i in latest if i in planned_indices)
        flagged = sorted(i for i, m in latest.items() if m["extra"].get("flags"))
        scan = json.loads(str(self._h5.attrs.get("scan_plan_json", "{}")))
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

    def info(self) -> dict[str, Any]:
        """A JSON-serialisable summary of the slide."""
        a = self._h5.attrs
        mi = self.mosaic_info()
        regs = [self.read_registration(i) for i in self.registered_indices()]
        return {
            "path": str(self.path),
            "slide_id": self.slide_id,
            "format": str(a["format"]),
            "schema_version": int(a["schema_version"]),
            "created": str(a["created"]),
            "software_version": str(a["software_version"]),
            "simulated": self.simulated,
            "rig": self.rig(),
            "protocol": self.protocol().get("name"),
            "tiles": self.tile_count(),
            "captures": self.capture_count(),
            "registered_ok": sum(1 for r in regs if r is not None and r["ok"]),
            "registered_failed": sum(1 for r in regs if r is not None and not r["ok"]),
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

    def verify(self) -> dict[str, Any]:
        """Check structure and every raw file's SHA-256; returns ``{"ok": bool, "problems": [...], ...}``."""
        problems: list[str] = []
        checked = 0
        incomplete: list[str] = []
        for parent in ("benchtop/tiles", "phone/captures", "registration"):
            grp = self._h5.get(parent)
            if grp is None:
                problems.append(f"missing group /{parent}")
                continue
            for name in grp:
                if not bool(grp[name].attrs.get("complete", False)):
                    incomplete.append(f"{parent}/{name}")
        for i, g in self._items("benchtop/tiles"):
            if "rgb" not in g or g["rgb"].ndim != 3 or g["rgb"].shape[2] != 3:
                problems.append(f"tile {i}: missing or malformed rgb")
        for i, g in self._items("phone/captures"):
            if "rgb" not in g:
                problems.append(f"capture {i}: missing rgb")
            for kind in _RAW_KINDS:
                if kind not in g:
                    continue
                ds = g[kind]
                data = bytes(np.asarray(ds[()], dtype=np.uint8).tobytes())
                checked += 1
                if len(data) != int(ds.attrs["size"]):
                    problems.append(
                        f"capture {i} {kind}: size {len(data)} != recorded {int(ds.attrs['size'])}"
                    )
                elif _sha256(data) != str(ds.attrs["sha256"]):
                    problems.append(f"capture {i} {kind}: SHA-256 mismatch")
        for i in self.registered_indices():
            if self._h5.get(f"phone/captures/{i:05d}") is None:
                problems.append(f"registration {i}: refers to a missing capture")
        mosaic = self._h5.get("benchtop/mosaic")
        if mosaic is not None and not bool(mosaic.attrs.get("complete", False)):
            incomplete.append("benchtop/mosaic")
        return {
            "ok": not problems,
            "problems": problems,
            "incomplete": incomplete,
            "raw_files_checked": checked,
            "tiles": self.tile_count(),
            "captures": self.capture_count(),
            "mosaic": self.mosaic_info() is not None,
        }


def _safe_item(grp: h5py.Group, name: str) -> h5py.Group | None:
    """``grp[name]``, or None when the object cannot be read (a write interrupted by a full disk or a crash)."""
    try:
        item = grp[name]
        item.attrs.get("complete", False)
    except (KeyError, OSError, RuntimeError, ValueError):
        return None
    return item if isinstance(item, h5py.Group) else None


def _check_format(path: Path, h5: h5py.File) -> None:
    fmt = h5.attrs.get("format")
    if fmt is None or str(fmt) != FORMAT:
        h5.close()
        raise StoreCorruptError(f"{path}: HDF5 file is not a scopectl slide (format attribute is {fmt!r}).")
    ver = int(h5.attrs.get("schema_version", -1))
    if ver > SCHEMA_VERSION:
        h5.close()
        raise StoreError(
            f"{path}: written with slide schema {ver}, this scopectl reads up to {SCHEMA_VERSION}.",
            hint="Upgrade scopectl.",
        )
    if ver < 1:
        h5.close()
        raise StoreCorruptError(f"{path}: invalid schema_version {ver}.")


def validate_slide_id(slide_id: str) -> str:
    """Slide ids become file names: letters, digits, '-', '_' and '.', 1–64 characters, not starting with '.'."""
    ok = (
        0 < len(slide_id) <= 64
        and not slide_id.startswith(".")
        and all(c.isascii() and (c.isalnum() or c in "-_.") for c in slide_id)
    )
    if not ok:
        raise InputFileError(
            f"invalid slide id {slide_id!r}.",
            hint="Use 1–64 letters, digits, '-', '_' or '.', not starting with '.'.",
        )
    return slide_id
