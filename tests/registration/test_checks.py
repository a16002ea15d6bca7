"""Capture checks: alignment judged against the benchtop degraded to the phone's resolution."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from numpy.typing import NDArray

from scopectl.registration.checks import (
    CaptureChecks,
    CaptureLimits,
    Flag,
    consistency,
    fit_phone_blur,
    judge,
)
from scopectl.registration.pair import register_pair
from scopectl.registration.synthetic import phone_capture

BENCH_UM = 0.37


def _checks(**kw: float) -> CaptureChecks:
    base = {
        "coverage": 0.9,
        "residual_px": 0.3,
        "consistency": 0.95,
        "inlier_ratio": 0.8,
        "quality": 0.9,
        "blur_sigma_px": 2.0,
    }
    base.update(kw)
    return CaptureChecks(**base)  # type: ignore[arg-type]


def test_judge_names_each_missed_limit_and_the_option_that_admits_it() -> None:
    assert judge(_checks(), CaptureLimits()) == []
    flags = judge(_checks(residual_px=1.734, coverage=0.2, inlier_ratio=0.05), CaptureLimits())
    assert [f.check for f in flags] == ["min_coverage", "max_residual_px", "min_inlier_ratio"]
    by = {f.check: f for f in flags}
    assert by["max_residual_px"].describe() == "residual 1.73 px > 1.5 px"
    assert by["max_residual_px"].admit_with() == "--max-residual-px 1.74"
    assert by["min_coverage"].describe() == "coverage 20% < 30%"
    assert by["min_coverage"].admit_with() == "--min-coverage 0.19"
    # the suggested value really admits the capture
    loosened = CaptureLimits(max_residual_px=1.74, min_coverage=0.19, min_inlier_ratio=0.04)
    assert judge(_checks(residual_px=1.734, coverage=0.2, inlier_ratio=0.05), loosened) == []
    # no kept block: no residual to speak of, which fails the residual limit
    assert judge(_checks(residual_px=None), CaptureLimits())[0].check == "max_residual_px"  # type: ignore[arg-type]
    assert Flag("min_quality", 0.3, 0.5, "--min-quality").describe() == "quality 0.30 < 0.5"


def test_the_residual_limit_grows_with_the_capture_blur_and_its_hint_still_admits() -> None:
    # σ 3.5 px: the 1.5 px limit becomes 2.1 px; a 1.63 px residual passes, 2.5 px does not
    assert judge(_checks(residual_px=1.63, blur_sigma_px=3.5), CaptureLimits()) == []
    (f,) = judge(_checks(residual_px=2.5, blur_sigma_px=3.5), CaptureLimits())
    assert f.describe() == "residual 2.50 px > 2.10 px (--max-residual-px 1.5 × 1.40 for the capture's blur)"
    assert f.admit_with() == "--max-residual-px 1.79"
    assert judge(_checks(residual_px=2.5, blur_sigma_px=3.5), CaptureLimits(max_residual_px=1.79)) == []
    # no blurrier than the reference: the limit as given
    assert judge(_checks(residual_px=1.63, blur_sigma_px=2.5), CaptureLimits())[0].limit == 1.5


def test_consistency_counts_blocks_near_the_median_shift() -> None:
    shift = np.zeros((2, 4, 4), np.float32)
    shift[0, 0, :2] = 3.0  # two blocks disagree by 3 px
    kept = np.ones((4, 4), bool)
    assert consistency(shift, kept, tolerance_px=1.0) == pytest.approx(14 / 16)
    kept[0, :2] = False
    assert consistency(shift, kept, tolerance_px=1.0) == 1.0
    assert consistency(shift, np.zeros((4, 4), bool), tolerance_px=1.0) == 0.0


def test_fit_phone_blur_recovers_a_known_blur() -> None:
    rng = np.random.default_rng(0)
    ref = cv2.GaussianBlur(rng.random((240, 240)).astype(np.float32), (0, 0), 1.0) * 200
    margin = 8
    for sigma in (0.0, 2.5, 5.0):
        blurred = ref if sigma == 0 else cv2.GaussianBlur(ref, (0, 0), sigma)
        moving = cv2.copyMakeBorder(blurred, margin, margin, margin, margin, cv2.BORDER_REFLECT_101)
        zero = np.zeros(ref.shape, np.float32)
        assert fit_phone_blur(moving, ref, margin_px=margin, field_rc=(zero, zero)) == sigma


def test_a_blurry_phone_is_not_flagged_for_its_optics(mosaic: NDArray[np.uint8]) -> None:
    """A well-aligned capture through a lens four times blurrier keeps passing every check."""
    cap = phone_capture(
        mosaic,
        center_px=(800.0, 800.0),
        shape=(448, 448),
        scale=2.5,
        rotation_deg=3.0,
        distortion_px=1.5,
        seed=4,
    )
    for sigma in (0.0, 1.6):  # phone pixels; 1.6 px ≈ 1.5 µm, a cheap clip-on lens
        rgb = cap.rgb if sigma == 0 else cv2.GaussianBlur(cap.rgb, (0, 0), sigma)
        pair = register_pair(rgb, mosaic, phone_pixel_um=2.5 * BENCH_UM, mosaic_pixel_um=BENCH_UM)
        assert pair.checks is not None and pair.flags == [], pair.failure
        assert pair.checks.coverage > 0.8 and pair.checks.consistency > 0.8
        assert pair.checks.residual_px is not None and pair.checks.residual_px < 0.6
        if sigma:
            assert pair.checks.blur_sigma_px >= 2.5  # the benchtop was degraded to match
