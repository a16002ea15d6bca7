"""Training the network: two recipes, loss, optimiser, validation, checkpoints, resume and the fast paths.

``--recipe paper`` is the paper's: loss = MSE + λ·Sobel gradient energy (λ = 0.001), Adam with a constant
learning rate of 2·10⁻⁴ at mini-batch 32, weights from a truncated normal (σ 0.05).  The paper trained for
8–37 GPU hours; given minutes on a CPU it makes colour worse than bicubic interpolation.

``--recipe fast`` (the default) reaches good quality in minutes on a CPU from a few captures:

* the network has a global residual path (output = bicubic enlargement + learned correction), an ICNR
  start of the sub-pixel layer and a small last layer, so training starts from bicubic quality and no
  checkerboard (:mod:`scopectl.learn.network`);
* mini-batch 16, Adam at a peak learning rate of 10⁻³ (× √(batch/16)) with a linear warm-up over the
  first 5 % of the run and a cosine decay to 5 % of the peak at its end (the run's length is its
  epochs, or its minutes when it is time-limited);
* per-patch colour and gain augmentation of input and target alike (gains ±15 % per channel, brightness
  ±20 %, gamma 0.8–1.25), a ±3 % white-balance wobble of the input alone, and random flips and quarter
  turns, so that the network learns the colour correction over more stain colours than a few captures
  hold (:func:`augment_batch`);
* validation on a fixed subset of at most 256 validation patches.

Both recipes keep the model with the lowest validation loss, validate at most about 10 % of the time
(every ``k`` epochs, ``k`` from the sizes of the two splits, and within long epochs every
``val_interval_s``), and end with a quality check of the kept model against bicubic interpolation on the
validation patches (SSIM(Y) and CIE-94, :class:`~scopectl.learn.modelio.QualityCheck`).  scopectl adds
what a long run needs:

* **Resume.**  ``<model>/checkpoint/`` holds the weights and Adam state (safetensors) and the run state
  (JSON): epoch, step, history, best loss.  It is rewritten every ``checkpoint_interval_s`` and at every
  validation; a run killed at any moment resumes from the last checkpoint with the same command.  The
  order of patches in epoch ``e`` is a pure function of ``(seed, e)``, so a resumed CPU run gives the
  same weights as an uninterrupted one.
* **Fast path on CUDA.**  bf16 autocast (loss in float32), channels-last memory, patches resident on the
  GPU (or pinned, double-buffered), fused Adam, optional ``torch.compile``; larger batches with the
  learning rate scaled by √(batch/32) unless given.
* **Several GPUs or machines.**  Run the same command under ``torchrun``; each process trains on its
  share of every epoch with DistributedDataParallel (NCCL on GPUs, Gloo on CPUs); rank 0 writes files.
"""

from __future__ import annotations

import io
import json
import math
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field
from safetensors.torch import load_file, save
from torch import nn

from scopectl.config.base import StrictModel
from scopectl.errors import ConfigError, ModelError
from scopectl.learn.data import BatchSource, PatchDataset, PatchSplit, read_dataset
from scopectl.learn.device import autocast, pick_device, resolve_precision
from scopectl.learn.enhance import run_network
from scopectl.learn.loss import SOBEL_WEIGHT, enhancement_loss
from scopectl.learn.modelio import (
    CARD_NAME,
    WEIGHTS_NAME,
    ModelCard,
    QualityCheck,
    TrainingInfo,
    atomic_write_bytes,
    load_model,
    save_model,
)
from scopectl.learn.network import EnhanceNet, build_network
from scopectl.learn.start import load_start
from scopectl.metrics import bicubic_resize, cie94, ssim

__all__ = [
    "PAPER_BATCH",
    "PAPER_LEARNING_RATE",
    "Recipe",
    "TrainConfig",
    "TrainProgress",
    "TrainResult",
    "augment_batch",
    "quality_check",
    "train",
]

PAPER_LEARNING_RATE = 2e-4
PAPER_BATCH = 32
DEFAULT_EPOCHS = 100
CHECKPOINT_DIR = "checkpoint"
CURVE_NAME = "training-curve.png"


Recipe = Literal["fast", "paper"]
FAST_BATCH = 16
FAST_LEARNING_RATE = 1e-3
FAST_MAX_VAL_PATCHES = 256
#: Fraction of the run spent warming the learning rate up, and the final learning rate / peak (fast recipe).
WARMUP_FRACTION = 0.05
FINAL_LR_FRACTION = 0.05
#: Validation may take about this fraction of the training time.
VAL_TIME_FRACTION = 0.1


