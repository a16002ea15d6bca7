"""Seeded synthetic test material: H&E-like tissue, smooth distortion fields and phone-like captures.

Used by the tests and by ``benchmarks/registration_accuracy.py`` to check that registration recovers a
*known* mapping.  Nothing here is used on real data.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray

__all__ = [
    "SyntheticCapture",
    "distortion_field",
    "phone_capture",
    "tissue_rgb",
    "warp_by_field",
]

F64 = NDArray[np.float64]
FieldFn = Callable[[F64, F64], tuple[F64, F64]]


def tissue_rgb(
    shape: tuple[int, int], *, seed: int, pixel_um: float = 0.37, origin_px: tuple[int, int] = (0, 0)
) -> NDArray[np.uint8]:
    """An H&E-like RGB image: eosin-stained stroma with holes and haematoxylin-stained nuclei.

    ``origin_px`` offsets the pattern (the same ``seed`` and different origins give consistent strips
    of one large image, so mosaics can be built strip by strip).
    """
    rows, cols = shape
    # structures are generated on a grid of 64 µm cells, each seeded by its index, so strips agree
    cell_um = 64.0
    cell_px = cell_um / pixel_um
    r_lo = math.floor(origin_px[0] / cell_px) - 1
    r_hi = math.floor((origin_px[0] + rows) / cell_px) + 1
    c_lo = math.floor(origin_px[1] / cell_px) - 1
    c_hi = math.floor((origin_px[1] + cols) / cell_px) + 1
    stroma = np.zeros(shape, np.float32)
    nuclei = np.zeros(shape, np.float32)
    for gi in range(r_lo, r_hi + 1):
        for gj in range(c_lo, c_hi + 1):
            rng = np.random.default_rng([seed, gi & 0xFFFFFFFF, gj & 0xFFFFFFFF])
            n_fib = rng.poisson(6)
            for _ in range(n_fib):
                r = (gi + rng.random()) * cell_px - origin_px[0]
                c = (gj + rng.random()) * cell_px - origin_px[1]
                length = rng.uniform(10, 40) / pixel_um
                width = rng.uniform(2, 8) / pixel_um
                ang = rng.uniform(0, 180)
                cv2.ellipse(
                    stroma,
                    (round(c * 16), round(r * 16)),
                    (round(length * 8), round(width * 8)),
                    ang,
                    0,
                    360,
                    float(rng.uniform(0.4, 1.0)),
                    -1,
                    cv2.LINE_AA,
                    4,
                )
            n_nuc = rng.poisson(14)
            for _ in range(n_nuc):
                r = (gi + rng.random()) * cell_px - origin_px[0]
                c = (gj + rng.random()) * cell_px - origin_px[1]
                a = rng.uniform(2.0, 5.0) / pixel_um
                b = a * rng.uniform(0.5, 1.0)
                cv2.ellipse(
                    nuclei,
                    (round(c * 16), round(r * 16)),
                    (round(a * 16), round(b * 16)),
                    float(rng.uniform(0, 180)),
                    0,
                    360,
                    float(rng.uniform(0.5, 1.0)),
                    -1,
                    cv2.LINE_AA,
                    4,
                )
    sigma = 0.6 / pixel_um
    stroma = np.asarray(cv2.GaussianBlur(stroma, (0, 0), sigma), np.float32)
    nuclei = np.asarray(cv2.GaussianBlur(nuclei, (0, 0), 0.3 / pixel_um), np.float32)
    # Beer-Lambert mixing of eosin (pink) and haematoxylin (blue-purple)
    eosin = np.array([0.05, 0.9, 0.35], np.float32)
    haem = np.array([0.65, 0.9, 0.25], np.float32)
    od = 0.9 * np.clip(stroma, 0, 1)[..., None] * eosin + 1.4 * np.clip(nuclei, 0, 1)[..., None] * haem
    rgb = 245.0 * np.exp(-od)
    return np.clip(rgb + 0.5, 0, 255).astype(np.uint8)


def distortion_field(shape: tuple[int, int], *, amplitude_px: float, seed: int) -> FieldFn:
    """A smooth displacement field ``(rows, cols) -> (d_rows, d_cols)`` over an image of ``shape``.

    Barrel distortion plus a few long-wavelength sinusoids, of about ``amplitude_px`` at the corners.
    """
    rng = np.random.default_rng(seed)
    h, w = shape
    k = amplitude_px * rng.uniform(0.6, 1.0)
    waves = [
        (rng.uniform(0.5, 1.5), rng.uniform(0.5, 1.5), rng.uniform(0, 2 * math.pi), rng.uniform(-1, 1))
        for _ in range(4)
    ]

    def fn(rows: F64, cols: F64) -> tuple[F64, F64]:
        rr = (np.asarray(rows, np.float64) - (h - 1) / 2) / max(h, w)
        cc = (np.asarray(cols, np.float64) - (w - 1) / 2) / max(h, w)
        rad = rr * rr + cc * cc
        dr = 2.0 * k * rr * rad
        dc = 2.0 * k * cc * rad
        for i, (fr, fc, ph, a) in enumerate(waves):
            term = 0.25 * amplitude_px * a * np.sin(2 * math.pi * (fr * rr + fc * cc) + ph)
            if i % 2:
                dr = dr + term
            else:
                dc = dc + term
        return dr, dc

    return fn


def warp_by_field(
    image: NDArray[np.uint8] | NDArray[np.float32],
    fn: FieldFn,
    *,
    shape: tuple[int, int],
    offset_px: tuple[int, int] = (0, 0),
) -> NDArray[np.uint8] | NDArray[np.float32]:
    """An image ``m`` of ``shape`` with ``m(x + D(x)) = image(x)`` (``D = fn``), for output pixel ``y``
    at ``image`` coordinates ``y + offset_px``; inverted by fixed-point iteration."""
    yr, yc = np.meshgrid(
        np.arange(shape[0], dtype=np.float64) + offset_px[0],
        np.arange(shape[1], dtype=np.float64) + offset_px[1],
        indexing="ij",
    )
    xr, xc = yr.copy(), yc.copy()
    for _ in range(8):
        dr, dc = fn(xr, xc)
        xr, xc = yr - dr, yc - dc
    out: NDArray[Any] = cv2.remap(
        image,
        xc.astype(np.float32),
        xr.astype(np.float32),
        cv2.INTER_CUBIC,
        borderMode=cv2.BORDER_REFLECT_101,
    )
    return out


@dataclass(frozen=True)
class SyntheticCapture:
    """A phone-like capture with its true mapping to the mosaic.

    ``homography`` maps ideal (undistorted) phone (col, row, 1) to mosaic (col, row, 1); the capture's
    pixel ``p`` shows mosaic point ``H(p - δ(p))`` where ``δ = distortion`` (phone pixels), i.e. the
    content that an ideal phone shows at ``q`` appears at ``q + δ(q)``.
    """

    rgb: NDArray[np.uint8]
    homography: F64
    distortion: FieldFn

    def phone_to_mosaic(self, rows: F64, cols: F64) -> tuple[F64, F64]:
        """True mosaic (row, col) of phone pixels (row, col)."""
        # ideal q with q + δ(q) = p, by fixed-point iteration
        qr, qc = np.asarray(rows, np.float64).copy(), np.asarray(cols, np.float64).copy()
        for _ in range(8):
            dr, dc = self.distortion(qr, qc)
            qr, qc = rows - dr, cols - dc
        h = self.homography
        w = h[2, 0] * qc + h[2, 1] * qr + h[2, 2]
        return (h[1, 0] * qc + h[1, 1] * qr + h[1, 2]) / w, (h[0, 0] * qc + h[0, 1] * qr + h[0, 2]) / w


def phone_capture(
    mosaic: NDArray[np.uint8],
    *,
    center_px: tuple[float, float],
    shape: tuple[int, int] = (1024, 1024),
    scale: float = 1.0,
    rotation_deg: float = 0.0,
    distortion_px: float = 3.0,
    blur_px: float = 1.0,
    noise: float = 3.0,
    seed: int = 0,
    distortion_seed: int | None = None,
) -> SyntheticCapture:
    """Render a phone-like capture of ``mosaic`` (which must contain the whole footprint).

    ``scale`` is mosaic pixels per phone pixel; the capture is rotated, distorted by a smooth field of
    about ``distortion_px`` phone pixels (seeded by ``distortion_seed``, default ``seed + 1``: give
    several captures the same one to model a rig's stationary distortion), blurred, colour-shifted
    and noisy.
    """
    rng = np.random.default_rng(seed)
    h, w = shape
    a = math.radians(rotation_deg)
    lin = scale * np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    centre_phone = np.array([(w - 1) / 2, (h - 1) / 2])
    t = np.array([center_px[1], center_px[0]]) - lin @ centre_phone
    hom = np.array([[lin[0, 0], lin[0, 1], t[0]], [lin[1, 0], lin[1, 1], t[1]], [0.0, 0.0, 1.0]])
    dseed = seed + 1 if distortion_seed is None else distortion_seed
    distortion = distortion_field(shape, amplitude_px=distortion_px, seed=dseed)
    cap = SyntheticCapture(rgb=np.zeros((h, w, 3), np.uint8), homography=hom, distortion=distortion)
    pr, pc = np.meshgrid(np.arange(h, dtype=np.float64), np.arange(w, dtype=np.float64), indexing="ij")
    mr, mc = cap.phone_to_mosaic(pr, pc)
    src = mosaic
    if scale > 1.2:  # anti-alias before sampling at the coarser phone pixel
        src = np.asarray(cv2.GaussianBlur(mosaic, (0, 0), 0.5 * math.sqrt(scale * scale - 1)), np.uint8)
    img = cv2.remap(
        src, mc.astype(np.float32), mr.astype(np.float32), cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101
    )
    img = np.asarray(img, np.float32)
    if blur_px > 0:
        img = np.asarray(cv2.GaussianBlur(img, (0, 0), blur_px), np.float32)
    gain = np.array([0.92, 1.0, 1.08], np.float32) * rng.uniform(0.9, 1.05)
    img = img * gain + rng.normal(0.0, noise, img.shape).astype(np.float32)
    rgb = np.clip(img + 0.5, 0, 255).astype(np.uint8)
    return SyntheticCapture(rgb=rgb, homography=hom, distortion=distortion)
