"""Models as files: safetensors weights plus a JSON model card; pickles are refused.

A model directory (``<root>/models/<name>/``) holds::

    model.safetensors     the weights (float32), nothing executable
    model.json            the model card (:class:`ModelCard`)
    training-curve.png    written by training
    checkpoint/           resumable training state (safetensors + JSON), see :mod:`scopectl.learn.train`

Loading never unpickles anything: a ``.pt``/``.pth``/``.ckpt``/``.pkl`` file, or any file whose bytes
are a pickle or a PyTorch zip archive, is refused with a :class:`~scopectl.errors.ModelError`, because
unpickling a file someone sent you can run arbitrary code.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import zipfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, Literal

import torch
from pydantic import Field, ValidationError, field_validator
from safetensors import SafetensorError
from safetensors.torch import load, save

from scopectl import __version__
from scopectl.config.base import StrictModel, format_validation_error
from scopectl.errors import InputFileError, ModelError
from scopectl.imageio import read_untrusted
from scopectl.learn.network import EnhanceNet, block_widths, build_network, parse_ratio

__all__ = [
    "CARD_NAME",
    "WEIGHTS_NAME",
    "ModelCard",
    "QualityCheck",
    "SoftwareInfo",
    "TrainingInfo",
    "atomic_write_bytes",
    "card_from_bytes",
    "check_model_dir",
    "check_not_pickle",
    "load_model",
    "model_from_blob",
    "resolve_model_dir",
    "save_model",
    "software_info",
]

WEIGHTS_NAME = "model.safetensors"
CARD_NAME = "model.json"
ARCHITECTURE: Final = "rivenson2018-pyramidal-resnet"
MAX_WEIGHTS_BYTES = 256 * 1024**2
MAX_CARD_BYTES = 1024**2
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
_PICKLE_SUFFIXES = (".pt", ".pth", ".ckpt", ".pkl", ".pickle", ".bin", ".tar")


class SoftwareInfo(StrictModel):
    """Versions the model was produced with."""

    scopectl: str
    torch: str
    python: str


class TrainingInfo(StrictModel):
    """Provenance of the training run."""

    dataset: str = ""
    dataset_sha256: str = ""
    dataset_provenance: dict[str, Any] = Field(default_factory=dict)
    train_patches: int = Field(default=0, ge=0)
    val_patches: int = Field(default=0, ge=0)
    epochs_completed: float = Field(default=0.0, ge=0)
    best_epoch: float = Field(default=0.0, ge=0)
    steps: int = Field(default=0, ge=0)
    patches_seen: int = Field(default=0, ge=0)
    batch_size: int = Field(default=32, ge=1)
    learning_rate: float = Field(default=2e-4, gt=0)
    sobel_weight: float = Field(default=1e-3, ge=0)
    optimizer: str = "Adam"
    recipe: str = "paper"
    augment: bool = False
    seed: int = 0
    device: str = ""
    precision: str = "fp32"
    start: str = ""
    """Where training started from: empty for a seeded initialisation, else the start model's name and
    weights SHA-256 (e.g. the shipped twin start, :mod:`scopectl.learn.start`)."""
    world_size: int = Field(default=1, ge=1)
    duration_s: float = Field(default=0.0, ge=0)
    stopped: str = ""


class QualityCheck(StrictModel):
    """The network against bicubic interpolation on the validation pairs, measured when training ends.

    ``ssim`` is SSIM on luma (Y); ``cie94`` the mean CIE-94 colour difference against the benchtop image (lower
    is better), as in :mod:`scopectl.metrics`.  ``worse_than_bicubic`` is true when the network loses
    on either metric; such a model is announced loudly by ``train``, ``enhance`` and ``evaluate`` and is refused
    for serving.  Cards without this record (older models) are *unchecked*, not passed.
    """

    pairs: int = Field(ge=0)
    network_ssim: float
    network_cie94: float = Field(ge=0)
    bicubic_ssim: float
    bicubic_cie94: float = Field(ge=0)
    worse_than_bicubic: bool
    details: str = ""


class ModelCard(StrictModel):
    """What a model is, what it was trained on, and how well it did (``model.json``)."""

    format: Literal["scopectl-model"] = "scopectl-model"
    schema_version: Literal[1] = 1
    name: str
    architecture: Literal["rivenson2018-pyramidal-resnet"] = ARCHITECTURE
    ratio: str = "5/2"
    widths: list[int] = Field(default_factory=block_widths)
    parameters: int = Field(default=0, ge=0)
    receptive_field_radius_px: int = 12
    global_residual: bool = False
    """The output is the bicubic enlargement of the input plus the network's correction (the default
    recipe); false for the paper's network and for models made before scopectl had the option."""
    input_pixel_size_um: float = Field(gt=0, lt=100)
    target_pixel_size_um: float = Field(gt=0, lt=100)
    sample_type: str = "unknown"
    input_kind: str = "unknown"
    value_range: str = "uint8 RGB / 255 in, ×255 out, clamped to 0..255"
    training: TrainingInfo = Field(default_factory=TrainingInfo)
    validation: dict[str, float] = Field(default_factory=dict)
    quality: QualityCheck | None = None
    weights_sha256: str = ""
    software: SoftwareInfo | None = None
    created: str = ""
    notes: str = ""

    @field_validator("ratio")
    @classmethod
    def _check_ratio(cls, value: str) -> str:
        p, q = parse_ratio(value)
        return f"{p}/{q}"

    @property
    def ratio_pq(self) -> tuple[int, int]:
        """The upsampling ratio as ``(p, q)``."""
        return parse_ratio(self.ratio)


