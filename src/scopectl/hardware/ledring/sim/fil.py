"""Firmware in the loop: the real LED-ring firmware on an emulated ATmega328P (simavr).

:class:`FirmwareInTheLoop` runs ``firmware/build/ledring_fil`` (built by ``make -C firmware fil``), which
loads the firmware ELF into simavr, bridges the emulated UART to a pseudo-terminal, feeds the emulated A0
from a settable battery voltage (through the board's 1:2 divider) and decodes the WS2812 bit stream on
PD6 from the cycle times of its edges. A host driver opens :attr:`FirmwareInTheLoop.path` like a real
serial port; :meth:`FirmwareInTheLoop.ring_state` returns what the ring would actually show.

Timing: the harness throttles emulated time to wall-clock time (never ahead; behind only when the machine
is too slow), so the firmware's uptime, silence watchdog and battery checks run in real time and a
timeout can only fire late, never early. Pass ``speed`` > 1 to run the emulation that many times faster
than real time (timeouts then take ``timeout_ms / speed`` of wall-clock time, at best).

Example
-------
>>> with FirmwareInTheLoop(battery_mv=3900) as fil:          # doctest: +SKIP
...     with SerialLedRing(fil.path) as ring:
...         ring.set_all((255, 0, 0), brightness=127)
...     colors, brightness = fil.ring_state()                   # colors[0] == (127, 0, 0)
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self

import numpy as np

from scopectl.errors import DeviceError, DeviceNotFoundError, DeviceTimeoutError

__all__ = ["DecodedFrame", "FirmwareInTheLoop", "build_firmware", "firmware_dir"]

NUM_LEDS = 12
_MAX_EVENT_LINE = 4096


def firmware_dir() -> Path:
    """The ``firmware/`` folder of this checkout (override with ``SCOPECTL_FIRMWARE_DIR``)."""
    env = os.environ.get("SCOPECTL_FIRMWARE_DIR")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[5] / "firmware"


def build_firmware(directory: Path | None = None, *, timeout_s: float = 300.0) -> tuple[Path, Path]:
    """Build the firmware ELF and the simavr harness with ``make -C firmware fil``.

    Parameters
    ----------
    directory
        The firmware folder (default :func:`firmware_dir`).
    timeout_s
        Give up after this many seconds.

    Returns
    -------
    tuple[Path, Path]
        The firmware ELF and the harness executable.

    Raises
    ------
    DeviceNotFoundError
        If ``make``, ``avr-gcc`` or the firmware folder is missing.
    DeviceError
        If the build fails or takes longer than ``timeout_s``.
    """
    directory = firmware_dir() if directory is None else Path(directory)
    missing = [p for p in ("make", "avr-gcc", "cc") if shutil.which(p) is None]
    if missing:
        raise DeviceNotFoundError(
            f"cannot build the LED-ring firmware: {', '.join(missing)} not on PATH; "
            "install gcc-avr, avr-libc, libsimavr-dev, libelf-dev and make"
        )
    if not (directory / "Makefile").is_file():
        raise DeviceNotFoundError(f"no firmware Makefile in {directory}; set SCOPECTL_FIRMWARE_DIR")
    try:
        proc = subprocess.run(
            ["make", "-C", str(directory), "fil"],
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise DeviceError(f"building the firmware in {directory} took longer than {timeout_s} s") from exc
    if proc.returncode != 0:
        tail = " | ".join((proc.stdout + proc.stderr).strip().splitlines()[-3:])
        raise DeviceError(f"`make -C {directory} fil` failed (exit {proc.returncode}): {tail}")
    return directory / "build" / "scopectl_ledring.elf", directory / "build" / "ledring_fil"


@dataclass(frozen=True)
class DecodedFrame:
    """One WS2812 frame as decoded from the emulated data pin.

    Attributes
    ----------
    index
        1 for the first frame since the harness started (the dark frame at boot).
    t_ms
        Emulated time when the frame was latched.
    rgb
        ``(12, 3)`` uint8, the channel values the LEDs receive (after brightness), RGB order.
    grb
        The raw wire bytes (G, R, B per LED).
    brightness
        The brightness the firmware applied to this frame (read from its RAM), or -1 if unknown.
    bits
        Number of bits decoded (288 for 12 LEDs).
    errors
        High phases outside both WS2812 windows, plus 1 if the bit count is not a whole number of bytes.
    t0h_cycles, t1h_cycles
        (min, max) high-phase length of the 0-bits and 1-bits in CPU cycles (62.5 ns); (0, 0) if none.
    max_low_cycles
        Longest low phase between two bits of the frame, in cycles.
    """

    index: int
    t_ms: float
    rgb: np.ndarray
    grb: bytes
    brightness: int
    bits: int
    errors: int
    t0h_cycles: tuple[int, int]
    t1h_cycles: tuple[int, int]
    max_low_cycles: int


def _int(obj: dict[str, Any], key: str) -> int:
    value = obj.get(key)
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"field {key!r} is not an integer")
    return value


def _pair(obj: dict[str, Any], key: str) -> tuple[int, int]:
    value = obj.get(key)
    if not (isinstance(value, list) and len(value) == 2 and all(isinstance(v, int) for v in value)):
        raise ValueError(f"field {key!r} is not a pair of integers")
    return int(value[0]), int(value[1])


def _parse_frame(obj: dict[str, Any]) -> DecodedFrame:
    rgb_hex = obj.get("rgb")
    grb_hex = obj.get("grb")
    if not isinstance(rgb_hex, str) or len(rgb_hex) != NUM_LEDS * 6:
        raise ValueError("field 'rgb' is not 72 hex digits")
    if not isinstance(grb_hex, str) or len(grb_hex) % 2:
        raise ValueError("field 'grb' is not hex bytes")
    t_ms = obj.get("t_ms")
    if not isinstance(t_ms, int | float):
        raise ValueError("field 't_ms' is not a number")
    rgb = np.frombuffer(bytes.fromhex(rgb_hex), dtype=np.uint8).reshape(NUM_LEDS, 3).copy()
    return DecodedFrame(
        index=_int(obj, "n"),
        t_ms=float(t_ms),
        rgb=rgb,
        grb=bytes.fromhex(grb_hex),
        brightness=_int(obj, "brightness"),
        bits=_int(obj, "bits"),
        errors=_int(obj, "errors"),
        t0h_cycles=_pair(obj, "t0h_cycles"),
        t1h_cycles=_pair(obj, "t1h_cycles"),
        max_low_cycles=_int(obj, "max_low_cycles"),
    )


class FirmwareInTheLoop:
    """The LED-ring firmware running on simavr behind a pseudo-terminal.

    Same surface as the Python simulators: :meth:`start` returns the device path, :meth:`stop`,
    context manager, :meth:`ring_state`, :attr:`battery_mv` (settable).

    Parameters
    ----------
    battery_mv
        Initial battery voltage in millivolts (A0 sees it through the divider).
    divider
        Battery divider ``(num, den)``: V(A0) = battery * den / num; must match the firmware build.
    vref_mv
        AVcc / ADC reference of the emulated board, millivolts.
    speed
        Emulated time runs at ``speed`` x wall-clock time (at most; 1.0 = real time).
    elf_path, harness_path
        Firmware ELF and harness executable (default: ``firmware/build/`` of this checkout).
    build
        Run ``make -C firmware fil`` (in :func:`firmware_dir`) in :meth:`start` first (incremental;
        needs the AVR toolchain).
    startup_timeout_s
        How long :meth:`start` waits for the harness to announce its pty and the boot frame.
    """

    name = "LED-ring firmware in the loop"

    def __init__(
        self,
        *,
        battery_mv: float = 4000.0,
        divider: tuple[int, int] = (2, 1),
        vref_mv: int = 5000,
        speed: float = 1.0,
        elf_path: Path | None = None,
        harness_path: Path | None = None,
        build: bool = False,
        startup_timeout_s: float = 15.0,
    ) -> None:
        if not 0 <= battery_mv <= 100_000:
            raise ValueError(f"battery_mv {battery_mv} is outside 0..100000")
        if divider[0] <= 0 or divider[1] <= 0:
            raise ValueError(f"divider {divider} must be two positive integers")
        if not 0 < speed <= 1000:
            raise ValueError(f"speed {speed} is outside (0, 1000]")
        build_dir = firmware_dir() / "build"
        self.elf_path = Path(elf_path) if elf_path is not None else build_dir / "scopectl_ledring.elf"
        self.harness_path = Path(harness_path) if harness_path is not None else build_dir / "ledring_fil"
        self.divider = (int(divider[0]), int(divider[1]))
        self.vref_mv = int(vref_mv)
        self.speed = float(speed)
        self.build = build
        self.startup_timeout_s = float(startup_timeout_s)
        self.path: str | None = None
        self._battery_mv = round(battery_mv)
        self._proc: subprocess.Popen[str] | None = None
        self._stderr: IO[bytes] | None = None
        self._reader: threading.Thread | None = None
        self._cond = threading.Condition()
        self._frames: list[DecodedFrame] = []
        self._battery_acks = 0
        self._exit_reason: str | None = None
        self._bad_lines: list[str] = []
        self.max_frames_kept = 10_000

    # ---- lifecycle ---------------------------------------------------------------------------------
    def start(self) -> str:
        """Start the emulated board; return the pty device path once the boot frame has been decoded.

        Raises
        ------
        DeviceNotFoundError
            If the harness or the firmware has not been built (run ``make -C firmware fil``).
        DeviceTimeoutError
            If the harness does not become ready within ``startup_timeout_s``.
        DeviceError
            If the harness exits during start-up.
        """
        if self._proc is not None:
            raise RuntimeError(f"{self.name} already started")
        if self.build:
            build_firmware(firmware_dir())
        for what, path in (("simavr harness", self.harness_path), ("firmware ELF", self.elf_path)):
            if not path.is_file():
                raise DeviceNotFoundError(
                    f"{what} {path} not found; build it with `make -C firmware fil` "
                    "(needs gcc-avr, avr-libc, libsimavr-dev, libelf-dev)"
                )
        with self._cond:
            self._frames = []
            self._exit_reason = None
            self._battery_acks = 0
        # lives as long as the harness; closed in stop()
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115
        num, den = self.divider
        try:
            self._proc = subprocess.Popen(
                [
                    str(self.harness_path),
                    "--elf",
                    str(self.elf_path),
                    "--battery-mv",
                    str(self._battery_mv),
                    "--divider",
                    f"{num}/{den}",
                    "--vref-mv",
                    str(self.vref_mv),
                    "--speed",
                    repr(self.speed),
                ],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=self._stderr,
                text=True,
                bufsize=1,
            )
        except OSError as exc:
            self._close_stderr()
            raise DeviceNotFoundError(f"cannot run the simavr harness {self.harness_path}: {exc}") from exc
        self._reader = threading.Thread(target=self._read_events, name="fil-events", daemon=True)
        self._reader.start()
        deadline = time.monotonic() + self.startup_timeout_s
        with self._cond:
            while self.path is None or not self._frames:
                if self._exit_reason is not None:
                    break
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
            ready = self.path is not None and bool(self._frames)
            reason = self._exit_reason
        if not ready:
            detail = self._stderr_tail()
            self.stop()
            if reason is not None:
                raise DeviceError(f"{self.name} exited during start-up ({reason}); {detail}")
            raise DeviceTimeoutError(
                f"{self.name} did not boot within {self.startup_timeout_s} s; {detail or 'no output'}"
            )
        assert self.path is not None
        return self.path

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop the emulation (idempotent); kills the harness if it does not quit within ``timeout_s``."""
        proc = self._proc
        if proc is not None:
            if proc.stdin is not None:
                with contextlib.suppress(OSError, ValueError):
                    proc.stdin.write("quit\n")
                    proc.stdin.flush()
                with contextlib.suppress(OSError, ValueError):
                    proc.stdin.close()
            try:
                proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout_s)
        if self._reader is not None:
            self._reader.join(timeout_s)
            self._reader = None
        if proc is not None and proc.stdout is not None:
            proc.stdout.close()
        self._proc = None
        self.path = None
        self._close_stderr()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # ---- what the digital twin and the tests read ---------------------------------------------------
    def ring_state(self) -> tuple[np.ndarray, int]:
        """The light the ring shows, as ``(colours, brightness)`` with the meaning of
        :meth:`SimulatedLedBoard.ring_state` (brightness applied as ``(c * (b + 1)) >> 8``).

        Only the wire is observed here, so the colours are the decoded channel values (already scaled) and the
        brightness is 255, which leaves them unchanged: the digital twin lit from either simulator gets the same
        light.  The firmware's own brightness setting is ``last_frame().brightness``.
        """
        return self.last_frame().rgb.copy(), 255

    def emitted(self) -> np.ndarray:
        """Channel values on the LEDs now (after brightness), ``(12, 3)`` uint8 RGB."""
        return self.last_frame().rgb.copy()

    def last_frame(self) -> DecodedFrame:
        """The most recent decoded WS2812 frame."""
        self._check_running()
        with self._cond:
            if not self._frames:
                raise DeviceError(f"{self.name} has not sent a frame yet")
            return self._frames[-1]

    def frames(self) -> list[DecodedFrame]:
        """Every frame decoded since :meth:`start` (at most :attr:`max_frames_kept`, oldest dropped)."""
        with self._cond:
            return list(self._frames)

    @property
    def frame_count(self) -> int:
        """Number of frames decoded since :meth:`start` (the boot frame is 1)."""
        with self._cond:
            return self._frames[-1].index if self._frames else 0

    def wait_for_frame(self, index: int, *, timeout_s: float = 5.0) -> DecodedFrame:
        """Wait until frame number ``index`` (counted from 1 at start) has been decoded; return it.

        Raises
        ------
        DeviceTimeoutError
            If it has not arrived within ``timeout_s``.
        """
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while True:
                for frame in reversed(self._frames):
                    if frame.index == index:
                        return frame
                    if frame.index < index:
                        break
                if self._exit_reason is not None:
                    raise DeviceError(f"{self.name} stopped ({self._exit_reason}) before frame {index}")
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise DeviceTimeoutError(f"{self.name}: frame {index} not decoded within {timeout_s} s")
                self._cond.wait(remaining)

    @property
    def battery_mv(self) -> float:
        """The battery voltage fed (through the divider) into the emulated A0, in millivolts."""
        return float(self._battery_mv)

    @battery_mv.setter
    def battery_mv(self, value: float) -> None:
        if not 0 <= value <= 100_000:
            raise ValueError(f"battery_mv {value} is outside 0..100000")
        mv = round(value)
        if self._proc is None:
            self._battery_mv = mv
            return
        self._check_running()
        with self._cond:
            acks = self._battery_acks
        self._send(f"battery {mv}")
        deadline = time.monotonic() + 5.0
        with self._cond:
            while self._battery_acks == acks:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._exit_reason is not None:
                    raise DeviceTimeoutError(f"{self.name} did not acknowledge the battery voltage {mv} mV")
                self._cond.wait(remaining)
        self._battery_mv = mv

    # ---- internals -----------------------------------------------------------------------------------
    def _check_running(self) -> None:
        if self._proc is None:
            raise DeviceError(f"{self.name} is not running; call start() first")
        with self._cond:
            if self._exit_reason is not None:
                raise DeviceError(f"{self.name} stopped: {self._exit_reason}; {self._stderr_tail()}")

    def _send(self, command: str) -> None:
        proc = self._proc
        if proc is None or proc.stdin is None:
            raise DeviceError(f"{self.name} is not running; call start() first")
        try:
            proc.stdin.write(command + "\n")
            proc.stdin.flush()
        except (OSError, ValueError) as exc:
            raise DeviceError(f"{self.name} control channel closed: {exc}") from exc

    def _read_events(self) -> None:
        proc = self._proc
        assert proc is not None and proc.stdout is not None
        for raw in proc.stdout:
            line = raw[:_MAX_EVENT_LINE]
            try:
                obj = json.loads(line)
                if not isinstance(obj, dict):
                    raise ValueError("not an object")
                self._handle(obj)
            except ValueError as exc:
                with self._cond:
                    self._bad_lines.append(f"{line.strip()[:120]} ({exc})")
        with self._cond:
            if self._exit_reason is None:
                self._exit_reason = f"harness exited (code {proc.poll()})"
            self._cond.notify_all()

    def _handle(self, obj: dict[str, Any]) -> None:
        event = obj.get("event")
        with self._cond:
            if event == "frame":
                self._frames.append(_parse_frame(obj))
                if len(self._frames) > self.max_frames_kept:
                    del self._frames[: len(self._frames) - self.max_frames_kept]
            elif event == "ready":
                pty = obj.get("pty")
                if not isinstance(pty, str) or not pty.startswith("/dev/"):
                    raise ValueError("bad pty path")
                self.path = pty
            elif event == "battery":
                self._battery_acks += 1
            elif event == "exit":
                self._exit_reason = str(obj.get("reason", "exit"))[:200]
            elif event == "error":
                self._bad_lines.append(str(obj.get("message", ""))[:200])
            self._cond.notify_all()

    def _stderr_tail(self) -> str:
        if self._stderr is None:
            return ""
        try:
            self._stderr.seek(0, os.SEEK_END)
            size = self._stderr.tell()
            self._stderr.seek(max(0, size - 400))
            text = self._stderr.read().decode("utf-8", "replace")
        except (OSError, ValueError):
            return ""
        lines = [ln for ln in text.splitlines() if ln.strip()]
        return "harness said: " + " | ".join(lines[-3:]) if lines else ""

    def _close_stderr(self) -> None:
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None
