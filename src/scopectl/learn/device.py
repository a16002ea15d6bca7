"""Device, precision and thread choices shared by training and enhancement."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Literal

import torch

from scopectl.errors import ConfigError

__all__ = ["autocast", "bf16_supported", "bf16_training_fast", "pick_device", "resolve_precision"]

DeviceChoice = Literal["auto", "cpu", "cuda"]
Precision = Literal["auto", "fp32", "bf16"]


def pick_device(choice: str = "auto", *, local_rank: int | None = None) -> torch.device:
    """``auto`` → the CUDA device when one is usable, else the CPU.

    Raises
    ------
    ConfigError
        If ``cuda`` is asked for but PyTorch sees no CUDA device, or the choice is unknown.
    """
    if choice not in ("auto", "cpu", "cuda") and not choice.startswith("cuda:"):
        raise ConfigError(f"device {choice!r} is not one of auto, cpu, cuda, cuda:N.")
    if choice == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        if choice == "auto":
            return torch.device("cpu")
        raise ConfigError(
            f"device {choice!r} requested but PyTorch sees no CUDA GPU (torch {torch.__version__}).",
            hint="Install a CUDA build of torch (see the Makefile's TORCH_SPEC) or use --device cpu.",
        )
    if choice.startswith("cuda:"):
        return torch.device(choice)
    if local_rank is None:
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    return torch.device("cuda", local_rank % max(1, torch.cuda.device_count()))


def bf16_supported(device: torch.device) -> bool:
    """Whether bfloat16 convolutions are fast on ``device`` (Ampere+ GPUs; CPUs with AVX512-BF16/AMX)."""
    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    try:
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())  # type: ignore[no-untyped-call]
    except (AttributeError, RuntimeError):
        return False


def bf16_training_fast(device: torch.device) -> bool:
    """Whether bf16 autocast speeds *training* up on ``device``: bf16 GPUs, and CPUs with AMX tiles.

    On an Intel Xeon with AMX-BF16 (2 vCPUs) a training step of this network at batch 16 runs 2.3 times
    faster in bf16 autocast than in float32 (``benchmarks/bench_train.py``, docs/performance.md).  On CPUs
    with AVX512-BF16 but no AMX the gain was not measured, so they train in float32.
    """
    if device.type == "cuda":
        return bf16_supported(device)
    try:
        return bool(torch.cpu._is_amx_tile_supported()) and bf16_supported(device)
    except (AttributeError, RuntimeError):
        return False


def resolve_precision(precision: str, device: torch.device, *, inference: bool) -> Literal["fp32", "bf16"]:
    """``auto`` picks bf16 on bf16-capable GPUs; on CPUs for inference where bf16 is native, and for
    training where AMX makes it faster (:func:`bf16_training_fast`).

    Raises
    ------
    ConfigError
        If bf16 is asked for on a device that cannot run it, or the precision is unknown.
    """
    if precision == "fp32":
        return "fp32"
    if precision == "bf16":
        if device.type == "cuda" and not bf16_supported(device):
            raise ConfigError(f"{device}: this GPU has no bfloat16 support.", hint="Use --precision fp32.")
        return "bf16"
    if precision != "auto":
        raise ConfigError(f"precision {precision!r} is not one of auto, fp32, bf16.")
    if inference:
        return "bf16" if bf16_supported(device) else "fp32"
    return "bf16" if bf16_training_fast(device) else "fp32"


@contextlib.contextmanager
def autocast(device: torch.device, precision: str) -> Iterator[None]:
    """bf16 autocast on ``device`` when ``precision == "bf16"``, otherwise nothing."""
    if precision == "bf16":
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16):
            yield
    else:
        yield
