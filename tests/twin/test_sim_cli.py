"""``scopectl sim pairs`` / ``sim calibrate`` and the files they write."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import rawpy
import tifffile
import typer

from scopectl.cli import cmd_sim
from scopectl.errors import InputFileError
from scopectl.twin import PhoneGroundTruth
from scopectl.twin.pairs import write_pairs


def _app() -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def _root() -> None:
        """Test root."""

    cmd_sim.register(app)
    return app


def test_sim_pairs_writes_aligned_pairs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "pairs"
    _app()(
        ["sim", "pairs", "--sample", "blood", "--count", "2", "--out", str(out), "--size", "128", "--json"],
        standalone_mode=False,
    )
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["count"] == 2 and result["sample"] == "blood"
    for k in range(2):
        d = out / f"pair-{k:04d}"
        with rawpy.imread(io.BytesIO((d / "phone.dng").read_bytes())) as raw:
            assert raw.raw_image_visible.shape == (128, 128)
        assert (d / "phone.jpg").read_bytes()[:2] == b"\xff\xd8"
        with tifffile.TiffFile(d / "benchtop.tif") as tif:
            page = tif.pages[0]
            bench = page.asarray()
            xres = page.tags["XResolution"].value
            assert page.tags["ResolutionUnit"].value == 3  # centimetre
            assert xres[0] / xres[1] == pytest.approx(1e4 / 0.37, rel=1e-4)
            assert json.loads(page.description)["pixel_size_um"] == pytest.approx(0.37)
        assert bench.dtype == np.uint8 and bench.shape[2] == 3
        truth = json.loads((d / "truth.json").read_text())
        mapping = PhoneGroundTruth.from_dict(truth["phone"])
        assert mapping.shape == (128, 128)
        # the convenience homography agrees with the full mapping (up to the small warp)
        hb = np.array(truth["benchtop_from_phone_homography"])
        x, y = mapping.to_slide_um(np.array([64.0]), np.array([64.0]))
        b = truth["benchtop"]
        col = (x[0] - b["origin_x_um"]) / b["pixel_size_um"]
        row = (y[0] - b["origin_y_um"]) / b["pixel_size_um"]
        v = hb @ np.array([64.0, 64.0, 1.0])
        assert abs(v[0] / v[2] - col) < 15 and abs(v[1] / v[2] - row) < 15
        assert 0 <= col < bench.shape[1] and 0 <= row < bench.shape[0]


def test_sim_pairs_refuses_to_overwrite(tmp_path: Path) -> None:
    write_pairs(tmp_path, sample="lung", count=1, phone_shape=(64, 64))
    with pytest.raises(InputFileError, match="already exists"):
        write_pairs(tmp_path, sample="lung", count=1, phone_shape=(64, 64))
    again = write_pairs(tmp_path, sample="lung", count=1, phone_shape=(64, 64), overwrite=True)
    assert again == [tmp_path / "pair-0000"]


def test_pairs_are_reproducible(tmp_path: Path) -> None:
    a = write_pairs(tmp_path / "a", sample="pap", count=1, seed=3, phone_shape=(64, 64))[0]
    b = write_pairs(tmp_path / "b", sample="pap", count=1, seed=3, phone_shape=(64, 64))[0]
    c = write_pairs(tmp_path / "c", sample="pap", count=1, seed=4, phone_shape=(64, 64))[0]
    assert (a / "phone.dng").read_bytes() == (b / "phone.dng").read_bytes()
    assert (a / "phone.dng").read_bytes() != (c / "phone.dng").read_bytes()


def test_sim_calibrate_reports_metrics(capsys: pytest.CaptureFixture[str]) -> None:
    _app()(
        ["sim", "calibrate", "--sample", "lung", "--count", "1", "--size", "128", "--json"],
        standalone_mode=False,
    )
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert 0.0 < result["ssim_mean"] < 1.0 and result["cie94_mean"] > 0.0
    assert result["paper_ssim_range"] == [0.46, 0.66]


def test_sim_rejects_odd_sizes() -> None:
    with pytest.raises(Exception, match="even"):
        _app()(
            ["sim", "pairs", "--sample", "lung", "--count", "1", "--out", "x", "--size", "65"],
            standalone_mode=False,
        )
