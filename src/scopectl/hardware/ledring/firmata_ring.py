"""Driver for a board flashed with plain StandardFirmata, through pyfirmata2.

No custom firmware is needed: a white LED on a PWM pin is dimmed with ``analogWrite`` and the battery is
read on an analog pin through a resistive divider.  Firmata has no acknowledgements, so the driver
confirms every change by reading the pin back (``PIN_STATE_QUERY``, which StandardFirmata answers with
the pin's mode and last PWM value) and rewrites it when a byte was lost or the board reset.

pyfirmata2 quirks handled here (see ``shared/notes/hardware.md``): it opens only device paths (no
pyserial URLs); it busy-waits 5 s after opening (replaced by a configurable sleep, ``setup_wait_s``, in
a subclass, without touching the module-global ``BOARD_SETUP_WAIT_TIME``); analog values arrive only
through callbacks (the driver pumps ``iterate()`` itself, with deadlines, instead of running
pyfirmata2's reader thread, whose unguarded blocking reads can hang on a truncated message); and its
command handlers live in one class-level dict shared by all boards (the subclass gives each board its
own).  Every pyfirmata2/pyserial exception is translated at one boundary (``FirmataLedRing._guard``).
"""

from __future__ import annotations

import itertools
import logging
import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import pyfirmata2
import serial

from scopectl.errors import DeviceError, DeviceNotFoundError, DeviceProtocolError, DeviceTimeoutError
from scopectl.hardware.ledring.base import DeviceInfo, LedRing, LedState

__all__ = ["FirmataLedRing"]

log = logging.getLogger(__name__)

_PIN_STATE_QUERY = 0x6D
_PIN_STATE_RESPONSE = 0x6E
_REPORT_FIRMWARE = 0x79
_REPORT_VERSION = 0xF9
_REPORT_ANALOG = 0xC0
_STRING_DATA = 0x71
_MODE_PWM = 3

_LAYOUTS = ("arduino", "arduino_nano", "arduino_mega")


class _BoundedReads:
    """pyfirmata2's serial port, wrapped so that one ``iterate()`` cannot read forever.

    pyfirmata2 reads a sysex message until its ``END_SYSEX`` byte; if that byte is lost while the board
    streams analog reports, the loop never ends.  Reads past the deadline or the byte budget armed by
    :meth:`_FirmataConnection.iterate` return ``b""``, which pyfirmata2 turns into a ``TypeError``
    (``ord(b"")``) that the driver counts as a discarded message.
    """

    def __init__(self, port: Any) -> None:
        self._port = port
        self.deadline = math.inf
        self.budget = 1 << 30

    def read(self, size: int = 1) -> bytes:
        if self.budget <= 0 or time.monotonic() > self.deadline:
            return b""
        self.budget -= size
        data: bytes = self._port.read(size)
        return data

    def __getattr__(self, name: str) -> Any:
        return getattr(self._port, name)


class _FirmataConnection(pyfirmata2.Board):  # type: ignore[misc]
    """pyfirmata2's Board made safe to drive from one thread with deadlines.

    * command handlers per instance (pyfirmata2 keeps one dict shared by every board);
    * a plain sleep of ``setup_wait_s`` instead of the 5 s busy-wait after opening;
    * no draining loop inside the constructor (a board still streaming analog reports from an
      earlier session would keep it busy forever); the driver drains with a deadline instead;
    * every ``iterate()`` bounded in time and bytes (see :class:`_BoundedReads`);
    * no ``__del__`` side effects (the driver closes the board explicitly).
    """

    def __init__(
        self, port: str, *, layout: dict[str, Any], baudrate: int, read_timeout_s: float, setup_wait_s: float
    ) -> None:
        self._command_handlers: dict[int, Callable[..., None]] = {}
        self._setup_wait_s = setup_wait_s
        self._message_timeout_s = max(0.05, 2 * read_timeout_s)
        self._constructing = True
        self._sp: _BoundedReads | None = None
        super().__init__(port, layout, baudrate=baudrate, timeout=read_timeout_s)
        self._constructing = False

    @property
    def sp(self) -> Any:
        return self._sp

    @sp.setter
    def sp(self, port: Any) -> None:
        self._sp = None if port is None else _BoundedReads(port)

    def bytes_available(self) -> int:
        if self._constructing or self._sp is None:
            return 0
        count: int = self._sp.in_waiting
        return count

    def iterate(self) -> None:
        assert self._sp is not None
        self._sp.deadline = time.monotonic() + self._message_timeout_s
        self._sp.budget = 512
        try:
            super().iterate()
        finally:
            self._sp.deadline = math.inf
            self._sp.budget = 1 << 30

    def _Board__pass_time(self, t: float) -> None:  # noqa: N802 - overrides pyfirmata2's private name
        time.sleep(self._setup_wait_s if t >= 1.0 else t)

    def __del__(self) -> None:
        return


