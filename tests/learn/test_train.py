"""Training end to end on tiny seeded data on the CPU: CLI, files, reproducibility, resume after a kill."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import cv2
import h5py
import numpy as np
import pytest
import torch
import typer
from safetensors.torch import load_file

from scopectl.cli.cmd_learn import register
from scopectl.errors import InputFileError, ModelError
from scopectl.learn.data import read_dataset
from scopectl.learn.device import bf16_training_fast, resolve_precision
from scopectl.learn.modelio import load_model
from scopectl.learn.train import TrainConfig, TrainProgress, train


def _cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> dict[str, object]:
    app = typer.Typer()

    @app.callback()
    def _root() -> None:
        """Test root."""

    register(app)
    app(args=args, prog_name="scopectl", standalone_mode=False)
    out = capsys.readouterr().out.strip().splitlines()
    return dict(json.loads(out[-1]))


def _weights(model_dir: Path) -> dict[str, torch.Tensor]:
    ckpt = model_dir / "checkpoint"
    meta = json.loads((ckpt / "state.json").read_text())
    return load_file(ckpt / meta["tensors"])


def _cfg(**kw: object) -> TrainConfig:
    base: dict[str, object] = {"batch_size": 8, "device": "cpu", "seed": 5}
    base.update(kw)
    return TrainConfig(**base)  # type: ignore[arg-type]


def test_one_epoch_end_to_end_through_the_cli(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    make_dataset: Callable[..., Path],
) -> None:
    monkeypatch.setenv("SCOPECTL_ROOT", str(tmp_path))
    (tmp_path / "datasets").mkdir()
    make_dataset(tmp_path / "datasets" / "tiny.h5")
    args = [
        "train",
        "--dataset",
        "tiny",
        "--model",
        "m1",
        "--epochs",
        "1",
        "--batch-size",
        "8",
        "--device",
        "cpu",
    ]
    res = _cli([*args, "--json"], capsys)
    assert res["stopped"] == "epochs" and res["epochs_completed"] == 1.0 and res["resumed"] is False
    model_dir = tmp_path / "models" / "m1"
    assert (model_dir / "training-curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    net, card = load_model(model_dir)
    assert card.training.train_patches == 24 and card.training.val_patches == 8
    # the default (fast) recipe: peak learning rate 1e-3 at batch 16, scaled by √(batch/16); residual network
    assert card.training.learning_rate == pytest.approx(1e-3 * (8 / 16) ** 0.5)
    assert card.training.recipe == "fast" and card.training.augment and card.global_residual
    assert card.quality is not None and card.quality.pairs == 8
    assert card.sample_type == "lung" and card.input_pixel_size_um == 0.925
    assert {"loss", "mse", "ssim_network", "ssim_bicubic"} <= set(card.validation)
    assert [s["slide_id"] for s in card.training.dataset_provenance["slides"]] == ["t1", "t2"]
    # a seeded start unless --start says otherwise (the shipped twin start is opt-in)
    assert res["start"] == card.training.start == ""

    # run again with more epochs: the same command resumes
    res2 = _cli([*args[:5], "--epochs", "2", *args[7:], "--json"], capsys)
    assert res2["resumed"] is True and res2["epochs_completed"] == 2.0 and res2["steps"] == 6

    # enhance an image with it, and export it to ONNX
    rgb = np.random.default_rng(0).integers(0, 255, (40, 44, 3), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / "field 1.png"), rgb)
    out = _cli(
        ["enhance", str(tmp_path / "field 1.png"), "--model", "m1", "--out", str(tmp_path / "o"), "--json"],
        capsys,
    )
    outputs = out["outputs"]
    assert isinstance(outputs, list) and outputs[0]["output_shape"] == [100, 110]
    assert (tmp_path / "o" / "field 1.ome.tif").is_file() and out["precision"] in ("fp32", "bf16")
    exported = _cli(["export", "onnx", "--model", "m1", "--json"], capsys)
    assert Path(str(exported["onnx"])).is_file() and float(str(exported["max_abs_diff"])) < 1e-4
    assert net.ratio == (5, 2)


def test_resume_after_being_killed_mid_epoch(tmp_path: Path, tiny_dataset: Path) -> None:
    reference = train(tiny_dataset, tmp_path / "ref", _cfg(epochs=2))
    script = textwrap.dedent(
        f"""
        import os
        from pathlib import Path
        from scopectl.learn.train import TrainConfig, train
        def die(ev):
            if ev.kind == "step" and ev.steps_done == 5:
                os._exit(137)  # no cleanup, like SIGKILL
        train(Path({str(tiny_dataset)!r}), Path({str(tmp_path / "k")!r}),
              TrainConfig(epochs=2, batch_size=8, device="cpu", seed=5, checkpoint_interval_s=1e-6),
              on_progress=die)
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 137, proc.stderr
    state = json.loads((tmp_path / "k" / "checkpoint" / "state.json").read_text())["state"]
    assert state["global_step"] == 4 and state["step_in_epoch"] == 1  # mid-epoch checkpoint
    seen: list[TrainProgress] = []
    result = train(
        tiny_dataset, tmp_path / "k", _cfg(epochs=2, checkpoint_interval_s=1e-6), on_progress=seen.append
    )
    assert result.resumed and seen[0].kind == "start" and "resuming" in seen[0].message
    # seeded CPU training is reproducible, and a run killed mid-epoch resumes to the very same weights
    wk, wr = _weights(tmp_path / "k"), _weights(tmp_path / "ref")
    assert wk.keys() == wr.keys() and all(torch.equal(wk[k], wr[k]) for k in wr)
    assert result.steps == reference.steps == 6
    assert result.history["val_loss"] == reference.history["val_loss"]


