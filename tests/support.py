"""Shared test helpers (import as ``from support import require_option``).

External programs
-----------------
Tests that need an external program (``adb``, ``openscad``, the AVR toolchain, ``simavr`` ...) carry the
``external(name)`` marker, which ``tests/conftest.py`` turns into a probe of that capability.

Real hardware
-------------
Tests marked ``hardware`` run only when pointed at a device::

    pytest -m hardware --ledring-url /dev/ttyACM0 --phone-serial 192.168.1.20:5555 --mm-config scope.cfg
"""

from __future__ import annotations

import os

import numpy as np
import pytest


def require_option(config: pytest.Config, option: str) -> str:
    """Return a hardware option's value, or skip the test when it was not given."""
    value = config.getoption(option)
    if not value:
        pytest.skip(f"real-hardware test: pass {option.replace('_', '-')} to run it")
    return str(value)


def write_test_dng(path: os.PathLike[str] | str, raw: np.ndarray, *, bits: int = 10) -> bytes:
    """Write a real Bayer-RGGB DNG of ``raw`` (uint16) with the twin's DNG encoder; return its bytes."""
    from pathlib import Path

    from scopectl.twin.dng import write_dng

    data = write_dng(
        raw.astype(np.uint16),
        cfa="RGGB",
        black_level=64,
        white_level=(1 << bits) - 1,
        color_matrix=np.eye(3),
        as_shot_neutral=np.ones(3),
        exposure_s=0.01,
        iso=100,
        make="scopectl",
        model="test",
    )
    Path(path).write_bytes(data)
    return data
