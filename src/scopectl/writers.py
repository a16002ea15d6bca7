"""Writing one 2-D RGB image: tiled pyramidal OME-TIFF, plain tiled TIFF (OpenSlide), or PNG.

Every format is written to a temporary file beside the destination and renamed only when complete, so a
crash, a full disk or an exception leaves either the previous file or nothing, never half an image.

Formats
-------
``ome-tiff``
    Tiled (256 × 256) RGB, deflate-compressed with the horizontal predictor, with sub-resolution levels
    (each half the size of the one above, area-averaged, down to ≤ 256 px) stored as SubIFDs of the
    full-resolution page, as OME-TIFF 6 and Bio-Formats expect.  The OME-XML in the first page's
    ImageDescription holds ``PhysicalSizeX/Y`` in µm, the channel names, and the annotations as one
    ``MapAnnotation`` (key–value pairs) linked to the image.  QuPath, Fiji (Bio-Formats), napari
    (napari-ome-zarr/tifffile readers) and OMERO read it.
``tiff``
    The same tiles and levels, but every level is its own top-level page (no OME-XML, no SubIFDs): the
    layout of OpenSlide's "generic tiled TIFF", which cannot read OME-TIFF.  The resolution tags hold the
    pixel size in centimetres (``ResolutionUnit`` = 3), which OpenSlide reports as ``openslide.mpp-x``;
    the annotations are a JSON object in the ImageDescription.
``png``
    8-bit RGB; the pixel size goes into the ``pHYs`` chunk (pixels per metre) and the annotations into
    ``tEXt`` chunks.

References
----------
OME-TIFF specification, https://ome-model.readthedocs.io/en/stable/ome-tiff/specification.html (SubIFD
pyramids since OME-TIFF 6 / Bio-Formats 6.0); OpenSlide, "Generic tiled TIFF format".
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, get_args
from xml.etree import ElementTree as ET

import numpy as np

from scopectl import __version__
from scopectl.errors import ConfigError, InputFileError, OutputError

__all__ = [
    "FORMATS",
    "SUFFIXES",
    "ImageFormat",
    "OmeImage",
    "ome_xml",
    "pyramid_levels",
    "read_annotations",
    "write_image",
]

ImageFormat = Literal["ome-tiff", "tiff", "png"]
#: The formats :func:`write_image` writes.
FORMATS: tuple[str, ...] = get_args(ImageFormat)
#: The file-name ending each format gets (``<stem><suffix>``).
SUFFIXES: dict[str, str] = {"ome-tiff": ".ome.tif", "tiff": ".tif", "png": ".png"}
#: Tile side of the TIFF formats, in pixels.
TILE = 256
#: Smallest level side: levels are added while the longer side of the last one exceeds this.
MIN_LEVEL = 256
OME_NS = "http://www.openmicroscopy.org/Schemas/OME/2016-06"
_XSI = "http://www.w3.org/2001/XMLSchema-instance"
_MAX_PIXELS = 2**31


def pyramid_levels(rgb: np.ndarray, *, min_size: int = MIN_LEVEL) -> list[np.ndarray]:
    """``rgb`` and its successive halvings (area average), until the longer side is ≤ ``min_size``.

    A level ``k`` pixel covers the ``2^k × 2^k`` block of full-resolution pixels starting at
    ``(2^k·r, 2^k·c)``; odd sizes round up (the last row or column averages what there is).
    """
    import cv2  # OpenCV (heavy) loads only when this runs

    levels = [rgb]
    while max(levels[-1].shape[:2]) > min_size:
        prev = levels[-1]
        rows, cols = -(-prev.shape[0] // 2), -(-prev.shape[1] // 2)
        levels.append(np.ascontiguousarray(cv2.resize(prev, (cols, rows), interpolation=cv2.INTER_AREA)))
    return levels


class OmeImage:
    """What :func:`ome_xml` says about one image (a plain record, no validation beyond types)."""

    def __init__(
        self,
        *,
        name: str,
        rows: int,
        cols: int,
        pixel_size_um: float | None,
        channel_names: Sequence[str] = ("R", "G", "B"),
        annotations: Mapping[str, str] | None = None,
        interleaved: bool = True,
        tiff_ifd: int | None = 0,
    ) -> None:
        self.name = name
        self.rows = rows
        self.cols = cols
        self.pixel_size_um = pixel_size_um
        self.channel_names = tuple(channel_names)
        self.annotations = dict(annotations or {})
        self.interleaved = interleaved
        self.tiff_ifd = tiff_ifd


def _pixels(image: ET.Element, i: int, img: OmeImage, *, tiff_uuid: str | None, file_name: str) -> None:
    """The ``Pixels`` element of image ``i``: size, type, physical size, channels, and where the plane is."""
    q = f"{{{OME_NS}}}"
    pixels_attrs = {
        "ID": f"Pixels:{i}",
        "DimensionOrder": "XYCZT",
        "Type": "uint8",
        "SignificantBits": "8",
        "Interleaved": "true" if img.interleaved else "false",
        "BigEndian": "false",
        "SizeX": str(img.cols),
        "SizeY": str(img.rows),
        "SizeC": "3",
        "SizeZ": "1",
        "SizeT": "1",
    }
    if img.pixel_size_um is not None:
        pixels_attrs.update(
            {
                "PhysicalSizeX": repr(float(img.pixel_size_um)),
                "PhysicalSizeXUnit": "µm",
                "PhysicalSizeY": repr(float(img.pixel_size_um)),
                "PhysicalSizeYUnit": "µm",
            }
        )
    pixels = ET.SubElement(image, f"{q}Pixels", pixels_attrs)
    if img.interleaved:
        ET.SubElement(
            pixels,
            f"{q}Channel",
            {"ID": f"Channel:{i}:0", "Name": "/".join(img.channel_names), "SamplesPerPixel": "3"},
        )
    else:
        colours = (-16776961, 16711935, 65535)  # RGBA as signed 32-bit: red, green, blue
        for c, cname in enumerate(img.channel_names):
            ET.SubElement(
                pixels,
                f"{q}Channel",
                {
                    "ID": f"Channel:{i}:{c}",
                    "Name": cname,
                    "SamplesPerPixel": "1",
                    "Color": str(colours[c % 3]),
                },
            )
    if img.tiff_ifd is not None:
        tiff = ET.SubElement(pixels, f"{q}TiffData", {"IFD": str(img.tiff_ifd), "PlaneCount": "1"})
        if tiff_uuid is not None:
            ET.SubElement(tiff, f"{q}UUID", {"FileName": file_name}).text = tiff_uuid
    else:
        ET.SubElement(pixels, f"{q}MetadataOnly")


def ome_xml(images: Sequence[OmeImage], *, tiff_uuid: str | None = None, file_name: str = "") -> str:
    """OME-XML (schema 2016-06) describing RGB ``uint8`` images, with their annotations.

    Each image becomes ``Image:i`` with one ``Pixels`` element (``XYCZT``, ``SizeC=3`` as one 3-sample
    ``Channel`` per colour for interleaved TIFF pages, or three 1-sample channels otherwise), and its
    annotations one ``MapAnnotation`` ``Annotation:i``.  ``tiff_ifd`` adds ``TiffData`` pointing at that
    page of ``file_name`` (with ``UUID`` ``tiff_uuid``); ``None`` writes ``MetadataOnly`` (OME-Zarr).
    """
    ET.register_namespace("", OME_NS)
    q = f"{{{OME_NS}}}"
    root = ET.Element(
        f"{q}OME",
        {
            "Creator": f"scopectl {__version__}",
            f"{{{_XSI}}}schemaLocation": f"{OME_NS} {OME_NS}/ome.xsd",
        },
    )
    if tiff_uuid is not None:
        root.set("UUID", tiff_uuid)
    for i, img in enumerate(images):
        image = ET.SubElement(root, f"{q}Image", {"ID": f"Image:{i}", "Name": img.name})
        _pixels(image, i, img, tiff_uuid=tiff_uuid, file_name=file_name)
        if img.annotations:
            ET.SubElement(image, f"{q}AnnotationRef", {"ID": f"Annotation:{i}"})
    annotated = [(i, img) for i, img in enumerate(images) if img.annotations]
    if annotated:
        sa = ET.SubElement(root, f"{q}StructuredAnnotations")
        for i, img in annotated:
            ma = ET.SubElement(
                sa, f"{q}MapAnnotation", {"ID": f"Annotation:{i}", "Namespace": "scopectl.org/provenance"}
            )
            values = ET.SubElement(ma, f"{q}Value")
            for key, value in img.annotations.items():
                ET.SubElement(values, f"{q}M", {"K": key}).text = value
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode")


def _check_args(
    path: Path,
    rgb: np.ndarray,
    fmt: str,
    pixel_size_um: float | None,
    channel_names: Sequence[str],
    annotations: Mapping[str, str] | None,
) -> None:
    if fmt not in FORMATS:
        raise ConfigError(f"{path}: unknown image format {fmt!r}.", hint=f"Use one of {', '.join(FORMATS)}.")
    arr = np.asarray(rgb)
    if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3 or 0 in arr.shape:
        raise ConfigError(
            f"{path}: expected an RGB uint8 image (rows × columns × 3), got {arr.dtype} {arr.shape}."
        )
    if arr.shape[0] * arr.shape[1] >= _MAX_PIXELS:
        raise ConfigError(f"{path}: image of {arr.shape[0]} × {arr.shape[1]} pixels is too large to write.")
    if pixel_size_um is not None and not (np.isfinite(pixel_size_um) and 0 < pixel_size_um < 1e4):
        raise ConfigError(f"{path}: pixel size {pixel_size_um} µm is not a positive finite number.")
    if len(channel_names) != 3 or not all(isinstance(n, str) and n for n in channel_names):
        raise ConfigError(f"{path}: need three non-empty channel names, got {list(channel_names)}.")
    for key, value in (annotations or {}).items():
        if not isinstance(key, str) or not isinstance(value, str) or not key:
            raise ConfigError(f"{path}: annotations must map non-empty strings to strings ({key!r}).")
        if any(ord(ch) < 32 and ch not in "\t\n\r" for ch in key + value):
            raise ConfigError(f"{path}: annotation {key!r} contains control characters.")


def write_image(
    path: Path,
    rgb: np.ndarray,
    *,
    fmt: Literal["ome-tiff", "tiff", "png"],
    pixel_size_um: float | None,
    channel_names: Sequence[str] = ("R", "G", "B"),
    annotations: Mapping[str, str] | None = None,
    overwrite: bool = True,
    compression_level: int = 1,
    workers: int | None = None,
) -> Path:
    """Write one RGB uint8 image (rows × columns × 3) atomically; returns ``path``.

    Parameters
    ----------
    path
        Destination (its folder must exist).  The format is ``fmt``, whatever the name says.
    rgb
        The pixels.
    fmt
        ``ome-tiff`` (tiled, pyramidal, OME-XML), ``tiff`` (tiled, pyramidal, one page per level, for
        OpenSlide) or ``png``.
    pixel_size_um
        Size of one pixel at the sample, in µm; ``None`` writes no physical size.
    channel_names
        Names of the three channels (OME-XML ``Channel`` names).
    annotations
        Key–value provenance (model, source capture...): an OME ``MapAnnotation``, a JSON
        ImageDescription (``tiff``) or PNG ``tEXt`` chunks.
    overwrite
        Replace an existing file (default); with ``False`` an existing ``path`` is an error.
    compression_level
        zlib level of the TIFF tiles and PNG (1 is fast and within ~5 % of the best size on stained tissue).
    workers
        Threads compressing TIFF tiles (default: tifffile's choice, up to the CPU count).

    Raises
    ------
    ConfigError
        If an argument is invalid (checked before anything is written).
    OutputError
        If the file cannot be written (no room, no permission, missing folder); nothing is left behind.
    """
    path = Path(path)
    _check_args(path, rgb, fmt, pixel_size_um, channel_names, annotations)
    if not path.parent.is_dir():
        raise OutputError(f"{path}: the folder {path.parent} does not exist.", hint="Create it first.")
    if path.exists() and not overwrite:
        raise OutputError(f"{path} exists.", hint="Choose another name or allow overwriting.")
    tmp = path.with_name(f".{path.name}.partial-{os.getpid()}")  # swept by name once the pid is dead
    try:
        if fmt == "png":
            _write_png(tmp, rgb, pixel_size_um, annotations or {}, compression_level)
        else:
            _write_tiff(
                tmp,
                rgb,
                ome=fmt == "ome-tiff",
                final_name=path.name,
                pixel_size_um=pixel_size_um,
                channel_names=channel_names,
                annotations=annotations or {},
                level=compression_level,
                workers=workers,
            )
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise OutputError(
            f"{path}: cannot write the image ({exc.strerror or exc}).",
            hint="Check the free space and permissions of the output folder.",
        ) from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def _write_tiff(
    tmp: Path,
    rgb: np.ndarray,
    *,
    ome: bool,
    final_name: str,
    pixel_size_um: float | None,
    channel_names: Sequence[str],
    annotations: Mapping[str, str],
    level: int,
    workers: int | None,
) -> None:
    import tifffile  # tifffile loads only for TIFF files (keeps `scopectl --help` fast)

    levels = pyramid_levels(np.ascontiguousarray(rgb))
    common: dict[str, Any] = {
        "photometric": "rgb",
        "planarconfig": "contig",
        "compression": "zlib",
        "compressionargs": {"level": level},
        "predictor": True,
        "maxworkers": workers,
        "metadata": None,
    }
    software = f"scopectl {__version__}"

    def resolution(k: int) -> dict[str, Any]:
        if pixel_size_um is None:
            return {}
        per_cm = 1e4 / (pixel_size_um * 2**k)
        return {"resolution": (per_cm, per_cm), "resolutionunit": "CENTIMETER"}

    with tifffile.TiffWriter(tmp, bigtiff=rgb.nbytes > 2**31, ome=False) as tif:
        if ome:
            description = ome_xml(
                [
                    OmeImage(
                        name=Path(final_name).name.removesuffix(".ome.tif"),
                        rows=rgb.shape[0],
                        cols=rgb.shape[1],
                        pixel_size_um=pixel_size_um,
                        channel_names=channel_names,
                        annotations=annotations,
                    )
                ],
                tiff_uuid=f"urn:uuid:{uuid.uuid4()}",
                file_name=final_name,
            )
            tif.write(
                levels[0],
                tile=(TILE, TILE),
                subifds=len(levels) - 1,
                description=description.encode("utf-8"),
                software=software,
                **resolution(0),
                **common,
            )
            for k, lvl in enumerate(levels[1:], start=1):
                tif.write(lvl, tile=(TILE, TILE), subfiletype=1, **resolution(k), **common)
        else:
            description = json.dumps(
                {"format": "scopectl-image", "schema_version": 1, "pixel_size_um": pixel_size_um}
                | {"channels": list(channel_names), "annotations": dict(annotations)},
                ensure_ascii=True,
            )
            for k, lvl in enumerate(levels):
                tif.write(
                    lvl,
                    tile=(TILE, TILE),
                    subfiletype=1 if k else 0,
                    description=description if k == 0 else None,
                    software=software if k == 0 else None,
                    **resolution(k),
                    **common,
                )


def _write_png(
    tmp: Path, rgb: np.ndarray, pixel_size_um: float | None, annotations: Mapping[str, str], level: int
) -> None:
    # Pillow loads only for PNG/JPEG files (keeps `scopectl --help` fast)
    from PIL import Image, PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("Software", f"scopectl {__version__}")
    for key, value in annotations.items():
        info.add_itxt(key[:79], value)
    kwargs: dict[str, Any] = {"pnginfo": info, "compress_level": level}
    if pixel_size_um is not None:
        kwargs["dpi"] = (25400.0 / pixel_size_um, 25400.0 / pixel_size_um)
    with open(tmp, "wb") as fh:
        Image.fromarray(np.ascontiguousarray(rgb), mode="RGB").save(fh, format="PNG", **kwargs)
        fh.flush()


def read_annotations(path: Path) -> dict[str, str]:
    """The annotations :func:`write_image` stored in an OME-TIFF (its MapAnnotation), as a dict.

    Raises
    ------
    InputFileError
        If the file is not an OME-TIFF or its OME-XML does not parse.
    """
    import tifffile  # tifffile loads only for TIFF files (keeps `scopectl --help` fast)

    try:
        with tifffile.TiffFile(path) as tif:
            xml = tif.ome_metadata
    except (OSError, tifffile.TiffFileError) as exc:
        raise InputFileError(f"{path}: not a readable TIFF ({exc}).") from None
    if not xml:
        raise InputFileError(f"{path}: not an OME-TIFF (no OME-XML).")
    try:
        root = ET.fromstring(xml)
    except ET.ParseError as exc:
        raise InputFileError(f"{path}: its OME-XML does not parse ({exc}).") from None
    q = f"{{{OME_NS}}}"
    out: dict[str, str] = {}
    for m in root.iter(f"{q}M"):
        key = m.get("K")
        if key:
            out[key] = m.text or ""
    return out
