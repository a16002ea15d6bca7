"""FOV matching: known homographies are recovered; implausible matches fail with a reason."""

from __future__ import annotations

import numpy as np
import pytest
from numpy.typing import NDArray

from scopectl.errors import RegistrationError
from scopectl.registration.fov import FovParams, MosaicIndex, homography_geometry, match_fov, project_points
from scopectl.registration.synthetic import phone_capture

BENCH_UM = 0.37


def _grid_error(h: NDArray[np.float64], cap: object, shape: tuple[int, int]) -> float:
    rr, cc = np.meshgrid(np.arange(0, shape[0], 32.0), np.arange(0, shape[1], 32.0), indexing="ij")
    er, ec = project_points(h, rr, cc)
    h_true = cap.homography  # type: ignore[attr-defined]
    tr, tc = project_points(h_true, rr, cc)
    return float(np.sqrt(np.mean((er - tr) ** 2 + (ec - tc) ** 2)))


@pytest.mark.parametrize(("scale", "rotation_deg"), [(1.09, 3.0), (2.5, -8.0)])
def test_locates_a_capture_and_estimates_its_scale(
    mosaic: NDArray[np.uint8], scale: float, rotation_deg: float
) -> None:
    shape = (512, 512) if scale < 2 else (400, 400)
    cap = phone_capture(
        mosaic,
        center_px=(820, 760),
        shape=shape,
        scale=scale,
        rotation_deg=rotation_deg,
        distortion_px=0.0,
        seed=4,
    )
    # the nominal pixel is 8 % off: the scale is estimated, not assumed
    m = match_fov(cap.rgb, mosaic, phone_pixel_um=BENCH_UM * scale * 1.08, mosaic_pixel_um=BENCH_UM)
    assert m.scale == pytest.approx(scale, rel=2e-3)
    assert m.rotation_deg == pytest.approx(rotation_deg, abs=0.1)
    assert m.inliers >= 20
    assert _grid_error(m.homography, cap, shape) < 0.5
    centre = m.footprint_px.mean(axis=0)
    assert centre == pytest.approx([820, 760], abs=2.0)


def test_a_shared_index_and_a_stage_prior_give_the_same_answer(mosaic: NDArray[np.uint8]) -> None:
    cap = phone_capture(
        mosaic, center_px=(500, 1100), shape=(384, 384), scale=1.09, distortion_px=0.0, seed=5
    )
    params = FovParams()
    factor = MosaicIndex.factor_for(
        phone_shape=(384, 384), phone_pixel_um=0.4, mosaic_pixel_um=BENCH_UM, params=params
    )
    index = MosaicIndex(mosaic, factor=factor)
    a = match_fov(cap.rgb, mosaic, phone_pixel_um=0.4, mosaic_pixel_um=BENCH_UM, index=index)
    b = match_fov(
        cap.rgb, mosaic, phone_pixel_um=0.4, mosaic_pixel_um=BENCH_UM, prior_center_px=(520.0, 1080.0)
    )
    assert _grid_error(a.homography, cap, (384, 384)) < 0.5
    assert _grid_error(b.homography, cap, (384, 384)) < 0.5


def test_a_capture_of_other_tissue_is_reported_not_matched(
    mosaic: NDArray[np.uint8], other_tissue: NDArray[np.uint8]
) -> None:
    cap = phone_capture(other_tissue, center_px=(400, 400), shape=(384, 384), scale=1.09, seed=6)
    with pytest.raises(RegistrationError, match="inliers|matches|implausible"):
        match_fov(cap.rgb, mosaic, phone_pixel_um=0.4, mosaic_pixel_um=BENCH_UM)


def test_an_implausible_scale_is_rejected(mosaic: NDArray[np.uint8]) -> None:
    cap = phone_capture(mosaic, center_px=(800, 800), shape=(384, 384), scale=1.09, distortion_px=0.0, seed=7)
    # claims a phone pixel twice as large as it is: the fitted scale falls outside the plausible range
    with pytest.raises(RegistrationError, match="scale|inliers|matches"):
        match_fov(
            cap.rgb,
            mosaic,
            phone_pixel_um=0.8,
            mosaic_pixel_um=BENCH_UM,
            params=FovParams(scale_tolerance=0.2),
        )


def test_homography_geometry_reads_scale_rotation_and_mirroring() -> None:
    a = np.deg2rad(10.0)
    h = np.array([[2 * np.cos(a), -2 * np.sin(a), 5.0], [2 * np.sin(a), 2 * np.cos(a), 7.0], [0.0, 0.0, 1.0]])
    g = homography_geometry(h, (100, 100))
    assert g["scale"] == pytest.approx(2.0)
    assert g["rotation_deg"] == pytest.approx(10.0)
    assert g["aspect"] == pytest.approx(1.0)
    assert g["perspective"] == pytest.approx(0.0, abs=1e-12)
    mirrored = h @ np.diag([-1.0, 1.0, 1.0])
    assert homography_geometry(mirrored, (100, 100))["determinant"] < 0
    sheared = h @ np.array([[1.0, 0.3, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    assert homography_geometry(sheared, (100, 100))["aspect"] > 1.2
