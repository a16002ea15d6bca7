"""`scopectl acquire` on the simulated rig: a complete verifiable slide, resume after kill -9, faults, checks.

The simulated rig uses the real drivers over their real transports (serial over a pty, ADB over loopback
TCP with RSA auth, Micro-Manager's Python device layer), so these are end-to-end tests.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from acq_support import assert_same, content, small_protocol
from scopectl.cli.main import main
from scopectl.store import SlideStore

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_acquire_on_the_simulated_rig_produces_a_verifiable_slide(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    proto = small_protocol(tmp_path)
    root = tmp_path / "root"
    rc = main(
        [
            "--root",
            str(root),
            "acquire",
            "--slide",
            "lung01",
            "--rig",
            "sim",
            "--protocol",
            str(proto),
            "--seed",
            "3",
            "--json",
        ]
    )
    out = capsys.readouterr()
    assert rc == 0, out.err
    summary = json.loads(out.out.strip().splitlines()[-1])
    assert summary["simulated"] is True and summary["protocol"] == "lung-small"
    assert summary["tiles"] == summary["benchtop"]["tiles_total"] == 9
    assert summary["fields_captured"] == 2 and summary["verified"]
    assert summary["battery_mv_range"][0] > 3000
    with SlideStore.open(root / "slides" / "lung01.h5") as store:
        assert store.simulated
        assert store.verify()["ok"]
        rgb, meta = store.read_capture(0)
        assert rgb.shape == (256, 256, 3)
        assert meta.settings["iso"] == 100
        assert meta.led_state["brightness"] == 160
        assert store.read_capture_raw(0, "dng") is not None and store.read_capture_raw(0, "jpeg") is not None
        assert meta.stage_x_um is not None
    assert main(["--root", str(root), "store", "verify", "--slide", "lung01"]) == 0
    # a second acquire of the same slide is refused without --resume/--force
    assert (
        main(["--root", str(root), "acquire", "--slide", "lung01", "--rig", "sim", "--protocol", str(proto)])
        == 3
    )
    assert "already exists" in capsys.readouterr().err
    # the acquired slide registers and cuts into a training set
    assert main(["--root", str(root), "register", "--slide", "lung01", "--json"]) == 0
    reg = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert reg["ok"] == 2 and reg["failed"] == 0
    assert all(c["quality"] > 0.5 and Path(c["figures"][0]).is_file() for c in reg["captures"])
    build = ["dataset", "build", "--slides", "lung01", "--name", "t", "--split", "1,0,0", "--json"]
    assert main(["--root", str(root), *build]) == 0
    ds = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert ds["captures"]["train"] == 2 and ds["counts"]["train"] >= 2  # 256² captures: one patch or so each
    assert Path(ds["path"]).is_file()


def test_acquire_needs_an_explicit_rig(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--root", str(tmp_path), "acquire", "--slide", "x"]) == 2
    assert "--rig sim" in capsys.readouterr().err
    assert (
        main(["--root", str(tmp_path), "acquire", "--slide", "x", "--rig", str(tmp_path / "nope.yaml")]) == 2
    )
    assert "rig file not found" in capsys.readouterr().err
    assert not (tmp_path / "slides" / "x.h5").exists()


@pytest.mark.slow
def test_kill_9_at_random_points_then_resume_gives_the_same_slide(tmp_path: Path) -> None:
    proto = small_protocol(tmp_path)
    exe = str(Path(sys.executable).with_name("scopectl"))
    ref_root, root = tmp_path / "ref", tmp_path / "killed"
    args = ["acquire", "--slide", "lung01", "--rig", "sim", "--protocol", str(proto), "--seed", "5", "--json"]
    t0 = time.monotonic()
    subprocess.run([exe, "--root", str(ref_root), *args], check=True, capture_output=True, timeout=600)
    full_s = time.monotonic() - t0
    rng = np.random.default_rng(11)
    kills = 0
    for _attempt in range(6):
        started = (root / "slides" / "lung01.h5").exists()
        cmd = [exe, "--root", str(root), *args, *(["--resume"] if started else [])]
        with subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) as proc:
            try:
                proc.wait(timeout=float(rng.uniform(0.15, 0.4)) * full_s)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(timeout=30)
        if proc.returncode == -signal.SIGKILL:
            kills += 1
            if (root / "slides" / "lung01.h5").exists():  # what a kill leaves opens and verifies
                with SlideStore.open(root / "slides" / "lung01.h5") as store:
                    assert store.verify()["ok"]
        else:
            assert proc.returncode == 0
            break
        if kills == 3:
            break
    subprocess.run(
        [exe, "--root", str(root), *args, "--resume"], check=False, capture_output=True, timeout=600
    )
    # a resumed run may finish before its kill time; every kill so far left a resumable slide
    assert kills >= 2
    assert_same(content(root / "slides" / "lung01.h5"), content(ref_root / "slides" / "lung01.h5"))
