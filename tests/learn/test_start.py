"""Starting weights: the shipped twin start, a named model, or none; refused where they do not fit."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from scopectl.errors import ConfigError, ModelError
from scopectl.learn.modelio import ModelCard, load_model, save_model
from scopectl.learn.network import EnhanceNet, build_network
from scopectl.learn.start import load_start, shipped_start
from scopectl.learn.train import TrainConfig, train


def _fresh(ratio: tuple[int, int] = (5, 2), *, residual: bool = True, seed: int = 0) -> EnhanceNet:
    net = build_network(ratio, residual=residual)
    net.reset_parameters(generator=torch.Generator().manual_seed(seed))
    return net


def _save(directory: Path, *, seed: int = 1) -> Path:
    card = ModelCard(
        name="start-test",
        ratio="5/2",
        global_residual=True,
        input_pixel_size_um=0.925,
        target_pixel_size_um=0.37,
    )
    save_model(directory, _fresh(seed=seed), card)
    return directory


def _same(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_a_named_start_is_copied_and_one_that_does_not_fit_is_refused(tmp_path: Path) -> None:
    start = _save(tmp_path / "s")
    net = _fresh()
    info = load_start(net, str(start), recipe="fast", ratio=(5, 2))
    assert info.startswith("start-test (weights sha256 ") and _same(net, load_model(start)[0])
    with pytest.raises(ConfigError, match="ratio is 5/2, the dataset's 3/1"):
        load_start(_fresh((3, 1)), str(start), recipe="fast", ratio=(3, 1))
    with pytest.raises(ConfigError, match="global residual"):
        load_start(_fresh(residual=False), str(start), recipe="paper", ratio=(5, 2))
    with pytest.raises(ModelError):
        load_start(_fresh(), str(start / "missing"), recipe="fast", ratio=(5, 2))


def test_none_never_starts_and_the_twin_start_is_refused_where_it_does_not_fit() -> None:
    net, before = _fresh(), _fresh()
    assert load_start(net, "none", recipe="fast", ratio=(5, 2)) == "" and _same(net, before)
    with pytest.raises(ConfigError, match="global residual path does not fit the paper recipe"):
        load_start(_fresh(residual=False), "twin", recipe="paper", ratio=(5, 2))
    with pytest.raises(ConfigError, match="the dataset's 3/1"):
        load_start(_fresh((3, 1)), "twin", recipe="fast", ratio=(3, 1))


def test_the_shipped_start_is_a_fast_recipe_model_of_the_twin_at_ratio_5_2() -> None:
    path = shipped_start()
    assert path is not None, "src/scopectl/data/start/ is missing (benchmarks/pretrain_start.py builds it)"
    net, card = load_model(path)
    assert card.ratio == "5/2" and card.global_residual and card.training.recipe == "fast"
    assert card.training.dataset_provenance.get("software_version") == "scopectl benchmarks/pretrain_start.py"
    fresh = _fresh()
    assert load_start(fresh, "twin", recipe="fast", ratio=(5, 2)).startswith(card.name)
    assert _same(fresh, net)


def test_training_records_where_it_started_also_after_a_resume(tmp_path: Path, tiny_dataset: Path) -> None:
    start = _save(tmp_path / "s")
    cfg = TrainConfig(epochs=1, batch_size=8, device="cpu", start=str(start))
    result = train(tiny_dataset, tmp_path / "m", cfg)
    assert result.card.training.start.startswith("start-test (weights sha256 ")
    resumed = train(tiny_dataset, tmp_path / "m", cfg.model_copy(update={"epochs": 2}))
    assert resumed.resumed and resumed.card.training.start == result.card.training.start
    scratch = train(tiny_dataset, tmp_path / "n", cfg.model_copy(update={"start": "none"}))
    assert scratch.card.training.start == ""
