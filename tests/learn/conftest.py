"""Fixtures for the learning tests: a tiny dataset file in the documented format, a seeded network."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import cv2
import h5py
import numpy as np
import pytest
import torch

from scopectl.learn.network import EnhanceNet, build_network


def synthetic_pairs(n: int, *, size: int, ratio: tuple[int, int], seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Smooth random colour textures (targets) and blurred, colour-shifted, downsampled inputs."""
    p, q = ratio
    out = -(-size * p // q)
    rng = np.random.default_rng(seed)
    targets = np.empty((n, out, out, 3), np.uint8)
    inputs = np.empty((n, size, size, 3), np.uint8)
    for i in range(n):
        noise = rng.random((out // 4 + 2, out // 4 + 2, 3)).astype(np.float32)
        hi = cv2.resize(noise, (out, out), interpolation=cv2.INTER_CUBIC)
        hi = np.clip(40 + 190 * hi, 0, 255)
        targets[i] = hi.astype(np.uint8)
        lo = cv2.resize(cv2.GaussianBlur(hi, (0, 0), 1.5), (size, size), interpolation=cv2.INTER_AREA)
        lo = lo * np.array([0.8, 0.95, 1.1]) + 12 + rng.normal(0, 3, lo.shape)
        inputs[i] = np.clip(lo, 0, 255).astype(np.uint8)
    return inputs, targets


def write_dataset(
    path: Path,
    *,
    size: int = 20,
    ratio: tuple[int, int] = (5, 2),
    counts: tuple[int, int, int] = (24, 8, 4),
    seed: int = 0,
) -> Path:
    """A dataset HDF5 in the format of ``scopectl.registration.dataset`` (see the interfaces)."""
    p, q = ratio
    with h5py.File(path, "w") as f:
        for k, (split, n) in enumerate(zip(("train", "val", "test"), counts, strict=True)):
            x, y = synthetic_pairs(n, size=size, ratio=ratio, seed=seed + k)
            g = f.create_group(split)
            g.create_dataset("inputs", data=x, chunks=(1, *x.shape[1:]))
            g.create_dataset("targets", data=y, chunks=(1, *y.shape[1:]))
        f.attrs["input_pixel_size_um"] = 0.925
        f.attrs["target_pixel_size_um"] = 0.925 * q / p
        f.attrs["ratio"] = f"{p}/{q}"
        f.attrs["provenance"] = json.dumps({"sample": "lung", "input_kind": "tiff", "slides": ["t1", "t2"]})
    return path


@pytest.fixture
def make_dataset() -> Callable[..., Path]:
    """The dataset writer (``make_dataset(path, size=..., ratio=..., counts=..., seed=...)``)."""
    return write_dataset


@pytest.fixture
def tiny_dataset(tmp_path: Path) -> Path:
    return write_dataset(tmp_path / "tiny.h5")


@pytest.fixture
def seeded_net() -> EnhanceNet:
    """A 5/2 network with seeded random weights, scaled so that outputs span a good part of 0..255."""
    torch.manual_seed(3)
    net = build_network((5, 2))
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.Conv2d):
                m.weight.mul_(1.3)
                m.bias.normal_(0, 0.02)
        net.tail.bias.fill_(-0.05)
    return net.eval()
