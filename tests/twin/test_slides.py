"""Virtual slides: determinism, locality, content, image slides."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import cv2
import numpy as np
import pytest

from scopectl.errors import InputFileError
from scopectl.metrics import cie94_stats
from scopectl.twin import BenchtopModel, make_slide, slide_from_image
from scopectl.twin.slide import BarTargetSlide

SAMPLES = ("lung", "pap", "blood")


@pytest.mark.parametrize("sample", SAMPLES)
def test_same_region_renders_identically_and_seeds_differ(sample: str) -> None:
    slide = make_slide(sample, seed=11)
    kw = {"x0_um": 1200.0, "y0_um": 900.0, "shape": (96, 128), "pixel_size_um": 0.5}
    a = slide.render(**kw)
    b = make_slide(sample, seed=11).render(**kw)
    assert len(a.layers) == len(b.layers)
    for la, lb in zip(a.layers, b.layers, strict=True):
        assert la.z_um == lb.z_um
        np.testing.assert_array_equal(la.amounts, lb.amounts)
    np.testing.assert_array_equal(a.surface_um, b.surface_um)
    total_a = sum(layer.amounts for layer in a.layers)
    assert total_a.min() >= 0.0 and total_a.max() > 0.3  # stained content is present
    c = make_slide(sample, seed=12).render(**kw)
    assert not np.allclose(sum(layer.amounts for layer in c.layers), total_a)


@pytest.mark.parametrize("sample", SAMPLES)
def test_region_is_independent_of_the_window(sample: str) -> None:
    """A sub-window of a larger render equals a render of just that window (the same pixel lattice)."""
    slide = make_slide(sample, seed=5)
    p = 0.4
    big = slide.render(x0_um=2000.0, y0_um=2000.0, shape=(160, 160), pixel_size_um=p)
    small = slide.render(x0_um=2000.0 + 50 * p, y0_um=2000.0 + 40 * p, shape=(60, 70), pixel_size_um=p)
    for lb, ls in zip(big.layers, small.layers, strict=True):
        np.testing.assert_allclose(lb.amounts[40:100, 50:120], ls.amounts, atol=0.03)
    np.testing.assert_allclose(big.surface_um[40:100, 50:120], small.surface_um, atol=1e-3)


def test_pap_cells_sit_at_several_depths() -> None:
    render = make_slide("pap", seed=2).render(x0_um=1500.0, y0_um=1500.0, shape=(400, 400), pixel_size_um=0.5)
    zs = [layer.z_um for layer in render.layers if layer.amounts.max() > 0.1]
    assert len(zs) >= 2 and max(zs) - min(zs) >= 8.0  # 10-15 µm thick smear: depth matters


def test_large_slide_renders_a_small_region_with_little_memory() -> None:
    slide = make_slide("blood", seed=1, width_um=50_000.0, height_um=25_000.0)  # 12.5 cm² of smear
    tracemalloc.start()
    try:
        render = slide.render(x0_um=31_000.0, y0_um=17_000.0, shape=(256, 256), pixel_size_um=0.37)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert render.layers[0].amounts.shape == (256, 256, 4)
    assert peak < 64 * 2**20


def test_outside_the_slide_is_clear_glass() -> None:
    slide = make_slide("lung", seed=3, width_um=500.0, height_um=500.0)
    render = slide.render(x0_um=-40.0, y0_um=100.0, shape=(50, 50), pixel_size_um=1.0)
    for layer in render.layers:
        assert np.all(layer.amounts[:, :40] == 0.0)


def test_unknown_sample_is_rejected() -> None:
    with pytest.raises(ValueError, match="lung, pap or blood"):
        make_slide("liver", seed=0)


def test_bar_target_integrates_exactly_over_pixels() -> None:
    target = BarTargetSlide(period_um=2.0, optical_density=1.0)
    r = target.render(x0_um=0.25, y0_um=0.0, shape=(2, 8), pixel_size_um=0.5)  # pixels [0,0.5], [0.5,1], ...
    np.testing.assert_allclose(r.layers[0].amounts[0, :, 0], [1, 1, 0, 0, 1, 1, 0, 0])
    r = target.render(
        x0_um=0.5, y0_um=0.0, shape=(1, 4), pixel_size_um=0.5
    )  # every other pixel straddles an edge
    np.testing.assert_allclose(r.layers[0].amounts[0, :, 0], [1.0, 0.5, 0.0, 0.5])


def test_image_slide_reproduces_colours_through_the_benchtop(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    blocks = rng.integers(60, 240, (6, 6, 3)).astype(np.uint8)
    blocks[0, 0] = (250, 250, 250)  # some clear glass sets the white reference
    img = cv2.resize(blocks, (240, 240), interpolation=cv2.INTER_NEAREST)
    path = tmp_path / "field.png"
    cv2.imwrite(str(path), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    slide = slide_from_image(path, um_per_px=0.5)
    assert (slide.width_um, slide.height_um) == (120.0, 120.0)
    out = BenchtopModel().render(slide, center_x_um=60.0, center_y_um=60.0, shape=(300, 300), seed=1)
    # compare block centres (away from blurred edges): colours come back approximately
    ref = img[10:230:40, 10:230:40]
    got = out[
        int(10 * 0.5 / 0.37) + 1 :: round(40 * 0.5 / 0.37), int(10 * 0.5 / 0.37) + 1 :: round(40 * 0.5 / 0.37)
    ][:6, :6]
    mean_de, _ = cie94_stats(ref, got)
    assert mean_de < 8.0


def test_image_slide_errors(tmp_path: Path) -> None:
    with pytest.raises(InputFileError, match="not found"):
        slide_from_image(tmp_path / "missing.png", um_per_px=0.5)
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    with pytest.raises(InputFileError, match="not a readable image"):
        slide_from_image(bad, um_per_px=0.5)
    good = tmp_path / "good.png"
    cv2.imwrite(str(good), np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(InputFileError, match="um_per_px"):
        slide_from_image(good, um_per_px=0.0)
