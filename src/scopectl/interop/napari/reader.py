"""napari reader: a slide store (``.h5``) or its OME-Zarr export (``.ome.zarr`` folder or ``.ozx``) as layers.

World coordinates are micrometres on the slide (``y, x``).  The layers are:

* ``mosaic`` — the benchtop mosaic at its stage origin (a multiscale layer for exports);
* ``capture NNNNN`` — each phone capture, placed by its registration into the mosaic (an affine from the
  homography, :func:`scopectl.interop.ome_zarr.capture_affine_um`); a capture without a successful
  registration is shown at its own pixel size, hidden, with ``placed: False`` in its metadata;
* ``enhanced NNNNN`` — (stores only) the enhanced outputs found in :func:`enhanced_dir`: OME-TIFFs written by
  ``scopectl enhance STORE.h5:N`` or the plugin's widget, whose annotation ``source`` names the capture.
  Output pixel ``j`` sits at input coordinate ``(q·j + 0.5)/p − 0.5`` (see :mod:`scopectl.learn.network`),
  which the layer's affine includes.

Every layer's metadata carries ``scopectl`` (kind, slide, capture index) for the widget.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from scopectl.errors import ScopectlError
from scopectl.interop.ome_zarr import capture_affine_um
from scopectl.store import SlideStore
from scopectl.writers import read_annotations

__all__ = ["LayerData", "enhanced_dir", "get_reader", "read_export", "read_store"]

LayerData = tuple[Any, dict[str, Any], str]
_SOURCE_RE = re.compile(r"^(?P<store>.+) capture (?P<index>\d+)$")


def enhanced_dir(store_path: Path) -> Path:
    """Where enhanced outputs of a store's captures are looked for (and the widget writes them)."""
    return store_path.parent / f"{store_path.stem}.enhanced"


def get_reader(path: str | list[str]) -> Callable[[str | list[str]], list[LayerData]] | None:
    """napari's reader hook: a function for a store or an export, ``None`` for anything else."""
    if isinstance(path, list):
        if len(path) != 1:
            return None
        path = path[0]
    p = Path(path)
    name = p.name.lower()
    if name.endswith((".h5", ".hdf5")) and p.is_file():
        return _read_store_hook
    if (name.endswith(".ome.zarr") and (p / "zarr.json").is_file()) or (
        name.endswith(".ozx") and p.is_file()
    ):
        return _read_export_hook
    return None


def _one(path: str | list[str]) -> Path:
    return Path(path[0] if isinstance(path, list) else path)


def _read_store_hook(path: str | list[str]) -> list[LayerData]:
    return read_store(_one(path))


def _read_export_hook(path: str | list[str]) -> list[LayerData]:
    return read_export(_one(path))


def _enhanced_affine(capture_affine: np.ndarray, ratio: tuple[int, int]) -> np.ndarray:
    p, q = ratio
    step, shift = q / p, 0.5 / p - 0.5
    to_input = np.array([[step, 0.0, shift], [0.0, step, shift], [0.0, 0.0, 1.0]])
    out: np.ndarray = capture_affine @ to_input
    return out


def read_store(path: Path) -> list[LayerData]:
    """Layers of a slide store (read-only; pixels are loaded into memory)."""
    layers: list[LayerData] = []
    with SlideStore.open(path, mode="r") as store:
        slide = store.slide_id
        info = store.mosaic_info()
        affines: dict[int, np.ndarray] = {}
        if info is not None:
            layers.append(
                (
                    np.asarray(store.mosaic()[()]),
                    {
                        "name": "mosaic",
                        "rgb": True,
                        "scale": (info.pixel_size_um, info.pixel_size_um),
                        "translate": (info.origin_y_um, info.origin_x_um),
                        "metadata": {
                            "scopectl": {"kind": "mosaic", "slide": slide, "store": str(path)},
                            "completeness": store.completeness(),
                        },
                    },
                    "image",
                )
            )
        for meta in store.captures():
            index = meta.index
            rgb, _ = store.read_capture(index)
            reg = store.registration(index)
            kwargs: dict[str, Any] = {"name": f"capture {index:05d}", "rgb": True, "opacity": 0.8}
            placed = reg is not None and reg.ok and info is not None
            if placed and reg is not None and info is not None:
                affine = capture_affine_um(
                    reg.homography,
                    mosaic_pixel_size_um=info.pixel_size_um,
                    origin_yx_um=(info.origin_y_um, info.origin_x_um),
                )
                affines[index] = affine
                kwargs["affine"] = affine
            else:
                kwargs["scale"] = (meta.pixel_size_um,) * 2
                kwargs["visible"] = False
            kwargs["metadata"] = {
                "scopectl": {
                    "kind": "capture",
                    "slide": slide,
                    "store": str(path),
                    "capture_index": index,
                    "pixel_size_um": meta.pixel_size_um,
                    "placed": placed,
                    "affine": None if index not in affines else affines[index].tolist(),
                },
                "flags": meta.extra.get("flags", []),
            }
            layers.append((rgb, kwargs, "image"))
    layers.extend(_enhanced_layers(path, slide, affines))
    return layers


