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

import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def require_option(config: pytest.Config, option: str) -> str:
    """Return a hardware option's value, or skip the test when it was not given."""
    value = config.getoption(option)
    if not value:
        pytest.skip(f"real-hardware test: pass {option.replace('_', '-')} to run it")
    return str(value)


def load_benchmark(name: str) -> ModuleType:
    """Import ``benchmarks/<name>.py`` (a script, not a package) so a test can run what it measures."""
    module_name = f"benchmarks_{name}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, BENCHMARKS / f"{name}.py")
    assert spec is not None and spec.loader is not None, name
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # dataclasses look their module up there
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[module_name]
        raise
    return module


def write_test_dng(path: os.PathLike[str] | str, raw: np.ndarray, *, bits: int = 10) -> bytes:
    """Write a real Bayer-RGGB DNG of ``raw`` (uint16) with the twin's DNG encoder; return its bytes."""
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
