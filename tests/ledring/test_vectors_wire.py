"""The shared board vectors over a real pseudo-terminal: the simulator and the firmware in the loop give
byte-identical replies, so the simulated board cannot drift from the firmware."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
import serial

from scopectl.hardware.ledring.protocol import encode_event
from scopectl.hardware.ledring.sim import SimulatedLedBoard


def _bytes(text: str) -> bytes:
    return text.encode("latin-1")


def _read_line(port: serial.Serial, timeout_s: float) -> bytes:
    deadline = time.monotonic() + timeout_s
    line = bytearray()
    while not line.endswith(b"\n"):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        port.timeout = remaining
        line += port.read(1)
    return bytes(line)


def run_case_on_port(
    port: serial.Serial, case: dict[str, Any], hooks: dict[str, Any], timeout_s: float
) -> None:
    """Send each step's bytes and compare the lines that come back with the expected ones."""
    for index, step in enumerate(case["steps"]):
        if "set_adc" in step:
            hooks["set_adc"](step["set_adc"])
        elif "advance_ms" in step:
            hooks["advance_ms"](step["advance_ms"])
        else:
            if step.get("rx_overrun"):
                hooks["note_overrun"]()
            port.write(_bytes(step["send"]))
        got = [_read_line(port, timeout_s) for _ in step["expect"]]
        assert got == [_bytes(line) for line in step["expect"]], f"{case['name']} step {index}: {step}"
    port.timeout = 0.05
    assert port.read(256) == b"", f"{case['name']}: unexpected output after the last step"


def test_simulator_on_a_pty_passes_every_board_case(vectors: dict[str, Any]) -> None:
    default_adc = vectors["default_env"]["adc"]
    boot = encode_event("BOOT", (vectors["firmware"], vectors["protocol"]))
    with SimulatedLedBoard(virtual_clock=True) as board:
        assert board.path is not None
        hooks = {"set_adc": board.set_adc, "advance_ms": board.advance_ms, "note_overrun": board.note_overrun}
        with serial.Serial(board.path, 115200, timeout=1.0) as port:
            for case in vectors["board_cases"]:
                board.set_adc(default_adc)
                board.reset()
                assert _read_line(port, 1.0) == boot
                run_case_on_port(port, case, hooks, timeout_s=1.0)


@pytest.mark.external("avr-toolchain", "simavr")
def test_firmware_in_the_loop_gives_the_same_replies(
    vectors: dict[str, Any], fil_board: Any, reboot: Callable[[Any], bytes]
) -> None:
    """Every case a real-time emulator can run (those needing no virtual clock, ADC or overrun injection)."""
    runnable = [c for c in vectors["board_cases"] if not c.get("needs")]
    assert len(runnable) >= 25
    boot = encode_event("BOOT", (vectors["firmware"], vectors["protocol"]))
    with serial.Serial(fil_board.url, 115200, timeout=2.0) as port:
        for case in runnable:
            assert reboot(port) == boot  # a fresh board for each case
            run_case_on_port(port, case, {}, timeout_s=5.0)
