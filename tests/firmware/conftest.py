"""Fixtures for the firmware tests: builds (once per session), the emulated board and a serial link."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fw_helpers import FIRMWARE, Link, make

from scopectl.hardware.ledring.sim.fil import FirmwareInTheLoop


@pytest.fixture(scope="session")
def firmware_elf() -> Path:
    """Build the AVR firmware (``make -C firmware``) once; return the ELF."""
    proc = make("all")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return FIRMWARE / "build" / "scopectl_ledring.elf"


@pytest.fixture(scope="session")
def fil_harness(firmware_elf: Path) -> Path:
    """Build the simavr harness (``make -C firmware fil``) once; return its path."""
    proc = make("fil")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return FIRMWARE / "build" / "ledring_fil"


@pytest.fixture
def fil(fil_harness: Path, firmware_elf: Path) -> Iterator[FirmwareInTheLoop]:
    """A freshly booted emulated board with a 4000 mV battery."""
    with FirmwareInTheLoop(battery_mv=4000, elf_path=firmware_elf, harness_path=fil_harness) as board:
        yield board


@pytest.fixture
def link(fil: FirmwareInTheLoop) -> Iterator[Link]:
    """A serial connection to the emulated board."""
    assert fil.path is not None
    conn = Link(fil.path)
    yield conn
    conn.close()
