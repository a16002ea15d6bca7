"""Store-facing registration, the CLI commands, training sets and the mean shift map."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
import typer
from numpy.typing import NDArray

from scopectl.cli import cmd_register
from scopectl.cli.common import CliState
from scopectl.cli.main import main
from scopectl.errors import InputFileError, StoreError, StoreExistsError
from scopectl.learn.modelio import read_card
from scopectl.registration.dataset import DatasetParams, build_dataset, patch_positions
from scopectl.registration.distortion import DistortionMap, load_distortion_map, remove_projective_part
from scopectl.registration.fov import project_points
from scopectl.registration.pair import PairGeometry, _phone_map
from scopectl.registration.synthetic import SyntheticCapture, phone_capture, tissue_rgb
from scopectl.registration.workflow import (
    _correction_from_extra,
    accumulate_distortion,
    load_pair,
    register_slide,
)
from scopectl.store import CaptureRecord, SlideStore
from scopectl.store.dataset import open_dataset

BENCH_UM = 0.37
PHONE_UM = 0.4
SHAPE = (448, 448)
CENTRES = [(330.0, 330.0), (330.0, 900.0), (900.0, 330.0), (900.0, 900.0), (620.0, 620.0)]


def _capture(
    rgb: NDArray[np.uint8], *, x_um: float | None = None, y_um: float | None = None
) -> CaptureRecord:
    return CaptureRecord(
        rgb=rgb,
        field_index=0,
        pixel_size_um=PHONE_UM,
        dng=None,
        jpeg=None,
        source=None,
        source_name="synthetic",
        settings={},
        led_state={},
        battery_mv=None,
        stage_x_um=x_um,
        stage_y_um=y_um,
        timestamp=0.0,
        latencies_s={},
    )


def _make_slide(
    root: Path,
    slide_id: str,
    mosaic: NDArray[np.uint8],
    *,
    seed: int,
    garbage: NDArray[np.uint8] | None = None,
) -> list[SyntheticCapture]:
    caps = [
        phone_capture(
            mosaic,
            center_px=c,
            shape=SHAPE,
            scale=PHONE_UM / BENCH_UM,
            rotation_deg=2.0 * (k - 2),
            distortion_px=2.5,
            seed=seed + k,
            distortion_seed=7,  # the same lens distortion for every capture: the rig's stationary part
        )
        for k, c in enumerate(CENTRES)
    ]
    with SlideStore.create(
        root / "slides" / f"{slide_id}.h5", slide_id=slide_id, rig={"kind": "test"}, simulated=True
    ) as s:
        s.write_mosaic(
            mosaic, pixel_size_um=BENCH_UM, origin_x_um=0.0, origin_y_um=0.0, method={"kind": "test"}
        )
        for k, cap in enumerate(caps):
            # the first capture carries its stage position, the others none (as imported files)
            if k == 0:
                s.add_capture(_capture(cap.rgb, x_um=CENTRES[0][1] * BENCH_UM, y_um=CENTRES[0][0] * BENCH_UM))
            else:
                s.add_capture(_capture(cap.rgb))
        if garbage is not None:
            s.add_capture(_capture(garbage))
    return caps


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory, mosaic: NDArray[np.uint8]) -> Path:
    root = tmp_path_factory.mktemp("scopectl")
    other = tissue_rgb(SHAPE, seed=123)
    _make_slide(root, "S1", mosaic, seed=10, garbage=other)
    _make_slide(root, "S2", tissue_rgb((1250, 1250), seed=12), seed=20)
    return root


@pytest.fixture(scope="module")
def truth(mosaic: NDArray[np.uint8]) -> list[SyntheticCapture]:
    return [
        phone_capture(
            mosaic,
            center_px=c,
            shape=SHAPE,
            scale=PHONE_UM / BENCH_UM,
            rotation_deg=2.0 * (k - 2),
            distortion_px=2.5,
            seed=10 + k,
            distortion_seed=7,
        )
        for k, c in enumerate(CENTRES)
    ]


def _cli(root: Path, args: list[str], capsys: pytest.CaptureFixture[str]) -> dict[str, object]:
    app = typer.Typer()

    @app.callback()
    def _root(ctx: typer.Context) -> None:
        ctx.obj = CliState(root=root)

    cmd_register.register(app)
    app(args=[*args, "--json"], prog_name="scopectl", standalone_mode=False)
    captured = capsys.readouterr()
    result = dict(json.loads(captured.out.strip().splitlines()[-1]))
    result["_stderr"] = captured.err
    return result


@pytest.fixture(scope="module")
def registered(root: Path) -> Path:
    for sid in ("S1", "S2"):
        with SlideStore.open(root / "slides" / f"{sid}.h5", mode="a") as store:
            reports = register_slide(store, figures_dir=root / "reports" / sid)
            assert len(reports) == (6 if sid == "S1" else 5)
    return root


def test_register_records_every_capture_and_fails_garbage_with_a_reason(registered: Path) -> None:
    with SlideStore.open(registered / "slides" / "S1.h5") as store:
        recs = [store.registration(i) for i in range(6)]
    assert all(r is not None for r in recs)
    ok = [r for r in recs if r is not None and r.ok]
    assert len(ok) == 5
    bad = recs[5]
    assert bad is not None and not bad.ok
    assert bad.reason
    assert np.isnan(bad.homography).all()
    for r in ok:
        assert r.pixel_size_um == pytest.approx(BENCH_UM * 2.5)
        assert r.shift_map is not None and r.shift_map.shape[0] == 2
        assert r.quality > 0.8
        assert r.residual_px is not None and r.residual_px < 0.5
        assert r.scale == pytest.approx(PHONE_UM / BENCH_UM, rel=0.01)
        assert len(r.similarity_maps) >= 2
    figs = sorted(p.name for p in (registered / "reports" / "S1").glob("*.png"))
    assert "S1-capture-00000-overlay.png" in figs and "S1-capture-00000-field.png" in figs


def test_registered_pairs_match_the_known_mapping(registered: Path, truth: list[SyntheticCapture]) -> None:
    errs = []
    with SlideStore.open(registered / "slides" / "S1.h5") as store:
        for i, cap in enumerate(truth):
            reg = store.registration(i)
            assert reg is not None
            geom = PairGeometry.from_dict(reg.extra["geometry"])
            assert reg.shift_map.shape[1:] == geom.registered_shape
            rows, cols = geom.registered_centres()
            rr, cc = np.meshgrid(rows, cols, indexing="ij")
            d = 2.5 * reg.shift_map
            # phone pixel the registration samples for each registered pixel, mapped back by the truth
            pr, pc = project_points(
                np.linalg.inv(reg.homography),
                rr + d[0] + geom.target_origin_px[0],
                cc + d[1] + geom.target_origin_px[1],
            )
            tr, tc = cap.phone_to_mosaic(pr, pc)
            e = np.hypot(tr - rr - geom.target_origin_px[0], tc - cc - geom.target_origin_px[1])
            inner = e[8:-8, 8:-8]
            errs.append(float(np.sqrt(np.mean(inner**2))))
    assert max(errs) < 0.3, errs


def test_load_pair_rebuilds_a_pair_whose_patches_correspond(registered: Path) -> None:
    with SlideStore.open(registered / "slides" / "S1.h5") as store:
        pair = load_pair(store, 1)
        with pytest.raises(StoreError, match="failed registration"):
            load_pair(store, 5)
    assert pair.target.shape[0] == round(2.5 * pair.registered.shape[0])
    assert pair.target.shape[1] == round(2.5 * pair.registered.shape[1])
    # an input patch at (i, j) and the target patch at (2.5 i, 2.5 j) show the same content
    import cv2

    small = cv2.resize(
        pair.target, (pair.registered.shape[1], pair.registered.shape[0]), interpolation=cv2.INTER_AREA
    )
    a = pair.registered[..., 1].astype(np.float64)
    b = small[..., 1].astype(np.float64)
    r = np.corrcoef(a.ravel(), b.ravel())[0, 1]
    assert r > 0.9


def test_cli_register_prints_a_table_and_json(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    res = _cli(root, ["register", "--slide", "S2", "--captures", "0,1", "--no-figures"], capsys)
    assert res["ok"] == 2 and res["failed"] == 0
    rows = res["captures"]
    assert isinstance(rows, list) and {r["index"] for r in rows} == {0, 1}
    assert all(r["inliers"] > 20 for r in rows)
    human = cmd_register._table(rows)
    assert "matched" in human and "inliers" in human and "residual px" in human


def test_dataset_build_splits_by_capture_and_records_provenance(
    registered: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    res = _cli(
        registered,
        [
            "dataset",
            "build",
            "--slides",
            "S1,S2",
            "--name",
            "ds",
            "--jpeg-quality",
            "70",
            "--split",
            "0.6,0.2,0.2",
            "--seed",
            "3",
        ],
        capsys,
    )
    counts = res["counts"]
    assert isinstance(counts, dict)
    assert all(counts[s] > 0 for s in ("train", "val", "test"))
    assert res["skipped_captures"] and "S1" in json.dumps(res["skipped_captures"])
    with open_dataset(registered / "datasets" / "ds.h5") as ds:
        assert ds.ratio == "5/2"
        assert ds.input_pixel_size_um == pytest.approx(0.925)
        assert ds.target_pixel_size_um == pytest.approx(0.37)
        train = ds.split("train")
        x, y = train[0]
        assert x.shape == (60, 60, 3) and y.shape == (150, 150, 3) and x.dtype == np.uint8
        assert train.inputs.chunks == (1, 60, 60, 3) and train.targets.chunks == (1, 150, 150, 3)
        seen: dict[str, set[tuple[int, int]]] = {}
        for name in ("train", "val", "test"):
            src = np.asarray(ds.split(name).source[()])
            seen[name] = {(int(a), int(b)) for a, b in src[:, :2]}
            # half of the samples are the JPEG copies, with the same targets
            assert int(src[:, 4].sum()) * 2 == src.shape[0]
        assert (
            not (seen["train"] & seen["val"])
            and not (seen["train"] & seen["test"])
            and not (seen["val"] & seen["test"])
        )
        prov = ds.provenance
        assert {s["slide_id"] for s in prov.slides} == {"S1", "S2"}
        assert prov.params["jpeg_quality"] == 70 and prov.params["seed"] == 3
    with pytest.raises(StoreExistsError):
        build_dataset([registered / "slides" / "S1.h5"], registered / "datasets" / "ds.h5")


def test_dataset_split_is_reproducible_and_patches_correspond(registered: Path) -> None:
    params = DatasetParams(split=(0.6, 0.2, 0.2), seed=5)
    a = build_dataset([registered / "slides" / "S1.h5"], registered / "datasets" / "a.h5", params=params)
    b = build_dataset([registered / "slides" / "S1.h5"], registered / "datasets" / "b.h5", params=params)
    assert a.counts == b.counts
    with open_dataset(a.path) as da, open_dataset(b.path) as db:
        for name in ("train", "val", "test"):
            assert np.array_equal(da.split(name).source[()], db.split(name).source[()])
        x, y = da.split("train")[len(da.split("train")) // 2]
    import cv2

    small = cv2.resize(y, (60, 60), interpolation=cv2.INTER_AREA)
    r = np.corrcoef(x[..., 1].ravel().astype(float), small[..., 1].ravel().astype(float))[0, 1]
    assert r > 0.85


def test_patch_positions_respect_overlap_and_ratio() -> None:
    p = DatasetParams()
    assert p.stride_px == 36 and p.target_patch_px == 150
    pos = patch_positions((200, 140), params=p)
    assert pos[0] == (0, 0) and (36, 36) in pos
    assert all(r % 2 == 0 and c % 2 == 0 and r + 60 <= 200 and c + 60 <= 140 for r, c in pos)
    with pytest.raises(ValueError, match="integer"):
        DatasetParams(input_patch_px=61)


def test_dataset_build_reports_bad_input(root: Path, mosaic: NDArray[np.uint8], tmp_path: Path) -> None:
    # a slide without registrations
    with SlideStore.create(tmp_path / "slides" / "U.h5", slide_id="U", rig={}, simulated=True) as s:
        s.write_mosaic(mosaic[:600, :600], pixel_size_um=BENCH_UM, origin_x_um=0, origin_y_um=0, method={})
        s.add_capture(_capture(mosaic[:200, :200]))
    with pytest.raises(StoreError, match="no successfully registered captures"):
        build_dataset([tmp_path / "slides" / "U.h5"], tmp_path / "d.h5")
    # a slide without a mosaic
    with SlideStore.create(tmp_path / "slides" / "M.h5", slide_id="M", rig={}, simulated=True) as s:
        s.add_capture(_capture(mosaic[:200, :200]))
        with pytest.raises(StoreError, match="no benchtop mosaic"):
            register_slide(s)
    with pytest.raises(StoreError, match="no benchtop mosaic"):
        build_dataset([tmp_path / "slides" / "M.h5"], tmp_path / "d.h5")
    # a missing slide
    with pytest.raises(StoreError, match="no such slide"):
        build_dataset([tmp_path / "slides" / "nope.h5"], tmp_path / "d.h5")


def test_dataset_build_refuses_mismatched_pixel_sizes(
    registered: Path, mosaic: NDArray[np.uint8], tmp_path: Path
) -> None:
    with SlideStore.create(tmp_path / "X.h5", slide_id="X", rig={}, simulated=True) as s:
        s.write_mosaic(mosaic[:800, :800], pixel_size_um=0.5, origin_x_um=0, origin_y_um=0, method={})
    with pytest.raises(InputFileError, match="differs"):
        build_dataset([registered / "slides" / "S1.h5", tmp_path / "X.h5"], tmp_path / "d.h5")


def test_dataset_build_output_trains_through_the_cli(
    registered: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`scopectl dataset build` writes a file that `scopectl train` reads, with its provenance, unchanged."""
    root = str(registered)
    assert (
        main(["--root", root, "dataset", "build", "--slides", "S1,S2", "--name", "roundtrip", "--json"]) == 0
    )
    built = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    train_args = ["--epochs", "1", "--batch-size", "4", "--max-train-patches", "8", "--max-val-patches", "4"]
    train_args += ["--device", "cpu", "--threads", "1", "--json"]
    assert main(["--root", root, "train", "--dataset", "roundtrip", "--model", "roundtrip", *train_args]) == 0
    trained = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert trained["stopped"] == "epochs" and trained["steps"] == 2
    card = read_card(Path(trained["model_dir"]))
    assert card.training.dataset == built["path"]
    assert card.training.train_patches == 8 and card.training.val_patches == 4
    assert card.ratio == "5/2" and card.input_pixel_size_um == pytest.approx(0.925)
    prov = card.training.dataset_provenance
    assert {s["slide_id"] for s in prov["slides"]} == {"S1", "S2"}
    with open_dataset(built["path"]) as ds:  # the card carries the dataset's provenance unchanged
        assert prov == ds.provenance.to_dict()
        assert (card.sample_type, card.input_kind) == (ds.provenance.sample_type, ds.provenance.input_kind)
    # a newer schema is refused by train with one line naming the file (exit code 3: a store error)
    with h5py.File(built["path"], "a") as f:
        f.attrs["schema_version"] = 2
    assert main(["--root", root, "train", "--dataset", "roundtrip", "--model", "other", *train_args]) == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{built['path']}: dataset schema_version 2 is newer" in err[0]


