"""A small version of the cross-domain bench (benchmarks/cross_domain.py): real tissue, a foreign phone, the CLI."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.mark.slow
def test_the_whole_cli_chain_on_real_tissue_through_a_foreign_phone(tmp_path: Path) -> None:
    sys.path.insert(0, str(BENCHMARKS))
    try:
        import cross_domain
        from foreign import PHONES, real_tissue
    finally:
        sys.path.remove(str(BENCHMARKS))
    assert real_tissue().shape == (512, 512, 3)  # scikit-image's bundled IHC image, no download
    args = argparse.Namespace(
        phone_px=200,
        n_train=3,
        n_test=1,
        seed=1,
        minutes=0.05,
        recipes=["fast"],
        throughput_steps=0,
        evaluate=False,  # `scopectl evaluate` is tested in tests/evaluation; here it would only add time
    )
    out = cross_domain.run_phone("budget", args, tmp_path)
    # registration keeps every capture, and its patches are aligned to the exact mapping within 0.3 px
    for split in ("train", "test"):
        acc = out[f"register_{split}"]["accuracy"]
        assert all(a["kept"] for a in acc), acc
        assert max(a["error_median_phone_px"] for a in acc) < 0.3
    ds = out["dataset"]
    assert ds["captures"] == {"train": 2, "val": 1, "test": 0} and ds["warnings"]  # few patches: warned
    run = out["recipes"]["fast"]
    quality = run["train"]["quality"]
    assert quality is not None and quality["pairs"] == ds["counts"]["val"]
    assert run["train_warning"] is quality["worse_than_bicubic"]  # train says so exactly when it is worse
    test = run["test"]["mean"]
    assert 0.3 < test["ssim_bicubic"] < 1.0 and test["cie94_bicubic"] > 2.0  # the phone really is foreign
    assert np.isfinite(test["ssim_network"]) and test["cie94_network"] > 0
    assert PHONES["budget"].jpeg_quality[0] <= min(out["jpeg_quality"]["train"])
