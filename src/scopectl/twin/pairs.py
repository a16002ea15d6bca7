"""Aligned phone/benchtop pairs from the twin, their files, and the paper's calibration measurement.

A *pair* is one phone capture and one benchtop frame of the same slide field; the ground truth maps
phone pixels to slide µm, and the benchtop frame is axis-aligned with a known origin, so the two are
aligned exactly without registration.

:func:`measure_pair` reproduces the paper's baseline comparison (Tables 2 and 3, bicubic column / A):
the phone image is resampled, through the ground truth, onto a slide-aligned grid at 0.925 µm/px
(2.5 × the benchtop's 0.37 µm), upsampled ×2.5 with bicubic a = -0.5, and compared with the benchtop
frame pixel for pixel: SSIM (luminance, Gaussian 11/1.5) and mean CIE-94.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray

from scopectl.errors import InputFileError
from scopectl.metrics import bicubic_resize, cie94_stats, ssim
from scopectl.twin.benchtop import BenchtopModel
from scopectl.twin.illumination import Illumination
from scopectl.twin.noise import upsample_step_grid
from scopectl.twin.phone import PhoneCapture, PhoneModel
from scopectl.twin.slide import Slide, make_slide

__all__ = [
    "AlignedViews",
    "Pair",
    "aligned_views",
    "comparison_figure",
    "iter_pairs",
    "measure_pair",
    "phone_on_grid",
    "render_pair",
    "write_pair",
    "write_pairs",
]

#: the paper's starting ranges (Table 2 bicubic SSIM, Table 3 column A mean CIE-94)
PAPER_SSIM_RANGE = (0.46, 0.66)
PAPER_CIE94_RANGE = (16.0, 26.0)
PAPER_VALUES: dict[str, dict[str, float]] = {
    "lung": {"ssim": 0.4956, "cie94": 15.976},
    "pap": {"ssim": 0.4601, "cie94": 26.230},
    "blood": {"ssim": 0.6605, "cie94": 17.310},
}


@dataclass
class Pair:
    """A phone capture and the benchtop frame of the same field.

    Attributes
    ----------
    phone
        The capture (DNG, JPEG, decoded RGB, settings, ground truth).
    benchtop
        (rows, columns, 3) uint8 benchtop frame.
    benchtop_origin_um
        Slide (x, y) of the centre of benchtop pixel (0, 0); the frame is axis-aligned.
    benchtop_pixel_um
        Benchtop pixel size at the sample.
    sample
        Sample type of the slide.
    """

    phone: PhoneCapture
    benchtop: NDArray[np.uint8]
    benchtop_origin_um: tuple[float, float]
    benchtop_pixel_um: float
    sample: str

    def benchtop_from_phone(self) -> NDArray[np.float64]:
        """Homography phone px (col, row, 1) → benchtop px (col, row, 1), without the warp."""
        b = np.array(
            [
                [self.benchtop_pixel_um, 0.0, self.benchtop_origin_um[0]],
                [0.0, self.benchtop_pixel_um, self.benchtop_origin_um[1]],
                [0.0, 0.0, 1.0],
            ]
        )
        out = np.asarray(np.linalg.inv(b) @ self.phone.truth.homography, dtype=np.float64)
        result: NDArray[np.float64] = out / out[2, 2]
        return result

    def truth_dict(self) -> dict[str, Any]:
        """Everything needed to align the pair, JSON-serialisable."""
        return {
            "format": "scopectl.twin.pair",
            "schema_version": 1,
            "sample": self.sample,
            "phone": self.phone.truth.to_dict(include_field=True),
            "phone_settings": self.phone.settings,
            "benchtop": {
                "origin_x_um": self.benchtop_origin_um[0],
                "origin_y_um": self.benchtop_origin_um[1],
                "pixel_size_um": self.benchtop_pixel_um,
                "shape": list(self.benchtop.shape[:2]),
                "convention": "pixel (r, c) centre at x = origin_x_um + c*p, y = origin_y_um + r*p",
            },
            "benchtop_from_phone_homography": self.benchtop_from_phone().tolist(),
        }


def render_pair(
    slide: Slide,
    *,
    center_x_um: float,
    center_y_um: float,
    seed: int,
    phone_shape: tuple[int, int] = (1024, 1024),
    illumination: Illumination | None = None,
    phone: PhoneModel | None = None,
    benchtop: BenchtopModel | None = None,
    focus_z_um: float = 0.0,
    phone_focus_z_um: float = 0.0,
    jpeg_quality: int = 92,
    margin: float = 1.08,
    axis_offset_px: tuple[float, float] | None = None,
) -> Pair:
    """Render a phone capture and a benchtop frame covering it (``margin`` × its extent)."""
    phone = phone if phone is not None else PhoneModel()
    benchtop = benchtop if benchtop is not None else BenchtopModel()
    illumination = illumination if illumination is not None else Illumination.white()
    cap = phone.capture(
        slide,
        center_x_um=center_x_um,
        center_y_um=center_y_um,
        focus_z_um=phone_focus_z_um,
        illumination=illumination,
        seed=seed,
        shape=phone_shape,
        jpeg_quality=jpeg_quality,
        axis_offset_px=axis_offset_px,
    )
    ratio = phone.pixel_size_um / benchtop.pixel_size_um
    rows = int(math.ceil(phone_shape[0] * ratio * margin / 2) * 2)
    cols = int(math.ceil(phone_shape[1] * ratio * margin / 2) * 2)
    bench = benchtop.render(
        slide,
        center_x_um=center_x_um,
        center_y_um=center_y_um,
        focus_z_um=focus_z_um,
        shape=(rows, cols),
        seed=seed,
    )
    origin = benchtop.frame_origin_um(center_x_um=center_x_um, center_y_um=center_y_um, shape=(rows, cols))
    return Pair(
        phone=cap,
        benchtop=bench,
        benchtop_origin_um=origin,
        benchtop_pixel_um=benchtop.pixel_size_um,
        sample=slide.sample,
    )


def phone_on_grid(
    capture: PhoneCapture, *, x0_um: float, y0_um: float, shape: tuple[int, int], pixel_size_um: float
) -> NDArray[np.uint8]:
    """Resample a capture's RGB through its ground truth onto a slide-aligned grid.

    Downsampling is antialiased with a Gaussian of sigma ``0.5·sqrt(r² - 1)`` phone pixels
    (r = grid pixel / phone pixel), then sampled bicubically (OpenCV, a = -0.75) at the exact positions.
    """
    truth = capture.truth
    img = capture.rgb.astype(np.float32)
    r = pixel_size_um / truth.pixel_size_um
    if r > 1.0:
        sigma = 0.5 * math.sqrt(r * r - 1.0)
        img = np.asarray(
            cv2.GaussianBlur(img, (0, 0), sigmaX=sigma, sigmaY=sigma, borderType=cv2.BORDER_REFLECT),
            dtype=np.float32,
        )
    # the mapping is smooth: invert it every 8 output pixels and interpolate (error < 1e-3 px)
    step = 8
    xs = x0_um + np.arange(0, shape[1] + step, step) * pixel_size_um
    ys = y0_um + np.arange(0, shape[0] + step, step) * pixel_size_um
    gx, gy = np.meshgrid(xs, ys)
    rows, cols = truth.to_phone_px(gx, gy)
    maps = upsample_step_grid(np.stack([cols, rows], axis=2).astype(np.float32), step=step, shape=shape)
    out = cv2.remap(
        img,
        np.ascontiguousarray(maps[..., 0]),
        np.ascontiguousarray(maps[..., 1]),
        cv2.INTER_CUBIC,
        borderMode=cv2.BORDER_REFLECT,
    )
    result: NDArray[np.uint8] = np.clip(np.rint(out), 0, 255).astype(np.uint8)
    return result


@dataclass
class AlignedViews:
    """The benchtop crop and the phone resampled onto it, as compared by :func:`measure_pair`.

    Attributes
    ----------
    benchtop
        Crop of the benchtop frame (0.37 µm/px).
    bicubic
        The phone at 0.925 µm/px upsampled ×2.5 (bicubic a = -0.5) onto the same pixels: the paper's
        baseline.
    origin_um
        Slide (x, y) of the crop's pixel (0, 0).
    capture, pixel_size_um
        The phone capture and the crop's pixel size; :attr:`phone` resamples the JPEG onto the crop
        through the ground truth (no downsampling): what the phone saw, for display.
    """

    benchtop: NDArray[np.uint8]
    bicubic: NDArray[np.uint8]
    origin_um: tuple[float, float]
    capture: PhoneCapture
    pixel_size_um: float

    @property
    def phone(self) -> NDArray[np.uint8]:
        """The phone JPEG resampled onto the benchtop crop's pixels (computed on demand)."""
        return phone_on_grid(
            self.capture,
            x0_um=self.origin_um[0],
            y0_um=self.origin_um[1],
            shape=(self.benchtop.shape[0], self.benchtop.shape[1]),
            pixel_size_um=self.pixel_size_um,
        )


