"""A slide store exported as OME-Zarr (NGFF 0.5, Zarr v3), as a folder and optionally as a single ``.ozx``.

Layout (``<out>/<slide-id>.ome.zarr``)::

    zarr.json              ome: {version: "0.5", bioformats2raw.layout: 3}; scopectl: slide attributes,
                           completeness, rig, protocol, plan, provenance log
    OME/zarr.json          ome: {version: "0.5", series: ["0", "1", ...]}
    OME/METADATA.ome.xml   one OME Image per series (names, physical sizes, channels, annotations)
    0/                     the benchtop mosaic: a multiscale image, axes c, y, x (µm), levels 0, 1, ...
    1/ ... N/              the phone captures, one multiscale image each (capture index i is series i + 1)
        registration_shift_map   (captures with an elastic registration) the shift map, float32 (2, rows, cols)

Several images in one hierarchy use the ``bioformats2raw.layout`` of the NGFF 0.5 specification, which
QuPath (≥ 0.6), napari-ome-zarr, Fiji (Bio-Formats/MoBIE) and the validators read; each image is a normal
NGFF image group.  Pixels are RGB as ``c, y, x`` ``uint8`` with ``omero`` channel metadata (red, green,
blue, window 0–255); level 0 holds the store's pixels exactly, each further level halves rows and columns
by area averaging (:func:`scopectl.writers.pyramid_levels`).  Level *k* has scale ``p·2^k`` µm and
translation ``origin + p·(2^k − 1)/2`` so that its pixel centres fall where the averaged pixels' centres are.

The mosaic's translation is its origin on the stage (µm).  A capture's image stays in its own pixel grid
(scale = its nominal pixel size); its registration into the mosaic (homography from capture ``(col, row, 1)``
to mosaic ``(col, row, 1)``, scale, inliers, quality) is in the image's ``scopectl.registration`` attribute,
with ``affine_um``: the 3 × 3 affine (``y, x`` order) taking capture pixel indices to the mosaic's
micrometre frame, which viewers that support affines (napari) use to place it.

Chunks are 1 × 512 × 512 inside 1 × 4096 × 4096 shards, compressed with zstd.  The export is written into a
temporary folder beside the destination and renamed when complete; the ``.ozx`` (RFC-9 "recommended variant":
ZIP64, stored entries, every ``zarr.json`` first in breadth-first order, the root's first, the archive
comment ``{"ome": {"version": "0.5"}}``) is written to a temporary file and renamed too.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import time
import uuid
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from scopectl import __version__
from scopectl.errors import ConfigError, OutputError, StoreError
from scopectl.interop import require
from scopectl.store import CaptureMeta, MosaicInfo, SlideStore
from scopectl.writers import OmeImage, ome_xml, pyramid_levels

__all__ = [
    "CHUNK",
    "EXPORT_FORMAT",
    "NGFF_VERSION",
    "SHARD",
    "ExportResult",
    "capture_affine_um",
    "export_slide",
    "write_ozx",
]

NGFF_VERSION = "0.5"
EXPORT_FORMAT = "scopectl-ome-zarr-export"
SCHEMA_VERSION = 1
CHUNK = 512
SHARD = 4096
_CHANNELS = (("R", "FF0000"), ("G", "00FF00"), ("B", "0000FF"))


@dataclass
class ExportResult:
    """What :func:`export_slide` wrote."""

    zarr_path: Path
    ozx_path: Path | None
    images: list[str]
    pixel_bytes: int
    seconds: float
    completeness: dict[str, Any]


def capture_affine_um(
    homography: np.ndarray, *, mosaic_pixel_size_um: float, origin_yx_um: Sequence[float]
) -> np.ndarray:
    """3 × 3 affine (``y, x`` order) from capture pixel ``(row, col)`` to the mosaic's µm frame.

    The homography maps capture ``(col, row, 1)`` to mosaic ``(col, row, 1)``; its projective terms (tiny
    for a phone looking straight down) are dropped after normalising by ``H[2, 2]``.
    """
    h = np.asarray(homography, np.float64)
    if h.shape != (3, 3) or not np.isfinite(h).all() or abs(h[2, 2]) < 1e-12:
        raise StoreError("registration homography is not a finite 3 × 3 matrix.")
    h = h / h[2, 2]
    swap = np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    affine_px = swap @ h @ swap  # (row, col) → (row, col)
    affine_px[2] = (0.0, 0.0, 1.0)
    to_um = np.array(
        [
            [mosaic_pixel_size_um, 0.0, float(origin_yx_um[0])],
            [0.0, mosaic_pixel_size_um, float(origin_yx_um[1])],
            [0.0, 0.0, 1.0],
        ]
    )
    out: np.ndarray = to_um @ affine_px
    return out


def _level_transforms(pixel_size_um: float, origin_yx_um: Sequence[float], k: int) -> list[dict[str, Any]]:
    f = 2**k
    shift = pixel_size_um * (f - 1) / 2.0
    return [
        {"type": "scale", "scale": [1.0, pixel_size_um * f, pixel_size_um * f]},
        {
            "type": "translation",
            "translation": [0.0, float(origin_yx_um[0]) + shift, float(origin_yx_um[1]) + shift],
        },
    ]


def _shard_side(n: int) -> int:
    """Shard side for an axis of ``n`` pixels: a multiple of the chunk side, at most :data:`SHARD`."""
    return min(SHARD, -(-n // CHUNK) * CHUNK) if n > CHUNK else n


def _write_image(
    group: Any,
    rgb: np.ndarray,
    *,
    name: str,
    pixel_size_um: float,
    origin_yx_um: Sequence[float],
    attributes: dict[str, Any],
) -> int:
    """Write one multiscale RGB image into ``group``; returns the bytes of pixels written."""
    zarr = require("zarr", extra="ome-zarr", purpose="OME-Zarr export")
    writer = require("ome_zarr.writer", extra="ome-zarr", purpose="OME-Zarr export")
    fmt_mod = require("ome_zarr.format", extra="ome-zarr", purpose="OME-Zarr export")
    codecs = require("zarr.codecs", extra="ome-zarr", purpose="OME-Zarr export")
    levels = pyramid_levels(np.ascontiguousarray(rgb))
    datasets = []
    written = 0
    for k, level in enumerate(levels):
        cyx = np.ascontiguousarray(np.moveaxis(level, -1, 0))
        arr = zarr.create_array(
            store=group.store,
            name=f"{group.path}/{k}" if group.path else str(k),
            shape=cyx.shape,
            dtype="uint8",
            chunks=(1, min(CHUNK, cyx.shape[1]), min(CHUNK, cyx.shape[2])),  # a shard's inner chunks
            shards=(1, _shard_side(cyx.shape[1]), _shard_side(cyx.shape[2]))
            if max(cyx.shape[1:]) > CHUNK
            else None,
            compressors=codecs.ZstdCodec(level=3),
            dimension_names=["c", "y", "x"],
            fill_value=0,
            zarr_format=3,
        )
        arr[...] = cyx
        written += cyx.nbytes
        datasets.append(
            {"path": str(k), "coordinateTransformations": _level_transforms(pixel_size_um, origin_yx_um, k)}
        )
    omero = {
        "name": name,
        "version": NGFF_VERSION,
        "rdefs": {"model": "color", "defaultZ": 0, "defaultT": 0},
        "channels": [
            {
                "label": label,
                "color": colour,
                "active": True,
                "coefficient": 1.0,
                "family": "linear",
                "inverted": False,
                "window": {"min": 0, "max": 255, "start": 0, "end": 255},
            }
            for label, colour in _CHANNELS
        ],
    }
    writer.write_multiscales_metadata(
        group,
        datasets,
        fmt=fmt_mod.FormatV05(),
        axes=[
            {"name": "c", "type": "channel"},
            {"name": "y", "type": "space", "unit": "micrometer"},
            {"name": "x", "type": "space", "unit": "micrometer"},
        ],
        name=name,
        metadata={
            "omero": omero,
            "method": "scopectl.writers.pyramid_levels",
            "description": "2 × 2 area average per level (cv2.INTER_AREA)",
        },
    )
    attrs = dict(group.attrs)
    attrs["scopectl"] = attributes
    group.attrs.put(attrs)
    return written


def _jsonable(value: Any) -> Any:
    return json.loads(
        json.dumps(value, default=lambda o: o.tolist() if isinstance(o, np.ndarray) else str(o))
    )


def export_slide(
    store_path: Path,
    out_dir: Path,
    *,
    ozx: bool = False,
    overwrite: bool = False,
    on_image: Callable[[str], None] | None = None,
) -> ExportResult:
    """Export a slide store to ``<out_dir>/<slide-id>.ome.zarr`` (and ``.ozx`` when asked).

    Parameters
    ----------
    store_path
        The slide's HDF5 file (opened read-only).
    out_dir
        Folder that receives the export (created).
    ozx
        Also write the single-file zipped form ``<out_dir>/<slide-id>.ozx``.
    overwrite
        Replace an existing export; otherwise an existing destination is an error (checked first).
    on_image
        Called with each image's name once written (progress).

    Raises
    ------
    StoreError
        If the slide has no mosaic or cannot be read.
    OutputError
        If a destination exists (without ``overwrite``) or cannot be written; nothing is left half-written.
    """
    zarr = require("zarr", extra="ome-zarr", purpose="OME-Zarr export")
    t0 = time.perf_counter()
    out_dir = Path(out_dir)
    with SlideStore.open(store_path, mode="r") as store:
        slide_id = store.slide_id
        dest = out_dir / f"{slide_id}.ome.zarr"
        ozx_dest = out_dir / f"{slide_id}.ozx" if ozx else None
        for d in (dest, ozx_dest):
            if d is not None and d.exists() and not overwrite:
                raise OutputError(f"{d} exists.", hint="Pass --force to replace it or choose another --out.")
        mosaic_info = store.mosaic_info()
        if mosaic_info is None:
            raise StoreError(
                f"{store_path}: slide '{slide_id}' has no complete benchtop mosaic to export.",
                hint="Acquire or import the benchtop images first.",
            )
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"{out_dir}: cannot create the output folder ({exc.strerror}).") from None
        tmp = out_dir / f".{dest.name}.partial-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        completeness = store.completeness()
        try:
            names, written = _write_zarr(
                zarr, tmp, store, store_path, mosaic_info, completeness, on_image=on_image
            )
            if dest.exists():
                shutil.rmtree(dest) if dest.is_dir() else dest.unlink()
            os.replace(tmp, dest)
        except OSError as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            raise OutputError(
                f"{dest}: cannot write the export ({exc.strerror or exc}).",
                hint="Check the free space and permissions of --out.",
            ) from None
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    ozx_path = write_ozx(dest, ozx_dest, overwrite=overwrite) if ozx_dest is not None else None
    return ExportResult(
        zarr_path=dest,
        ozx_path=ozx_path,
        images=names,
        pixel_bytes=written,
        seconds=time.perf_counter() - t0,
        completeness=completeness,
    )


def _write_zarr(
    zarr: Any,
    tmp: Path,
    store: SlideStore,
    store_path: Path,
    mosaic_info: MosaicInfo,
    completeness: dict[str, Any],
    *,
    on_image: Callable[[str], None] | None,
) -> tuple[list[str], int]:
    """Write the whole OME-Zarr (bioformats2raw layout: mosaic, captures, OME metadata) into ``tmp``.

    Returns the images' names in series order and the pixel bytes written.
    """
    names: list[str] = []
    written = 0
    root = zarr.open_group(zarr.storage.LocalStore(tmp), mode="w-", zarr_format=3)
    root.attrs.put(
        {
            "ome": {"version": NGFF_VERSION, "bioformats2raw.layout": 3},
            "scopectl": _export_attrs(store, store_path, completeness),
        }
    )
    n_bytes, image = _write_mosaic(root.create_group("0"), store, mosaic_info, completeness)
    written += n_bytes
    names.append(image.name)
    ome_images: list[OmeImage] = [image]
    if on_image is not None:
        on_image("mosaic")
    for series, meta in enumerate(store.captures(), start=1):
        n_bytes, image = _write_capture(zarr, root.create_group(str(series)), store, meta, mosaic_info)
        written += n_bytes
        names.append(image.name)
        ome_images.append(image)
        if on_image is not None:
            on_image(image.name)
    ome = root.create_group("OME")
    ome.attrs.put({"ome": {"version": NGFF_VERSION, "series": [str(i) for i in range(len(names))]}})
    (tmp / "OME" / "METADATA.ome.xml").write_text(ome_xml(ome_images), encoding="utf-8")
    return names, written


def _export_attrs(store: SlideStore, store_path: Path, completeness: dict[str, Any]) -> Any:
    """The export's ``scopectl`` attributes: format, versions, the slide's summary, plan and provenance."""
    return _jsonable(
        {
            "format": EXPORT_FORMAT,
            "schema_version": SCHEMA_VERSION,
            "exported_by": f"scopectl {__version__}",
            "exported": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "source_store": store_path.name,
            "info": {k: v for k, v in store.info().items() if k not in ("path", "being_written_by")},
            "completeness": completeness,
            "protocol": store.protocol(),
            "plan": store.plan(),
            "provenance": [e.to_dict() for e in store.provenance()],
        }
    )


def _write_mosaic(
    group: Any, store: SlideStore, mosaic_info: MosaicInfo, completeness: dict[str, Any]
) -> tuple[int, OmeImage]:
    """Write the benchtop mosaic as series 0; returns the pixel bytes written and its OME image."""
    mosaic = np.asarray(store.mosaic()[()])
    mosaic_attrs = _jsonable(
        {
            "kind": "mosaic",
            "pixel_size_um": mosaic_info.pixel_size_um,
            "origin_x_um": mosaic_info.origin_x_um,
            "origin_y_um": mosaic_info.origin_y_um,
            "method": json.loads(str(store.mosaic().attrs.get("method_json", "{}"))),
            "completeness": completeness,
        }
    )
    written = _write_image(
        group,
        mosaic,
        name="mosaic",
        pixel_size_um=mosaic_info.pixel_size_um,
        origin_yx_um=(mosaic_info.origin_y_um, mosaic_info.origin_x_um),
        attributes=mosaic_attrs,
    )
    return written, OmeImage(
        name="mosaic",
        rows=mosaic_info.rows,
        cols=mosaic_info.cols,
        pixel_size_um=mosaic_info.pixel_size_um,
        annotations={"kind": "mosaic", "slide_id": store.slide_id, "complete": str(completeness["complete"])},
        interleaved=False,
        tiff_ifd=None,
    )


def _write_capture(
    zarr: Any, group: Any, store: SlideStore, meta: CaptureMeta, mosaic_info: MosaicInfo
) -> tuple[int, OmeImage]:
    """Write one phone capture (with its registration's attributes, affine and shift map) into ``group``;
    returns the pixel bytes written and its OME image."""
    index = meta.index
    rgb, _ = store.read_capture(index)
    reg = store.registration(index)
    reg_attrs: dict[str, Any] | None = None
    if reg is not None:
        reg_attrs = {
            "capture_index": index,
            **{
                f.name: getattr(reg, f.name)
                for f in dataclasses.fields(reg)
                if f.name not in ("shift_map", "similarity_maps")
            },
        }
        if reg.ok:
            reg_attrs["affine_um"] = capture_affine_um(
                reg.homography,
                mosaic_pixel_size_um=mosaic_info.pixel_size_um,
                origin_yx_um=(mosaic_info.origin_y_um, mosaic_info.origin_x_um),
            ).tolist()
        if reg.shift_map is not None:
            sm = np.asarray(reg.shift_map, np.float32)
            zarr.create_array(
                store=group.store,
                name=f"{group.path}/registration_shift_map",
                data=sm,
                chunks=sm.shape,
                zarr_format=3,
            )
            reg_attrs["shift_map"] = "registration_shift_map"
    name = f"capture-{index:05d}"
    written = _write_image(
        group,
        rgb,
        name=name,
        pixel_size_um=meta.pixel_size_um,
        origin_yx_um=(0.0, 0.0),
        attributes=_jsonable(
            {"kind": "capture", "capture": dataclasses.asdict(meta), "registration": reg_attrs}
        ),
    )
    return written, OmeImage(
        name=name,
        rows=int(rgb.shape[0]),
        cols=int(rgb.shape[1]),
        pixel_size_um=meta.pixel_size_um,
        annotations={
            "kind": "capture",
            "capture_index": str(index),
            "field_index": str(meta.field_index),
            "source_name": meta.source_name,
            "registered": "none" if reg is None else ("ok" if reg.ok else "failed"),
        },
        interleaved=False,
        tiff_ifd=None,
    )


def _ozx_order(root: Path) -> list[Path]:
    """Files of an OME-Zarr folder: every ``zarr.json`` breadth-first (root first), then everything else."""
    metadata: list[Path] = []
    data: list[Path] = []
    level = [root]
    while level:
        nxt: list[Path] = []
        for folder in level:
            entries = sorted(folder.iterdir())
            for entry in entries:
                if entry.is_symlink():
                    raise ConfigError(f"{entry}: symbolic links are not exported.")
                if entry.is_dir():
                    nxt.append(entry)
                elif entry.name == "zarr.json":
                    metadata.append(entry)
                else:
                    data.append(entry)
        level = nxt
    if not metadata or metadata[0] != root / "zarr.json":
        raise ConfigError(f"{root}: not a Zarr v3 hierarchy (no root zarr.json).")
    return metadata + data


def write_ozx(zarr_dir: Path, dest: Path, *, overwrite: bool = False) -> Path:
    """Zip an OME-Zarr folder into a single ``.ozx`` file (NGFF RFC-9, recommended variant); returns ``dest``."""
    if dest.exists() and not overwrite:
        raise OutputError(f"{dest} exists.", hint="Pass --force to replace it or choose another --out.")
    tmp = dest.with_name(f".{dest.name}.partial-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
            for path in _ozx_order(zarr_dir):
                arcname = path.relative_to(zarr_dir).as_posix()
                info = zipfile.ZipInfo(arcname, date_time=time.localtime(path.stat().st_mtime)[:6])
                info.compress_type = zipfile.ZIP_STORED
                with open(path, "rb") as src, zf.open(info, "w", force_zip64=True) as out:
                    shutil.copyfileobj(src, out, 1 << 20)
            zf.comment = json.dumps({"ome": {"version": NGFF_VERSION}}).encode("utf-8") + b"\x00"
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, dest)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise OutputError(f"{dest}: cannot write the zipped OME-Zarr ({exc.strerror or exc}).") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return dest
