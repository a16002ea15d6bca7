"""Synthetic ground truth for the stitching tests: tiles cut from a known textured image."""

from __future__ import annotations

import cv2
import numpy as np
import pytest


def textured_image(shape: tuple[int, int], *, seed: int) -> np.ndarray:
    """A smooth random RGB texture (uint8), band-limited so sub-pixel shifts are well defined."""
    rng = np.random.default_rng(seed)
    out = []
    for k in range(3):
        fine = cv2.GaussianBlur(rng.random(shape, dtype=np.float32), (0, 0), 1.5)
        coarse = cv2.GaussianBlur(rng.random(shape, dtype=np.float32), (0, 0), 6.0)
        tex = (fine - fine.mean()) / fine.std() + 0.5 * (coarse - coarse.mean()) / coarse.std()
        out.append(128.0 + (30.0 + 5 * k) * tex)
    return np.clip(np.stack(out, axis=-1), 0, 255).astype(np.uint8)


def cut_tile(image: np.ndarray, top_left: tuple[float, float], shape: tuple[int, int]) -> np.ndarray:
    """A tile whose pixel (r, c) is the image at (top_left + (r, c)), bilinear for fractional corners."""
    m = np.array([[1.0, 0.0, top_left[1]], [0.0, 1.0, top_left[0]]])
    return cv2.warpAffine(
        image,
        m,
        (shape[1], shape[0]),
        flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_REFLECT,
    )


def grid_truth(
    rows: int, cols: int, *, tile: int, step: int, error_px: float, seed: int, origin: float = 20.0
) -> tuple[np.ndarray, np.ndarray]:
    """(true, nominal) top-left positions of a rows×cols grid with random stage errors."""
    rng = np.random.default_rng(seed)
    nominal = np.array(
        [[origin + r * step, origin + c * step] for r in range(rows) for c in range(cols)], float
    )
    true = nominal + rng.normal(0.0, error_px, size=nominal.shape)
    return true, nominal


class Synth:
    """Namespace handed to tests by the ``synth`` fixture."""

    textured_image = staticmethod(textured_image)
    cut_tile = staticmethod(cut_tile)
    grid_truth = staticmethod(grid_truth)


@pytest.fixture
def synth() -> type[Synth]:
    return Synth