def aligned_views(pair: Pair, *, ratio: float = 2.5, border_um: float = 12.0) -> AlignedViews:
    """Benchtop, phone and bicubic-×2.5 phone images of the common field, pixel-aligned by the ground truth."""
    truth = pair.phone.truth
    p_b = pair.benchtop_pixel_um
    p_l = p_b * ratio
    # slide extent covered by the phone (green channel), shrunk by a border
    h, w = truth.shape
    er = np.array([0, 0, h - 1, h - 1], dtype=np.float64)
    ec = np.array([0, w - 1, 0, w - 1], dtype=np.float64)
    ex, ey = truth.to_slide_um(er, ec)
    bx0, by0 = pair.benchtop_origin_um
    bh, bw = pair.benchtop.shape[:2]
    x_lo = max(float(np.sort(ex)[1]), bx0) + border_um
    x_hi = min(float(np.sort(ex)[-2]), bx0 + (bw - 1) * p_b) - border_um
    y_lo = max(float(np.sort(ey)[1]), by0) + border_um
    y_hi = min(float(np.sort(ey)[-2]), by0 + (bh - 1) * p_b) - border_um
    n_cols = int((x_hi - x_lo) / p_l)
    n_rows = int((y_hi - y_lo) / p_l)
    if n_cols < 16 or n_rows < 16:
        raise ValueError("the phone and benchtop fields overlap too little to measure")
    c0 = math.ceil((x_lo - bx0) / p_b)
    r0 = math.ceil((y_lo - by0) / p_b)
    out_rows = round(n_rows * ratio)
    out_cols = round(n_cols * ratio)
    # bicubic output pixel i sits at low-res coordinate (i + 0.5)/ratio - 0.5
    lx0 = bx0 + c0 * p_b + (0.5 - 0.5 / ratio) * p_l
    ly0 = by0 + r0 * p_b + (0.5 - 0.5 / ratio) * p_l
    low = phone_on_grid(pair.phone, x0_um=lx0, y0_um=ly0, shape=(n_rows, n_cols), pixel_size_um=p_l)
    up = bicubic_resize(low, shape=(out_rows, out_cols))
    ref = pair.benchtop[r0 : r0 + out_rows, c0 : c0 + out_cols]
    if ref.shape != up.shape:
        raise ValueError("internal: benchtop crop and upsampled phone differ in shape")
    origin = (bx0 + c0 * p_b, by0 + r0 * p_b)
    return AlignedViews(benchtop=ref, bicubic=up, origin_um=origin, capture=pair.phone, pixel_size_um=p_b)


