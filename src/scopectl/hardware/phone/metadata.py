"""Capture settings (ISO, exposure, white balance ...) read from a pulled DNG and JPEG.

The DNG's tags are read with tifffile (IFD 0 and its EXIF sub-IFD); the JPEG's EXIF with Pillow.  The
files come from the phone and are untrusted: values are type-checked and range-checked, anything odd is
left out rather than guessed.  DNG values win over JPEG values for the same key.
"""

from __future__ import annotations

import math
import struct
from fractions import Fraction
from pathlib import Path
from typing import Any

from scopectl.errors import InputFileError

__all__ = ["read_capture_settings"]

# EXIF LightSource (tag 37384) codes
_LIGHT_SOURCES = {
    0: "unknown",
    1: "daylight",
    2: "fluorescent",
    3: "tungsten",
    4: "flash",
    9: "fine weather",
    10: "cloudy",
    11: "shade",
    17: "standard light A",
    20: "D55",
    21: "D65",
    23: "D50",
    255: "other",
}
_TAGS = {
    33434: "exposure_s",
    33437: "f_number",
    34855: "iso",
    37386: "focal_length_mm",
    41987: "white_balance",
    37384: "light_source",
    36867: "datetime_original",
    271: "make",
    272: "model",
    305: "software",
    50728: "as_shot_neutral",
    50708: "unique_camera_model",
    50717: "white_level",
}


def _number(value: Any) -> float | None:
    if isinstance(value, tuple | list) and len(value) == 2 and all(isinstance(v, int) for v in value):
        num, den = value
        return None if den == 0 else float(Fraction(num, den))
    if isinstance(value, tuple | list) and len(value) == 1:
        return _number(value[0])
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None


def _clean(key: str, value: Any) -> Any:
    """Type- and range-check one value; None when implausible."""
    if key in ("make", "model", "software", "unique_camera_model", "datetime_original"):
        if isinstance(value, bytes):
            value = value.decode("utf-8", "replace")
        if not isinstance(value, str):
            return None
        text = "".join(ch for ch in value.strip("\0 ") if ch.isprintable())
        return text[:120] or None
    if key == "as_shot_neutral":
        seq = list(value) if isinstance(value, tuple | list) else []
        if len(seq) == 6 and all(isinstance(v, int) for v in seq):  # rationals flattened by tifffile
            seq = [(seq[i], seq[i + 1]) for i in range(0, 6, 2)]
        nums = [_number(v) for v in seq]
        if len(nums) != 3 or any(n is None or not 0 < n <= 16 for n in nums):
            return None
        return [round(float(n), 6) for n in nums if n is not None]
    number = _number(value)
    if number is None:
        return None
    if key == "white_balance":
        return {0: "auto", 1: "manual"}.get(int(number))
    if key == "light_source":
        return _LIGHT_SOURCES.get(int(number), f"code {int(number)}")
    ranges = {
        "exposure_s": (1e-7, 3600.0),
        "f_number": (0.5, 64.0),
        "iso": (1.0, 1e7),
        "focal_length_mm": (0.1, 2000.0),
        "white_level": (1.0, 65535.0),
    }
    low, high = ranges[key]
    if not low <= number <= high:
        return None
    return int(number) if key in ("iso", "white_level") else number


def _dng_settings(path: Path) -> dict[str, Any]:
    import tifffile  # tifffile loads only for TIFF files (keeps `scopectl --help` fast)

    raw: dict[int, Any] = {}
    try:
        with tifffile.TiffFile(path) as tif:
            page = tif.pages.first
            for tag in page.tags.values():
                raw[int(tag.code)] = tag.value
            exif = raw.get(34665)
            if isinstance(exif, dict):
                for name, value in exif.items():
                    code = tifffile.TIFF.TAGS.get(str(name), None)
                    if isinstance(code, int):
                        raw.setdefault(code, value)
    except (tifffile.TiffFileError, OSError, ValueError, KeyError, IndexError, struct.error) as exc:
        raise InputFileError(
            f"{path}: the phone's DNG is not a readable TIFF/DNG ({exc}); check the camera app."
        ) from None
    if 50706 not in raw:  # DNGVersion
        raise InputFileError(f"{path}: no DNGVersion tag; the phone wrote something other than a DNG.")
    return {key: raw[code] for code, key in _TAGS.items() if code in raw}


def _jpeg_settings(path: Path) -> dict[str, Any]:
    # Pillow loads only for PNG/JPEG files (keeps `scopectl --help` fast)
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            if img.format != "JPEG":
                raise InputFileError(
                    f"{path}: the phone's JPEG is a {img.format} file; check the camera app."
                )
            exif = img.getexif()
            values: dict[int, Any] = dict(exif.items())
            values.update(exif.get_ifd(0x8769).items())
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise InputFileError(
            f"{path}: the phone's JPEG is unreadable ({exc}); check the camera app."
        ) from None
    return {key: values[code] for code, key in _TAGS.items() if code in values}


def read_capture_settings(*, dng: Path | None, jpeg: Path | None) -> dict[str, Any]:
    """Settings from the EXIF/DNG tags of a capture's files.

    Returns
    -------
    dict
        Keys among ``iso, exposure_s, f_number, focal_length_mm, white_balance ("auto"/"manual"),
        light_source ("cloudy", ...), as_shot_neutral [r, g, b], make, model, software,
        unique_camera_model, datetime_original, white_level``, plus ``settings_source``: which file
        each came from.

    Raises
    ------
    InputFileError
        When a file is not the DNG/JPEG it claims to be.
    """
    merged: dict[str, Any] = {}
    source: dict[str, str] = {}
    for kind, path, reader in (("dng", dng, _dng_settings), ("jpeg", jpeg, _jpeg_settings)):
        if path is None:
            continue
        for key, value in reader(path).items():
            cleaned = _clean(key, value)
            if cleaned is not None and key not in merged:
                merged[key] = cleaned
                source[key] = kind
    merged["settings_source"] = source
    return merged
