"""Tile scans through the MDA runner: tiles into a sink, handler failures, resuming, the slide store."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from scopectl.errors import ConfigError, StoreError
from scopectl.hardware.benchtop import MemorySink, ScanRegion
from scopectl.hardware.benchtop.sim import SimStageParams, SimulatedBenchtop, simulated_benchtop
from scopectl.stitching import nominal_positions_from_stage, stitch_store
from scopectl.store import SlideStore, TileRecord
from support import load_benchmark

REGION = ScanRegion(100.0, 100.0, 300.0, 260.0)  # 2 x 3 tiles of 256 px (94.7 um) at 15 % overlap


def test_plan_is_a_useq_grid_covering_the_region(sim_bench: SimulatedBenchtop) -> None:
    plan = sim_bench.plan_scan(REGION, overlap=0.15, focus="fixed")
    assert plan.grid_shape == (2, 3)
    assert sorted((t.row, t.col) for t in plan.tiles) == [(r, c) for r in range(2) for c in range(3)]
    fov_w, fov_h = plan.fov_um
    assert fov_w == pytest.approx(256 * 0.37)
    xs = [t.x_um for t in plan.tiles]
    ys = [t.y_um for t in plan.tiles]
    eps = 1e-6
    assert min(xs) - fov_w / 2 <= REGION.left_um + eps and max(xs) + fov_w / 2 >= REGION.right_um - eps
    assert min(ys) - fov_h / 2 <= REGION.top_um + eps and max(ys) + fov_h / 2 >= REGION.bottom_um - eps
    row0 = [t for t in plan.tiles if t.row == 0]
    assert all(t.y_um == min(ys) for t in row0)  # row 0 is the top of the slide (smallest y)
    payload = json.loads(plan.to_json())
    assert payload["sequence"]["grid_plan"]["overlap"] == [15.0, 15.0]
    with pytest.raises(ConfigError, match="overlap"):
        sim_bench.plan_scan(REGION, overlap=0.9)


def test_scan_writes_every_tile_at_its_position(sim_bench: SimulatedBenchtop) -> None:
    world = sim_bench.world
    assert world is not None
    sink = MemorySink([])
    result = sim_bench.scan(REGION, 0.15, sink, focus="map", focus_points=3)
    assert len(sink.tiles) == 6
    assert sorted((r.row, r.col) for r in sink.tiles) == [(r, c) for r in range(2) for c in range(3)]
    assert [s[2] for s in result.stored] == list(range(6))
    assert result.focus_map is not None and result.focus_map.plane is not None
    planned = {(t.row, t.col): t for t in result.plan.tiles}
    for rec in sink.tiles:
        assert rec.rgb.shape == (256, 256, 3) and rec.rgb.dtype == np.uint8
        t = planned[(rec.row, rec.col)]
        assert (rec.stage_x_um, rec.stage_y_um) == pytest.approx((t.x_um, t.y_um))
        assert rec.pixel_size_um == pytest.approx(0.37)
        assert rec.focus_score > 0
        truth = world.truth_for(rec.stage_x_um, rec.stage_y_um)
        assert abs(truth.focus_offset_um) < 0.7  # the focus map follows the tilted slide
        assert rec.stage_z_um == pytest.approx(truth.z_um)


class FailingSink(MemorySink):
    def __init__(self, fail_at: int) -> None:
        super().__init__([])
        self.fail_at = fail_at
        self.calls = 0

    def add_tile(self, rec: TileRecord) -> int:
        self.calls += 1
        if self.calls == self.fail_at:
            raise StoreError("disk full while writing tile")
        return super().add_tile(rec)


def test_a_failing_sink_stops_the_run_with_its_error(pattern: Any) -> None:
    # moves take 0.2 s, so the cancellation (on the handler's relay thread) lands long before the end
    stage = SimStageParams(time_scale=1.0, xy_settle_ms=200.0, position_error_um=0.5)
    with simulated_benchtop(pattern, sensor_shape=(256, 256), stage=stage, start_z_um=0.0) as bench:
        world = bench.world
        assert world is not None
        sink = FailingSink(fail_at=2)
        with pytest.raises(StoreError, match="disk full"):
            bench.scan(REGION, 0.15, sink, focus="fixed")
        assert len(sink.tiles) == 1
        assert sink.calls == 2  # frames still queued after the failure are not handed to the sink
        assert len(world.snap_log) < 6  # the run was cancelled before the last tiles
        assert bench.snap().shape == (256, 256, 3)  # and the benchtop is usable afterwards


def test_resume_skips_tiles_already_done(sim_bench: SimulatedBenchtop) -> None:
    sink = MemorySink([])
    done = {(0, 0), (0, 1), (1, 2)}
    result = sim_bench.scan(REGION, 0.15, sink, focus="fixed", done=done)
    assert sorted(result.skipped) == sorted(done)
    assert sorted((r.row, r.col) for r in sink.tiles) == [(0, 2), (1, 0), (1, 1)]


def test_scan_into_slide_store_and_stitch(sim_bench: SimulatedBenchtop, tmp_path: Path) -> None:
    world = sim_bench.world
    assert world is not None
    path = tmp_path / "slides" / "s1.h5"
    path.parent.mkdir()
    with SlideStore.create(path, slide_id="s1", rig=sim_bench.info(), simulated=True) as store:
        sim_bench.scan(REGION, 0.15, store, focus="fixed")
        assert store.tile_count() == 6
        result = stitch_store(store)
    with SlideStore.open(path) as store:
        info = store.mosaic_info()
        assert info is not None
        mosaic = store.mosaic()
        assert (info.rows, info.cols) == mosaic.shape[:2]
        meta = store.tiles_meta()
        # the mosaic's geometry maps a tile's centre back to its stage position within a few um
        for m, pos in zip(meta, result.positions_px, strict=True):
            x_um = (
                info.origin_x_um + (pos[1] - result.origin_px[1] + (m.shape[1] - 1) / 2) * info.pixel_size_um
            )
            assert x_um == pytest.approx(m.stage_x_um, abs=10.0)
        # and the tile content is where the mosaic says: compare one tile with the mosaic
        k = 4
        tile, _ = store.read_tile(k)
        r0, c0 = np.rint(result.positions_px[k] - np.array(result.origin_px)).astype(int)
        patch = mosaic[r0 + 40 : r0 + 216, c0 + 40 : c0 + 216, 1].astype(float)
        assert np.corrcoef(patch.ravel(), tile[40:216, 40:216, 1].astype(float).ravel())[0, 1] > 0.95
    xy = np.array([[m.stage_x_um, m.stage_y_um] for m in meta])
    true_xy = np.array([[world.truth_for(*p).true_x_um, world.truth_for(*p).true_y_um] for p in xy])
    true = nominal_positions_from_stage(true_xy, pixel_size_um=0.37, tile_shape=(256, 256))
    rms_error_px = load_benchmark("stitching_accuracy").rms_error_px
    assert rms_error_px(result.positions_px, true)[0] < 0.5
