"""Turning a received file into a stored capture and a queued job.

Checks, in order, before anything is kept:

1. the type, **by content** (:func:`scopectl.imageio.sniff_format`): DNG, JPEG, PNG or TIFF; a part whose
   declared ``Content-Type`` names another image type is refused (415);
2. the pixel count from the header, before decoding (Pillow reads only the header; TIFF and DNG through
   tifffile's page and sub-IFD shapes): a decompression bomb is refused (413) without being decoded;
3. the same decoder policy as ``scopectl import`` (:func:`scopectl.imageio.read_image`): truncated, corrupt,
   grayscale or non-8-bit files are refused (422) with the decoder's one-line reason.

Then the bytes are kept immutably under their SHA-256, the input's deep-zoom tiles are written, and the
capture and its job are inserted in one transaction.  The same bytes uploaded again to the same case give the
existing capture (so a client may retry an upload whose answer it lost).

Pixel size, first found of: the ``pixel_size_um`` form field; the case's; the file's metadata when it is a
plausible microscope sampling (0.05–20 µm; a JPEG's 72 dpi is not); otherwise unknown (the worker then uses
the model's input pixel size and the viewer says it was assumed).
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import and_, select
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from scopectl.errors import InputFileError
from scopectl.imageio import ImageFile, read_image, sniff_format
from scopectl.serve import queue
from scopectl.serve.db import Database, captures
from scopectl.serve.multipart import FilePart, UploadRejected
from scopectl.serve.security import new_id
from scopectl.serve.storage import ServeFiles
from scopectl.serve.tiles import write_tile_pack

__all__ = ["PIXEL_SIZE_RANGE_UM", "Stored", "parse_pixel_size", "store_capture", "validate_upload"]

#: Pixel sizes (µm at the sample) accepted from a form or a file; outside it a value is not a microscope's.
PIXEL_SIZE_RANGE_UM = (0.05, 20.0)

_DECLARED = {
    "jpeg": {"image/jpeg", "image/jpg", "image/pjpeg"},
    "png": {"image/png"},
    "tiff": {"image/tiff", "image/tif"},
    "dng": {"image/x-adobe-dng", "image/dng", "image/tiff", "image/x-dng"},
}
_GENERIC = {"", "application/octet-stream", "binary/octet-stream"}


@dataclass(frozen=True)
class Validated:
    """An upload that passed every check, decoded."""

    part: FilePart
    format: str
    rows: int
    cols: int
    pixel_size_um: float | None
    pixel_size_source: str
    rgb_shape: tuple[int, int]


@dataclass(frozen=True)
class Stored:
    """A capture as stored: its id, job, and whether it was already there (same bytes, same case)."""

    capture_id: str
    job_id: int | None
    duplicate: bool
    display_name: str
    sha256: str


def parse_pixel_size(text: str | None, *, what: str) -> float | None:
    """A pixel size from a form field (None when empty).

    Raises
    ------
    UploadRejected
        422 when it is not a number in :data:`PIXEL_SIZE_RANGE_UM`.
    """
    if text is None or not text.strip():
        return None
    try:
        value = float(text)
    except ValueError:
        raise UploadRejected(422, f"{what} {text[:40]!r} is not a number (µm per pixel).") from None
    lo, hi = PIXEL_SIZE_RANGE_UM
    if not (math.isfinite(value) and lo <= value <= hi):
        raise UploadRejected(
            422, f"{what} {value:g} µm is outside the plausible range {lo:g}–{hi:g} µm per pixel."
        )
    return value


def _header_pixels(path: Path, fmt: str, name: str) -> tuple[int, int]:
    """Rows and columns from the header, without decoding the pixels (the largest image of a TIFF/DNG)."""
    if fmt in ("tiff", "dng"):
        import tifffile  # tifffile loads only for TIFF files (keeps `scopectl --help` fast)

        try:
            with tifffile.TiffFile(path) as tif:
                best = (0, 0)
                for page in tif.pages:
                    for cand in [page, *(getattr(page, "pages", None) or ())]:
                        rows, cols = int(cand.imagelength), int(cand.imagewidth)
                        if rows * cols > best[0] * best[1]:
                            best = (rows, cols)
                return best
        except Exception as exc:  # tifffile raises many types for corrupt headers
            raise UploadRejected(422, f"{name}: corrupt TIFF header ({type(exc).__name__}).") from None
    from PIL import Image  # Pillow loads only for PNG/JPEG files (keeps `scopectl --help` fast)

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as img:  # reads the header only
                cols, rows = img.size
    except Image.DecompressionBombError:
        return (1 << 30, 1 << 30)
    except Exception as exc:  # Pillow raises many types for corrupt headers
        raise UploadRejected(422, f"{name}: corrupt {fmt.upper()} header ({type(exc).__name__}).") from None
    return int(rows), int(cols)


def validate_upload(
    part: FilePart,
    *,
    max_pixels: int,
    form_pixel_size_um: float | None,
    case_pixel_size_um: float | None,
) -> tuple[Validated, ImageFile]:
    """Check one received file; return what was found and the decoded image (an ``ImageFile``).

    Raises
    ------
    UploadRejected
        415 (not an image, or a declared type that contradicts the content), 413 (too many pixels),
        422 (refused by the decoder policy).
    """

    name = part.display_name
    with open(part.path, "rb") as fh:
        head = fh.read(16)
    fmt = sniff_format(head)
    if fmt is None:
        raise UploadRejected(415, f"{name}: not an image by its content (expected DNG, JPEG, PNG or TIFF).")
    rows, cols = _header_pixels(part.path, fmt, name)
    if fmt == "tiff":
        import tifffile  # tifffile loads only for TIFF files (keeps `scopectl --help` fast)

        with tifffile.TiffFile(part.path) as tif:
            if "DNGVersion" in tif.pages.first.tags:
                fmt = "dng"
    declared = part.declared_type.split(";")[0].strip()
    if declared not in _GENERIC and declared not in _DECLARED[fmt]:
        raise UploadRejected(
            415,
            f"{name}: sent as {declared[:60]} but its content is {fmt.upper()}; send it with its real type.",
        )
    if rows * cols > max_pixels:
        raise UploadRejected(
            413,
            f"{name}: {cols}×{rows} pixels is more than the limit of {max_pixels:,} pixels.",
        )
    try:
        image = read_image(part.path, max_file_bytes=part.size + 1)
    except InputFileError as exc:
        reason = exc.one_line().replace(str(part.path), name)
        raise UploadRejected(422, reason) from None
    if image.rgb.shape[0] * image.rgb.shape[1] > max_pixels:  # a decoder that disagreed with the header
        raise UploadRejected(413, f"{name}: more than the limit of {max_pixels:,} pixels.")
    lo, hi = PIXEL_SIZE_RANGE_UM
    file_px = (
        image.pixel_size_um if image.pixel_size_um is not None and lo <= image.pixel_size_um <= hi else None
    )
    if form_pixel_size_um is not None:
        px, source = form_pixel_size_um, "form"
    elif case_pixel_size_um is not None:
        px, source = case_pixel_size_um, "case"
    elif file_px is not None:
        px, source = file_px, "file"
    else:
        px, source = None, "unknown"
    validated = Validated(
        part=part,
        format=image.format,
        rows=int(image.rgb.shape[0]),
        cols=int(image.rgb.shape[1]),
        pixel_size_um=px,
        pixel_size_source=source,
        rgb_shape=(int(image.rgb.shape[0]), int(image.rgb.shape[1])),
    )
    return validated, image


def store_capture(
    db: Database, files: ServeFiles, validated: Validated, image: ImageFile, *, case_id: str, user_id: int
) -> Stored:
    """Keep the bytes, write the input's tiles, insert the capture and queue its job (one transaction)."""
    part = validated.part
    with db.connect() as conn:
        existing = _existing(conn, case_id, part.sha256)
    if existing is not None:
        part.path.unlink(missing_ok=True)
        return Stored(existing, None, True, part.display_name, part.sha256)
    files.keep(part.path, sha256=part.sha256)
    capture_id = new_id()
    folder = files.capture_dir(capture_id)
    folder.mkdir(parents=True, exist_ok=False, mode=0o700)
    write_tile_pack(files.input_tiles(capture_id), image.rgb)
    try:
        with db.begin() as conn:
            conn.execute(
                captures.insert().values(
                    id=capture_id,
                    case_id=case_id,
                    sha256=part.sha256,
                    bytes=part.size,
                    format=validated.format,
                    rows=validated.rows,
                    cols=validated.cols,
                    pixel_size_um=validated.pixel_size_um,
                    pixel_size_source=validated.pixel_size_source,
                    display_name=part.display_name,
                    uploaded_by=user_id,
                    uploaded_at=time.time(),
                )
            )
            job_id = queue.enqueue(conn, capture_id)
    except IntegrityError:  # the same bytes arrived twice at once: the other request stored them
        files.input_tiles(capture_id).unlink(missing_ok=True)
        folder.rmdir()
        with db.connect() as conn:
            existing = _existing(conn, case_id, part.sha256)
        if existing is None:
            raise
        return Stored(existing, None, True, part.display_name, part.sha256)
    return Stored(capture_id, job_id, False, part.display_name, part.sha256)


def _existing(conn: Connection, case_id: str, sha256: str) -> str | None:
    row = conn.execute(
        select(captures.c.id).where(and_(captures.c.case_id == case_id, captures.c.sha256 == sha256))
    ).first()
    return None if row is None else str(row.id)
