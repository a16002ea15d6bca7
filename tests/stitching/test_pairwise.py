"""Pairwise registration: known shifts are recovered; unrelated or blank strips are rejected."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from scopectl.stitching import candidate_pairs, null_threshold, register_pair, to_grey


@pytest.mark.parametrize(
    ("true_offset", "nominal_offset"),
    [((0.0, 230.0), (0.0, 226.0)), ((231.37, -2.81), (226.0, 0.0)), ((-3.25, 224.6), (0.0, 226.0))],
)
def test_register_pair_recovers_subpixel_offset(
    synth: Any, true_offset: tuple[float, float], nominal_offset: tuple[float, float]
) -> None:
    img = synth.textured_image((800, 800), seed=4)
    a = synth.cut_tile(img, (200.0, 200.0), (256, 256))
    b = synth.cut_tile(img, (200.0 + true_offset[0], 200.0 + true_offset[1]), (256, 256))
    off, corr, overlap = register_pair(
        to_grey(a), to_grey(b), nominal_offset_px=nominal_offset, max_shift_px=20
    )
    assert corr > 0.9
    assert min(overlap) >= 20
    np.testing.assert_allclose(off, true_offset, atol=0.1)


def test_register_pair_rejects_shift_beyond_limit(synth: Any) -> None:
    img = synth.textured_image((800, 800), seed=5)
    a = synth.cut_tile(img, (100.0, 100.0), (256, 256))
    b = synth.cut_tile(img, (100.0, 100.0 + 226.0 + 12.0), (256, 256))
    _, corr, _ = register_pair(to_grey(a), to_grey(b), nominal_offset_px=(0.0, 226.0), max_shift_px=5)
    assert corr == 0.0


def test_blank_and_unrelated_strips_score_below_threshold(synth: Any) -> None:
    rng = np.random.default_rng(0)
    glass = np.clip(220 + rng.normal(0, 3, size=(256, 256, 3)), 0, 255).astype(np.uint8)
    glass2 = np.clip(220 + rng.normal(0, 3, size=(256, 256, 3)), 0, 255).astype(np.uint8)
    _, corr, _ = register_pair(
        to_grey(glass), to_grey(glass2), nominal_offset_px=(0.0, 226.0), max_shift_px=20
    )
    img1, img2 = synth.textured_image((256, 256), seed=1), synth.textured_image((256, 256), seed=2)
    _, corr_unrelated, _ = register_pair(
        to_grey(img1), to_grey(img2), nominal_offset_px=(0.0, 200.0), max_shift_px=20
    )
    tiles = [to_grey(synth.textured_image((256, 256), seed=s)) for s in range(6)]
    thr = null_threshold(tiles, pairs=[(0, 1)], strip_shapes=[(256, 30)], samples=30, seed=1)
    assert thr is not None
    assert corr < 0.25
    assert corr_unrelated < 0.25
    assert thr < 0.25


def test_candidate_pairs_are_the_overlapping_neighbours() -> None:
    nominal = np.array([[0, 0], [0, 230], [230, 0], [230, 230], [0, 600]], float)
    pairs = candidate_pairs(nominal, (256, 256), min_overlap_px=8)
    assert pairs == [(0, 1), (0, 2), (1, 3), (2, 3)]  # side neighbours; not the corners nor the far tile
    assert null_threshold([np.zeros((8, 8), np.float32)] * 2, pairs=[(0, 1)], strip_shapes=[(8, 8)]) is None
