"""The paper's tables from arrays, held-out pairs from a slide store, and the evaluate command."""

from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import typer
from skimage.color import deltaE_ciede94, rgb2lab
from skimage.metrics import structural_similarity

from scopectl.cli.cmd_learn import register
from scopectl.evaluation.figures import choose_regions, comparison_figure
from scopectl.evaluation.heldout import iter_store_pairs, pair_from_homography
from scopectl.evaluation.report import evaluate_pairs
from scopectl.evaluation.tables import aggregate, score_capture, tables_markdown, write_tables
from scopectl.learn.modelio import ModelCard, save_model
from scopectl.learn.network import build_network
from scopectl.metrics import luma
from scopectl.registration.synthetic import tissue_rgb
from scopectl.store import CaptureRecord, RegistrationRecord, SlideStore

MOSAIC_UM = 0.37


def _phone_view(mosaic: np.ndarray, *, seed: int, size: int = 300) -> tuple[np.ndarray, np.ndarray]:
    """A blurred, colour-shifted phone image of part of ``mosaic`` and its homography (phone → mosaic)."""
    rng = np.random.default_rng(seed)
    scale = 0.40 / MOSAIC_UM  # mosaic px per phone px
    ang = math.radians(rng.uniform(-4, 4))
    c, s = scale * math.cos(ang), scale * math.sin(ang)
    h = np.array(
        [[c, -s, 90 + rng.uniform(0, 20)], [s, c, 80 + rng.uniform(0, 20)], [0, 0, 1]], dtype=np.float64
    )
    phone = cv2.warpPerspective(
        mosaic, np.linalg.inv(h), (size, size), flags=cv2.INTER_LINEAR | cv2.WARP_FILL_OUTLIERS
    )
    phone = cv2.GaussianBlur(phone, (0, 0), 1.2).astype(np.float64) * [0.85, 0.9, 1.05] + [10, 5, -5]
    return np.clip(phone, 0, 255).astype(np.uint8), h


@pytest.fixture(scope="module")
def mosaic() -> np.ndarray:
    return tissue_rgb((520, 520), seed=11, pixel_um=MOSAIC_UM)


def _gray(img: np.ndarray) -> np.ndarray:
    return luma(img)


def test_scores_match_scikit_image(mosaic: np.ndarray) -> None:
    rng = np.random.default_rng(0)
    target = mosaic[:150, :150]
    raw = cv2.resize(target, (60, 60), interpolation=cv2.INTER_AREA)
    noisy = np.clip(target.astype(int) + rng.integers(-20, 20, target.shape), 0, 255).astype(np.uint8)
    outputs: dict[str, np.ndarray] = {}
    s = score_capture(raw, target, enhance=lambda _x: noisy, warped_input=raw, outputs=outputs)
    y_t, y_o, y_b = _gray(target), _gray(noisy), _gray(outputs["bicubic_A"])
    kw = {"gaussian_weights": True, "sigma": 1.5, "use_sample_covariance": False, "data_range": 255.0}
    assert s.ssim_network == pytest.approx(structural_similarity(y_t, y_o, **kw), abs=1e-9)
    assert s.ssim_bicubic == pytest.approx(structural_similarity(y_t, y_b, **kw), abs=1e-9)
    d = deltaE_ciede94(rgb2lab(target), rgb2lab(noisy))  # reference first, graphic-arts defaults
    assert s.cie94["C"][0] == pytest.approx(float(d.mean()), rel=1e-9)
    assert s.cie94["C"][1] == pytest.approx(float(d.std()), rel=1e-9)
    assert set(s.cie94) == {"A", "B", "C", "D"} and s.cie94["A"] == s.cie94["B"]
    perfect = score_capture(raw, target, enhance=lambda _x: target)
    assert perfect.ssim_network == pytest.approx(1.0) and perfect.cie94["C"][0] < 1e-6
    with pytest.raises(ValueError, match="shape"):
        score_capture(raw, target, enhance=lambda x: x)


def test_cie94_check_value_and_asymmetry() -> None:
    from scopectl.metrics import cie94_lab

    lab1 = np.array([100.0, 21.57210357, 272.22819350])
    lab2 = np.array([100.0, 426.67945353, 72.39590835])
    assert float(cie94_lab(lab1, lab2)) == pytest.approx(83.7792255, abs=1e-6)
    assert float(cie94_lab(lab2, lab1)) == pytest.approx(56.9383947, abs=1e-6)  # the reference comes first


def test_tables_markdown_and_json(tmp_path: Path, mosaic: np.ndarray) -> None:
    target = mosaic[:100, :100]
    raw = cv2.resize(target, (40, 40), interpolation=cv2.INTER_AREA)
    scores = [
        score_capture(raw, target, enhance=lambda _x: target, slide=f"s{k}", capture=k) for k in range(2)
    ]
    t = aggregate(scores, model="lung-v1", sample_type="lung", input_kind="jpeg", skipped=["s9 capture 3: x"])
    assert t.paper_row == "lung (JPEG)" and t.captures == 2 and t.ssim_gain > 0
    assert t.cie94_reduction > 1e5
    md = tables_markdown(t)
    assert "| lung (JPEG) (paper) | | 0.5420 | 0.6830 | +0.1410 |" in md
    assert "(A) raw" in md and "Wang et al. 2004 on BT.601 luminance" in md
    md_path, js_path = write_tables(t, tmp_path / "rep")
    data = json.loads(js_path.read_text())  # strict JSON: NaN (no warp-corrected column) became null
    assert data["cie94"]["B"]["mean"] is None and data["paper"]["ssim_network"] == 0.6830
    assert data["cie94"]["C"]["mean"] < 1e-6 and len(data["per_capture"]) == 2
    assert md_path.read_text() == md


