"""Pyramid elastic registration: known warps and shifts are recovered."""

from __future__ import annotations

import numpy as np
import pytest
from numpy.typing import NDArray

from scopectl.errors import RegistrationError
from scopectl.registration.elastic import (
    BlockMatch,
    DisplacementField,
    ElasticParams,
    block_match,
    block_shift_field,
    check_only,
    elastic_register,
    level_sizes,
)
from scopectl.registration.fov import to_gray
from scopectl.registration.synthetic import distortion_field, warp_by_field


def _pair(
    mosaic: NDArray[np.uint8], *, size: int, margin: int, amplitude: float, seed: int, noise: float = 2.0
) -> tuple[NDArray[np.float32], NDArray[np.float32], object]:
    """reference = mosaic crop; moving(x + D(x)) = reference(x) on the margin-extended grid."""
    gray = to_gray(mosaic).astype(np.float32)
    fn = distortion_field((size, size), amplitude_px=amplitude, seed=seed)
    off = 100
    ref = gray[off : off + size, off : off + size]

    def shifted(
        r: NDArray[np.float64], c: NDArray[np.float64]
    ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        return fn(r - margin, c - margin)

    big = gray[off - margin : off + size + margin, off - margin : off + size + margin]
    mov = warp_by_field(big, shifted, shape=big.shape)
    rng = np.random.default_rng(seed)
    mov = (mov + rng.normal(0, noise, mov.shape)).astype(np.float32)
    return mov, ref, fn


def test_level_sizes_follow_the_paper() -> None:
    p = ElasticParams()
    assert level_sizes((2560, 2560), params=p) == [5, 7, 11, 15, 21, 29, 41, 51]
    assert level_sizes((1024, 1024), params=p) == [5, 7, 11, 15, 20]
    assert level_sizes((2560, 2560), params=p)[-1] * 50 <= 2560
    with pytest.raises(RegistrationError, match="too small"):
        level_sizes((90, 400), params=p)


def test_recovers_a_known_smooth_warp(mosaic: NDArray[np.uint8]) -> None:
    size, margin = 800, 32
    mov, ref, fn = _pair(mosaic, size=size, margin=margin, amplitude=8.0, seed=3)
    res = elastic_register(mov, ref, margin_px=margin)
    chk = res.check
    cr, cc = chk.centre_px
    dr, dc = res.field.sample(cr.astype(np.float32), cc.astype(np.float32))
    tr, tc = fn(cr, cc)  # type: ignore[operator]
    err = np.hypot(dr - tr, dc - tc)[chk.kept]
    true_mag = float(np.sqrt(np.mean(tr**2 + tc**2)))
    assert true_mag > 1.5  # the warp is not trivial
    assert chk.kept.mean() > 0.8
    assert float(np.sqrt(np.mean(err**2))) < 0.3
    assert res.quality > 0.9
    assert res.residual_px is not None and res.residual_px < 0.3
    assert [lev.match.n_blocks[0] for lev in res.levels] == level_sizes(ref.shape, params=ElasticParams())


@pytest.mark.parametrize(("shift_r", "shift_c"), [(3.0, -2.0), (1.35, 0.62), (-4.7, 2.25)])
def test_recovers_a_translation_to_a_tenth_of_a_pixel(
    mosaic: NDArray[np.uint8], shift_r: float, shift_c: float
) -> None:
    gray = to_gray(mosaic).astype(np.float32)
    size, margin = 400, 16

    def fn(r: NDArray[np.float64], c: NDArray[np.float64]) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        return np.full_like(r, shift_r), np.full_like(c, shift_c)

    big = gray[200 - margin : 200 + size + margin, 300 - margin : 300 + size + margin]
    mov = warp_by_field(big, fn, shape=big.shape)
    ref = gray[200 : 200 + size, 300 : 300 + size]
    res = elastic_register(mov, ref, margin_px=margin, params=ElasticParams(min_block_px=50))
    dr, dc = res.field.sample(np.array([[200.0]], np.float32), np.array([[200.0]], np.float32))
    assert float(dr[0, 0]) == pytest.approx(shift_r, abs=0.1)
    assert float(dc[0, 0]) == pytest.approx(shift_c, abs=0.1)


def test_peak_value_is_the_pearson_correlation(mosaic: NDArray[np.uint8]) -> None:
    ref = to_gray(mosaic)[:300, :300].astype(np.float32)
    p = ElasticParams()
    zero = DisplacementField.zeros(ref.shape, margin_px=0, spacing_px=4)
    same = block_match(ref, ref, zero, n_blocks=5, params=p)
    assert np.allclose(same.similarity, 1.0, atol=1e-4)
    assert np.allclose(same.shift_px, 0.0, atol=0.01)
    # an affine change of intensity leaves Pearson's r unchanged
    scaled = block_match(0.5 * ref + 40.0, ref, zero, n_blocks=5, params=p)
    assert np.allclose(scaled.similarity, 1.0, atol=1e-4)
    # the negative image anti-correlates: every block is below the threshold and ignored
    neg = block_match(255.0 - ref, ref, zero, n_blocks=5, params=p)
    assert not neg.kept.any()
    # independent noise correlates weakly
    noise = np.random.default_rng(0).normal(size=ref.shape).astype(np.float32)
    indep = block_match(noise, ref, zero, n_blocks=5, params=p)
    assert float(np.median(indep.similarity)) < 0.5


def test_blank_images_keep_no_block_and_a_zero_field() -> None:
    flat = np.full((300, 300), 200.0, np.float32)
    res = elastic_register(flat, flat)
    assert not res.check.kept.any()
    assert res.quality == 0.0
    assert res.residual_px is None
    assert np.all(res.field.values == 0.0)


def test_block_shift_field_of_a_uniform_shift_is_uniform() -> None:
    n = 6
    centres = np.stack(np.meshgrid(25.0 + 50 * np.arange(n), 25.0 + 50 * np.arange(n), indexing="ij"))
    shift = np.stack([np.full((n, n), 1.5), np.full((n, n), -0.75)]).astype(np.float32)
    kept = np.ones((n, n), bool)
    kept[2, 3] = False  # missing blocks are filled from their neighbours
    match = BlockMatch((n, n), (50.0, 50.0), 1, shift, np.ones((n, n), np.float32), kept, centres)
    values, _origin, _spacing = block_shift_field(match, shape=(300, 300), margin_px=10)
    assert np.allclose(values[0], 1.5, atol=1e-4)
    assert np.allclose(values[1], -0.75, atol=1e-4)


def test_outlier_blocks_are_rejected_by_the_median_test(mosaic: NDArray[np.uint8]) -> None:
    ref = to_gray(mosaic)[:500, :500].astype(np.float32)
    mov = ref.copy()
    # paste unrelated but textured content into one block: its peak lands somewhere random
    mov[200:300, 200:300] = np.rot90(ref[0:100, 0:100])
    zero = DisplacementField.zeros(ref.shape, margin_px=0, spacing_px=4)
    m = block_match(mov, ref, zero, n_blocks=5, params=ElasticParams(threshold=-1.0))
    assert not m.kept[2, 2]
    assert m.kept.sum() == 24


def test_check_only_measures_without_warping(mosaic: NDArray[np.uint8]) -> None:
    mov, ref, _fn = _pair(mosaic, size=400, margin=16, amplitude=4.0, seed=5)
    before = check_only(mov, ref, margin_px=16)
    after = elastic_register(mov, ref, margin_px=16)
    assert before.levels == []
    assert before.residual_px is not None and after.residual_px is not None
    assert after.residual_px < 0.5 * before.residual_px


def test_shape_mismatch_is_a_registration_error() -> None:
    with pytest.raises(RegistrationError, match="plus 8 px per side"):
        elastic_register(np.zeros((300, 300), np.float32), np.zeros((300, 300), np.float32), margin_px=8)
    with pytest.raises(RegistrationError, match="2-D"):
        elastic_register(np.zeros((300, 300, 3), np.float32), np.zeros((300, 300, 3), np.float32))
