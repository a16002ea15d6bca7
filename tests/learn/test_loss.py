"""The paper's loss: MSE + λ·Sobel gradient energy (equations 4 and 5)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage

from scopectl.learn.loss import SOBEL_WEIGHT, enhancement_loss, sobel_energy


def test_sobel_energy_matches_scipy() -> None:
    rng = np.random.default_rng(0)
    img = rng.random((2, 3, 17, 23))
    energy = [
        ndimage.sobel(plane, axis=1, mode="nearest") ** 2 + ndimage.sobel(plane, axis=0, mode="nearest") ** 2
        for plane in img.reshape(-1, 17, 23)
    ]
    expected = float(np.mean(energy))
    assert float(sobel_energy(torch.from_numpy(img))) == pytest.approx(expected, rel=1e-10)


def test_sobel_energy_of_constant_and_ramp() -> None:
    assert float(sobel_energy(torch.full((1, 3, 8, 8), 0.7))) < 1e-12
    ramp = torch.arange(10, dtype=torch.float64).repeat(1, 3, 10, 1) * 0.1  # +0.1 per column
    interior = sobel_energy(ramp[..., 1:-1, :])  # rows don't matter; columns have replicated edges
    # interior columns: (I(c+1) - I(c-1)) · (1 + 2 + 1) = 0.8 ; edge columns: 0.4
    assert float(interior) == pytest.approx((8 * 0.8**2 + 2 * 0.4**2) / 10)


def test_loss_is_mse_plus_lambda_sobel() -> None:
    torch.manual_seed(0)
    out, target = torch.rand(2, 3, 15, 15), torch.rand(2, 3, 15, 15)
    terms = enhancement_loss(out, target)
    assert float(terms.mse) == pytest.approx(float(((out - target) ** 2).mean()))
    assert float(terms.total) == pytest.approx(float(terms.mse + SOBEL_WEIGHT * sobel_energy(out)))
    assert SOBEL_WEIGHT == 1e-3
    with pytest.raises(ValueError, match="shape"):
        enhancement_loss(out, target[:, :, :-1])