def test_mean_shift_map_recovers_the_stationary_distortion(
    registered: Path, truth: list[SyntheticCapture]
) -> None:
    with SlideStore.open(registered / "slides" / "S1.h5") as s1:
        dmap = accumulate_distortion([s1], spacing_px=16)
    assert len(dmap.provenance["captures"]) == 5
    # the truth: the rig's distortion without the part a homography absorbs (which each capture's
    # homography takes a different share of); the map is compared up to such a part, over the
    # sensor area every capture saw
    nr, nc = dmap.values.shape[1:]
    pr, pc = np.meshgrid(16.0 * np.arange(nr), 16.0 * np.arange(nc), indexing="ij")
    true = np.stack(truth[0].distortion(pr, pc))
    seen = dmap.count == len(truth)
    assert seen.mean() > 0.5
    true_np = remove_projective_part(true, pr, pc, seen)
    assert float(np.abs(true_np[:, seen]).max()) > 0.5  # a distortion worth measuring
    resid = remove_projective_part(dmap.values - true, pr, pc, seen)
    err = np.hypot(resid[0][seen], resid[1][seen])
    assert float(np.sqrt(np.mean(err**2))) < 0.15
    path = dmap.save(registered / "rig.h5")
    back = load_distortion_map(path)
    assert np.array_equal(back.values, dmap.values)
    corrected = back.apply(truth[0].rgb)
    assert corrected.shape == truth[0].rgb.shape