class TrainConfig(StrictModel):
    """Settings of a training run (defaults: the fast recipe; ``recipe="paper"`` for the paper's)."""

    recipe: Recipe = "fast"
    epochs: int | None = Field(default=None, ge=1, le=1_000_000)
    minutes: float | None = Field(default=None, gt=0)
    batch_size: int | None = Field(default=None, ge=1, le=65536)
    augment: bool | None = None
    """Colour/gain and flip augmentation (default: on for the fast recipe, off for the paper's)."""
    learning_rate: float | None = Field(default=None, gt=0, le=1.0)
    sobel_weight: float = Field(default=SOBEL_WEIGHT, ge=0)
    seed: int = Field(default=0, ge=0)
    device: str = "auto"
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    channels_last: bool = True
    compile: bool = False
    val_interval_s: float = Field(default=600.0, gt=0)
    checkpoint_interval_s: float = Field(default=120.0, gt=0)
    max_train_patches: int | None = Field(default=None, ge=1)
    max_val_patches: int | None = Field(default=None, ge=1)
    patience: int | None = Field(default=None, ge=1)
    threads: int | None = Field(default=None, ge=1, le=1024)
    start: str = "none"
    """Starting weights: ``none`` (a seeded initialisation), ``twin`` (the shipped start pretrained on the
    twin, :mod:`scopectl.learn.start`), or a model directory of the same architecture, ratio and recipe."""

    def resolved_batch_size(self) -> int:
        """The given batch size, or the recipe's (paper 32, fast 16)."""
        if self.batch_size is not None:
            return self.batch_size
        return PAPER_BATCH if self.recipe == "paper" else FAST_BATCH

    def resolved_augment(self) -> bool:
        return self.augment if self.augment is not None else self.recipe == "fast"

    def resolved_max_val_patches(self) -> int | None:
        if self.max_val_patches is not None:
            return self.max_val_patches
        return FAST_MAX_VAL_PATCHES if self.recipe == "fast" else None

    def resolved_learning_rate(self, world_size: int = 1) -> float:
        """The given (peak) learning rate, or the recipe's scaled by √(global batch / recipe batch).

        Paper: 2·10⁻⁴ at batch 32; fast: 10⁻³ at batch 16.  The global batch is ``batch_size`` × the
        number of processes (DistributedDataParallel).
        """
        if self.learning_rate is not None:
            return self.learning_rate
        batch = self.resolved_batch_size() * world_size
        if self.recipe == "paper":
            return PAPER_LEARNING_RATE * math.sqrt(batch / PAPER_BATCH)
        return FAST_LEARNING_RATE * math.sqrt(batch / FAST_BATCH)

    def lr_factor(self, progress: float) -> float:
        """Learning rate / peak at ``progress`` (0..1 of the run): constant for the paper's recipe; linear
        warm-up from 10 % then a cosine decay to :data:`FINAL_LR_FRACTION` for the fast recipe."""
        if self.recipe == "paper":
            return 1.0
        t = min(max(progress, 0.0), 1.0)
        if t < WARMUP_FRACTION:
            return 0.1 + 0.9 * t / WARMUP_FRACTION
        u = (t - WARMUP_FRACTION) / (1.0 - WARMUP_FRACTION)
        return FINAL_LR_FRACTION + (1.0 - FINAL_LR_FRACTION) * 0.5 * (1.0 + math.cos(math.pi * u))

    def resolved_epochs(self) -> int | None:
        """Epoch limit: the given one, none when only a time limit is given, else 100."""
        if self.epochs is None and self.minutes is None:
            return DEFAULT_EPOCHS
        return self.epochs


@dataclass
class TrainProgress:
    """A progress report: ``kind`` is ``start``, ``step``, ``eval`` or ``end``."""

    kind: Literal["start", "step", "eval", "end"]
    epoch: float
    steps_done: int
    steps_total: int | None
    elapsed_s: float
    time_limit_s: float | None
    train_loss: float | None = None
    val_loss: float | None = None
    best_val_loss: float | None = None
    patches_per_s: float | None = None
    improved: bool = False
    message: str = ""


@dataclass
class TrainResult:
    """What a training run did."""

    model_dir: Path
    card: ModelCard
    stopped: str
    epochs_completed: float
    best_val_loss: float
    steps: int
    patches_per_s: float
    history: dict[str, list[float]]
    resumed: bool


@dataclass
class _State:
    epoch: int = 0
    step_in_epoch: int = 0
    global_step: int = 0
    patches_seen: int = 0
    elapsed_s: float = 0.0
    best_val_loss: float = math.inf
    best_epoch: float = 0.0
    evals_since_best: int = 0
    interval_loss_sum: float = 0.0
    interval_loss_count: int = 0
    history: dict[str, list[float]] = field(
        default_factory=lambda: {
            k: [] for k in ("epoch", "patches", "elapsed_s", "train_loss", "val_loss", "val_mse")
        }
    )

    def to_json(self) -> dict[str, Any]:
        data = dict(self.__dict__)
        data["best_val_loss"] = None if math.isinf(self.best_val_loss) else self.best_val_loss
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> _State:
        state = cls()
        for key, value in data.items():
            if hasattr(state, key):
                setattr(state, key, value)
        if state.best_val_loss is None:
            state.best_val_loss = math.inf
        return state


@dataclass(frozen=True)
class _Dist:
    world: int
    rank: int
    local_rank: int

    @classmethod
    def from_env(cls) -> _Dist:
        return cls(
            world=int(os.environ.get("WORLD_SIZE", "1")),
            rank=int(os.environ.get("RANK", "0")),
            local_rank=int(os.environ.get("LOCAL_RANK", "0")),
        )

    @property
    def main(self) -> bool:
        return self.rank == 0


def epoch_permutation(n: int, *, seed: int, epoch: int) -> torch.Tensor:
    """The order of the ``n`` training patches in ``epoch`` (a pure function of seed and epoch)."""
    gen = torch.Generator().manual_seed((seed * 1_000_003 + epoch * 7_919 + 17) % (2**63))
    return torch.randperm(n, generator=gen)


