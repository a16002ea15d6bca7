"""Driver for a board flashed with plain StandardFirmata: a PWM-dimmed white LED and a battery divider.

No custom firmware is needed: a white LED on a PWM pin is dimmed with ``analogWrite`` and the battery is
read on an analog pin through a resistive divider.  Firmata has no acknowledgements, so the driver
confirms every change by reading the pin back (``PIN_STATE_QUERY``, which StandardFirmata answers with
the pin's mode and last PWM value) and rewrites it when a byte was lost or the board reset.

The driver is composed of two parts it owns: a :class:`~scopectl.hardware.ledring.link.SerialLink` (the
one boundary to pyserial, which translates every vendor exception) and a
:class:`~scopectl.hardware.ledring.firmata.FirmataParser` (the Firmata codec).  It reads in the calling
thread, against a deadline for every wait, blocking in the port's read (20 ms at a time) rather than
spinning.  pyfirmata2's ``Board`` is not used: its constructor busy-waits (5 s unless a module global is
changed), drains the port with no deadline (a board still streaming analog reports keeps it busy
forever), its reader loops until a sysex message's end byte (for ever, if that byte is lost while analog
reports stream), and its command handlers are one dict shared by every board in the process (see
``shared/notes/hardware.md``).  Like pyfirmata2, the driver opens serial device paths only.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import time
from collections import deque
from collections.abc import Callable

import numpy as np

from scopectl.errors import DeviceError, DeviceNotFoundError, DeviceProtocolError, DeviceTimeoutError
from scopectl.hardware.ledring import firmata
from scopectl.hardware.ledring.base import DeviceInfo, LedRing, LedState
from scopectl.hardware.ledring.link import SerialLink

__all__ = ["FirmataLedRing"]

log = logging.getLogger(__name__)

_LAYOUTS = tuple(firmata.LAYOUTS)
_DRAIN_S = 0.2


class FirmataLedRing(LedRing):
    """A white LED dimmed by PWM, and a battery divider, on a board running StandardFirmata.

    Its "ring" has one LED (:attr:`num_leds` = 1): :meth:`set_pattern` takes a ``(1, 3)`` colour, of
    which a white LED can show only the grey level ``v = round(mean(r, g, b))``; the PWM duty is
    ``(v * (brightness + 1)) >> 8`` (the same brightness law as the NeoPixel ring) and the recorded
    state is ``(v, v, v)`` at ``brightness``.

    Parameters
    ----------
    port
        Serial device path (not a pyserial URL).
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
        Board layout (:data:`~scopectl.hardware.ledring.firmata.LAYOUTS`): ``"arduino"`` (Uno),
        ``"arduino_nano"`` or ``"arduino_mega"``.
    battery_samples
        Fresh analog samples per battery reading (the median is returned).

    Attributes
    ----------
    boot_count
        Resets of the board seen since the connection was made.
    rewrites
        PWM writes repeated because the read-back disagreed.
    noise
        Firmata messages dropped as cut short or malformed (diagnostics of the link).
    board_messages
        Every ``STRING_DATA`` text the board sent (StandardFirmata reports problems this way).

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
                f"Firmata LED: {port!r} is a URL, but the Firmata driver opens only serial device paths.",
                hint="Give the device path, e.g. /dev/ttyACM0.",
            )
        if layout not in _LAYOUTS:
            raise ValueError(f"layout must be one of {_LAYOUTS}, got {layout!r}")
        if divider_ratio < 1.0 or adc_reference_mv <= 0:
            raise ValueError("divider_ratio must be >= 1 and adc_reference_mv positive")
        board = firmata.LAYOUTS[layout]
        if led_pin not in board.pwm_pins:
            raise ValueError(f"led_pin {led_pin} is not a PWM pin of a {layout} {board.pwm_pins}")
        if not 0 <= battery_pin < board.analog_inputs:
            raise ValueError(f"battery_pin {battery_pin} is not an analog input of a {layout}")
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
        self.board_messages: list[str] = []
        self._versions_expected = 0
        self._firmware: tuple[int, int, str] | None = None
        self._version: tuple[int, int] | None = None
        self._answer_log: list[tuple[int, int, int]] = []
        self._tag_pins = [
            p for p in range(board.digital_pins) if p not in board.reserved_pins and p != self.led_pin
        ]
        self._tag_index = 0
        self._samples = 0
        self._sample_counts = 0
        self._analog_noise = 0
        self._duty = 0
        self._reporting_on = False
        self._pins_configured = False
        self._parser = firmata.FirmataParser()
        self._pending: deque[firmata.FirmataMessage] = deque()
        self._link = SerialLink(port, baudrate=baudrate, device="Firmata LED")
        try:
            time.sleep(max(0.0, float(setup_wait_s)))
            self._start(connect_timeout_s)
        except BaseException:
            self._do_close()
            self._closed = True
            raise

    @property
    def noise(self) -> int:
        """Firmata messages dropped as cut short or malformed, and analog samples out of range."""
        return self._parser.discarded + self._analog_noise

    # ---- receiving ---------------------------------------------------------------------------------------
    def _pump(self, done: Callable[[], bool], timeout_s: float) -> bool:
        """Handle incoming messages, one at a time, until ``done()`` or ``timeout_s`` passes; return ``done()``.

        Messages past the one that made ``done()`` true stay queued for the next call.  Waiting for bytes
        sleeps in the serial port's poll (at most 20 ms at a time), never past the deadline by more.
        """
        deadline = time.monotonic() + timeout_s
        while not done():
            if self._pending:
                self._handle(self._pending.popleft())
                continue
            if time.monotonic() >= deadline:
                return False
            self._pending.extend(self._parser.feed(self._link.read_chunk()))
        return True

    def _drain(self) -> None:
        """Handle everything already received (bounded in time: a board may stream without pause)."""
        self._pump(lambda: not self._pending and not self._link.bytes_waiting(), _DRAIN_S)

    def _handle(self, message: firmata.FirmataMessage) -> None:
        if isinstance(message, firmata.VersionReport):
            self._on_version(message.major, message.minor)
        elif isinstance(message, firmata.FirmwareReport):
            self._firmware = (message.major, message.minor, message.name)
        elif isinstance(message, firmata.PinState):
            self._answer_log.append((message.pin, message.mode, message.value))
        elif isinstance(message, firmata.StringData):
            self.board_messages.append(message.text)
            log.warning("Firmata LED at %s: the board says %r", self.address, message.text)
        elif message.channel == self.battery_pin:
            self._on_analog(message.value)

    def _on_version(self, major: int, minor: int) -> None:
        self._version = (major, minor)
        if self._versions_expected > 0:
            self._versions_expected -= 1
        else:
            self._on_boot()

    def _on_analog(self, counts: int) -> None:
        if counts > 1023:
            self._analog_noise += 1
            return
        self._sample_counts = counts
        self._samples += 1

    def _on_boot(self) -> None:
        """An unsolicited version report: StandardFirmata just started (reset or brown-out)."""
        self.boot_count += 1
        self._record(self._off_state("boot"))
        self._reporting_on = False

    # ---- set-up -----------------------------------------------------------------------------------------
    def _start(self, connect_timeout_s: float) -> None:
        self._drain()
        # the version banner StandardFirmata prints at start-up may still arrive: it is not a reset
        self._versions_expected = 1 << 30
        end = time.monotonic() + max(connect_timeout_s, self.timeout_s)
        while self._firmware is None:
            self._link.write(firmata.query_firmware() + firmata.query_version())
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
        self._link.write(
            firmata.set_pin_mode(self.led_pin, firmata.MODE_PWM)
            + firmata.report_analog(self.battery_pin, True)
        )
        self._reporting_on = self._pins_configured = True
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
        self._link.write(firmata.query_pin_state(pin) + firmata.query_pin_state(tag))
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
            if seen is not None and seen[0] != firmata.MODE_PWM:
                # the board reset: PWM mode is gone
                self._link.write(firmata.set_pin_mode(self.led_pin, firmata.MODE_PWM))
            self._link.write(firmata.analog_write(self.led_pin, duty))
            seen = self._query_pin(self.led_pin)
            if seen == (firmata.MODE_PWM, duty):
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
        duty = seen[1] if seen[0] == firmata.MODE_PWM else 0
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
                self._link.write(firmata.report_analog(self.battery_pin, True))
                self._reporting_on = True
            while len(values) < self.battery_samples:
                if not self._pump(self._sample_waiter(), self.timeout_s):
                    break
                values.append(self._sample_counts / 1023.0)
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
        """Stop the battery reports (best effort: the board may be gone) and close the port."""
        if self._pins_configured:
            with contextlib.suppress(DeviceError):
                self._link.write(firmata.report_analog(self.battery_pin, False))
        self._link.close()
