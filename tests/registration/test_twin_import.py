"""End to end on the digital twin: files written by the twin, imported, registered, cut into a dataset.

The twin's ground truth maps every phone pixel to slide µm, so the registration is checked against
the truth, not against itself.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from scopectl.registration.dataset import DatasetParams, build_dataset
from scopectl.registration.fov import project_points
from scopectl.registration.pair import PairGeometry
from scopectl.registration.workflow import register_slide
from scopectl.store import SlideStore
from scopectl.store.dataset import open_dataset
from scopectl.store.importer import import_slide
from scopectl.twin import PhoneGroundTruth, PhoneModel, make_slide
from scopectl.twin.pairs import render_pair, write_pair


@pytest.fixture(scope="module")
def imported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict[str, object]]]:
    tmp = tmp_path_factory.mktemp("twin")
    slide = make_slide("lung", seed=3, width_um=1200.0, height_um=1200.0)
    phone_files, truths = [], []
    for k, (x, y) in enumerate([(420.0, 430.0), (760.0, 700.0)]):
        pair = render_pair(slide, center_x_um=x, center_y_um=y, seed=k, phone_shape=(512, 512), margin=1.5)
        write_pair(pair, tmp / f"pair-{k}")
        phone_files.append(tmp / f"pair-{k}" / "phone.jpg")
        truths.append(json.loads((tmp / f"pair-{k}" / "truth.json").read_text()))
    # one benchtop frame per pair: import the first pair's frame as the slide's mosaic, and only
    # the capture it contains; the second pair is imported as its own slide
    paths = []
    for k in range(2):
        path = tmp / "slides" / f"T{k}.h5"
        import_slide(
            path,
            slide_id=f"T{k}",
            phone_files=[phone_files[k]],
            benchtop_files=[tmp / f"pair-{k}" / "benchtop.tif"],
            phone_um_per_px=PhoneModel().pixel_size_um,
        )
        paths.append(path)
    return tmp, truths


def test_imported_twin_captures_register_within_a_third_of_a_pixel(
    imported: tuple[Path, list[dict[str, object]]],
) -> None:
    tmp, truths = imported
    for k, truth_d in enumerate(truths):
        with SlideStore.open(tmp / "slides" / f"T{k}.h5", mode="a") as store:
            reports = register_slide(store)
            assert [r.ok for r in reports] == [True], reports
            reg = store.registration(0)
            info = store.mosaic_info()
        assert reg is not None and info is not None
        truth = PhoneGroundTruth.from_dict(truth_d["phone"])  # type: ignore[arg-type]
        bench = truth_d["benchtop"]
        assert isinstance(bench, dict)
        geom = PairGeometry.from_dict(reg.extra["geometry"])
        kept = np.asarray(reg.extra["elastic"]["check_kept"], bool)
        rows_c, cols_c = (np.asarray(v) for v in reg.extra["elastic"]["check_centres_px"])
        rr, cc = np.meshgrid(rows_c, cols_c, indexing="ij")
        # displacement at the block centres, from the stored shift map (registered-phone pixels)
        sm = reg.shift_map
        i = np.clip(np.round((rr - 0.75) / 2.5).astype(int), 0, sm.shape[1] - 1)
        j = np.clip(np.round((cc - 0.75) / 2.5).astype(int), 0, sm.shape[2] - 1)
        dr, dc = 2.5 * sm[0][i, j], 2.5 * sm[1][i, j]
        pr, pc = project_points(
            np.linalg.inv(reg.homography),
            rr + dr + geom.target_origin_px[0],
            cc + dc + geom.target_origin_px[1],
        )
        x, y = truth.to_slide_um(pr, pc)
        p = info.pixel_size_um
        er = (y - float(bench["origin_y_um"])) / p - (rr + geom.target_origin_px[0])
        ec = (x - float(bench["origin_x_um"])) / p - (cc + geom.target_origin_px[1])
        err = np.hypot(er, ec)[kept]
        assert kept.mean() > 0.5
        assert float(np.sqrt(np.mean(err**2))) < 0.3


def test_dataset_from_imported_slides(imported: tuple[Path, list[dict[str, object]]]) -> None:
    tmp, _ = imported
    summary = build_dataset(
        [tmp / "slides" / "T0.h5", tmp / "slides" / "T1.h5"],
        tmp / "datasets" / "twin.h5",
        params=DatasetParams(split=(0.5, 0.5, 0.0), seed=1),
    )
    assert summary.captures == {"train": 1, "val": 1, "test": 0}
    with open_dataset(summary.path) as ds:
        assert len(ds.split("train")) > 0 and len(ds.split("val")) > 0 and len(ds.split("test")) == 0
        assert ds.split("train").inputs.shape[1:] == (60, 60, 3)
        assert ds.split("train").targets.shape[1:] == (150, 150, 3)
