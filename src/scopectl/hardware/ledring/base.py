"""The LED-ring device interface shared by every flavour (our firmware, plain StandardFirmata).

One small abstract class, python-microscope style: the public methods validate and clip their
arguments, keep the history of shown states and hold the lock; subclasses implement the ``_do_*``
hooks that talk to the hardware.

Thread safety: every public method takes an internal lock, so one ring may be shared by threads; the
calls are serialised (the protocols are lock-step anyway).
"""

from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self

import numpy as np

from scopectl.errors import DeviceError

__all__ = ["DeviceInfo", "LedRing", "LedState"]


@dataclass(frozen=True)
class DeviceInfo:
    """What a device says about itself.

    Attributes
    ----------
    kind
        The device role and flavour, e.g. ``"ledring/scopectl"`` or ``"ledring/firmata"``.
    model
        The model name the device reports (``SCOPECTL-LEDRING``, ``StandardFirmata.ino``...).
    firmware
        Firmware version as reported (semver for our firmware, ``major.minor`` for Firmata).
    protocol
        Protocol version (our protocol number, or the Firmata protocol version).
    address
        Where the device was opened (serial URL or device path).
    extra
        Further facts (number of LEDs, pins, board uptime...).
    """

    kind: str
    model: str
    firmware: str
    protocol: str
    address: str
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dictionary."""
        return {
            "kind": self.kind,
            "model": self.model,
            "firmware": self.firmware,
            "protocol": self.protocol,
            "address": self.address,
            "extra": dict(self.extra),
        }


@dataclass(frozen=True, eq=False)
class LedState:
    """The state of the ring as shown (not merely staged).

    Attributes
    ----------
    colors
        ``(num_leds, 3)`` uint8 RGB colours before brightness scaling (read-only array).
    brightness
        Global brightness 0..255; a channel ``c`` is emitted as ``(c * (brightness + 1)) >> 8``.
    shown_at
        Unix time (s) at which the state was confirmed shown (or observed, for board events).
    cause
        Why the state changed: ``"set"``, ``"off"``, ``"boot"`` (the board reset), ``"timeout"``
        (the board's watchdog switched the LEDs off), ``"observed"`` (read back from the board).
    """

    colors: np.ndarray
    brightness: int
    shown_at: float
    cause: str = "set"

    def __post_init__(self) -> None:
        colors = np.array(self.colors, dtype=np.uint8, copy=True)
        if colors.ndim != 2 or colors.shape[1] != 3:
            raise ValueError(f"LedState colors must be (N, 3), got {colors.shape}")
        colors.setflags(write=False)
        object.__setattr__(self, "colors", colors)
        if not 0 <= int(self.brightness) <= 255:
            raise ValueError(f"LedState brightness {self.brightness} is outside 0..255")

    @property
    def is_off(self) -> bool:
        """True when nothing is emitted (all colours black or brightness too low to light anything)."""
        return not bool(np.any(self.emitted()))

    def emitted(self) -> np.ndarray:
        """The channel values sent to the LEDs after brightness scaling, ``(N, 3)`` uint8."""
        scaled = (self.colors.astype(np.uint16) * (int(self.brightness) + 1)) >> 8
        return scaled.astype(np.uint8)

    def same_light(self, other: LedState) -> bool:
        """True when both states have equal colours and brightness (timestamps and causes ignored)."""
        return self.brightness == other.brightness and np.array_equal(self.colors, other.colors)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, LedState):
            return NotImplemented
        return self.same_light(other) and self.shown_at == other.shown_at and self.cause == other.cause

    __hash__ = None  # type: ignore[assignment]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dictionary (stored with each capture)."""
        return {
            "colors": self.colors.tolist(),
            "brightness": int(self.brightness),
            "shown_at": float(self.shown_at),
            "cause": self.cause,
        }


def _clip_channel(value: object, what: str) -> int:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be a number, got {value!r}") from None
    if not np.isfinite(number):
        raise ValueError(f"{what} must be finite, got {value!r}")
    return int(min(255, max(0, round(number))))


class LedRing(ABC):
    """An LED ring (or single LED) used as the phone microscope's illumination.

    Subclasses set :attr:`num_leds` and :attr:`address` and implement the ``_do_*`` hooks.  Public
    methods validate and clip their arguments (channel values and brightness are clipped to 0..255),
    record every change of the shown state in :attr:`history` with a Unix timestamp, and raise only
    :class:`scopectl.errors.DeviceError` subclasses for device problems.
    """

    num_leds: int = 12
    address: str = ""

    def __init__(self) -> None:
        self.history: list[tuple[float, LedState]] = []
        self._lock = threading.RLock()
        self._closed = False
        self._state: LedState | None = None

    # ---- public API -------------------------------------------------------------------------------
    def info(self) -> DeviceInfo:
        """Report what the device is (model, firmware and protocol versions, address)."""
        with self._lock:
            self._check_open()
            return self._do_info()

    def set_pattern(self, colors: np.ndarray, *, brightness: int) -> LedState:
        """Show one colour per LED at a global brightness, and return once the board has shown it.

        Parameters
        ----------
        colors
            ``(num_leds, 3)`` RGB values; clipped to 0..255 and rounded.
        brightness
            Global brightness; clipped to 0..255.

        Returns
        -------
        LedState
            The state as shown, with the time it was confirmed.
        """
        array = np.asarray(colors)
        if array.shape != (self.num_leds, 3):
            raise ValueError(f"colors must have shape ({self.num_leds}, 3), got {array.shape}")
        if not (np.issubdtype(array.dtype, np.number) or array.dtype == np.bool_):
            raise ValueError(f"colors must be numeric, got dtype {array.dtype}")
        values = array.astype(np.float64)
        if not np.all(np.isfinite(values)):
            raise ValueError("colors must be finite")
        clipped = np.clip(np.rint(values), 0, 255).astype(np.uint8)
        bri = _clip_channel(brightness, "brightness")
        with self._lock:
            self._check_open()
            state = self._do_set_pattern(clipped, bri)
            self._record(state)
            return state

    def set_all(self, rgb: tuple[int, int, int], *, brightness: int) -> LedState:
        """Show one colour on every LED (see :meth:`set_pattern`)."""
        if len(rgb) != 3:
            raise ValueError(f"rgb must have 3 values, got {rgb!r}")
        channel = [_clip_channel(v, "colour channel") for v in rgb]
        colors = np.tile(np.array(channel, dtype=np.uint8), (self.num_leds, 1))
        return self.set_pattern(colors, brightness=brightness)

    def off(self) -> LedState:
        """Switch every LED off and return once the board has done so."""
        with self._lock:
            self._check_open()
            state = self._do_off()
            self._record(state)
            return state

    def battery_mv(self) -> float:
        """Battery voltage in millivolts, as measured by the board now."""
        with self._lock:
            self._check_open()
            value = float(self._do_battery_mv())
            if not np.isfinite(value) or not 0.0 <= value <= 20000.0:
                raise DeviceError(f"LED ring at {self.address}: implausible battery reading {value} mV.")
            return value

    def state(self) -> LedState:
        """The state the LEDs show now (read back from the board where the flavour can)."""
        with self._lock:
            self._check_open()
            state = self._do_state()
            self._record(state)
            return state

    def close(self) -> None:
        """Release the connection (idempotent).  The LEDs are left as they are."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._do_close()

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called."""
        return self._closed

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # ---- helpers for subclasses -----------------------------------------------------------------------
    def _record(self, state: LedState) -> None:
        """Make ``state`` the current one; append it to the history when the light changed."""
        last = self.history[-1][1] if self.history else None
        if last is None or not last.same_light(state):
            self.history.append((state.shown_at, state))
        self._state = state

    def _off_state(self, cause: str, at: float | None = None) -> LedState:
        return LedState(
            np.zeros((self.num_leds, 3), np.uint8),
            self._state.brightness if self._state is not None else 0,
            time.time() if at is None else at,
            cause,
        )

    def _check_open(self) -> None:
        if self._closed:
            raise DeviceError(f"LED ring at {self.address} is closed; open it again.")

    # ---- hooks ----------------------------------------------------------------------------------------
    @abstractmethod
    def _do_info(self) -> DeviceInfo: ...

    @abstractmethod
    def _do_set_pattern(self, colors: np.ndarray, brightness: int) -> LedState: ...

    @abstractmethod
    def _do_off(self) -> LedState: ...

    @abstractmethod
    def _do_battery_mv(self) -> float: ...

    @abstractmethod
    def _do_state(self) -> LedState: ...

    @abstractmethod
    def _do_close(self) -> None: ...
