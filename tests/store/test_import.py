"""`scopectl import`: real files in, a verifiable slide out; every bad input refused, nothing half-written."""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
import tifffile

from scopectl.cli.main import main
from scopectl.errors import InputFileError
from scopectl.imageio import read_image
from scopectl.store import SlideStore
from support import write_test_dng


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    rng = np.random.default_rng(0)
    d = tmp_path / "in"
    d.mkdir()
    out = {}
    img = rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)
    out["jpg"] = d / "phone1.jpg"
    cv2.imwrite(str(out["jpg"]), img[:, :, ::-1])
    out["png"] = d / "phone2.png"
    cv2.imwrite(str(out["png"]), img[:, :, ::-1])
    out["dng"] = d / "phone3.dng"
    write_test_dng(out["dng"], rng.integers(64, 1000, (96, 128)).astype(np.uint16))
    out["bench"] = d / "bench.tif"
    tifffile.imwrite(
        out["bench"],
        rng.integers(0, 256, (400, 500, 3), dtype=np.uint8),
        resolution=(1 / 0.37, 1 / 0.37),
        imagej=True,
        metadata={"unit": "um"},
    )
    return out


def _run(root: Path, *args: str) -> int:
    return main(["--root", str(root), *args])


def test_import_then_verify_real_files(
    tmp_path: Path, files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "root"
    rc = _run(
        root,
        "import",
        "--slide",
        "imp1",
        "--phone",
        str(files["jpg"]),
        str(files["png"]),
        str(files["dng"]),
        "--benchtop",
        str(files["bench"]),
        "--phone-um-per-px",
        "0.4",
        "--json",
    )
    assert rc == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["captures"] == 3 and result["benchtop_pixel_size_um"] == pytest.approx(0.37)
    assert _run(root, "store", "verify", "--slide", "imp1", "--json") == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["ok"] and report["raw_files_checked"] == 3
    with SlideStore.open(root / "slides" / "imp1.h5") as store:
        assert store.read_capture_raw(0, "jpeg") == files["jpg"].read_bytes()
        assert store.read_capture_raw(2, "dng") == files["dng"].read_bytes()
        rgb, meta = store.read_capture(2)
        assert rgb.shape == (96, 128, 3) and meta.settings["cfa_pattern"] == "RGGB"
        np.testing.assert_array_equal(store.read_capture(1)[0], cv2.imread(str(files["png"]))[:, :, ::-1])
        assert store.mosaic().shape == (400, 500, 3)
        assert not store.simulated


def _png_header_only(path: Path, rows: int, cols: int, depth: int = 8, ctype: int = 2) -> None:
    ihdr = struct.pack(">IIBBBBB", cols, rows, depth, ctype, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    data = b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + chunk + struct.pack(">I", zlib.crc32(chunk))
    idat = b"IDAT" + zlib.compress(b"\x00" * 10)
    data += struct.pack(">I", len(idat) - 4) + idat + struct.pack(">I", zlib.crc32(idat))
    data += struct.pack(">I", 0) + b"IEND" + struct.pack(">I", zlib.crc32(b"IEND"))
    path.write_bytes(data)


@pytest.mark.parametrize(
    ("name", "make", "message"),
    [
        ("truncated.jpg", lambda p, f: p.write_bytes(f["jpg"].read_bytes()[:2000]), "truncated JPEG"),
        ("truncated.png", lambda p, f: p.write_bytes(f["png"].read_bytes()[:3000]), "truncated PNG"),
        (
            "truncated.dng",
            lambda p, f: p.write_bytes(f["dng"].read_bytes()[:3000]),
            "not a decodable DNG|corrupt TIFF",
        ),
        (
            "corrupt.png",
            lambda p, f: p.write_bytes(f["png"].read_bytes()[:200] + b"\x00" * 5000 + b"IEND\xaeB`\x82"),
            "corrupt PNG data",
        ),
        ("notes.txt", lambda p, f: p.write_text("hello, not an image"), "not an image"),
        ("empty.jpg", lambda p, f: p.write_bytes(b""), "file is empty"),
        ("gray.png", lambda p, f: cv2.imwrite(str(p), np.zeros((20, 20), np.uint8)), "grayscale"),
        ("gray.tif", lambda p, f: tifffile.imwrite(p, np.zeros((20, 20), np.uint8)), "grayscale"),
        ("deep.png", lambda p, f: cv2.imwrite(str(p), np.zeros((20, 20, 3), np.uint16)), "16-bit"),
        ("deep.tif", lambda p, f: tifffile.imwrite(p, np.zeros((20, 20, 3), np.uint16)), "16-bit"),
        ("zero.png", lambda p, f: _png_header_only(p, 0, 10), "zero size"),
        ("huge.png", lambda p, f: _png_header_only(p, 100_000, 100_000), "absurdly large"),
        ("folder.jpg", lambda p, f: p.mkdir(), "directory"),
        ("missing.jpg", lambda p, f: None, "file not found"),
    ],
)
def test_bad_input_is_refused_with_one_line_and_nothing_written(
    tmp_path: Path,
    files: dict[str, Path],
    capsys: pytest.CaptureFixture[str],
    name: str,
    make: object,
    message: str,
) -> None:
    bad = tmp_path / "in" / name
    make(bad, files)  # type: ignore[operator]
    with pytest.raises(InputFileError, match=message):
        read_image(bad)
    root = tmp_path / "root"
    rc = _run(
        root,
        "import",
        "--slide",
        "bad",
        "--phone",
        str(files["jpg"]),
        str(bad),
        "--benchtop",
        str(files["bench"]),
        "--phone-um-per-px",
        "0.4",
    )
    assert rc == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 + 2  # two "reading" progress lines, then exactly one error line
    assert err[-1].startswith("error: ") and name in err[-1]
    assert not (root / "slides").exists() or list((root / "slides").iterdir()) == []


def test_missing_pixel_size_and_existing_slide(
    tmp_path: Path, files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "root"
    assert (
        _run(root, "import", "--slide", "x", "--phone", str(files["jpg"]), "--benchtop", str(files["bench"]))
        == 2
    )
    assert "--phone-um-per-px" in capsys.readouterr().err
    args = [
        "import",
        "--slide",
        "x",
        "--phone",
        str(files["jpg"]),
        "--benchtop",
        str(files["bench"]),
        "--phone-um-per-px",
        "0.4",
    ]
    assert _run(root, *args) == 0
    before = (root / "slides" / "x.h5").read_bytes()
    assert _run(root, *args) == 3
    assert "already exists" in capsys.readouterr().err
    assert (root / "slides" / "x.h5").read_bytes() == before
    assert _run(root, *args, "--force") == 0
    assert (
        _run(
            root,
            "import",
            "--slide",
            "y",
            "--phone",
            str(files["jpg"]),
            "--benchtop",
            str(files["bench"]),
            "--phone-um-per-px",
            "500",
        )
        == 2
    )
    assert "implausible pixel size" in capsys.readouterr().err


def test_several_benchtop_tiles_need_a_layout(
    tmp_path: Path, files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "root"
    two_tiles = ["import", "--slide", "t", "--phone", str(files["jpg"]), "--phone-um-per-px", "0.4"]
    two_tiles += ["--benchtop", str(files["bench"]), str(files["bench"])]
    assert _run(root, *two_tiles) == 2
    assert "--benchtop-grid" in capsys.readouterr().err
    assert _run(root, *two_tiles, "--benchtop-grid", "2x2") == 2
    assert "needs 4 files" in capsys.readouterr().err