def test_distortion_map_files_are_opened_safely(tmp_path: Path) -> None:
    dmap = DistortionMap(
        np.zeros((2, 3, 4), np.float32), np.ones((3, 4), np.int32), 16, (40, 60), {"captures": []}
    )
    path = dmap.save(tmp_path / "map.h5")
    with pytest.raises(InputFileError, match="map.h5: already exists"):
        dmap.save(path)
    assert load_distortion_map(dmap.save(path, force=True)).phone_shape == (40, 60)
    with pytest.raises(InputFileError, match="none.h5: no such distortion map"):
        load_distortion_map(tmp_path / "none.h5")
    with h5py.File(path, "a") as h5:
        h5.attrs["schema_version"] = 2
    with pytest.raises(InputFileError, match="schema_version 2 is newer"):
        load_distortion_map(path)
    with h5py.File(path, "a") as h5:
        h5.attrs["schema_version"] = 1
        h5["link"] = h5py.ExternalLink("/etc/passwd", "/")
    with pytest.raises(InputFileError, match="map.h5: refused: /link: an external link"):
        load_distortion_map(path)


def test_cli_mean_map_then_fixed_correction(registered: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = registered / "rig-map.h5"
    res = _cli(
        registered,
        ["register", "--slide", "S1", "--captures", "0", "--no-figures", "--mean-map", str(out)],
        capsys,
    )
    mm = res["mean_map"]
    assert isinstance(mm, dict) and mm["captures"] == 5 and Path(str(mm["figure"])).exists()
    # a new capture of the rig (slide S2, same lens distortion), registered by homography alone,
    # without and then with the fixed correction: the correction brings it closer to the truth
    caps = [
        phone_capture(
            tissue_rgb((1250, 1250), seed=12),
            center_px=c,
            shape=SHAPE,
            scale=PHONE_UM / BENCH_UM,
            rotation_deg=2.0 * (k - 2),
            distortion_px=2.5,
            seed=20 + k,
            distortion_seed=7,
        )
        for k, c in enumerate(CENTRES)
    ]
    errors = []
    for extra in ([], ["--correction", str(out)]):
        res2 = _cli(
            registered,
            ["register", "--slide", "S2", "--captures", "2", "--no-figures", "--no-elastic", *extra],
            capsys,
        )
        rows = res2["captures"]
        assert isinstance(rows, list) and rows[0]["ok"]
        with SlideStore.open(registered / "slides" / "S2.h5") as s2:
            reg = s2.registration(2)
            assert reg is not None and reg.shift_map is None
            assert (reg.extra["correction"] is not None) == bool(extra)
            pair = load_pair(s2, 2)
        assert pair.registered.shape[0] * 2.5 == pair.target.shape[0]
        geom = pair.geometry
        rows_c, cols_c = geom.registered_centres()
        rr, cc = np.meshgrid(rows_c, cols_c, indexing="ij")
        corr = _correction_from_extra(reg.extra)
        zero = np.zeros(rr.shape)
        pr, pc = _phone_map(np.asarray(reg.homography), geom, rr, cc, zero, zero, corr)
        tr, tc = caps[2].phone_to_mosaic(pr.astype(np.float64), pc.astype(np.float64))
        e = np.hypot(tr - rr - geom.target_origin_px[0], tc - cc - geom.target_origin_px[1])
        errors.append(float(np.sqrt(np.mean(e[8:-8, 8:-8] ** 2))))
    assert errors[1] < 0.6 * errors[0], errors


def test_dataset_build_by_default_trains_and_validates_on_every_capture_and_warns(
    registered: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Test slides are kept apart, so the default split has no test part; little data is announced."""
    res = _cli(registered, ["dataset", "build", "--slides", "S2", "--name", "default-split"], capsys)
    counts, caps = res["counts"], res["captures"]
    assert isinstance(counts, dict) and isinstance(caps, dict)
    assert caps == {"train": 4, "val": 1, "test": 0} and counts["test"] == 0 and counts["train"] > 0
    warnings = res["warnings"]
    assert isinstance(warnings, list) and len(warnings) == 1 and "500+ patches" in warnings[0]
    assert "WARNING: training gets only" in str(res["_stderr"])


def test_flagged_captures_are_listed_and_admitted_when_the_limit_is_loosened(
    root: Path, mosaic: NDArray[np.uint8], capsys: pytest.CaptureFixture[str]
) -> None:
    _make_slide(root, "S3", mosaic, seed=40)
    reg = _cli(root, ["register", "--slide", "S3", "--no-figures", "--max-residual-px", "0.001"], capsys)
    assert reg["ok"] == 0 and reg["failed"] == 5
    rows = reg["captures"]
    assert isinstance(rows, list) and all(r["flags"][0]["option"] == "--max-residual-px" for r in rows)
    with pytest.raises(StoreError, match=r"admit with --max-residual-px \d"):
        _cli(root, ["dataset", "build", "--slides", "S3", "--name", "strict"], capsys)
    # the largest suggested value admits every capture
    worst = max(float(r["residual_px"]) for r in rows)
    loose = f"{worst + 0.01:.2f}"
    res = _cli(
        root, ["dataset", "build", "--slides", "S3", "--name", "loose", "--max-residual-px", loose], capsys
    )
    admitted = res["admitted_flagged"]
    assert isinstance(admitted, list) and len(admitted) == 5 and not res["skipped_captures"]
    # a limit between the captures' residuals admits some and lists the others with their option
    mid = sorted(float(r["residual_px"]) for r in rows)[2]
    res = _cli(
        root,
        ["dataset", "build", "--slides", "S3", "--name", "mid", "--max-residual-px", f"{mid + 1e-4:.4f}"],
        capsys,
    )
    skipped = res["skipped_captures"]
    assert isinstance(skipped, list) and len(skipped) == 2
    assert all(s["admit_with"].startswith("--max-residual-px ") for s in skipped)
    assert "skipped S3 capture" in str(res["_stderr"]) and "admit it with --max-residual-px" in str(
        res["_stderr"]
    )
