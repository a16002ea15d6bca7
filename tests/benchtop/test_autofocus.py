"""Software autofocus: the search itself, on the simulated scope, on empty fields, and inside an MDA run."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from scopectl.hardware.benchtop import (
    AutofocusSettings,
    FocusPlane,
    MemorySink,
    ScanRegion,
    focus_score,
    search_focus,
)
from scopectl.hardware.benchtop.sim import SimulatedBenchtop


def test_focus_score_falls_with_blur_and_ignores_exposure(make_pattern: Any) -> None:
    r = make_pattern(seed=2)
    sharp = r.render(center_x_um=200, center_y_um=200, focus_z_um=0, shape=(128, 128), exposure_ms=10, seed=1)
    dim = r.render(center_x_um=200, center_y_um=200, focus_z_um=0, shape=(128, 128), exposure_ms=5, seed=1)
    blurred = r.render(
        center_x_um=200, center_y_um=200, focus_z_um=4, shape=(128, 128), exposure_ms=10, seed=1
    )
    assert focus_score(sharp) > 3 * focus_score(blurred)
    assert focus_score(dim) == pytest.approx(focus_score(sharp), rel=0.25)
    assert focus_score(np.zeros((64, 64, 3), np.uint8)) == 0.0


def _curve(z_peak: float, noise: float, seed: int) -> Any:
    rng = np.random.default_rng(seed)

    def measure(z: float, level: int) -> float:  # a sharp peak with long tails, as defocus gives
        return 1.0 + 50.0 / (1.0 + ((z - z_peak) / 1.5) ** 2) + rng.normal(0, noise)

    return measure


@pytest.mark.parametrize("start", [-5.0, 0.0, 7.0, 60.0])
def test_search_finds_a_noisy_peak_from_far_away(start: float) -> None:
    res = search_focus(_curve(12.3, 0.05, seed=int(start) + 50), start_z_um=start, z_limits_um=(-100, 100))
    assert res.ok, res.reason
    assert res.z_um == pytest.approx(12.3, abs=0.3)
    assert res.peak_ratio > 10


def test_search_reports_no_contrast_instead_of_noise() -> None:
    rng = np.random.default_rng(0)
    res = search_focus(lambda z, level: 1.0 + rng.normal(0, 0.05), start_z_um=5.0)
    assert not res.ok
    assert res.reason.startswith("no contrast")
    assert res.z_um == 5.0


def test_search_stays_within_limits() -> None:
    seen: list[float] = []

    def measure(z: float, level: int) -> float:
        seen.append(z)
        return 1.0 + 10.0 * math.exp(-0.5 * ((z - 1.0) / 2.0) ** 2)

    res = search_focus(measure, start_z_um=0.0, z_limits_um=(-2.0, 50.0))
    assert res.ok
    assert min(seen) >= -2.0
    assert res.z_um == pytest.approx(1.0, abs=0.3)


def test_settings_are_validated() -> None:
    with pytest.raises(ValueError, match="decrease"):
        AutofocusSettings(steps_um=(1.0, 2.0))
    with pytest.raises(ValueError, match="positive"):
        AutofocusSettings(range_um=0)


@pytest.mark.parametrize("offset_um", [-14.0, -3.0, 5.0, 26.0])
def test_benchtop_autofocus_within_depth_of_field(sim_bench: SimulatedBenchtop, offset_um: float) -> None:
    world = sim_bench.world
    assert world is not None
    sim_bench.move_xy_um(150.0, 120.0)
    truth = world.focus_plane.z_at(*world.true_xy())
    res = sim_bench.autofocus(start_z_um=truth + offset_um)
    assert res.ok, res.reason
    assert abs(res.z_um - truth) < 0.5  # depth of field of the 20x/0.75 objective: ~1.4 um
    assert sim_bench.position_um()[2] == pytest.approx(res.z_um)


def test_benchtop_autofocus_on_an_empty_field_keeps_the_start(
    sim_bench: SimulatedBenchtop, make_pattern: Any
) -> None:
    world = sim_bench.world
    assert world is not None
    world.renderer = make_pattern(seed=1, blank_x_um=0.0)  # bare glass everywhere right of x = 0
    sim_bench.move_xy_um(300.0, 100.0)
    res = sim_bench.autofocus(start_z_um=17.0)
    assert not res.ok
    assert "no contrast" in res.reason
    assert sim_bench.position_um()[2] == pytest.approx(17.0)


def test_focus_map_recovers_a_tilted_slide(sim_bench: SimulatedBenchtop) -> None:
    world = sim_bench.world
    assert world is not None
    pts = [(100.0, 100.0), (700.0, 100.0), (700.0, 500.0), (100.0, 500.0), (400.0, 300.0)]
    fmap = sim_bench.focus_map(pts)
    assert fmap.plane is not None
    assert all(r.ok for _, _, r in fmap.points)
    for x, y in [(100.0, 500.0), (400.0, 300.0), (650.0, 150.0)]:
        assert fmap.plane.z_at(x, y) == pytest.approx(world.focus_plane.z_at(x, y), abs=0.4)
    assert FocusPlane.fit(np.array([[0.0, 0.0, 2.0]])) == FocusPlane(2.0, 0.0, 0.0)


def test_autofocus_inside_the_mda_run_follows_the_tilt(sim_bench: SimulatedBenchtop) -> None:
    world = sim_bench.world
    assert world is not None
    sink = MemorySink([])
    region = ScanRegion(100.0, 100.0, 250.0, 180.0)
    result = sim_bench.scan(region, 0.15, sink, focus="each")
    assert result.plan.grid_shape == (1, 2)
    assert len(result.autofocus) == 2
    assert all(r.ok for _, r in result.autofocus)
    for rec in sink.tiles:
        truth = world.truth_for(rec.stage_x_um, rec.stage_y_um)
        assert abs(truth.focus_offset_um) < 0.5
