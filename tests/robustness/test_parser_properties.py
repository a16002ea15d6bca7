"""Property tests for every parser of untrusted bytes: any input is either accepted as valid or refused with
a scopectl error -- never another exception, never an out-of-range value.

Inputs are valid files mutated by Hypothesis (bytes overwritten, the file cut), arbitrary bytes and text,
and HDF5 slides edited object by object (attributes replaced by values of any type, datasets by any shape
and type, groups removed).  Example counts are small and the runs derandomised, so CI stays fast and
repeatable.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import h5py
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hostile_corpus import good_slide, jpeg_bytes, png_bytes
from scopectl.errors import DeviceProtocolError, InputFileError, ModelError, ScopectlError

FAST = settings(
    max_examples=30,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

_RGB = np.random.default_rng(5).integers(0, 256, (24, 32, 3), dtype=np.uint8)


def _tiff_bytes() -> bytes:
    import tifffile

    buf = io.BytesIO()
    tifffile.imwrite(buf, _RGB, resolution=(2.5, 2.5), imagej=True, metadata={"unit": "um"})
    return buf.getvalue()


def _dng_bytes() -> bytes:
    from scopectl.twin.dng import write_dng

    raw = np.random.default_rng(6).integers(64, 1000, (32, 48)).astype(np.uint16)
    return write_dng(
        raw, cfa="RGGB", black_level=64, white_level=1023, color_matrix=np.eye(3), as_shot_neutral=np.ones(3),
        exposure_s=0.01, iso=100, make="scopectl", model="test",
    )  # fmt: skip


SEEDS = {
    "jpeg": jpeg_bytes(_RGB, dpi=300),
    "png": png_bytes(_RGB, dpi=2540),
    "tiff": _tiff_bytes(),
    "dng": _dng_bytes(),
}


def _names(exc: ScopectlError, path: object) -> None:
    """A refusal names the file it refuses."""
    assert str(path) in exc.message, exc.message


def _has_pkl(data: bytes) -> bool:
    import zipfile

    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            return any(n.endswith(".pkl") for n in zf.namelist())
    except zipfile.BadZipFile:
        return False


@st.composite
def mutated(draw: st.DrawFn, seed: bytes) -> bytes:
    """``seed`` with a few bytes overwritten and possibly cut short."""
    data = bytearray(seed)
    for _ in range(draw(st.integers(0, 6))):
        pos = draw(st.integers(0, len(data) - 1))
        data[pos] = draw(st.integers(0, 255))
    cut = draw(st.one_of(st.none(), st.integers(0, len(data))))
    return bytes(data if cut is None else data[:cut])


def _check_image(tmp_path: Path, name: str, data: bytes) -> None:
    from scopectl.imageio import plausible_pixel_size_um, read_image

    path = tmp_path / name
    path.write_bytes(data)
    try:
        img = read_image(path)
    except InputFileError as exc:
        _names(exc, path)
        return
    assert img.rgb.dtype == np.uint8 and img.rgb.ndim == 3 and img.rgb.shape[2] == 3
    assert img.rgb.shape[0] > 0 and img.rgb.shape[1] > 0 and img.rgb.flags.writeable
    assert img.pixel_size_um is None or plausible_pixel_size_um(img.pixel_size_um)


@pytest.mark.parametrize("fmt", list(SEEDS))
def test_image_reader_accepts_or_refuses_mutated_files(tmp_path: Path, fmt: str) -> None:
    @FAST
    @given(mutated(SEEDS[fmt]))
    def run(data: bytes) -> None:
        _check_image(tmp_path, f"x.{fmt}", data)

    run()


@FAST
@given(st.binary(max_size=400).map(lambda b: b"\xff\xd8\xff" + b))
def test_jpeg_decoder_on_arbitrary_bytes(data: bytes) -> None:
    from scopectl.imageio import decode_jpeg

    try:
        arr = decode_jpeg(data, source="x.jpg")
    except InputFileError as exc:
        _names(exc, "x.jpg")
        return
    assert arr.dtype == np.uint8 and arr.ndim == 3 and arr.shape[2] == 3


def test_strict_jpeg_refuses_what_libjpeg_would_grey_out() -> None:
    from hostile_corpus import cut_jpeg
    from scopectl.imageio import decode_jpeg

    with pytest.raises(InputFileError, match="premature end of data segment"):
        decode_jpeg(cut_jpeg(), source="cut.jpg")
    assert decode_jpeg(jpeg_bytes(_RGB, quality=100)).shape == _RGB.shape


# ---------------------------------------------------------------------------------------- HDF5 slides
_OBJECTS = [
    "/",
    "benchtop/mosaic",
    "phone/captures/00000",
    "phone/captures/00000/rgb",
    "phone/captures/00000/jpeg",
    "provenance/log",
]
_ATTRS = [
    "format", "schema_version", "slide_id", "simulated", "rig_json", "plan_json", "complete", "field_index",
    "pixel_size_um", "settings_json", "extra_json", "size", "sha256", "origin_x_um", "timestamp",
]  # fmt: skip
_VALUES = st.one_of(
    st.text(max_size=20),
    st.integers(-(2**40), 2**40),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.binary(max_size=10),
    st.just("{}"),
    st.just("[]"),
    st.just('{"a": [1, {"b": null}]}'),
    st.lists(st.integers(-5, 5), min_size=1, max_size=4).map(np.array),
)
_SHAPES = st.lists(st.integers(0, 70), min_size=0, max_size=4).map(tuple)
_DTYPES = st.sampled_from(["u1", "i4", "f8", "S3", "u2"])


@st.composite
def slide_edits(draw: st.DrawFn) -> list[tuple[str, str, object]]:
    edits = []
    for _ in range(draw(st.integers(1, 3))):
        obj = draw(st.sampled_from(_OBJECTS))
        kind = draw(st.sampled_from(["attr", "attr", "delattr", "dataset", "delete"]))
        if kind == "attr":
            edits.append((obj, kind, (draw(st.sampled_from(_ATTRS)), draw(_VALUES))))
        elif kind == "delattr":
            edits.append((obj, kind, draw(st.sampled_from(_ATTRS))))
        elif kind == "dataset":
            edits.append((obj, kind, (draw(_SHAPES), draw(_DTYPES))))
        else:
            edits.append((obj, kind, None))
    return edits


def _apply(h5: h5py.File, edits: list[tuple[str, str, object]]) -> None:
    for obj, kind, arg in edits:
        if obj not in h5:
            continue
        if kind == "attr":
            key, value = arg  # type: ignore[misc]
            h5[obj].attrs[key] = value
        elif kind == "delattr":
            if arg in h5[obj].attrs:
                del h5[obj].attrs[arg]
        elif obj != "/":
            del h5[obj]
            if kind == "dataset":
                shape, dtype = arg  # type: ignore[misc]
                h5.create_dataset(obj, shape=shape, dtype=dtype)


def test_slide_reader_accepts_or_refuses_edited_stores(tmp_path: Path) -> None:
    from scopectl.store import SlideStore

    seed = good_slide(tmp_path / "seed.h5", "seed")

    @FAST
    @given(slide_edits())
    def run(edits: list[tuple[str, str, object]]) -> None:
        path = tmp_path / "edited.h5"
        path.write_bytes(seed.read_bytes())
        with h5py.File(path, "r+") as h5:
            _apply(h5, edits)
        try:
            with SlideStore.open(path) as store:
                store.info()
                report = store.verify(deep=True)
                for meta in store.captures():
                    rgb, _ = store.read_capture(meta.index)
                    assert rgb.dtype == np.uint8 and rgb.ndim == 3 and rgb.shape[2] == 3
                mi = store.mosaic_info()
                if mi is not None:
                    assert store.mosaic()[0:8, 0:8].dtype == np.uint8
                assert isinstance(report["ok"], bool)
        except ScopectlError as exc:
            _names(exc, path)

    run()


# ---------------------------------------------------------------------------------------------- models
def test_model_loader_accepts_or_refuses_mutated_files(tmp_path: Path) -> None:
    from hostile_corpus import good_model
    from scopectl.learn.modelio import load_model

    good = good_model(tmp_path / "good")
    weights, card = (good / "model.safetensors").read_bytes(), (good / "model.json").read_bytes()

    @settings(max_examples=20, deadline=None, derandomize=True)
    @given(
        st.one_of(
            mutated(weights[:2000]).map(lambda head: ("w", head + weights[2000:])),
            mutated(card).map(lambda c: ("c", c)),
        )
    )
    def run(change: tuple[str, bytes]) -> None:
        d = tmp_path / "m"
        d.mkdir(exist_ok=True)
        (d / "model.safetensors").write_bytes(change[1] if change[0] == "w" else weights)
        (d / "model.json").write_bytes(change[1] if change[0] == "c" else card)
        try:
            net, loaded = load_model(d)
        except ModelError as exc:
            _names(exc, d)
            return
        assert 0 < loaded.input_pixel_size_um < 100 and net.ratio == loaded.ratio_pq

    run()


@FAST
@given(st.binary(max_size=64))
def test_pickle_and_safetensors_sniffers_on_arbitrary_bytes(tmp_path: Path, data: bytes) -> None:
    from scopectl.learn.modelio import check_not_pickle

    path = tmp_path / "model.safetensors"
    path.write_bytes(data)
    try:
        check_not_pickle(path)
    except ModelError:
        refused = True
    else:
        refused = False
    assert refused == (data[:1] == b"\x80" or (data[:4] == b"PK\x03\x04" and _has_pkl(data)))


# ------------------------------------------------------------------------------------------ the phone
@FAST
@given(st.text(max_size=200))
def test_phone_shell_parsers_on_arbitrary_text(text: str) -> None:
    from scopectl.hardware.phone import parsing as p

    for call in (
        lambda: p.parse_exit_code(text, marker="__M", device="d", command="c"),
        lambda: p.parse_battery(text, device="d"),
        lambda: p.parse_df_free_bytes(text, device="d"),
        lambda: p.parse_sha256sum(text, path="/x", device="d"),
        lambda: p.parse_am_start(text, device="d", action="a"),
    ):
        try:
            result = call()
        except DeviceProtocolError:
            continue
        if isinstance(result, int) and not isinstance(result, bool):
            assert result >= 0
    assert p.parse_wakefulness(text) in (True, False, None)
    assert p.parse_keyguard_showing(text) in (True, False, None)


@pytest.mark.parametrize("kind", ["dng", "jpeg"])
def test_phone_metadata_reader_on_mutated_files(tmp_path: Path, kind: str) -> None:
    from scopectl.hardware.phone.metadata import read_capture_settings

    @FAST
    @given(mutated(SEEDS[kind]))
    def run(data: bytes) -> None:
        path = tmp_path / f"x.{kind}"
        path.write_bytes(data)
        try:
            settings_ = read_capture_settings(**{"dng": None, "jpeg": None, kind: path})
        except InputFileError as exc:
            _names(exc, path)
            return
        json.dumps(settings_)

    run()


# ------------------------------------------------------------------------------------ names and locks
@FAST
@given(st.text(max_size=80))
def test_a_slide_id_never_leaves_the_slides_folder(tmp_path: Path, text: str) -> None:
    from scopectl.store import DataRoot

    root = DataRoot(tmp_path)
    try:
        path = root.slide_path(text)
    except InputFileError:
        return
    assert path.parent == tmp_path / "slides" and path.name == f"{text}.h5" and not text.startswith(".")
    assert "/" not in text and "\x00" not in text


@FAST
@given(st.binary(max_size=200))
def test_lock_holder_description_on_arbitrary_bytes(tmp_path: Path, data: bytes) -> None:
    from scopectl.store import WriteLock

    lock = WriteLock(tmp_path / "s.h5")
    lock.lock_path.write_bytes(data)
    holder = lock.holder()
    assert holder is None or isinstance(holder, dict)


@FAST
@given(st.text(max_size=20), st.floats(allow_nan=True))
def test_tile_grid_option_parser(text: str, overlap: float) -> None:
    from scopectl.store.importer import TileGrid

    try:
        grid = TileGrid.parse(text, overlap)
    except InputFileError:
        return
    assert grid.rows > 0 and grid.cols > 0 and 0 <= grid.overlap < 0.9
