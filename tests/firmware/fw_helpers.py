"""Helpers shared by the firmware tests (importable because tests/firmware/conftest.py puts this folder on
sys.path): paths, framing, make, a line-level serial client.

The CRC is the package's (:func:`scopectl.hardware.ledring.protocol.crc8`); the vectors generator
(``firmware/tools/gen_vectors.py``) is the reference, and ``tests/ledring/test_protocol.py`` and
``test_build.py`` check the package's CRC against the vectors it wrote."""

from __future__ import annotations

import importlib.util
import subprocess
import time
from pathlib import Path
from types import ModuleType

import pytest
import serial

from scopectl.hardware.ledring.protocol import crc8

REPO = Path(__file__).resolve().parents[2]
FIRMWARE = REPO / "firmware"
VECTORS = REPO / "protocols" / "led-ring-vectors.json"


def frame(body: str) -> bytes:
    """A protocol line: body, '*', CRC as 2 uppercase hex digits, '\\n'."""
    raw = body.encode("latin-1")
    return raw + b"*%02X\n" % crc8(raw)


def gen_vectors() -> ModuleType:
    """The vectors generator (``firmware/tools/gen_vectors.py``) imported as a module."""
    spec = importlib.util.spec_from_file_location("gen_vectors", FIRMWARE / "tools" / "gen_vectors.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def make(*targets: str, timeout_s: float = 110.0) -> subprocess.CompletedProcess[str]:
    """Run make in firmware/ and return the finished process (the caller checks the exit code).

    ``targets`` may include variable assignments (``VECTORS_H=...``).
    """
    return subprocess.run(
        ["make", "-C", str(FIRMWARE), *targets],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )


class Link:
    """A line-level serial client for the tests (pyserial on the pty), independent of the driver."""

    def __init__(self, port: str) -> None:
        self.port = serial.Serial(port, 115200, timeout=0.05)
        self.events: list[bytes] = []
        self.noise: list[bytes] = []  # lines with a bad CRC, e.g. the tail of !:BOOT cut by opening the port

    def close(self) -> None:
        self.port.close()

    def send(self, data: bytes) -> None:
        self.port.write(data)
        self.port.flush()

    def read_line(self, timeout_s: float = 3.0, *, skip_events: bool = True) -> bytes:
        """The next complete line (including '\\n'); event lines are moved to .events unless
        ``skip_events`` is False. Fails the test on timeout."""
        deadline = time.monotonic() + timeout_s
        buf = b""
        while time.monotonic() < deadline:
            buf += bytes(self.port.read_until(b"\n", 256))
            if buf.endswith(b"\n"):
                body, star, tail = buf.rstrip(b"\r\n").rpartition(b"*")
                if not star or tail != b"%02X" % crc8(body):
                    self.noise.append(buf)  # the protocol says: discard lines with a bad CRC
                    buf = b""
                    continue
                if skip_events and buf.startswith(b"!:"):
                    self.events.append(buf)
                    buf = b""
                    continue
                return buf
        pytest.fail(f"no line from the board within {timeout_s} s (partial: {buf!r})")

    def request(self, body: str, *, timeout_s: float = 3.0) -> bytes:
        """Send one framed request and return its reply line; events seen meanwhile go to .events."""
        self.send(frame(body))
        return self.read_line(timeout_s)

    def wait_event(self, name: str, *, timeout_s: float) -> bytes:
        """Wait for an event line ``!:<name>...``; fails the test on timeout."""
        for i, line in enumerate(self.events):
            if line.startswith(b"!:" + name.encode()):
                return self.events.pop(i)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            line = self.read_line(max(0.1, deadline - time.monotonic()), skip_events=False)
            if line.startswith(b"!:" + name.encode()):
                return line
            self.events.append(line)
        pytest.fail(f"no !:{name} event within {timeout_s} s (saw {self.events!r})")
