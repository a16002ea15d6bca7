"""A simulated Arduino Uno running plain StandardFirmata, behind a pseudo-terminal.

It implements the part of the Firmata protocol that pyfirmata2 (and :class:`FirmataLedRing`) use, with
StandardFirmata's behaviour: the version banner at boot, ``REPORT_VERSION``, the ``REPORT_FIRMWARE``,
``CAPABILITY_QUERY``, ``ANALOG_MAPPING_QUERY``, ``PIN_STATE_QUERY``, ``SAMPLING_INTERVAL`` and
``EXTENDED_ANALOG`` sysex messages, ``SET_PIN_MODE``, ``ANALOG_MESSAGE`` (PWM writes),
``DIGITAL_MESSAGE``, ``REPORT_ANALOG`` (analog values are then streamed every sampling interval),
``REPORT_DIGITAL`` and ``SYSTEM_RESET``.  Its parser follows Firmata's ``FirmataParser``: a command byte
in the middle of an incomplete message starts a new message.

The board drives a PWM-dimmed white LED on ``led_pin`` and measures the battery on analog pin
``battery_pin`` through a ``divider_ratio`` divider against a 5000 mV reference.
"""

from __future__ import annotations

import numpy as np

from scopectl.hardware.ledring.firmata import (
    ANALOG_MAPPING_QUERY,
    ANALOG_MAPPING_RESPONSE,
    ANALOG_MESSAGE,
    CAPABILITY_QUERY,
    CAPABILITY_RESPONSE,
    DIGITAL_MESSAGE,
    END_SYSEX,
    EXTENDED_ANALOG,
    MODE_ANALOG,
    MODE_I2C,
    MODE_INPUT,
    MODE_INPUT_PULLUP,
    MODE_OUTPUT,
    MODE_PWM,
    MODE_SERVO,
    PIN_STATE_QUERY,
    PIN_STATE_RESPONSE,
    REPORT_ANALOG,
    REPORT_DIGITAL,
    REPORT_FIRMWARE,
    REPORT_VERSION,
    SAMPLING_INTERVAL,
    SET_PIN_MODE,
    START_SYSEX,
    STRING_DATA,
    SYSTEM_RESET,
)
from scopectl.hardware.ledring.sim.firmware_model import BatteryModel
from scopectl.hardware.ledring.sim.pty_board import BoardFaults, PtyBoard

__all__ = ["FIRMATA_FIRMWARE_NAME", "SimulatedFirmataBoard"]

FIRMATA_FIRMWARE_NAME = "StandardFirmata.ino"
FIRMATA_VERSION = (2, 5)
FIRMWARE_VERSION = (2, 5)

NUM_DIGITAL = 20  # D0..D13 and A0..A5 as D14..D19, like an Uno
NUM_ANALOG = 6
PWM_PINS = (3, 5, 6, 9, 10, 11)
SERIAL_PINS = (0, 1)


def _two_bytes(value: int) -> bytes:
    return bytes((value & 0x7F, (value >> 7) & 0x7F))


