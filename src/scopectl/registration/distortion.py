"""The stationary part of the phone's distortion: the mean shift map over many captures.

The paper (Discussion and Supplementary Fig. 3) suggests averaging the block-shift correction maps of
many captures of one rig and applying the mean as a fixed correction to new captures.  Each capture's
registration says where the content belonging at mosaic point ``H(p)`` was found in the phone image;
expressed on the phone sensor, this is the distortion

    δ(p) = H⁻¹(H(p) + D(H(p))) − p        (phone pixels)

with ``H`` the capture's homography and ``D`` its elastic displacement field.  Because each capture's
homography absorbs a slightly different projective part of the distortion (it depends on where its
SIFT matches lie), the best-fitting first-order projective part (affine + perspective terms) is
removed from each capture's δ before averaging; what remains — barrel or
pincushion distortion, field-dependent shifts — is the same for every capture of the rig.

A :class:`DistortionMap` is applied as ``corrected(p) = raw(p + δ̄(p))``; with it, the homography of a
new capture is fitted to undistorted content and only the non-stationary rest is left to the elastic
step (or nothing, when no benchtop image exists).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

from scopectl.errors import InputFileError, RegistrationError, ScopectlError, StoreError
from scopectl.registration.elastic import DisplacementField
from scopectl.registration.fov import project_points
from scopectl.registration.pair import PairGeometry
from scopectl.store.h5safe import attr_int, open_h5, reading

__all__ = [
    "DistortionAccumulator",
    "DistortionMap",
    "capture_distortion",
    "load_distortion_map",
    "remove_projective_part",
]

F32 = NDArray[np.float32]
F64 = NDArray[np.float64]

FORMAT = "scopectl-distortion-map"
SCHEMA_VERSION = 1


def _sample_shift_map(shift_map: F32, geometry: PairGeometry, rows: F64, cols: F64) -> tuple[F64, F64]:
    """The displacement D (mosaic pixels) at target-crop points, interpolated from the stored map."""
    lf = float(geometry.ratio)
    mi = ((rows - (lf - 1) / 2) / lf).astype(np.float32)
    mj = ((cols - (lf - 1) / 2) / lf).astype(np.float32)
    shape = mi.shape
    mi2, mj2 = mi.reshape(1, -1), mj.reshape(1, -1)
    dr = cv2.remap(shift_map[0], mj2, mi2, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE).reshape(shape)
    dc = cv2.remap(shift_map[1], mj2, mi2, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE).reshape(shape)
    return lf * dr.astype(np.float64), lf * dc.astype(np.float64)


def remove_projective_part(delta: F64, rows: F64, cols: F64, mask: NDArray[np.bool_]) -> F64:
    """``delta`` (2, ...) minus its least-squares first-order projective part over ``mask``.

    The part a homography can absorb, to first order: an affine map plus the perspective terms
    ``δr = -r (g c + h r)``, ``δc = -c (g c + h r)`` (8 parameters).  Coordinates are normalised
    for conditioning.
    """
    r0, c0 = float(rows[mask].mean()), float(cols[mask].mean())
    sc = max(float(np.ptp(rows[mask])), float(np.ptp(cols[mask])), 1.0)
    r = (rows - r0) / sc
    c = (cols - c0) / sc
    one, zero = np.ones_like(r), np.zeros_like(r)
    # columns: a0 a1 a2 (rows), b0 b1 b2 (cols), g, h
    basis_r = np.stack([one, r, c, zero, zero, zero, -r * c, -r * r], axis=-1)
    basis_c = np.stack([zero, zero, zero, one, r, c, -c * c, -c * r], axis=-1)
    a = np.concatenate([basis_r[mask], basis_c[mask]])
    y = np.concatenate([delta[0][mask], delta[1][mask]])
    coef, *_ = np.linalg.lstsq(a, y, rcond=None)
    return np.stack([delta[0] - basis_r @ coef, delta[1] - basis_c @ coef])


def capture_distortion(
    *,
    homography: F64,
    geometry: PairGeometry,
    shift_map: F32,
    phone_shape: tuple[int, int],
    spacing_px: int,
    remove_affine: bool = True,
) -> tuple[F64, NDArray[np.bool_]]:
    """One capture's distortion δ on a phone-sensor grid (nodes every ``spacing_px`` phone pixels).

    Returns (2, rows, cols) δ in phone pixels and the mask of nodes inside the registered target.
    """
    nr = (phone_shape[0] - 1) // spacing_px + 1
    nc = (phone_shape[1] - 1) // spacing_px + 1
    pr, pc = np.meshgrid(
        spacing_px * np.arange(nr, dtype=np.float64),
        spacing_px * np.arange(nc, dtype=np.float64),
        indexing="ij",
    )
    mr, mc = project_points(homography, pr, pc)
    xr = mr - geometry.target_origin_px[0]
    xc = mc - geometry.target_origin_px[1]
    rows_t, cols_t = geometry.target_shape_px
    inside = (xr >= 0) & (xr <= rows_t - 1) & (xc >= 0) & (xc <= cols_t - 1)
    dr, dc = _sample_shift_map(shift_map, geometry, xr, xc)
    qr, qc = project_points(np.linalg.inv(homography), mr + dr, mc + dc)
    delta = np.stack([qr - pr, qc - pc])
    if remove_affine and inside.sum() >= 8:
        delta = remove_projective_part(delta, pr, pc, inside)
    delta[:, ~inside] = 0.0
    return delta, inside


@dataclass(frozen=True)
class DistortionMap:
    """A mean phone distortion δ̄ on a grid of phone-sensor pixels (see the module docstring)."""

    values: F32
    count: NDArray[np.int32]
    spacing_px: int
    phone_shape: tuple[int, int]
    provenance: dict[str, Any]

    def field(self) -> DisplacementField:
        """δ̄ as a :class:`DisplacementField` over phone pixels."""
        return DisplacementField(self.values, (0.0, 0.0), float(self.spacing_px))

    def apply(self, phone_rgb: NDArray[np.uint8]) -> NDArray[np.uint8]:
        """Undistort a capture of this rig: ``corrected(p) = raw(p + δ̄(p))``.

        Raises
        ------
        RegistrationError
            If the capture's size differs from the map's.
        """
        if tuple(phone_rgb.shape[:2]) != self.phone_shape:
            raise RegistrationError(
                f"the distortion map was made for {self.phone_shape[0]}×{self.phone_shape[1]} px captures, "
                f"this one is {phone_rgb.shape[0]}×{phone_rgb.shape[1]} px; use a map of the same rig and settings."
            )
        pr, pc = np.meshgrid(
            np.arange(self.phone_shape[0], dtype=np.float32),
            np.arange(self.phone_shape[1], dtype=np.float32),
            indexing="ij",
        )
        dr, dc = self.field().sample(pr, pc)
        out = cv2.remap(phone_rgb, pc + dc, pr + dr, cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT_101)
        return np.asarray(out, dtype=np.uint8)

    def save(self, path: Path | str, *, force: bool = False) -> Path:
        """Write the map to an HDF5 file (refuses to overwrite unless ``force``)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            with open_h5(path, "w" if force else "x", what="distortion map") as h5:
                h5.attrs["format"] = FORMAT
                h5.attrs["schema_version"] = SCHEMA_VERSION
                h5.attrs["spacing_px"] = self.spacing_px
                h5.attrs["phone_shape"] = list(self.phone_shape)
                h5.attrs["provenance_json"] = json.dumps(self.provenance, sort_keys=True)
                h5.create_dataset("values", data=self.values)
                h5.create_dataset("count", data=self.count)
        except ScopectlError as exc:
            raise InputFileError(
                f"{path}: cannot write the distortion map ({exc.message}).", hint="Use --force to replace it."
            ) from None
        except OSError as exc:
            raise InputFileError(
                f"{path}: cannot write the distortion map ({exc}).", hint="Use --force to replace it."
            ) from None
        return path


