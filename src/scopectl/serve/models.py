"""Which models may serve, and the loaded networks a worker keeps.

A model (``<root>/models/<name>/``, :mod:`scopectl.learn.modelio`) is

* **refused** when its card's quality record says ``worse_than_bicubic``: an expert would be shown an image
  worse than plain interpolation of the phone capture;
* **unchecked** when the card has no quality record (trained before the check existed): it may serve, and
  the admin page and the viewer say so in a warning;
* **checked** when the record says the network beats bicubic on both SSIM and CIE-94;
* **broken** when the card cannot be read.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from torch import nn

from scopectl.errors import ConfigError, ModelError
from scopectl.learn.device import pick_device, resolve_precision
from scopectl.learn.enhance import prepare_model
from scopectl.learn.modelio import ModelCard, load_model, read_card, resolve_model_dir

__all__ = ["LoadedModel", "ModelCache", "ModelStatus", "card_summary", "list_models", "model_status"]

State = Literal["checked", "unchecked", "refused", "broken"]

UNCHECKED_WARNING = (
    "This model's card has no quality record: nobody has checked that it beats plain bicubic "
    "interpolation. Read its enhanced images with that in mind."
)


@dataclass(frozen=True)
class ModelStatus:
    """A model's name, card (None when unreadable) and whether it may serve."""

    name: str
    state: State
    reason: str
    card: ModelCard | None

    @property
    def servable(self) -> bool:
        return self.state in ("checked", "unchecked")


def model_status(models_dir: Path, name: str) -> ModelStatus:
    """Read a model's card and judge it (never raises for a bad model: it is reported ``broken``)."""
    try:
        directory = resolve_model_dir(name, models_dir=models_dir)
        if directory.parent != models_dir:
            raise ModelError(
                f"{name!r} is not a model name.", hint="Use the name of a folder in <root>/models/."
            )
        card = read_card(directory)
    except ModelError as exc:
        return ModelStatus(name, "broken", exc.one_line(), None)
    quality = card.quality
    if quality is None:
        return ModelStatus(name, "unchecked", UNCHECKED_WARNING, card)
    if quality.worse_than_bicubic:
        return ModelStatus(
            name,
            "refused",
            f"the model is worse than bicubic interpolation on its validation pairs (SSIM "
            f"{quality.network_ssim:.3f} vs {quality.bicubic_ssim:.3f}, CIE-94 {quality.network_cie94:.2f} vs "
            f"{quality.bicubic_cie94:.2f}); it is refused for serving. Train it longer or on more data.",
            card,
        )
    return ModelStatus(name, "checked", "", card)


def list_models(models_dir: Path) -> list[ModelStatus]:
    """Every model folder under ``models_dir`` (sorted by name) and its status."""
    if not models_dir.is_dir():
        return []
    return [model_status(models_dir, p.name) for p in sorted(models_dir.iterdir()) if p.is_dir()]


def card_summary(status: ModelStatus) -> dict[str, Any]:
    """What the viewer and the admin page show of a model: its card, quality record and status."""
    out: dict[str, Any] = {"name": status.name, "state": status.state, "warning": status.reason or None}
    card = status.card
    if card is None:
        return out
    out.update(
        {
            "architecture": card.architecture,
            "ratio": card.ratio,
            "parameters": card.parameters,
            "input_pixel_size_um": card.input_pixel_size_um,
            "target_pixel_size_um": card.target_pixel_size_um,
            "sample_type": card.sample_type,
            "input_kind": card.input_kind,
            "weights_sha256": card.weights_sha256,
            "created": card.created,
            "notes": card.notes,
            "training": {
                "dataset": card.training.dataset,
                "train_patches": card.training.train_patches,
                "val_patches": card.training.val_patches,
                "epochs_completed": card.training.epochs_completed,
                "device": card.training.device,
                "duration_s": card.training.duration_s,
            },
            "validation": dict(card.validation),
            "quality": None if card.quality is None else card.quality.model_dump(),
        }
    )
    return out


@dataclass(frozen=True)
class LoadedModel:
    """A network ready to run, with its card and where it runs."""

    name: str
    network: nn.Module
    card: ModelCard
    device: str
    precision: Literal["fp32", "bf16"]
    checked: bool


class ModelCache:
    """Loaded networks, reloaded when a model's weights change (thread-safe).

    Parameters
    ----------
    models_dir
        ``<root>/models``.
    device, precision
        As for ``scopectl enhance``: ``auto`` picks a CUDA GPU when one is usable.
    """

    def __init__(self, models_dir: Path, *, device: str = "auto", precision: str = "auto") -> None:

        self.models_dir = models_dir
        self.device = pick_device(device)
        self.precision = resolve_precision(precision, self.device, inference=True)
        self._lock = threading.Lock()
        self._loaded: dict[str, tuple[str, LoadedModel]] = {}

    def get(self, name: str) -> LoadedModel:
        """The network of a servable model.

        Raises
        ------
        ModelError
            If the model is refused, broken, or its files fail to load.
        """

        status = model_status(self.models_dir, name)
        if not status.servable or status.card is None:
            raise ModelError(f"model {name!r} cannot serve: {status.reason}")
        key = status.card.weights_sha256 or status.card.created
        with self._lock:
            hit = self._loaded.get(name)
            if hit is not None and hit[0] == key:
                return hit[1]
            network, card = load_model(self.models_dir / name)
            if card.quality is not None and card.quality.worse_than_bicubic:  # changed since model_status
                raise ModelError(f"model {name!r} is worse than bicubic; it is refused for serving.")
            prepared = prepare_model(network, device=self.device)
            loaded = LoadedModel(
                name, prepared, card, str(self.device), self.precision, checked=card.quality is not None
            )
            self._loaded[name] = (key, loaded)
            return loaded


def check_assignable(models_dir: Path, name: str) -> ModelStatus:
    """The status of a model an admin wants to assign to a sample type.

    Raises
    ------
    ConfigError
        If it is refused or broken (the message says why).
    """
    status = model_status(models_dir, name)
    if not status.servable:
        raise ConfigError(f"model {name!r} cannot serve: {status.reason}")
    return status
