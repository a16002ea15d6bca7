"""How fast ``store verify --deep`` reads a slide: MB of image data decoded per second, on one core.

Usage::

    python benchmarks/bench_verify.py [--size 4096] [--repeats 3]

A slide with a ``size``×``size`` mosaic of smooth stained-tissue-like texture (deflate level 1 + shuffle, as
``scopectl`` writes it) and 8 phone captures of 1024×1024 is written to a temporary folder; the deep and the
quick check are timed (medians).  ``store verify`` reads deeply by default up to
``DEEP_VERIFY_DEFAULT_MAX_BYTES`` of image data; this measures what that costs.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import hardware, median_time, write_result

from scopectl.cli.cmd_store import DEEP_VERIFY_DEFAULT_MAX_BYTES
from scopectl.store import CaptureRecord, SlideStore


def _tissue(rows: int, cols: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    low = rng.random((rows // 32 + 2, cols // 32 + 2, 3)).astype(np.float32)
    img = cv2.resize(low, (cols, rows), interpolation=cv2.INTER_CUBIC)
    img = 120 + 100 * img + rng.normal(0, 6, (rows, cols, 3)).astype(np.float32)
    return np.clip(img, 0, 255).astype(np.uint8)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--size", type=int, default=4096)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.h5"
        with SlideStore.create(path, slide_id="bench", rig={}, simulated=True) as store:
            for i in range(8):
                store.add_capture(
                    CaptureRecord(
                        rgb=_tissue(1024, 1024, i), field_index=i, pixel_size_um=0.4, dng=None, jpeg=None,
                        source=None, source_name=f"c{i}", settings={}, led_state={}, battery_mv=None,
                        stage_x_um=None, stage_y_um=None, timestamp=0.0, latencies_s={},
                    )
                )  # fmt: skip
            store.write_mosaic(
                _tissue(args.size, args.size, 99), pixel_size_um=0.37, origin_x_um=0, origin_y_um=0, method={}
            )
        file_bytes = path.stat().st_size
        with SlideStore.open(path) as store:
            data_bytes = store.data_bytes()
            deep = median_time(lambda: store.verify(deep=True), repeats=args.repeats)
            quick = median_time(lambda: store.verify(deep=False), repeats=args.repeats)
    rate = data_bytes / deep["median_s"] / 1e6
    result = {
        "benchmark": "store verify",
        "mosaic_px": [args.size, args.size],
        "captures": 8,
        "file_bytes": file_bytes,
        "data_bytes": data_bytes,
        "deep": deep,
        "quick": quick,
        "deep_mb_per_s": rate,
        "deep_default_max_bytes": DEEP_VERIFY_DEFAULT_MAX_BYTES,
        "deep_at_default_max_s": DEEP_VERIFY_DEFAULT_MAX_BYTES / (rate * 1e6),
        "hardware": hardware(),
    }
    out = write_result("verify", result)
    print(
        f"{data_bytes / 1e6:.0f} MB of image data ({file_bytes / 1e6:.0f} MB file): deep {deep['median_s']:.2f} s "
        f"({rate:.0f} MB/s), quick {quick['median_s']:.3f} s; at the default limit a deep check takes "
        f"about {result['deep_at_default_max_s']:.0f} s\nwritten to {out}"
    )


if __name__ == "__main__":
    main()