class SimulatedFirmataBoard(PtyBoard):
    """StandardFirmata on a simulated Uno, with a white LED and a battery divider (see module docstring).

    Parameters
    ----------
    led_pin
        PWM pin of the white LED (3, 5, 6, 9, 10 or 11).
    battery_pin
        Analog channel (0..5) of the battery divider.
    divider_ratio
        Battery voltage divided by the voltage at the pin.
    led_full_ma
        LED current at 100 % duty.
    faults, battery, virtual_clock
        As for :class:`~scopectl.hardware.ledring.sim.pty_board.PtyBoard`.
    """

    name = "simulated Firmata board"

    def __init__(
        self,
        *,
        led_pin: int = 9,
        battery_pin: int = 0,
        divider_ratio: float = 2.0,
        led_full_ma: float = 60.0,
        faults: BoardFaults | None = None,
        battery: BatteryModel | None = None,
        virtual_clock: bool = False,
    ) -> None:
        if led_pin not in PWM_PINS:
            raise ValueError(f"led_pin {led_pin} is not a PWM pin of an Uno {PWM_PINS}")
        if not 0 <= battery_pin < NUM_ANALOG:
            raise ValueError(f"battery_pin {battery_pin} is outside 0..{NUM_ANALOG - 1}")
        if divider_ratio < 1.0:
            raise ValueError(f"divider_ratio must be >= 1, got {divider_ratio}")
        super().__init__(faults=faults, battery=battery, virtual_clock=virtual_clock)
        self.led_pin = led_pin
        self.battery_pin = battery_pin
        self.divider_ratio = float(divider_ratio)
        self.led_full_ma = float(led_full_ma)
        self.vref_mv = 5000.0
        self.modes = [MODE_OUTPUT] * NUM_DIGITAL
        self.pin_state = [0] * NUM_DIGITAL
        self.analog_reporting = [False] * NUM_ANALOG
        self.digital_reporting = [False] * 3
        self.sampling_interval_ms = 19
        self._next_sample_ms = 0
        self._command = 0
        self._channel = 0
        self._wait = 0
        self._data: list[int] = []
        self._sysex: bytearray | None = None
        self.boots = 0

    # ---- what the digital twin reads --------------------------------------------------------------
    def duty(self) -> int:
        """PWM duty 0..255 on the LED pin now (0 unless the pin is in PWM mode)."""
        with self._lock:
            if self.modes[self.led_pin] != MODE_PWM:
                return 255 if self.modes[self.led_pin] == MODE_OUTPUT and self.pin_state[self.led_pin] else 0
            return min(255, self.pin_state[self.led_pin])

    def ring_state(self) -> tuple[np.ndarray, int]:
        """The illumination as a ring would describe it: 12 white "LEDs" at brightness = PWM duty.

        A white LED at duty ``d`` emits like white colours shown at brightness ``d``, since
        ``(255 * (d + 1)) >> 8 == d``.
        """
        return np.full((12, 3), 255, np.uint8), self.duty()

    def adc_value(self) -> int:
        """The 10-bit reading of the battery pin now."""
        with self._lock:
            mv = self.battery.voltage_mv(self._load_ma()) / self.divider_ratio
            return int(min(1023, max(0, round(mv * 1023 / self.vref_mv))))

    # ---- model hooks --------------------------------------------------------------------------------
    def _load_ma(self) -> float:
        return self.battery.quiescent_ma + self.led_full_ma * self.duty() / 255.0

    def _note_overrun(self) -> None:
        return  # StandardFirmata does not check for UART overruns: the byte is simply lost

    def _boot(self) -> bytes:
        self.boots += 1
        self._reset_pins()
        self._sysex = None
        self._wait = 0
        self._next_sample_ms = self._now_ms()
        return self._version() + self._firmware()

    def _reset_pins(self) -> None:
        """StandardFirmata's systemResetCallback: digital pins OUTPUT 0, analog pins ANALOG, no reports."""
        for pin in range(NUM_DIGITAL):
            self.modes[pin] = MODE_ANALOG if pin >= 14 else MODE_OUTPUT
            self.pin_state[pin] = 0
        self.analog_reporting = [False] * NUM_ANALOG
        self.digital_reporting = [False] * 3
        self.sampling_interval_ms = 19

    def _tick(self, now_ms: int) -> bytes:
        out = bytearray()
        if now_ms >= self._next_sample_ms:
            self._next_sample_ms = now_ms + self.sampling_interval_ms
            for channel, on in enumerate(self.analog_reporting):
                if on:
                    out += self._analog(channel)
        return bytes(out)

    def _analog(self, channel: int) -> bytes:
        value = self.adc_value() if channel == self.battery_pin else 0
        return bytes((ANALOG_MESSAGE | channel,)) + _two_bytes(value)

    @staticmethod
    def _version() -> bytes:
        return bytes((REPORT_VERSION, *FIRMATA_VERSION))

    @staticmethod
    def _firmware() -> bytes:
        name = b"".join(_two_bytes(c) for c in FIRMATA_FIRMWARE_NAME.encode("ascii"))
        return bytes((START_SYSEX, REPORT_FIRMWARE, *FIRMWARE_VERSION)) + name + bytes((END_SYSEX,))

    def _feed(self, value: int) -> tuple[bytes, bool]:
        """One byte through a FirmataParser-like state machine."""
        if self._sysex is not None:
            if value == END_SYSEX:
                message, self._sysex = bytes(self._sysex), None
                return self._on_sysex(message), True
            if value & 0x80:
                self._sysex = None  # a command byte cannot be inside a sysex: start over
            else:
                self._sysex.append(value)
                return b"", False
        if self._wait > 0 and value < 0x80:
            self._data.append(value)
            self._wait -= 1
            if self._wait == 0:
                return self._on_message(self._command, self._channel, self._data), True
            return b"", False
        self._wait = 0
        command = value & 0xF0 if value < 0xF0 else value
        self._channel = value & 0x0F
        self._data = []
        if command in (ANALOG_MESSAGE, DIGITAL_MESSAGE, SET_PIN_MODE):
            self._command, self._wait = command, 2
        elif command in (REPORT_ANALOG, REPORT_DIGITAL):
            self._command, self._wait = command, 1
        elif command == START_SYSEX:
            self._sysex = bytearray()
        elif command == SYSTEM_RESET:
            self._reset_pins()
            return b"", True
        elif command == REPORT_VERSION:
            return self._version(), True
        return b"", False

    def _on_message(self, command: int, channel: int, data: list[int]) -> bytes:
        if command == ANALOG_MESSAGE:
            return self._analog_write(channel, data[0] | (data[1] << 7))
        if command == DIGITAL_MESSAGE:
            mask = data[0] | (data[1] << 7)
            for bit in range(8):
                pin = channel * 8 + bit
                if pin < NUM_DIGITAL and self.modes[pin] == MODE_OUTPUT:
                    self.pin_state[pin] = (mask >> bit) & 1
            return b""
        if command == SET_PIN_MODE:
            return self._set_mode(data[0], data[1])
        if command == REPORT_ANALOG:
            if channel < NUM_ANALOG:
                self.analog_reporting[channel] = bool(data[0])
                if data[0]:
                    return self._analog(channel)  # StandardFirmata reports the value at once
            return b""
        if command == REPORT_DIGITAL:
            if channel < len(self.digital_reporting):
                self.digital_reporting[channel] = bool(data[0])
                if data[0]:
                    return bytes((DIGITAL_MESSAGE | channel, 0, 0))
            return b""
        return b""

    def _analog_write(self, pin: int, value: int) -> bytes:
        if pin < NUM_DIGITAL and self.modes[pin] == MODE_PWM:
            self.pin_state[pin] = value
        return b""

    def _set_mode(self, pin: int, mode: int) -> bytes:
        if pin >= NUM_DIGITAL or pin in SERIAL_PINS:
            return b""
        if mode == MODE_PWM and pin not in PWM_PINS:
            return self._string("Unknown pin mode")
        if mode not in (MODE_INPUT, MODE_OUTPUT, MODE_ANALOG, MODE_PWM, MODE_INPUT_PULLUP):
            return self._string("Unknown pin mode")
        if mode == MODE_ANALOG and pin < 14:
            return self._string("Unknown pin mode")
        self.modes[pin] = mode
        self.pin_state[pin] = 0
        return b""

    @staticmethod
    def _string(text: str) -> bytes:
        payload = b"".join(_two_bytes(c) for c in text.encode("ascii"))
        return bytes((START_SYSEX, STRING_DATA)) + payload + bytes((END_SYSEX,))

    def _on_sysex(self, message: bytes) -> bytes:
        if not message:
            return b""
        command, data = message[0], message[1:]
        if command == REPORT_FIRMWARE:
            return self._firmware()
        if command == CAPABILITY_QUERY:
            out = bytearray((START_SYSEX, CAPABILITY_RESPONSE))
            for pin in range(NUM_DIGITAL):
                if pin not in SERIAL_PINS:
                    out += bytes((MODE_INPUT, 1, MODE_OUTPUT, 1, MODE_INPUT_PULLUP, 1))
                    if pin >= 14:
                        out += bytes((MODE_ANALOG, 10))
                    if pin in PWM_PINS:
                        out += bytes((MODE_PWM, 8))
                    out += bytes((MODE_SERVO, 14))
                    if pin in (18, 19):
                        out += bytes((MODE_I2C, 1))
                out.append(0x7F)
            out.append(END_SYSEX)
            return bytes(out)
        if command == ANALOG_MAPPING_QUERY:
            mapping = bytes(pin - 14 if pin >= 14 else 0x7F for pin in range(NUM_DIGITAL))
            return bytes((START_SYSEX, ANALOG_MAPPING_RESPONSE)) + mapping + bytes((END_SYSEX,))
        if command == PIN_STATE_QUERY and len(data) == 1:
            pin = data[0]
            if pin >= NUM_DIGITAL:
                return b""
            state = self.pin_state[pin]
            body = bytearray((START_SYSEX, PIN_STATE_RESPONSE, pin, self.modes[pin], state & 0x7F))
            if state > 0x7F:
                body.append((state >> 7) & 0x7F)
            body.append(END_SYSEX)
            return bytes(body)
        if command == SAMPLING_INTERVAL and len(data) == 2:
            self.sampling_interval_ms = max(1, data[0] | (data[1] << 7))
            return b""
        if command == EXTENDED_ANALOG and len(data) >= 2:
            value = 0
            for i, part in enumerate(data[1:]):
                value |= part << (7 * i)
            return self._analog_write(data[0], value)
        return b""
