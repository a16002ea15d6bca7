"""Field-of-view matching: locate a phone capture in the benchtop mosaic (SIFT, ratio test, RANSAC).

As in the paper's Data preprocessing: both images are converted to grey levels, SIFT keypoints and
descriptors are computed, descriptors are matched with Lowe's ratio test and a homography is fitted
with RANSAC (requested explicitly: OpenCV's default is a least-squares fit).  The phone/benchtop scale
is estimated from the homography, never assumed; the nominal pixel sizes only set the search scale
and the plausibility bounds.

Coarse to fine, so that a capture is found in a 20K×20K mosaic in seconds:

1. *Coarse* — the whole mosaic is reduced (area average) to a pixel several times the phone's, its
   SIFT features are computed once per mosaic (:class:`MosaicIndex`) and every capture, reduced to the
   same pixel, is matched against them.  When the capture's stage position is known, a crop around it
   is searched first.
2. *Fine* — a crop of the mosaic around the coarse footprint is read at full resolution (reduced
   only to about the phone's own pixel when the phone's pixel is much coarser), matched against the
   full-resolution capture, and the homography refitted there.

A match that fails a check (too few inliers, implausible scale, aspect, shear or perspective, a high
reprojection error, a footprint outside the mosaic) raises :class:`RegistrationError` with the reason:
no garbage pair is ever produced.

Homographies use OpenCV's convention: they map homogeneous ``(col, row, 1)`` pixel-centre coordinates
of the phone image to those of the full-resolution mosaic.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import cv2
import numpy as np
from numpy.typing import NDArray
from pydantic import Field

from scopectl.config.base import FrozenModel
from scopectl.errors import RegistrationError

__all__ = [
    "FovMatch",
    "FovParams",
    "MosaicIndex",
    "MosaicLike",
    "homography_geometry",
    "match_fov",
    "project_points",
    "to_gray",
]

F64 = NDArray[np.float64]


class MosaicLike(Protocol):
    """An H×W×3 uint8 array that can be sliced lazily (an ``h5py.Dataset`` or a numpy array)."""

    @property
    def shape(self) -> tuple[int, ...]: ...

    def __getitem__(self, key: Any) -> Any: ...


class FovParams(FrozenModel):
    """Parameters of the FOV matching and its plausibility checks."""

    coarse_phone_px: int = Field(default=192, ge=64, le=4096)
    """At the coarse step the capture is reduced to about this many pixels along its longer side."""
    ratio: float = Field(default=0.75, gt=0.0, lt=1.0)
    """Lowe's ratio test."""
    min_inliers: int = Field(default=20, ge=6)
    """Fewest RANSAC inliers accepted at the fine step (the coarse step needs half as many)."""
    ransac_threshold_px: float = Field(default=3.0, gt=0.0)
    ransac_max_iters: int = Field(default=2000, ge=100)
    ransac_confidence: float = Field(default=0.995, gt=0.0, lt=1.0)
    scale_tolerance: float = Field(default=0.3, gt=0.0, lt=1.0)
    """Accepted scale: nominal phone/benchtop pixel ratio × (1 ± tolerance)."""
    max_aspect: float = Field(default=1.08, ge=1.0)
    """Largest ratio of the homography's singular values (anisotropic scale or shear)."""
    max_perspective: float = Field(default=0.05, ge=0.0)
    """Largest relative change of the local scale between the capture's corners."""
    max_reprojection_px: float = Field(default=2.0, gt=0.0)
    """Largest RMS reprojection error of the fine inliers, in phone pixels."""
    min_inside_fraction: float = Field(default=0.9, gt=0.0, le=1.0)
    """Fraction of the capture's footprint that must fall inside the mosaic."""
    fine_margin_fraction: float = Field(default=0.15, ge=0.0, le=2.0)
    """The fine crop extends the coarse footprint by this fraction of its size on every side."""
    prior_search_fovs: float = Field(default=3.0, ge=1.0)
    """With a stage-position prior, the coarse search covers this many capture widths around it."""
    max_features: int = Field(default=0, ge=0)
    """Cap on SIFT features per image (0: no cap)."""


