"""``scopectl demo --quick``: the main job end to end on the simulated rig, small enough for CI.

The demo acquires two slides on the simulated rig, registers them, builds a training set from one, trains
the network for one short epoch, enhances the other slide's captures and evaluates the model on them.  The
test checks that every output the demo reports exists and is what it says it is.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from scopectl.cli.cmd_demo import QUICK_CAPTURE_PX, QUICK_FIELDS
from scopectl.cli.main import main
from scopectl.imageio import read_image
from scopectl.learn.modelio import load_model
from scopectl.store import SlideStore


def test_quick_demo_runs_the_whole_job_and_its_outputs_are_what_it_says(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "data"
    assert main(["--root", str(root), "demo", "--quick", "--device", "cpu", "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["simulated"] is True and result["root"] == str(root)
    assert list(result["samples"]) == ["lung"]
    lung = result["samples"]["lung"]

    # two simulated slides, acquired and registered: one to train on, one held out
    train_slide, test_slide = lung["slides"]
    for slide in (train_slide, test_slide):
        with SlideStore.open(root / "slides" / f"{slide}.h5") as store:
            assert store.simulated
            assert store.capture_count() == QUICK_FIELDS
            assert store.mosaic_info() is not None
            assert store.registered_indices() == list(range(QUICK_FIELDS))
            capture, _meta = store.read_capture(0)
            assert capture.shape == (QUICK_CAPTURE_PX, QUICK_CAPTURE_PX, 3)

    # the training set and the model trained on it (one epoch, quality checked against bicubic)
    assert (root / "datasets" / f"{lung['dataset']}.h5").is_file()
    model_dir = Path(lung["model"])
    assert model_dir == root / "models" / lung["dataset"]
    _net, card = load_model(model_dir)
    assert card.sample_type == "lung"
    assert [s["slide_id"] for s in card.training.dataset_provenance["slides"]] == [train_slide]
    assert card.training.epochs_completed == 1.0
    assert card.quality is not None and card.quality.pairs > 0

    # every held-out capture enhanced to the benchtop's pixel size (more pixels than the capture)
    enhanced = sorted(Path(lung["enhanced_dir"]).iterdir())
    assert [p.name for p in enhanced] == [f"{test_slide}-capture{i:04d}.ome.tif" for i in range(QUICK_FIELDS)]
    for path in enhanced:
        image = read_image(path)
        assert image.rgb.ndim == 3 and image.rgb.shape[2] == 3
        assert image.rgb.shape[0] > QUICK_CAPTURE_PX
        assert image.pixel_size_um == pytest.approx(card.target_pixel_size_um, rel=1e-3)

    # the paper's tables (SSIM, CIE-94) and a Fig. 3-like figure, on the held-out slide
    report_dir = Path(lung["report_dir"])
    tables = json.loads((report_dir / "tables.json").read_text(encoding="utf-8"))
    assert tables == lung["tables"]
    assert tables["slides"] == [test_slide] and tables["captures"] >= 1
    assert 0.0 < tables["ssim_bicubic"] <= 1.0 and 0.0 < tables["ssim_network"] <= 1.0
    assert tables["cie94"]["C"]["mean"] > 0.0
    assert (report_dir / "tables.md").is_file()
    figures = list(report_dir.glob("figure-*.png"))
    assert len(figures) == 1 and figures[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_quick_and_full_exclude_each_other(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--root", str(tmp_path), "demo", "--quick", "--full"]) == 2
    assert "--quick and --full exclude each other" in capsys.readouterr().err
    assert not tmp_path.exists() or not any(tmp_path.iterdir())
