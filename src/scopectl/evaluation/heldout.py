"""Held-out captures from slide stores, made into the images the paper's tables compare.

For a registered capture (homography ``H``: phone ``(col, row, 1)`` → mosaic ``(col, row, 1)``):

1. The evaluation region is the largest axis-aligned rectangle of the mosaic inside the capture's
   footprint, shrunk by a margin (``margin_fraction``) and capped at ``max_input_px`` input pixels.
2. The **target** is that mosaic region at the model's output pixel size (a crop when it equals the
   mosaic's pixel size, area-resampled otherwise).
3. **A** (raw) is the phone image resampled through ``H`` onto the model's input grid covering the
   same area: first area-averaged to about the input pixel size (no aliasing), then bicubic
   interpolation through the homography.  Input pixel ``i`` and target pixel ``j`` are area-aligned:
   both grids start at the region's top-left corner.
4. **B** (warp-corrected) is A after pyramid elastic registration onto the target downsampled to the
   input grid (:func:`scopectl.registration.elastic.elastic_register`, the paper's NanoJ-style method).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np
from numpy.typing import NDArray

from scopectl.errors import InputFileError, RegistrationError
from scopectl.imageio import decode_dng, decode_jpeg
from scopectl.metrics import luma
from scopectl.registration.elastic import elastic_register, warp_image
from scopectl.store import SlideStore

__all__ = ["HeldOutPair", "capture_pair", "inner_rectangle", "iter_store_pairs", "pair_from_homography"]

Source = Literal["rgb", "jpeg", "dng"]


@dataclass
class HeldOutPair:
    """The images of one held-out capture (RGB uint8)."""

    slide: str
    capture: int
    raw_input: np.ndarray
    warped_input: np.ndarray | None
    target: np.ndarray
    note: str = ""


def inner_rectangle(corners_rc: np.ndarray) -> tuple[float, float, float, float]:
    """An axis-aligned rectangle ``(top, left, bottom, right)`` inside a convex quadrilateral.

    ``corners_rc`` are the four corners (row, col) in order around the quadrilateral (as the corners of
    an image mapped by a homography: top-left, top-right, bottom-right, bottom-left).
    """
    tl, tr, br, bl = (np.asarray(c, dtype=float) for c in corners_rc)
    top = max(tl[0], tr[0])
    bottom = min(bl[0], br[0])
    left = max(tl[1], bl[1])
    right = min(tr[1], br[1])
    return top, left, bottom, right


def _phone_on_input_grid(
    phone_rgb: np.ndarray,
    h: np.ndarray,
    *,
    origin: tuple[int, int],
    step: float,
    shape: tuple[int, int],
    mosaic_pixel_size_um: float,
    input_pixel_size_um: float,
) -> np.ndarray:
    """A: the phone pixels through ``h`` onto the input grid (area-aligned with the target).

    ``origin`` is the (row, col) of the grid's first mosaic pixel, ``step`` mosaic pixels per input
    pixel and ``shape`` the (rows, cols) of the grid.
    """
    r0, c0 = origin
    n_rows, n_cols = shape
    prow, pcol = phone_rgb.shape[:2]
    scale = math.sqrt(abs(np.linalg.det(h[:2, :2]) / (h[2, 2] ** 2)))  # mosaic px per phone px (affine part)
    phone_um = scale * mosaic_pixel_size_um
    f = min(1.0, phone_um / input_pixel_size_um)  # shrink the phone image to about the input pixel size
    small = phone_rgb
    if f < 0.95:
        small = cv2.resize(
            phone_rgb, (max(1, round(pcol * f)), max(1, round(prow * f))), interpolation=cv2.INTER_AREA
        )
    fr, fc = small.shape[0] / prow, small.shape[1] / pcol
    ii, jj = np.meshgrid(
        np.arange(n_rows, dtype=np.float64), np.arange(n_cols, dtype=np.float64), indexing="ij"
    )
    mr = r0 + (ii + 0.5) * step - 0.5
    mc = c0 + (jj + 0.5) * step - 0.5
    pts = np.stack([mc.ravel(), mr.ravel()], axis=1)[None]
    phone_xy = cv2.perspectiveTransform(pts, np.linalg.inv(h))[0]
    map_c = ((phone_xy[:, 0] + 0.5) * fc - 0.5).reshape(n_rows, n_cols).astype(np.float32)
    map_r = ((phone_xy[:, 1] + 0.5) * fr - 0.5).reshape(n_rows, n_cols).astype(np.float32)
    raw = cv2.remap(small, map_c, map_r, cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT_101)
    return np.ascontiguousarray(raw)


def _warp_corrected(raw: np.ndarray, target: np.ndarray) -> tuple[np.ndarray | None, str]:
    """The input elastically registered onto the target resampled to its grid, or None and a note why not."""
    n_rows, n_cols = raw.shape[:2]
    ref_small = cv2.resize(target, (n_cols, n_rows), interpolation=cv2.INTER_AREA)
    try:
        res = elastic_register(_gray(raw), _gray(ref_small))
        raw_u8: NDArray[np.uint8] = np.ascontiguousarray(raw, dtype=np.uint8)
        warped = warp_image(raw_u8, res.field, shape=(n_rows, n_cols)).astype(np.uint8)
    except RegistrationError as exc:
        return None, f"no warp-corrected input ({exc.one_line()})"
    return np.ascontiguousarray(warped), ""


def pair_from_homography(
    phone_rgb: np.ndarray,
    mosaic: Any,
    homography: np.ndarray,
    *,
    mosaic_pixel_size_um: float,
    input_pixel_size_um: float,
    ratio: tuple[int, int],
    margin_fraction: float = 0.06,
    max_input_px: int = 1024,
    elastic: bool = True,
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray, str]:
    """Build (A, B, target, note) for one capture from the phone image, the mosaic and the homography.

    Parameters
    ----------
    phone_rgb
        The capture (rows × cols × 3 uint8).
    mosaic
        The benchtop mosaic (an ``h5py.Dataset`` or array, rows × cols × 3 uint8), read lazily.
    homography
        Phone ``(col, row, 1)`` → mosaic ``(col, row, 1)``.
    mosaic_pixel_size_um, input_pixel_size_um
        Pixel sizes of the mosaic and of the model's inputs.
    ratio
        The model's ``(p, q)``; the target has ``input·p/q`` pixels per side.

    Raises
    ------
    RegistrationError
        If the footprint leaves too small a region inside the mosaic.
    """
    p, q = ratio
    h = np.asarray(homography, dtype=np.float64)
    prow, pcol = phone_rgb.shape[:2]
    corners_xy = np.array([[0, 0], [pcol - 1, 0], [pcol - 1, prow - 1], [0, prow - 1]], dtype=np.float64)
    mapped = cv2.perspectiveTransform(corners_xy[None], h)[0]
    top, left, bottom, right = inner_rectangle(mapped[:, ::-1])
    mrows, mcols = int(mosaic.shape[0]), int(mosaic.shape[1])
    top, left = max(top, 0.0), max(left, 0.0)
    bottom, right = min(bottom, mrows - 1.0), min(right, mcols - 1.0)
    height, width = bottom - top, right - left
    top, left = top + margin_fraction * height, left + margin_fraction * width
    height, width = height * (1 - 2 * margin_fraction), width * (1 - 2 * margin_fraction)
    step = input_pixel_size_um / mosaic_pixel_size_um  # mosaic pixels per input pixel
    n_rows = min(max_input_px, int(height / step)) // q * q
    n_cols = min(max_input_px, int(width / step)) // q * q
    if n_rows < 64 or n_cols < 64:
        raise RegistrationError(
            f"the capture covers only {n_rows}×{n_cols} input pixels of the mosaic (need 64)."
        )
    out_rows, out_cols = n_rows * p // q, n_cols * p // q
    r0, c0 = math.floor(top), math.floor(left)
    span_r = math.ceil(n_rows * step) + 1
    span_c = math.ceil(n_cols * step) + 1
    crop = np.asarray(mosaic[r0 : min(mrows, r0 + span_r), c0 : min(mcols, c0 + span_c)], dtype=np.uint8)
    target_um = input_pixel_size_um * q / p
    exact_rows, exact_cols = round(n_rows * step), round(n_cols * step)
    if (
        abs(target_um / mosaic_pixel_size_um - 1.0) < 1e-3
        and exact_rows == out_rows
        and exact_cols == out_cols
    ):
        target = np.ascontiguousarray(crop[:out_rows, :out_cols])
    else:
        region = crop[:exact_rows, :exact_cols]
        interp = cv2.INTER_AREA if target_um > mosaic_pixel_size_um else cv2.INTER_CUBIC
        target = np.ascontiguousarray(cv2.resize(region, (out_cols, out_rows), interpolation=interp))

    raw = _phone_on_input_grid(
        phone_rgb,
        h,
        origin=(r0, c0),
        step=step,
        shape=(n_rows, n_cols),
        mosaic_pixel_size_um=mosaic_pixel_size_um,
        input_pixel_size_um=input_pixel_size_um,
    )
    warped, note = _warp_corrected(raw, target) if elastic else (None, "")
    return raw, warped, target, note


def _gray(rgb: np.ndarray) -> np.ndarray:
    return luma(rgb, dtype=np.float32)


def _decode_capture(store: Any, index: int, source: Source, rgb: np.ndarray) -> np.ndarray:
    if source == "rgb":
        return rgb
    data = store.read_capture_raw(index, source)
    if data is None:
        raise InputFileError(f"{store.path}: capture {index} has no stored {source.upper()} file.")
    if source == "dng":
        return decode_dng(data, source=f"{store.path} capture {index}")[0]

    return decode_jpeg(data, source=f"{store.path} capture {index}")


def capture_pair(
    store: Any,
    index: int,
    *,
    input_pixel_size_um: float,
    ratio: tuple[int, int],
    source: Source = "rgb",
    max_input_px: int = 1024,
    elastic: bool = True,
) -> HeldOutPair:
    """The held-out images of capture ``index`` of an open :class:`~scopectl.store.SlideStore`.

    Raises
    ------
    RegistrationError
        If the capture has no successful registration or its region is too small.
    InputFileError
        If the requested source bytes are missing or undecodable.
    """
    reg = store.registration(index)
    if reg is None or not reg.ok:
        reason = "not registered" if reg is None else f"registration failed: {reg.reason}"
        raise RegistrationError(f"{store.path}: capture {index} {reason}.")
    info = store.mosaic_info()
    if info is None:
        raise RegistrationError(f"{store.path}: the slide has no finished benchtop mosaic.")
    rgb, _meta = store.read_capture(index)
    phone = _decode_capture(store, index, source, np.asarray(rgb, dtype=np.uint8))
    if phone.shape[:2] != rgb.shape[:2]:
        raise InputFileError(
            f"{store.path}: capture {index} {source} is {phone.shape[:2]} px but its registration was made on "
            f"{rgb.shape[:2]} px."
        )
    raw, warped, target, note = pair_from_homography(
        phone,
        store.mosaic(),
        reg.homography,
        mosaic_pixel_size_um=info.pixel_size_um,
        input_pixel_size_um=input_pixel_size_um,
        ratio=ratio,
        max_input_px=max_input_px,
        elastic=elastic,
    )
    return HeldOutPair(store.slide_id, index, raw, warped, target, note)


def iter_store_pairs(
    store_path: Path,
    *,
    input_pixel_size_um: float,
    ratio: tuple[int, int],
    source: Source = "rgb",
    max_captures: int | None = None,
    max_input_px: int = 1024,
    on_skip: Callable[[str], None] | None = None,
) -> list[HeldOutPair]:
    """Every usable registered capture of a slide store as :class:`HeldOutPair` (others reported to
    ``on_skip``)."""

    pairs: list[HeldOutPair] = []
    with SlideStore.open(store_path, mode="r") as store:
        for meta in store.captures():
            if max_captures is not None and len(pairs) >= max_captures:
                break
            index = meta.index
            try:
                pairs.append(
                    capture_pair(
                        store,
                        index,
                        input_pixel_size_um=input_pixel_size_um,
                        ratio=ratio,
                        source=source,
                        max_input_px=max_input_px,
                    )
                )
            except (RegistrationError, InputFileError) as exc:
                if on_skip is not None:
                    on_skip(f"{store_path.stem} capture {index}: {exc.one_line()}")
    return pairs