def load_distortion_map(path: Path | str) -> DistortionMap:
    """Read a map written by :meth:`DistortionMap.save`.

    Raises
    ------
    InputFileError
        If the file is missing or not a distortion map.
    """
    path = Path(path)
    try:
        h5 = open_h5(path, "r", what="distortion map")
    except StoreError as exc:
        raise InputFileError(
            f"cannot read the distortion map: {exc.message}", hint="Check the path."
        ) from None
    try:
        with h5, reading(path, "the distortion map"):
            if h5.attrs.get("format") != FORMAT:
                raise InputFileError(
                    f"{path}: not a scopectl distortion map (format attribute missing or wrong)."
                )
            version = attr_int(h5, "schema_version")
            if version > SCHEMA_VERSION:
                raise InputFileError(
                    f"{path}: distortion map schema_version {version} is newer than this scopectl reads "
                    f"({SCHEMA_VERSION}).",
                    hint="Upgrade scopectl.",
                )
            values = np.asarray(h5["values"][()], np.float32)
            count = np.asarray(h5["count"][()], np.int32)
            spacing = int(h5.attrs["spacing_px"])
            shape = tuple(int(v) for v in h5.attrs["phone_shape"])
            prov = json.loads(str(h5.attrs["provenance_json"]))
    except StoreError as exc:  # reading() translated a damaged file
        raise InputFileError(
            f"cannot read the distortion map: {exc.message}", hint="Check the path."
        ) from None
    if values.ndim != 3 or values.shape[0] != 2 or len(shape) != 2:
        raise InputFileError(f"{path}: malformed distortion map (values {values.shape}).")
    return DistortionMap(values, count, spacing, (shape[0], shape[1]), prov)