def train(
    dataset: Path | str,
    model_dir: Path | str,
    config: TrainConfig,
    *,
    name: str | None = None,
    force: bool = False,
    on_progress: Callable[[TrainProgress], None] | None = None,
) -> TrainResult:
    """Train (or resume training) the paper's network on a patch dataset.

    Parameters
    ----------
    dataset
        The dataset HDF5 file (:mod:`scopectl.learn.data`).
    model_dir
        Output directory; an existing ``checkpoint/`` in it is resumed.
    config
        Run settings.
    name
        Model name written into the card (default: the directory name).
    force
        Discard an existing model or checkpoint in ``model_dir`` and start afresh.
    on_progress
        Called (on rank 0) with :class:`TrainProgress` reports.

    Raises
    ------
    ModelError
        If ``model_dir`` holds a finished model and no checkpoint (without ``force``), or a checkpoint of
        another dataset or ratio.
    InputFileError
        If the dataset is unreadable.
    """
    dist = _Dist.from_env()
    initialised = False
    if dist.world > 1 and not torch.distributed.is_initialized():
        backend = "nccl" if torch.cuda.is_available() and config.device != "cpu" else "gloo"
        torch.distributed.init_process_group(backend=backend)
        initialised = True
    try:
        return _Trainer(Path(dataset), Path(model_dir), config, name=name, force=force, dist=dist).run(
            on_progress
        )
    finally:
        if initialised:
            torch.distributed.destroy_process_group()


@dataclass
class _Loop:
    """Bookkeeping of one run of the training loop (clocks, throughput, the loss not yet read back); unlike
    :class:`_State` it is not checkpointed."""

    elapsed_at_start: float
    loss_acc: torch.Tensor
    run_start: float = field(default_factory=time.monotonic)
    last_eval: float = field(default_factory=time.monotonic)
    last_ckpt: float = field(default_factory=time.monotonic)
    rate_t0: float = field(default_factory=time.monotonic)
    rate_patches: int = 0
    patches_per_s: float = 0.0
    acc_count: int = 0

    @property
    def sync_every(self) -> int:
        """Steps between reads of the loss: every step on the CPU, every 25 on a GPU (a read is a sync)."""
        return 1 if self.loss_acc.device.type == "cpu" else 25

    def elapsed(self) -> float:
        """Training seconds of the whole run, earlier runs of a resumed model included."""
        return self.elapsed_at_start + (time.monotonic() - self.run_start)

    def restart_clocks(self) -> None:
        """Start the validation, checkpoint and throughput intervals now."""
        self.last_eval = self.last_ckpt = self.rate_t0 = time.monotonic()


