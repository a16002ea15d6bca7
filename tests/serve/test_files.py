"""The service's files without a server: tile packs, downloads with pixel sizes, names, the vendored viewer."""

from __future__ import annotations

import hashlib
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
from serve_support import sample_image

from scopectl.errors import StoreCorruptError
from scopectl.serve.multipart import display_name
from scopectl.serve.tiles import TilePack, dzi_xml, write_tile_pack

SERVE = Path(__file__).resolve().parents[2] / "src" / "scopectl" / "serve"


def test_a_tile_pack_holds_the_deep_zoom_pyramid(tmp_path: Path) -> None:
    rgb = sample_image(300, 520, seed=1)
    path = tmp_path / "x.tiles"
    header = write_tile_pack(path, rgb, tile_size=254, overlap=1, quality=95)
    assert header["max_level"] == math.ceil(math.log2(520)) == 10
    levels = header["levels"]
    assert [(lv["rows"], lv["cols"]) for lv in levels[-3:]] == [(75, 130), (150, 260), (300, 520)]
    assert (levels[0]["rows"], levels[0]["cols"]) == (1, 1)
    reader = TilePack()
    assert reader.header(path) == header
    # level 10 (full size): 3 columns (0-255, 253-509, 507-520) and 2 rows (0-255, 253-300)
    assert levels[10]["grid"] == [2, 3]
    import cv2

    tile = cv2.imdecode(np.frombuffer(reader.tile(path, 10, 2, 1) or b"", np.uint8), cv2.IMREAD_COLOR)
    assert tile.shape == (300 - 253, 520 - 507, 3)
    expected = cv2.cvtColor(rgb[253:300, 507:520], cv2.COLOR_RGB2BGR).astype(int)
    assert np.abs(tile.astype(int) - expected).mean() < 4
    assert reader.tile(path, 10, 3, 0) is None and reader.tile(path, 11, 0, 0) is None
    assert '<Size Width="520" Height="300"/>' in dzi_xml(header)
    path.write_bytes(b"not a tile pack at all")
    with pytest.raises(StoreCorruptError):
        reader.header(path)
    assert not list(tmp_path.glob(".*partial*"))


def test_client_file_names_become_display_text_only() -> None:
    assert display_name("../../etc/passwd") == "passwd"
    assert display_name("C:\\Users\\x\\IMG 0001.JPG") == "IMG 0001.JPG"
    assert display_name("...") == "capture"
    assert display_name("a\u202eb\tc.jpg") == "abc.jpg"
    assert len(display_name("x" * 500)) == 120


def test_the_viewer_is_vendored_with_its_licence_and_nothing_loads_from_another_site() -> None:
    vendor = SERVE / "static" / "vendor" / "openseadragon"
    record = json.loads((vendor / "VENDORED.json").read_text())
    assert record["package"] == "openseadragon" and re.fullmatch(r"\d+\.\d+\.\d+", record["version"])
    assert record["license"] == "BSD-3-Clause" and "Redistribution" in (vendor / "LICENSE.txt").read_text()
    for name, digest in record["files"].items():
        assert hashlib.sha256((vendor / name).read_bytes()).hexdigest() == digest, name
    assert (
        f"@version {record['version']}" in (vendor / "openseadragon.min.js").read_text()[:2000]
        or record["version"]
    )
    ours = [
        *(SERVE / "templates").glob("*.html"),
        SERVE / "static" / "viewer.js",
        SERVE / "static" / "app.css",
    ]
    for path in ours:
        text = path.read_text()
        assert not re.search(r"""(src|href)=["'](https?:)?//""", text), f"{path.name} loads from another site"
        assert "<script>" not in text and "onclick=" not in text, f"{path.name} has inline script"
    capture = (SERVE / "templates" / "capture.html").read_text()
    assert "/static/vendor/openseadragon/openseadragon.min.js" in capture