def software_info() -> SoftwareInfo:
    """The versions of scopectl, torch and Python running now."""
    return SoftwareInfo(scopectl=__version__, torch=torch.__version__, python=platform.python_version())


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename (a crash leaves the old file)."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def resolve_model_dir(name_or_path: str | Path, *, models_dir: Path) -> Path:
    """A model name (``<models_dir>/<name>``) or an existing directory path.

    Raises
    ------
    ModelError
        If the name contains characters other than letters, digits, ``.``, ``_`` and ``-``.
    """
    text = str(name_or_path)
    candidate = Path(text)
    if ("/" in text or os.sep in text or candidate.is_dir()) and text not in (".", ".."):
        return candidate
    if text.lower().endswith(".zip"):  # a BioImage Model Zoo package
        return candidate
    if not _NAME_RE.match(text):
        raise ModelError(
            f"model name {text!r} is not valid.",
            hint="Use letters, digits, '.', '_' and '-' (up to 100 characters).",
        )
    return models_dir / text


def check_not_pickle(path: Path) -> None:
    """Refuse a pickle or PyTorch archive at ``path`` (by name and by content).

    Raises
    ------
    ModelError
        If the file is a pickle (protocol marker ``0x80``), a PyTorch zip checkpoint (``*/data.pkl``)
        or is named like one.
    """
    reason = ""
    if path.suffix.lower() in _PICKLE_SUFFIXES:
        reason = f"is named like a PyTorch/pickle checkpoint ({path.suffix})"
    if path.is_file() and not _is_safetensors(path):
        with open(path, "rb") as fh:
            head = fh.read(4)
        if head[:1] == b"\x80":
            reason = "is a Python pickle"
        elif head == b"PK\x03\x04":
            try:
                with zipfile.ZipFile(path) as zf:
                    if any(n.endswith(".pkl") for n in zf.namelist()):
                        reason = "is a PyTorch pickle checkpoint (zip archive with data.pkl)"
            except zipfile.BadZipFile:
                pass
    if reason:
        raise ModelError(
            f"{path} {reason}; scopectl never unpickles model files because loading one can run arbitrary code.",
            hint=(
                "Ask the sender for the model directory (model.safetensors + model.json); a trusted "
                "checkpoint can be converted with safetensors.torch.save_file(state_dict, 'model.safetensors')."
            ),
        )


def _is_safetensors(path: Path) -> bool:
    """True when the file starts with a safetensors header (u64 length + a JSON object that fits)."""
    try:
        with open(path, "rb") as fh:
            raw = fh.read(8)
            if len(raw) < 8:
                return False
            n = int.from_bytes(raw, "little")
            size = path.stat().st_size
            if n < 2 or n > min(size - 8, 100 * 1024**2):
                return False
            header = fh.read(n)
        return isinstance(json.loads(header.decode("utf-8")), dict)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False


