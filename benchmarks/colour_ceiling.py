"""How much of the foreign phones' colour error a fixed colour transform can remove — with and without AWB.

Usage::

    python benchmarks/colour_ceiling.py                   # every phone, white balance auto and locked

A control without training for the cross-domain bench (``benchmarks/cross_domain.py``): the same captures
(:func:`foreign.shoot`, same seeds), bicubic ×2.5 (MATLAB's kernel) resampled through the exact mapping onto
the benchtop grid (the bench's baseline), and per phone one 3 × 3 + offset colour transform (least squares on
8-bit sRGB values, phone → benchtop) fitted on

* ``train``: the pooled training captures, applied to the test captures — what any per-pixel colour
  correction learnt from the training band can do at best on the test band, if it were affine;
* ``test_band``: the two test captures pooled (an oracle: one transform for the whole test band) — what the
  change of tissue alone costs;
* ``per_capture``: each test capture on itself (an oracle) — what is left once every capture may have its
  own colour.

The gap ``train`` → ``test_band`` is the content shift, ``test_band`` → ``per_capture`` is the per-capture
colour variation (auto white balance, auto exposure through the tone curve).  Scores: mean CIE-94 per capture,
averaged over the test captures, against the benchtop image, on the bench's scoring region; bicubic
unchanged is the reference (the cross-domain bench's ``cie94_bicubic``).

Each phone is rendered with ``--white-balance`` auto (per capture, as in the bench's default) and locked
(the gains settled on an empty field), and, unless ``--no-exposure``, also with auto exposure locked on the
empty field, so that what AWB and AE each contribute is visible.  The result JSON goes to
``benchmarks/results/colour-ceiling-*.json``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import hardware, write_result
from cross_domain import on_bench_grid, score_region
from foreign import PHONES, RATIO, TISSUES, Exposure, PhoneShot, WhiteBalance, benchtop_slide, shoot

from scopectl.metrics import bicubic_resize, cie94

F64 = np.ndarray


def pair(bench: np.ndarray, shot: PhoneShot) -> tuple[np.ndarray, np.ndarray]:
    """(bicubic ×2.5 on the benchtop grid, benchtop) over the bench's scoring region, uint8 (rows, cols, 3)."""
    h, w = shot.rgb.shape[:2]
    bic = bicubic_resize(shot.rgb, shape=(round(h * RATIO), round(w * RATIO)))
    region = score_region(shot, bench.shape[:2])
    top, left, rows, cols = region
    return on_bench_grid(bic, shot, scale=RATIO, region=region), bench[top : top + rows, left : left + cols]


def fit(pairs: list[tuple[np.ndarray, np.ndarray]]) -> F64:
    """The 4 × 3 matrix M minimising ‖[x, 1] M − y‖² over every pixel of ``pairs`` (8-bit values)."""
    x = np.concatenate([p[0].reshape(-1, 3) for p in pairs]).astype(np.float64)
    y = np.concatenate([p[1].reshape(-1, 3) for p in pairs]).astype(np.float64)
    a = np.concatenate([x, np.ones((len(x), 1))], axis=1)
    m, *_ = np.linalg.lstsq(a, y, rcond=None)
    return np.asarray(m)


def apply(m: F64, image: np.ndarray) -> np.ndarray:
    flat = image.reshape(-1, 3).astype(np.float64)
    out = np.concatenate([flat, np.ones((len(flat), 1))], axis=1) @ m
    return np.asarray(np.clip(np.round(out), 0, 255).astype(np.uint8).reshape(image.shape))


def de(target: np.ndarray, image: np.ndarray) -> float:
    return float(cie94(target, image).mean())


def one(
    bench: np.ndarray,
    phone: str,
    *,
    white_balance: WhiteBalance,
    exposure: Exposure,
    args: argparse.Namespace,
) -> dict[str, Any]:
    shots = shoot(
        PHONES[phone],
        bench,
        phone_px=args.phone_px,
        n_train=args.n_train,
        n_test=args.n_test,
        seed=args.seed,
        white_balance=white_balance,
        exposure=exposure,
    )
    train = [pair(bench, s) for s in shots["train"]]
    test = [pair(bench, s) for s in shots["test"]]
    m_train = fit(train)
    m_band = fit(test)
    rows = []
    for (x, y), shot in zip(test, shots["test"], strict=True):
        rows.append(
            {
                "bicubic": de(y, x),
                "train": de(y, apply(m_train, x)),
                "test_band": de(y, apply(m_band, x)),
                "per_capture": de(y, apply(fit([(x, y)]), x)),
                "wb_gains": shot.wb_gains,
                "exposure": shot.exposure,
            }
        )
    # on the training captures themselves: the pooled fit (in-sample) and per capture
    train_rows = [
        {
            "bicubic": de(y, x),
            "train": de(y, apply(m_train, x)),
            "per_capture": de(y, apply(fit([(x, y)]), x)),
            "wb_gains": shot.wb_gains,
            "exposure": shot.exposure,
        }
        for (x, y), shot in zip(train, shots["train"], strict=True)
    ]
    keys = ("bicubic", "train", "test_band", "per_capture")
    mean = {k: float(np.mean([r[k] for r in rows])) for k in keys}
    mean.update({f"ratio_{k}": mean["bicubic"] / mean[k] for k in keys[1:]})
    train_mean = {k: float(np.mean([r[k] for r in train_rows])) for k in ("bicubic", "train", "per_capture")}
    gains = np.asarray([s.wb_gains for s in shots["train"] + shots["test"]])
    return {
        "phone": phone,
        "white_balance": white_balance,
        "exposure": exposure,
        "test": {"mean": mean, "per_capture": rows},
        "train_captures": {"mean": train_mean, "per_capture": train_rows},
        "wb_gain_spread": (gains.max(axis=0) / gains.min(axis=0) - 1).tolist(),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--phones", default=",".join(PHONES), help="comma-separated phone models")
    ap.add_argument("--phone-px", type=int, default=224)
    ap.add_argument("--n-train", type=int, default=8)
    ap.add_argument("--n-test", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-exposure", action="store_true", help="skip the runs with the exposure locked")
    ap.add_argument("--tissue", choices=TISSUES, default="skin", help="as cross_domain.py's --tissue")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    bench = benchtop_slide(args.tissue)
    settings: list[tuple[WhiteBalance, Exposure]] = [("auto", "auto"), ("locked", "auto")]
    if not args.no_exposure:
        settings += [("auto", "locked"), ("locked", "locked")]
    data: dict[str, Any] = {
        "benchmark": "colour_ceiling",
        "hardware": hardware(),
        "args": {k: str(v) for k, v in vars(args).items()},
        "runs": [],
    }
    print(
        "phone   WB      AE      test CIE-94: bicubic  train-fit  band-fit  per-capture   (ratios to bicubic)"
    )
    for phone in args.phones.split(","):
        for wb, ae in settings:
            r = one(bench, phone, white_balance=wb, exposure=ae, args=args)
            data["runs"].append(r)
            m = r["test"]["mean"]
            print(
                f"{phone:7s} {wb:7s} {ae:7s} {m['bicubic']:20.2f} {m['train']:10.2f} {m['test_band']:9.2f} "
                f"{m['per_capture']:12.2f}   ({m['ratio_train']:.2f}×, {m['ratio_test_band']:.2f}×, "
                f"{m['ratio_per_capture']:.2f}×)",
                flush=True,
            )
    print(f"written to {write_result('colour-ceiling', data, args.out)}")


if __name__ == "__main__":
    main()
