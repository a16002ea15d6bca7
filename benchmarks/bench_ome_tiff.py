"""What writing the pyramidal OME-TIFF adds to `enhance` per image: a 1024² input → 2560² output on the CPU.

Usage::

    python benchmarks/bench_ome_tiff.py [--size 1024] [--repeats 3] [--out FILE]

Times (medians) the network on the input (fp32, 256-pixel tiles: `enhance`'s CPU default), then each output
format of :func:`scopectl.writers.write_image` on its 2560² result, and the ImageJ TIFF `enhance` wrote before
(uncompressed, one page).  The ratio is write time / network time: the serial overhead per image (in
`enhance` the write runs in a thread overlapping the next image's network, so on idle cores it is smaller).
Target (issue 19): the OME-TIFF pyramid adds at most 20 % on 2 cores.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import hardware, median_time, write_result

from scopectl.learn.enhance import enhance_image, prepare_model, write_tiff
from scopectl.learn.network import build_network
from scopectl.writers import write_image


def _tissue(size: int) -> np.ndarray:
    """A stain-like smooth field with sensor noise (compresses like tissue, unlike uniform noise)."""
    import cv2

    rng = np.random.default_rng(0)
    field = cv2.resize(rng.random((size // 16, size // 16, 3)).astype(np.float32), (size, size))
    img = 255 * (0.55 + 0.35 * field) + rng.normal(0, 4, (size, size, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    torch.manual_seed(0)
    net = prepare_model(build_network(), device=torch.device("cpu"))
    rgb = _tissue(args.size)
    out = enhance_image(net, rgb, device="cpu")
    network = median_time(lambda: enhance_image(net, rgb, device="cpu"), repeats=args.repeats, warmup=0)
    writes: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for fmt, name in (("ome-tiff", "o.ome.tif"), ("tiff", "o.tif"), ("png", "o.png")):
            t = median_time(
                lambda f=fmt, n=name: write_image(  # type: ignore[misc]
                    folder / n, out, fmt=f, pixel_size_um=0.37, annotations={"model": "bench"}
                ),
                repeats=args.repeats,
            )
            writes[fmt] = t | {
                "bytes": (folder / name).stat().st_size,
                "fraction_of_network": t["median_s"] / network["median_s"],
            }
        t = median_time(lambda: write_tiff(folder / "ij.tif", out, pixel_size_um=0.37), repeats=args.repeats)
        writes["imagej-tiff (before issue 19)"] = t | {
            "bytes": (folder / "ij.tif").stat().st_size,
            "fraction_of_network": t["median_s"] / network["median_s"],
        }
    data = {
        "benchmark": "ome_tiff",
        "hardware": hardware(),
        "input_shape": [args.size, args.size],
        "output_shape": list(out.shape[:2]),
        "network_fp32_256px_tiles": network,
        "writes": writes,
        "target": "OME-TIFF write ≤ 20 % of enhance's time per image on 2 cores",
    }
    for fmt, w in writes.items():
        print(
            f"{fmt:32s} {w['median_s']:.3f} s  {100 * w['fraction_of_network']:.1f} % of the network's {network['median_s']:.2f} s  ({w['bytes'] / 1e6:.1f} MB)"
        )
    print(f"written to {write_result('ome_tiff', data, args.out)}")


if __name__ == "__main__":
    main()
