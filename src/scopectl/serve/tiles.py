"""Deep-zoom tiles: a Deep Zoom Image (DZI) pyramid, stored in one file per image.

Layout (Microsoft's Deep Zoom, which OpenSeadragon reads): level ``L`` of ``0..max_level`` is the image
scaled by ``2**(L - max_level)`` (rounded up), ``max_level = ceil(log2(max(rows, cols)))``; each level is cut
into ``tile_size`` squares whose neighbours overlap by ``overlap`` pixels.  Levels are made by halving with
area averaging.

A *tile pack* keeps every JPEG tile of one image in a single file written atomically (temporary name, then
rename), so a result is either complete or absent, and a shared filesystem sees one file, not thousands::

    b"SCTILES1"  u32 little-endian header length  header (JSON)  tile bytes...

The header holds ``format`` = ``scopectl-tiles``, ``schema_version``, the image size, ``tile_size``,
``overlap``, and per level its size, grid and each tile's ``[offset, length]`` after the header.
"""

from __future__ import annotations

import json
import math
import os
import struct
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from scopectl.errors import StoreCorruptError

__all__ = ["TILE_OVERLAP", "TILE_SIZE", "TilePack", "dzi_xml", "write_tile_pack"]

TILE_SIZE = 254
TILE_OVERLAP = 1
JPEG_QUALITY = 90
_MAGIC = b"SCTILES1"
_MAX_HEADER = 16 * 1024**2


def _levels(rows: int, cols: int) -> int:
    return max(0, math.ceil(math.log2(max(rows, cols, 1))))


def _tile_spans(size: int, tile: int, overlap: int) -> list[tuple[int, int]]:
    spans = []
    for start in range(0, size, tile):
        spans.append((max(0, start - overlap), min(size, start + tile + overlap)))
    return spans


def write_tile_pack(
    path: Path,
    rgb: np.ndarray,
    *,
    tile_size: int = TILE_SIZE,
    overlap: int = TILE_OVERLAP,
    quality: int = JPEG_QUALITY,
) -> dict[str, Any]:
    """Cut an RGB uint8 image into a DZI pyramid of JPEG tiles and write them as one tile pack.

    Returns the pack's header.  The file appears complete or not at all.
    """
    import cv2  # OpenCV (heavy) loads only when this runs

    rows, cols = int(rgb.shape[0]), int(rgb.shape[1])
    max_level = _levels(rows, cols)
    bgr = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGR)
    params = [int(cv2.IMWRITE_JPEG_QUALITY), int(quality)]
    chunks: list[bytes] = []
    offset = 0
    levels: list[dict[str, Any]] = []
    level_img = bgr
    for level in range(max_level, -1, -1):
        lr, lc = level_img.shape[:2]
        row_spans = _tile_spans(lr, tile_size, overlap)
        col_spans = _tile_spans(lc, tile_size, overlap)
        index: list[list[int]] = []
        for r0, r1 in row_spans:  # row-major: tile (col, row) is index[row * cols + col]
            for c0, c1 in col_spans:
                ok, buf = cv2.imencode(".jpg", level_img[r0:r1, c0:c1], params)
                if not ok:  # pragma: no cover - OpenCV fails only without memory
                    raise StoreCorruptError(f"{path}: JPEG encoding of a tile failed.")
                data = buf.tobytes()
                chunks.append(data)
                index.append([offset, len(data)])
                offset += len(data)
        levels.append(
            {"level": level, "rows": lr, "cols": lc, "grid": [len(row_spans), len(col_spans)], "tiles": index}
        )
        if level > 0:
            nr, nc = max(1, -(-lr // 2)), max(1, -(-lc // 2))
            level_img = cv2.resize(level_img, (nc, nr), interpolation=cv2.INTER_AREA)
    header = {
        "format": "scopectl-tiles",
        "schema_version": 1,
        "rows": rows,
        "cols": cols,
        "tile_size": tile_size,
        "overlap": overlap,
        "tile_format": "jpeg",
        "max_level": max_level,
        "levels": sorted(levels, key=lambda lv: lv["level"]),
    }
    raw = json.dumps(header, separators=(",", ":")).encode()
    tmp = path.with_name(f".{path.name}.partial-{os.getpid()}-{threading.get_ident()}")
    try:
        with open(tmp, "wb") as fh:
            fh.write(_MAGIC + struct.pack("<I", len(raw)) + raw)
            for chunk in chunks:
                fh.write(chunk)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return header


@dataclass(frozen=True)
class _Opened:
    header: dict[str, Any]
    data_start: int
    size: int
    mtime_ns: int


class TilePack:
    """Reads tiles from tile packs; parsed headers are cached (thread-safe)."""

    def __init__(self, *, cache_size: int = 256) -> None:
        self._cache: OrderedDict[Path, _Opened] = OrderedDict()
        self._lock = threading.Lock()
        self._cache_size = cache_size

    def header(self, path: Path) -> dict[str, Any]:
        """The pack's header.

        Raises
        ------
        FileNotFoundError
            If there is no pack.
        StoreCorruptError
            If the file is not a tile pack.
        """
        return self._open(path).header

    def _open(self, path: Path) -> _Opened:
        st = path.stat()
        with self._lock:
            hit = self._cache.get(path)
            if hit is not None and hit.mtime_ns == st.st_mtime_ns and hit.size == st.st_size:
                self._cache.move_to_end(path)
                return hit
        with open(path, "rb") as fh:
            head = fh.read(12)
            if len(head) < 12 or head[:8] != _MAGIC:
                raise StoreCorruptError(f"{path}: not a scopectl tile pack.")
            (length,) = struct.unpack("<I", head[8:])
            if length > min(_MAX_HEADER, st.st_size - 12):
                raise StoreCorruptError(f"{path}: tile pack header length {length} is impossible.")
            try:
                header = json.loads(fh.read(length))
            except (UnicodeDecodeError, json.JSONDecodeError):
                raise StoreCorruptError(f"{path}: tile pack header is not JSON.") from None
        if not isinstance(header, dict) or header.get("format") != "scopectl-tiles":
            raise StoreCorruptError(f"{path}: tile pack header has the wrong format.")
        opened = _Opened(header, 12 + length, st.st_size, st.st_mtime_ns)
        with self._lock:
            self._cache[path] = opened
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return opened

    def tile(self, path: Path, level: int, col: int, row: int) -> bytes | None:
        """The JPEG bytes of one tile, or None when the level or position is outside the pyramid."""
        opened = self._open(path)
        levels = opened.header["levels"]
        if not 0 <= level < len(levels):
            return None
        lv = levels[level]
        grid_rows, grid_cols = lv["grid"]
        if not (0 <= row < grid_rows and 0 <= col < grid_cols):
            return None
        offset, length = lv["tiles"][row * grid_cols + col]
        start = opened.data_start + int(offset)
        if start + int(length) > opened.size:
            raise StoreCorruptError(f"{path}: tile {level}/{col}_{row} lies beyond the end of the file.")
        with open(path, "rb") as fh:
            return os.pread(fh.fileno(), int(length), start)


def dzi_xml(header: dict[str, Any]) -> str:
    """The ``.dzi`` descriptor of a tile pack (Deep Zoom's XML)."""
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<Image xmlns="http://schemas.microsoft.com/deepzoom/2008" Format="jpeg" '
        f'Overlap="{int(header["overlap"])}" TileSize="{int(header["tile_size"])}">'
        f'<Size Width="{int(header["cols"])}" Height="{int(header["rows"])}"/></Image>\n'
    )
