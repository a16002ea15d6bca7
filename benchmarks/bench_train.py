"""Training speed: patches per second of the paper's training step (60×60 → 150×150, MSE + Sobel loss, Adam).

Usage::

    python benchmarks/bench_train.py [--steps 20] [--batch 32 ...] [--compile] [--out FILE]

Each configuration runs the real training path (:class:`scopectl.learn.data.BatchSource` on random uint8
patches resident on the device, channels-last, bf16 autocast on GPUs, fused Adam on CUDA).  The result JSON
goes to ``benchmarks/results/``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import hardware, write_result

from scopectl.learn.data import BatchSource, PatchSplit
from scopectl.learn.device import autocast
from scopectl.learn.loss import enhancement_loss
from scopectl.learn.network import build_network


def measure(
    device: torch.device, *, batch: int, precision: str, steps: int, compile_model: bool
) -> dict[str, Any]:
    """Patches per second over ``steps`` timed steps (after warm-up)."""
    gen = torch.Generator().manual_seed(0)
    n = max(4 * batch, 256)
    split = PatchSplit(
        torch.randint(0, 256, (n, 60, 60, 3), dtype=torch.uint8, generator=gen),
        torch.randint(0, 256, (n, 150, 150, 3), dtype=torch.uint8, generator=gen),
    )
    src = BatchSource(split, device=device, channels_last=True)
    torch.manual_seed(0)
    model = build_network().to(device).to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    opt = torch.optim.Adam(model.parameters(), lr=2e-4, fused=True if device.type == "cuda" else None)
    net = torch.compile(model) if compile_model else model

    def step(i: int) -> torch.Tensor:
        idx = torch.randint(0, n, (batch,), generator=gen)
        x, y = src.batch(idx)
        with autocast(device, precision):
            out = net(x)
        loss = enhancement_loss(out, y).total
        opt.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]
        opt.step()
        return loss.detach()

    for i in range(3):
        step(i)
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for i in range(steps):
        last = step(i)
    float(last)
    if device.type == "cuda":
        torch.cuda.synchronize()
    secs = time.perf_counter() - t0
    return {
        "batch": batch,
        "precision": precision,
        "compiled": compile_model,
        "steps": steps,
        "seconds": secs,
        "patches_per_s": batch * steps / secs,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--batch", type=int, nargs="*", default=None)
    ap.add_argument("--compile", action="store_true", help="Also measure torch.compile (GPU).")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--skip-cpu", action="store_true")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    data: dict[str, Any] = {
        "benchmark": "train",
        "patch_px": [60, 60],
        "target_px": [150, 150],
        "hardware": hardware(),
    }
    results: list[dict[str, Any]] = []
    if not args.skip_cpu:
        for batch in args.batch or [32]:
            r = measure(
                torch.device("cpu"), batch=batch, precision="fp32", steps=args.steps, compile_model=False
            )
            r["device"] = "cpu"
            results.append(r)
            print(f"cpu  batch {batch:>5} fp32            {r['patches_per_s']:>10,.1f} patches/s", flush=True)
    if torch.cuda.is_available():
        cuda = torch.device("cuda")
        for batch in args.batch or [32, 256, 1024]:
            for precision, compiled in [("fp32", False), ("bf16", False)] + (
                [("bf16", True)] if args.compile else []
            ):
                r = measure(cuda, batch=batch, precision=precision, steps=args.steps, compile_model=compiled)
                r["device"] = "cuda"
                results.append(r)
                tag = f"{precision}{' compiled' if compiled else ''}"
                print(f"cuda batch {batch:>5} {tag:<15} {r['patches_per_s']:>10,.1f} patches/s", flush=True)
    data["results"] = results
    print(f"written to {write_result('train', data, args.out)}")


if __name__ == "__main__":
    main()
