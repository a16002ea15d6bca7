"""Fixtures of the interop tests: a small registered slide store and an (untrained, seeded) model directory."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from interop_support import CAPTURE_PX_UM, MOSAIC_PX_UM, make_slide
from scopectl.learn.modelio import ModelCard, save_model
from scopectl.learn.network import build_network


@pytest.fixture
def slide_root(tmp_path: Path) -> Path:
    """A data root with ``slides/s1.h5``."""
    (tmp_path / "root" / "slides").mkdir(parents=True)
    make_slide(tmp_path / "root" / "slides" / "s1.h5")
    return tmp_path / "root"


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    """``<tmp>/root/models/m1``: the paper's network at 5/2, seeded, saved with a card."""
    net = build_network((5, 2))
    net.reset_parameters(torch.Generator().manual_seed(0))
    card = ModelCard(
        name="m1",
        input_pixel_size_um=CAPTURE_PX_UM,
        target_pixel_size_um=MOSAIC_PX_UM,
        sample_type="lung",
        validation={"ssim_network": 0.70, "ssim_bicubic": 0.50},
    )
    directory = tmp_path / "root" / "models" / "m1"
    save_model(directory, net, card)
    return directory
