"""The protocol core compiled on the host passes the shared vectors (and fails on a wrong one)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from fw_helpers import VECTORS, gen_vectors, make

pytestmark = pytest.mark.external("host-cxx")


def test_host_tests_pass_against_shared_vectors() -> None:
    proc = make("host-test")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    cases = json.loads(VECTORS.read_text(encoding="ascii"))["board_cases"]
    assert f"ok: {len(cases)} vector cases" in proc.stdout
    assert " 0 failures" in proc.stdout


def test_host_test_detects_a_wrong_expectation(tmp_path: Path) -> None:
    doc = json.loads(VECTORS.read_text(encoding="ascii"))
    hello = next(c for c in doc["board_cases"] if c["name"] == "hello")
    hello["steps"][0]["expect"] = ["00:OK SCOPECTL-LEDRING 9.9.9 1 12*00\n"]
    header = tmp_path / "led_ring_vectors.h"
    header.write_text(gen_vectors().header_text(doc), encoding="ascii")
    program = tmp_path / "test_core"
    proc = make(f"VECTORS_H={header}", f"TEST_CORE={program}", str(program))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    run = subprocess.run([str(program)], capture_output=True, text=True, timeout=60, check=False)
    assert run.returncode == 1
    assert "FAIL [hello]" in run.stdout