def _translate(address: str, what: str, exc: BaseException) -> DeviceError:
    text = " ".join(str(exc).split()) or type(exc).__name__
    if isinstance(exc, serial.SerialTimeoutException):
        return DeviceTimeoutError(
            f"Firmata LED at {address}: timed out {what}.", hint="Check the cable and power."
        )
    return DeviceError(
        f"Firmata LED at {address}: connection failed while {what} ({text}).",
        hint="Check the cable, then reopen it.",
    )


class FirmataLedRing(LedRing):
    """A white LED dimmed by PWM, and a battery divider, on a board running StandardFirmata.

    Its "ring" has one LED (:attr:`num_leds` = 1): :meth:`set_pattern` takes a ``(1, 3)`` colour, of
    which a white LED can show only the grey level ``v = round(mean(r, g, b))``; the PWM duty is
    ``(v * (brightness + 1)) >> 8`` (the same brightness law as the NeoPixel ring) and the recorded
    state is ``(v, v, v)`` at ``brightness``.

    Parameters
    ----------
    port
        Serial device path (pyfirmata2 does not accept pyserial URLs).
    led_pin
        PWM pin of the LED.
    battery_pin
        Analog input (0 = A0) of the battery divider.
    divider_ratio
        Battery voltage divided by the pin voltage.
    adc_reference_mv
        ADC reference voltage (AVcc = 5000 mV on an Uno).
    baudrate
        StandardFirmata uses 57600.
    timeout_s
        How long to wait for each answer (pin read-back, battery sample) before retrying.
    retries
        Retries after the first attempt.
    setup_wait_s
        Pause after opening the port (an Uno resets when its port opens and StandardFirmata starts
        after about 2 s); the firmware is then queried until it answers or ``connect_timeout_s`` passes.
    connect_timeout_s
        How long to keep asking the firmware to identify itself.
    layout
        pyfirmata2 board layout: ``"arduino"`` (Uno), ``"arduino_nano"`` or ``"arduino_mega"``.
    battery_samples
        Fresh analog samples per battery reading (the median is returned).

    Notes
    -----
    Public methods are thread-safe (serialised by a lock).
    """

    def __init__(
        self,
        port: str,
        *,
        led_pin: int = 9,
        battery_pin: int = 0,
        divider_ratio: float = 2.0,
        adc_reference_mv: float = 5000.0,
        baudrate: int = 57600,
        timeout_s: float = 1.0,
        retries: int = 3,
        setup_wait_s: float = 2.0,
        connect_timeout_s: float = 3.0,
        layout: str = "arduino",
        battery_samples: int = 3,
    ) -> None:
        super().__init__()
        if "://" in port:
            raise DeviceNotFoundError(
                f"Firmata LED: {port!r} is a URL, but pyfirmata2 opens only serial device paths.",
                hint="Give the device path, e.g. /dev/ttyACM0.",
            )
        if layout not in _LAYOUTS:
            raise ValueError(f"layout must be one of {_LAYOUTS}, got {layout!r}")
        if divider_ratio < 1.0 or adc_reference_mv <= 0:
            raise ValueError("divider_ratio must be >= 1 and adc_reference_mv positive")
        self.num_leds = 1
        self.address = port
        self.led_pin = int(led_pin)
        self.battery_pin = int(battery_pin)
        self.divider_ratio = float(divider_ratio)
        self.adc_reference_mv = float(adc_reference_mv)
        self.timeout_s = float(timeout_s)
        self.retries = int(retries)
        self.battery_samples = max(1, int(battery_samples))
        self.boot_count = 0
        self.rewrites = 0
        self.noise = 0
        self.board_messages: list[str] = []
        self._versions_expected = 0
        self._firmware: tuple[int, int, str] | None = None
        self._version: tuple[int, int] | None = None
        self._answer_log: list[tuple[int, int, int]] = []
        self._tag_index = 0
        self._samples = 0
        self._sample_value = 0.0
        self._duty = 0
        self._reporting_on = False
        layout_dict = pyfirmata2.BOARDS[layout]
        if self.led_pin not in layout_dict["pwm"]:
            raise ValueError(f"led_pin {self.led_pin} is not a PWM pin of a {layout} {layout_dict['pwm']}")
        if not 0 <= self.battery_pin < len(layout_dict["analog"]):
            raise ValueError(f"battery_pin {self.battery_pin} is not an analog input of a {layout}")
        self._tag_pins = [
            p for p in layout_dict["digital"] if p not in layout_dict["disabled"] and p != self.led_pin
        ]
        try:
            self._board = _FirmataConnection(
                port,
                layout=layout_dict,
                baudrate=baudrate,
                read_timeout_s=min(0.1, self.timeout_s),
                setup_wait_s=setup_wait_s,
            )
        except serial.SerialException as exc:
            raise DeviceNotFoundError(
                f"Firmata LED: cannot open {port} ({' '.join(str(exc).split())}).",
                hint="Check the cable and the device path (ls /dev/ttyACM* /dev/ttyUSB*).",
            ) from exc
        except (OSError, TypeError, ValueError) as exc:
            raise _translate(port, "opening", exc) from exc
        try:
            self._start(connect_timeout_s)
        except BaseException:
            self._do_close()
            self._closed = True
            raise

    # ---- the one boundary to pyfirmata2 -----------------------------------------------------------------
    @contextmanager
    def _guard(self, what: str) -> Iterator[None]:
        try:
            yield
        except (
            serial.SerialException,
            OSError,
            pyfirmata2.PinAlreadyTakenError,
            pyfirmata2.InvalidPinDefError,
        ) as exc:
            raise _translate(self.address, what, exc) from exc

    def _pump(self, done: Callable[[], bool], timeout_s: float) -> bool:
        """Handle incoming messages until ``done()`` or ``timeout_s`` passes; return ``done()``."""
        deadline = time.monotonic() + timeout_s
        with self._guard("reading"):
            while not done():
                if time.monotonic() >= deadline:
                    return False
                if not self._board.bytes_available():
                    time.sleep(0.001)
                    continue
                try:
                    self._board.iterate()
                except (TypeError, IndexError, ValueError):
                    # pyfirmata2 parses byte by byte; a message cut short by a lost byte ends in a read
                    # timeout (ord(b"")) or a short argument list.  Skip it: the caller retries.
                    self.noise += 1
        return True

    def _drain(self) -> None:
        self._pump(lambda: not self._board.bytes_available(), 0.2)

    # ---- handlers (called from iterate) ---------------------------------------------------------------
    def _on_version(self, major: int, minor: int) -> None:
        self._version = (major, minor)
        if self._versions_expected > 0:
            self._versions_expected -= 1
        else:
            self._on_boot()

    def _on_firmware(self, *data: int) -> None:
        if len(data) < 2 or len(data) > 200 or any(not 0 <= d < 0x80 for d in data):
            raise ValueError("malformed REPORT_FIRMWARE")
        chars = [data[i] | (data[i + 1] << 7) for i in range(2, len(data) - 1, 2)]
        name = "".join(chr(c) if 0x20 <= c < 0x7F else "?" for c in chars)
        self._firmware = (data[0], data[1], name)

    def _on_pin_state(self, *data: int) -> None:
        if len(data) < 3 or len(data) > 7 or any(not 0 <= d < 0x80 for d in data):
            raise ValueError("malformed PIN_STATE_RESPONSE")
        state = 0
        for i, part in enumerate(data[2:]):
            state |= part << (7 * i)
        self._answer_log.append((data[0], data[1], state))

    def _on_string(self, *data: int) -> None:
        """StandardFirmata reports problems (e.g. "Unknown pin mode") as STRING_DATA: log them."""
        chars = [data[i] | (data[i + 1] << 7) for i in range(0, len(data) - 1, 2)]
        text = "".join(chr(c) if 0x20 <= c < 0x7F else "?" for c in chars[:200])
        self.board_messages.append(text)
        log.warning("Firmata LED at %s: the board says %r", self.address, text)

    def _on_analog(self, value: float | None) -> None:
        if value is None or not 0.0 <= float(value) <= 1.0:
            self.noise += 1
            return
        self._sample_value = float(value)
        self._samples += 1

    def _on_boot(self) -> None:
        """An unsolicited version report: StandardFirmata just started (reset or brown-out)."""
        self.boot_count += 1
        self._record(self._off_state("boot"))
        self._reporting_on = False

    # ---- set-up -----------------------------------------------------------------------------------------
    def _start(self, connect_timeout_s: float) -> None:
        board = self._board
        board.add_cmd_handler(_REPORT_VERSION, self._on_version)
        board.add_cmd_handler(_REPORT_FIRMWARE, self._on_firmware)
        board.add_cmd_handler(_PIN_STATE_RESPONSE, self._on_pin_state)
        board.add_cmd_handler(_STRING_DATA, self._on_string)
        self._drain()
        # the version banner StandardFirmata prints at start-up may still arrive: it is not a reset
        self._versions_expected = 1 << 30
        end = time.monotonic() + max(connect_timeout_s, self.timeout_s)
        while self._firmware is None:
            with self._guard("identifying the firmware"):
                board.send_sysex(_REPORT_FIRMWARE, [])
                board.sp.write(bytes((_REPORT_VERSION,)))
            self._pump(
                lambda: self._firmware is not None and self._version is not None, min(0.25, self.timeout_s)
            )
            if self._firmware is None and time.monotonic() >= end:
                raise (DeviceProtocolError if self.noise else DeviceTimeoutError)(
                    f"Firmata LED at {self.address}: no Firmata answer within {connect_timeout_s:g} s.",
                    hint="Flash StandardFirmata (Arduino IDE: File > Examples > Firmata), check the baud rate "
                    "(57600), or use flavour 'scopectl' for boards running scopectl's firmware.",
                )
        self._pump(lambda: self._version is not None, self.timeout_s)
        self._drain()
        self._versions_expected = 0
        with self._guard("configuring the pins"):
            self._led = board.get_pin(f"d:{self.led_pin}:p")
            self._battery = board.get_pin(f"a:{self.battery_pin}:i")
            self._battery.register_callback(self._on_analog)
        self._reporting_on = True
        self._write_duty(0)
        self._record(LedState(np.zeros((1, 3), np.uint8), 0, time.time(), "off"))

    # ---- LED -------------------------------------------------------------------------------------------
    def _query_pin(self, pin: int) -> tuple[int, int] | None:
        """Ask for a pin's (mode, value); None when no answer came within the timeout.

        Firmata answers carry no sequence number, and a stalled board answers old queries late.  So
        every query is followed by a query of a *tag* pin, cycling through the other digital pins;
        only an answer for ``pin`` immediately followed by the answer for this query's tag counts.
        Late answers to earlier queries carry other tags and are skipped (a tag repeats only after
        ``len(tag pins)`` queries, far more than can be outstanding).
        """
        tag = self._tag_pins[self._tag_index % len(self._tag_pins)]
        self._tag_index += 1
        self._answer_log.clear()
        with self._guard("querying a pin"):
            self._board.send_sysex(_PIN_STATE_QUERY, [pin])
            self._board.send_sysex(_PIN_STATE_QUERY, [tag])
        found: list[tuple[int, int]] = []

        def answered() -> bool:
            log = self._answer_log
            for first, second in itertools.pairwise(log):
                if first[0] == pin and second[0] == tag:
                    found.append((first[1], first[2]))
                    return True
            return False

        self._pump(answered, self.timeout_s)
        return found[0] if found else None

    def _write_duty(self, duty: int) -> float:
        """Write the PWM duty and confirm it by reading the pin back; return the confirmation time."""
        seen: tuple[int, int] | None = None
        boots = self.boot_count
        for attempt in range(self.retries + 1):
            if attempt:
                self.rewrites += 1
            with self._guard("writing the LED pin"):
                if seen is not None and seen[0] != _MODE_PWM:
                    self._led.mode = pyfirmata2.PWM  # the board reset: PWM mode is gone
                self._led.write(duty / 255.0)
            seen = self._query_pin(self.led_pin)
            if seen == (_MODE_PWM, duty):
                self._duty = duty
                return time.time()
        if self.boot_count != boots:
            raise DeviceError(
                f"Firmata LED at {self.address} reset {self.boot_count - boots} times while switching the LED to "
                f"duty {duty}/255: brown-out?",
                hint="Charge or replace the battery, or lower the brightness.",
            )
        if seen is None:
            raise DeviceTimeoutError(
                f"Firmata LED at {self.address}: no answer to the pin read-back after {self.retries + 1} attempts.",
                hint="Check the cable and power; the board may have stalled (press reset).",
            )
        raise DeviceProtocolError(
            f"Firmata LED at {self.address}: pin {self.led_pin} reads back mode {seen[0]} value {seen[1]} after "
            f"writing PWM {duty}.",
            hint="Check that led_pin is a PWM pin and that the board runs StandardFirmata.",
        )

    def _do_set_pattern(self, colors: np.ndarray, brightness: int) -> LedState:
        grey = round(float(np.mean(colors[0].astype(np.float64))))
        duty = (grey * (brightness + 1)) >> 8
        shown_at = self._write_duty(duty)
        return LedState(np.full((1, 3), grey, np.uint8), brightness, shown_at, "set")

    def _do_off(self) -> LedState:
        shown_at = self._write_duty(0)
        brightness = self._state.brightness if self._state is not None else 0
        return LedState(np.zeros((1, 3), np.uint8), brightness, shown_at, "off")

    def _do_state(self) -> LedState:
        self._drain()
        seen = self._query_pin(self.led_pin)
        if seen is None:
            raise DeviceTimeoutError(f"Firmata LED at {self.address}: no answer to the pin read-back.")
        duty = seen[1] if seen[0] == _MODE_PWM else 0
        current = self._state
        if current is not None and int(current.emitted()[0, 0]) == duty:
            return current
        return LedState(np.full((1, 3), 255, np.uint8), min(255, duty), time.time(), "observed")

    # ---- battery -------------------------------------------------------------------------------------------
    def _do_battery_mv(self) -> float:
        values: list[float] = []
        for attempt in range(self.retries + 1):
            self._drain()
            if attempt or not self._reporting_on:
                with self._guard("enabling analog reports"):
                    self._board.sp.write(bytes((_REPORT_ANALOG | self.battery_pin, 1)))
                self._reporting_on = True
            while len(values) < self.battery_samples:
                if not self._pump(self._sample_waiter(), self.timeout_s):
                    break
                values.append(self._sample_value)
            if len(values) >= self.battery_samples:
                return float(np.median(values)) * self.adc_reference_mv * self.divider_ratio
        raise DeviceTimeoutError(
            f"Firmata LED at {self.address}: no battery samples on A{self.battery_pin} after {self.retries + 1} "
            "attempts.",
            hint="Check that the board runs StandardFirmata and the battery divider is wired to that pin.",
        )

    def _sample_waiter(self) -> Callable[[], bool]:
        """A predicate that becomes true when a battery sample newer than now has arrived."""
        target = self._samples + 1
        return lambda: self._samples >= target

    # ---- info / close ----------------------------------------------------------------------------------------
    def _do_info(self) -> DeviceInfo:
        assert self._firmware is not None
        major, minor, name = self._firmware
        protocol = f"{self._version[0]}.{self._version[1]}" if self._version else "?"
        return DeviceInfo(
            kind="ledring/firmata",
            model=name,
            firmware=f"{major}.{minor}",
            protocol=protocol,
            address=self.address,
            extra={
                "num_leds": 1,
                "led_pin": self.led_pin,
                "battery_pin": self.battery_pin,
                "divider_ratio": self.divider_ratio,
                "boot_count": self.boot_count,
            },
        )

    def _do_close(self) -> None:
        board = getattr(self, "_board", None)
        if board is None:
            return
        try:
            board.exit()
        except (serial.SerialException, OSError, AttributeError):
            return
