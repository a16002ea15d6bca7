"""Exporting a slide of ≥ 120 MB to OME-Zarr (folder, and folder + .ozx) on the CPU.

Usage::

    python benchmarks/bench_ome_zarr.py [--mb 120] [--repeats 2] [--out FILE]

Builds a slide store of at least ``--mb`` megabytes on disk (a stain-like mosaic with sensor noise, which
HDF5's deflate compresses about as much as real tissue, plus 12 registered 2000 × 1500 captures), then times
:func:`scopectl.interop.ome_zarr.export_slide` (median of ``--repeats``).  Target (issue 19): ≤ 30 s on 2 cores.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import hardware, median_time, write_result

from scopectl.interop.ome_zarr import export_slide
from scopectl.store import CaptureRecord, RegistrationRecord, SlideStore


def _tissue(rng: np.random.Generator, rows: int, cols: int) -> np.ndarray:
    import cv2

    field = cv2.resize(rng.random((rows // 32 + 1, cols // 32 + 1, 3)).astype(np.float32), (cols, rows))
    img = 255 * (0.55 + 0.35 * field) + rng.normal(0, 6, (rows, cols, 3)).astype(np.float32)
    return np.clip(img, 0, 255).astype(np.uint8)


def build_slide(path: Path, *, side: int, captures: int = 12) -> None:
    rng = np.random.default_rng(0)
    with SlideStore.create(path, slide_id=path.stem, rig={"kind": "benchmark"}, simulated=True) as s:
        s.set_plan({"fields": [{"index": i, "x_um": 0.0, "y_um": 0.0} for i in range(captures)]})
        ds = s.write_mosaic(
            None, shape=(side, side), pixel_size_um=0.37, origin_x_um=0.0, origin_y_um=0.0, method={}
        )
        for r0 in range(0, side, 2048):
            ds[r0 : r0 + 2048] = _tissue(rng, min(2048, side - r0), side)
        s.finish_mosaic()
        for k in range(captures):
            idx = s.add_capture(
                CaptureRecord(
                    rgb=_tissue(rng, 1500, 2000),
                    field_index=k,
                    pixel_size_um=0.925,
                    dng=None,
                    jpeg=None,
                    source=None,
                    source_name=f"IMG_{k}.jpg",
                    settings={},
                    led_state={},
                    battery_mv=None,
                    stage_x_um=None,
                    stage_y_um=None,
                    timestamp=0.0,
                    latencies_s={},
                )
            )
            h = np.array([[2.5, 0.0, 100.0 * k], [0.0, 2.5, 50.0], [0.0, 0.0, 1.0]])
            s.write_registration(
                idx,
                RegistrationRecord(
                    ok=True,
                    reason="",
                    homography=h,
                    scale=2.5,
                    inliers=100,
                    shift_map=rng.normal(size=(2, 150, 200)).astype(np.float32),
                    similarity_maps=[],
                    quality=0.9,
                    pixel_size_um=0.37,
                    residual_px=0.4,
                ),
            )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=float, default=120.0)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        store = folder / "bench.h5"
        side = 6000
        while True:
            build_slide(store, side=side)
            if store.stat().st_size >= args.mb * 1e6:
                break
            store.unlink()
            side = int(side * 1.15)
        size_mb = store.stat().st_size / 1e6
        results: dict[str, Any] = {}
        for label, ozx in (("folder", False), ("folder + .ozx", True)):

            def run(z: bool = ozx) -> None:
                out = folder / "out"
                shutil.rmtree(out, ignore_errors=True)
                export_slide(store, out, ozx=z)

            results[label] = median_time(run, repeats=args.repeats, warmup=0)
        zarr_mb = (
            sum(p.stat().st_size for p in (folder / "out" / "bench.ome.zarr").rglob("*") if p.is_file()) / 1e6
        )
    data = {
        "benchmark": "ome_zarr_export",
        "hardware": hardware(),
        "store_mb": size_mb,
        "mosaic_side_px": side,
        "captures": 12,
        "export_mb": zarr_mb,
        "export": results,
        "target": "≤ 30 s on 2 cores for a 120 MB slide",
    }
    for label, r in results.items():
        print(
            f"{label:14s} {r['median_s']:.1f} s for a {size_mb:.0f} MB slide (mosaic {side}², 12 captures) → {zarr_mb:.0f} MB"
        )
    print(f"written to {write_result('ome_zarr_export', data, args.out)}")


if __name__ == "__main__":
    main()
