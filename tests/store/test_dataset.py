"""The dataset format: one writer, one reader, format and schema_version checked (real HDF5 files)."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import h5py
import numpy as np
import pytest

from scopectl.errors import InputFileError, StoreCorruptError, StoreError, StoreExistsError
from scopectl.store.dataset import SCHEMA_VERSION, DatasetProvenance, DatasetWriter, SplitName, open_dataset

PROVENANCE = DatasetProvenance(
    created="2026-01-01T00:00:00+0000",
    software_version="scopectl test",
    sample_type="pap",
    input_kind="dng",
    slides=[{"slide_id": "A", "captures": [0, 1]}],
    slide_numbers={"A": 0},
    dropped_patches={"background": 3},
)


def _patches(n: int, *, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    source = np.zeros((n, 5), np.int32)
    source[:, 1] = np.arange(n)
    return (
        rng.integers(0, 256, (n, 8, 8, 3), dtype=np.uint8),
        rng.integers(0, 256, (n, 20, 20, 3), dtype=np.uint8),
        source,
    )


def _write(path: Path, *, force: bool = False) -> dict[SplitName, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    data: dict[SplitName, tuple[np.ndarray, np.ndarray, np.ndarray]] = {
        "train": _patches(5, seed=1),
        "val": _patches(2, seed=2),
        "test": _patches(0, seed=3),
    }
    with DatasetWriter(path, input_patch_px=8, target_patch_px=20, compression="lzf", force=force) as w:
        for split, (x, y, s) in data.items():
            w.append(split, x[:3], y[:3], s[:3])
            w.append(split, x[3:], y[3:], s[3:])
        w.finish(
            input_pixel_size_um=0.925,
            target_pixel_size_um=0.37,
            ratio=Fraction(5, 2),
            provenance=PROVENANCE,
            captures={"train": [{"slide": "A", "capture": 0, "patches": 5}]},
        )
    return data


def test_what_the_writer_writes_the_reader_reads(tmp_path: Path) -> None:
    path = tmp_path / "datasets" / "d.h5"
    data = _write(path)
    assert not (tmp_path / "datasets" / "d.h5.partial").exists()
    with open_dataset(path) as ds:
        assert (ds.ratio, ds.ratio_fraction) == ("5/2", Fraction(5, 2))
        assert (ds.input_patch_px, ds.target_patch_px) == (8, 20)
        assert ds.input_pixel_size_um == pytest.approx(0.925) and ds.target_pixel_size_um == pytest.approx(
            0.37
        )
        assert ds.provenance == PROVENANCE
        assert ds.counts() == {"train": 5, "val": 2, "test": 0}
        for name, (x, y, s) in data.items():
            split = ds.split(name)
            assert np.array_equal(split.inputs[()], x) and np.array_equal(split.targets[()], y)
            assert np.array_equal(split.source[()], s)
        x0, y0 = ds.split("train")[4]
        assert np.array_equal(x0, data["train"][0][4]) and np.array_equal(y0, data["train"][1][4])
        assert ds.split("train").inputs.chunks == (1, 8, 8, 3)


def test_a_failed_or_unfinished_write_leaves_no_file(tmp_path: Path) -> None:
    path = tmp_path / "d.h5"

    def fail_midway() -> None:
        with DatasetWriter(path, input_patch_px=8, target_patch_px=20) as w:
            w.append("train", *_patches(2, seed=0))
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        fail_midway()
    with DatasetWriter(path, input_patch_px=8, target_patch_px=20) as w:
        w.append("train", *_patches(2, seed=0))  # never finished
    assert list(tmp_path.iterdir()) == []


def test_an_existing_dataset_is_kept_unless_forced(tmp_path: Path) -> None:
    path = tmp_path / "d.h5"
    _write(path)
    before = path.read_bytes()
    with pytest.raises(StoreExistsError, match="already exists"):
        _write(path)
    assert path.read_bytes() == before
    _write(path, force=True)
    with open_dataset(path) as ds:
        assert ds.counts()["train"] == 5


def test_other_files_are_refused_with_one_line_naming_them(tmp_path: Path) -> None:
    with pytest.raises(InputFileError, match="none.h5: dataset not found"):
        open_dataset(tmp_path / "none.h5")
    other = tmp_path / "x.h5"
    with h5py.File(other, "w") as h5:
        h5.attrs["format"] = "scopectl-slide"
    with pytest.raises(
        StoreError, match=r"x.h5: not a scopectl dataset \(format attribute is 'scopectl-slide'"
    ):
        open_dataset(other)
    newer = tmp_path / "newer.h5"
    _write(newer)
    with h5py.File(newer, "a") as h5:
        h5.attrs["schema_version"] = SCHEMA_VERSION + 1
    with pytest.raises(
        StoreError, match=f"newer.h5: dataset schema_version {SCHEMA_VERSION + 1} is newer"
    ) as exc:
        open_dataset(newer)
    assert "\n" not in exc.value.one_line()
    text = tmp_path / "text.h5"
    text.write_text("not HDF5")
    with pytest.raises(StoreCorruptError, match="text.h5: not a readable HDF5 dataset"):
        open_dataset(text)


def test_damaged_datasets_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "d.h5"
    _write(path)
    with h5py.File(path, "a") as h5:
        h5.attrs["provenance_json"] = '{"created": "x", "software_version": "y", "guessed_key": 1}'
    with pytest.raises(StoreCorruptError, match="d.h5: damaged or not written by scopectl"):
        open_dataset(path)
    _write(path, force=True)
    with h5py.File(path, "a") as h5:
        del h5["val/source"]
    with pytest.raises(StoreCorruptError, match="lacks the val/inputs, val/targets or val/source"):
        open_dataset(path)
    _write(path, force=True)
    with h5py.File(path, "a") as h5:
        h5["val/extra"] = h5py.ExternalLink("/etc/passwd", "/")
    with pytest.raises(StoreCorruptError, match="an external link"):
        open_dataset(path)