@dataclass(frozen=True)
class FovMatch:
    """A successful FOV match.

    ``homography`` maps phone ``(col, row, 1)`` to mosaic ``(col, row, 1)``; ``scale`` is mosaic pixels
    per phone pixel (geometric mean of the singular values at the capture's centre); ``aspect`` the
    ratio of those singular values; ``rotation_deg`` the rotation; ``footprint_px`` the capture's corners
    in the mosaic as (row, col).
    """

    homography: F64
    scale: float
    aspect: float
    rotation_deg: float
    inliers: int
    matches: int
    reprojection_px: float
    footprint_px: F64
    coarse_inliers: int
    timings_s: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable summary."""
        return {
            "homography": self.homography.tolist(),
            "scale": self.scale,
            "aspect": self.aspect,
            "rotation_deg": self.rotation_deg,
            "inliers": self.inliers,
            "matches": self.matches,
            "reprojection_px": self.reprojection_px,
            "footprint_px": self.footprint_px.tolist(),
            "coarse_inliers": self.coarse_inliers,
            "timings_s": self.timings_s,
        }


def to_gray(rgb: NDArray[np.uint8]) -> NDArray[np.uint8]:
    """ITU-R BT.601 luma of an RGB uint8 image (a 2-D image is returned unchanged)."""
    if rgb.ndim == 2:
        return rgb
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise RegistrationError(f"expected an H×W×3 RGB image, got shape {rgb.shape}.")
    return np.asarray(cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY), dtype=np.uint8)


def _scale_matrix(factor: float) -> F64:
    """Coordinates of an image reduced by ``factor`` -> full-resolution coordinates (pixel centres)."""
    return np.array([[factor, 0.0, (factor - 1) / 2], [0.0, factor, (factor - 1) / 2], [0.0, 0.0, 1.0]])


def _translation(rows: float, cols: float) -> F64:
    return np.array([[1.0, 0.0, cols], [0.0, 1.0, rows], [0.0, 0.0, 1.0]])


def project_points(h: NDArray[Any], rows: NDArray[Any], cols: NDArray[Any]) -> tuple[F64, F64]:
    """Apply a (col, row) homography to arrays of rows and columns; returns (rows, cols)."""
    r = np.asarray(rows, np.float64)
    c = np.asarray(cols, np.float64)
    w = h[2, 0] * c + h[2, 1] * r + h[2, 2]
    x = (h[0, 0] * c + h[0, 1] * r + h[0, 2]) / w
    y = (h[1, 0] * c + h[1, 1] * r + h[1, 2]) / w
    return y, x


def _jacobian(h: F64, row: float, col: float) -> F64:
    """2×2 Jacobian d(col', row')/d(col, row) of the homography at a point."""
    w = h[2, 0] * col + h[2, 1] * row + h[2, 2]
    x = (h[0, 0] * col + h[0, 1] * row + h[0, 2]) / w
    y = (h[1, 0] * col + h[1, 1] * row + h[1, 2]) / w
    return np.array(
        [
            [(h[0, 0] - x * h[2, 0]) / w, (h[0, 1] - x * h[2, 1]) / w],
            [(h[1, 0] - y * h[2, 0]) / w, (h[1, 1] - y * h[2, 1]) / w],
        ]
    )


def homography_geometry(h: F64, shape: tuple[int, int]) -> dict[str, float]:
    """Scale, aspect, rotation, handedness and perspective of a homography over an image of ``shape``.

    ``perspective`` is the largest relative difference between the local scale at a corner and at the
    centre.
    """
    rows, cols = shape
    jc = _jacobian(h, (rows - 1) / 2, (cols - 1) / 2)
    sv = np.linalg.svd(jc, compute_uv=False)
    scale = float(math.sqrt(max(sv[0] * sv[1], 0.0)))
    corner_scales = [
        math.sqrt(abs(float(np.linalg.det(_jacobian(h, r, c)))))
        for r in (0.0, rows - 1.0)
        for c in (0.0, cols - 1.0)
    ]
    perspective = max(abs(s / scale - 1.0) for s in corner_scales) if scale > 0 else math.inf
    return {
        "scale": scale,
        "aspect": float(sv[0] / sv[1]) if sv[1] > 0 else math.inf,
        "rotation_deg": float(math.degrees(math.atan2(jc[1, 0] - jc[0, 1], jc[0, 0] + jc[1, 1]))),
        "determinant": float(np.linalg.det(jc)),
        "perspective": perspective,
    }


class _Features:
    """SIFT keypoint coordinates (col, row) and descriptors of one image, with a FLANN matcher."""

    def __init__(self, gray: NDArray[np.uint8], *, max_features: int) -> None:
        sift = cv2.SIFT_create(nfeatures=max_features)  # type: ignore[attr-defined]
        keypoints, descriptors = sift.detectAndCompute(gray, None)
        self.points: F64 = (
            np.array([k.pt for k in keypoints], np.float64).reshape(-1, 2) if keypoints else np.zeros((0, 2))
        )
        self.descriptors: NDArray[np.float32] = (
            descriptors.astype(np.float32) if descriptors is not None else np.zeros((0, 128), np.float32)
        )
        self._matcher: Any = None

    def __len__(self) -> int:
        return int(self.points.shape[0])

    def match(self, query: _Features, *, ratio: float) -> tuple[F64, F64]:
        """Ratio-test matches of ``query``'s descriptors into these: (query points, own points)."""
        if len(self) < 2 or len(query) < 2:
            return np.zeros((0, 2)), np.zeros((0, 2))
        if self._matcher is None:
            self._matcher = cv2.FlannBasedMatcher({"algorithm": 1, "trees": 4}, {"checks": 64})
            self._matcher.add([self.descriptors])
            self._matcher.train()
        pairs = self._matcher.knnMatch(query.descriptors, k=2)
        qi, ti = [], []
        for pair in pairs:
            if len(pair) == 2 and pair[0].distance < ratio * pair[1].distance:
                qi.append(pair[0].queryIdx)
                ti.append(pair[0].trainIdx)
        return query.points[qi], self.points[ti]


