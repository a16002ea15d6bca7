"""Reading microscope images from files, defensively.

Every file is untrusted: the header is checked (format, dimensions, bit depth, channels) before the
pixels are decoded, truncation is detected, and every problem becomes one
:class:`~scopectl.errors.InputFileError` naming the file and what to do.

Supported: DNG (decoded with rawpy, colour-faithful settings), JPEG, PNG and TIFF (8-bit RGB or RGBA).
Pixel sizes are read from file metadata where the format carries one (TIFF resolution tags, ImageJ
``unit``, PNG ``pHYs``, JPEG JFIF density); a DNG carries none at the sample plane.
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from scopectl.errors import InputFileError

__all__ = [
    "MAX_FILE_BYTES",
    "MAX_PIXELS",
    "ImageFile",
    "decode_dng",
    "read_image",
    "sniff_format",
]

#: Largest image accepted, in pixels (a 25K×25K benchtop mosaic is 6.25e8 pixels).
MAX_PIXELS = 1_000_000_000
#: Largest file accepted, in bytes.
MAX_FILE_BYTES = 4 * 1024**3

Format = Literal["dng", "jpeg", "png", "tiff"]


@dataclass
class ImageFile:
    """A decoded RGB image and what its file said about itself."""

    path: Path
    format: Format
    rgb: np.ndarray
    raw: bytes
    pixel_size_um: float | None = None
    settings: dict[str, Any] = field(default_factory=dict)


def sniff_format(head: bytes) -> Format | None:
    """Identify an image format from the first bytes of a file (DNG is a TIFF with a DNGVersion tag)."""
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "tiff"
    return None


def _bad(path: Path, what: str, todo: str = "") -> InputFileError:
    return InputFileError(f"{path}: {what}.", hint=todo or None)


def _check_dims(path: Path, rows: int, cols: int) -> None:
    if rows <= 0 or cols <= 0:
        raise _bad(path, f"image has zero size ({rows}×{cols} pixels)", "Export the image again.")
    if rows * cols > MAX_PIXELS:
        raise _bad(
            path,
            f"image is absurdly large ({rows}×{cols} = {rows * cols:,} pixels, limit {MAX_PIXELS:,})",
            "Split it into tiles and import those.",
        )


# --------------------------------------------------------------------------------------------- headers
def _png_header(path: Path, data: bytes) -> tuple[int, int, int, int, float | None]:
    """Return rows, cols, bit depth, colour type and the pixel size in µm (from pHYs) of a PNG."""
    if len(data) < 33 or data[12:16] != b"IHDR":
        raise _bad(path, "truncated or corrupt PNG (no IHDR chunk)", "Re-export the file.")
    cols, rows, depth, ctype = struct.unpack(">IIBB", data[16:26])
    pixel_um: float | None = None
    pos = 8
    while pos + 8 <= len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        ctype_name = data[pos + 4 : pos + 8]
        if ctype_name == b"pHYs" and length == 9 and pos + 17 <= len(data):
            ppu_x, ppu_y, unit = struct.unpack(">IIB", data[pos + 8 : pos + 17])
            if unit == 1 and ppu_x > 0 and ppu_x == ppu_y:  # pixels per metre
                pixel_um = 1e6 / ppu_x
        if ctype_name in (b"IDAT", b"IEND"):
            break
        pos += 12 + length
    if not data.rstrip(b"\x00").endswith(b"IEND\xaeB`\x82"):
        raise _bad(path, "truncated PNG (no IEND chunk at the end)", "Copy or export the file again.")
    return rows, cols, depth, ctype, pixel_um


def _jpeg_header(path: Path, data: bytes) -> tuple[int, int, int, float | None]:
    """Return rows, cols, components and the JFIF pixel size in µm of a JPEG (None when absent)."""
    pos = 2
    pixel_um: float | None = None
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            raise _bad(path, "corrupt JPEG (bad marker)", "Re-export the file.")
        marker = data[pos + 1]
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            pos += 2
            continue
        (length,) = struct.unpack(">H", data[pos + 2 : pos + 4])
        seg = data[pos + 4 : pos + 2 + length]
        if marker == 0xE0 and seg.startswith(b"JFIF\x00") and len(seg) >= 12:
            units, xd, yd = struct.unpack(">BHH", seg[7:12])
            if xd > 0 and xd == yd and units in (1, 2):
                pixel_um = (25400.0 if units == 1 else 10000.0) / xd
        if marker in (0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF):
            if len(seg) < 6:
                break
            _precision, rows, cols, comps = struct.unpack(">BHHB", seg[:6])
            return rows, cols, comps, pixel_um
        pos += 2 + length
    raise _bad(path, "truncated or corrupt JPEG (no frame header)", "Copy or export the file again.")


# -------------------------------------------------------------------------------------------- decoders
def decode_dng(data: bytes, *, source: str = "<bytes>") -> tuple[np.ndarray, dict[str, Any]]:
    """Decode DNG bytes to 8-bit sRGB with the camera's white balance and no auto-brightening.

    Returns the image and the raw settings rawpy reports (CFA pattern, black/white levels, white balance).
    """
    import rawpy

    try:
        with rawpy.imread(io.BytesIO(data)) as raw:
            pattern = raw.raw_pattern
            if pattern is None:
                raise ValueError("no CFA pattern (not a Bayer raw file)")
            settings: dict[str, Any] = {
                "cfa_pattern": "".join("RGBG"[int(v)] for v in np.asarray(pattern).flatten()),
                "black_level": [int(v) for v in raw.black_level_per_channel],
                "white_level": int(raw.white_level),
                "camera_whitebalance": [float(v) for v in raw.camera_whitebalance],
                "raw_shape": [int(v) for v in raw.raw_image_visible.shape],
            }
            rgb = raw.postprocess(
                use_camera_wb=True,
                no_auto_bright=True,
                adjust_maximum_thr=0.0,
                gamma=(2.4, 12.92),
                output_bps=8,
            )
    except (rawpy.LibRawError, ValueError, OSError) as exc:
        raise InputFileError(
            f"{source}: not a decodable DNG ({type(exc).__name__}: {exc}).",
            hint="Pull or copy the file again.",
        ) from None
    return np.ascontiguousarray(rgb, dtype=np.uint8), settings


def _to_rgb8(path: Path, arr: np.ndarray) -> np.ndarray:
    if arr.dtype != np.uint8:
        raise _bad(
            path,
            f"{arr.dtype.itemsize * 8}-bit image; scopectl needs 8-bit RGB",
            "Convert it to 8 bits per channel (e.g. ImageJ: Image > Type > RGB Color).",
        )
    if arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] == 1):
        raise _bad(
            path, "grayscale image; scopectl needs RGB colour images", "Use the colour export of the camera."
        )
    if arr.ndim != 3 or arr.shape[2] not in (3, 4):
        raise _bad(path, f"unsupported pixel layout {arr.shape}; expected rows × columns × 3 (RGB)")
    return np.ascontiguousarray(arr[:, :, :3])


def _read_tiff(path: Path, data: bytes) -> tuple[np.ndarray, float | None, dict[str, Any], bool]:
    """Return pixels, pixel size, settings and whether the TIFF is a DNG."""
    import tifffile

    try:
        with tifffile.TiffFile(io.BytesIO(data)) as tif:
            page = tif.pages.first
            is_dng = "DNGVersion" in page.tags
            if is_dng:
                return np.empty((0, 0, 3), np.uint8), None, {}, True
            shape = page.shape
            rows, cols = (int(shape[0]), int(shape[1])) if len(shape) >= 2 else (0, 0)
            _check_dims(path, rows, cols)
            pixel_um = _tiff_pixel_size_um(tif)
            arr = page.asarray()
    except InputFileError:
        raise
    except Exception as exc:  # tifffile raises many types for corrupt files
        raise _bad(
            path, f"truncated or corrupt TIFF ({type(exc).__name__}: {exc})", "Re-export the file."
        ) from None
    if arr.ndim == 3 and arr.shape[0] in (3, 4) and arr.shape[2] not in (3, 4):  # planar RGB
        arr = np.moveaxis(arr, 0, -1)
    return arr, pixel_um, {}, False


def _tiff_pixel_size_um(tif: Any) -> float | None:
    page = tif.pages.first
    tags = page.tags
    xres = tags.get("XResolution")
    if xres is None:
        return None
    num, den = xres.value
    if num <= 0 or den <= 0:
        return None
    per_unit = num / den  # pixels per unit
    unit_tag = tags.get("ResolutionUnit")
    unit = int(unit_tag.value) if unit_tag is not None else 2
    ij = tif.imagej_metadata or {}
    ij_unit = str(ij.get("unit", "")).lower().replace("\\u00b5", "µ")
    per_unit = float(per_unit)
    if ij_unit in ("um", "µm", "micron", "microns"):
        return 1.0 / per_unit
    if ij_unit in ("mm",):
        return 1000.0 / per_unit
    if unit == 3:  # centimetre
        return 1e4 / per_unit
    if unit == 2 and per_unit > 2000:  # inch, but only plausible microscope sampling (>2000 px/inch)
        return 25400.0 / per_unit
    return None


def read_image(path: Path | str, *, max_file_bytes: int = MAX_FILE_BYTES) -> ImageFile:
    """Read an RGB image file (DNG, JPEG, PNG or TIFF), checking it thoroughly.

    Parameters
    ----------
    path
        The file.
    max_file_bytes
        Files larger than this are refused before being read.

    Returns
    -------
    ImageFile
        8-bit RGB pixels (rows × columns × 3), the file's bytes, its format and any pixel size
        found in its metadata.

    Raises
    ------
    InputFileError
        If the file is missing, empty, not an image, truncated or corrupt, grayscale, not 8-bit,
        zero-sized or absurdly large.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise _bad(path, "file not found", "Check the path.") from None
    except OSError as exc:
        raise _bad(path, f"cannot read ({exc.strerror})") from None
    if path.is_dir():
        raise _bad(path, "is a directory, not an image file")
    if size == 0:
        raise _bad(path, "file is empty (0 bytes)", "Copy the file again.")
    if size > max_file_bytes:
        raise _bad(path, f"file is absurdly large ({size:,} bytes, limit {max_file_bytes:,})")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise _bad(path, f"cannot read ({exc.strerror})") from None
    fmt = sniff_format(data[:16])
    if fmt is None:
        raise _bad(
            path, "not an image (expected DNG, JPEG, PNG or TIFF)", "Check that you named the right file."
        )

    pixel_um: float | None = None
    settings: dict[str, Any] = {}
    if fmt == "png":
        rows, cols, depth, ctype, pixel_um = _png_header(path, data)
        _check_dims(path, rows, cols)
        if depth != 8:
            raise _bad(
                path, f"{depth}-bit PNG; scopectl needs 8-bit RGB", "Convert it to 8 bits per channel."
            )
        if ctype in (0, 4):
            raise _bad(path, "grayscale image; scopectl needs RGB colour images", "Use the colour export.")
        arr = _cv_decode(path, data)
    elif fmt == "jpeg":
        rows, cols, comps, pixel_um = _jpeg_header(path, data)
        _check_dims(path, rows, cols)
        if comps == 1:
            raise _bad(path, "grayscale image; scopectl needs RGB colour images", "Use the colour export.")
        if not data.rstrip(b"\x00").endswith(b"\xff\xd9"):
            raise _bad(path, "truncated JPEG (no end-of-image marker)", "Copy or export the file again.")
        arr = _cv_decode(path, data)
    else:
        arr, pixel_um, settings, is_dng = _read_tiff(path, data)
        if is_dng:
            fmt = "dng"
            arr, settings = decode_dng(data, source=str(path))
            pixel_um = None
    rgb = _to_rgb8(path, arr)
    _check_dims(path, rgb.shape[0], rgb.shape[1])
    return ImageFile(path=path, format=fmt, rgb=rgb, raw=data, pixel_size_um=pixel_um, settings=settings)


def _cv_decode(path: Path, data: bytes) -> np.ndarray:
    import cv2

    arr = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    if arr is None:
        raise _bad(path, "corrupt image data (the decoder failed)", "Copy or export the file again.")
    if arr.ndim == 3 and arr.shape[2] == 3:
        arr = cv2.cvtColor(arr, cv2.COLOR_BGR2RGB)
    elif arr.ndim == 3 and arr.shape[2] == 4:
        arr = cv2.cvtColor(arr, cv2.COLOR_BGRA2RGBA)
    return np.asarray(arr)
