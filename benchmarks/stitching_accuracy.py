"""Measure stitching accuracy on the simulated benchtop, where the true tile positions are known.

Runs a tile scan of the digital twin's slide on the simulated scope (stage with random positioning error
and backlash), stitches the tiles, and compares the solved positions with the true ones::

    python benchmarks/stitching_accuracy.py --rows 4 --cols 4 --tile 1024 --seed 0

The RMS error is computed after removing the common translation (a mosaic is defined up to a shift: the
stage fixes its absolute placement only to its own accuracy).  Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from scopectl.hardware.benchtop import FocusPlane, MemorySink, ScanRegion
from scopectl.hardware.benchtop.benchtop import FocusMode
from scopectl.hardware.benchtop.sim import SimStageParams, simulated_benchtop
from scopectl.stitching import StitchSettings, nominal_positions_from_stage, stitch_tiles
from scopectl.store import TileRecord
from scopectl.twin import Slide, make_slide

__all__ = ["TwinScan", "main", "measure_stitching_accuracy", "rms_error_px", "scan_twin"]


def rms_error_px(solved: np.ndarray, true: np.ndarray) -> tuple[float, float]:
    """RMS and maximum position error (px) after removing the mean offset."""
    err = np.asarray(solved, dtype=np.float64) - np.asarray(true, dtype=np.float64)
    err = err - err.mean(axis=0)
    dist = np.linalg.norm(err, axis=1)
    return float(np.sqrt(np.mean(dist**2))), float(dist.max())


@dataclass
class TwinScan:
    """A tile scan of the simulated benchtop with the ground truth of every tile."""

    tiles: list[TileRecord]
    stage_xy_um: np.ndarray  # (N, 2) commanded stage positions
    true_xy_um: np.ndarray  # (N, 2) where the stage really was
    focus_offsets_um: np.ndarray  # (N,) objective height above the slide's focal plane
    pixel_size_um: float
    warnings: list[str]
    scan_s: float


def scan_twin(
    slide: Slide,
    *,
    seed: int,
    rows: int,
    cols: int,
    tile_px: int,
    overlap: float,
    stage: SimStageParams,
    center_um: tuple[float, float],
    focus: FocusMode,
    focus_points: int,
) -> TwinScan:
    """Scan ``rows × cols`` tiles around ``center_um`` on the simulated benchtop (tilted slide)."""
    t0 = time.perf_counter()
    with simulated_benchtop(
        slide,
        seed=seed,
        sensor_shape=(tile_px, tile_px),
        stage=stage,
        focus_plane=FocusPlane(0.0, 0.0008, -0.0005),
        start_z_um=3.0,
    ) as bench:
        fov = tile_px * bench.pixel_size_um
        step = fov * (1.0 - overlap)
        width = fov + (cols - 1) * step - 0.01 * step
        height = fov + (rows - 1) * step - 0.01 * step
        region = ScanRegion.around(center_um[0], center_um[1], width, height)
        bench.move_xy_um(*center_um)
        sink = MemorySink()
        scan = bench.scan(region, overlap, sink, focus=focus, focus_points=focus_points)
        if scan.plan.grid_shape != (rows, cols):
            raise RuntimeError(f"planned grid {scan.plan.grid_shape}, expected {(rows, cols)}")
        truths = [bench.world.truth_for(r.stage_x_um, r.stage_y_um) for r in sink.tiles]
        return TwinScan(
            tiles=sink.tiles,
            stage_xy_um=np.array([[r.stage_x_um, r.stage_y_um] for r in sink.tiles]),
            true_xy_um=np.array([[t.true_x_um, t.true_y_um] for t in truths]),
            focus_offsets_um=np.array([t.focus_offset_um for t in truths]),
            pixel_size_um=bench.pixel_size_um,
            warnings=scan.warnings,
            scan_s=time.perf_counter() - t0,
        )


def measure_stitching_accuracy(
    *,
    sample: str = "lung",
    seed: int = 0,
    rows: int = 3,
    cols: int = 3,
    tile_px: int = 512,
    overlap: float = 0.1,
    position_error_um: float = 1.5,
    backlash_um: float = 2.0,
    center_um: tuple[float, float] = (2000.0, 2000.0),
    focus: FocusMode = "map",
    focus_points: int = 5,
    settings: StitchSettings | None = None,
) -> dict[str, Any]:
    """Scan ``rows × cols`` tiles of a twin slide on the simulated benchtop, stitch, compare with truth.

    Returns
    -------
    dict
        ``rms_px`` / ``max_px`` of the solved positions, ``rms_nominal_px`` of the stage positions,
        ``rms_registered_px`` over the tiles with at least one accepted pair (tiles of bare glass can
        only be placed by the stage), the stitcher's report, sizes and timings.
    """
    scan = scan_twin(
        make_slide(sample, seed=seed),  # type: ignore[arg-type]
        seed=seed,
        rows=rows,
        cols=cols,
        tile_px=tile_px,
        overlap=overlap,
        stage=SimStageParams(time_scale=0.0, position_error_um=position_error_um, backlash_um=backlash_um),
        center_um=center_um,
        focus=focus,
        focus_points=focus_points,
    )
    px, shape = scan.pixel_size_um, (tile_px, tile_px)
    nominal = nominal_positions_from_stage(scan.stage_xy_um, pixel_size_um=px, tile_shape=shape)
    true = nominal_positions_from_stage(scan.true_xy_um, pixel_size_um=px, tile_shape=shape)
    t1 = time.perf_counter()
    result = stitch_tiles([r.rgb for r in scan.tiles], nominal_positions_px=nominal, settings=settings)
    t_stitch = time.perf_counter() - t1
    rms, worst = rms_error_px(result.positions_px, true)
    rms0, worst0 = rms_error_px(nominal, true)
    linked = sorted({k for p in result.pairs if p.accepted for k in (p.i, p.j)})
    rms_linked = (
        rms_error_px(result.positions_px[linked], true[linked])[0] if len(linked) >= 2 else float("nan")
    )
    return {
        "sample": sample,
        "seed": seed,
        "grid": [rows, cols],
        "tile_px": tile_px,
        "overlap": overlap,
        "pixel_size_um": px,
        "position_error_um": position_error_um,
        "backlash_um": backlash_um,
        "focus": focus,
        "max_abs_focus_offset_um": float(np.abs(scan.focus_offsets_um).max()),
        "rms_nominal_px": rms0,
        "max_nominal_px": worst0,
        "rms_px": rms,
        "max_px": worst,
        "rms_um": rms * px,
        "tiles_registered": len(linked),
        "rms_registered_px": rms_linked,
        "focus_warnings": scan.warnings,
        "mosaic_shape": list(result.mosaic.shape) if result.mosaic is not None else None,
        "stitch": {k: v for k, v in result.report().items() if k != "settings"},
        "scan_s": scan.scan_s,
        "stitch_s": t_stitch,
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point (prints one JSON object)."""
    ap = argparse.ArgumentParser(prog="python benchmarks/stitching_accuracy.py", description=__doc__)
    ap.add_argument("--sample", default="lung", choices=["lung", "pap", "blood"])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--rows", type=int, default=3)
    ap.add_argument("--cols", type=int, default=3)
    ap.add_argument("--tile", type=int, default=512, help="tile edge in pixels (the paper's camera: 2048)")
    ap.add_argument("--overlap", type=float, default=0.1)
    ap.add_argument("--error-um", type=float, default=1.5, help="stage positioning error (sigma per axis)")
    ap.add_argument("--backlash-um", type=float, default=2.0)
    ap.add_argument("--focus", default="map", choices=["map", "each", "fixed"])
    ap.add_argument("--focus-points", type=int, default=5)
    ap.add_argument("--center-x-um", type=float, default=2000.0, help="region centre on the slide (x)")
    ap.add_argument("--center-y-um", type=float, default=2000.0, help="region centre on the slide (y)")
    args = ap.parse_args(argv)
    out = measure_stitching_accuracy(
        sample=args.sample,
        seed=args.seed,
        rows=args.rows,
        cols=args.cols,
        tile_px=args.tile,
        overlap=args.overlap,
        position_error_um=args.error_um,
        backlash_um=args.backlash_um,
        focus=args.focus,
        focus_points=args.focus_points,
        center_um=(args.center_x_um, args.center_y_um),
    )
    sys.stdout.write(json.dumps(out) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
