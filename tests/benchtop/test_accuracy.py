"""Acceptance on the product path: the digital twin's slide on the simulated benchtop.

- autofocus finds focus within the depth of field from several starting heights;
- a tile scan (with a stage that misses its targets by a few µm) plus stitching places the tiles to
  better than 0.5 benchtop pixels RMS (``docs/stitching.md`` has the full-size measurement, by ``benchmarks/stitching_accuracy.py``).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from scopectl.hardware.benchtop import FocusPlane
from scopectl.hardware.benchtop.sim import SimStageParams, SimulatedBenchtop, simulated_benchtop
from scopectl.twin import BenchtopModel, Slide, make_slide
from support import load_benchmark


@pytest.fixture(scope="module")
def lung() -> Slide:
    return make_slide("lung", seed=0)


@pytest.fixture
def twin_bench(lung: Slide) -> Iterator[SimulatedBenchtop]:
    with simulated_benchtop(
        lung,
        seed=4,
        sensor_shape=(256, 256),
        stage=SimStageParams(time_scale=0.0),
        focus_plane=FocusPlane(40.0, 0.0008, -0.0005),
        start_z_um=40.0,
    ) as bench:
        yield bench


@pytest.mark.slow
@pytest.mark.parametrize("offset_um", [-12.0, 4.0, 18.0])
def test_autofocus_on_the_twin_within_depth_of_field(
    twin_bench: SimulatedBenchtop, lung: Slide, offset_um: float
) -> None:
    world = twin_bench.world
    assert world is not None
    twin_bench.move_xy_um(2000.0, 2000.0)
    x, y = world.true_xy()
    px = twin_bench.pixel_size_um
    # best focus = tilted focal plane + the slide's own (wavy) surface under the focusing ROI
    surface = lung.render(
        x0_um=x - 128 * px, y0_um=y - 128 * px, shape=(256, 256), pixel_size_um=px
    ).surface_um
    truth = world.focus_plane.z_at(x, y) + float(surface.mean())
    res = twin_bench.autofocus(start_z_um=truth + offset_um)
    assert res.ok, res.reason
    dof = BenchtopModel().depth_of_field_um()
    assert abs(res.z_um - truth) < dof / 2


@pytest.mark.slow
def test_scan_and_stitch_the_twin_below_half_a_pixel() -> None:
    out = load_benchmark("stitching_accuracy").measure_stitching_accuracy(
        seed=1, rows=3, cols=3, tile_px=384, overlap=0.1, position_error_um=1.5, focus="map", focus_points=3
    )
    assert out["grid"] == [3, 3]
    assert out["rms_nominal_px"] > 2.0  # the stage really misses by a few µm...
    assert out["rms_px"] < 0.5  # ...and stitching recovers the true positions
    assert out["stitch"]["pairs_used"] >= 10
