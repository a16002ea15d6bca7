"""Training data: the patch datasets written by :mod:`scopectl.registration.dataset`, held in memory.

Format (``<root>/datasets/<name>.h5``, see the interfaces)::

    train/  val/  test/        groups, each with
        inputs   (N, h, w, 3)   uint8   registered phone patches (60×60 in the paper)
        targets  (N, H, W, 3)   uint8   benchtop patches (150×150), H = ⌈h·p/q⌉
    attrs: input_pixel_size_um, target_pixel_size_um, ratio ("5/2"), provenance or provenance_json (JSON)

Patches are loaded into memory once (uint8, 78 kB per 60/150 pair: the paper's 129,472 lung patches take
10 GB) so that a training step does no per-step Python image work: a batch is one gather of a random
index set.  On a CUDA device the data live on the GPU when they fit in a fraction of its free memory and
in pinned host memory otherwise (:class:`BatchSource`).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch

from scopectl.errors import InputFileError
from scopectl.learn.network import parse_ratio

__all__ = ["BatchSource", "PatchDataset", "PatchSplit", "dataset_fingerprint", "read_dataset"]

SPLITS = ("train", "val", "test")
#: Read this many patches per HDF5 read while loading.
_READ_BLOCK = 4096


@dataclass
class PatchSplit:
    """One split of a dataset in memory: uint8 tensors (N, h, w, 3) and (N, H, W, 3)."""

    inputs: torch.Tensor
    targets: torch.Tensor

    def __len__(self) -> int:
        return int(self.inputs.shape[0])


@dataclass
class PatchDataset:
    """A dataset file's metadata and the splits that were loaded."""

    path: Path
    name: str
    ratio: tuple[int, int]
    input_pixel_size_um: float
    target_pixel_size_um: float
    provenance: dict[str, Any]
    splits: dict[str, PatchSplit] = field(default_factory=dict)
    sha256: str = ""

    @property
    def sample_type(self) -> str:
        """The sample type named in the provenance (``lung``, ``pap``, ``blood``) or ``unknown``."""
        for key in ("sample_type", "sample"):
            value = self.provenance.get(key)
            if isinstance(value, str) and value:
                return value
        return "unknown"

    @property
    def input_kind(self) -> str:
        """What the phone inputs were decoded from (``dng``, ``jpeg``, ...) if the provenance says."""
        for key in ("input_kind", "input_format", "source_kind", "phone_source"):
            value = self.provenance.get(key)
            if isinstance(value, str) and value:
                return value
        return "unknown"


def dataset_fingerprint(path: Path) -> str:
    """SHA-256 of the dataset file's size, modification time and first and last MiB (cheap identity)."""
    stat = path.stat()
    h = hashlib.sha256(f"{stat.st_size}:{stat.st_mtime_ns}".encode())
    with open(path, "rb") as fh:
        h.update(fh.read(1 << 20))
        if stat.st_size > (1 << 20):
            fh.seek(max(0, stat.st_size - (1 << 20)))
            h.update(fh.read(1 << 20))
    return h.hexdigest()


def _attr(f: Any, name: str, path: Path) -> Any:
    if name in f.attrs:
        return f.attrs[name]
    for split in SPLITS:
        if split in f and name in f[split].attrs:
            return f[split].attrs[name]
    raise InputFileError(
        f"{path}: dataset attribute {name!r} is missing.", hint="Rebuild it with scopectl dataset."
    )


def _as_str(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, np.ndarray) and value.shape == ():
        return _as_str(value.item())
    return str(value)