def _fit_homography(src: F64, dst: F64, *, params: FovParams) -> tuple[F64 | None, NDArray[np.bool_]]:
    if src.shape[0] < 4:
        return None, np.zeros(src.shape[0], bool)
    h, mask = cv2.findHomography(
        src.reshape(-1, 1, 2),
        dst.reshape(-1, 1, 2),
        method=cv2.RANSAC,
        ransacReprojThreshold=params.ransac_threshold_px,
        maxIters=params.ransac_max_iters,
        confidence=params.ransac_confidence,
    )
    if h is None or mask is None:
        return None, np.zeros(src.shape[0], bool)
    return np.asarray(h, np.float64), mask.ravel().astype(bool)


def _read_gray(
    mosaic: MosaicLike, r0: int, r1: int, c0: int, c1: int, *, factor: int, strip_rows: int = 2048
) -> NDArray[np.uint8]:
    """Read a region of the mosaic in strips as grey levels, area-reduced by an integer factor."""
    rows = (r1 - r0) // factor * factor
    cols = (c1 - c0) // factor * factor
    out = np.empty((rows // factor, cols // factor), np.uint8)
    step = max(factor, strip_rows // factor * factor)
    for s in range(0, rows, step):
        e = min(rows, s + step)
        block = np.asarray(mosaic[r0 + s : r0 + e, c0 : c0 + cols])
        gray = to_gray(block)
        if factor > 1:
            gray = np.asarray(
                cv2.resize(gray, (cols // factor, (e - s) // factor), interpolation=cv2.INTER_AREA),
                dtype=np.uint8,
            )
        out[s // factor : e // factor] = gray
    return out


class MosaicIndex:
    """The coarse SIFT features of a whole mosaic, computed once and reused for every capture.

    Parameters
    ----------
    mosaic
        H×W×3 uint8 mosaic (lazy h5py dataset or array).
    factor
        Integer area-reduction factor of the coarse mosaic.
    max_features
        Cap on SIFT features (0: none).
    """

    def __init__(self, mosaic: MosaicLike, *, factor: int, max_features: int = 0) -> None:
        t0 = time.perf_counter()
        self.mosaic = mosaic
        self.factor = int(factor)
        self.shape = (int(mosaic.shape[0]), int(mosaic.shape[1]))
        self.gray = _read_gray(mosaic, 0, self.shape[0], 0, self.shape[1], factor=self.factor)
        t1 = time.perf_counter()
        self.features = _Features(self.gray, max_features=max_features)
        self.timings_s = {"read": t1 - t0, "sift": time.perf_counter() - t1}

    @staticmethod
    def factor_for(
        *, phone_shape: tuple[int, int], phone_pixel_um: float, mosaic_pixel_um: float, params: FovParams
    ) -> int:
        """The coarse reduction factor for captures of this size and pixel."""
        coarse_um = phone_pixel_um * max(phone_shape) / params.coarse_phone_px
        return max(1, round(coarse_um / mosaic_pixel_um))


def _check(geom: dict[str, float], *, nominal_scale: float, params: FovParams, stage: str) -> None:
    lo, hi = nominal_scale * (1 - params.scale_tolerance), nominal_scale * (1 + params.scale_tolerance)
    if geom["determinant"] <= 0:
        raise RegistrationError(
            f"{stage}: the homography mirrors the capture (implausible); the match is wrong."
        )
    if not lo <= geom["scale"] <= hi:
        raise RegistrationError(
            f"{stage}: implausible scale {geom['scale']:.3f} mosaic px per phone px "
            f"(expected {nominal_scale:.3f} ± {100 * params.scale_tolerance:.0f}%)."
        )
    if geom["aspect"] > params.max_aspect:
        raise RegistrationError(
            f"{stage}: implausible aspect/shear {geom['aspect']:.3f} (limit {params.max_aspect:.3f})."
        )
    if geom["perspective"] > params.max_perspective:
        raise RegistrationError(
            f"{stage}: implausible perspective, local scale varies {100 * geom['perspective']:.1f}% across the "
            f"capture (limit {100 * params.max_perspective:.1f}%)."
        )


def _coarse(
    phone_feats: _Features,
    feats: _Features,
    *,
    to_full: F64,
    phone_to_coarse: F64,
    nominal_scale: float,
    params: FovParams,
    phone_shape: tuple[int, int],
) -> tuple[F64, int]:
    """Coarse homography phone px -> full mosaic px, and its inlier count."""
    q, t = feats.match(phone_feats, ratio=params.ratio)
    need = max(6, params.min_inliers // 2)
    if q.shape[0] < need:
        raise RegistrationError(f"coarse match: too few matches ({q.shape[0]} < {need}).")
    h, inl = _fit_homography(q, t, params=params)
    if h is None or inl.sum() < need:
        raise RegistrationError(f"coarse match: too few RANSAC inliers ({int(inl.sum())} < {need}).")
    h_full = to_full @ h @ phone_to_coarse
    _check(
        homography_geometry(h_full, phone_shape),
        nominal_scale=nominal_scale,
        params=params,
        stage="coarse match",
    )
    return h_full / h_full[2, 2], int(inl.sum())


def match_fov(
    phone_rgb: NDArray[np.uint8],
    mosaic: MosaicLike,
    *,
    phone_pixel_um: float,
    mosaic_pixel_um: float,
    params: FovParams | None = None,
    index: MosaicIndex | Callable[[], MosaicIndex] | None = None,
    prior_center_px: tuple[float, float] | None = None,
) -> FovMatch:
    """Locate a phone capture in a benchtop mosaic.

    Parameters
    ----------
    phone_rgb
        The capture, H×W×3 uint8 (or grey H×W).
    mosaic
        The benchtop mosaic, H×W×3 uint8, sliced lazily.
    phone_pixel_um, mosaic_pixel_um
        Nominal pixel sizes at the sample; their ratio sets the search scale and the plausible range.
    params
        Matching parameters and plausibility limits.
    index
        The mosaic's coarse features, or a function that returns them (called only when the
        whole-mosaic search is needed); built here when not given. Build it once per mosaic for many
        captures.
    prior_center_px
        Expected (row, col) of the capture's centre in the mosaic (e.g. from the stage), searched first.

    Returns
    -------
    FovMatch

    Raises
    ------
    RegistrationError
        With the reason when the capture cannot be located plausibly.
    """
    p = params or FovParams()
    t_start = time.perf_counter()
    nominal = phone_pixel_um / mosaic_pixel_um
    gray = to_gray(phone_rgb)
    shape = (int(gray.shape[0]), int(gray.shape[1]))
    factor = (
        index.factor
        if isinstance(index, MosaicIndex)
        else MosaicIndex.factor_for(
            phone_shape=shape, phone_pixel_um=phone_pixel_um, mosaic_pixel_um=mosaic_pixel_um, params=p
        )
    )
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    h_coarse, coarse_inliers = _locate_coarse(
        gray,
        mosaic,
        nominal=nominal,
        factor=factor,
        index=index,
        prior_center_px=prior_center_px,
        params=p,
        timings=timings,
    )
    timings["coarse"] = time.perf_counter() - t0
    t1 = time.perf_counter()
    fine = _locate_fine(gray, mosaic, h_coarse, nominal=nominal, factor=factor, params=p)
    timings["fine"] = time.perf_counter() - t1
    timings["total"] = time.perf_counter() - t_start
    return FovMatch(
        homography=fine.homography,
        scale=fine.geometry["scale"],
        aspect=fine.geometry["aspect"],
        rotation_deg=fine.geometry["rotation_deg"],
        inliers=fine.inliers,
        matches=fine.matches,
        reprojection_px=fine.reprojection_px,
        footprint_px=fine.footprint_px,
        coarse_inliers=coarse_inliers,
        timings_s=timings,
    )


def _coarse_phone(gray: NDArray[np.uint8], phone_factor: float) -> tuple[NDArray[np.uint8], F64]:
    """The capture reduced to the mosaic index's coarse pixel, and the map from phone to coarse pixels."""
    shape = gray.shape[:2]
    small: NDArray[np.uint8]
    if phone_factor > 1:
        small = np.asarray(
            cv2.resize(
                gray,
                (max(8, round(shape[1] / phone_factor)), max(8, round(shape[0] / phone_factor))),
                interpolation=cv2.INTER_AREA,
            ),
            dtype=np.uint8,
        )
    else:
        small = gray
    sx, sy = shape[1] / small.shape[1], shape[0] / small.shape[0]
    phone_to_coarse = np.linalg.inv(
        np.array([[sx, 0.0, (sx - 1) / 2], [0.0, sy, (sy - 1) / 2], [0.0, 0.0, 1.0]])
    )
    return small, phone_to_coarse


def _locate_coarse(
    gray: NDArray[np.uint8],
    mosaic: MosaicLike,
    *,
    nominal: float,
    factor: int,
    index: MosaicIndex | Callable[[], MosaicIndex] | None,
    prior_center_px: tuple[float, float] | None,
    params: FovParams,
    timings: dict[str, float],
) -> tuple[F64, int]:
    """Coarse homography (phone → mosaic pixels) and its inlier count: near the prior position first, then
    against the whole mosaic's index (built here when not given; its timings go to ``timings``)."""
    p = params
    shape = (int(gray.shape[0]), int(gray.shape[1]))
    mrows, mcols = int(mosaic.shape[0]), int(mosaic.shape[1])
    small, phone_to_coarse = _coarse_phone(gray, factor / nominal)
    small_feats = _Features(small, max_features=p.max_features)
    errors: list[str] = []
    if prior_center_px is not None:
        half = 0.5 * p.prior_search_fovs * max(shape) * nominal
        r0 = int(max(0, prior_center_px[0] - half))
        r1 = int(min(mrows, prior_center_px[0] + half))
        c0 = int(max(0, prior_center_px[1] - half))
        c1 = int(min(mcols, prior_center_px[1] + half))
        if r1 - r0 >= 8 * factor and c1 - c0 >= 8 * factor:
            crop = _read_gray(mosaic, r0, r1, c0, c1, factor=factor)
            to_full = _translation(r0, c0) @ _scale_matrix(factor)
            try:
                return _coarse(
                    small_feats,
                    _Features(crop, max_features=p.max_features),
                    to_full=to_full,
                    phone_to_coarse=phone_to_coarse,
                    nominal_scale=nominal,
                    params=p,
                    phone_shape=shape,
                )
            except RegistrationError as exc:
                errors.append(f"near the stage position: {exc}")
    if index is None:
        index = MosaicIndex(mosaic, factor=factor, max_features=p.max_features)
        timings.update({f"index_{k}": v for k, v in index.timings_s.items()})
    elif not isinstance(index, MosaicIndex):
        index = index()
    try:
        return _coarse(
            small_feats,
            index.features,
            to_full=_scale_matrix(index.factor),
            phone_to_coarse=phone_to_coarse,
            nominal_scale=nominal,
            params=p,
            phone_shape=shape,
        )
    except RegistrationError as exc:
        errors.append(str(exc))
        raise RegistrationError("; ".join(errors)) from None


@dataclass(frozen=True)
class _FineMatch:
    homography: F64
    geometry: dict[str, float]
    inliers: int
    matches: int
    reprojection_px: float
    footprint_px: F64


def _locate_fine(
    gray: NDArray[np.uint8],
    mosaic: MosaicLike,
    h_coarse: F64,
    *,
    nominal: float,
    factor: int,
    params: FovParams,
) -> _FineMatch:
    """Refine the coarse homography on a full-resolution crop around its footprint, and check it."""
    p = params
    shape = (int(gray.shape[0]), int(gray.shape[1]))
    mrows, mcols = int(mosaic.shape[0]), int(mosaic.shape[1])
    corners_r = np.array([0.0, 0.0, shape[0] - 1.0, shape[0] - 1.0])
    corners_c = np.array([0.0, shape[1] - 1.0, 0.0, shape[1] - 1.0])
    fr, fc = project_points(h_coarse, corners_r, corners_c)
    ext = p.fine_margin_fraction * max(fr.max() - fr.min(), fc.max() - fc.min()) + 4 * factor
    r0 = int(max(0, math.floor(fr.min() - ext)))
    r1 = int(min(mrows, math.ceil(fr.max() + ext) + 1))
    c0 = int(max(0, math.floor(fc.min() - ext)))
    c1 = int(min(mcols, math.ceil(fc.max() + ext) + 1))
    if r1 - r0 < 16 or c1 - c0 < 16:
        raise RegistrationError("fine match: the coarse footprint lies outside the mosaic.")
    fine_factor = max(1, math.floor(homography_geometry(h_coarse, shape)["scale"]))
    crop = _read_gray(mosaic, r0, r1, c0, c1, factor=fine_factor)
    crop_to_full = _translation(r0, c0) @ _scale_matrix(fine_factor)
    crop_feats = _Features(crop, max_features=p.max_features)
    phone_feats = _Features(gray, max_features=p.max_features)
    q, t = crop_feats.match(phone_feats, ratio=p.ratio)
    if q.shape[0] < p.min_inliers:
        raise RegistrationError(f"fine match: too few matches ({q.shape[0]} < {p.min_inliers}).")
    h, inl = _fit_homography(q, t, params=p)
    n_in = int(inl.sum())
    if h is None or n_in < p.min_inliers:
        raise RegistrationError(f"fine match: too few RANSAC inliers ({n_in} < {p.min_inliers}).")
    h_full = crop_to_full @ h
    h_full = h_full / h_full[2, 2]
    geom = homography_geometry(h_full, shape)
    _check(geom, nominal_scale=nominal, params=p, stage="fine match")
    # reprojection error of the inliers, expressed in phone pixels
    pr, pc = project_points(h_full, q[inl, 1], q[inl, 0])
    tr, tc = project_points(crop_to_full, t[inl, 1], t[inl, 0])
    reproj = float(np.sqrt(np.mean((pr - tr) ** 2 + (pc - tc) ** 2))) / geom["scale"]
    if reproj > p.max_reprojection_px:
        raise RegistrationError(
            f"fine match: reprojection error {reproj:.2f} phone px exceeds {p.max_reprojection_px:.2f} px."
        )
    fr, fc = project_points(h_full, corners_r, corners_c)
    footprint = np.stack([fr, fc], axis=1)
    inside = _inside_fraction(footprint[[0, 1, 3, 2]], (mrows, mcols))
    if inside < p.min_inside_fraction:
        raise RegistrationError(
            f"fine match: only {100 * inside:.0f}% of the capture lies inside the mosaic "
            f"(need {100 * p.min_inside_fraction:.0f}%)."
        )
    return _FineMatch(h_full, geom, n_in, int(q.shape[0]), reproj, footprint)


def _inside_fraction(polygon_rc: F64, shape: tuple[int, int]) -> float:
    """Fraction of a convex quadrilateral's area (corners in order, (row, col)) inside [0, shape)."""
    poly = polygon_rc[:, ::-1].astype(np.float32)  # (x, y)
    area = abs(cv2.contourArea(poly))
    if area <= 0:
        return 0.0
    rect = np.array([[0, 0], [shape[1], 0], [shape[1], shape[0]], [0, shape[0]]], np.float32)
    inter, _ = cv2.intersectConvexConvex(poly, rect)
    return float(inter) / area
