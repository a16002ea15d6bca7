"""Issue 17's hostile cases through the real CLI: every command that reads them, every invariant checked.

For each hostile slide, image, model and environment (built by code in ``tests/hostile_corpus.py``), each
command is run through ``scopectl.cli.main.main`` and must end with: the expected exit code (never 70, the
internal error), a one-line message on stderr naming the file, no traceback, no write outside the data root
and the output folder (a snapshot of ``outside/`` before and after), nothing half-written and no leftovers
(partial files, locks, private folders).  ``benchmarks/hostile_rerun.py`` runs the same kinds of cases as
separate processes and counts them.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hostile_corpus import (
    HOSTILE_IMAGES,
    HOSTILE_MODELS,
    HOSTILE_SLIDES,
    NON_FILES,
    SLIDE_COMMANDS,
    Workspace,
    good_benchtop,
    good_model,
    good_slide,
    hostile_slide_names,
    jpeg_bytes,
    leftovers,
    make_hostile_image,
    make_hostile_slide,
    png_bytes,
    snapshot,
)
from scopectl.cli.main import main


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return good_model(tmp_path_factory.mktemp("models") / "m")


def _run(capsys: pytest.CaptureFixture[str], root: Path, *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    rc = main(["--root", str(root), *args])
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def _one_line_error(err: str, *, names: str | None) -> str:
    """The error report: exactly one ``error:`` line, the last on stderr (progress lines may precede it)."""
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith(("error: ", "internal error: "))]
    assert len(errors) == 1 and lines[-1] == errors[0], f"expected one error line, last on stderr:\n{err}"
    assert errors[0].startswith("error: "), errors[0]
    assert "Traceback" not in err and "Exception ignored" not in err
    if names is not None:
        assert names in errors[0], f"the message does not name {names}: {errors[0]}"
    return errors[0]


#: Opener-level refusals: the file must come out of every command byte-identical.
_UNTOUCHED = {
    n for n, (_m, refusing) in HOSTILE_SLIDES.items() if refusing == frozenset(SLIDE_COMMANDS)
} | set(NON_FILES)


@pytest.mark.parametrize("name", hostile_slide_names())
def test_hostile_slide_through_every_command(
    tmp_path: Path, name: str, model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ws = Workspace(tmp_path)
    path, refusing = make_hostile_slide(ws, name)
    outside = snapshot(ws.outside)
    slides_before = snapshot(ws.root / "slides")
    for command, template in SLIDE_COMMANDS.items():
        args = [
            a.format(slide=name, model=str(model_dir), out=str(ws.base / "out"), path=str(path))
            for a in template
        ]
        rc, _out, err = _run(capsys, ws.root, *args)
        assert rc != 70, f"{command}: internal error: {err}"
        assert "Traceback" not in err and "Exception ignored" not in err, f"{command}: {err}"
        if command in refusing:
            assert rc != 0, f"{command} accepted the hostile slide {name}"
            line = _one_line_error(err, names=path.name)
            assert rc in (2, 3, 7), f"{command}: exit {rc}: {line}"
        elif rc != 0:
            _one_line_error(err, names=None)
        assert snapshot(ws.outside) == outside, f"{command} wrote outside the root"
        assert leftovers(ws.root) == [], f"{command} left {leftovers(ws.root)}"
        if name in _UNTOUCHED:
            assert snapshot(ws.root / "slides") == slides_before, f"{command} modified the refused file"


def test_verify_deep_catches_what_readers_fail_on(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ws = Workspace(tmp_path)
    make_hostile_slide(ws, "corrupt-mosaic-chunk")
    rc, _out, err = _run(capsys, ws.root, "store", "verify", "--slide", "corrupt-mosaic-chunk", "--quick")
    assert rc == 0 and not err  # the quick check does not decode image chunks ...
    rc, out, err = _run(capsys, ws.root, "store", "verify", "--slide", "corrupt-mosaic-chunk", "--json")
    report = json.loads(out.strip().splitlines()[-1])
    assert rc == 3 and report["deep"] and not report["ok"]  # ... the default, deep, one does
    assert "benchtop mosaic rows" in report["problems"][0]
    good_slide(ws.root / "slides" / "fine.h5", "fine")
    rc, out, _err = _run(capsys, ws.root, "store", "verify", "--slide", "fine", "--json")
    report = json.loads(out.strip().splitlines()[-1])
    assert rc == 0 and report["deep"] and report["bytes_read"] >= 1100 * 240 * 3


@pytest.mark.parametrize(
    "argv",
    [
        ["store", "info", "--slide", "../../outside/x"],
        ["store", "verify", "--slide", "../x"],
        ["register", "--slide", "../../../outside/x"],
        ["evaluate", "--model", "m", "--slides", "ok,../../outside/x"],
        ["dataset", "build", "--slides", "/etc/x", "--name", "d"],
        ["acquire", "--slide", "../x", "--rig", "sim"],
        ["import", "--slide", "a/b", "--phone", "p.jpg", "--benchtop", "b.tif"],
    ],
)
def test_slide_ids_never_become_paths_outside_the_root(
    tmp_path: Path, argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    ws = Workspace(tmp_path)
    good_model(ws.root / "models" / "m") if argv[0] == "evaluate" else None
    before = snapshot(ws.base, skip=ws.root)
    rc, _out, err = _run(capsys, ws.root, *argv)
    assert rc == 2
    assert "invalid slide id" in _one_line_error(err, names=None)
    assert snapshot(ws.base, skip=ws.root) == before
    assert leftovers(ws.root) == []


# --------------------------------------------------------------------------------------------- images
@pytest.mark.parametrize("name", list(HOSTILE_IMAGES))
def test_hostile_image_through_import_and_enhance(
    tmp_path: Path, name: str, model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ws = Workspace(tmp_path)
    path = make_hostile_image(ws, name)
    bench = good_benchtop(ws)
    outside = snapshot(ws.outside)
    rc, _out, err = _run(
        capsys, ws.root, "import", "--slide", "s", "--phone", str(path), "--benchtop", str(bench),
        "--phone-um-per-px", "0.4",
    )  # fmt: skip
    assert rc == 2, err
    line = _one_line_error(err, names=str(path))
    assert "empty (0 bytes)" not in line or name == "empty.png"
    assert not (ws.root / "slides" / "s.h5").exists()
    rc, _out, err = _run(
        capsys, ws.root, "enhance", str(path), "--model", str(model_dir), "--out", str(ws.base / "out")
    )
    assert rc == 2, err
    line = _one_line_error(err, names=str(path))
    if name in ("fifo.jpg", "dev-zero.jpg", "directory.jpg", "proc-file.jpg"):
        assert "file not found" not in line
    assert not list((ws.base / "out").glob("*")) if (ws.base / "out").exists() else True
    assert snapshot(ws.outside) == outside
    assert leftovers(ws.root) == []


def test_special_files_are_named_for_what_they_are(tmp_path: Path) -> None:
    from scopectl.errors import InputFileError
    from scopectl.imageio import read_image

    ws = Workspace(tmp_path)
    for name, words in [
        ("fifo.jpg", "FIFO"),
        ("dev-zero.jpg", "character device"),
        ("directory.jpg", "directory"),
        ("proc-file.jpg", "not an image"),
        ("cut-in-half.jpg", "corrupt JPEG data"),
        ("8-byte.dng", "truncated or corrupt TIFF"),
        ("bomb.tif", "absurdly large"),
    ]:
        with pytest.raises(InputFileError, match=words):
            read_image(make_hostile_image(ws, name))


@pytest.mark.parametrize("dpi", [72, 300])
def test_print_resolution_is_never_a_pixel_size(
    tmp_path: Path, dpi: int, model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ws = Workspace(tmp_path)
    rgb = __import__("numpy").random.default_rng(dpi).integers(0, 256, (64, 80, 3), dtype="uint8")
    jpg, png = ws.inputs / "p.jpg", ws.inputs / "q.png"
    jpg.write_bytes(jpeg_bytes(rgb, dpi=dpi))
    png.write_bytes(png_bytes(rgb, dpi=dpi))
    bench = good_benchtop(ws)
    rc, _out, err = _run(
        capsys, ws.root, "import", "--slide", "s", "--phone", str(jpg), "--benchtop", str(bench)
    )
    assert rc == 2 and f"{dpi} dpi" in _one_line_error(err, names=str(jpg))
    rc, out, err = _run(
        capsys,
        ws.root,
        "enhance",
        str(jpg),
        str(png),
        "--model",
        str(model_dir),
        "--out",
        str(ws.base / "out"),
        "--json",
    )
    assert rc == 0, err
    outputs = json.loads(out.strip().splitlines()[-1])["outputs"]
    for o in outputs:  # the model's pixel size is assumed, and said so; nothing is blown up
        assert (
            o["pixel_size_assumed"] and not o["resampled"] and o["input_pixel_size_um"] == pytest.approx(0.4)
        )
        assert o["output_shape"] == [160, 200]


@pytest.mark.parametrize("value", ["-1", "0", "nan", "inf", "1e6", "25"])
def test_input_pixel_size_option_is_validated(
    tmp_path: Path, value: str, model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ws = Workspace(tmp_path)
    jpg = ws.inputs / "p.jpg"
    jpg.write_bytes(jpeg_bytes(__import__("numpy").zeros((64, 80, 3), "uint8") + 90))
    rc, _out, err = _run(
        capsys, ws.root, "enhance", str(jpg), "--model", str(model_dir), "--out", str(ws.base / "out"),
        "--input-pixel-size-um", value,
    )  # fmt: skip
    assert rc == 2
    assert "--input-pixel-size-um" in _one_line_error(err, names=None)
    assert not (ws.base / "out").exists()


def test_explicit_pixel_size_beats_the_file_and_bounds_the_resampling(
    tmp_path: Path, model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import numpy as np
    import tifffile

    ws = Workspace(tmp_path)
    tif = ws.inputs / "p.tif"  # states 1.0 µm/px, plausibly
    tifffile.imwrite(
        tif, np.full((64, 80, 3), 90, np.uint8), resolution=(1.0, 1.0), imagej=True, metadata={"unit": "um"}
    )
    rc, out, err = _run(
        capsys, ws.root, "enhance", str(tif), "--model", str(model_dir), "--out", str(ws.base / "o1"),
        "--input-pixel-size-um", "0.8", "--json",
    )  # fmt: skip
    assert rc == 0, err
    o = json.loads(out.strip().splitlines()[-1])["outputs"][0]
    assert o["input_pixel_size_um"] == pytest.approx(0.8) and o["resampled"] and not o["pixel_size_assumed"]
    assert o["output_shape"] == [math.ceil(128 * 2.5), math.ceil(160 * 2.5)]
    rc, _out, err = _run(
        capsys, ws.root, "enhance", str(tif), "--model", str(model_dir), "--out", str(ws.base / "o2"),
        "--input-pixel-size-um", "19",
    )  # fmt: skip
    assert rc == 2 and "would be enlarged" in _one_line_error(err, names=str(tif))


# --------------------------------------------------------------------------------------------- models
@pytest.mark.parametrize("name", list(HOSTILE_MODELS))
def test_hostile_model_through_enhance_and_evaluate(
    tmp_path: Path, name: str, model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ws = Workspace(tmp_path)
    bad = ws.root / "models" / name
    HOSTILE_MODELS[name](bad, model_dir)
    good_slide(ws.root / "slides" / "s.h5", "s")
    jpg = ws.inputs / "p.jpg"
    jpg.write_bytes(jpeg_bytes(__import__("numpy").zeros((64, 80, 3), "uint8") + 90))
    for args in (
        ["enhance", str(jpg), "--model", name, "--out", str(ws.base / "out")],
        ["evaluate", "--model", name, "--slides", "s", "--figures", "0"],
    ):
        rc, _out, err = _run(capsys, ws.root, *args)
        assert rc == 6, err
        line = _one_line_error(err, names=str(bad))
        assert "not found" not in line or name == "weights-missing"
    assert leftovers(ws.root) == []


# ---------------------------------------------------------------------------------------- environment
def test_root_or_out_naming_a_file(
    tmp_path: Path, model_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    ws = Workspace(tmp_path)
    afile = ws.outside / "passwd"
    before = snapshot(ws.outside)
    jpg = ws.inputs / "p.jpg"
    jpg.write_bytes(jpeg_bytes(__import__("numpy").zeros((64, 80, 3), "uint8") + 90))
    for args in (
        ["store", "ls"],
        ["register", "--slide", "x"],
        ["import", "--slide", "x", "--phone", str(jpg), "--benchtop", str(jpg)],
    ):
        rc, _out, err = _run(capsys, afile, *args)
        assert rc == 2 and "is not a directory" in _one_line_error(err, names=str(afile))
    monkeypatch.setenv("SCOPECTL_ROOT", str(afile))
    capsys.readouterr()
    assert main(["store", "info", "--slide", "x"]) == 2
    _one_line_error(capsys.readouterr().err, names=str(afile))
    rc, _out, err = _run(capsys, ws.root, "enhance", str(jpg), "--model", str(model_dir), "--out", str(afile))
    assert rc == 2 and "--out" in _one_line_error(err, names=str(afile))
    assert snapshot(ws.outside) == before


def _unwritable() -> Path:
    """A folder no process can create files in (sysfs), as a read-only root would be."""
    target = Path("/sys/scopectl-test-root")
    try:
        target.mkdir()
    except OSError:
        return target
    target.rmdir()
    pytest.skip("/sys is writable here; no unwritable folder to test with")


def test_unwritable_root_is_an_environment_error_before_any_work(
    tmp_path: Path, model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ws = Workspace(tmp_path)
    root = _unwritable()
    jpg = ws.inputs / "p.jpg"
    jpg.write_bytes(jpeg_bytes(__import__("numpy").zeros((64, 80, 3), "uint8") + 90))
    bench = good_benchtop(ws)
    for args in (
        ["import", "--slide", "s", "--phone", str(jpg), "--benchtop", str(bench), "--phone-um-per-px", "0.4"],
        ["acquire", "--slide", "s", "--rig", "sim"],  # refused before the rig starts
    ):
        rc, _out, err = _run(capsys, root, *args)
        assert rc == 7, err
        _one_line_error(err, names=str(root))
    rc, _out, err = _run(
        capsys, ws.root, "enhance", str(jpg), "--model", str(model_dir), "--out", str(root / "out")
    )
    assert rc == 7, err
    _one_line_error(err, names=str(root))


_FSIZE = """
import json, resource, sys
resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[1]), int(sys.argv[1])))
from scopectl.cli.main import main
for argv in json.loads(sys.argv[2]):
    print(main(argv), file=sys.stderr, flush=True)
