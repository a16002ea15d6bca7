"""Contract tests of the Benchtop interface: run on the simulated scope, and on a real one with

    pytest -m hardware tests/benchtop/test_contract.py --mm-config /path/to/scope.cfg

(The configuration must define a pixel size preset.)  On real hardware the tests only make small moves
around the current position and put the stage and focus back where they were.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from scopectl.errors import DeviceError
from scopectl.hardware.benchtop import AutofocusResult, Benchtop, FocusPlane, MemorySink, ScanRegion
from scopectl.hardware.benchtop.sim import (
    SimStageParams,
    SimulatedWorld,
    register_world,
    simulated_benchtop,
    simulated_config_text,
    unregister_world,
)
from support import require_option


@pytest.fixture(params=["simulated", "config", pytest.param("real", marks=pytest.mark.hardware)])
def bench(request: pytest.FixtureRequest, make_pattern: type, tmp_path: Path) -> Iterator[Benchtop]:
    world_name = f"contract-{id(request)}"
    if request.param == "real":
        bt = Benchtop.from_config(require_option(request.config, "--mm-config"))
    elif request.param == "config":  # the real loading path, with the simulated devices in a .cfg file
        world = SimulatedWorld(
            make_pattern(seed=9), stage=SimStageParams(time_scale=0.002), focus_plane=FocusPlane(0.0), seed=2
        )
        register_world(world_name, world)
        cfg = tmp_path / "sim.cfg"
        cfg.write_text(simulated_config_text(world=world_name, sensor_shape=(192, 256)))
        bt = Benchtop.from_config(cfg, pixel_size_um=0.37, mm_path=tmp_path)
    else:
        bt = simulated_benchtop(
            make_pattern(seed=9),
            seed=1,
            sensor_shape=(192, 256),
            stage=SimStageParams(time_scale=0.002),
            focus_plane=FocusPlane(5.0, 0.001, 0.0),
            start_z_um=5.0,
        )
    with bt:
        x, y, z = bt.position_um()
        try:
            yield bt
        finally:
            bt.move_xy_um(x, y)
            bt.set_z_um(z)
    unregister_world(world_name)


def test_snap_is_rgb8_of_the_frame_shape(bench: Benchtop) -> None:
    img = bench.snap()
    assert img.dtype == np.uint8
    assert img.shape == (*bench.frame_shape, 3)
    assert img.std() > 0
    assert bench.pixel_size_um > 0
    info = bench.info()
    assert info["camera"] and info["xy_stage"] and info["focus"]


def test_xy_moves_are_reported(bench: Benchtop) -> None:
    x, y, _ = bench.position_um()
    for dx, dy in [(20.0, 0.0), (20.0, 15.0), (0.0, 0.0)]:
        bench.move_xy_um(x + dx, y + dy)
        rx, ry, _ = bench.position_um()
        assert rx == pytest.approx(x + dx, abs=1.0)
        assert ry == pytest.approx(y + dy, abs=1.0)


def test_z_moves_are_reported(bench: Benchtop) -> None:
    z = bench.position_um()[2]
    bench.set_z_um(z + 2.0)
    assert bench.position_um()[2] == pytest.approx(z + 2.0, abs=0.1)
    bench.set_z_um(z)
    assert bench.position_um()[2] == pytest.approx(z, abs=0.1)


def test_autofocus_returns_a_result_near_the_start(bench: Benchtop) -> None:
    z = bench.position_um()[2]
    res = bench.autofocus()
    assert isinstance(res, AutofocusResult)
    assert res.scores
    if res.ok:
        lo = z - bench.autofocus_settings.range_um * (1 + bench.autofocus_settings.max_extensions)
        hi = z + bench.autofocus_settings.range_um * (1 + bench.autofocus_settings.max_extensions)
        assert lo <= res.z_um <= hi
        assert bench.position_um()[2] == pytest.approx(res.z_um, abs=0.1)
    else:
        assert res.reason
        assert bench.position_um()[2] == pytest.approx(z, abs=0.1)


def test_small_tile_scan_into_a_sink(bench: Benchtop) -> None:
    x, y, _ = bench.position_um()
    rows, cols = bench.frame_shape
    px = bench.pixel_size_um
    w, h = cols * px * 1.5, rows * px * 1.5
    region = ScanRegion(x, y, x + w, y + h)
    sink = MemorySink([])
    result = bench.scan(region, 0.2, sink, focus="fixed")
    assert result.plan.grid_shape == (2, 2)
    assert sorted((t.row, t.col) for t in sink.tiles) == [(0, 0), (0, 1), (1, 0), (1, 1)]
    for rec in sink.tiles:
        assert rec.rgb.shape == (rows, cols, 3)
        assert rec.pixel_size_um == pytest.approx(px)
        assert region.left_um - w <= rec.stage_x_um <= region.right_um + w
        assert np.isfinite(rec.stage_z_um)


def test_out_of_range_commands_raise_device_errors(bench: Benchtop) -> None:
    with pytest.raises(DeviceError):
        bench.move_xy_um(float("inf"), 0.0)
    with pytest.raises(DeviceError):
        bench.set_exposure_ms(0.0)
