"""Shared synthetic material for the registration tests (seeded, small enough for CI)."""

from __future__ import annotations

import numpy as np
import pytest
from numpy.typing import NDArray

from scopectl.registration.synthetic import tissue_rgb


@pytest.fixture(scope="session")
def mosaic() -> NDArray[np.uint8]:
    """A 1600×1600 H&E-like benchtop mosaic at 0.37 µm/px."""
    return tissue_rgb((1600, 1600), seed=11)


@pytest.fixture(scope="session")
def other_tissue() -> NDArray[np.uint8]:
    """Tissue that does not occur in ``mosaic``."""
    return tissue_rgb((800, 800), seed=99)
