"""A simulated LED-ring board (scopectl firmware, protocol 1) behind a pseudo-terminal.

The simulator serves :class:`~scopectl.hardware.ledring.sim.firmware_model.BoardCore` (the firmware's
behaviour in pure Python) on the master side of a pty from a thread; the driver opens the slave device path
like a real serial port, so :class:`~scopectl.hardware.ledring.serial_ring.SerialLedRing` runs unchanged.
The battery sags under LED load and over (optionally accelerated) time, and the faults a real board
shows can be injected (:class:`~scopectl.hardware.ledring.sim.pty_board.BoardFaults`): dropped, corrupted
and overrun bytes, a stalled board, a reset in mid-session and a brown-out when the battery cannot carry
the LED load.

Example
-------
>>> with SimulatedLedBoard() as board:                      # doctest: +SKIP
...     with SerialLedRing(board.path) as ring:
...         ring.set_all((255, 255, 255), brightness=128)
...     colors, brightness = board.ring_state()
"""

from __future__ import annotations

import numpy as np

from scopectl.hardware.ledring.sim.firmware_model import BatteryModel, BoardCore, adc_from_mv
from scopectl.hardware.ledring.sim.pty_board import BoardFaults, PtyBoard

__all__ = ["BoardFaults", "SimulatedLedBoard"]


class SimulatedLedBoard(PtyBoard):
    """The LED-ring firmware, simulated behind a pseudo-terminal.

    Parameters
    ----------
    faults
        Initial fault settings (see :class:`~scopectl.hardware.ledring.sim.pty_board.BoardFaults`); change
        them later through :attr:`faults` or :meth:`set_faults`.
    battery
        The battery model (default: a 2000 mAh cell at 90 % charge).
    virtual_clock
        If True, time stands still except through :meth:`advance_ms` (exact, repeatable tests of
        the watchdog and the battery alarm); otherwise the board runs on the wall clock.
    adc_noise_lsb
        Standard deviation of Gaussian noise added to each simulated ADC reading (in LSB).

    Attributes
    ----------
    core
        The firmware model (:class:`~scopectl.hardware.ledring.sim.firmware_model.BoardCore`); read it under
        :meth:`ring_state` rather than directly while the board is running.
    """

    name = "simulated LED ring"

    def __init__(
        self,
        *,
        faults: BoardFaults | None = None,
        battery: BatteryModel | None = None,
        virtual_clock: bool = False,
        adc_noise_lsb: float = 0.0,
    ) -> None:
        super().__init__(faults=faults, battery=battery, virtual_clock=virtual_clock)
        self.adc_noise_lsb = float(adc_noise_lsb)
        self._adc_override: int | None = None
        self.core = BoardCore(read_adc=self._read_adc)

    # ---- what the digital twin reads ------------------------------------------------------------------
    def ring_state(self) -> tuple[np.ndarray, int]:
        """Shown colours (``(12, 3)`` uint8 RGB, before brightness) and the brightness they are shown at."""
        with self._lock:
            return self.core.shown.copy(), int(self.core.brightness)

    def emitted(self) -> np.ndarray:
        """Channel values on the LEDs now (after brightness), ``(12, 3)`` uint8 RGB."""
        with self._lock:
            return self.core.wire_rgb()

    # ---- test hooks ---------------------------------------------------------------------------------
    def set_adc(self, value: int | None) -> None:
        """Force every battery ADC reading to ``value`` (0..1023); None returns to the battery model."""
        if value is not None and not 0 <= value <= 1023:
            raise ValueError(f"ADC value {value} is outside 0..1023")
        with self._lock:
            self._adc_override = value

    def note_overrun(self) -> None:
        """Flag a UART overrun for the line now arriving (it will be answered ``--:ER 6 BUSY``)."""
        with self._lock:
            self.core.note_overrun()

    # ---- model hooks --------------------------------------------------------------------------------
    def _boot(self) -> bytes:
        return self.core.boot(self._now_ms())

    def _feed(self, value: int) -> tuple[bytes, bool]:
        return self.core.receive(bytes((value,))), value == 0x0A

    def _tick(self, now_ms: int) -> bytes:
        return self.core.advance(now_ms)

    def _load_ma(self) -> float:
        return self.battery.load_ma(self.core.wire_rgb())

    def _note_overrun(self) -> None:
        self.core.note_overrun()

    def _read_adc(self) -> int:
        if self._adc_override is not None:
            return self._adc_override
        value = adc_from_mv(self.battery.voltage_mv(self._load_ma()))
        if self.adc_noise_lsb > 0:
            value = int(min(1023, max(0, round(value + self._rng.gauss(0.0, self.adc_noise_lsb)))))
        return value