def measure_pair(pair: Pair, *, ratio: float = 2.5, border_um: float = 12.0) -> dict[str, float]:
    """The paper's baseline metrics for one pair (see the module docstring).

    Returns
    -------
    dict
        ``ssim`` (luminance), ``cie94_mean``, ``cie94_std``, ``rows``, ``cols`` (benchtop pixels compared).
    """
    views = aligned_views(pair, ratio=ratio, border_um=border_um)
    mean, std = cie94_stats(views.benchtop, views.bicubic)
    return {
        "ssim": ssim(views.benchtop, views.bicubic),
        "cie94_mean": mean,
        "cie94_std": std,
        "rows": float(views.benchtop.shape[0]),
        "cols": float(views.benchtop.shape[1]),
    }


def comparison_figure(pair: Pair, *, crop_px: int = 540, label: str = "") -> NDArray[np.uint8]:
    """A side-by-side RGB panel: benchtop | phone (JPEG, aligned) | bicubic ×2.5 of the phone at 0.925 µm/px.

    ``crop_px`` benchtop pixels (0.37 µm) from the centre of the common field; each panel is labelled.
    """
    views = aligned_views(pair)
    h, w = views.benchtop.shape[:2]
    n = min(crop_px, h, w)
    r0, c0 = (h - n) // 2, (w - n) // 2
    m = measure_pair(pair)
    panels = []
    titles = (
        f"benchtop 20x/0.75 ({label})",
        "phone JPEG (aligned)",
        f"bicubic x2.5: SSIM {m['ssim']:.2f}, CIE94 {m['cie94_mean']:.1f}",
    )
    for img, title in zip((views.benchtop, views.phone, views.bicubic), titles, strict=True):
        tile = np.ascontiguousarray(img[r0 : r0 + n, c0 : c0 + n])
        cv2.rectangle(tile, (0, 0), (n - 1, 26), (255, 255, 255), thickness=-1)
        cv2.putText(tile, title, (6, 19), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
        panels.append(tile)
        panels.append(np.full((n, 6, 3), 255, dtype=np.uint8))
    return np.concatenate(panels[:-1], axis=1)


def iter_pairs(
    *,
    sample: str,
    count: int,
    seed: int = 0,
    phone_shape: tuple[int, int] = (1024, 1024),
    jpeg_quality: int = 92,
    start_index: int = 0,
    phone: PhoneModel | None = None,
    benchtop: BenchtopModel | None = None,
) -> Iterator[Pair]:
    """Pairs ``start_index .. start_index + count - 1`` of a reproducible series.

    Pair ``k`` depends only on (sample, seed, k): its field is drawn at random across one slide of the
    sample type (seeded by ``seed``) and the LED battery voltage varies between captures (3.7-4.15 V)
    as it would over a session.
    """
    if count < 0 or start_index < 0:
        raise ValueError(f"count and start_index must be ≥ 0, got {count}, {start_index}")
    slide = make_slide(sample, seed=seed)
    phone = phone if phone is not None else PhoneModel()
    bench = benchtop if benchtop is not None else BenchtopModel()
    for k in range(start_index, start_index + count):
        rng = np.random.default_rng([seed, k, 0x70616972])
        cx = float(rng.uniform(0.15, 0.85) * slide.width_um)
        cy = float(rng.uniform(0.15, 0.85) * slide.height_um)
        illum = Illumination.white(brightness=255, battery_mv=float(rng.uniform(3700.0, 4150.0)))
        # like the paper's four 1024² tiles around the optical axis: the axis sits at one corner
        quadrant = int(rng.integers(0, 4))
        axis_offset = (
            (-1) ** (quadrant // 2) * phone_shape[0] / 2,
            (-1) ** (quadrant % 2) * phone_shape[1] / 2,
        )
        yield render_pair(
            slide,
            center_x_um=cx,
            center_y_um=cy,
            seed=int(rng.integers(0, 2**31)),
            phone_shape=phone_shape,
            illumination=illum,
            phone=phone,
            benchtop=bench,
            jpeg_quality=jpeg_quality,
            axis_offset_px=axis_offset,
        )


def write_pair(pair: Pair, directory: str | Path) -> None:
    """Write one pair's files into ``directory`` (created if needed)."""
    import tifffile  # tifffile loads only for TIFF files (keeps `scopectl --help` fast)

    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    (d / "phone.dng").write_bytes(pair.phone.dng)
    (d / "phone.jpg").write_bytes(pair.phone.jpeg)
    res = 1e4 / pair.benchtop_pixel_um  # pixels per cm
    tifffile.imwrite(
        d / "benchtop.tif",
        pair.benchtop,
        photometric="rgb",
        resolution=(res, res),
        resolutionunit="CENTIMETER",
        metadata=None,
        description=json.dumps(
            {"pixel_size_um": pair.benchtop_pixel_um, "origin_um": list(pair.benchtop_origin_um)}
        ),
    )
    (d / "truth.json").write_text(json.dumps(pair.truth_dict(), indent=1, sort_keys=True), encoding="utf-8")


def write_pairs(
    out_dir: str | Path,
    *,
    sample: str,
    count: int,
    seed: int = 0,
    phone_shape: tuple[int, int] = (1024, 1024),
    jpeg_quality: int = 92,
    overwrite: bool = False,
    start_index: int = 0,
) -> list[Path]:
    """Write pairs ``start_index ..`` of :func:`iter_pairs` as ``pair-NNNN/`` folders in ``out_dir``.

    Each folder holds ``phone.dng``, ``phone.jpg``, ``benchtop.tif`` (RGB, resolution tags in
    pixels/cm, JSON description with ``pixel_size_um`` and ``origin_um``) and ``truth.json``
    (:meth:`Pair.truth_dict`).

    Raises
    ------
    InputFileError
        If a pair folder already exists and ``overwrite`` is false (checked before writing anything).
    """
    out = Path(out_dir)
    dirs = [out / f"pair-{k:04d}" for k in range(start_index, start_index + count)]
    if not overwrite:
        for d in dirs:
            if d.exists():
                raise InputFileError(
                    f"{d}: already exists; choose an empty output directory or pass --overwrite."
                )
    if out.exists() and not out.is_dir():
        raise InputFileError(f"{out}: exists and is not a directory; choose another output path.")
    pairs = iter_pairs(
        sample=sample,
        count=count,
        seed=seed,
        phone_shape=phone_shape,
        jpeg_quality=jpeg_quality,
        start_index=start_index,
    )
    for d, pair in zip(dirs, pairs, strict=True):
        write_pair(pair, d)
    return dirs
