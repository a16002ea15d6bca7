"""Quality on the digital twin: train on twin pairs for a fixed time, then score held-out pairs.

Usage::

    python benchmarks/quality_twin.py --sample lung --minutes 10 --device cuda --batch-size 256
    python benchmarks/quality_twin.py --sample lung --minutes 15 --device cpu --pairs 12 --phone-px 512

Pairs come from :func:`scopectl.twin.pairs.iter_pairs` and are aligned with the twin's ground truth (no
registration error): the phone image is resampled onto a slide-aligned grid at 2.5 × the benchtop pixel,
area-aligned with the benchtop frame, exactly as :func:`scopectl.twin.pairs.measure_pair` does for the
paper's bicubic baseline.  Pairs are split by index into train / val / test; training patches are 60×60 /
150×150 with 40 % overlap, written in the dataset format and trained with :func:`scopectl.learn.train.train`.
Held-out pairs are scored with :func:`scopectl.evaluation.tables.score_capture` (Table 2 SSIM and Table 3
CIE-94, columns A and C) for the phone's decoded DNG ("TIFF") and its JPEG.  Result JSON in
``benchmarks/results/``.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, hardware, write_result

from scopectl.evaluation.figures import comparison_figure
from scopectl.evaluation.tables import PAPER_TABLE2, PAPER_TABLE3, aggregate, paper_key, score_capture
from scopectl.imageio import decode_dng
from scopectl.learn.device import pick_device, resolve_precision
from scopectl.learn.enhance import enhance_image, prepare_model
from scopectl.learn.modelio import load_model
from scopectl.learn.train import TrainConfig, train
from scopectl.store.dataset import DatasetProvenance, DatasetWriter
from scopectl.twin.pairs import Pair, iter_pairs, phone_on_grid

RATIO = (5, 2)
PATCH = 60


def aligned(pair: Pair, *, use_dng: bool, border_um: float = 12.0) -> tuple[np.ndarray, np.ndarray]:
    """Phone image on the input grid (0.925 µm) and the benchtop crop it covers (area-aligned)."""
    truth = pair.phone.truth
    p_b = pair.benchtop_pixel_um
    p_l = p_b * RATIO[0] / RATIO[1]
    h, w = truth.shape
    ex, ey = truth.to_slide_um(np.array([0, 0, h - 1, h - 1], float), np.array([0, w - 1, 0, w - 1], float))
    bx0, by0 = pair.benchtop_origin_um
    bh, bw = pair.benchtop.shape[:2]
    x_lo = max(float(np.sort(ex)[1]), bx0) + border_um
    x_hi = min(float(np.sort(ex)[-2]), bx0 + (bw - 1) * p_b) - border_um
    y_lo = max(float(np.sort(ey)[1]), by0) + border_um
    y_hi = min(float(np.sort(ey)[-2]), by0 + (bh - 1) * p_b) - border_um
    n_cols = int((x_hi - x_lo) / p_l) // 2 * 2
    n_rows = int((y_hi - y_lo) / p_l) // 2 * 2
    c0 = math.ceil((x_lo - bx0) / p_b)
    r0 = math.ceil((y_lo - by0) / p_b)
    lx0 = bx0 + c0 * p_b + (0.5 - 0.5 * RATIO[1] / RATIO[0]) * p_l
    ly0 = by0 + r0 * p_b + (0.5 - 0.5 * RATIO[1] / RATIO[0]) * p_l
    capture = pair.phone
    if use_dng:
        rgb, _ = decode_dng(capture.dng)
        capture = dataclasses.replace(capture, rgb=rgb)
    low = phone_on_grid(capture, x0_um=lx0, y0_um=ly0, shape=(n_rows, n_cols), pixel_size_um=p_l)
    out_rows, out_cols = n_rows * RATIO[0] // RATIO[1], n_cols * RATIO[0] // RATIO[1]
    return low, np.ascontiguousarray(pair.benchtop[r0 : r0 + out_rows, c0 : c0 + out_cols])


def patches(low: np.ndarray, high: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """60/150 patches with 40 % overlap (input positions multiples of q)."""
    step = int(PATCH * 0.6) // RATIO[1] * RATIO[1]
    big = PATCH * RATIO[0] // RATIO[1]
    xs, ys = [], []
    for r in range(0, low.shape[0] - PATCH + 1, step):
        for c in range(0, low.shape[1] - PATCH + 1, step):
            xs.append(low[r : r + PATCH, c : c + PATCH])
            rt, ct = r * RATIO[0] // RATIO[1], c * RATIO[0] // RATIO[1]
            ys.append(high[rt : rt + big, ct : ct + big])
    return np.stack(xs), np.stack(ys)


def write_patch_dataset(
    path: Path, data: dict[str, list[tuple[np.ndarray, np.ndarray]]], provenance: DatasetProvenance
) -> None:
    """Write the ``train`` and ``val`` patch pairs (5/2, 0.925 → 0.37 µm) as a dataset file (one test patch)."""
    xs_val = np.concatenate([x for x, _ in data["val"]])
    with DatasetWriter(
        path, input_patch_px=xs_val.shape[1], target_patch_px=data["val"][0][1].shape[1], force=True
    ) as writer:
        for split in ("train", "val"):
            xs = np.concatenate([x for x, _ in data[split]])
            ys = np.concatenate([y for _, y in data[split]])
            writer.append(split, xs, ys, np.zeros((len(xs), 5), np.int32))
        writer.append("test", xs[:1], ys[:1], np.zeros((1, 5), np.int32))
        writer.finish(
            input_pixel_size_um=0.925,
            target_pixel_size_um=0.37,
            ratio=Fraction(5, 2),
            provenance=provenance,
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sample", default="lung", choices=["lung", "pap", "blood"])
    ap.add_argument(
        "--input", default="jpeg", choices=["jpeg", "dng"], help="phone pixels: JPEG or decoded DNG"
    )
    ap.add_argument("--pairs", type=int, default=40, help="pairs rendered (70/10/20 %% train/val/test)")
    ap.add_argument("--phone-px", type=int, default=1024)
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--recipe", default="fast", choices=["fast", "paper"])
    ap.add_argument("--batch-size", type=int, default=None, help="default: the recipe's (fast 16, paper 32)")
    ap.add_argument("--lr", type=float, default=None)
    ap.add_argument("--compile", action="store_true")
    ap.add_argument(
        "--workdir",
        type=Path,
        default=Path(tempfile.gettempdir()) / "scopectl-quality-twin",
        help="where the dataset and the model go (large; not in the repository)",
    )
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    t0 = time.perf_counter()
    machine = hardware()
    n_test = max(1, round(args.pairs * 0.2))
    n_val = max(1, round(args.pairs * 0.1))
    n_train = args.pairs - n_test - n_val
    split_of = ["train"] * n_train + ["val"] * n_val + ["test"] * n_test
    data: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {"train": [], "val": [], "test": []}
    tests: list[tuple[np.ndarray, np.ndarray]] = []
    for k, pair in enumerate(
        iter_pairs(
            sample=args.sample, count=args.pairs, seed=args.seed, phone_shape=(args.phone_px, args.phone_px)
        )
    ):
        low, high = aligned(pair, use_dng=args.input == "dng")
        if split_of[k] == "test":
            tests.append((low, high))
        else:
            data[split_of[k]].append(patches(low, high))
        print(
            f"pair {k + 1}/{args.pairs} rendered ({split_of[k]}, {low.shape[0]}×{low.shape[1]} input px)",
            flush=True,
        )
    render_s = time.perf_counter() - t0
    args.workdir.mkdir(parents=True, exist_ok=True)
    ds_path = args.workdir / f"twin-{args.sample}-{args.input}.h5"
    write_patch_dataset(
        ds_path,
        data,
        DatasetProvenance(
            created=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            software_version="scopectl benchmarks/quality_twin.py",
            sample_type=args.sample,
            input_kind=args.input,
            params={"source": "twin", "pairs": args.pairs, "seed": args.seed},
        ),
    )
    config = TrainConfig(
        recipe=args.recipe,
        minutes=args.minutes,
        batch_size=args.batch_size,
        learning_rate=args.lr,
        device=args.device,
        compile=args.compile,
        seed=args.seed,
        val_interval_s=60.0,
    )
    model_dir = args.workdir / f"model-{args.sample}-{args.input}"
    result = train(ds_path, model_dir, config, force=True)
    print(
        f"trained {result.epochs_completed:.1f} epochs, {result.steps} steps, {result.patches_per_s:.0f} patches/s"
    )

    device = pick_device(args.device)
    precision = resolve_precision("fp32", device, inference=True)
    net, card = load_model(model_dir)
    net = prepare_model(net, device=device)
    scores = []
    figure = None
    for i, (low, high) in enumerate(tests):
        outputs: dict[str, np.ndarray] = {}
        s = score_capture(
            low,
            high,
            enhance=lambda x: enhance_image(net, x, device=device, precision=precision),
            capture=i,
            outputs=outputs,
        )
        scores.append(s)
        if figure is None:
            figure = comparison_figure(
                outputs["bicubic_A"],
                outputs["C"],
                high,
                RESULTS / f"quality-twin-{args.sample}-{args.input}-figure.png",
                title=f"twin {args.sample} ({args.input}), test pair {i}: SSIM {s.ssim_bicubic:.3f} → "
                f"{s.ssim_network:.3f}; ΔE94 {s.cie94['A'][0]:.2f} → {s.cie94['C'][0]:.2f}",
                pixel_size_um=0.37,
            )
    kind = "jpeg" if args.input == "jpeg" else "tiff"
    tables = aggregate(scores, model=card.name, sample_type=args.sample, input_kind=kind)
    row = paper_key(args.sample, kind)
    out: dict[str, Any] = {
        "benchmark": "quality_twin",
        "hardware": machine,
        "args": {k: str(v) for k, v in vars(args).items()},
        "train_patches": int(sum(len(x) for x, _ in data["train"])),
        "val_patches": int(sum(len(x) for x, _ in data["val"])),
        "test_images": len(tests),
        "render_s": render_s,
        "training": {
            "epochs": result.epochs_completed,
            "steps": result.steps,
            "patches_per_s": result.patches_per_s,
            "best_val_loss": result.best_val_loss,
            "device": card.training.device,
            "precision": card.training.precision,
            "recipe": card.training.recipe,
            "batch_size": card.training.batch_size,
            "learning_rate": card.training.learning_rate,
        },
        "ssim_bicubic": tables.ssim_bicubic,
        "ssim_network": tables.ssim_network,
        "ssim_gain": tables.ssim_gain,
        "cie94_A": tables.cie94["A"],
        "cie94_C": tables.cie94["C"],
        "cie94_reduction": tables.cie94_reduction,
        "paper": {"row": row, "ssim": PAPER_TABLE2.get(row or ""), "cie94": PAPER_TABLE3.get(row or "")},
    }
    print(
        f"SSIM {tables.ssim_bicubic:.4f} → {tables.ssim_network:.4f} (gain {tables.ssim_gain:+.4f}); "
        f"CIE-94 {tables.cie94['A']['mean']:.2f} → {tables.cie94['C']['mean']:.2f} ({tables.cie94_reduction:.1f}×)"
    )
    print(f"written to {write_result(f'quality-twin-{args.sample}-{args.input}', out)}")


if __name__ == "__main__":
    main()
