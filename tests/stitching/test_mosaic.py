"""Mosaic assembly and the whole stitcher on synthetic ground truth (tiles cut from a known image)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest

from scopectl.errors import InputFileError
from scopectl.stitching import (
    StitchSettings,
    assemble_mosaic,
    feather_weights,
    mosaic_geometry,
    nominal_positions_from_stage,
    stitch_tiles,
)


def test_feather_weights_fall_to_the_edges() -> None:
    w = feather_weights((5, 7))
    assert w.shape == (5, 7)
    assert w[0, 0] == 1.0
    assert w[2, 3] == 3.0 * 4.0
    np.testing.assert_array_equal(w, w[::-1, ::-1])


def test_assembly_of_exact_tiles_reproduces_the_image(synth: Any) -> None:
    img = synth.textured_image((300, 420), seed=7)
    corners = np.array([[0, 0], [0, 160], [0, 260], [140, 0], [140, 160], [140, 260]])
    tiles = [img[r : r + 160, c : c + 160].copy() for r, c in corners]
    mosaic, origin = assemble_mosaic(tiles, positions_px=corners + 0.2, block_px=64)
    assert origin == (0, 0)
    assert isinstance(mosaic, np.ndarray)
    np.testing.assert_array_equal(mosaic, img)


def test_blockwise_write_into_hdf5_equals_in_memory(synth: Any, tmp_path: Path) -> None:
    img = synth.textured_image((260, 300), seed=8)
    pos = np.array([[10.0, 5.0], [12.0, 150.0], [120.0, 8.0], [118.0, 149.0]])
    tiles = [synth.cut_tile(img, tuple(p), (128, 150)) for p in pos]
    ref, origin = assemble_mosaic(tiles, positions_px=pos)
    _, _, origin2 = mosaic_geometry(pos, (128, 150))
    assert origin == origin2 == (10, 5)
    with h5py.File(tmp_path / "m.h5", "w") as f:

        def factory(shape: tuple[int, int], origin: tuple[int, int]) -> Any:
            return f.create_dataset("mosaic", shape=(*shape, 3), dtype=np.uint8, chunks=(32, 32, 3))

        ds, _ = assemble_mosaic(tiles, positions_px=pos, out=factory, block_px=48)
        np.testing.assert_array_equal(ds[()], ref)


def test_stitch_tiles_recovers_true_positions(synth: Any) -> None:
    tile = 192
    true, nominal = synth.grid_truth(3, 3, tile=tile, step=165, error_px=4.0, seed=11)
    img = synth.textured_image((700, 700), seed=12)
    rng = np.random.default_rng(13)
    tiles = []
    for p in true:
        t = synth.cut_tile(img, tuple(p), (tile, tile)).astype(np.float32)
        tiles.append(np.clip(t + rng.normal(0, 2.0, t.shape), 0, 255).astype(np.uint8))
    res = stitch_tiles(tiles, nominal_positions_px=nominal)
    err = (res.positions_px - true) - (res.positions_px - true).mean(axis=0)
    rms = float(np.sqrt((err**2).sum(axis=1).mean()))
    err0 = (nominal - true) - (nominal - true).mean(axis=0)
    assert float(np.sqrt((err0**2).sum(axis=1).mean())) > 3.0  # the stage error is real...
    assert rms < 0.2  # ...and stitching removes it
    report = res.report()
    assert report["pairs_used"] >= 12
    assert res.mosaic is not None
    assert tuple(res.mosaic.shape[:2]) == mosaic_geometry(res.positions_px, (tile, tile))[1]


def test_blank_tile_is_placed_by_the_stage(synth: Any) -> None:
    tile = 160
    true, nominal = synth.grid_truth(2, 3, tile=tile, step=140, error_px=3.0, seed=21)
    img = synth.textured_image((500, 600), seed=22)
    tiles = [synth.cut_tile(img, tuple(p), (tile, tile)) for p in true]
    tiles[2] = np.full_like(tiles[2], 215)  # bare glass: nothing to register
    res = stitch_tiles(tiles, nominal_positions_px=nominal, settings=StitchSettings(null_samples=20))
    for p in res.pairs:
        if 2 in (p.i, p.j):
            assert not p.accepted
            assert p.reason == "low correlation"
        elif min(p.overlap_px) >= 100:  # direct neighbours (diagonal corners overlap too little to count)
            assert p.accepted
    shift = (res.positions_px - nominal)[[0, 1, 3, 4, 5]].mean(axis=0)
    np.testing.assert_allclose(res.positions_px[2] - nominal[2], shift, atol=1.0)


def test_stage_positions_to_pixels_and_bad_input() -> None:
    pos = nominal_positions_from_stage(np.array([[37.0, 74.0]]), pixel_size_um=0.37, tile_shape=(11, 21))
    np.testing.assert_allclose(pos, [[200.0 - 5.0, 100.0 - 10.0]])
    t = np.zeros((16, 16, 3), np.uint8)
    with pytest.raises(InputFileError, match="2 tiles but 1"):
        stitch_tiles([t, t], nominal_positions_px=np.zeros((1, 2)))
    with pytest.raises(InputFileError, match="tiles must match"):
        stitch_tiles([t, np.zeros((8, 16, 3), np.uint8)], nominal_positions_px=np.zeros((2, 2)))
