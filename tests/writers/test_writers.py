"""The image writer: pyramidal OME-TIFF, OpenSlide-style TIFF and PNG, each written atomically.

Checked with tifffile (levels, tiles, resolution tags, OME-XML), the OME schema (ome-types validates the
OME-XML against the 2016-06 XSD) and scopectl's own reader; a write cut short by a file-size limit in a
child process leaves nothing behind.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import tifffile

from scopectl.errors import ConfigError, OutputError
from scopectl.imageio import read_image
from scopectl.writers import pyramid_levels, write_image

ANNOTATIONS = {"model": "lung-v1", "source": "lung01.h5 capture 3", "note": 'µm & <xml> "quotes"'}


def _tissue(rows: int, cols: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (rows // 8 + 1, cols // 8 + 1, 3), dtype=np.uint8)
    img = np.kron(base, np.ones((8, 8, 1), np.uint8))[:rows, :cols]
    return np.ascontiguousarray(img ^ rng.integers(0, 8, img.shape, dtype=np.uint8))


def test_pyramid_levels_halve_down_to_the_minimum_and_average_blocks() -> None:
    img = _tissue(1100, 600)
    levels = pyramid_levels(img, min_size=256)
    assert [lv.shape[:2] for lv in levels] == [(1100, 600), (550, 300), (275, 150), (138, 75)]
    block = img[:2, :2].astype(float).mean(axis=(0, 1))
    np.testing.assert_allclose(levels[1][0, 0], block, atol=0.51)


def test_ome_tiff_is_tiled_pyramidal_with_physical_size_channels_and_annotations(tmp_path: Path) -> None:
    ome_types = pytest.importorskip("ome_types")
    img = _tissue(1300, 700)
    path = write_image(
        tmp_path / "out.ome.tif", img, fmt="ome-tiff", pixel_size_um=0.37, annotations=ANNOTATIONS
    )
    with tifffile.TiffFile(path) as tif:
        assert tif.is_ome and len(tif.pages) == 1  # sub-resolutions are SubIFDs of the only top-level page
        series = tif.series[0]
        assert [lv.shape for lv in series.levels] == [
            (1300, 700, 3),
            (650, 350, 3),
            (325, 175, 3),
            (163, 88, 3),
        ]
        for lv in series.levels:
            page = lv.keyframe
            assert page.is_tiled and (page.tilelength, page.tilewidth) == (256, 256)
            assert page.compression == tifffile.COMPRESSION.ADOBE_DEFLATE
        np.testing.assert_array_equal(series.levels[0].asarray(), img)
        np.testing.assert_array_equal(series.levels[1].asarray(), pyramid_levels(img)[1])
        xml = tif.ome_metadata
    assert xml is not None
    ome = ome_types.from_xml(xml, validate=True)  # the OME 2016-06 schema
    (image,) = ome.images
    px = image.pixels
    assert (px.size_x, px.size_y, px.size_c, px.type.value) == (700, 1300, 3, "uint8")
    assert px.physical_size_x == pytest.approx(0.37) and px.physical_size_y == pytest.approx(0.37)
    assert px.physical_size_x_unit.value == "µm"
    assert px.channels[0].samples_per_pixel == 3 and px.channels[0].name == "R/G/B"
    (ann,) = ome.structured_annotations.map_annotations
    assert {m.k: m.value for m in ann.value.ms} == ANNOTATIONS
    assert [ref.id for ref in image.annotation_refs] == [ann.id]
    back = read_image(path)
    assert back.pixel_size_um == pytest.approx(0.37) and np.array_equal(back.rgb, img)


def test_plain_tiff_has_one_page_per_level_and_centimetre_resolution(tmp_path: Path) -> None:
    img = _tissue(600, 900)
    path = write_image(tmp_path / "out.tif", img, fmt="tiff", pixel_size_um=0.5, annotations=ANNOTATIONS)
    with tifffile.TiffFile(path) as tif:
        assert not tif.is_ome and not tif.pages.first.subifds
        assert [p.shape for p in tif.pages] == [
            (600, 900, 3),
            (300, 450, 3),
            (150, 225, 3),
        ]  # OpenSlide's generic TIFF
        for k, page in enumerate(tif.pages):
            assert page.is_tiled and page.tags["ResolutionUnit"].value == tifffile.RESUNIT.CENTIMETER
            num, den = page.tags["XResolution"].value
            assert 1e4 * den / num == pytest.approx(0.5 * 2**k, rel=1e-6)  # µm per pixel
        assert tif.pages[1].tags["NewSubfileType"].value == 1
        import json

        meta = json.loads(tif.pages.first.description)
        assert meta["format"] == "scopectl-image" and meta["annotations"] == ANNOTATIONS
        np.testing.assert_array_equal(tif.pages.first.asarray(), img)
    assert read_image(path).pixel_size_um == pytest.approx(0.5)


def test_png_carries_pixel_size_and_text(tmp_path: Path) -> None:
    from PIL import Image

    img = _tissue(50, 70)
    path = write_image(tmp_path / "out.png", img, fmt="png", pixel_size_um=0.37, annotations=ANNOTATIONS)
    with Image.open(path) as im:
        assert im.text["model"] == "lung-v1" and im.text["note"] == ANNOTATIONS["note"]
    back = read_image(path)
    assert np.array_equal(back.rgb, img) and back.pixel_size_um == pytest.approx(0.37, rel=1e-6)
    no_size = write_image(tmp_path / "n.png", img, fmt="png", pixel_size_um=None)
    assert read_image(no_size).pixel_size_um is None


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"fmt": "jpeg"}, "unknown image format"),
        ({"rgb": np.zeros((4, 4), np.uint8)}, "RGB uint8"),
        ({"rgb": np.zeros((4, 4, 3), np.uint16)}, "RGB uint8"),
        ({"pixel_size_um": -1.0}, "positive"),
        ({"pixel_size_um": float("nan")}, "positive"),
        ({"channel_names": ("R", "G")}, "three"),
        ({"annotations": {"a": "b\x00"}}, "control characters"),
    ],
)
def test_bad_arguments_are_refused_before_anything_is_written(
    tmp_path: Path, kwargs: dict[str, object], match: str
) -> None:
    args: dict[str, object] = {"rgb": _tissue(8, 8), "fmt": "ome-tiff", "pixel_size_um": 1.0} | kwargs
    with pytest.raises(ConfigError, match=match):
        write_image(tmp_path / "x.ome.tif", **args)  # type: ignore[arg-type]
    assert list(tmp_path.iterdir()) == []


def test_missing_folder_and_refused_overwrite(tmp_path: Path) -> None:
    with pytest.raises(OutputError, match="does not exist"):
        write_image(tmp_path / "no" / "x.png", _tissue(8, 8), fmt="png", pixel_size_um=None)
    write_image(tmp_path / "x.png", _tissue(8, 8), fmt="png", pixel_size_um=None)
    with pytest.raises(OutputError, match="exists"):
        write_image(tmp_path / "x.png", _tissue(8, 8), fmt="png", pixel_size_um=None, overwrite=False)


@pytest.mark.parametrize("fmt", ["ome-tiff", "tiff", "png"])
def test_a_write_cut_short_leaves_the_old_file_and_no_partial(tmp_path: Path, fmt: str) -> None:
    dest = tmp_path / "out.img"
    dest.write_bytes(b"previous result")
    # a child process whose files may not exceed 200 kB: the write of a 1.5 MB image fails part way
    script = textwrap.dedent(
        f"""
        import resource, signal, sys
        import numpy as np
        from pathlib import Path
        from scopectl.errors import OutputError
        from scopectl.writers import write_image
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        rng = np.random.default_rng(1)
        img = rng.integers(0, 256, (800, 640, 3), dtype=np.uint8)
        resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, resource.RLIM_INFINITY))
        try:
            write_image(Path({str(dest)!r}), img, fmt={fmt!r}, pixel_size_um=0.37)
        except OutputError as exc:
            print("OutputError:", exc)
            sys.exit(7)
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 7, proc.stdout + proc.stderr
    assert "cannot write the image" in proc.stdout and str(dest) in proc.stdout
    assert dest.read_bytes() == b"previous result"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.img"]
