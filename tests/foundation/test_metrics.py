"""The paper's metrics against scikit-image, PIL and published check values."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from skimage.color import deltaE_ciede94, rgb2lab
from skimage.metrics import structural_similarity

from scopectl.metrics import bicubic_resize, cie94, cie94_lab, cie94_stats, luma, rgb_to_lab, ssim


@pytest.fixture
def pair() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (64, 80, 3), dtype=np.uint8)
    b = np.clip(a.astype(int) + rng.integers(-40, 41, a.shape), 0, 255).astype(np.uint8)
    return a, b


def _luma(x: np.ndarray) -> np.ndarray:
    return luma(x)


def test_ssim_matches_skimage_wang_settings(pair: tuple[np.ndarray, np.ndarray]) -> None:
    a, b = pair
    ref = structural_similarity(
        _luma(a), _luma(b), gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255
    )
    assert ssim(a, b) == pytest.approx(ref, abs=1e-10)
    ref_rgb = structural_similarity(
        a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255, channel_axis=2
    )
    assert ssim(a, b, channel="rgb") == pytest.approx(ref_rgb, abs=1e-10)


def test_ssim_identity_and_data_range(pair: tuple[np.ndarray, np.ndarray]) -> None:
    a, b = pair
    assert ssim(a, a) == pytest.approx(1.0)
    assert ssim(a, b) < 0.99
    af = a.astype(np.float64) / 255.0
    bf = b.astype(np.float64) / 255.0
    assert ssim(af, bf, data_range=1.0) == pytest.approx(ssim(a, b), abs=1e-9)


def test_ssim_rejects_bad_input(pair: tuple[np.ndarray, np.ndarray]) -> None:
    a, b = pair
    with pytest.raises(ValueError, match="shape"):
        ssim(a, b[:-1])
    with pytest.raises(ValueError, match="11x11"):
        ssim(a[:8, :8], b[:8, :8])
    with pytest.raises(ValueError, match="channel"):
        ssim(a, b, channel="hsv")  # type: ignore[arg-type]


def test_cie94_check_value_and_asymmetry() -> None:
    lab1 = np.array([100.0, 21.57210357, 272.22819350])
    lab2 = np.array([100.0, 426.67945353, 72.39590835])
    assert float(cie94_lab(lab1, lab2)) == pytest.approx(83.7792255, abs=1e-6)
    assert float(cie94_lab(lab2, lab1)) == pytest.approx(56.9383947, abs=1e-6)


def test_cie94_matches_skimage(pair: tuple[np.ndarray, np.ndarray]) -> None:
    a, b = pair
    np.testing.assert_allclose(rgb_to_lab(a), rgb2lab(a), atol=1e-3)
    np.testing.assert_allclose(cie94(a, b), deltaE_ciede94(rgb2lab(a), rgb2lab(b)), atol=1e-3)
    mean, std = cie94_stats(a, b)
    d = deltaE_ciede94(rgb2lab(a), rgb2lab(b))
    assert mean == pytest.approx(float(d.mean()), abs=1e-3)
    assert std == pytest.approx(float(d.std()), abs=1e-3)
    assert cie94_stats(a, a)[0] == pytest.approx(0.0, abs=1e-5)


def test_bicubic_matches_pil_on_smooth_images() -> None:
    # PIL clips to 8 bits between its two passes, so compare on a smooth image (no overshoot)
    yy, xx = np.mgrid[0:60, 0:72]
    img = np.stack(
        [
            128 + 90 * np.sin(xx / 7.0) * np.cos(yy / 9.0),
            120 + 60 * np.cos(xx / 5.0),
            100 + 0.8 * yy + 0.5 * xx,
        ],
        axis=2,
    )
    img = np.clip(np.rint(img), 0, 255).astype(np.uint8)
    for shape in [(150, 180), (24, 29), (60, 72)]:
        ours = bicubic_resize(img, shape=shape).astype(int)
        pil = np.asarray(Image.fromarray(img).resize((shape[1], shape[0]), Image.Resampling.BICUBIC)).astype(
            int
        )
        inner = (slice(8, -8), slice(8, -8))
        assert np.abs(ours[inner] - pil[inner]).max() <= 1, shape


def test_bicubic_properties() -> None:
    const = np.full((20, 30), 0.25)
    np.testing.assert_allclose(bicubic_resize(const, shape=(50, 75)), 0.25, atol=1e-12)
    ramp = np.tile(np.arange(40, dtype=np.float64), (10, 1))
    up = bicubic_resize(ramp, shape=(10, 100))
    # output column i samples input coordinate (i + 0.5)/2.5 - 0.5 (MATLAB alignment); a linear ramp is exact inside
    expected = (np.arange(100) + 0.5) / 2.5 - 0.5
    np.testing.assert_allclose(up[:, 6:-6], np.broadcast_to(expected[6:-6], (10, 88)), atol=1e-9)
    assert bicubic_resize(np.zeros((4, 4, 3), np.uint8), shape=(10, 10)).dtype == np.uint8
    with pytest.raises(ValueError, match="positive"):
        bicubic_resize(const, shape=(0, 5))