def read_dataset(
    path: Path | str,
    *,
    splits: tuple[str, ...] = ("train", "val"),
    max_patches: int | None = None,
    seed: int = 0,
) -> PatchDataset:
    """Read a patch dataset into memory, validating its structure.

    Parameters
    ----------
    path
        The dataset HDF5 file.
    splits
        Which splits to load (each must be present and non-empty).
    max_patches
        Keep at most this many patches per split (a seeded random subset, in file order).
    seed
        Seed of that subset.

    Raises
    ------
    InputFileError
        If the file is missing or not HDF5, a split is missing or empty, arrays have the wrong
        dtype/shape, or the target size does not match the ratio.
    """

    path = Path(path)
    if not path.is_file():
        raise InputFileError(
            f"{path}: dataset not found.", hint="Build one with scopectl dataset, or check the name."
        )
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise InputFileError(f"{path}: not a readable HDF5 dataset ({exc}).") from None
    with f:
        try:
            ratio = parse_ratio(_as_str(_attr(f, "ratio", path)))
        except ValueError as exc:
            raise InputFileError(f"{path}: bad ratio attribute ({exc}).") from None
        in_um = float(_attr(f, "input_pixel_size_um", path))
        out_um = float(_attr(f, "target_pixel_size_um", path))
        if not (0 < in_um < 100 and 0 < out_um < 100):
            raise InputFileError(f"{path}: implausible pixel sizes ({in_um} µm, {out_um} µm).")
        provenance: dict[str, Any] = {}
        raw_prov = f.attrs.get("provenance", f.attrs.get("provenance_json"))
        if raw_prov is not None:
            try:
                parsed = json.loads(_as_str(raw_prov))
            except json.JSONDecodeError:
                raise InputFileError(f"{path}: the provenance attribute is not valid JSON.") from None
            if isinstance(parsed, dict):
                provenance = parsed
        ds = PatchDataset(
            path=path,
            name=path.stem,
            ratio=ratio,
            input_pixel_size_um=in_um,
            target_pixel_size_um=out_um,
            provenance=provenance,
            sha256=dataset_fingerprint(path),
        )
        for split in splits:
            ds.splits[split] = _read_split(f, split, path, ratio=ratio, max_patches=max_patches, seed=seed)
    return ds


