"""Reading microscope images from files, defensively: one decoder policy for every untrusted image.

Every file is untrusted.  The policy, applied to every image scopectl reads:

* **A regular file, read once, bounded.**  The file is opened without blocking and must be a regular file
  (a FIFO, a device such as ``/dev/zero`` or a directory is refused by name); at most
  :data:`MAX_FILE_BYTES` are read, whatever ``stat`` says (``/proc`` files report 0 bytes).
* **Headers first, by the format's own reader.**  Pillow reads JPEG and PNG headers, tifffile TIFF and DNG
  structure; dimensions, bit depth and channels are checked before any pixel is decoded.
* **Pillow's decompression-bomb guard.**  An image may have at most :data:`MAX_PIXELS` pixels (Pillow's
  ``Image.MAX_IMAGE_PIXELS`` is set to it), checked from the header; a larger one is refused, never
  allocated.
* **Decoder warnings about corrupt data are errors.**  JPEG pixels are decoded by libjpeg-turbo in strict
  mode (:mod:`simplejpeg`), which raises on "premature end of data segment" and every other warning libjpeg
  would print and then fill with grey; every warning Pillow raises while decoding a PNG is an error too.
* **A pixel size is a microscope pixel size only when it is plausible** (:data:`PIXEL_SIZE_RANGE_UM`).
  JPEG JFIF density, PNG ``pHYs`` and TIFF inch resolutions usually state a print resolution (72, 96, 300
  dpi: 353, 265, 85 µm); such a value is reported in :attr:`ImageFile.resolution_note` and never used as a
  pixel size at the sample.

Every problem becomes one :class:`~scopectl.errors.InputFileError` naming the file and what to do (or a
:class:`~scopectl.errors.FilesystemError` when the operating system refuses to open it).

Supported: DNG (decoded with rawpy, colour-faithful settings), JPEG, PNG and TIFF (8-bit RGB or RGBA).

Thread-safety: :func:`read_image` may run in several threads; decoding warnings are turned into errors with
``warnings.catch_warnings``, which on Python < 3.14 changes process-wide filters while a PNG is decoded.
"""

from __future__ import annotations

import io
import logging
import math
import os
import stat
import struct
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from scopectl.errors import InputFileError, from_os_error

__all__ = [
    "MAX_FILE_BYTES",
    "MAX_PIXELS",
    "PIXEL_SIZE_RANGE_UM",
    "ImageFile",
    "check_input_file",
    "check_pixel_size_um",
    "decode_dng",
    "decode_jpeg",
    "plausible_pixel_size_um",
    "read_image",
    "read_untrusted",
    "sniff_format",
]

#: Largest image accepted, in pixels (a 25K×25K benchtop mosaic is 6.25e8 pixels); Pillow's bomb guard.
MAX_PIXELS = 1_000_000_000
#: Largest file accepted, in bytes.
MAX_FILE_BYTES = 4 * 1024**3
#: Plausible pixel sizes at the sample, in µm (a 100× objective on a small-pixel camera to a bare sensor).
PIXEL_SIZE_RANGE_UM = (0.02, 20.0)

Format = Literal["dng", "jpeg", "png", "tiff"]


@dataclass
class ImageFile:
    """A decoded RGB image and what its file said about itself.

    Attributes
    ----------
    pixel_size_um
        The pixel size at the sample stated by the file's metadata, when it is plausible for a microscope
        (:data:`PIXEL_SIZE_RANGE_UM`); None otherwise.
    resolution_note
        When the file states a resolution that is not a plausible pixel size at the sample (e.g. 72 dpi),
        a few words saying so (for messages); None otherwise.
    """

    path: Path
    format: Format
    rgb: np.ndarray
    raw: bytes
    pixel_size_um: float | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    resolution_note: str | None = None


def plausible_pixel_size_um(value: float | None) -> bool:
    """True when ``value`` (µm) is a finite pixel size within :data:`PIXEL_SIZE_RANGE_UM`."""
    return (
        value is not None
        and math.isfinite(value)
        and PIXEL_SIZE_RANGE_UM[0] <= value <= PIXEL_SIZE_RANGE_UM[1]
    )


