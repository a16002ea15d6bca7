"""Fixtures of the benchtop tests: a fast test-pattern renderer (a test fixture, not the product path).

The product renderer is the digital twin (``TwinRenderer``); these tests use a cheap textured pattern
with Gaussian defocus so that the control code (stage, focus, scan) can be tested quickly.  The accuracy
tests (``test_accuracy.py``) use the twin.
"""

from __future__ import annotations

from collections.abc import Iterator

import cv2
import numpy as np
import pytest

from scopectl.hardware.benchtop import FocusPlane
from scopectl.hardware.benchtop.sim import SimStageParams, SimulatedBenchtop, simulated_benchtop


class PatternRenderer:
    """Textured pattern on a ``size_px`` square of slide, blank glass where ``x_um > blank_x_um``.

    Defocus blurs with a Gaussian of sigma ``0.6 * |focus_z_um|`` pixels (depth of field ~1.5 µm);
    noise is Gaussian with sigma 2 grey levels, seeded per snap.
    """

    def __init__(
        self, *, seed: int = 1, size_px: int = 2400, pixel_size_um: float = 0.37, blank_x_um: float = 1e9
    ) -> None:
        rng = np.random.default_rng(seed)
        fine = cv2.GaussianBlur(rng.random((size_px, size_px), dtype=np.float32), (0, 0), 1.5)
        coarse = cv2.GaussianBlur(rng.random((size_px, size_px), dtype=np.float32), (0, 0), 8.0)
        tex = (fine - fine.mean()) / fine.std() + 0.7 * (coarse - coarse.mean()) / coarse.std()
        self.texture = (140.0 + 35.0 * tex).astype(np.float32)
        self._pixel_size_um = pixel_size_um
        self.blank_x_um = blank_x_um
        self.calls = 0

    @property
    def pixel_size_um(self) -> float:
        return self._pixel_size_um

    def render(
        self,
        *,
        center_x_um: float,
        center_y_um: float,
        focus_z_um: float,
        shape: tuple[int, int],
        exposure_ms: float,
        seed: int,
    ) -> np.ndarray:
        self.calls += 1
        rows, cols = shape
        px = self._pixel_size_um
        # pixel (r, c) centre is at x = center_x + (c - (cols-1)/2) * px
        cx = center_x_um / px - (cols - 1) / 2.0
        cy = center_y_um / px - (rows - 1) / 2.0
        m = np.array([[1.0, 0.0, cx], [0.0, 1.0, cy]], dtype=np.float64)
        img = cv2.warpAffine(
            self.texture,
            m,
            (cols, rows),
            flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
            borderMode=cv2.BORDER_REFLECT,
        )
        xs = center_x_um + (np.arange(cols) - (cols - 1) / 2.0) * px
        img[:, xs > self.blank_x_um] = 200.0
        sigma = 0.6 * abs(focus_z_um)
        if sigma > 0.3:
            img = cv2.GaussianBlur(img, (0, 0), sigma)
        img = img * (exposure_ms / 10.0)
        rng = np.random.default_rng(seed)
        img = img + rng.normal(0.0, 2.0, size=img.shape).astype(np.float32)
        grey = np.clip(img, 0, 255)
        rgb = np.stack([grey * 0.9, grey, grey * 0.8], axis=-1)
        return np.clip(rgb + 0.5, 0, 255).astype(np.uint8)


FAST_STAGE = SimStageParams(time_scale=0.002, position_error_um=1.5, backlash_um=2.0)


@pytest.fixture
def pattern() -> PatternRenderer:
    return PatternRenderer(seed=1)


@pytest.fixture
def sim_bench(pattern: PatternRenderer) -> Iterator[SimulatedBenchtop]:
    bench = simulated_benchtop(
        pattern,
        seed=3,
        sensor_shape=(256, 256),
        stage=FAST_STAGE,
        focus_plane=FocusPlane(20.0, 0.002, -0.001),
        start_z_um=20.0,
        timeout_s=10.0,
    )
    with bench:
        yield bench


@pytest.fixture
def fast_stage() -> SimStageParams:
    return FAST_STAGE


@pytest.fixture
def make_pattern() -> type[PatternRenderer]:
    return PatternRenderer
