"""Write a Bayer raw frame as a DNG that rawpy/LibRaw decodes exactly (via pidng, uncompressed).

Tags set (see ``/work/shared/notes/hardware.md``): PhotometricInterpretation = CFA,
CFARepeatPatternDim + CFAPattern, BlackLevel, WhiteLevel, ColorMatrix1 (XYZ D65 → camera) with
CalibrationIlluminant1 = D65, AsShotNeutral, plus ExposureTime, ISO and the make/model. pidng's
``compress=True`` fails on Python 3.11, so the data are stored as uncompressed 16-bit samples.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
from numpy.typing import NDArray

__all__ = ["CFA_CODES", "write_dng"]

CFA_CODES: dict[str, list[int]] = {
    "RGGB": [0, 1, 1, 2],
    "BGGR": [2, 1, 1, 0],
    "GRBG": [1, 0, 2, 1],
    "GBRG": [1, 2, 0, 1],
}


def _rational(v: float, den: int = 10000) -> list[int]:
    f = Fraction(float(v)).limit_denominator(den)
    return [f.numerator, f.denominator]


def write_dng(
    raw: NDArray[np.uint16],
    *,
    cfa: str,
    black_level: int,
    white_level: int,
    color_matrix: NDArray[np.float64],
    as_shot_neutral: NDArray[np.float64],
    exposure_s: float,
    iso: int,
    make: str = "Nokia",
    model: str = "Lumia 1020 (scopectl twin)",
) -> bytes:
    """Encode a CFA frame as DNG bytes.

    Parameters
    ----------
    raw
        (rows, columns) uint16 samples, each ≤ ``white_level``; rows and columns even.
    cfa
        Pattern of the top-left 2×2 block, e.g. ``"RGGB"``.
    color_matrix
        (3, 3) XYZ (D65) → camera, normalised so that D65 white maps to a maximum of 1.
    as_shot_neutral
        Camera-space neutral (3,) of the white balance used.
    """
    from pidng.core import RAW2DNG  # pidng loads only to write DNGs

    # pidng loads only to write DNGs
    from pidng.defs import CalibrationIlluminant, DNGVersion, Orientation, PhotometricInterpretation
    from pidng.dng import DNGTags, Tag  # pidng loads only to write DNGs

    if raw.dtype != np.uint16 or raw.ndim != 2:
        raise ValueError(f"raw must be a 2-D uint16 array, got {raw.dtype} {raw.shape}")
    if raw.shape[0] % 2 or raw.shape[1] % 2:
        raise ValueError(f"raw dimensions must be even, got {raw.shape}")
    if int(raw.max(initial=0)) > white_level:
        raise ValueError(f"raw values exceed the white level {white_level}")
    if cfa not in CFA_CODES:
        raise ValueError(f"unknown CFA pattern {cfa!r}")
    rows, cols = raw.shape
    t = DNGTags()
    t.set(Tag.ImageWidth, cols)
    t.set(Tag.ImageLength, rows)
    t.set(Tag.TileWidth, cols)
    t.set(Tag.TileLength, rows)
    t.set(Tag.Orientation, Orientation.Horizontal)
    t.set(Tag.PhotometricInterpretation, PhotometricInterpretation.Color_Filter_Array)
    t.set(Tag.SamplesPerPixel, 1)
    t.set(Tag.BitsPerSample, 16)
    t.set(Tag.CFARepeatPatternDim, [2, 2])
    t.set(Tag.CFAPattern, CFA_CODES[cfa])
    t.set(Tag.BlackLevel, int(black_level))
    t.set(Tag.WhiteLevel, int(white_level))
    t.set(Tag.ColorMatrix1, [_rational(v) for v in np.asarray(color_matrix, dtype=np.float64).ravel()])
    t.set(Tag.CalibrationIlluminant1, CalibrationIlluminant.D65)
    t.set(Tag.AsShotNeutral, [_rational(v) for v in np.asarray(as_shot_neutral, dtype=np.float64).ravel()])
    t.set(Tag.ExposureTime, [_rational(exposure_s, 1_000_000)])
    t.set(Tag.PhotographicSensitivity, int(iso))
    t.set(Tag.Make, make)
    t.set(Tag.Model, model)
    t.set(Tag.UniqueCameraModel, f"{make} {model}")
    t.set(Tag.DNGVersion, DNGVersion.V1_4)
    t.set(Tag.DNGBackwardVersion, DNGVersion.V1_2)
    conv = RAW2DNG()
    conv.options(t, path="", compress=False)
    buf = conv.convert(np.ascontiguousarray(raw), filename="")
    return bytes(buf)
