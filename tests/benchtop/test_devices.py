"""The simulated devices and the Benchtop's error boundary, through UniMMCore."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from scopectl.errors import ConfigError, DeviceError, DeviceTimeoutError
from scopectl.hardware.benchtop import Benchtop, FocusPlane
from scopectl.hardware.benchtop.sim import (
    SimStageParams,
    SimulatedBenchtop,
    SimulatedWorld,
    register_world,
    simulated_benchtop,
    simulated_config_text,
    unregister_world,
)


def test_stage_reports_commanded_position_but_lands_with_error_and_backlash(
    sim_bench: SimulatedBenchtop,
) -> None:
    world = sim_bench.world
    assert world is not None
    errors = []
    for x, y in [(100.0, 50.0), (300.0, 80.0), (200.0, 20.0), (400.0, 400.0)]:
        sim_bench.move_xy_um(x, y)
        rx, ry, _ = sim_bench.position_um()
        assert (rx, ry) == pytest.approx((x, y))
        tx, ty = world.true_xy()
        errors.append((tx - x, ty - y))
    err = np.array(errors)
    assert np.abs(err).max() > 0.3  # positioning error is simulated
    assert np.abs(err).max() < 10.0


def test_backlash_is_taken_up_by_unidirectional_approach(pattern: Any) -> None:
    stage = SimStageParams(time_scale=0.0, position_error_um=0.0, backlash_um=4.0)
    with simulated_benchtop(pattern, sensor_shape=(64, 64), stage=stage, approach_um=20.0) as bench:
        world = bench.world
        assert world is not None
        bench.move_xy_um(100.0, 100.0)
        right = world.true_xy()
        bench.move_xy_um(300.0, 300.0)
        bench.move_xy_um(100.0, 100.0)  # arrives from the other side, but approaches from below
        assert world.true_xy() == pytest.approx(right)
    with simulated_benchtop(pattern, sensor_shape=(64, 64), stage=stage, approach_um=0.0) as bench:
        world = bench.world
        assert world is not None
        bench.move_xy_um(100.0, 100.0)
        right = world.true_xy()
        bench.move_xy_um(300.0, 300.0)
        bench.move_xy_um(100.0, 100.0)
        assert np.subtract(world.true_xy(), right) == pytest.approx((4.0, 4.0))


def test_moves_outside_the_limits_raise_device_error(sim_bench: SimulatedBenchtop) -> None:
    with pytest.raises(
        DeviceError, match=r"benchtop simulated: cannot move the stage .*outside the stage limits"
    ):
        sim_bench.move_xy_um(1e7, 0.0)
    with pytest.raises(DeviceError, match="focus drive limits"):
        sim_bench.set_z_um(1e6)
    with pytest.raises(DeviceError, match="not finite"):
        sim_bench.move_xy_um(float("nan"), 0.0)


def test_a_slow_stage_times_out(pattern: Any) -> None:
    slow = SimStageParams(time_scale=1.0, xy_speed_um_per_s=1000.0)
    with (
        simulated_benchtop(pattern, sensor_shape=(64, 64), stage=slow, timeout_s=0.05) as bench,
        pytest.raises(DeviceTimeoutError, match="timed out"),
    ):
        bench.move_xy_um(5000.0, 0.0)  # 5 s of travel


def test_travel_takes_time_and_the_stage_is_busy_meanwhile(pattern: Any) -> None:
    stage = SimStageParams(time_scale=1.0, xy_speed_um_per_s=100.0, xy_settle_ms=0.0)
    with simulated_benchtop(pattern, sensor_shape=(64, 64), stage=stage) as bench:
        core = bench.core
        core.setXYPosition(400.0, 0.0)  # 4 s of travel
        assert core.deviceBusy("XY")
        core.stop("XY")
        assert not core.deviceBusy("XY")
        x_stopped = bench.position_um()[0]
        assert 0.0 <= x_stopped < 400.0
        bench.move_xy_um(x_stopped + 1.0, 0.0)  # a short move completes within the timeout
        assert bench.position_um()[0] == pytest.approx(x_stopped + 1.0)


def test_camera_noise_changes_per_snap_and_closed_shutter_is_dark(sim_bench: SimulatedBenchtop) -> None:
    a = sim_bench.snap().astype(np.int16)
    b = sim_bench.snap().astype(np.int16)
    assert a.shape == (256, 256, 3)
    assert np.any(a != b)
    assert np.corrcoef(a[..., 1].ravel(), b[..., 1].ravel())[0, 1] > 0.9
    core = sim_bench.core
    core.setAutoShutter(False)
    core.setShutterOpen(False)
    dark = sim_bench.snap()
    assert dark.mean() < 5
    core.setAutoShutter(True)
    assert sim_bench.snap().mean() > 50
    assert sim_bench.world is not None
    seeds = [t.seed for t in sim_bench.world.snap_log]
    assert len(set(seeds)) == len(seeds)


def test_exposure_and_roi(sim_bench: SimulatedBenchtop) -> None:
    base = sim_bench.snap().mean()
    sim_bench.set_exposure_ms(5.0)
    assert sim_bench.exposure_ms() == 5.0
    assert sim_bench.snap().mean() < 0.7 * base
    sim_bench.core.setROI(10, 20, 64, 32)
    assert sim_bench.frame_shape == (32, 64)
    assert sim_bench.snap().shape == (32, 64, 3)
    with pytest.raises(DeviceError, match="exposure"):
        sim_bench.set_exposure_ms(-1.0)


CFG = simulated_config_text(world="{world}", sensor_shape=(96, 128))


@pytest.fixture
def cfg_world(pattern: Any, fast_stage: SimStageParams) -> Iterator[SimulatedWorld]:
    world = SimulatedWorld(pattern, stage=fast_stage, focus_plane=FocusPlane(0.0), seed=5)
    register_world("test-cfg", world)
    yield world
    unregister_world("test-cfg")


def test_from_config_loads_python_devices(tmp_path: Path, cfg_world: SimulatedWorld) -> None:
    cfg = tmp_path / "bench.cfg"
    cfg.write_text(CFG.format(world="test-cfg"))
    with Benchtop.from_config(cfg, pixel_size_um=0.37, mm_path=tmp_path) as bench:
        info = bench.info()
        assert info["camera"] == "Camera"
        assert info["pixel_size_um"] == pytest.approx(0.37)
        assert bench.frame_shape == (96, 128)
        bench.move_xy_um(50.0, 60.0)
        img = bench.snap()
        assert img.shape == (96, 128, 3)
        assert img.std() > 5
        assert cfg_world.snap_log[-1].commanded_x_um == 50.0


def test_from_config_errors(tmp_path: Path, cfg_world: SimulatedWorld) -> None:
    with pytest.raises(ConfigError, match="configuration file not found"):
        Benchtop.from_config(tmp_path / "missing.cfg")
    cfg = tmp_path / "bench.cfg"
    cfg.write_text(CFG.format(world="test-cfg"))
    with pytest.raises(ConfigError, match="no pixel size"):
        Benchtop.from_config(cfg, mm_path=tmp_path)
    bad = tmp_path / "bad.cfg"
    bad.write_text(CFG.replace("SimXYStage", "NoSuchStage").format(world="test-cfg"))
    with pytest.raises(DeviceError, match=r"bad.cfg: loading the Micro-Manager configuration failed"):
        Benchtop.from_config(bad, pixel_size_um=0.37, mm_path=tmp_path)
    partial = tmp_path / "partial.cfg"
    partial.write_text(CFG.replace("#py Property,Core,Focus,Z\n", "").format(world="test-cfg"))
    with pytest.raises(DeviceError, match="no current focus drive"):
        Benchtop.from_config(partial, pixel_size_um=0.37, mm_path=tmp_path)


def test_closed_benchtop_refuses_commands(pattern: Any, fast_stage: SimStageParams) -> None:
    bench = simulated_benchtop(pattern, sensor_shape=(32, 32), stage=fast_stage)
    bench.close()
    bench.close()
    with pytest.raises(DeviceError, match="closed"):
        bench.snap()
