"""The part of the Firmata protocol that :class:`~scopectl.hardware.ledring.firmata_ring.FirmataLedRing` speaks.

Pure Python, no I/O: encoders for the messages the driver sends, an incremental parser for what a board
running StandardFirmata (protocol 2.x) sends back, and the pin layouts of the boards the driver knows.
The driver moves the bytes over :class:`~scopectl.hardware.ledring.link.SerialLink`.

Wire format (`Firmata protocol <https://github.com/firmata/protocol/blob/master/protocol.md>`_): a command
byte (bit 7 set; the low nibble of ``0x80``-``0xEF`` commands is a channel) followed by a fixed number of
7-bit data bytes, or a sysex message ``0xF0 <command> <7-bit data>... 0xF7``.  14-bit values travel as
two data bytes, least significant first; sysex strings as one such pair per character.

The parser follows Firmata's own ``FirmataParser``: a command byte always starts a new message, so a
message cut short by a lost byte is dropped (:attr:`FirmataParser.discarded`) instead of swallowing the
next one, and data bytes outside any message are skipped (:attr:`FirmataParser.skipped_bytes`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

__all__ = [
    "LAYOUTS",
    "MODE_PWM",
    "AnalogValue",
    "BoardLayout",
    "FirmataMessage",
    "FirmataParser",
    "FirmwareReport",
    "PinState",
    "StringData",
    "VersionReport",
    "analog_write",
    "query_firmware",
    "query_pin_state",
    "query_version",
    "report_analog",
    "set_pin_mode",
]

# command bytes
DIGITAL_MESSAGE = 0x90
ANALOG_MESSAGE = 0xE0
REPORT_ANALOG = 0xC0
REPORT_DIGITAL = 0xD0
START_SYSEX = 0xF0
SET_PIN_MODE = 0xF4
END_SYSEX = 0xF7
REPORT_VERSION = 0xF9
SYSTEM_RESET = 0xFF
# sysex commands
ANALOG_MAPPING_QUERY = 0x69
ANALOG_MAPPING_RESPONSE = 0x6A
CAPABILITY_QUERY = 0x6B
CAPABILITY_RESPONSE = 0x6C
PIN_STATE_QUERY = 0x6D
PIN_STATE_RESPONSE = 0x6E
EXTENDED_ANALOG = 0x6F
STRING_DATA = 0x71
REPORT_FIRMWARE = 0x79
SAMPLING_INTERVAL = 0x7A
# pin modes
MODE_INPUT = 0
MODE_OUTPUT = 1
MODE_ANALOG = 2
MODE_PWM = 3
MODE_SERVO = 4
MODE_I2C = 6
MODE_INPUT_PULLUP = 11

MAX_SYSEX_BYTES = 512
"""Longest sysex payload the parser keeps; a longer one is dropped as noise."""

# data bytes that follow each command (by its high nibble, or the whole byte for 0xF0-0xFF)
_DATA_BYTES = {
    DIGITAL_MESSAGE: 2,
    ANALOG_MESSAGE: 2,
    REPORT_ANALOG: 1,
    REPORT_DIGITAL: 1,
    SET_PIN_MODE: 2,
    REPORT_VERSION: 2,
}


@dataclass(frozen=True)
class BoardLayout:
    """The pins of a board as StandardFirmata numbers them.

    Attributes
    ----------
    digital_pins
        Digital pins ``0 .. digital_pins - 1``.
    analog_inputs
        Analog inputs ``A0 .. A(analog_inputs - 1)`` (Firmata's analog channels).
    pwm_pins
        Digital pins with PWM output.
    reserved_pins
        Digital pins Firmata cannot use (the serial port's RX and TX).
    """

    digital_pins: int
    analog_inputs: int
    pwm_pins: tuple[int, ...]
    reserved_pins: tuple[int, ...] = (0, 1)


LAYOUTS: dict[str, BoardLayout] = {
    "arduino": BoardLayout(14, 6, (3, 5, 6, 9, 10, 11)),
    "arduino_nano": BoardLayout(14, 8, (3, 5, 6, 9, 10, 11)),
    "arduino_mega": BoardLayout(54, 16, tuple(range(2, 14))),
}
"""Board layouts by name (the names and pin sets pyfirmata2's ``BOARDS`` uses; a test compares them)."""


def _seven_bit(value: int, what: str) -> int:
    if not 0 <= value < 0x80:
        raise ValueError(f"{what} {value} does not fit a Firmata data byte (0..127)")
    return value


def _sysex(command: int, data: Iterable[int] = ()) -> bytes:
    return bytes((START_SYSEX, command, *(_seven_bit(d, "sysex data") for d in data), END_SYSEX))


def set_pin_mode(pin: int, mode: int) -> bytes:
    """``SET_PIN_MODE``: put a pin into a mode (:data:`MODE_PWM`...)."""
    return bytes((SET_PIN_MODE, _seven_bit(pin, "pin"), _seven_bit(mode, "mode")))


def analog_write(pin: int, value: int) -> bytes:
    """Write a PWM (or servo) value: ``ANALOG_MESSAGE`` for pins 0..15, ``EXTENDED_ANALOG`` beyond."""
    if value < 0:
        raise ValueError(f"analog value {value} is negative")
    if 0 <= pin <= 0x0F and value < 1 << 14:
        return bytes((ANALOG_MESSAGE | pin, value & 0x7F, (value >> 7) & 0x7F))
    chunks = [value & 0x7F, (value >> 7) & 0x7F]
    rest = value >> 14
    while rest:
        chunks.append(rest & 0x7F)
        rest >>= 7
    return _sysex(EXTENDED_ANALOG, (pin, *chunks))


def report_analog(channel: int, enable: bool) -> bytes:
    """``REPORT_ANALOG``: start or stop streaming an analog input (every sampling interval)."""
    if not 0 <= channel <= 0x0F:
        raise ValueError(f"analog channel {channel} is outside 0..15")
    return bytes((REPORT_ANALOG | channel, 1 if enable else 0))


def query_firmware() -> bytes:
    """``REPORT_FIRMWARE`` query (answered with the firmware's name and version)."""
    return _sysex(REPORT_FIRMWARE)


def query_version() -> bytes:
    """``REPORT_VERSION`` query (answered with the Firmata protocol version)."""
    return bytes((REPORT_VERSION,))


def query_pin_state(pin: int) -> bytes:
    """``PIN_STATE_QUERY`` (answered with the pin's mode and last written value)."""
    return _sysex(PIN_STATE_QUERY, (pin,))


@dataclass(frozen=True)
class VersionReport:
    """``REPORT_VERSION``: the Firmata protocol version (sent on request and when the firmware starts)."""

    major: int
    minor: int


@dataclass(frozen=True)
class FirmwareReport:
    """``REPORT_FIRMWARE``: firmware version and name (non-printable characters become ``?``)."""

    major: int
    minor: int
    name: str


@dataclass(frozen=True)
class PinState:
    """``PIN_STATE_RESPONSE``: a pin's mode and state (for PWM pins the last value written)."""

    pin: int
    mode: int
    value: int


@dataclass(frozen=True)
class AnalogValue:
    """``ANALOG_MESSAGE`` from the board: one sample of an analog input (raw ADC counts)."""

    channel: int
    value: int


@dataclass(frozen=True)
class StringData:
    """``STRING_DATA``: a message from the firmware, e.g. ``"Unknown pin mode"``."""

    text: str


FirmataMessage = VersionReport | FirmwareReport | PinState | AnalogValue | StringData


def _text(pairs: tuple[int, ...], limit: int) -> str:
    chars = [pairs[i] | (pairs[i + 1] << 7) for i in range(0, len(pairs) - 1, 2)]
    return "".join(chr(c) if 0x20 <= c < 0x7F else "?" for c in chars[:limit])


class FirmataParser:
    """Splits the bytes a Firmata board sends into messages (see the module docstring).

    Attributes
    ----------
    discarded
        Messages dropped: cut short by a command byte, too long, or malformed.
    skipped_bytes
        Data bytes outside any message, and bytes of messages the parser does not decode.

    Notes
    -----
    Not thread-safe; feed it from one thread.
    """

    def __init__(self) -> None:
        self.discarded = 0
        self.skipped_bytes = 0
        self._command = 0
        self._wanted = 0
        self._data: list[int] = []
        self._sysex: bytearray | None = None

    def feed(self, data: bytes) -> list[FirmataMessage]:
        """Parse received bytes; return the messages they completed, in order."""
        out: list[FirmataMessage] = []
        for value in data:
            message = self._byte(value)
            if message is not None:
                out.append(message)
        return out

    def _byte(self, value: int) -> FirmataMessage | None:
        if value & 0x80:
            return self._command_byte(value)
        if self._sysex is not None:
            if len(self._sysex) >= MAX_SYSEX_BYTES:
                self._sysex = None
                self.discarded += 1
            else:
                self._sysex.append(value)
            return None
        if self._wanted == 0:
            self.skipped_bytes += 1
            return None
        self._data.append(value)
        if len(self._data) < self._wanted:
            return None
        self._wanted = 0
        return self._message(self._command, self._data)

    def _command_byte(self, value: int) -> FirmataMessage | None:
        if self._sysex is not None:
            if value == END_SYSEX:
                payload, self._sysex = bytes(self._sysex), None
                return self._sysex_message(payload)
            self._sysex = None  # a command byte cannot be part of a sysex message
            self.discarded += 1
        elif self._wanted:
            self.discarded += 1  # the message before was cut short
        self._wanted = 0
        self._data = []
        if value == START_SYSEX:
            self._sysex = bytearray()
            return None
        command = value & 0xF0 if value < 0xF0 else value
        wanted = _DATA_BYTES.get(command, 0)
        if wanted:
            self._command, self._wanted = value, wanted
        return None

    def _message(self, command: int, data: list[int]) -> FirmataMessage | None:
        kind = command & 0xF0 if command < 0xF0 else command
        if kind == ANALOG_MESSAGE:
            return AnalogValue(command & 0x0F, data[0] | (data[1] << 7))
        if kind == REPORT_VERSION:
            return VersionReport(data[0], data[1])
        self.skipped_bytes += 1 + len(data)  # digital port reports and echoes: not used by the driver
        return None

    def _sysex_message(self, payload: bytes) -> FirmataMessage | None:
        if not payload:
            self.discarded += 1
            return None
        command, data = payload[0], tuple(payload[1:])
        if command == REPORT_FIRMWARE:
            if len(data) < 2 or len(data) > 200:
                self.discarded += 1
                return None
            return FirmwareReport(data[0], data[1], _text(data[2:], 100))
        if command == PIN_STATE_RESPONSE:
            if not 3 <= len(data) <= 7:
                self.discarded += 1
                return None
            state = 0
            for i, part in enumerate(data[2:]):
                state |= part << (7 * i)
            return PinState(data[0], data[1], state)
        if command == STRING_DATA:
            return StringData(_text(data, 200))
        self.skipped_bytes += 2 + len(payload)
        return None
