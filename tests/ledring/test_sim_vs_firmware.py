"""Differential test: random (seeded) request streams, valid and broken, give byte-identical replies from
the Python board model, the simulator on a pty and the real firmware on simavr."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any

import pytest
import serial

from scopectl.hardware.ledring.protocol import crc8, encode_request
from scopectl.hardware.ledring.sim import SimulatedLedBoard
from scopectl.hardware.ledring.sim.firmware_model import BoardCore, adc_from_mv


def random_lines(rng: random.Random, count: int) -> list[bytes]:
    """Requests of every kind, arguments in and out of range, and the usual wire damage."""
    commands: dict[str, int] = {"HELLO": 0, "SET": 4, "ALL": 3, "BRI": 1, "SHOW": 0, "OFF": 0, "BAT": 0}
    commands |= {"STATE": 0, "TIMEOUT": 1, "BLINK": 1}
    lines: list[bytes] = []
    for seq in range(count):
        command = rng.choice(sorted(commands))
        if command == "TIMEOUT":
            args = [rng.choice([0, 60000, 600000, 600001])]  # never short enough to fire during the test
        else:
            args = [
                rng.choice([0, 1, 11, 12, 127, 255, 256, rng.randrange(300)])
                for _ in range(commands[command])
            ]
            if rng.random() < 0.1:
                args.append(7)  # wrong argument count
        line = encode_request(seq & 0xFF, command, args)
        damage = rng.random()
        if damage < 0.08 and lines:
            line = lines[-1]  # a retry of the previous line
        elif damage < 0.14:
            body = line[:-4]
            line = body + b"*%02X\n" % ((crc8(body) + 1) & 0xFF)
        elif damage < 0.18:
            line = line[:3] + line[3:-4].lower() + line[-4:]
        elif damage < 0.21:
            line = line[:-1] + b"\r\n"
        elif damage < 0.24:
            line = bytes(rng.randrange(32, 127) for _ in range(rng.randrange(1, 120))) + b"\n"
        elif damage < 0.26:
            line = b"\n"
        lines.append(line)
    return lines


def read_lines(port: serial.Serial, count: int, timeout_s: float) -> list[bytes]:
    deadline = time.monotonic() + timeout_s
    out: list[bytes] = []
    buffer = bytearray()
    while len(out) < count and time.monotonic() < deadline:
        port.timeout = max(0.001, deadline - time.monotonic())
        buffer += port.read(1)
        if buffer.endswith(b"\n"):
            out.append(bytes(buffer))
            buffer.clear()
    return out


@pytest.mark.external("avr-toolchain", "simavr")
def test_random_streams_get_identical_replies(fil_board: Any, reboot: Callable[[Any], bytes]) -> None:
    rng = random.Random(2026)
    lines = random_lines(rng, 120)
    fil_board.board.battery_mv = 4000.0
    adc = adc_from_mv(4000.0)
    model = BoardCore(read_adc=lambda: adc)
    model.boot(0)
    with SimulatedLedBoard() as sim:
        sim.set_adc(adc)
        assert sim.path is not None
        with (
            serial.Serial(sim.path, 115200, timeout=1.0) as sim_port,
            serial.Serial(fil_board.url, 115200, timeout=1.0) as fil_port,
        ):
            for port in (sim_port, fil_port):  # start both from a fresh boot, the BOOT line consumed
                assert reboot(port).startswith(b"!:BOOT ")
            model.receive(encode_request(0xFE, "RESET"))
            compared = 0
            for line in lines:
                expected = model.receive(line).splitlines(keepends=True)
                sim_port.write(line)
                fil_port.write(line)
                from_sim = read_lines(sim_port, len(expected), 2.0)
                from_fil = read_lines(fil_port, len(expected), 5.0)
                assert from_sim == expected, line
                assert from_fil == expected, line
                compared += len(expected)
            assert compared > 100
            for port in (sim_port, fil_port):
                port.timeout = 0.1
                assert port.read(256) == b""
