"""Shared machinery of the simulated boards: a pseudo-terminal served from a thread, with faults.

A simulated board owns both ends of a pty (``os.openpty``; the slave is put in raw mode and kept open
so the device stays usable while hosts open and close it).  Hosts open :attr:`PtyBoard.path` like a
real serial port; a thread reads the master end, passes each byte through the fault injector and the
board model, and writes the board's output back.  Subclasses model the firmware
(:class:`~scopectl.hardware.ledring.sim.led_board.SimulatedLedBoard`,
:class:`~scopectl.hardware.ledring.sim.firmata_board.SimulatedFirmataBoard`).
"""

from __future__ import annotations

import os
import random
import select
import threading
import time
import tty
from abc import ABC, abstractmethod
from dataclasses import dataclass, replace
from types import TracebackType
from typing import Self

from scopectl.errors import DeviceError
from scopectl.hardware.ledring.sim.firmware_model import BatteryModel

__all__ = ["BoardFaults", "PtyBoard"]


@dataclass(frozen=True)
class BoardFaults:
    """Fault settings of a simulated board (probabilities per byte, drawn from a seeded RNG).

    Attributes
    ----------
    rx_drop, rx_corrupt
        Probability that a byte sent to the board is lost / arrives with one bit flipped.
    tx_drop, tx_corrupt
        The same for bytes the board sends.
    rx_overrun
        Probability that a received byte is lost *and* the UART flags an overrun (our firmware then
        answers the line ``--:ER 6 BUSY``; Firmata just loses the byte).
    reset_after_messages
        Reset the board (as if its reset button were pressed) right after it has received this many
        further complete messages (lines, or Firmata messages), before it answers the last one.
        None: never.
    brownout_mv
        The board resets when the battery voltage under the present LED load falls below this, and
        stays dead while even its idle load keeps the voltage below it.
    seed
        Seed of the fault RNG (assigning new faults re-seeds it).
    """

    rx_drop: float = 0.0
    rx_corrupt: float = 0.0
    tx_drop: float = 0.0
    tx_corrupt: float = 0.0
    rx_overrun: float = 0.0
    reset_after_messages: int | None = None
    brownout_mv: float = 3000.0
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("rx_drop", "rx_corrupt", "tx_drop", "tx_corrupt", "rx_overrun"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"fault probability {name}={value} is outside 0..1")
        if self.reset_after_messages is not None and self.reset_after_messages < 1:
            raise ValueError(f"reset_after_messages must be >= 1, got {self.reset_after_messages}")