def _state_dict_cpu(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    inner = getattr(model, "module", model)  # DistributedDataParallel
    inner = getattr(inner, "_orig_mod", inner)  # torch.compile
    return {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in inner.state_dict().items()}


def save_model(directory: Path | str, model: torch.nn.Module, card: ModelCard) -> ModelCard:
    """Write ``model.safetensors`` and ``model.json`` into ``directory`` (created if needed), atomically.

    The card's ``parameters``, ``weights_sha256``, ``software`` and ``created`` fields are filled in;
    the completed card is returned.
    """

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = _state_dict_cpu(model)
    blob = save(
        state, metadata={"format": "scopectl-model", "architecture": ARCHITECTURE, "ratio": card.ratio}
    )
    inner = getattr(getattr(model, "module", model), "_orig_mod", getattr(model, "module", model))
    ratio = getattr(inner, "ratio", None)
    if ratio is not None and f"{ratio[0]}/{ratio[1]}" != card.ratio:
        raise ModelError(
            f"model card says ratio {card.ratio} but the network upsamples by {ratio[0]}/{ratio[1]}."
        )
    residual = getattr(inner, "residual", None)
    if residual is not None and bool(residual) != card.global_residual:
        raise ModelError(
            f"model card says global_residual={card.global_residual} but the network has residual={residual}."
        )
    done = card.model_copy(
        update={
            "parameters": sum(int(v.numel()) for v in state.values()),
            "weights_sha256": hashlib.sha256(blob).hexdigest(),
            "software": software_info(),
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
        }
    )
    atomic_write_bytes(directory / WEIGHTS_NAME, blob)
    atomic_write_bytes(directory / CARD_NAME, (done.model_dump_json(indent=2) + "\n").encode())
    return done


def read_card(directory: Path | str) -> ModelCard:
    """Read and validate ``model.json`` of a model directory."""
    directory = Path(directory)
    path = directory / CARD_NAME
    if not path.exists() and not path.is_symlink():
        raise ModelError(
            f"{path}: model card not found.", hint="Train a model first (scopectl train) or check the name."
        )
    try:
        raw = read_untrusted(path, max_bytes=MAX_CARD_BYTES, what="model card")
    except InputFileError as exc:
        raise ModelError(
            exc.message, hint="A scopectl model directory holds model.json and model.safetensors."
        ) from None
    return card_from_bytes(raw, source=str(path))


def card_from_bytes(raw: bytes, *, source: str) -> ModelCard:
    """Parse and validate a model card (``model.json`` bytes); ``source`` names it in errors."""
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise ModelError(f"{source}: unreadable model card ({type(exc).__name__}: {exc}).") from None
    try:
        return ModelCard.model_validate(data)
    except ValidationError as exc:
        raise ModelError(format_validation_error(exc, source) + ".") from None


def check_model_dir(path: Path) -> Path:
    """Check a model directory (or its weights file) before anything in it is read; returns the directory.

    Raises
    ------
    ModelError
        If the path or a file in the directory is a pickle checkpoint, the directory does not exist, or it
        has no ``model.safetensors``.
    """
    if path.is_file():
        check_not_pickle(path)
        path = path.parent
    if not path.exists():
        raise ModelError(
            f"{path}: no such model directory.",
            hint="Check the name (scopectl models are in <root>/models/).",
        )
    for child in sorted(path.iterdir()) if path.is_dir() else []:
        if child.is_file() and child.name != WEIGHTS_NAME and child.suffix.lower() in _PICKLE_SUFFIXES:
            check_not_pickle(child)
    weights = path / WEIGHTS_NAME
    if not weights.exists() and not weights.is_symlink():
        raise ModelError(
            f"{weights}: weights file not found.", hint="A scopectl model directory has model.safetensors."
        )
    return path


def load_model(directory: Path | str, *, device: str | torch.device = "cpu") -> tuple[EnhanceNet, ModelCard]:
    """Load a model directory written by :func:`save_model` (never unpickles anything).

    Parameters
    ----------
    directory
        The model directory, or its ``model.safetensors`` file.
    device
        Where to put the weights.

    Returns
    -------
    (EnhanceNet, ModelCard)
        The network in eval mode and its card.

    Raises
    ------
    ModelError
        If the path is a pickle checkpoint, files are missing, the checksum or the tensor names and
        shapes do not match the card's architecture.
    """
    path = Path(directory)
    if path.is_file() and path.suffix.lower() == ".zip":
        # bioimageio_package imports this module: importing it here, not at the top, avoids the cycle
        from scopectl.learn.bioimageio_package import is_bioimageio_package, load_package

        if is_bioimageio_package(path):
            return load_package(path, device=str(device))
    path = check_model_dir(path)
    weights = path / WEIGHTS_NAME
    card = read_card(path)
    try:
        blob = read_untrusted(weights, max_bytes=MAX_WEIGHTS_BYTES, what="weights file")
    except InputFileError as exc:
        raise ModelError(exc.message, hint="Copy the model directory again.") from None
    check_not_pickle(weights)
    model = model_from_blob(blob, card, source=str(weights))
    return model.to(device).eval(), card


def model_from_blob(blob: bytes, card: ModelCard, *, source: str) -> EnhanceNet:
    """Build the network of ``card`` from safetensors bytes, checking checksum, names, shapes and values.

    Raises
    ------
    ModelError
        If the checksum differs from the card's, the bytes are not safetensors, or the tensors do not fit.
    """

    weights = source
    if len(blob) > MAX_WEIGHTS_BYTES:
        raise ModelError(f"{weights}: implausibly large weights file ({len(blob):,} bytes).")
    if card.weights_sha256 and hashlib.sha256(blob).hexdigest() != card.weights_sha256:
        raise ModelError(
            f"{weights}: checksum differs from model.json (the weights were modified or truncated).",
            hint="Copy the model directory again.",
        )
    try:
        state = load(blob)
    except (SafetensorError, ValueError, OSError) as exc:
        raise ModelError(f"{weights}: not a valid safetensors file ({exc}).") from None
    model = build_network(card.ratio_pq, residual=card.global_residual)
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    got = {k: tuple(v.shape) for k, v in state.items()}
    if expected != got:
        missing = sorted(set(expected) - set(got))[:3]
        extra = sorted(set(got) - set(expected))[:3]
        wrong = sorted(k for k in set(expected) & set(got) if expected[k] != got[k])[:3]
        raise ModelError(
            f"{weights}: tensors do not match the {card.architecture} network at ratio {card.ratio} "
            f"(missing {missing}, unexpected {extra}, wrong shape {wrong})."
        )
    if any(not torch.isfinite(v).all() for v in state.values()):
        raise ModelError(f"{weights}: weights contain NaN or infinity (a diverged training run).")
    model.load_state_dict({k: v.float() for k, v in state.items()})
    return model.eval()
