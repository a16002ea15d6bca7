"""The Firmata codec of the Firmata driver: encoders against pyfirmata2's bytes and layouts, and the parser's
recovery from lost bytes (the driver's contract tests run it against the simulated board)."""

from __future__ import annotations

import pyfirmata2
from pyfirmata2.util import to_two_bytes

from scopectl.hardware.ledring import firmata
from scopectl.hardware.ledring.firmata import (
    AnalogValue,
    FirmataParser,
    FirmwareReport,
    PinState,
    StringData,
    VersionReport,
)


def _pairs(text: str) -> bytes:
    return b"".join(bytes(to_two_bytes(ord(c))) for c in text)


def test_layouts_are_pyfirmata2s() -> None:
    assert set(firmata.LAYOUTS) <= set(pyfirmata2.BOARDS)
    for name, layout in firmata.LAYOUTS.items():
        reference = pyfirmata2.BOARDS[name]
        assert tuple(range(layout.digital_pins)) == tuple(reference["digital"]), name
        assert tuple(range(layout.analog_inputs)) == tuple(reference["analog"]), name
        assert layout.pwm_pins == tuple(reference["pwm"]), name
        assert layout.reserved_pins == tuple(reference["disabled"]), name


def test_encoders_write_what_pyfirmata2_writes() -> None:
    # pyfirmata2's Pin.write in PWM mode, Pin.mode = PWM, Pin.enable_reporting, Board.send_sysex
    assert firmata.analog_write(9, 200) == bytes((pyfirmata2.ANALOG_MESSAGE + 9, *to_two_bytes(200)))
    assert firmata.set_pin_mode(9, firmata.MODE_PWM) == bytes((pyfirmata2.SET_PIN_MODE, 9, pyfirmata2.PWM))
    assert firmata.report_analog(3, True) == bytes((pyfirmata2.REPORT_ANALOG + 3, 1))
    assert firmata.report_analog(3, False) == bytes((pyfirmata2.REPORT_ANALOG + 3, 0))
    assert firmata.query_pin_state(13) == bytes(
        (pyfirmata2.START_SYSEX, pyfirmata2.PIN_STATE_QUERY, 13, pyfirmata2.END_SYSEX)
    )
    assert firmata.query_firmware() == bytes(
        (pyfirmata2.START_SYSEX, pyfirmata2.REPORT_FIRMWARE, pyfirmata2.END_SYSEX)
    )
    assert firmata.query_version() == bytes((pyfirmata2.REPORT_VERSION,))
    # beyond ANALOG_MESSAGE's 16 channels (a Mega's pin 44): EXTENDED_ANALOG, 7 bits per byte
    assert firmata.analog_write(44, 200) == bytes((0xF0, pyfirmata2.EXTENDED_ANALOG, 44, 200 & 0x7F, 1, 0xF7))


def test_parser_decodes_the_messages_the_driver_reads() -> None:
    parser = FirmataParser()
    stream = (
        bytes((0xF9, 2, 5))
        + bytes((0xF0, 0x79, 2, 5)) + _pairs("StandardFirmata.ino") + bytes((0xF7,))
        + bytes((0xE0, 0x23, 0x06))  # A0 = 0x23 + (6 << 7) = 803
        + bytes((0xF0, 0x6E, 9, 3, 0x7F, 0x01, 0xF7))  # pin 9, PWM, value 255
        + bytes((0xF0, 0x71)) + _pairs("Unknown pin mode") + bytes((0xF7,))
        + bytes((0x90, 0x01, 0x00))  # a digital port report: parsed, not used
    )  # fmt: skip
    messages = [m for i in range(len(stream)) for m in parser.feed(stream[i : i + 1])]
    assert messages == [
        VersionReport(2, 5),
        FirmwareReport(2, 5, "StandardFirmata.ino"),
        AnalogValue(0, 803),
        PinState(9, 3, 255),
        StringData("Unknown pin mode"),
    ]
    assert parser.feed(stream) == messages  # the same in one chunk
    assert parser.discarded == 0


def test_a_lost_byte_costs_one_message_not_the_next() -> None:
    parser = FirmataParser()
    # an analog report cut after its first data byte, a pin-state answer that lost its END_SYSEX, then intact ones
    stream = (
        bytes((0xE0, 0x10))
        + bytes((0xF0, 0x6E, 9, 3, 0x37))
        + bytes((0xF0, 0x6E, 9, 3, 0x37, 0xF7, 0xF9, 2, 5))
    )
    assert parser.feed(stream) == [PinState(9, 3, 0x37), VersionReport(2, 5)]
    assert parser.discarded == 2
    # data bytes outside any message (another firmware's text, line noise) are skipped, not parsed
    assert parser.feed(b"!:BOOT 1.0.0 1*4B\n") == []
    assert parser.skipped_bytes >= 17 and parser.discarded == 2


def test_malformed_and_endless_sysex_are_dropped() -> None:
    parser = FirmataParser()
    assert parser.feed(bytes((0xF0, 0x6E, 9, 0xF7))) == []  # pin state without a value
    assert parser.feed(bytes((0xF0, 0x79, 2, 0xF7))) == []  # firmware report without a minor version
    assert parser.feed(bytes((0xF0, 0xF7))) == []  # empty sysex
    assert parser.discarded == 3
    assert parser.feed(bytes((0xF0, 0x71)) + b"\x41\x00" * 400 + bytes((0xF7, 0xF9, 2, 5))) == [
        VersionReport(2, 5)
    ]
    assert parser.discarded == 4
