"""Fixtures of the LED-ring tests: the shared test vectors and the boards the contract tests run on.

``ring_target`` is parametrised over every implementation of scopectl's LED-ring protocol:

* ``sim``  — :class:`SimulatedLedBoard` behind a pty (always runs);
* ``fil``  — the real firmware on simavr (:class:`FirmwareInTheLoop`; needs avr-gcc and simavr);
* ``real`` — a board at ``--ledring-url`` (marked ``hardware``; skipped unless the option is given).

``firmata_target`` does the same for StandardFirmata boards (``sim`` and ``real`` with ``--firmata-port``).
"""

from __future__ import annotations

import importlib
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from scopectl.hardware.ledring.protocol import encode_reply, encode_request
from scopectl.hardware.ledring.sim import SimulatedFirmataBoard, SimulatedLedBoard
from support import require_option

VECTORS_PATH = Path(__file__).resolve().parents[2] / "protocols" / "led-ring-vectors.json"


@pytest.fixture(scope="session")
def vectors() -> dict[str, Any]:
    """The shared protocol test vectors (``protocols/led-ring-vectors.json``)."""
    data: dict[str, Any] = json.loads(VECTORS_PATH.read_text(encoding="ascii"))
    return data


@dataclass
class RingTarget:
    """A board speaking scopectl's protocol: where to open it and, for simulated ones, the board object."""

    kind: str
    url: str
    board: Any = None
    open_kwargs: dict[str, Any] = field(default_factory=dict)


@pytest.fixture(scope="session")
def fil_module() -> Any:
    """The firmware-in-the-loop module, with firmware and harness built once per session.

    Needs the ``avr-toolchain`` and ``simavr`` capabilities (see ``tests/conftest.py``).
    """
    module = importlib.import_module("scopectl.hardware.ledring.sim.fil")
    module.build_firmware()
    return module


def _fil_path(fil: Any) -> str:
    path = getattr(fil, "path", None)
    assert isinstance(path, str), "FirmwareInTheLoop.start() must make the pty path available as .path"
    return path


@pytest.fixture
def fil_board(fil_module: Any) -> Iterator[RingTarget]:
    """The firmware in the loop, started (skips without avr-gcc/simavr, fails then in CI)."""
    fil = fil_module.FirmwareInTheLoop()
    fil.start()
    try:
        yield RingTarget("fil", _fil_path(fil), fil, {"timeout_s": 1.0, "connect_timeout_s": 5.0})
    finally:
        fil.stop()


@pytest.fixture(
    params=[
        "sim",
        pytest.param("fil", marks=pytest.mark.external("avr-toolchain", "simavr")),
        pytest.param("real", marks=pytest.mark.hardware),
    ]
)
def ring_target(request: pytest.FixtureRequest) -> Iterator[RingTarget]:
    """Each implementation of scopectl's LED-ring protocol in turn."""
    fast = {"timeout_s": 0.5, "connect_timeout_s": 2.0}
    if request.param == "sim":
        with SimulatedLedBoard() as board:
            assert board.path is not None
            yield RingTarget("sim", board.path, board, fast)
    elif request.param == "fil":
        yield request.getfixturevalue("fil_board")
    else:
        yield RingTarget("real", require_option(request.config, "--ledring-url"))


@pytest.fixture(params=["sim", pytest.param("real", marks=pytest.mark.hardware)])
def firmata_target(request: pytest.FixtureRequest) -> Iterator[RingTarget]:
    """Each StandardFirmata board in turn (simulated; real with ``--firmata-port``)."""
    if request.param == "sim":
        with SimulatedFirmataBoard() as board:
            assert board.path is not None
            yield RingTarget("sim", board.path, board, {"setup_wait_s": 0.0, "timeout_s": 0.3})
    else:
        yield RingTarget("real", require_option(request.config, "--firmata-port"))


def _read_line(port: Any, timeout_s: float) -> bytes:
    deadline = time.monotonic() + timeout_s
    line = bytearray()
    while not line.endswith(b"\n") and time.monotonic() < deadline:
        port.timeout = max(0.001, deadline - time.monotonic())
        line += port.read(1)
    return bytes(line)


@pytest.fixture
def reboot() -> Callable[[Any], bytes]:
    """A function that RESETs the board on an open port and returns its ``!:BOOT`` line.

    Lines still pending from before (e.g. the boot line of a board that started while the port was
    opened) are skipped up to the reply to the ``RESET``.
    """

    def run(port: Any) -> bytes:
        port.write(b"\n" + encode_request(0xFE, "RESET"))
        for _ in range(8):
            line = _read_line(port, 5.0)
            if line in (encode_reply(0xFE), b""):
                break
        assert line == encode_reply(0xFE), "no reply to RESET"
        return _read_line(port, 5.0)

    return run
