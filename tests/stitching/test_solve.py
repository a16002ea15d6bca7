"""Global solve: exact data is reproduced; a wrong pair is detected and dropped."""

from __future__ import annotations

import numpy as np
import pytest

from scopectl.stitching import solve_positions


def _grid_pairs(rows: int, cols: int) -> list[tuple[int, int]]:
    out = []
    for r in range(rows):
        for c in range(cols):
            k = r * cols + c
            if c + 1 < cols:
                out.append((k, k + 1))
            if r + 1 < rows:
                out.append((k, k + cols))
    return out


def test_exact_offsets_give_true_relative_positions() -> None:
    rng = np.random.default_rng(2)
    true = np.array([[r * 230.0, c * 230.0] for r in range(3) for c in range(4)]) + rng.normal(0, 5, (12, 2))
    nominal = np.array([[r * 230.0, c * 230.0] for r in range(3) for c in range(4)])
    pairs = np.array(_grid_pairs(3, 4))
    offsets = true[pairs[:, 1]] - true[pairs[:, 0]]
    res = solve_positions(nominal, pairs, offsets)
    err = (res.positions_px - true) - (res.positions_px - true).mean(axis=0)
    assert np.abs(err).max() < 1e-3
    assert res.used.all()
    assert res.rms_residual_px < 1e-3
    # the free translation is fixed by the stage: the mean position equals the nominal mean
    np.testing.assert_allclose(res.positions_px.mean(axis=0), nominal.mean(axis=0), atol=1e-2)


def test_outlier_pair_is_dropped() -> None:
    rng = np.random.default_rng(3)
    nominal = np.array([[r * 230.0, c * 230.0] for r in range(3) for c in range(3)])
    true = nominal + rng.normal(0, 4, nominal.shape)
    pairs = np.array(_grid_pairs(3, 3))
    offsets = true[pairs[:, 1]] - true[pairs[:, 0]] + rng.normal(0, 0.05, (len(pairs), 2))
    bad = 5
    offsets[bad] += (9.0, -7.0)
    res = solve_positions(nominal, pairs, offsets)
    assert res.dropped == (bad,)
    assert not res.used[bad]
    err = (res.positions_px - true) - (res.positions_px - true).mean(axis=0)
    assert np.sqrt((err**2).sum(axis=1).mean()) < 0.1


def test_unconnected_tile_stays_at_its_stage_position() -> None:
    nominal = np.array([[0.0, 0.0], [0.0, 230.0], [500.0, 500.0]])
    res = solve_positions(nominal, np.array([[0, 1]]), np.array([[1.0, 232.0]]))
    np.testing.assert_allclose(res.positions_px[2], nominal[2], atol=1e-6)
    np.testing.assert_allclose(res.positions_px[1] - res.positions_px[0], [1.0, 232.0], atol=1e-3)


def test_bad_input_is_refused() -> None:
    with pytest.raises(ValueError, match="pairs but"):
        solve_positions(np.zeros((2, 2)), np.array([[0, 1]]), np.zeros((2, 2)))
    with pytest.raises(ValueError, match="out of range"):
        solve_positions(np.zeros((2, 2)), np.array([[0, 2]]), np.zeros((1, 2)))