def test_time_limited_training_stops_and_keeps_the_best(tmp_path: Path, tiny_dataset: Path) -> None:
    result = train(tiny_dataset, tmp_path / "t", _cfg(minutes=0.0005))
    assert result.stopped == "time" and result.steps >= 1
    assert result.best_val_loss == min(result.history["val_loss"])
    other_seed = train(tiny_dataset, tmp_path / "s", _cfg(minutes=0.0005, seed=6))
    assert other_seed.history["val_loss"][0] != result.history["val_loss"][0]


def test_precision_auto_trains_in_bf16_where_amx_makes_it_faster(tmp_path: Path, tiny_dataset: Path) -> None:
    """``auto`` resolves per device; bf16 autocast training on the CPU learns and is recorded in the card."""
    cpu = torch.device("cpu")
    want = "bf16" if bf16_training_fast(cpu) else "fp32"
    assert resolve_precision("auto", cpu, inference=False) == want
    assert resolve_precision("fp32", cpu, inference=False) == "fp32"
    bf16 = train(tiny_dataset, tmp_path / "b", _cfg(epochs=2, precision="bf16"))
    fp32 = train(tiny_dataset, tmp_path / "f", _cfg(epochs=2, precision="fp32"))
    assert np.isfinite(bf16.best_val_loss) and bf16.steps == fp32.steps
    assert bf16.best_val_loss == pytest.approx(fp32.best_val_loss, rel=0.1)
    assert load_model(tmp_path / "b")[1].training.precision == "bf16"


def test_refuses_to_overwrite_or_mix_datasets(
    tmp_path: Path, tiny_dataset: Path, make_dataset: Callable[..., Path]
) -> None:
    train(tiny_dataset, tmp_path / "m", _cfg(epochs=1))
    other = make_dataset(tmp_path / "other.h5", seed=9)
    with pytest.raises(ModelError, match="another dataset"):
        train(other, tmp_path / "m", _cfg(epochs=2))
    for f in (tmp_path / "m" / "checkpoint").iterdir():
        f.unlink()
    (tmp_path / "m" / "checkpoint").rmdir()
    with pytest.raises(ModelError, match="already there"):
        train(tiny_dataset, tmp_path / "m", _cfg(epochs=2))
    result = train(other, tmp_path / "m", _cfg(epochs=1), force=True)
    assert not result.resumed and result.card.training.dataset == str(other)


def test_dataset_format_is_checked(tmp_path: Path, make_dataset: Callable[..., Path]) -> None:
    path = make_dataset(tmp_path / "d.h5", counts=(4, 2, 1))
    data = read_dataset(path, splits=("train", "val", "test"))
    assert data.ratio == (5, 2) and len(data.splits["train"]) == 4 and data.sample_type == "lung"
    assert data.splits["train"].inputs.dtype == torch.uint8
    with h5py.File(path, "a") as f:
        f.attrs["ratio"] = "3/1"
    with pytest.raises(InputFileError, match="ratio 3/1"):
        read_dataset(path)
    with pytest.raises(InputFileError, match="not found"):
        read_dataset(tmp_path / "missing.h5")


@pytest.mark.slow
def test_torchrun_data_parallel_equals_one_process_with_the_same_global_batch(
    tmp_path: Path, tiny_dataset: Path
) -> None:
    """Two DDP processes (Gloo) with batch 4 see the same patches per step as one process with batch 8."""
    script = tmp_path / "ddp.py"
    script.write_text(
        textwrap.dedent(
            f"""
            from pathlib import Path
            from scopectl.learn.train import TrainConfig, train
            train(Path({str(tiny_dataset)!r}), Path({str(tmp_path / "ddp")!r}),
                  TrainConfig(epochs=2, batch_size=4, device="cpu", seed=5, precision="fp32"))
            """
        )
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(script)]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, start_new_session=True
    )
    try:
        _out, err = proc.communicate(timeout=180)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the launcher and both workers
        proc.communicate()
        pytest.fail("torchrun did not finish within 180 s")
    assert proc.returncode == 0, err[-2000:]
    # float32 on both sides: bf16 autocast (the CPU default with AMX) would hide the all-reduce's rounding
    single = train(tiny_dataset, tmp_path / "one", _cfg(epochs=2, batch_size=8, precision="fp32"))
    wd, ws = _weights(tmp_path / "ddp"), _weights(tmp_path / "one")
    for key in ws:
        # float rounding of the gradient all-reduce, amplified by the default recipe's 5× larger learning rate
        torch.testing.assert_close(wd[key], ws[key], rtol=1e-4, atol=5e-5)
    card = load_model(tmp_path / "ddp")[1]
    assert card.training.world_size == 2 and single.steps == 6
