"""Acquisition-time location check: find a fresh phone capture in the slide's mosaic, fast.

The capture is matched at reduced scale (SIFT + RANSAC via :func:`scopectl.registration.fov.match_fov`,
coarse search seeded by the planned position) against a feature index of the mosaic built once per
slide; the result is the capture centre in slide micrometres, or the reason it was not found.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from scopectl.errors import RegistrationError
from scopectl.registration.fov import FovParams, MosaicIndex, match_fov, project_points
from scopectl.store import SlideStore

__all__ = ["locate_in_mosaic"]

#: The mosaic index of the slide being acquired: (open h5 file, reduction factor, index).
_INDEX: list[tuple[Any, int, MosaicIndex]] = []

#: Faster, looser settings than the registration stage: this only has to say "it is there".
CHECK_PARAMS = FovParams(
    coarse_phone_px=160, min_inliers=12, max_reprojection_px=3.0, min_inside_fraction=0.75
)


def locate_in_mosaic(
    rgb: np.ndarray,
    store: SlideStore,
    phone_pixel_um: float,
    planned_xy_um: tuple[float, float] | None = None,
) -> tuple[bool, float, float, int, str]:
    """Locate ``rgb`` in the store's mosaic.

    Returns
    -------
    ok, x_um, y_um, inliers, reason
        The capture centre in slide µm when found; otherwise ``ok`` is False and ``reason`` says why.
    """
    info = store.mosaic_info()
    if info is None:
        return False, float("nan"), float("nan"), 0, "no mosaic"
    mosaic = store.mosaic()
    factor = MosaicIndex.factor_for(
        phone_shape=(int(rgb.shape[0]), int(rgb.shape[1])),
        phone_pixel_um=phone_pixel_um,
        mosaic_pixel_um=info.pixel_size_um,
        params=CHECK_PARAMS,
    )
    if not _INDEX or _INDEX[0][0] is not store.h5 or _INDEX[0][1] != factor:
        _INDEX[:] = [(store.h5, factor, MosaicIndex(mosaic, factor=factor))]
    index = _INDEX[0][2]
    prior = None
    if planned_xy_um is not None:
        prior = (
            (planned_xy_um[1] - info.origin_y_um) / info.pixel_size_um,
            (planned_xy_um[0] - info.origin_x_um) / info.pixel_size_um,
        )
    try:
        m = match_fov(
            rgb,
            mosaic,
            phone_pixel_um=phone_pixel_um,
            mosaic_pixel_um=info.pixel_size_um,
            params=CHECK_PARAMS,
            index=index,
            prior_center_px=prior,
        )
    except RegistrationError as exc:
        return False, float("nan"), float("nan"), 0, exc.message
    rows, cols = project_points(
        m.homography, np.array([(rgb.shape[0] - 1) / 2.0]), np.array([(rgb.shape[1] - 1) / 2.0])
    )
    x_um = info.origin_x_um + float(cols[0]) * info.pixel_size_um
    y_um = info.origin_y_um + float(rows[0]) * info.pixel_size_um
    return True, x_um, y_um, int(m.inliers), ""