def check_pixel_size_um(value: float, *, what: str) -> float:
    """Validate a pixel size a user gave (``what`` names the option); returns it as a float.

    Raises
    ------
    InputFileError
        If it is not finite or outside :data:`PIXEL_SIZE_RANGE_UM`.
    """
    v = float(value)
    if not plausible_pixel_size_um(v):
        raise InputFileError(
            f"{what} {value}: implausible pixel size at the sample "
            f"(expected {PIXEL_SIZE_RANGE_UM[0]}–{PIXEL_SIZE_RANGE_UM[1]} µm)."
        )
    return v


def sniff_format(head: bytes) -> Format | None:
    """Identify an image format from the first bytes of a file (DNG is a TIFF with a DNGVersion tag)."""
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "tiff"
    return None


def _bad(path: Path | str, what: str, todo: str = "") -> InputFileError:
    return InputFileError(f"{path}: {what}.", hint=todo or None)


def _check_dims(path: Path | str, rows: int, cols: int) -> None:
    if rows <= 0 or cols <= 0:
        raise _bad(path, f"image has zero size ({rows}×{cols} pixels)", "Export the image again.")
    if rows * cols > MAX_PIXELS:
        raise _bad(
            path,
            f"image is absurdly large ({rows}×{cols} = {rows * cols:,} pixels, limit {MAX_PIXELS:,})",
            "Split it into tiles and import those.",
        )