def _enhanced_layers(store_path: Path, slide: str, affines: dict[int, np.ndarray]) -> list[LayerData]:
    import tifffile  # tifffile loads only for TIFF files (keeps `scopectl --help` fast)

    folder = enhanced_dir(store_path)
    layers: list[LayerData] = []
    if not folder.is_dir():
        return layers
    for file in sorted(folder.glob("*.ome.tif")):
        try:
            annotations = read_annotations(file)
            match = _SOURCE_RE.match(annotations.get("source", ""))
            if match is None or Path(match["store"]).stem != store_path.stem:
                continue
            index = int(match["index"])
            ratio_text = annotations.get("model_ratio", "")
            p, q = (int(v) for v in ratio_text.split("/")) if "/" in ratio_text else (1, 1)
            with tifffile.TiffFile(file) as tif:
                rgb = tif.series[0].levels[0].asarray()
        except (OSError, ValueError, KeyError, ScopectlError, tifffile.TiffFileError):
            continue  # not one of ours, or unreadable: not shown
        kwargs: dict[str, Any] = {"name": f"enhanced {index:05d}", "rgb": True}
        if index in affines:
            kwargs["affine"] = _enhanced_affine(affines[index], (p, q))
        else:
            kwargs["visible"] = False
        kwargs["metadata"] = {
            "scopectl": {"kind": "enhanced", "slide": slide, "capture_index": index, "file": str(file)},
            "annotations": annotations,
        }
        layers.append((rgb, kwargs, "image"))
    return layers


def read_export(path: Path) -> list[LayerData]:
    """Layers of an OME-Zarr export (folder or ``.ozx``): multiscale, lazily read through dask."""
    da: Any = importlib.import_module("dask.array")
    import zarr  # optional extra: loads only in napari / for OME-Zarr

    store: Any = (
        zarr.storage.ZipStore(path, mode="r")
        if path.suffix.lower() == ".ozx"
        else zarr.storage.LocalStore(path, read_only=True)
    )
    root: Any = zarr.open_group(store, mode="r", zarr_format=3)
    series = root.attrs.get("ome", {})
    if series.get("bioformats2raw.layout") != 3:
        raise ScopectlError(f"{path}: not a scopectl OME-Zarr export (no bioformats2raw layout).")
    slide = root.attrs.get("scopectl", {}).get("info", {}).get("slide_id", path.stem)
    layers: list[LayerData] = []
    k = 0
    while str(k) in root:
        group = root[str(k)]
        ms = group.attrs["ome"]["multiscales"][0]
        levels = [da.from_zarr(group[d["path"]]).transpose(1, 2, 0) for d in ms["datasets"]]
        transforms = {t["type"]: t for t in ms["datasets"][0]["coordinateTransformations"]}
        scale = transforms["scale"]["scale"][1:]
        translate = transforms.get("translation", {"translation": [0, 0, 0]})["translation"][1:]
        attrs = group.attrs.get("scopectl", {})
        kwargs: dict[str, Any] = {"name": ms.get("name", str(k)), "rgb": True, "multiscale": True}
        reg = attrs.get("registration") or {}
        if attrs.get("kind") == "capture" and reg.get("affine_um") is not None:
            kwargs["affine"] = np.asarray(reg["affine_um"], np.float64)
            kwargs["opacity"] = 0.8
        else:
            kwargs["scale"] = tuple(scale)
            kwargs["translate"] = tuple(translate)
            if attrs.get("kind") == "capture":
                kwargs["visible"] = False
        capture = attrs.get("capture", {})
        kwargs["metadata"] = {
            "scopectl": {
                "kind": attrs.get("kind", "image"),
                "slide": slide,
                "capture_index": capture.get("index"),
                "export": str(path),
            }
        }
        layers.append((levels, kwargs, "image"))
        k += 1
    return layers