class _Trainer:
    def __init__(
        self,
        dataset: Path,
        model_dir: Path,
        config: TrainConfig,
        *,
        name: str | None,
        force: bool,
        dist: _Dist,
    ) -> None:
        self.dataset_path = dataset
        self.model_dir = model_dir
        self.config = config
        self.name = name or model_dir.name
        self.force = force
        self.dist = dist
        self.ckpt_dir = model_dir / CHECKPOINT_DIR
        self.device = pick_device(config.device, local_rank=dist.local_rank)
        self.precision = resolve_precision(config.precision, self.device, inference=False)
        self.lr = config.resolved_learning_rate(dist.world)
        self.batch_size = config.resolved_batch_size()
        self.augment = config.resolved_augment()
        self.epochs = config.resolved_epochs()
        self.time_limit_s = config.minutes * 60.0 if config.minutes is not None else None
        # set by run() once the data are loaded
        self.steps_per_epoch = 1
        self.steps_total: int | None = None
        self.batch = 1
        self.report: Callable[[TrainProgress], None] | None = None
        self.start_info = ""

    # ------------------------------------------------------------------------------------------ setup
    def _prepare_dir(self) -> bool:
        """Create or clean the model directory; return True when a checkpoint is to be resumed."""
        has_ckpt = (self.ckpt_dir / "state.json").is_file()
        has_model = (self.model_dir / CARD_NAME).is_file() or (self.model_dir / WEIGHTS_NAME).is_file()
        if self.force:
            if self.dist.main:
                for item in (WEIGHTS_NAME, CARD_NAME, CURVE_NAME):
                    (self.model_dir / item).unlink(missing_ok=True)
                shutil.rmtree(self.ckpt_dir, ignore_errors=True)
            self._barrier()
            return False
        if has_model and not has_ckpt:
            raise ModelError(
                f"{self.model_dir}: a trained model is already there and has no checkpoint to resume.",
                hint="Choose another --model name, or pass --force to train it again from scratch.",
            )
        return has_ckpt

    def _barrier(self) -> None:
        if self.dist.world > 1:
            torch.distributed.barrier()

    def _load_data(self) -> PatchDataset:
        data = read_dataset(
            self.dataset_path,
            splits=("train", "val"),
            max_patches=None,
            seed=self.config.seed,
        )
        cfg = self.config
        for split, limit in (("train", cfg.max_train_patches), ("val", cfg.resolved_max_val_patches())):
            part = data.splits[split]
            if limit is not None and len(part) > limit:
                rng = np.random.default_rng(cfg.seed + (0 if split == "train" else 1))
                keep = torch.from_numpy(np.sort(rng.choice(len(part), size=limit, replace=False)))
                data.splits[split] = PatchSplit(part.inputs[keep].clone(), part.targets[keep].clone())
        return data

    # ------------------------------------------------------------------------------------------- run
    def run(self, on_progress: Callable[[TrainProgress], None] | None) -> TrainResult:
        cfg = self.config
        if cfg.threads is not None:
            torch.set_num_threads(cfg.threads)
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # fixed patch shapes: let cuDNN pick the fastest kernels
        resume = self._prepare_dir()
        data = self._load_data()
        self.data = data
        train_split, val_split = data.splits["train"], data.splits["val"]
        state = self._build_model(data.ratio, resume=resume)
        train_src = BatchSource(train_split, device=self.device, channels_last=cfg.channels_last)
        val_src = BatchSource(val_split, device=self.device, channels_last=cfg.channels_last)
        n_train = len(train_split)
        self.batch = min(self.batch_size, max(1, n_train // self.dist.world))
        self.steps_per_epoch = max(1, (n_train // self.dist.world) // self.batch)
        self.steps_total = self.epochs * self.steps_per_epoch if self.epochs is not None else None
        # validate every `val_every` epochs: a validation pass (forward only, ~1/3 of a training step per
        # patch) then costs about VAL_TIME_FRACTION of the training in between
        val_every = max(1, math.ceil(len(val_split) / (3.0 * VAL_TIME_FRACTION * max(1, n_train))))
        self.report = on_progress if (on_progress is not None and self.dist.main) else None
        loop = _Loop(elapsed_at_start=state.elapsed_s, loss_acc=torch.zeros((), device=self.device))
        self._tell(
            "start",
            state,
            elapsed_s=state.elapsed_s,
            message=(
                f"{'resuming' if resume else 'training'} ({cfg.recipe} recipe) on {self.device} "
                f"({self.precision}), {n_train} train / {len(val_split)} val patches, batch "
                f"{self.batch}×{self.dist.world}, lr {self.lr:.3g}"
                + (", colour/gain/flip augmentation" if self.augment else "")
                + f", from {self.start_info or 'a seeded initialisation'}"
            ),
        )
        loop.restart_clocks()
        stopped = ""
        self.net.train()
        try:
            while not stopped:
                if self.epochs is not None and state.epoch >= self.epochs:
                    stopped = "epochs"
                    break
                stopped = self._epoch_steps(state, loop, train_src, val_src, n_train=n_train)
                if not stopped:
                    stopped = self._end_epoch(state, loop, val_src, val_every=val_every)
            # A run that stopped mid-epoch validates where it stopped, unless nothing happened since.
            state.elapsed_s = loop.elapsed()
            pos = state.epoch + state.step_in_epoch / self.steps_per_epoch
            if not state.history["epoch"] or state.history["epoch"][-1] < pos - 1e-9:
                self._evaluate(state, val_src, self.steps_per_epoch, self.report, loop.elapsed())
            self._save_checkpoint(state)
        except KeyboardInterrupt:
            state.elapsed_s = loop.elapsed()
            self._save_checkpoint(state)
            raise
        card = self._final_card(state, self.batch, stopped)
        self._tell(
            "end",
            state,
            elapsed_s=state.elapsed_s,
            best_val_loss=state.best_val_loss,
            patches_per_s=loop.patches_per_s,
            message=f"stopped ({stopped}); best validation loss {state.best_val_loss:.5g}",
        )
        return TrainResult(
            model_dir=self.model_dir,
            card=card,
            stopped=stopped,
            epochs_completed=state.epoch + state.step_in_epoch / self.steps_per_epoch,
            best_val_loss=state.best_val_loss,
            steps=state.global_step,
            patches_per_s=loop.patches_per_s,
            history=state.history,
            resumed=resume,
        )

    def _build_model(self, ratio: tuple[int, int], *, resume: bool) -> _State:
        """The seeded network, its optimizer and the (distributed, compiled) module that trains it; the
        training state from the checkpoint when resuming."""
        cfg = self.config
        gen = torch.Generator().manual_seed(cfg.seed)
        model = build_network(ratio, residual=cfg.recipe == "fast")
        model.reset_parameters(generator=gen)
        model = model.to(self.device)
        if cfg.channels_last:
            model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        optimizer = torch.optim.Adam(
            model.parameters(), lr=self.lr, fused=True if self.device.type == "cuda" else None
        )
        state = _State()
        if resume:
            state = self._load_checkpoint(model, optimizer)
        else:
            self.start_info = load_start(model, cfg.start, recipe=cfg.recipe, ratio=ratio)
        self.model = model
        self.optimizer = optimizer
        net: nn.Module = model
        if self.dist.world > 1:
            net = nn.parallel.DistributedDataParallel(
                model, device_ids=[self.device.index] if self.device.type == "cuda" else None
            )
        if cfg.compile:
            net = torch.compile(net)  # type: ignore[assignment]
        self.net = net
        return state

    def _tell(self, kind: Literal["start", "step", "end"], state: _State, **values: Any) -> None:
        """Report progress (on the main process, when someone listens)."""
        if self.report is None:
            return
        values.setdefault("best_val_loss", None if math.isinf(state.best_val_loss) else state.best_val_loss)
        self.report(
            TrainProgress(
                kind=kind,
                epoch=state.epoch + state.step_in_epoch / self.steps_per_epoch,
                steps_done=state.global_step,
                steps_total=self.steps_total,
                time_limit_s=self.time_limit_s,
                **values,
            )
        )

    def _schedule_position(self, state: _State, loop: _Loop) -> float:
        """How far the run is, 0..1, by steps or by time (what the learning-rate schedule follows)."""
        if self.steps_total:
            return state.global_step / self.steps_total
        if self.time_limit_s:
            return loop.elapsed() / self.time_limit_s
        return 0.0

    def _epoch_steps(
        self, state: _State, loop: _Loop, train_src: BatchSource, val_src: BatchSource, *, n_train: int
    ) -> str:
        """Train the rest of the current epoch; return why the run stops mid-epoch ("" when the epoch ends)."""
        cfg = self.config
        perm = epoch_permutation(n_train, seed=cfg.seed, epoch=state.epoch)
        shard = perm[self.dist.rank :: self.dist.world]
        for step in range(state.step_in_epoch, self.steps_per_epoch):
            self._train_step(state, loop, train_src, shard[step * self.batch : (step + 1) * self.batch])
            state.step_in_epoch = step + 1
            last_step = step + 1 == self.steps_per_epoch
            if loop.acc_count % loop.sync_every == 0 or last_step:
                stopped = self._after_sync(state, loop, val_src, last_step=last_step)
                if stopped:
                    return stopped
        return ""

    def _train_step(self, state: _State, loop: _Loop, train_src: BatchSource, index: torch.Tensor) -> None:
        """One optimizer step on the patches ``index`` (the loss stays on the device until the next sync)."""
        cfg = self.config
        x, y = train_src.batch(index)
        if self.augment:
            x, y = augment_batch(
                x, y, seed=cfg.seed, step=state.global_step, rank=self.dist.rank, world=self.dist.world
            )
        factor = cfg.lr_factor(self._schedule_position(state, loop))
        for group in self.optimizer.param_groups:
            group["lr"] = self.lr * factor
        with autocast(self.device, self.precision):
            out = self.net(x)
        terms = enhancement_loss(out, y, sobel_weight=cfg.sobel_weight)
        self.optimizer.zero_grad(set_to_none=True)
        terms.total.backward()  # type: ignore[no-untyped-call]
        self.optimizer.step()
        loop.loss_acc += terms.total.detach()
        loop.acc_count += 1
        state.global_step += 1
        state.patches_seen += self.batch * self.dist.world
        loop.rate_patches += self.batch * self.dist.world

    def _after_sync(self, state: _State, loop: _Loop, val_src: BatchSource, *, last_step: bool) -> str:
        """Read the accumulated loss (a device sync), report, and take the decisions all ranks agree on:
        stop at the time limit, validate or checkpoint on their intervals.  Returns why the run stops."""
        cfg = self.config
        loss_value = float(loop.loss_acc.item())
        state.interval_loss_sum += loss_value
        state.interval_loss_count += loop.acc_count
        loop.loss_acc.zero_()
        mean_loss = loss_value / loop.acc_count
        loop.acc_count = 0
        now = time.monotonic()
        if now - loop.rate_t0 > 0:
            loop.patches_per_s = loop.rate_patches / (now - loop.rate_t0)
        if not math.isfinite(mean_loss):
            raise ModelError(
                f"training diverged (loss {mean_loss}) at step {state.global_step}.",
                hint="Lower --lr or --batch-size, or use --precision fp32.",
            )
        self._tell(
            "step", state, elapsed_s=loop.elapsed(), train_loss=mean_loss, patches_per_s=loop.patches_per_s
        )
        flags = self._agree(
            [
                self.time_limit_s is not None and loop.elapsed() >= self.time_limit_s,
                time.monotonic() - loop.last_eval >= cfg.val_interval_s,
                time.monotonic() - loop.last_ckpt >= cfg.checkpoint_interval_s,
            ]
        )
        if flags[0]:
            return "time"
        if flags[1] and not last_step:
            state.elapsed_s = loop.elapsed()
            stopped = (
                "patience"
                if self._evaluate(state, val_src, self.steps_per_epoch, self.report, loop.elapsed())
                else ""
            )
            loop.last_eval = time.monotonic()
            if stopped:
                self._save_checkpoint(state)
                return stopped
        elif flags[2] and not last_step:
            state.elapsed_s = loop.elapsed()
            self._save_checkpoint(state)
            loop.last_ckpt = time.monotonic()
        return ""

    def _end_epoch(self, state: _State, loop: _Loop, val_src: BatchSource, *, val_every: int) -> str:
        """Count the finished epoch, validate every ``val_every`` epochs, checkpoint on its interval."""
        stopped = ""
        state.epoch += 1
        state.step_in_epoch = 0
        state.elapsed_s = loop.elapsed()
        if state.epoch % val_every == 0:
            if self._evaluate(state, val_src, self.steps_per_epoch, self.report, loop.elapsed()):
                stopped = "patience"
            loop.last_eval = time.monotonic()
        if time.monotonic() - loop.last_ckpt >= self.config.checkpoint_interval_s or stopped:
            self._save_checkpoint(state)
            loop.last_ckpt = time.monotonic()
        return stopped

    def _agree(self, flags: list[bool]) -> list[bool]:
        """All ranks take the same decisions (any rank's flag counts)."""
        if self.dist.world == 1:
            return flags
        t = torch.tensor([1.0 if f else 0.0 for f in flags], device=self.device)
        torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
        return [bool(v > 0) for v in t.tolist()]

    # ------------------------------------------------------------------------------------ validation
    @torch.no_grad()
    def _validation_loss(self, val_src: BatchSource) -> tuple[float, float]:
        """Mean loss and MSE over the validation patches (sharded over ranks)."""
        model = self.model
        model.eval()
        n = val_src.n
        index = torch.arange(n)[self.dist.rank :: self.dist.world]
        chunk = max(1, min(256, self.batch_size * 2))
        sums = torch.zeros(3, dtype=torch.float64, device=self.device)
        for start in range(0, len(index), chunk):
            sel = index[start : start + chunk]
            x, y = val_src.batch(sel)
            with autocast(self.device, self.precision):
                out = model(x)
            terms = enhancement_loss(out, y, sobel_weight=self.config.sobel_weight)
            k = float(len(sel))
            sums += torch.stack([terms.total.double() * k, terms.mse.double() * k, torch.tensor(k).to(sums)])
        if self.dist.world > 1:
            torch.distributed.all_reduce(sums)
        model.train()
        total, mse, count = (float(v) for v in sums.tolist())
        return total / count, mse / count

    def _evaluate(
        self,
        state: _State,
        val_src: BatchSource,
        steps_per_epoch: int,
        report: Callable[[TrainProgress], None] | None,
        elapsed_s: float,
    ) -> bool:
        """Validate, keep the best model, update history and curve; return True to stop (patience)."""
        val_loss, val_mse = self._validation_loss(val_src)
        epoch = state.epoch + state.step_in_epoch / steps_per_epoch
        train_loss = (
            state.interval_loss_sum / state.interval_loss_count if state.interval_loss_count else float("nan")
        )
        state.interval_loss_sum, state.interval_loss_count = 0.0, 0
        h = state.history
        h["epoch"].append(epoch)
        h["patches"].append(float(state.patches_seen))
        h["elapsed_s"].append(elapsed_s)
        h["train_loss"].append(train_loss)
        h["val_loss"].append(val_loss)
        h["val_mse"].append(val_mse)
        improved = val_loss < state.best_val_loss
        if improved:
            state.best_val_loss = val_loss
            state.best_epoch = epoch
            state.evals_since_best = 0
            if self.dist.main:
                save_model(self.model_dir, self.model, self._card(state, stopped="", validation=None))
        else:
            state.evals_since_best += 1
        if report:
            report(
                TrainProgress(
                    kind="eval",
                    epoch=epoch,
                    steps_done=state.global_step,
                    steps_total=None,
                    elapsed_s=elapsed_s,
                    time_limit_s=self.time_limit_s,
                    train_loss=train_loss,
                    val_loss=val_loss,
                    best_val_loss=state.best_val_loss,
                    improved=improved,
                )
            )
        return self.config.patience is not None and state.evals_since_best >= self.config.patience

    # ------------------------------------------------------------------------------------------ cards
    def _card(
        self,
        state: _State,
        *,
        stopped: str,
        validation: dict[str, float] | None,
        quality: QualityCheck | None = None,
    ) -> ModelCard:
        data = self.data
        best_mse = (
            state.history["val_mse"][state.history["val_loss"].index(state.best_val_loss)]
            if state.best_val_loss in state.history["val_loss"]
            else float("nan")
        )
        metrics = {"loss": state.best_val_loss, "mse": best_mse, "psnr_db": _psnr(best_mse)}
        metrics.update(validation or {})
        return ModelCard(
            name=self.name,
            ratio=f"{data.ratio[0]}/{data.ratio[1]}",
            input_pixel_size_um=data.input_pixel_size_um,
            target_pixel_size_um=data.target_pixel_size_um,
            sample_type=data.sample_type,
            input_kind=data.input_kind,
            global_residual=self.config.recipe == "fast",
            training=TrainingInfo(
                dataset=str(self.dataset_path),
                dataset_sha256=data.sha256,
                dataset_provenance=data.provenance.to_dict(),
                train_patches=len(data.splits["train"]),
                val_patches=len(data.splits["val"]),
                epochs_completed=state.epoch + state.step_in_epoch / self.steps_per_epoch,
                best_epoch=state.best_epoch,
                steps=state.global_step,
                patches_seen=state.patches_seen,
                batch_size=self.batch_size,
                learning_rate=self.lr,
                recipe=self.config.recipe,
                augment=self.augment,
                sobel_weight=self.config.sobel_weight,
                seed=self.config.seed,
                device=str(self.device),
                precision=self.precision,
                start=self.start_info,
                world_size=self.dist.world,
                duration_s=state.elapsed_s,
                stopped=stopped,
            ),
            validation={k: float(v) for k, v in metrics.items()},
            quality=quality,
        )

    def _final_card(self, state: _State, batch: int, stopped: str) -> ModelCard:
        """Rewrite the best model's card with the final run summary and SSIM on validation patches."""

        self._barrier()  # rank 0 has written the best model
        if not self.dist.main:
            return self._card(state, stopped=stopped, validation=None)
        best, _ = load_model(self.model_dir)
        quality = quality_check(best, self.data.splits["val"])
        extra = {
            "ssim_network": quality.network_ssim,
            "ssim_bicubic": quality.bicubic_ssim,
            "cie94_network": quality.network_cie94,
            "cie94_bicubic": quality.bicubic_cie94,
            "ssim_patches": float(quality.pairs),
        }
        return save_model(
            self.model_dir, best, self._card(state, stopped=stopped, validation=extra, quality=quality)
        )

    # ------------------------------------------------------------------------------------ checkpoints
    def _save_checkpoint(self, state: _State) -> None:
        if not self.dist.main:
            return

        if state.history["epoch"]:
            write_training_curve(self.model_dir / CURVE_NAME, state.history, title=self.name)

        self.ckpt_dir.mkdir(parents=True, exist_ok=True)
        tensors: dict[str, torch.Tensor] = {
            f"model.{k}": v.detach().cpu().contiguous() for k, v in self.model.state_dict().items()
        }
        opt_state = self.optimizer.state_dict()
        for idx, entry in opt_state["state"].items():
            for key, value in entry.items():
                if isinstance(value, torch.Tensor):
                    tensors[f"optimizer.{idx}.{key}"] = value.detach().cpu().contiguous()
        file_name = f"state-{state.global_step:09d}.safetensors"
        atomic_write_bytes(self.ckpt_dir / file_name, save(tensors))
        meta = {
            "format": "scopectl-checkpoint",
            "schema_version": 1,
            "tensors": file_name,
            "state": state.to_json(),
            "param_groups": opt_state["param_groups"],
            "dataset": str(self.dataset_path),
            "dataset_sha256": self.data.sha256,
            "ratio": list(self.data.ratio),
            "config": self.config.model_dump(mode="json"),
            "name": self.name,
            "start": self.start_info,
        }
        atomic_write_bytes(self.ckpt_dir / "state.json", (json.dumps(meta, indent=1) + "\n").encode())
        for old in self.ckpt_dir.glob("state-*.safetensors"):
            if old.name != file_name:
                old.unlink(missing_ok=True)

    def _load_checkpoint(self, model: EnhanceNet, optimizer: torch.optim.Optimizer) -> _State:

        path = self.ckpt_dir / "state.json"
        try:
            meta = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise ModelError(
                f"{path}: unreadable checkpoint ({exc}).", hint="Pass --force to start afresh."
            ) from None
        if meta.get("format") != "scopectl-checkpoint":
            raise ModelError(f"{path}: not a scopectl checkpoint.", hint="Pass --force to start afresh.")
        if meta.get("dataset_sha256") != self.data.sha256 or tuple(meta.get("ratio", ())) != self.data.ratio:
            raise ModelError(
                f"{path}: the checkpoint was trained on another dataset ({meta.get('dataset')}).",
                hint="Train under another --model name, or pass --force to discard the checkpoint.",
            )
        old = meta.get("config", {})
        for key in ("batch_size", "seed", "sobel_weight", "recipe"):
            if key in old and old[key] != getattr(self.config, key):
                raise ConfigError(
                    f"{path}: the checkpoint used {key} = {old[key]}, this run {getattr(self.config, key)}.",
                    hint="Resume with the same settings, or pass --force to start afresh.",
                )
        tensor_file = self.ckpt_dir / str(meta["tensors"])
        if "/" in str(meta["tensors"]) or not tensor_file.is_file():
            raise ModelError(
                f"{tensor_file}: checkpoint tensors are missing.", hint="Pass --force to start afresh."
            )
        tensors = load_file(tensor_file)
        self.start_info = str(meta.get("start", ""))
        model.load_state_dict(
            {k[len("model.") :]: v.to(self.device) for k, v in tensors.items() if k.startswith("model.")}
        )
        opt_state: dict[str, Any] = {"state": {}, "param_groups": meta["param_groups"]}
        for key, value in tensors.items():
            if key.startswith("optimizer."):
                _, idx, name = key.split(".", 2)
                opt_state["state"].setdefault(int(idx), {})[name] = value
        for group in opt_state["param_groups"]:
            group["lr"] = self.lr
        optimizer.load_state_dict(opt_state)
        return _State.from_json(meta["state"])


def _psnr(mse: float) -> float:
    return float(10 * math.log10(1.0 / mse)) if mse > 0 and math.isfinite(mse) else float("nan")


#: Output pixels left out at each patch border when scoring validation patches: the network sees zero padding
#: there (receptive field 12 input px = 30 output px), which a whole image does not have.
QUALITY_BORDER_PX = 15


def quality_check(model: EnhanceNet, split: PatchSplit, *, max_patches: int = 256) -> QualityCheck:
    """The network against bicubic interpolation on up to ``max_patches`` validation patches.

    SSIM on luma and the mean CIE-94 difference against the benchtop patch, as in
    :mod:`scopectl.metrics`, on the patch interior (``QUALITY_BORDER_PX`` left out per side);
    bicubic is MATLAB's (a = −0.5), the paper's baseline.
    """

    n = min(max_patches, len(split))
    b = QUALITY_BORDER_PX
    scores = np.zeros((n, 4))
    for i in range(n):
        x = split.inputs[i].numpy()
        y = split.targets[i].numpy()
        out = run_network(model, x, device=torch.device("cpu"), precision="fp32")
        bic = bicubic_resize(x, shape=(y.shape[0], y.shape[1]))
        yc, oc, bc = y[b:-b, b:-b], out[b:-b, b:-b], bic[b:-b, b:-b]
        scores[i] = (ssim(yc, oc), float(cie94(yc, oc).mean()), ssim(yc, bc), float(cie94(yc, bc).mean()))
    net_ssim, net_de, bic_ssim, bic_de = (float(v) for v in scores.mean(axis=0))
    worse = [
        name
        for name, bad in (("SSIM(Y)", net_ssim < bic_ssim), ("CIE-94 colour difference", net_de > bic_de))
        if bad
    ]
    return QualityCheck(
        pairs=n,
        network_ssim=net_ssim,
        network_cie94=net_de,
        bicubic_ssim=bic_ssim,
        bicubic_cie94=bic_de,
        worse_than_bicubic=bool(worse),
        details=(
            f"on {n} validation patches (interior {y.shape[0] - 2 * b}×{y.shape[1] - 2 * b} px): "
            f"SSIM(Y) bicubic {bic_ssim:.4f} → network {net_ssim:.4f}; CIE-94 bicubic {bic_de:.2f} → "
            f"network {net_de:.2f}"
            + (f"; the network is WORSE than bicubic in {' and '.join(worse)}" if worse else "")
            if n
            else "no validation patches"
        ),
    )


def augment_batch(
    x: torch.Tensor, y: torch.Tensor, *, seed: int, step: int, rank: int = 0, world: int = 1
) -> tuple[torch.Tensor, torch.Tensor]:
    """Colour and gain augmentation of each patch pair, and a flip or quarter turn of the whole batch.

    Per patch, input and target alike: gains ×U(0.85, 1.15) per channel times a brightness ×U(0.8, 1.2),
    then a gamma U(0.8, 1.25) (stains of other strengths and hues, so that the mapping is learnt over more
    colours than a few captures hold); then the input alone: white-balance gains ×U(0.97, 1.03) per
    channel (the capture-to-capture wobble of a phone's auto white balance).  Values are clipped to
    [0, 1].  Inputs and targets are turned and flipped alike (one of the eight symmetries of the square per
    batch).  A pure function of ``(seed, step)``, so resumed runs agree; with ``world`` data-parallel
    processes the parameters are drawn for the global batch and process ``rank`` takes the patches at
    positions ``rank::world`` (its shard), as one process with the global batch would.

    Notes
    -----
    Jittering the inputs alone by ±10–15 % (a first version) made the network ignore the input's
    brightness and guess it from the tissue's texture: on real tissue through a foreign phone it then
    darkened test captures of other tissue by 7 L* units, worse than bicubic (``docs/performance.md``).
    """
    gen = torch.Generator().manual_seed((seed * 1_000_003 + step * 9_973 + 101) % (2**63))
    n = x.shape[0] * world
    joint = torch.empty(n, 3, 1, 1).uniform_(0.85, 1.15, generator=gen)
    joint *= torch.empty(n, 1, 1, 1).uniform_(0.8, 1.2, generator=gen)
    gamma = torch.empty(n, 1, 1, 1).uniform_(math.log(0.8), math.log(1.25), generator=gen).exp_()
    wobble = torch.empty(n, 3, 1, 1).uniform_(0.97, 1.03, generator=gen)
    turn = int(torch.randint(0, 8, (1,), generator=gen))
    joint, gamma = joint[rank::world].to(x.device), gamma[rank::world].to(x.device)
    wobble = wobble[rank::world].to(x.device)
    x = (x * joint).clamp_(1e-6, 1.0).pow_(gamma).mul_(wobble).clamp_(0.0, 1.0)
    y = (y * joint).clamp_(1e-6, 1.0).pow_(gamma)
    if turn & 4:
        x, y = x.flip(-1), y.flip(-1)
    if turn & 3:
        x, y = torch.rot90(x, turn & 3, (-2, -1)), torch.rot90(y, turn & 3, (-2, -1))
    fmt = (
        torch.channels_last if x.is_contiguous(memory_format=torch.channels_last) else torch.contiguous_format
    )
    return x.contiguous(memory_format=fmt), y.contiguous(memory_format=fmt)


def write_training_curve(path: Path, history: dict[str, list[float]], *, title: str) -> None:
    """Plot training and validation loss against epochs into a PNG (written atomically)."""

    import matplotlib  # matplotlib loads only to draw figures

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure  # matplotlib loads only to draw figures

    fig = Figure(figsize=(6.4, 4.0), dpi=100)
    ax = fig.add_subplot(1, 1, 1)
    epochs = history["epoch"]
    ax.plot(epochs, history["train_loss"], "o-", label="training loss (mean since previous point)", ms=3)
    ax.plot(epochs, history["val_loss"], "s-", label="validation loss", ms=3)
    finite = [v for v in history["val_loss"] if math.isfinite(v)]
    if finite:
        best = min(finite)
        ax.axhline(best, color="grey", lw=0.8, ls="--", label=f"best validation loss {best:.4g}")
    if all(v > 0 for v in history["train_loss"] + history["val_loss"] if math.isfinite(v)):
        ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss (MSE + λ·Sobel energy, images in [0, 1])")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    atomic_write_bytes(path, buf.getvalue())