def test_held_out_pair_geometry(mosaic: np.ndarray) -> None:
    phone, h = _phone_view(mosaic, seed=1)
    raw, warped, target, note = pair_from_homography(
        phone, mosaic, h, mosaic_pixel_size_um=MOSAIC_UM, input_pixel_size_um=0.925, ratio=(5, 2)
    )
    assert note == "" and warped is not None
    assert raw.shape[0] % 2 == 0 and target.shape == (raw.shape[0] * 5 // 2, raw.shape[1] * 5 // 2, 3)
    small = cv2.resize(target, (raw.shape[1], raw.shape[0]), interpolation=cv2.INTER_AREA)
    (dc, dr), _ = cv2.phaseCorrelate(_gray(raw), _gray(small))
    assert abs(dr) < 0.25 and abs(dc) < 0.25  # A is area-aligned with the target (input pixels)
    corr = np.corrcoef(_gray(raw).ravel(), _gray(small).ravel())[0, 1]
    assert corr > 0.9


def test_figure_regions_and_png(tmp_path: Path, mosaic: np.ndarray) -> None:
    img = mosaic[:120, :160].copy()
    img[:, :80] = 128  # flat left half: the zoomed regions must come from the textured half
    regions = choose_regions(img, size=30, count=2)
    assert len(regions) == 2 and all(c >= 70 for _r, c in regions)
    path = comparison_figure(img, img, img, tmp_path / "f.png", title="t", pixel_size_um=0.37)
    assert path.read_bytes()[:4] == b"\x89PNG"


def _slide(path: Path, mosaic: np.ndarray, captures: int) -> None:
    with SlideStore.create(path, slide_id=path.stem, rig={"kind": "test"}, simulated=True) as store:
        store.write_mosaic(
            mosaic, pixel_size_um=MOSAIC_UM, origin_x_um=0.0, origin_y_um=0.0, method={"test": 1}
        )
        for k in range(captures):
            phone, h = _phone_view(mosaic, seed=10 + k)
            _ok, jpeg = cv2.imencode(
                ".jpg", cv2.cvtColor(phone, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 80]
            )
            idx = store.add_capture(
                CaptureRecord(
                    rgb=phone,
                    field_index=k,
                    pixel_size_um=0.40,
                    dng=None,
                    jpeg=jpeg.tobytes(),
                    source=None,
                    source_name=f"f{k}.jpg",
                    settings={},
                    led_state={},
                    battery_mv=None,
                    stage_x_um=None,
                    stage_y_um=None,
                    timestamp=0.0,
                    latencies_s={},
                )
            )
            store.write_registration(
                idx,
                RegistrationRecord(
                    ok=k != 1,
                    reason="" if k != 1 else "too few inliers",
                    homography=h,
                    scale=0.40 / MOSAIC_UM,
                    inliers=100,
                    shift_map=None,
                    similarity_maps=[],
                    quality=0.9,
                    pixel_size_um=0.925,
                    residual_px=0.1,
                ),
            )


def test_evaluate_command_on_a_slide_store(
    tmp_path: Path, mosaic: np.ndarray, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SCOPECTL_ROOT", str(tmp_path))
    (tmp_path / "slides").mkdir()
    _slide(tmp_path / "slides" / "held1.h5", mosaic, captures=3)
    pairs = iter_store_pairs(
        tmp_path / "slides" / "held1.h5", input_pixel_size_um=0.925, ratio=(5, 2), source="jpeg"
    )
    assert [p.capture for p in pairs] == [0, 2]
    torch.manual_seed(0)
    card = ModelCard(name="m", input_pixel_size_um=0.925, target_pixel_size_um=0.37, sample_type="pap")
    save_model(tmp_path / "models" / "m", build_network(), card)

    app = typer.Typer()

    @app.callback()
    def _root() -> None:
        """Test root."""

    register(app)
    app(
        args=["evaluate", "--model", "m", "--slides", "held1", "--json", "--device", "cpu"],
        standalone_mode=False,
    )
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert res["captures"] == 2 and res["paper"]["row"] == "pap" and len(res["skipped"]) == 1
    assert "too few inliers" in res["skipped"][0]
    assert 0 < res["ssim_bicubic"] < 1 and res["cie94"]["A"]["mean"] > 0
    assert Path(res["markdown"]).is_file() and all(Path(f).is_file() for f in res["figures"])


def test_evaluate_pairs_with_a_model(tmp_path: Path, mosaic: np.ndarray) -> None:
    phone, h = _phone_view(mosaic, seed=3)
    raw, _warped, target, _ = pair_from_homography(
        phone,
        mosaic,
        h,
        mosaic_pixel_size_um=MOSAIC_UM,
        input_pixel_size_um=0.925,
        ratio=(5, 2),
        elastic=False,
    )
    from scopectl.evaluation.heldout import HeldOutPair

    torch.manual_seed(0)
    net = build_network().eval()
    card = ModelCard(name="m", input_pixel_size_um=0.925, target_pixel_size_um=0.37, sample_type="blood")
    rep = evaluate_pairs(
        [HeldOutPair("s", 0, raw, None, target)], net, card, tmp_path, device=torch.device("cpu"), figures=1
    )
    assert rep.tables.paper_row == "blood" and rep.tables.cie94["B"]["images"] == 0.0
    assert len(rep.figures) == 1 and rep.json.is_file()
