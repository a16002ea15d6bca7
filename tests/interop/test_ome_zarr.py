"""OME-Zarr export: validated with ome-zarr-models and yaozarrs, read back with ome-zarr, lossless, and .ozx."""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest

from interop_support import CAPTURE_PX_UM, MOSAIC_PX_UM, cli, homography
from scopectl.errors import OutputError, StoreError
from scopectl.interop.ome_zarr import capture_affine_um, export_slide
from scopectl.store import SlideStore

zarr = pytest.importorskip("zarr")
v05 = pytest.importorskip("ome_zarr_models.v05")


def test_export_validates_reads_back_losslessly_and_zips(
    slide_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Reader
    from ome_zarr_models.v05.bioformats2raw import BioFormats2Raw
    from ome_zarr_models.v05.image import Image
    from yaozarrs import validate_zarr_store

    out = tmp_path / "export"
    code, data = cli(
        [
            "--root",
            str(slide_root),
            "export",
            "ome-zarr",
            "--slide",
            "s1",
            "--out",
            str(out),
            "--ozx",
            "--json",
        ],
        capsys,
    )
    assert code == 0
    assert data["images"] == ["mosaic", "capture-00000", "capture-00001", "capture-00002"]
    c = data["completeness"]
    assert (c["complete"], c["planned_fields"], c["acquired_fields"], c["flagged_fields"]) == (False, 4, 3, 1)
    path = out / "s1.ome.zarr"

    # the maintained validators: the whole bioformats2raw hierarchy and every image
    root = zarr.open_group(path, mode="r")
    model = BioFormats2Raw.from_zarr(root)
    assert model.image_paths == ["0", "1", "2", "3"]
    for p in model.image_paths:
        Image.from_zarr(root[p])
    validate_zarr_store(str(path))

    # read back with ome-zarr: axes, units, scales, channel metadata, and the store's pixels exactly
    with SlideStore.open(slide_root / "slides" / "s1.h5") as store:
        mosaic = np.asarray(store.mosaic()[()])
        captures = [store.read_capture(i)[0] for i in range(3)]
    (node, *_) = list(Reader(parse_url(str(path / "0")))())
    ms = node.metadata
    assert [a["name"] for a in ms["axes"]] == ["c", "y", "x"] and ms["axes"][1]["unit"] == "micrometer"
    assert ms["channel_names"] == ["R", "G", "B"] and ms["name"] == "mosaic"
    level0 = np.asarray(node.data[0])
    np.testing.assert_array_equal(np.moveaxis(level0, 0, -1), mosaic)
    assert [tuple(d.shape) for d in node.data] == [(3, 700, 900), (3, 350, 450), (3, 175, 225)]
    scale0, translate0 = ms["coordinateTransformations"][0]
    assert scale0["scale"] == [1.0, MOSAIC_PX_UM, MOSAIC_PX_UM] and translate0["translation"] == [
        0.0,
        50.0,
        100.0,
    ]
    assert ms["coordinateTransformations"][1][0]["scale"][1] == pytest.approx(2 * MOSAIC_PX_UM)
    for k in range(3):
        (cap,) = list(Reader(parse_url(str(path / str(k + 1))))())
        np.testing.assert_array_equal(np.moveaxis(np.asarray(cap.data[0]), 0, -1), captures[k])
        assert cap.metadata["coordinateTransformations"][0][0]["scale"][1] == pytest.approx(CAPTURE_PX_UM)

    # registrations, provenance and the completeness flag as attributes
    attrs = root.attrs.asdict()
    assert attrs["scopectl"]["completeness"]["complete"] is False
    assert any(e["event"] == "created" for e in attrs["scopectl"]["provenance"])
    reg0 = root["1"].attrs["scopectl"]["registration"]
    assert (
        reg0["ok"]
        and reg0["homography"] == homography(0).tolist()
        and reg0["shift_map"] == "registration_shift_map"
    )
    assert root["1"]["registration_shift_map"].shape == (2, 24, 32)
    assert (
        root["3"].attrs["scopectl"]["registration"]["ok"] is False
        and "affine_um" not in root["3"].attrs["scopectl"]["registration"]
    )
    affine = np.asarray(reg0["affine_um"])
    corner = affine @ np.array([10.0, 20.0, 1.0])  # capture (row 10, col 20) → mosaic (30 + 25, 100 + 50) px
    np.testing.assert_allclose(corner[:2], [50.0 + 55 * MOSAIC_PX_UM, 100.0 + 150 * MOSAIC_PX_UM])
    import ome_types

    xml = (path / "OME" / "METADATA.ome.xml").read_text(encoding="utf-8")
    assert [im.name for im in ome_types.from_xml(xml, validate=True).images] == data["images"]

    # the .ozx: RFC-9 recommended variant, validated and identical pixels
    ozx = out / "s1.ozx"
    with zipfile.ZipFile(ozx) as zf:
        infos = zf.infolist()
        assert zf.comment.rstrip(b"\x00") and json.loads(zf.comment.rstrip(b"\x00")) == {
            "ome": {"version": "0.5"}
        }
    names = [i.filename for i in infos]
    assert names[0] == "zarr.json" and all(i.compress_type == zipfile.ZIP_STORED for i in infos)
    n_json = sum(n.endswith("zarr.json") for n in names)
    assert all(n.endswith("zarr.json") for n in names[:n_json])  # metadata first, breadth-first
    assert [n.count("/") for n in names[:n_json]] == sorted(n.count("/") for n in names[:n_json])
    zroot = zarr.open_group(zarr.storage.ZipStore(ozx, mode="r"), mode="r")
    assert BioFormats2Raw.from_zarr(zroot).image_paths == ["0", "1", "2", "3"]
    np.testing.assert_array_equal(np.moveaxis(zroot["0"]["0"][...], 0, -1), mosaic)


def test_the_validator_catches_a_broken_export(slide_root: Path, tmp_path: Path) -> None:
    from ome_zarr_models.v05.image import Image

    export_slide(slide_root / "slides" / "s1.h5", tmp_path / "e")
    broken = tmp_path / "broken"
    shutil.copytree(tmp_path / "e" / "s1.ome.zarr" / "0", broken)
    meta = json.loads((broken / "zarr.json").read_text())
    meta["attributes"]["ome"]["multiscales"][0]["axes"].pop()  # 2 axes for 3-D arrays
    (broken / "zarr.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="(?i)dimension|axes|length"):
        Image.from_zarr(zarr.open_group(broken, mode="r"))


def test_refusals_leave_nothing_behind(slide_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "e"
    export_slide(slide_root / "slides" / "s1.h5", out)
    with pytest.raises(OutputError, match="exists"):
        export_slide(slide_root / "slides" / "s1.h5", out)
    with SlideStore.create(tmp_path / "empty.h5", slide_id="empty", rig={}, simulated=True):
        pass
    with pytest.raises(StoreError, match="no complete benchtop mosaic"):
        export_slide(tmp_path / "empty.h5", out)
    assert sorted(p.name for p in out.iterdir()) == ["s1.ome.zarr"]


def test_capture_affine_drops_only_the_projective_part() -> None:
    h = homography(1) * 2.0  # a scaled homography is the same mapping
    a = capture_affine_um(h, mosaic_pixel_size_um=0.5, origin_yx_um=(1.0, 2.0))
    np.testing.assert_allclose(a @ [0.0, 0.0, 1.0], [1.0 + 30 * 0.5, 2.0 + 150 * 0.5, 1.0])
    with pytest.raises(StoreError):
        capture_affine_um(np.full((3, 3), np.nan), mosaic_pixel_size_um=0.5, origin_yx_um=(0, 0))
