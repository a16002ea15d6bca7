"""A bounded libFuzzer run (ASan + UBSan) over the protocol core finds no crash, hang or broken invariant."""

from __future__ import annotations

import re

import pytest
from fw_helpers import make


@pytest.mark.slow
@pytest.mark.external("libfuzzer", "host-cxx")
def test_bounded_fuzz_run_is_clean() -> None:
    proc = make("fuzz", "FUZZ_SECONDS=8")
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-3000:]
    runs = re.search(r"Done (\d+) runs", output)
    assert runs is not None, output[-2000:]
    assert int(runs.group(1)) > 1000
