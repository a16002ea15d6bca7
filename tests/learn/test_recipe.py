"""The default training recipe's pieces: residual network, ICNR, schedule, augmentation, quality check, warnings."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
import typer

from scopectl.cli.cmd_learn import register
from scopectl.learn.data import PatchSplit, read_dataset
from scopectl.learn.modelio import ModelCard, QualityCheck, save_model
from scopectl.learn.network import bicubic_up, build_network, icnr_
from scopectl.learn.train import TrainConfig, augment_batch, quality_check


def test_icnr_gives_every_sub_pixel_the_same_kernel() -> None:
    w = torch.empty(75, 62, 3, 3)
    icnr_(w, 5, generator=torch.Generator().manual_seed(0))
    groups = w.view(3, 25, 62, 3, 3)
    assert torch.equal(groups, groups[:, :1].expand_as(groups)) and w.std() > 0.02
    # so the pixel shuffle of any feature map is a nearest-neighbour enlargement: no checkerboard
    shuffled = torch.nn.functional.pixel_shuffle(torch.nn.functional.conv2d(torch.rand(1, 62, 8, 8), w), 5)
    blocks = shuffled.view(1, 3, 6, 5, 6, 5)
    assert torch.allclose(blocks, blocks[:, :, :, :1, :, :1].expand_as(blocks))


def test_untrained_residual_network_is_bicubic_plus_a_small_correction() -> None:
    torch.manual_seed(0)
    x = torch.rand(2, 3, 60, 60)
    residual = build_network(residual=True)
    paper = build_network()
    with torch.no_grad():
        bic = bicubic_up(x, (5, 2), (150, 150))
        assert (residual(x) - bic).abs().mean() < 0.01
        assert (paper(x) - bic).abs().mean() > 0.05  # the paper's network starts far from it
    assert (
        sum(p.numel() for p in residual.parameters()) == sum(p.numel() for p in paper.parameters()) == 229_197
    )
    # odd sizes: the bicubic path is cropped or padded to the network's ⌈S·p/q⌉
    assert residual(torch.rand(1, 3, 41, 37)).shape == (1, 3, 103, 93)


def test_recipes_resolve_their_settings_and_schedules() -> None:
    fast, paper = TrainConfig(), TrainConfig(recipe="paper")
    assert (fast.resolved_batch_size(), paper.resolved_batch_size()) == (16, 32)
    assert fast.resolved_learning_rate() == pytest.approx(1e-3)
    assert paper.resolved_learning_rate() == pytest.approx(2e-4)
    assert TrainConfig(batch_size=64).resolved_learning_rate() == pytest.approx(2e-3)
    assert fast.resolved_augment() and not paper.resolved_augment()
    assert fast.resolved_max_val_patches() == 256 and paper.resolved_max_val_patches() is None
    assert [paper.lr_factor(t) for t in (0.0, 0.5, 1.0)] == [1.0, 1.0, 1.0]
    assert fast.lr_factor(0.0) == pytest.approx(0.1) and fast.lr_factor(0.05) == pytest.approx(1.0)
    assert fast.lr_factor(0.5) == pytest.approx(0.05 + 0.95 * 0.5 * (1 + np.cos(np.pi * 0.45 / 0.95)))
    assert fast.lr_factor(1.0) == pytest.approx(0.05)
    assert all(
        fast.lr_factor(a) >= fast.lr_factor(b)
        for a, b in zip(np.linspace(0.05, 1, 20)[:-1], np.linspace(0.05, 1, 20)[1:], strict=True)
    )


def test_augmentation_changes_colours_of_both_alike_and_is_reproducible() -> None:
    torch.manual_seed(1)
    x = torch.rand(8, 3, 12, 12) * 0.8 + 0.1
    y = torch.nn.functional.interpolate(x, size=(30, 30), mode="nearest")  # a target of the same colours
    a = augment_batch(x, y, seed=3, step=7)
    b = augment_batch(x, y, seed=3, step=7)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    # colours change per patch and channel, for input and target alike up to the input's ±3 % wobble
    mx, my = a[0].flatten(2).mean(-1), a[1].flatten(2).mean(-1)
    ratio = my / y.flatten(2).mean(-1)
    assert ratio.std() > 0.03 and (a[0] >= 0).all() and (a[0] <= 1).all() and (a[1] <= 1).all()
    assert torch.allclose(mx, my, rtol=0.06)
    seen = {int(torch.argmax(augment_batch(x, y, seed=0, step=s)[1][0, 0]).item()) for s in range(40)}
    assert len(seen) > 3  # several of the eight symmetries occur
    # two data-parallel shards together get what one process with the global batch gets
    shards = [augment_batch(x[r::2], y[r::2], seed=3, step=7, rank=r, world=2)[0] for r in (0, 1)]
    assert torch.allclose(torch.stack(shards, 1).flatten(0, 1), a[0])


def test_quality_check_compares_with_bicubic_and_flags_a_worse_network(
    tmp_path: Path, make_dataset: Callable[..., Path]
) -> None:
    split: PatchSplit = read_dataset(make_dataset(tmp_path / "d.h5", size=60, counts=(2, 6, 1))).splits["val"]
    net = build_network(residual=True)  # untrained: about bicubic
    q = quality_check(net, split)
    # PyTorch's bicubic (a = −0.75) is a little sharper than the MATLAB baseline (a = −0.5)
    assert q.pairs == 6 and abs(q.network_ssim - q.bicubic_ssim) < 0.05 and not q.worse_than_bicubic
    torch.manual_seed(0)
    with torch.no_grad():
        net.tail.weight.normal_(0, 0.5)  # a network that adds garbage and a cast
        net.tail.bias.copy_(torch.tensor([0.15, -0.1, 0.1]))
    bad = quality_check(net, split)
    # worse in colour alone (as on the real tissue) is enough to be flagged
    assert bad.worse_than_bicubic and bad.network_cie94 > bad.bicubic_cie94
    assert "WORSE than bicubic in CIE-94" in bad.details


def _cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[dict[str, object], str]:
    app = typer.Typer()

    @app.callback()
    def _root() -> None:
        """Test root."""

    register(app)
    app(args=args, prog_name="scopectl", standalone_mode=False)
    captured = capsys.readouterr()
    return dict(json.loads(captured.out.strip().splitlines()[-1])), captured.err


def test_enhance_repeats_the_warning_of_a_model_worse_than_bicubic(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import cv2

    net = build_network(residual=True)
    quality = QualityCheck(
        pairs=4,
        network_ssim=0.4,
        network_cie94=20.0,
        bicubic_ssim=0.45,
        bicubic_cie94=15.7,
        worse_than_bicubic=True,
        details="on 4 validation patches: the network is WORSE than bicubic in SSIM(Y)",
    )
    card = ModelCard(
        name="bad",
        input_pixel_size_um=0.925,
        target_pixel_size_um=0.37,
        global_residual=True,
        quality=quality,
    )
    save_model(tmp_path / "bad", net, card)
    save_model(tmp_path / "good", net, card.model_copy(update={"name": "good", "quality": None}))
    rgb = np.random.default_rng(0).integers(0, 255, (40, 44, 3), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / "in.png"), rgb)
    for name, warned in (("bad", True), ("good", False)):
        out, err = _cli(
            [
                "enhance",
                str(tmp_path / "in.png"),
                "--model",
                str(tmp_path / name),
                "--out",
                str(tmp_path / f"o-{name}"),
                "--json",
            ],
            capsys,
        )
        assert ("WARNING: model 'bad' is WORSE than plain bicubic" in err) is warned
        assert out["outputs"]
