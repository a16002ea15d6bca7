"""Helpers of the interop tests (tests/interop): a small registered slide and the CLI run in-process."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from scopectl.cli.main import main
from scopectl.store import CaptureRecord, RegistrationRecord, SlideStore

#: Capture k lies in the mosaic at scale 2.5 (0.925 / 0.37 µm) and offset (col, row) = (100 + 50k, 30).
MOSAIC_PX_UM, CAPTURE_PX_UM = 0.37, 0.925


def homography(k: int) -> np.ndarray:
    return np.array([[2.5, 0.0, 100.0 + 50 * k], [0.0, 2.5, 30.0], [0.0, 0.0, 1.0]])


def make_slide(path: Path, *, rows: int = 700, cols: int = 900, captures: int = 3, seed: int = 0) -> Path:
    """A slide with a mosaic (origin 100, 50 µm), ``captures`` registered captures (one flagged, one with a
    shift map) and a plan of one more field than captured (an incomplete acquisition)."""
    rng = np.random.default_rng(seed)
    with SlideStore.create(path, slide_id=path.stem, rig={"kind": "test"}, simulated=True) as s:
        s.set_plan({"fields": [{"index": i, "x_um": 0.0, "y_um": 0.0} for i in range(captures + 1)]})
        s.write_mosaic(
            rng.integers(0, 256, (rows, cols, 3), dtype=np.uint8),
            pixel_size_um=MOSAIC_PX_UM,
            origin_x_um=100.0,
            origin_y_um=50.0,
            method={"method": "test"},
        )
        for k in range(captures):
            idx = s.add_capture(
                CaptureRecord(
                    rgb=rng.integers(0, 256, (96, 128, 3), dtype=np.uint8),
                    field_index=k,
                    pixel_size_um=CAPTURE_PX_UM,
                    dng=None,
                    jpeg=b"\xff\xd8 not really a jpeg",
                    source=None,
                    source_name=f"IMG_{k}.jpg",
                    settings={},
                    led_state={},
                    battery_mv=None,
                    stage_x_um=None,
                    stage_y_um=None,
                    timestamp=0.0,
                    latencies_s={},
                    extra={"flags": ["blurred"]} if k == 1 else {},
                )
            )
            s.write_registration(
                idx,
                RegistrationRecord(
                    ok=k != 2,
                    reason="" if k != 2 else "too few matches",
                    homography=homography(k),
                    scale=2.5,
                    inliers=50,
                    shift_map=rng.normal(size=(2, 24, 32)).astype(np.float32) if k == 0 else None,
                    similarity_maps=[],
                    quality=0.9,
                    pixel_size_um=MOSAIC_PX_UM,
                    residual_px=0.5,
                ),
            )
    return path


def cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, dict[str, Any]]:
    """Run ``scopectl ARGS`` in this process; returns the exit code and the last stdout line as JSON."""
    code = main(args)
    out = capsys.readouterr().out.strip().splitlines()
    return code, (json.loads(out[-1]) if out and out[-1].startswith("{") else {})
