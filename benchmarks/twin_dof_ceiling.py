"""How much SSIM the benchtop's shallow depth of field alone costs on the digital twin.

Usage::

    python benchmarks/twin_dof_ceiling.py --frames 4

The twin's specimens have objects at several depths; the benchtop objective (NA 0.75) blurs the layers
outside its focal plane, the phone (low NA) shows them sharp.  A network that sees only the phone image
cannot know which objects the benchtop blurred, so its output at best has the phone's larger depth of
field (the paper's Fig. 5).  This script renders each benchtop frame twice with the same noise seed —
as the twin renders it, and with every layer in focus — and scores the all-in-focus frame against the
real one with the paper's SSIM (Table 2's metric) and CIE-94 (Table 3's): an upper bound for what an
extended-depth-of-field output can reach against that benchtop image.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import hardware, write_result

import scopectl.twin.benchtop as benchtop_module
from scopectl.evaluation.tables import PAPER_TABLE2
from scopectl.metrics import cie94_stats, ssim
from scopectl.twin import BenchtopModel, make_slide


@contextmanager
def everything_in_focus() -> Iterator[None]:
    """Render benchtop frames without defocus blur (the in-focus diffraction blur stays)."""
    original = benchtop_module.defocus_sigma_um

    def no_defocus(dz_um: Any, *, na: float) -> Any:
        return np.zeros_like(dz_um) if np.ndim(dz_um) else 0.0

    benchtop_module.defocus_sigma_um = no_defocus  # type: ignore[assignment]
    try:
        yield
    finally:
        benchtop_module.defocus_sigma_um = original


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--samples", default="lung,pap,blood")
    ap.add_argument("--frames", type=int, default=4, help="frames per sample type")
    ap.add_argument("--size", type=int, default=600, help="frame side in benchtop pixels")
    args = ap.parse_args()
    bench = BenchtopModel()
    rows: list[dict[str, Any]] = []
    rng = np.random.default_rng(11)
    for sample in args.samples.split(","):
        slide = make_slide(sample, seed=4, width_um=3000.0, height_um=3000.0)  # type: ignore[arg-type]
        scores = []
        for k in range(args.frames):
            cx, cy = (float(v) for v in rng.uniform(700, 2300, size=2))
            kw: dict[str, Any] = {
                "center_x_um": cx,
                "center_y_um": cy,
                "shape": (args.size, args.size),
                "seed": k,
            }
            real = bench.render(slide, **kw)
            with everything_in_focus():
                sharp = bench.render(slide, **kw)
            scores.append((ssim(real, sharp), cie94_stats(real, sharp)[0]))
        s = np.array(scores)
        row = {
            "sample": sample,
            "frames": args.frames,
            "ssim_all_in_focus_vs_benchtop": float(s[:, 0].mean()),
            "ssim_min": float(s[:, 0].min()),
            "cie94_mean": float(s[:, 1].mean()),
            "paper_network_ssim": PAPER_TABLE2.get(sample, PAPER_TABLE2.get(f"{sample} (TIFF)", (0, 0)))[1],
        }
        rows.append(row)
        print(
            f"{sample:6s} SSIM(all-in-focus, benchtop) {row['ssim_all_in_focus_vs_benchtop']:.3f} "
            f"(min {row['ssim_min']:.3f}); ΔE94 {row['cie94_mean']:.2f}; paper's network SSIM "
            f"{row['paper_network_ssim']:.3f}"
        )
    path = write_result("twin-dof-ceiling", {"hardware": hardware(), "args": vars(args), "rows": rows})
    print(f"written to {path}")


if __name__ == "__main__":
    main()
