"""Writing downloads: OME-TIFF, TIFF or PNG with the pixel size in µm.

:func:`write_image` has the signature of ``scopectl.writers.write_image`` (issue 19), which will replace it;
until then it is the service's one way to write an image file.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Literal

import numpy as np

from scopectl.errors import InputFileError

__all__ = ["ImageFormat", "write_image"]

ImageFormat = Literal["ome-tiff", "tiff", "png"]


def write_image(
    path: Path | str,
    rgb: np.ndarray,
    *,
    fmt: ImageFormat = "ome-tiff",
    pixel_size_um: float,
    channel_names: Sequence[str] = ("R", "G", "B"),
    annotations: Mapping[str, str] | None = None,
) -> Path:
    """Write an RGB uint8 image (rows × columns × 3) with its pixel size, atomically; return the path.

    Parameters
    ----------
    path
        Destination (must not exist).  Written to a temporary name beside it, then renamed.
    fmt
        ``ome-tiff`` (OME-XML with ``PhysicalSizeX/Y`` in µm, interleaved RGB, plus resolution tags in
        pixels per centimetre), ``tiff`` (ImageJ metadata ``unit=um`` and resolution tags, read by ImageJ,
        Fiji and QuPath) or ``png`` (``pHYs`` in pixels per metre).
    pixel_size_um
        Size of one pixel at the sample, in µm.
    channel_names
        Names of the three samples (OME: one interleaved channel named ``R/G/B``).
    annotations
        Key–value text stored with the image (OME ``Description`` as JSON; ImageJ ``Info``; PNG text).

    Raises
    ------
    InputFileError
        If the image is not RGB uint8, the pixel size is not positive, or ``path`` exists.
    """
    import tifffile

    path = Path(path)
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise InputFileError(f"{path}: expected an RGB uint8 image, got {rgb.dtype} {rgb.shape}.")
    if not (pixel_size_um > 0 and np.isfinite(pixel_size_um)):
        raise InputFileError(f"{path}: pixel size {pixel_size_um} µm is not positive.")
    if path.exists():
        raise InputFileError(f"{path}: exists; refusing to overwrite it.")
    notes = dict(annotations or {})
    tmp = path.with_name(f".{path.name}.partial-{os.getpid()}")
    try:
        if fmt == "ome-tiff":
            per_cm = 1e4 / pixel_size_um
            tifffile.imwrite(
                tmp,
                rgb,
                photometric="rgb",
                ome=True,
                resolution=(per_cm, per_cm),
                resolutionunit="CENTIMETER",
                metadata={
                    "axes": "YXS",
                    "Name": notes.get("name", path.stem),
                    "Description": json.dumps(notes, sort_keys=True),
                    "PhysicalSizeX": pixel_size_um,
                    "PhysicalSizeXUnit": "µm",
                    "PhysicalSizeY": pixel_size_um,
                    "PhysicalSizeYUnit": "µm",
                    "Channel": {"Name": ["/".join(channel_names)]},
                },
            )
        elif fmt == "tiff":
            per_um = 1.0 / pixel_size_um
            meta: dict[str, object] = {"unit": "um", "axes": "YXS"}
            if notes:
                meta["Info"] = json.dumps(notes, sort_keys=True)
            tifffile.imwrite(
                tmp, rgb, imagej=True, photometric="rgb", resolution=(per_um, per_um), metadata=meta
            )
        elif fmt == "png":
            from PIL import Image, PngImagePlugin

            info = PngImagePlugin.PngInfo()
            for key, value in notes.items():
                info.add_text(key, value)
            dpi = 25400.0 / pixel_size_um
            Image.fromarray(rgb, mode="RGB").save(tmp, format="PNG", dpi=(dpi, dpi), pnginfo=info)
        else:
            raise InputFileError(f"{path}: unknown image format {fmt!r} (ome-tiff, tiff or png).")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
