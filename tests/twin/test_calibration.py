"""The twin's phone images are as hard as the paper's: bicubic ×2.5 SSIM and CIE-94 against the benchtop.

Paper ranges over its three sample types: SSIM 0.46-0.66 (Table 2, bicubic column) and mean CIE-94
16-26 (Table 3, column A). Each sample type is measured on two full-size (1024²) phone tiles of the
reproducible series of ``scopectl sim pairs`` (seed 0); ``docs/twin.md`` reports more fields.
"""

from __future__ import annotations

import numpy as np
import pytest

from scopectl.twin.pairs import PAPER_CIE94_RANGE, PAPER_SSIM_RANGE, iter_pairs, measure_pair


@pytest.mark.slow
@pytest.mark.parametrize("sample", ["lung", "pap", "blood"])
def test_phone_images_are_as_hard_as_the_papers(sample: str) -> None:
    rows = [
        measure_pair(pair) for pair in iter_pairs(sample=sample, count=2, seed=0, phone_shape=(1024, 1024))
    ]
    ssim = float(np.mean([r["ssim"] for r in rows]))
    de = float(np.mean([r["cie94_mean"] for r in rows]))
    assert PAPER_SSIM_RANGE[0] <= ssim <= PAPER_SSIM_RANGE[1], ssim
    assert PAPER_CIE94_RANGE[0] <= de <= PAPER_CIE94_RANGE[1], de