class PtyBoard(ABC):
    """A simulated board served on a pseudo-terminal (see the module docstring).

    Parameters
    ----------
    faults
        Initial fault settings.
    battery
        The battery model feeding the board and its LEDs.
    virtual_clock
        If True, time stands still except through :meth:`advance_ms` (exact, repeatable tests);
        otherwise the board runs on the wall clock.

    Notes
    -----
    One re-entrant lock guards all state; every public accessor is safe to call from any thread.
    """

    name = "simulated board"

    def __init__(
        self,
        *,
        faults: BoardFaults | None = None,
        battery: BatteryModel | None = None,
        virtual_clock: bool = False,
    ) -> None:
        self._lock = threading.RLock()
        self._faults = faults or BoardFaults()
        self._rng = random.Random(self._faults.seed)
        self._reset_countdown = self._faults.reset_after_messages
        self.battery = battery or BatteryModel()
        self.virtual_clock = virtual_clock
        self._t0 = time.monotonic()
        self._virtual_ms = 0
        self._battery_ms: int | None = None
        self._stall_until = 0.0
        self._dead = False
        self.resets = 0
        self.brownouts = 0
        self.messages_received = 0
        self.faults_injected = 0
        self._master: int | None = None
        self._slave: int | None = None
        self._wake: tuple[int, int] | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self.path: str | None = None

    # ---- model hooks (called with the lock held) -----------------------------------------------------
    @abstractmethod
    def _boot(self) -> bytes:
        """Reset the model to power-up state; return what the board sends when it starts."""

    @abstractmethod
    def _feed(self, value: int) -> tuple[bytes, bool]:
        """Process one received byte; return (bytes to send, whether a message just completed)."""

    @abstractmethod
    def _tick(self, now_ms: int) -> bytes:
        """Let the model's time run up to ``now_ms``; return what it sends meanwhile."""

    @abstractmethod
    def _load_ma(self) -> float:
        """Current drawn from the battery by the board and its LEDs now."""

    @abstractmethod
    def _note_overrun(self) -> None:
        """A received byte was lost to a UART overrun (the model decides what the loss does)."""

    # ---- configuration -----------------------------------------------------------------------------
    @property
    def faults(self) -> BoardFaults:
        return self._faults

    @faults.setter
    def faults(self, value: BoardFaults) -> None:
        with self._lock:
            self._faults = value
            self._rng = random.Random(value.seed)
            self._reset_countdown = value.reset_after_messages

    def set_faults(self, **changes: object) -> BoardFaults:
        """Replace some fault settings (keyword arguments of :class:`BoardFaults`); return the new ones."""
        self.faults = replace(self._faults, **changes)  # type: ignore[arg-type]
        return self._faults

    # ---- lifecycle ---------------------------------------------------------------------------------
    def start(self) -> str:
        """Open the pty, power the board up and serve it from a thread; return the device path."""
        with self._lock:
            if self._thread is not None:
                raise RuntimeError(f"{self.name} already started")
            master, slave = os.openpty()
            tty.setraw(slave)
            os.set_blocking(master, False)
            self._master, self._slave = master, slave
            self._wake = os.pipe()
            self.path = os.ttyname(slave)
            self._t0 = time.monotonic()
            self._battery_ms = None
            self._write(self._power_up())
            self._stop.clear()
            self._thread = threading.Thread(
                target=self._serve, name=f"sim-{type(self).__name__}", daemon=True
            )
            self._thread.start()
            return self.path

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop serving and close the pty (idempotent); waits at most ``timeout_s`` for the thread.

        Raises
        ------
        DeviceError
            If the serving thread failed (the error is attached as the cause).
        """
        thread = self._thread
        if thread is not None:
            self._stop.set()
            if self._wake is not None:
                os.write(self._wake[1], b"x")
            thread.join(timeout_s)
            if thread.is_alive():
                raise RuntimeError(f"{self.name} thread did not stop within {timeout_s} s")
        with self._lock:
            self._thread = None
            for fd in (self._master, self._slave, *(self._wake or ())):
                if fd is not None:
                    os.close(fd)
            self._master = self._slave = self._wake = None
        if self._error is not None:
            error, self._error = self._error, None
            raise DeviceError(f"{self.name} at {self.path} failed: {error!r}") from error

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # ---- battery -----------------------------------------------------------------------------------
    @property
    def battery_mv(self) -> float:
        """Battery terminal voltage under the present load, in millivolts."""
        with self._lock:
            self._update_battery()
            return self.battery.voltage_mv(self._load_ma())

    @battery_mv.setter
    def battery_mv(self, value: float) -> None:
        """Set the state of charge so that the voltage under the present load is ``value`` mV."""
        with self._lock:
            self._update_battery()
            self.battery.charge = self.battery.charge_for_mv(value, load_ma=self._load_ma())

    @property
    def load_ma(self) -> float:
        """Current drawn from the battery now, in milliamperes."""
        with self._lock:
            return self._load_ma()

    def _update_battery(self) -> None:
        now = self._now_ms()
        last = now if self._battery_ms is None else self._battery_ms
        self._battery_ms = now
        self.battery.drain(self._load_ma(), (now - last) / 1000.0)

    # ---- injected events -----------------------------------------------------------------------------
    def stall(self, duration_s: float) -> None:
        """Stop reading and answering for ``duration_s`` (bytes sent meanwhile wait in the pty)."""
        with self._lock:
            self._stall_until = time.monotonic() + duration_s

    def reset(self) -> None:
        """Reset the board now (as the reset button would)."""
        with self._lock:
            self.resets += 1
            self._write(self._power_up())

    def advance_ms(self, ms: int) -> None:
        """Virtual clock only: let ``ms`` milliseconds pass; what the board emits meanwhile is sent."""
        if not self.virtual_clock:
            raise RuntimeError("advance_ms needs virtual_clock=True")
        with self._lock:
            self._virtual_ms += int(ms)
            self._write(self._advance())

    # ---- internals (lock held) -----------------------------------------------------------------------
    def _now_ms(self) -> int:
        if self.virtual_clock:
            return self._virtual_ms
        return int((time.monotonic() - self._t0) * 1000)

    def _power_up(self) -> bytes:
        out = self._boot()
        self._dead = self.battery.voltage_mv(self._load_ma()) < self._faults.brownout_mv
        return b"" if self._dead else out

    def _browned_out(self) -> bool:
        return self.battery_mv < self._faults.brownout_mv

    def _brownout_reset(self) -> bytes:
        self.brownouts += 1
        self.resets += 1
        return self._power_up()

    def _advance(self) -> bytes:
        self._update_battery()
        out = self._tick(self._now_ms())
        if self._browned_out():
            return self._brownout_reset()
        return out

    def _receive(self, data: bytes) -> bytes:
        faults, rng = self._faults, self._rng
        out = bytearray()
        for value in data:
            if faults.rx_drop and rng.random() < faults.rx_drop:
                self.faults_injected += 1
                continue
            if faults.rx_overrun and rng.random() < faults.rx_overrun:
                self.faults_injected += 1
                self._note_overrun()
                continue
            if faults.rx_corrupt and rng.random() < faults.rx_corrupt:
                self.faults_injected += 1
                value ^= 1 << rng.randrange(8)
            reply, complete = self._feed(value)
            if complete:
                self.messages_received += 1
                if self._reset_countdown is not None:
                    self._reset_countdown -= 1
                    if self._reset_countdown <= 0:
                        self._reset_countdown = None
                        self.resets += 1
                        out += self._power_up()
                        break  # a rebooting board misses the rest of what was sent
                if self._browned_out():
                    out += self._brownout_reset()
                    break
            out += reply
        return bytes(out)

    def _transmit(self, data: bytes) -> bytes:
        faults, rng = self._faults, self._rng
        if not (faults.tx_drop or faults.tx_corrupt):
            return data
        out = bytearray()
        for value in data:
            if faults.tx_drop and rng.random() < faults.tx_drop:
                self.faults_injected += 1
                continue
            if faults.tx_corrupt and rng.random() < faults.tx_corrupt:
                self.faults_injected += 1
                value ^= 1 << rng.randrange(8)
            out.append(value)
        return bytes(out)

    def _write(self, data: bytes) -> None:
        if not data or self._master is None:
            return
        data = self._transmit(data)
        try:
            os.write(self._master, data)
        except BlockingIOError:
            return  # a UART has no flow control: what does not fit is lost

    def _serve(self) -> None:
        assert self._master is not None and self._wake is not None
        master, wake = self._master, self._wake[0]
        try:
            while not self._stop.is_set():
                with self._lock:
                    idle = self._dead or time.monotonic() < self._stall_until
                ready, _, _ = select.select([wake] if idle else [master, wake], [], [], 0.005)
                if self._stop.is_set():
                    return
                with self._lock:
                    if self._dead:
                        if self.battery.voltage_mv(self._load_ma()) >= self._faults.brownout_mv:
                            self._write(self._power_up())
                        continue
                    if time.monotonic() < self._stall_until:
                        continue
                    out = b"" if self.virtual_clock else self._advance()
                    if master in ready:
                        try:
                            data = os.read(master, 4096)
                        except (BlockingIOError, InterruptedError):
                            data = b""
                        out += self._receive(data)
                    self._write(out)
        except OSError as exc:
            self._error = exc