def _read_split(
    f: Any, split: str, path: Path, *, ratio: tuple[int, int], max_patches: int | None, seed: int
) -> PatchSplit:
    if split not in f or "inputs" not in f[split] or "targets" not in f[split]:
        raise InputFileError(f"{path}: split {split!r} (with inputs and targets) is missing.")
    inputs, targets = f[split]["inputs"], f[split]["targets"]
    n = int(inputs.shape[0])
    if n == 0:
        raise InputFileError(
            f"{path}: split {split!r} is empty.", hint="Acquire more fields or change the split."
        )
    if inputs.dtype != np.uint8 or targets.dtype != np.uint8:
        raise InputFileError(f"{path}: {split} patches must be uint8 (got {inputs.dtype}, {targets.dtype}).")
    if inputs.ndim != 4 or targets.ndim != 4 or inputs.shape[3] != 3 or targets.shape[3] != 3:
        raise InputFileError(
            f"{path}: {split} patches must be N×rows×cols×3 (got {inputs.shape}, {targets.shape})."
        )
    if int(targets.shape[0]) != n:
        raise InputFileError(f"{path}: {split} has {n} inputs but {targets.shape[0]} targets.")
    p, q = ratio
    h, w = int(inputs.shape[1]), int(inputs.shape[2])
    want = (-(-h * p // q), -(-w * p // q))
    if (int(targets.shape[1]), int(targets.shape[2])) != want:
        raise InputFileError(
            f"{path}: {split} targets are {targets.shape[1]}×{targets.shape[2]} but inputs of {h}×{w} at ratio "
            f"{p}/{q} give {want[0]}×{want[1]}."
        )
    if h < 8 or w < 8:
        raise InputFileError(f"{path}: {split} patches of {h}×{w} pixels are too small (need ≥ 8×8).")
    if max_patches is not None and n > max_patches:
        rng = np.random.default_rng(seed)
        index = np.sort(rng.choice(n, size=max_patches, replace=False))
    else:
        index = np.arange(n)
    xs = np.empty((len(index), h, w, 3), np.uint8)
    ys = np.empty((len(index), *want, 3), np.uint8)
    for start in range(0, len(index), _READ_BLOCK):
        sel = index[start : start + _READ_BLOCK]
        lo, hi = int(sel[0]), int(sel[-1]) + 1
        if hi - lo == len(sel):  # contiguous: one slice read
            xs[start : start + len(sel)] = inputs[lo:hi]
            ys[start : start + len(sel)] = targets[lo:hi]
        else:
            xs[start : start + len(sel)] = inputs[sel]
            ys[start : start + len(sel)] = targets[sel]
    return PatchSplit(inputs=torch.from_numpy(xs), targets=torch.from_numpy(ys))


def to_float_nchw(batch: torch.Tensor, *, channels_last: bool) -> torch.Tensor:
    """uint8 (N, H, W, 3) → float32 (N, 3, H, W) in [0, 1]; channels-last memory keeps it a view."""
    x = batch.permute(0, 3, 1, 2)
    x = x.to(torch.float32).mul_(1.0 / 255.0)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x.contiguous()


class BatchSource:
    """Serves batches of one split on a device with no per-step Python image work.

    On the CPU, or on a GPU when the split fits in ``gpu_fraction`` of the free GPU memory, the patches
    live on the device and a batch is one gather.  Otherwise they stay in pinned host memory and batches
    are gathered into two alternating pinned buffers and copied asynchronously.
    """

    def __init__(
        self,
        split: PatchSplit,
        *,
        device: torch.device,
        channels_last: bool = True,
        gpu_fraction: float = 0.5,
    ) -> None:
        self.device = device
        self.channels_last = channels_last
        self.n = len(split)
        self.on_device = True
        self._buffers: list[tuple[torch.Tensor, torch.Tensor]] = []
        self._events: list[Any] = []
        self._turn = 0
        if device.type == "cuda":
            need = split.inputs.nbytes + split.targets.nbytes
            free, _total = torch.cuda.mem_get_info(device)
            if need <= gpu_fraction * free:
                self.inputs = split.inputs.to(device)
                self.targets = split.targets.to(device)
            else:
                self.on_device = False
                self.inputs = split.inputs.pin_memory()
                self.targets = split.targets.pin_memory()
        else:
            self.inputs, self.targets = split.inputs, split.targets

    def batch(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Inputs and targets (float32 N×3×H×W in [0, 1]) for the patch indices ``index`` (CPU int64)."""
        if self.on_device:
            idx = index.to(self.inputs.device, non_blocking=True)
            x, y = self.inputs.index_select(0, idx), self.targets.index_select(0, idx)
        else:
            x, y = self._gather_pinned(index)
        return to_float_nchw(x, channels_last=self.channels_last), to_float_nchw(
            y, channels_last=self.channels_last
        )

    def _gather_pinned(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b = int(index.shape[0])
        slot = self._turn % 2
        self._turn += 1
        while len(self._buffers) < 2:
            self._buffers.append(
                (
                    torch.empty((0,), dtype=torch.uint8).pin_memory(),
                    torch.empty((0,), dtype=torch.uint8).pin_memory(),
                )
            )
            self._events.append(None)
        if self._events[slot] is not None:
            self._events[slot].synchronize()  # the copy that last used this buffer has finished
        bx, by = self._buffers[slot]
        shape_x, shape_y = (b, *self.inputs.shape[1:]), (b, *self.targets.shape[1:])
        if bx.numel() < b * int(np.prod(shape_x[1:])) or by.numel() < b * int(np.prod(shape_y[1:])):
            bx = torch.empty(shape_x, dtype=torch.uint8).pin_memory()
            by = torch.empty(shape_y, dtype=torch.uint8).pin_memory()
            self._buffers[slot] = (bx, by)
        x_host = bx.view(-1)[: b * int(np.prod(shape_x[1:]))].view(shape_x)
        y_host = by.view(-1)[: b * int(np.prod(shape_y[1:]))].view(shape_y)
        torch.index_select(self.inputs, 0, index, out=x_host)
        torch.index_select(self.targets, 0, index, out=y_host)
        x = x_host.to(self.device, non_blocking=True)
        y = y_host.to(self.device, non_blocking=True)
        event = torch.cuda.Event()  # type: ignore[no-untyped-call]
        event.record()
        self._events[slot] = event
        return x, y
