"""Training-set files: the one module that writes, reads and checks the patch-dataset format.

Registration cuts patches and hands them to :class:`DatasetWriter`; learning reads them with
:func:`open_dataset`.  Both open the file through :func:`~scopectl.store.h5safe.open_h5`.

File layout (``<root>/datasets/<name>.h5``, schema version 1)::

    attrs: format="scopectl-dataset", schema_version, input_pixel_size_um, target_pixel_size_um,
           ratio="5/2", input_patch_px, target_patch_px, provenance_json
    train/, val/, test/
        inputs   (N, p, p, 3)   uint8   phone patches at L × the benchtop pixel (60×60 in the paper)
        targets  (N, P, P, 3)   uint8   benchtop patches (150×150; mosaic pixels, never resampled)
        source   (N, 5)         int32   slide number, capture index, input row, input col, jpeg flag
        attrs: count, captures_json

Every patch array is chunked one patch per chunk, so a random patch costs one chunk read.  A file is
written as ``<name>.h5.partial`` and renamed when complete, so a dataset file is never half-written.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

import h5py
import numpy as np
import pydantic
from numpy.typing import NDArray

from scopectl.errors import InputFileError, StoreCorruptError, StoreError, StoreExistsError
from scopectl.store.h5safe import SafeDataset, attr_float, attr_int, attr_str, open_h5, reading

__all__ = [
    "FORMAT",
    "SCHEMA_VERSION",
    "SPLITS",
    "DatasetProvenance",
    "DatasetWriter",
    "PatchDataset",
    "SplitArrays",
    "SplitName",
    "open_dataset",
    "refuse_existing",
]

FORMAT = "scopectl-dataset"
SCHEMA_VERSION = 1
SPLITS: tuple[SplitName, ...] = ("train", "val", "test")
SplitName = Literal["train", "val", "test"]
_PROVENANCE_ATTR = "provenance_json"


@pydantic.with_config(pydantic.ConfigDict(extra="forbid", strict=True))
@dataclass(frozen=True)
class DatasetProvenance:
    """Where a dataset's patches came from (the ``provenance_json`` attribute).

    Attributes
    ----------
    created, software_version
        When and by which scopectl the file was written.
    sample_type
        The slides' sample type (``lung``, ``pap``, ``blood``; ``mixed`` or ``unknown``).
    input_kind
        What the phone inputs were decoded from (``dng``, ``jpeg``, ...; ``mixed`` or ``unknown``).
    slides
        One entry per slide: slide_id, path, simulated, sample, phone_source, captures.
    slide_numbers
        Slide id → the number in column 0 of ``source``.
    splits
        Split → the captures in it (slide, capture, patches).
    skipped_captures, admitted_flagged, dropped_patches
        What the filters left out or let in.
    params
        The build parameters (``DatasetParams`` as JSON).
    """

    created: str
    software_version: str
    sample_type: str = "unknown"
    input_kind: str = "unknown"
    slides: list[dict[str, Any]] = field(default_factory=list)
    slide_numbers: dict[str, int] = field(default_factory=dict)
    splits: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    skipped_captures: list[dict[str, Any]] = field(default_factory=list)
    admitted_flagged: list[dict[str, Any]] = field(default_factory=list)
    dropped_patches: dict[str, int] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> DatasetProvenance:
        """Parse and type-check the attribute (``ValueError`` when it is not this record)."""
        return _PROVENANCE_ADAPTER.validate_json(text)


_PROVENANCE_ADAPTER = pydantic.TypeAdapter(DatasetProvenance)


def refuse_existing(path: Path, *, force: bool) -> None:
    """Raise :class:`~scopectl.errors.StoreExistsError` if ``path`` exists and ``force`` is false."""
    if path.exists() and not force:
        raise StoreExistsError(
            f"{path}: dataset already exists.", hint="Choose another --name or use --force."
        )


class DatasetWriter:
    """Write a dataset file: splits grow patch by patch, the file appears only when :meth:`finish` ran.

    A context manager: the file is written as ``<path>.partial`` and renamed to ``path`` when the block
    ends after :meth:`finish`; an exception (or a block that never finished) deletes the partial file and
    leaves any existing ``path`` untouched.

    Parameters
    ----------
    path
        The dataset file.
    input_patch_px, target_patch_px
        Patch sizes (square patches).
    compression
        ``none``, ``lzf`` or ``gzip`` for the patch arrays.
    force
        Replace an existing dataset.

    Raises
    ------
    StoreExistsError
        ``path`` exists and ``force`` is false.
    """

    def __init__(
        self,
        path: Path,
        *,
        input_patch_px: int,
        target_patch_px: int,
        compression: Literal["none", "lzf", "gzip"] = "none",
        force: bool = False,
    ) -> None:
        refuse_existing(path, force=force)
        self.path = path
        self.input_patch_px = input_patch_px
        self.target_patch_px = target_patch_px
        self._compression = compression
        self._tmp = path.with_name(path.name + ".partial")
        self._h5: h5py.File | None = None
        self._groups: dict[str, h5py.Group] = {}
        self.counts: dict[str, int] = dict.fromkeys(SPLITS, 0)
        self._finished = False

    def __enter__(self) -> DatasetWriter:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._h5 = open_h5(self._tmp, "w", what="dataset")
        try:
            for s in SPLITS:
                self._groups[s] = self._create_split(self._h5, s)
        except BaseException:
            self._abandon()
            raise
        return self

    def _create_split(self, h5: h5py.File, name: str) -> h5py.Group:
        p, big = self.input_patch_px, self.target_patch_px
        g = h5.create_group(name)
        comp: dict[str, Any] = {} if self._compression == "none" else {"compression": self._compression}
        for what, size in (("inputs", p), ("targets", big)):
            g.create_dataset(
                what,
                shape=(0, size, size, 3),
                maxshape=(None, size, size, 3),
                dtype=np.uint8,
                chunks=(1, size, size, 3),
                **comp,
            )
        g.create_dataset("source", shape=(0, 5), maxshape=(None, 5), dtype=np.int32, chunks=(256, 5))
        return g

    def append(
        self,
        split: SplitName,
        inputs: NDArray[np.uint8],
        targets: NDArray[np.uint8],
        source: NDArray[np.int32],
    ) -> None:
        """Add patches to a split: inputs (N, p, p, 3), targets (N, P, P, 3), source (N, 5)."""
        if self._h5 is None or self._finished:
            raise RuntimeError("DatasetWriter.append outside its with block or after finish()")
        n = int(inputs.shape[0])
        if targets.shape[0] != n or source.shape != (n, 5):
            raise ValueError(f"{n} inputs, {targets.shape[0]} targets and source {source.shape} disagree")
        g = self._groups[split]
        n0 = int(g["inputs"].shape[0])
        for name, data in (("inputs", inputs), ("targets", targets), ("source", source)):
            ds = g[name]
            ds.resize(n0 + n, axis=0)
            ds[n0 : n0 + n] = data
        self.counts[split] += n

    def finish(
        self,
        *,
        input_pixel_size_um: float,
        target_pixel_size_um: float,
        ratio: Fraction,
        provenance: DatasetProvenance,
        captures: Mapping[str, list[dict[str, Any]]] | None = None,
    ) -> None:
        """Write the file's attributes; the file is renamed into place when the ``with`` block ends.

        ``captures`` lists, per split, the captures it holds (the split's ``captures_json``).
        """
        if self._h5 is None or self._finished:
            raise RuntimeError("DatasetWriter.finish outside its with block or called twice")
        h5 = self._h5
        for s in SPLITS:
            self._groups[s].attrs["count"] = self.counts[s]
            self._groups[s].attrs["captures_json"] = json.dumps(list((captures or {}).get(s, [])))
        h5.attrs["format"] = FORMAT
        h5.attrs["schema_version"] = SCHEMA_VERSION
        h5.attrs["input_pixel_size_um"] = float(input_pixel_size_um)
        h5.attrs["target_pixel_size_um"] = float(target_pixel_size_um)
        h5.attrs["ratio"] = f"{ratio.numerator}/{ratio.denominator}"
        h5.attrs["input_patch_px"] = self.input_patch_px
        h5.attrs["target_patch_px"] = self.target_patch_px
        h5.attrs[_PROVENANCE_ATTR] = provenance.to_json()
        self._finished = True

    def _abandon(self) -> None:
        if self._h5 is not None and self._h5.id.valid:
            self._h5.close()
        self._tmp.unlink(missing_ok=True)

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is not None or not self._finished:
            self._abandon()
            return
        try:
            assert self._h5 is not None
            self._h5.close()
            self._tmp.replace(self.path)
        finally:
            self._tmp.unlink(missing_ok=True)


class SplitArrays:
    """One split of a dataset: lazy arrays ``inputs``, ``targets`` and ``source`` (read errors translated).

    Indexing returns ``(input, target)`` uint8 arrays; slicing the arrays directly reads only the chunks
    touched (one patch per chunk).
    """

    def __init__(self, group: h5py.Group, *, path: Path, name: str) -> None:
        self.name = name
        self.inputs = SafeDataset(group["inputs"], path=path, what=f"{name}/inputs")
        self.targets = SafeDataset(group["targets"], path=path, what=f"{name}/targets")
        self.source = SafeDataset(group["source"], path=path, what=f"{name}/source")

    def __len__(self) -> int:
        return len(self.inputs)

    def __getitem__(self, index: int) -> tuple[NDArray[np.uint8], NDArray[np.uint8]]:
        if not -len(self) <= index < len(self):
            raise IndexError(f"patch {index} out of range (split has {len(self)})")
        return np.asarray(self.inputs[index]), np.asarray(self.targets[index])


class PatchDataset:
    """A dataset file opened read-only by :func:`open_dataset` (context manager).

    Attributes
    ----------
    path
        The file.
    input_pixel_size_um, target_pixel_size_um
        Pixel sizes of the input and target patches.
    ratio
        Target pixels per input pixel as ``"p/q"`` (``ratio_fraction`` as a number).
    input_patch_px, target_patch_px
        Patch sizes.
    provenance
        Where the patches came from.
    """

    def __init__(self, path: Path, h5: h5py.File) -> None:
        self.path = path
        self._h5 = h5
        with reading(path, "its attributes"):
            self.input_pixel_size_um = attr_float(h5, "input_pixel_size_um")
            self.target_pixel_size_um = attr_float(h5, "target_pixel_size_um")
            self.ratio = attr_str(h5, "ratio")
            self.input_patch_px = attr_int(h5, "input_patch_px")
            self.target_patch_px = attr_int(h5, "target_patch_px")
            self.provenance = DatasetProvenance.from_json(attr_str(h5, _PROVENANCE_ATTR))

    @property
    def ratio_fraction(self) -> Fraction:
        """The ratio as a fraction (``ValueError`` when the attribute is not ``p/q``)."""
        return Fraction(self.ratio)

    def split(self, name: SplitName) -> SplitArrays:
        """The ``train``, ``val`` or ``test`` split."""
        if name not in SPLITS:
            raise KeyError(f"no split {name!r}; splits are {SPLITS}")
        with reading(self.path, f"split {name}"):
            return SplitArrays(self._h5[name], path=self.path, name=name)

    def counts(self) -> dict[str, int]:
        return {s: len(self.split(s)) for s in SPLITS}

    def close(self) -> None:
        if self._h5.id.valid:
            self._h5.close()

    def __enter__(self) -> PatchDataset:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def open_dataset(path: Path | str) -> PatchDataset:
    """Open a dataset written by :class:`DatasetWriter` (read-only), checking its format and version.

    Raises
    ------
    InputFileError
        The file does not exist.
    StoreError
        Not a scopectl dataset (another format), or a newer ``schema_version`` than this scopectl reads.
    StoreCorruptError
        Not readable HDF5, an attribute or split missing or of the wrong type.
    """
    path = Path(path)
    if not path.exists():
        raise InputFileError(
            f"{path}: dataset not found.", hint="Build one with `scopectl dataset build`, or check the name."
        )
    h5 = open_h5(path, "r", what="dataset")
    try:
        _check_format(path, h5)
        return PatchDataset(path, h5)
    except BaseException:
        h5.close()
        raise


def _check_format(path: Path, h5: h5py.File) -> None:
    with reading(path, "its format"):
        fmt = h5.attrs.get("format")
        if isinstance(fmt, bytes):
            fmt = fmt.decode("utf-8", "replace")
        if fmt != FORMAT:
            raise StoreError(
                f"{path}: not a scopectl dataset (format attribute is {fmt!r}, expected {FORMAT!r}).",
                hint="Build one with `scopectl dataset build`.",
            )
        if "schema_version" not in h5.attrs:
            raise StoreCorruptError(f"{path}: the dataset has no schema_version attribute.")
        version = attr_int(h5, "schema_version")
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"{path}: dataset schema_version {version} is newer than this scopectl reads ({SCHEMA_VERSION}).",
                hint="Upgrade scopectl.",
            )
        if version < 1:
            raise StoreCorruptError(f"{path}: invalid dataset schema_version {version}.")
        for s in SPLITS:
            group = h5.get(s)
            if not isinstance(group, h5py.Group) or not all(
                isinstance(group.get(a), h5py.Dataset) for a in ("inputs", "targets", "source")
            ):
                raise StoreCorruptError(
                    f"{path}: the dataset lacks the {s}/inputs, {s}/targets or {s}/source array; rebuild it."
                )