"""


def test_file_size_limit_is_a_clean_error_with_nothing_half_written(tmp_path: Path, model_dir: Path) -> None:
    ws = Workspace(tmp_path)
    jpg = ws.inputs / "p.jpg"
    jpg.write_bytes(
        jpeg_bytes(__import__("numpy").random.default_rng(0).integers(0, 256, (400, 500, 3), dtype="uint8"))
    )
    bench = good_benchtop(ws)
    out = ws.base / "out"
    runs = [
        ["--root", str(ws.root), "import", "--slide", "s", "--phone", str(jpg), "--benchtop", str(bench),
         "--phone-um-per-px", "0.4"],
        ["--root", str(ws.root), "enhance", str(jpg), "--model", str(model_dir), "--out", str(out)],
    ]  # fmt: skip
    proc = subprocess.run(
        [sys.executable, "-c", _FSIZE, "500000", json.dumps(runs)],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert proc.returncode == 0 and "Traceback" not in proc.stderr and "Exception ignored" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    codes = [int(ln) for ln in lines if ln.strip().isdigit()]
    errors = [ln for ln in lines if ln.startswith("error: ")]
    assert codes == [7, 7], proc.stderr
    assert (
        len(errors) == 2
        and str(ws.root / "slides" / "s.h5") in errors[0]
        and str(out / "p.ome.tif") in errors[1]
    )
    assert "--resume" not in errors[0] and "partial" not in errors[0]
    assert not (ws.root / "slides" / "s.h5").exists() and leftovers(ws.root) == []
    assert sorted(p.name for p in out.iterdir()) == []


def test_leftovers_of_killed_runs_are_shown_then_swept(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ws = Workspace(tmp_path)
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True
    )
    pid = int(dead.stdout)
    slides = ws.root / "slides"
    (slides / f".s.h5.partial-{pid}").write_bytes(b"\0" * 1000)
    (slides / "t.h5.lock").write_text(json.dumps({"pid": pid}))
    key_dir = ws.root / ".scopectl" / f"sim-{pid}"
    key_dir.mkdir(parents=True, mode=0o700)
    (key_dir / "adbkey").write_text("PRIVATE KEY")
    rc, out, _err = _run(capsys, ws.root, "store", "ls", "--json")
    assert rc == 0
    shown = {Path(item["path"]).name for item in json.loads(out.strip().splitlines()[-1])["leftovers"]}
    assert shown == {f".s.h5.partial-{pid}", "t.h5.lock", f"sim-{pid}"}
    jpg, bench = ws.inputs / "p.jpg", good_benchtop(ws)
    jpg.write_bytes(jpeg_bytes(__import__("numpy").zeros((64, 80, 3), "uint8") + 90))
    rc, _out, err = _run(
        capsys,
        ws.root,
        "import",
        "--slide",
        "s",
        "--phone",
        str(jpg),
        "--benchtop",
        str(bench),
        "--phone-um-per-px",
        "0.4",
    )
    assert rc == 0, err
    assert err.count("removed a leftover of an interrupted run") == 3
    assert leftovers(ws.root) == [] and (slides / "s.h5").is_file()


def test_a_live_writers_partial_file_is_left_alone(tmp_path: Path) -> None:
    from scopectl.store import DataRoot

    ws = Workspace(tmp_path)
    mine = ws.root / "slides" / f".s.h5.partial-{os.getpid()}"
    mine.write_bytes(b"x")
    assert DataRoot(ws.root).sweep_stale() == [] and mine.exists()