class DistortionAccumulator:
    """Averages capture distortions into a :class:`DistortionMap`.

    Parameters
    ----------
    phone_shape
        Size of the captures (all must agree).
    spacing_px
        Grid spacing in phone pixels.
    """

    def __init__(self, phone_shape: tuple[int, int], *, spacing_px: int = 16) -> None:
        self.phone_shape = phone_shape
        self.spacing_px = spacing_px
        nr = (phone_shape[0] - 1) // spacing_px + 1
        nc = (phone_shape[1] - 1) // spacing_px + 1
        self._sum = np.zeros((2, nr, nc), np.float64)
        self._count = np.zeros((nr, nc), np.int32)
        self.sources: list[dict[str, Any]] = []

    def add(
        self,
        *,
        homography: F64,
        geometry: PairGeometry,
        shift_map: F32,
        phone_shape: tuple[int, int],
        source: dict[str, Any],
    ) -> None:
        """Add one registered capture."""
        if phone_shape != self.phone_shape:
            raise RegistrationError(
                f"capture {source} is {phone_shape[0]}×{phone_shape[1]} px; the mean map needs captures of one size "
                f"({self.phone_shape[0]}×{self.phone_shape[1]} px)."
            )
        delta, inside = capture_distortion(
            homography=homography,
            geometry=geometry,
            shift_map=shift_map,
            phone_shape=phone_shape,
            spacing_px=self.spacing_px,
        )
        self._sum += delta
        self._count += inside.astype(np.int32)
        self.sources.append(source)

    def result(self, *, min_count: int = 1) -> DistortionMap:
        """The mean map; nodes seen by fewer than ``min_count`` captures take the nearest valid value."""
        if not self.sources:
            raise RegistrationError("no registered captures to average; register some captures first.")
        valid = self._count >= min_count
        if not valid.any():
            raise RegistrationError(f"no part of the sensor was seen by {min_count} registered captures.")
        mean = np.zeros_like(self._sum)
        mean[:, valid] = self._sum[:, valid] / self._count[valid]
        if not valid.all():
            idx = ndimage.distance_transform_edt(~valid, return_distances=False, return_indices=True)
            mean = mean[:, idx[0], idx[1]]
        return DistortionMap(
            mean.astype(np.float32),
            self._count.copy(),
            self.spacing_px,
            self.phone_shape,
            {"captures": self.sources, "min_count": min_count, "projective_part_removed": True},
        )