# ---------------------------------------------------------------------------------------- the file
_KINDS = (
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def _open_regular(path: Path, what: str) -> tuple[int, os.stat_result]:
    """Open ``path`` read-only without blocking and check it is a regular file; returns (fd, stat)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise _bad(path, "file not found", "Check the path.") from None
    except OSError as exc:
        raise from_os_error(exc, path=path, action=f"read the {what}") from None
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise _bad(path, f"is a directory, not {_a(what)}", "Name the files (e.g. dir/*.jpg).")
        if not stat.S_ISREG(st.st_mode):
            kind = next((name for test, name in _KINDS if test(st.st_mode)), "not a regular file")
            raise _bad(path, f"is {kind}, not {_a(what)}", f"Name a regular {what}.")
    except BaseException:
        os.close(fd)
        raise
    return fd, st


def _a(noun: str) -> str:
    return f"{'an' if noun[:1] in 'aeiou' else 'a'} {noun}"


def check_input_file(path: Path | str, *, what: str = "image file") -> None:
    """Check that ``path`` is an existing, readable regular file, with the same messages :func:`read_image` gives."""
    fd, _st = _open_regular(Path(path), what)
    os.close(fd)


def read_untrusted(path: Path | str, *, max_bytes: int = MAX_FILE_BYTES, what: str = "image file") -> bytes:
    """The bytes of a regular file, at most ``max_bytes`` of them, read without trusting its size.

    Raises
    ------
    InputFileError
        Missing, a directory, FIFO, device or socket, empty, or larger than ``max_bytes``.
    FilesystemError
        The operating system refused to open or read it (permissions, I/O error ...).
    """
    path = Path(path)
    fd, st = _open_regular(path, what)
    chunks: list[bytes] = []
    total = 0
    try:
        if st.st_size > max_bytes:
            raise _bad(path, f"file is absurdly large ({st.st_size:,} bytes, limit {max_bytes:,})")
        while True:
            chunk = os.read(fd, min(1 << 24, max_bytes + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
            if total > max_bytes:
                raise _bad(path, f"file is absurdly large (more than {max_bytes:,} bytes)")
    except OSError as exc:
        raise from_os_error(exc, path=path, action=f"read the {what}") from None
    finally:
        os.close(fd)
    if total == 0:
        raise _bad(path, "file is empty (0 bytes)", "Copy the file again.")
    return b"".join(chunks)


# ------------------------------------------------------------------------------------ decoder policy
@contextmanager
def _strict(path: Path | str, fmt: str) -> Iterator[None]:
    """Pillow's warnings (decompression bomb, corrupt data) are errors; its exceptions become InputFileError."""
    # Pillow loads only for PNG/JPEG files (keeps `scopectl --help` fast)
    from PIL import Image, UnidentifiedImageError

    Image.MAX_IMAGE_PIXELS = MAX_PIXELS
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            yield
    except InputFileError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise _bad(
            path, f"image is absurdly large ({exc})", "Split it into tiles and import those."
        ) from None
    except UnidentifiedImageError:
        raise _bad(path, f"corrupt {fmt} (not readable as such)", "Copy or export the file again.") from None
    except (OSError, SyntaxError, ValueError, EOFError, struct.error, Warning) as exc:
        detail = " ".join(str(exc).split())[:120] or type(exc).__name__
        raise _bad(path, f"corrupt {fmt} ({detail})", "Copy or export the file again.") from None


def decode_jpeg(data: bytes, *, source: str = "<bytes>") -> np.ndarray:
    """Decode JPEG bytes to RGB uint8 (rows × columns × 3) with libjpeg-turbo, refusing corrupt data.

    libjpeg "recovers" from a damaged stream (a truncated scan, a marker inside the entropy-coded data) by
    printing a warning and filling the rest of the image with grey.  Here every such warning is an error
    (simplejpeg's ``strict`` mode), and the header's size is checked against :data:`MAX_PIXELS` first.

    Raises
    ------
    InputFileError
        Naming ``source``, for a file that is not a decodable, intact colour JPEG.
    """
    import simplejpeg  # libjpeg-turbo loads only to decode a JPEG

    try:
        rows, cols, colorspace, _subsampling = simplejpeg.decode_jpeg_header(data)
    except (ValueError, RuntimeError) as exc:
        raise _bad(source, f"corrupt JPEG header ({exc})", "Copy or export the file again.") from None
    _check_dims(source, int(rows), int(cols))
    if colorspace in ("Gray", "GRAY"):
        raise _bad(source, "grayscale image; scopectl needs RGB colour images", "Use the colour export.")
    try:
        arr = simplejpeg.decode_jpeg(data, colorspace="RGB", strict=True)
    except (ValueError, RuntimeError) as exc:
        raise _bad(
            source,
            f"corrupt JPEG data (libjpeg: {' '.join(str(exc).split())[:120]})",
            "Copy or export the file again.",
        ) from None
    return np.ascontiguousarray(arr, dtype=np.uint8)


def _resolution_um(dpi: Any) -> tuple[float | None, str | None]:
    """A resolution in dots per inch -> (pixel size in µm if plausible, note when implausible)."""
    try:
        x, y = (float(v) for v in dpi)
    except (TypeError, ValueError):
        return None, None
    if not (math.isfinite(x) and x > 0 and math.isclose(x, y, rel_tol=1e-3)):
        return None, None
    um = 25400.0 / x
    if plausible_pixel_size_um(um):
        return um, None
    return (
        None,
        f"states {x:.4g} dpi ({um:.4g} µm per pixel), a print resolution, not a pixel size at the sample",
    )


def _png_header(path: Path, data: bytes) -> str:
    """Check the size in a PNG's IHDR chunk and return Pillow's raw mode for it (``"RGB"``, ``"RGB;16B"`` ...).

    Pillow's own chunk reader parses the header without decoding.  It runs before :func:`PIL.Image.open`,
    which refuses a zero-sized image with a message that does not say so.  A header this reader cannot
    parse is left to :func:`PIL.Image.open`, which reads it the same way and reports it.
    """
    from PIL import PngImagePlugin  # Pillow loads only for PNG/JPEG files (keeps `scopectl --help` fast)

    with PngImagePlugin.PngStream(io.BytesIO(data[8:])) as chunks:
        try:
            cid, pos, length = chunks.read()
            if cid != b"IHDR":
                return ""
            chunks.call(cid, pos, length)
        except (OSError, SyntaxError, ValueError, EOFError, struct.error):
            return ""
        cols, rows = chunks.im_size
        raw_mode = str(getattr(chunks, "im_rawmode", ""))  # unset for a combination PNG does not define
    _check_dims(path, rows, cols)
    return raw_mode


#: Pillow's PNG raw modes that are not 8 bits per sample (the 16-bit ones end in ``;16B``).
_PNG_LOW_BIT_DEPTHS = {"1": 1, "P;1": 1, "L;2": 2, "P;2": 2, "L;4": 4, "P;4": 4}


def _png_bit_depth(raw_mode: str) -> int:
    """Bits per sample of a PNG from Pillow's raw mode (:func:`_png_header`)."""
    return 16 if raw_mode.endswith(";16B") else _PNG_LOW_BIT_DEPTHS.get(raw_mode, 8)


def _read_pillow(
    path: Path, data: bytes, fmt: Literal["jpeg", "png"]
) -> tuple[np.ndarray, float | None, str | None]:
    """Pixels, plausible pixel size and resolution note of a JPEG or PNG (Pillow reads the header)."""
    from PIL import Image  # Pillow loads only for PNG/JPEG files (keeps `scopectl --help` fast)

    name = fmt.upper()
    png_raw_mode = _png_header(path, data) if fmt == "png" else ""
    with _strict(path, f"{name} header"), Image.open(io.BytesIO(data), formats=(name,)) as im:
        cols, rows = im.size
        mode = im.mode
        dpi = im.info.get("dpi")
    _check_dims(path, int(rows), int(cols))
    pixel_um, note = _resolution_um(dpi) if dpi is not None else (None, None)
    if fmt == "png":
        depth = _png_bit_depth(png_raw_mode)
        if depth != 8:
            raise _bad(
                path, f"{depth}-bit PNG; scopectl needs 8-bit RGB", "Convert it to 8 bits per channel."
            )
        if png_raw_mode.startswith("LA") or mode in ("1", "L", "LA", "I", "I;16"):
            raise _bad(path, "grayscale image; scopectl needs RGB colour images", "Use the colour export.")
        if not data.rstrip(b"\x00").endswith(b"IEND\xaeB`\x82"):
            raise _bad(path, "truncated PNG (no IEND chunk at the end)", "Copy or export the file again.")
        with _strict(path, "PNG data"), Image.open(io.BytesIO(data), formats=("PNG",)) as im:
            im.load()
            rgb_im = im.convert("RGBA" if "transparency" in im.info else "RGB") if im.mode == "P" else im
            arr = np.array(rgb_im)  # a writable copy
        return arr, pixel_um, note
    if mode in ("1", "L", "LA", "I"):
        raise _bad(path, "grayscale image; scopectl needs RGB colour images", "Use the colour export.")
    if mode == "CMYK":
        raise _bad(path, "CMYK JPEG; scopectl needs RGB colour images", "Export it as RGB.")
    if not data.rstrip(b"\x00").endswith(b"\xff\xd9"):
        raise _bad(path, "truncated JPEG (no end-of-image marker)", "Copy or export the file again.")
    return decode_jpeg(data, source=str(path)), pixel_um, note


# -------------------------------------------------------------------------------------------- decoders
def decode_dng(data: bytes, *, source: str = "<bytes>") -> tuple[np.ndarray, dict[str, Any]]:
    """Decode DNG bytes to 8-bit sRGB with the camera's white balance and no auto-brightening.

    Returns the image and the raw settings rawpy reports (CFA pattern, black/white levels, white balance).
    The declared sizes of every image in the file are checked against :data:`MAX_PIXELS` first.
    """
    import rawpy  # rawpy (LibRaw) loads only to decode a DNG

    _check_tiff_sizes(source, data)
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
    except (rawpy.LibRawError, ValueError, OSError, IndexError, KeyError) as exc:
        raise InputFileError(
            f"{source}: not a decodable DNG ({type(exc).__name__}: {' '.join(str(exc).split())[:120]}).",
            hint="Pull or copy the file again.",
        ) from None
    return np.ascontiguousarray(rgb, dtype=np.uint8), settings


def _check_tiff_sizes(source: str, data: bytes) -> None:
    """Refuse a TIFF/DNG any of whose images (main IFDs and SubIFDs) declares more than MAX_PIXELS."""
    import tifffile  # tifffile loads only for TIFF files (keeps `scopectl --help` fast)

    with _tiff_errors(source, data), tifffile.TiffFile(io.BytesIO(data)) as tif:
        pages = list(tif.pages)
        for page in pages:
            for sub in getattr(page, "pages", None) or []:
                pages.append(sub)
            if len(pages) > 64:
                break
        for page in pages:
            shape: tuple[int, ...] = tuple(getattr(page, "shape", ()))
            if len(shape) >= 2:
                _check_dims(source, int(shape[0]) or 1, int(shape[1]) or 1)


class _LogRecords(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@contextmanager
def _tiff_errors(source: str, data: bytes) -> Iterator[None]:
    """tifffile's exceptions, and the warnings it logs about damaged files, become InputFileError."""
    log = logging.getLogger("tifffile")
    records = _LogRecords()
    propagate = log.propagate
    log.addHandler(records)
    log.propagate = False  # its warnings are turned into the error below, not printed
    try:
        yield
    except InputFileError:
        raise
    except Exception as exc:  # tifffile raises many types for corrupt files
        detail = " ".join(str(exc).split())[:120]
        reason = f"{type(exc).__name__}: {detail}" if len(detail) > 3 else "its structure cannot be read"
        raise _bad(
            source,
            f"truncated or corrupt TIFF ({len(data):,} bytes; {reason})",
            "Copy or export the file again.",
        ) from None
    finally:
        log.removeHandler(records)
        log.propagate = propagate
    if records.messages:
        raise _bad(
            source,
            f"damaged TIFF ({' '.join(records.messages[0].split())[:120]})",
            "Copy or export the file again.",
        )


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


def _read_tiff(path: Path, data: bytes) -> tuple[np.ndarray, float | None, str | None, bool]:
    """Return pixels, the stated pixel size (µm), a resolution note and whether the TIFF is a DNG."""
    import tifffile  # tifffile loads only for TIFF files (keeps `scopectl --help` fast)

    with _tiff_errors(str(path), data), tifffile.TiffFile(io.BytesIO(data)) as tif:
        page = tif.pages.first
        if "DNGVersion" in page.tags:
            return np.empty((0, 0, 3), np.uint8), None, None, True
        shape = page.shape
        rows, cols = (int(shape[0]), int(shape[1])) if len(shape) >= 2 else (0, 0)
        if len(shape) == 3 and shape[0] in (3, 4) and shape[2] not in (3, 4):  # planar RGB
            rows, cols = int(shape[1]), int(shape[2])
        _check_dims(path, rows, cols)
        stated = _tiff_pixel_size_um(tif)
        arr = page.asarray()
    if arr.ndim == 3 and arr.shape[0] in (3, 4) and arr.shape[2] not in (3, 4):  # planar RGB
        arr = np.moveaxis(arr, 0, -1)
    if stated is None or plausible_pixel_size_um(stated):
        return arr, stated, None, False
    note = f"states {stated:.4g} µm per pixel, not a plausible pixel size at the sample"
    return arr, None, note, False


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
    """Read an RGB image file (DNG, JPEG, PNG or TIFF) under the decoder policy of this module.

    Parameters
    ----------
    path
        The file.
    max_file_bytes
        Files larger than this are refused (at most this many bytes are read).

    Returns
    -------
    ImageFile
        8-bit RGB pixels (rows × columns × 3), the file's bytes, its format and the pixel size its
        metadata states, when plausible for a microscope.

    Raises
    ------
    InputFileError
        If the file is missing, not a regular file, empty, not an image, truncated or corrupt (decoder
        warnings included), grayscale, not 8-bit, zero-sized or absurdly large.
    FilesystemError
        If the operating system refuses to read it.
    """
    path = Path(path)
    data = read_untrusted(path, max_bytes=max_file_bytes)
    fmt = sniff_format(data[:16])
    if fmt is None:
        raise _bad(
            path, "not an image (expected DNG, JPEG, PNG or TIFF)", "Check that you named the right file."
        )
    settings: dict[str, Any] = {}
    if fmt in ("png", "jpeg"):
        arr, pixel_um, note = _read_pillow(path, data, fmt)
    else:
        arr, pixel_um, note, is_dng = _read_tiff(path, data)
        if is_dng:
            fmt = "dng"
            arr, settings = decode_dng(data, source=str(path))
            pixel_um, note = None, None
    rgb = _to_rgb8(path, arr)
    _check_dims(path, rgb.shape[0], rgb.shape[1])
    return ImageFile(
        path=path,
        format=fmt,
        rgb=rgb,
        raw=data,
        pixel_size_um=pixel_um,
        settings=settings,
        resolution_note=note,
    )
