"""Physical checks of the benchtop and phone models: resolution, depth of field, determinism."""

from __future__ import annotations

import numpy as np
import pytest

from scopectl.twin import BenchtopModel, Illumination, PhoneModel, make_slide
from scopectl.twin.slide import BarTargetSlide


def modulation(profile: np.ndarray, *, period_px: float) -> float:
    """Amplitude of the fundamental at ``period_px`` relative to the mean (a sinusoid's Michelson contrast).

    The period is searched within ±8% to absorb the phone's magnification and distortion.
    """
    x = np.arange(profile.size, dtype=np.float64)
    prof = profile.astype(np.float64) - profile.mean()
    best = 0.0
    for p in np.linspace(0.92 * period_px, 1.08 * period_px, 33):
        w = np.exp(-2j * np.pi * x / p)
        best = max(best, 2.0 * abs(np.mean(prof * w)))
    return best / float(profile.mean())


def bench_profile(period_um: float, *, focus_z_um: float = 0.0) -> tuple[np.ndarray, float]:
    bench = BenchtopModel()
    p = bench.pixel_size_um
    # bar edges on pixel boundaries: with W even, boundaries sit at centre + k·p
    target = BarTargetSlide(period_um=period_um, phase_um=1000.0)
    img = bench.render(
        target, center_x_um=1000.0, center_y_um=1000.0, focus_z_um=focus_z_um, shape=(64, 256), seed=1
    )
    return img[:, :, 1].astype(np.float64).mean(axis=0), period_um / p


def phone_profile(period_um: float, *, focus_z_um: float = 0.0) -> tuple[np.ndarray, float]:
    phone = PhoneModel()
    target = BarTargetSlide(period_um=period_um, phase_um=0.3)
    cap = phone.capture(
        target,
        center_x_um=1000.0,
        center_y_um=1000.0,
        focus_z_um=focus_z_um,
        illumination=Illumination.white(),
        seed=4,
        shape=(128, 256),
    )
    # rows near the axis; a few rows only, so the slight rotation does not wash out the bars
    return cap.rgb[60:68, :, 1].astype(np.float64).mean(axis=0), period_um / phone.pixel_size_um


def test_benchtop_pixel_size_and_output() -> None:
    bench = BenchtopModel()
    assert bench.pixel_size_um == pytest.approx(0.37)
    img = bench.render(make_slide("lung", seed=1), center_x_um=2000, center_y_um=2000, shape=(64, 96))
    assert img.shape == (64, 96, 3) and img.dtype == np.uint8


def test_benchtop_resolves_0_74_um_period() -> None:
    prof, period_px = bench_profile(0.74)
    assert modulation(prof, period_px=period_px) > 0.2


def test_phone_resolves_1_74_um_but_not_1_0_um() -> None:
    prof, period_px = phone_profile(1.74)
    assert modulation(prof, period_px=period_px) > 0.08  # usable contrast at the 0.87 µm half-pitch
    prof, period_px = phone_profile(1.0)
    assert modulation(prof, period_px=period_px) < 0.03


def test_defocus_blurs_the_benchtop_far_more_than_the_phone() -> None:
    period = 3.0
    b0 = modulation(*bench_profile(period)[:1], period_px=period / 0.37)
    b3 = modulation(*bench_profile(period, focus_z_um=3.0)[:1], period_px=period / 0.37)
    phone = PhoneModel()
    p0 = modulation(*phone_profile(period)[:1], period_px=period / phone.pixel_size_um)
    p3 = modulation(*phone_profile(period, focus_z_um=3.0)[:1], period_px=period / phone.pixel_size_um)
    assert b0 > 0.5 and p0 > 0.2
    assert b3 / b0 < 0.1  # shallow depth of field at 0.75 NA
    assert p3 / p0 > 0.4  # the phone's low NA keeps a few µm of defocus sharp


def test_phone_psf_is_sharper_at_the_centre_than_toward_the_edge() -> None:
    phone = PhoneModel()
    target = BarTargetSlide(period_um=2.2, phase_um=0.1)
    period_px = 2.2 / phone.pixel_size_um
    contrast = []
    for offset in ((0.0, 0.0), (0.0, -1300.0)):  # axis at the centre, then ~0.5 mm to the left
        cap = phone.capture(
            target,
            center_x_um=1000.0,
            center_y_um=1000.0,
            illumination=Illumination.white(),
            seed=2,
            shape=(64, 192),
            axis_offset_px=offset,
        )
        prof = cap.rgb[28:36, 32:160, 1].astype(np.float64).mean(axis=0)
        contrast.append(modulation(prof, period_px=period_px))
    assert contrast[0] > 1.5 * contrast[1]


def test_renders_are_deterministic_and_seeds_differ() -> None:
    slide = make_slide("blood", seed=3)
    bench = BenchtopModel()
    a = bench.render(slide, center_x_um=1500, center_y_um=1500, shape=(48, 48), seed=1)
    b = bench.render(slide, center_x_um=1500, center_y_um=1500, shape=(48, 48), seed=1)
    c = bench.render(slide, center_x_um=1500, center_y_um=1500, shape=(48, 48), seed=2)
    np.testing.assert_array_equal(a, b)
    assert np.any(a != c)
    phone = PhoneModel()
    kw = {
        "center_x_um": 1500.0,
        "center_y_um": 1500.0,
        "illumination": Illumination.white(),
        "shape": (64, 64),
    }
    p1 = phone.capture(slide, seed=7, **kw)  # type: ignore[arg-type]
    p2 = phone.capture(slide, seed=7, **kw)  # type: ignore[arg-type]
    p3 = phone.capture(slide, seed=8, **kw)  # type: ignore[arg-type]
    assert p1.dng == p2.dng and p1.jpeg == p2.jpeg
    assert p1.dng != p3.dng and not np.array_equal(p1.rgb, p3.rgb)


def test_benchtop_tiles_join_without_seams() -> None:
    """Frames are rendered in tiles with blur margins; the tiling must not show."""
    from scopectl.twin import BenchtopParams

    slide = make_slide("pap", seed=2)
    quiet = {"full_well_e": 1e12, "read_noise_e": 0.0}
    whole = BenchtopModel(BenchtopParams(tile_px=4096, **quiet)).render(  # type: ignore[arg-type]
        slide, center_x_um=2000, center_y_um=2000, focus_z_um=1.0, shape=(200, 240)
    )
    tiled = BenchtopModel(BenchtopParams(tile_px=64, **quiet)).render(  # type: ignore[arg-type]
        slide, center_x_um=2000, center_y_um=2000, focus_z_um=1.0, shape=(200, 240)
    )
    assert np.abs(whole.astype(int) - tiled.astype(int)).max() <= 1
