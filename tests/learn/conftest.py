"""Fixtures for the learning tests: a tiny dataset file written by the real writer, a seeded network."""

from __future__ import annotations

from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from scopectl.learn.network import EnhanceNet, build_network
from scopectl.store.dataset import SPLITS, DatasetProvenance, DatasetWriter


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
    """A dataset file written by :class:`scopectl.store.dataset.DatasetWriter` (synthetic patch pairs)."""
    p, q = ratio
    out = -(-size * p // q)
    with DatasetWriter(path, input_patch_px=size, target_patch_px=out, force=True) as writer:
        for k, (split, n) in enumerate(zip(SPLITS, counts, strict=True)):
            x, y = synthetic_pairs(n, size=size, ratio=ratio, seed=seed + k)
            source = np.zeros((n, 5), np.int32)
            source[:, 1] = np.arange(n)
            writer.append(split, x, y, source)
        writer.finish(
            input_pixel_size_um=0.925,
            target_pixel_size_um=0.925 * q / p,
            ratio=Fraction(p, q),
            provenance=DatasetProvenance(
                created="2026-01-01T00:00:00+0000",
                software_version="scopectl test",
                sample_type="lung",
                input_kind="tiff",
                slides=[{"slide_id": "t1"}, {"slide_id": "t2"}],
            ),
        )
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
