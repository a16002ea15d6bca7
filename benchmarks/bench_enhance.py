"""Enhancement speed: seconds per 1024×1024 input (≈ per megapixel) on the CPU and, when present, a GPU.

Usage::

    python benchmarks/bench_enhance.py [--size 1024] [--repeats 5] [--threads N] [--skip-onnx] [--out FILE]

CPU configurations: float32 channels-last (whole image and 256/512-pixel tiles), bf16 autocast (on CPUs with
AVX512-BF16/AMX), and onnxruntime.  GPU configurations (CUDA): float32, TF32, bf16 channels-last eager, and
bf16 + ``torch.compile(mode="max-autotune")``; GPU times are CUDA-event times of the network alone (input
already on the GPU), as in the targets of issue 10.  The result JSON goes to ``benchmarks/results/``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import hardware, median_time, write_result

from scopectl.learn.enhance import _to_input, enhance_image, enhance_tensor, prepare_model
from scopectl.learn.network import build_network


def _cpu(size: int, repeats: int, skip_onnx: bool) -> dict[str, Any]:
    torch.manual_seed(0)
    net = prepare_model(build_network(), device=torch.device("cpu"))
    rgb = np.random.default_rng(0).integers(0, 256, (size, size, 3), dtype=np.uint8)
    out: dict[str, Any] = {}
    configs: list[tuple[str, str, int | None]] = [
        ("fp32 channels-last, whole image", "fp32", size),
        ("fp32 channels-last, 512-px tiles", "fp32", 512),
        ("fp32 channels-last, 256-px tiles", "fp32", 256),
    ]
    if torch.ops.mkldnn._is_mkldnn_bf16_supported():
        configs += [
            ("bf16 autocast, whole image", "bf16", size),
            ("bf16 autocast, 512-px tiles", "bf16", 512),
            ("bf16 autocast, 256-px tiles", "bf16", 256),
        ]
    for name, precision, tile in configs:
        out[name] = median_time(
            lambda p=precision, t=tile: enhance_image(net, rgb, tile=t, device="cpu", precision=p),
            repeats=repeats,
        )
        print(f"cpu  {name:<40} {out[name]['median_s']:.3f} s", flush=True)
    if not skip_onnx:
        import onnxruntime as ort

        from scopectl.learn.onnx_export import build_onnx

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = torch.get_num_threads()
        session = ort.InferenceSession(
            build_onnx(build_network().eval()).SerializeToString(), opts, providers=["CPUExecutionProvider"]
        )
        x = (rgb.transpose(2, 0, 1)[None].astype(np.float32) / 255.0).copy()
        name = "onnxruntime fp32 (CPUExecutionProvider)"
        out[name] = median_time(lambda: session.run(["output"], {"input": x}), repeats=repeats)
        print(f"cpu  {name:<40} {out[name]['median_s']:.3f} s", flush=True)
    return out


def _gpu(size: int, repeats: int) -> dict[str, Any]:
    device = torch.device("cuda")
    torch.manual_seed(0)
    rgb = np.random.default_rng(0).integers(0, 256, (size, size, 3), dtype=np.uint8)
    out: dict[str, Any] = {}
    eager = prepare_model(build_network(), device=device)
    x = _to_input(rgb, device, channels_last=True)
    plain = build_network().to(device).eval()
    x_nchw = x.contiguous()

    def run(model: torch.nn.Module, inp: torch.Tensor, precision: str) -> None:
        enhance_tensor(model, inp, tile=None, precision=precision)

    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    out["fp32 NCHW"] = median_time(lambda: run(plain, x_nchw, "fp32"), repeats=repeats, warmup=3, cuda=True)
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    out["tf32 channels-last"] = median_time(
        lambda: run(eager, x, "fp32"), repeats=repeats, warmup=3, cuda=True
    )
    out["bf16 channels-last eager"] = median_time(
        lambda: run(eager, x, "bf16"), repeats=repeats, warmup=3, cuda=True
    )
    try:
        compiled = torch.compile(eager, mode="max-autotune")
        compiled.ratio = eager.ratio  # type: ignore[attr-defined,union-attr]
        out["bf16 channels-last + torch.compile(max-autotune)"] = median_time(
            lambda: run(compiled, x, "bf16"),  # type: ignore[arg-type]
            repeats=repeats,
            warmup=3,
            cuda=True,
        )
    except Exception as exc:  # compilation needs a working Triton toolchain
        out["bf16 channels-last + torch.compile(max-autotune)"] = {"error": f"{type(exc).__name__}: {exc}"}
    for name, value in out.items():
        if "median_s" in value:
            print(f"cuda {name:<48} {value['median_s'] * 1000:.2f} ms", flush=True)
    end_to_end = median_time(
        lambda: enhance_image(eager, rgb, device=device, precision="bf16"), repeats=repeats, warmup=2
    )
    out["end to end (uint8 in host memory → uint8 out), bf16 eager"] = end_to_end
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--skip-onnx", action="store_true")
    ap.add_argument("--skip-cpu", action="store_true")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    data: dict[str, Any] = {
        "benchmark": "enhance",
        "input_px": [args.size, args.size],
        "hardware": hardware(),
    }
    if not args.skip_cpu:
        data["cpu"] = _cpu(args.size, args.repeats, args.skip_onnx)
    if torch.cuda.is_available():
        data["cuda"] = _gpu(args.size, args.repeats)
    mpx = args.size * args.size / 1e6
    data["seconds_per_megapixel"] = {
        f"{dev}: {k}": v["median_s"] / mpx
        for dev in ("cpu", "cuda")
        for k, v in data.get(dev, {}).items()
        if isinstance(v, dict) and "median_s" in v
    }
    print(f"written to {write_result('enhance', data, args.out)}")


if __name__ == "__main__":
    main()
