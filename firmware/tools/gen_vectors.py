#!/usr/bin/env python3
"""Generate ``protocols/led-ring-vectors.json`` from the hand-written cases below, and its C++ header.

The cases are written by hand from the protocol document (``protocols/led-ring-protocol.md``); this
script only appends the CRC-8 fields, so that nobody has to compute checksums by hand, and writes the
file in a stable layout.  It also writes ``firmware/host/led_ring_vectors.h``, the same vectors as C++
data for the firmware's host tests (generated from the JSON text, so the two cannot disagree; no JSON
parser is needed in C++).  Run it from anywhere::

    python3 firmware/tools/gen_vectors.py            # rewrite the JSON file and the header
    python3 firmware/tools/gen_vectors.py --check    # exit 1 if either is out of date

This script's :func:`crc8` is the reference CRC: the Python package's and the firmware's are tested
against the vectors it writes.

Expected values (replies, frame numbers, millivolts, scaled colours) are written literally in the cases;
nothing is computed by a reference implementation here except the CRC.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

FW = "1.0.0"
PROTO = 1
OUT = Path(__file__).resolve().parents[2] / "protocols" / "led-ring-vectors.json"
HEADER = Path(__file__).resolve().parents[1] / "host" / "led_ring_vectors.h"
ZERO72 = "0" * 72


def crc8(data: bytes) -> int:
    """CRC-8, polynomial 0x07, init 0x00, not reflected, no final XOR."""
    crc = 0
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = ((crc << 1) ^ 0x07) & 0xFF if crc & 0x80 else (crc << 1) & 0xFF
    return crc


def frame(body: str, *, eol: str = "\n") -> str:
    """Append ``*<CRC>`` and the line end to a request, reply or event body."""
    return f"{body}*{crc8(body.encode('latin-1')):02X}{eol}"


def bad_crc(body: str) -> str:
    """A frame whose CRC field is wrong (the correct value plus one)."""
    return f"{body}*{(crc8(body.encode('latin-1')) + 1) & 0xFF:02X}\n"


def leds(*pairs: tuple[int, str]) -> str:
    """72-hex-digit RRGGBB x 12 string, all zero except the given (index, 'RRGGBB') pairs."""
    cells = ["000000"] * 12
    for i, rgb in pairs:
        cells[i] = rgb
    return "".join(cells)


def step(send: str, *expect: str, **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"send": send, "expect": list(expect)}
    out.update(extra)
    return out


def advance(ms: int, *expect: str) -> dict[str, Any]:
    return {"advance_ms": ms, "expect": list(expect)}


def set_adc(value: int) -> dict[str, Any]:
    return {"set_adc": value, "expect": []}


BOOT = frame(f"!:BOOT {FW} {PROTO}")


def case(
    name: str,
    description: str,
    steps: list[dict[str, Any]],
    *,
    needs: list[str] | None = None,
    state: dict[str, Any] | None = None,
) -> dict[str, Any]:
    out: dict[str, Any] = {"name": name, "description": description}
    if needs:
        out["needs"] = needs
    out["steps"] = steps
    if state is not None:
        out["expect_state"] = state
    return out


def cases() -> list[dict[str, Any]]:
    c: list[dict[str, Any]] = []
    # ---------------------------------------------------------------- valid frames, every command
    c.append(
        case(
            "hello",
            "HELLO reports product, firmware version, protocol version and LED count.",
            [
                step(frame("00:HELLO"), frame(f"00:OK SCOPECTL-LEDRING {FW} {PROTO} 12")),
            ],
        )
    )
    c.append(
        case(
            "ping_uptime",
            "PING reports milliseconds since boot (virtual clock starts at 0 at boot).",
            [
                advance(1234),
                step(frame("01:PING"), frame("01:OK 1234")),
            ],
            needs=["virtual_clock"],
        )
    )
    c.append(
        case(
            "boot_state",
            "State right after boot: all off, brightness 255, frame 0, timeout 10000.",
            [
                step(frame("02:STATE"), frame(f"02:OK 255 0 10000 {ZERO72}")),
            ],
            state={
                "shown": ZERO72,
                "staged": ZERO72,
                "brightness": 255,
                "staged_brightness": 255,
                "frame_no": 0,
                "timeout_ms": 10000,
                "wire_rgb": ZERO72,
            },
        )
    )
    c.append(
        case(
            "set_is_staged_until_show",
            "SET stages one LED; STATE shows it only after SHOW.",
            [
                step(frame("03:SET 0 255 0 0"), frame("03:OK")),
                step(frame("04:SET 11 1 2 3"), frame("04:OK")),
                step(frame("05:STATE"), frame(f"05:OK 255 0 10000 {ZERO72}")),
                step(frame("06:SHOW"), frame("06:OK 1")),
                step(frame("07:STATE"), frame(f"07:OK 255 1 10000 {leds((0, 'FF0000'), (11, '010203'))}")),
            ],
            state={
                "shown": leds((0, "FF0000"), (11, "010203")),
                "staged": leds((0, "FF0000"), (11, "010203")),
                "brightness": 255,
                "frame_no": 1,
                "wire_rgb": leds((0, "FF0000"), (11, "010203")),
            },
        )
    )
    c.append(
        case(
            "all_with_brightness",
            "ALL + BRI 127: wire value is (c*(127+1))>>8; STATE reports the "
            "unscaled colours and the brightness of the shown frame.",
            [
                step(frame("08:BRI 127"), frame("08:OK")),
                step(frame("09:ALL 10 20 255"), frame("09:OK")),
                step(frame("0A:STATE"), frame(f"0A:OK 255 0 10000 {ZERO72}")),
                step(frame("0B:SHOW"), frame("0B:OK 1")),
                step(frame("0C:STATE"), frame(f"0C:OK 127 1 10000 {'0A14FF' * 12}")),
            ],
            state={
                "shown": "0A14FF" * 12,
                "staged": "0A14FF" * 12,
                "brightness": 127,
                "staged_brightness": 127,
                "frame_no": 1,
                "wire_rgb": "050A7F" * 12,
            },
        )
    )
    c.append(
        case(
            "brightness_extremes",
            "BRI 0 shows nothing (c*1>>8 = 0), BRI 255 shows c unchanged, BRI 1 gives c>>7.",
            [
                step(frame("10:ALL 255 128 1"), frame("10:OK")),
                step(frame("11:BRI 0"), frame("11:OK")),
                step(frame("12:SHOW"), frame("12:OK 1")),
                step(frame("13:STATE"), frame(f"13:OK 0 1 10000 {'FF8001' * 12}")),
                step(frame("14:BRI 1"), frame("14:OK")),
                step(frame("15:SHOW"), frame("15:OK 2")),
            ],
            state={"shown": "FF8001" * 12, "brightness": 1, "frame_no": 2, "wire_rgb": "010100" * 12},
        )
    )
    c.append(
        case(
            "set_then_all_overrides",
            "ALL overwrites every staged LED, a later SET changes one.",
            [
                step(frame("16:SET 3 9 9 9"), frame("16:OK")),
                step(frame("17:ALL 0 0 7"), frame("17:OK")),
                step(frame("18:SET 5 0 200 0"), frame("18:OK")),
                step(frame("19:SHOW"), frame("19:OK 1")),
            ],
            state={
                "shown": "".join("00C800" if i == 5 else "000007" for i in range(12)),
                "wire_rgb": "".join("00C800" if i == 5 else "000007" for i in range(12)),
                "frame_no": 1,
            },
        )
    )
    c.append(
        case(
            "off",
            "OFF clears the staged colours and shows the dark frame (brightness kept).",
            [
                step(frame("1A:ALL 1 2 3"), frame("1A:OK")),
                step(frame("1B:BRI 100"), frame("1B:OK")),
                step(frame("1C:SHOW"), frame("1C:OK 1")),
                step(frame("1D:OFF"), frame("1D:OK 2")),
                step(frame("1E:STATE"), frame(f"1E:OK 100 2 10000 {ZERO72}")),
                step(frame("1F:SHOW"), frame("1F:OK 3")),
            ],
            state={"shown": ZERO72, "staged": ZERO72, "brightness": 100, "frame_no": 3, "wire_rgb": ZERO72},
        )
    )
    c.append(
        case(
            "bat_4095",
            "BAT: 16 reads of 419 -> 419*5000*2/1023 = 4095.8 -> 4095 mV (floor).",
            [
                set_adc(419),
                step(frame("20:BAT"), frame("20:OK 4095")),
            ],
            needs=["adc"],
        )
    )
    c.append(
        case(
            "bat_extremes",
            "BAT at ADC 0 and 1023 (full scale = 5000 mV * divider 2).",
            [
                set_adc(0),
                step(frame("21:BAT"), frame("21:OK 0")),
                set_adc(1023),
                step(frame("22:BAT"), frame("22:OK 10000")),
                set_adc(330),
                step(frame("23:BAT"), frame("23:OK 3225")),
            ],
            needs=["adc"],
        )
    )
    c.append(
        case(
            "timeout_set",
            "TIMEOUT stores the watchdog period; STATE reports it; 0 and 600000 are valid.",
            [
                step(frame("24:TIMEOUT 600000"), frame("24:OK")),
                step(frame("25:STATE"), frame(f"25:OK 255 0 600000 {ZERO72}")),
                step(frame("26:TIMEOUT 0"), frame("26:OK")),
                step(frame("27:STATE"), frame(f"27:OK 255 0 0 {ZERO72}")),
            ],
            state={"timeout_ms": 0},
        )
    )
    c.append(
        case(
            "reset",
            "RESET answers OK, reboots through the AVR watchdog and announces !:BOOT; all "
            "state returns to the boot defaults.",
            [
                step(frame("28:ALL 5 5 5"), frame("28:OK")),
                step(frame("29:SHOW"), frame("29:OK 1")),
                step(frame("2A:TIMEOUT 1234"), frame("2A:OK")),
                step(frame("2B:RESET"), frame("2B:OK"), BOOT),
                step(frame("2C:STATE"), frame(f"2C:OK 255 0 10000 {ZERO72}")),
            ],
            state={
                "shown": ZERO72,
                "staged": ZERO72,
                "brightness": 255,
                "frame_no": 0,
                "timeout_ms": 10000,
                "wire_rgb": ZERO72,
            },
        )
    )
    c.append(
        case(
            "leading_zeros",
            "Arguments are decimal digit strings; leading zeros are allowed.",
            [
                step(frame("2D:BRI 000000000000000255"), frame("2D:OK")),
                step(frame("2E:SET 00 0 0 007"), frame("2E:OK")),
                step(frame("2F:SHOW"), frame("2F:OK 1")),
            ],
            state={"shown": leds((0, "000007")), "brightness": 255},
        )
    )
    c.append(
        case(
            "crlf",
            "A '\\r' before the '\\n' is ignored; replies end with '\\n' only.",
            [
                step(frame("30:HELLO", eol="\r\n"), frame(f"30:OK SCOPECTL-LEDRING {FW} {PROTO} 12")),
            ],
        )
    )
    c.append(
        case(
            "empty_lines_ignored",
            "An empty line (or a lone \\r\\n) gets no reply; hosts may send one to flush a partial line.",
            [
                step("\n"),
                step("\r\n"),
                step(frame("31:HELLO"), frame(f"31:OK SCOPECTL-LEDRING {FW} {PROTO} 12")),
            ],
        )
    )
    c.append(
        case(
            "seq_wraps",
            "SEQ is any two uppercase hex digits; FF is followed by 00.",
            [
                step(frame("FF:SHOW"), frame("FF:OK 1")),
                step(frame("00:SHOW"), frame("00:OK 2")),
            ],
            state={"frame_no": 2},
        )
    )
    # ---------------------------------------------------------------- watchdog and battery events
    c.append(
        case(
            "watchdog_fires",
            "Silence longer than timeout_ms (strictly greater) switches the LEDs off "
            "(like OFF: frame_no+1) and emits !:TIMEOUT once.",
            [
                step(frame("40:ALL 9 8 7"), frame("40:OK")),
                step(frame("41:SHOW"), frame("41:OK 1")),
                step(frame("42:TIMEOUT 1000"), frame("42:OK")),
                advance(1000),
                advance(1, frame("!:TIMEOUT")),
                advance(5000),
                step(frame("43:STATE"), frame(f"43:OK 255 2 1000 {ZERO72}")),
            ],
            needs=["virtual_clock"],
            state={"shown": ZERO72, "staged": ZERO72, "frame_no": 2, "wire_rgb": ZERO72},
        )
    )
    c.append(
        case(
            "watchdog_rearmed_by_requests",
            "Every valid request restarts the silence timer.",
            [
                step(frame("44:TIMEOUT 1000"), frame("44:OK")),
                advance(900),
                step(frame("45:PING"), frame("45:OK 900")),
                advance(1000),
                advance(1, frame("!:TIMEOUT")),
            ],
            needs=["virtual_clock"],
            state={"frame_no": 1},
        )
    )
    c.append(
        case(
            "watchdog_rearmed_by_error_reply",
            "A request answered with an error (but with a correct "
            "CRC and SEQ) also restarts the timer; a CRC failure does not.",
            [
                step(frame("46:TIMEOUT 1000"), frame("46:OK")),
                advance(900),
                step(frame("47:BRI 999"), frame("47:ER 3 RANGE")),
                advance(900),
                step(bad_crc("48:PING"), frame("--:ER 1 CRC")),
                advance(100),
                advance(1, frame("!:TIMEOUT")),
            ],
            needs=["virtual_clock"],
        )
    )
    c.append(
        case(
            "watchdog_disarmed_at_boot",
            "After boot the watchdog is not armed until the first valid request.",
            [
                advance(60000),
                step(frame("49:STATE"), frame(f"49:OK 255 0 10000 {ZERO72}")),
            ],
            needs=["virtual_clock"],
            state={"frame_no": 0},
        )
    )
    c.append(
        case(
            "watchdog_disabled",
            "TIMEOUT 0 disables the watchdog.",
            [
                step(frame("4A:TIMEOUT 0"), frame("4A:OK")),
                advance(700000),
                step(frame("4B:STATE"), frame(f"4B:OK 255 0 0 {ZERO72}")),
            ],
            needs=["virtual_clock"],
            state={"frame_no": 0},
        )
    )
    c.append(
        case(
            "watchdog_default_10s",
            "The default timeout is 10000 ms.",
            [
                step(frame("4C:ALL 1 1 1"), frame("4C:OK")),
                step(frame("4D:SHOW"), frame("4D:OK 1")),
                advance(10000),
                advance(1, frame("!:TIMEOUT")),
            ],
            needs=["virtual_clock"],
            state={"frame_no": 2, "shown": ZERO72},
        )
    )
    c.append(
        case(
            "lowbat_once_per_crossing",
            "The battery is checked every 1000 ms of uptime; !:LOWBAT is sent "
            "when it reads below 3300 mV, once, and re-armed only after it reads >= 3400 mV.",
            [
                set_adc(419),
                advance(1000),
                set_adc(330),
                advance(1000, frame("!:LOWBAT 3225")),
                advance(1000),
                set_adc(340),
                advance(1000),
                set_adc(300),
                advance(1000),
                set_adc(348),
                advance(1000),
                set_adc(330),
                advance(1000, frame("!:LOWBAT 3225")),
            ],
            needs=["virtual_clock", "adc"],
        )
    )
    # ---------------------------------------------------------------- corrupt frames
    c.append(
        case(
            "bad_crc",
            "Wrong CRC: answered with SEQ '--', nothing executed.",
            [
                step(bad_crc("50:SHOW"), frame("--:ER 1 CRC")),
                step(frame("51:STATE"), frame(f"51:OK 255 0 10000 {ZERO72}")),
            ],
            state={"frame_no": 0},
        )
    )
    # the first BRI request whose CRC contains a letter, sent with that letter in lowercase
    lower = next(
        f"52:BRI {v}" for v in range(256) if set(f"{crc8(f'52:BRI {v}'.encode()):02X}") & set("ABCDEF")
    )
    c.append(
        case(
            "crc_lowercase_hex",
            "The CRC must be written in uppercase hex.",
            [
                step(lower + frame(lower)[len(lower) :].lower(), frame("--:ER 1 CRC")),
            ],
        )
    )
    c.append(
        case(
            "crc_missing",
            "A line without a '*HH' trailer is a CRC error.",
            [
                step("53:PING\n", frame("--:ER 1 CRC")),
                step("53:PING*\n", frame("--:ER 1 CRC")),
                step("53:PING*1\n", frame("--:ER 1 CRC")),
                step(frame("53:PING")[:-1] + "Z\n", frame("--:ER 1 CRC")),
            ],
        )
    )
    c.append(
        case(
            "garbage_then_valid",
            "Noise is answered with a CRC error; the next good frame works.",
            [
                step("x\x00\xff garbage\n", frame("--:ER 1 CRC")),
                step(frame("54:HELLO"), frame(f"54:OK SCOPECTL-LEDRING {FW} {PROTO} 12")),
            ],
        )
    )
    c.append(
        case(
            "seq_unreadable",
            "CRC correct but SEQ unreadable: SYNTAX error with SEQ '--'.",
            [
                step(frame("PING"), frame("--:ER 2 SYNTAX")),
                step(frame("0a:PING"), frame("--:ER 2 SYNTAX")),
                step(frame("--:PING"), frame("--:ER 2 SYNTAX")),
                step(frame("5:PING"), frame("--:ER 2 SYNTAX")),
                step(frame("055:PING"), frame("--:ER 2 SYNTAX")),
                step(frame(""), frame("--:ER 2 SYNTAX")),
            ],
        )
    )
    c.append(
        case(
            "syntax_errors",
            "Bad command or argument syntax: ER 2 SYNTAX with the request's SEQ.",
            [
                step(frame("55:ping"), frame("55:ER 2 SYNTAX")),
                step(frame("56:"), frame("56:ER 2 SYNTAX")),
                step(frame("57:PING1"), frame("57:ER 2 SYNTAX")),
                step(frame("58:SHOW "), frame("58:ER 2 SYNTAX")),
                step(frame("59:SET  1 2 3 4"), frame("59:ER 2 SYNTAX")),
                step(frame("5A:BRI -1"), frame("5A:ER 2 SYNTAX")),
                step(frame("5B:BRI +5"), frame("5B:ER 2 SYNTAX")),
                step(frame("5C:BRI 1x"), frame("5C:ER 2 SYNTAX")),
                step(frame("5D:BRI 0x10"), frame("5D:ER 2 SYNTAX")),
                step(frame("5E:PI*NG"), frame("5E:ER 2 SYNTAX")),
                step(frame("5F: PING"), frame("5F:ER 2 SYNTAX")),
                step(frame("60:BRI\t5"), frame("60:ER 2 SYNTAX")),
            ],
            state={"frame_no": 0, "staged_brightness": 255},
        )
    )
    c.append(
        case(
            "wrong_arg_count",
            "Too few or too many arguments: ER 2 SYNTAX, nothing changed.",
            [
                step(frame("61:SET 1 2 3"), frame("61:ER 2 SYNTAX")),
                step(frame("62:SET 1 2 3 4 5"), frame("62:ER 2 SYNTAX")),
                step(frame("63:HELLO 1"), frame("63:ER 2 SYNTAX")),
                step(frame("64:BRI"), frame("64:ER 2 SYNTAX")),
                step(frame("65:ALL 1 2"), frame("65:ER 2 SYNTAX")),
                step(frame("66:TIMEOUT"), frame("66:ER 2 SYNTAX")),
                step(frame("67:SHOW 1"), frame("67:ER 2 SYNTAX")),
            ],
            state={"staged": ZERO72, "frame_no": 0},
        )
    )
    c.append(
        case(
            "unknown_command",
            "Well-formed but unknown command: ER 4 UNKNOWN.",
            [
                step(frame("68:BLINK"), frame("68:ER 4 UNKNOWN")),
                step(frame("69:BLINK 1 2"), frame("69:ER 4 UNKNOWN")),
                step(frame("6A:HELLOX"), frame("6A:ER 4 UNKNOWN")),
                step(frame("6B:SETX 1 2 3 4"), frame("6B:ER 4 UNKNOWN")),
            ],
        )
    )
    c.append(
        case(
            "out_of_range",
            "Arguments outside their range: ER 3 RANGE, nothing staged.",
            [
                step(frame("70:SET 12 0 0 0"), frame("70:ER 3 RANGE")),
                step(frame("71:SET 0 256 0 0"), frame("71:ER 3 RANGE")),
                step(frame("72:ALL 0 0 300"), frame("72:ER 3 RANGE")),
                step(frame("73:BRI 256"), frame("73:ER 3 RANGE")),
                step(frame("74:TIMEOUT 600001"), frame("74:ER 3 RANGE")),
                step(frame("75:SET 0 0 0 99999999999999999999999"), frame("75:ER 3 RANGE")),
                step(frame("76:TIMEOUT 4294967296"), frame("76:ER 3 RANGE")),
                step(frame("77:SHOW"), frame("77:OK 1")),
            ],
            state={"shown": ZERO72, "staged": ZERO72, "brightness": 255, "timeout_ms": 10000, "frame_no": 1},
        )
    )
    longest_ok = "78:BRI " + "0" * (96 - len("78:BRI 255*XX\n")) + "255"
    assert len(frame(longest_ok)) == 96
    longest_crlf = "79:BRI " + "0" * (96 - len("79:BRI 7*XX\r\n")) + "7"
    assert len(frame(longest_crlf, eol="\r\n")) == 96
    too_long = "7A:BRI " + "0" * (97 - len("7A:BRI 9*XX\n")) + "9"
    assert len(frame(too_long)) == 97
    c.append(
        case(
            "line_length_limit",
            "96 bytes including '\\n' (and any '\\r') are accepted; a 97-byte line "
            "is discarded up to its '\\n' and answered --:ER 5 TOOLONG.",
            [
                step(frame(longest_ok), frame("78:OK")),
                step(frame(longest_crlf, eol="\r\n"), frame("79:OK")),
                step(frame(too_long), frame("--:ER 5 TOOLONG")),
                step("Z" * 500 + "\n", frame("--:ER 5 TOOLONG")),
                step(frame("7B:SHOW"), frame("7B:OK 1")),
            ],
            state={"staged_brightness": 7, "brightness": 7, "frame_no": 1},
        )
    )
    c.append(
        case(
            "rx_overrun_busy",
            "If the receiver lost bytes while a line arrived (UART data overrun or "
            "full receive buffer), the line is discarded and answered --:ER 6 BUSY.",
            [
                step(frame("7C:SHOW"), frame("--:ER 6 BUSY"), rx_overrun=True),
                step(frame("7C:SHOW"), frame("7C:OK 1")),
            ],
            needs=["rx_overrun"],
            state={"frame_no": 1},
        )
    )
    # ---------------------------------------------------------------- duplicate SEQ / retries
    c.append(
        case(
            "dup_show_not_reexecuted",
            "A retried SHOW (identical line) gets the cached reply; frame_no does not advance.",
            [
                step(frame("80:ALL 1 2 3"), frame("80:OK")),
                step(frame("81:SHOW"), frame("81:OK 1")),
                step(frame("81:SHOW"), frame("81:OK 1")),
                step(frame("81:SHOW"), frame("81:OK 1")),
                step(frame("82:STATE"), frame(f"82:OK 255 1 10000 {'010203' * 12}")),
            ],
            state={"frame_no": 1},
        )
    )
    c.append(
        case(
            "dup_off_not_reexecuted",
            "A retried OFF is idempotent.",
            [
                step(frame("83:OFF"), frame("83:OK 1")),
                step(frame("83:OFF"), frame("83:OK 1")),
            ],
            state={"frame_no": 1},
        )
    )
    c.append(
        case(
            "dup_after_crc_error",
            "The host's retry after a corrupted copy still matches the last "
            "processed line (CRC failures do not clear the cache).",
            [
                step(frame("84:SHOW"), frame("84:OK 1")),
                step(bad_crc("84:SHOW"), frame("--:ER 1 CRC")),
                step(frame("84:SHOW"), frame("84:OK 1")),
            ],
            state={"frame_no": 1},
        )
    )
    c.append(
        case(
            "dup_ping_cached",
            "A duplicate PING returns the cached reply (old uptime).",
            [
                advance(100),
                step(frame("85:PING"), frame("85:OK 100")),
                advance(50),
                step(frame("85:PING"), frame("85:OK 100")),
                step(frame("86:PING"), frame("86:OK 150")),
            ],
            needs=["virtual_clock"],
        )
    )
    c.append(
        case(
            "same_seq_new_content",
            "Same SEQ with different content is a new request and is executed.",
            [
                step(frame("87:BRI 10"), frame("87:OK")),
                step(frame("87:BRI 20"), frame("87:OK")),
                step(frame("88:SHOW"), frame("88:OK 1")),
            ],
            state={"brightness": 20},
        )
    )
    c.append(
        case(
            "dup_only_last_line",
            "Only the last processed line is cached: repeating an older line executes it again.",
            [
                step(frame("89:SHOW"), frame("89:OK 1")),
                step(frame("8A:HELLO"), frame(f"8A:OK SCOPECTL-LEDRING {FW} {PROTO} 12")),
                step(frame("89:SHOW"), frame("89:OK 2")),
            ],
            state={"frame_no": 2},
        )
    )
    c.append(
        case(
            "dup_error_reply_cached",
            "Error replies with a SEQ are cached and repeated too.",
            [
                step(frame("8B:SET 12 0 0 0"), frame("8B:ER 3 RANGE")),
                step(frame("8B:SET 12 0 0 0"), frame("8B:ER 3 RANGE")),
            ],
        )
    )
    c.append(
        case(
            "dup_crlf_variant",
            "A retry differing only by a trailing '\\r' is the same line.",
            [
                step(frame("8C:SHOW"), frame("8C:OK 1")),
                step(frame("8C:SHOW", eol="\r\n"), frame("8C:OK 1")),
            ],
            state={"frame_no": 1},
        )
    )
    c.append(
        case(
            "reset_clears_cache",
            "RESET forgets the cached line: a repeated RESET reboots again "
            "(hosts wait for !:BOOT instead of retrying RESET).",
            [
                step(frame("8D:RESET"), frame("8D:OK"), BOOT),
                step(frame("8D:RESET"), frame("8D:OK"), BOOT),
            ],
        )
    )
    return c


def host_lines() -> list[dict[str, Any]]:
    h: list[dict[str, Any]] = []

    def reply(
        line: str,
        seq: int | None,
        status: str,
        values: list[str] | None = None,
        error: tuple[int, str] | None = None,
    ) -> None:
        item: dict[str, Any] = {
            "line": line,
            "valid": True,
            "kind": "reply",
            "seq": seq,
            "status": status,
            "values": values or [],
        }
        if error:
            item["error"] = {"code": error[0], "name": error[1]}
        h.append(item)

    def event(line: str, name: str, values: list[str] | None = None) -> None:
        h.append({"line": line, "valid": True, "kind": "event", "event": name, "values": values or []})

    def invalid(line: str, reason: str) -> None:
        h.append({"line": line, "valid": False, "reason": reason})

    reply(
        frame(f"00:OK SCOPECTL-LEDRING {FW} {PROTO} 12"), 0, "OK", ["SCOPECTL-LEDRING", FW, str(PROTO), "12"]
    )
    reply(frame("1F:OK"), 31, "OK")
    reply(frame("FF:OK 4095"), 255, "OK", ["4095"])
    reply(frame(f"A0:OK 127 1 10000 {'0A14FF' * 12}"), 160, "OK", ["127", "1", "10000", "0A14FF" * 12])
    reply(frame("07:ER 3 RANGE"), 7, "ER", ["3", "RANGE"], (3, "RANGE"))
    reply(frame("--:ER 1 CRC"), None, "ER", ["1", "CRC"], (1, "CRC"))
    reply(frame("--:ER 2 SYNTAX"), None, "ER", ["2", "SYNTAX"], (2, "SYNTAX"))
    reply(frame("--:ER 5 TOOLONG"), None, "ER", ["5", "TOOLONG"], (5, "TOOLONG"))
    reply(frame("--:ER 6 BUSY"), None, "ER", ["6", "BUSY"], (6, "BUSY"))
    reply(frame("42:ER 4 UNKNOWN"), 0x42, "ER", ["4", "UNKNOWN"], (4, "UNKNOWN"))
    reply(frame("43:OK 1", eol="\r\n"), 0x43, "OK", ["1"])
    event(BOOT, "BOOT", [FW, str(PROTO)])
    event(frame("!:TIMEOUT"), "TIMEOUT")
    event(frame("!:LOWBAT 3225"), "LOWBAT", ["3225"])
    invalid(bad_crc("00:OK"), "CRC mismatch")
    invalid(bad_crc("!:TIMEOUT"), "CRC mismatch")
    invalid("00:OK\n", "no CRC field")
    # the first "00:OK <n>" whose CRC contains a hex letter, with that CRC in lowercase
    lower = next(f"00:OK {n}" for n in range(256) if set(frame(f"00:OK {n}")[-3:-1]) & set("ABCDEF"))
    invalid(
        lower + frame(lower)[len(lower) :].lower(),
        "CRC not uppercase",
    )
    invalid(frame("00:OK 1")[:-1], "no line terminator (truncated)")
    invalid(frame("0G:OK"), "SEQ is not hex")
    invalid(frame("0a:OK"), "SEQ hex must be uppercase")
    invalid(frame("00:NO"), "status is neither OK nor ER")
    invalid(frame("00:OK1"), "no space between OK and value")
    invalid(frame("00:ER 3"), "error without name")
    invalid(frame("00:ER X RANGE"), "error code is not decimal")
    invalid(frame("!:"), "event without name")
    invalid(frame("?:BOOT 1.0.0 1"), "neither SEQ nor '!'")
    invalid("", "empty line")
    return h


def crc_examples() -> list[dict[str, str]]:
    out = [{"data": "123456789", "crc": "F4"}, {"data": "", "crc": "00"}]
    for body in ("00:HELLO", "01:SET 0 255 0 0", "!:TIMEOUT", "--:ER 1 CRC"):
        out.append({"data": body, "crc": f"{crc8(body.encode()):02X}"})
    assert crc8(b"123456789") == 0xF4
    return out


SCHEMA = {
    "$comment": "Shared test vectors for the scopectl LED-ring serial protocol 1 (protocols/led-ring-protocol.md). "
    "Generated by firmware/tools/gen_vectors.py (hand-written cases, CRCs computed). Read by the firmware host "
    "tests (firmware/host), the Python simulator/driver tests (tests/ledring) and tests/firmware.",
    "strings": "All line strings are byte strings: each character U+0000..U+00FF stands for one byte (decode "
    "the JSON, then encode the string as latin-1). Lines include their terminator.",
    "crc8": "List of {data, crc}: CRC-8 (poly 0x07, init 0x00, no reflection, no xorout) of data, 2 uppercase hex.",
    "board_cases": "List of cases run against a freshly booted board (after its !:BOOT event has been consumed; "
    "virtual clock at uptime 0 ms, every ADC read of A0 returns default_env.adc). A case has: name, description, "
    "optional needs (capabilities a runner must have, else it skips the case: 'virtual_clock' = uptime can be "
    "advanced exactly in ms; 'adc' = the raw 10-bit A0 reading can be set; 'rx_overrun' = receive data loss "
    "can be injected), steps, optional expect_state. Steps run in order; each step is one of "
    "{send: bytes written to the board, expect: [lines]}, {send, rx_overrun: true, expect} (bytes were lost while "
    "this line arrived), {advance_ms: N, expect: [lines]} (let N ms of uptime pass with no input, 1 ms at a time), "
    "{set_adc: V, expect: []} (every later A0 read returns V). expect lists exactly the lines the board writes in "
    "response (replies and events, in order); after the step the board has written nothing else.",
    "expect_state": "Board state after the last step; only the given keys are checked. shown: RRGGBB x 12 (72 "
    "uppercase hex) of the colours of the last shown frame before brightness scaling (as STATE reports); staged: "
    "the staged colours; brightness: brightness applied to the last shown frame; staged_brightness; frame_no; "
    "timeout_ms; wire_rgb: RRGGBB x 12 actually sent to the LEDs, i.e. shown scaled by (c*(brightness+1))>>8 "
    "(the wire order is GRB; this field is given in RGB).",
    "host_lines": "Lines as a host parser receives them. valid lines have kind 'reply' (seq: int or null for '--', "
    "status 'OK'|'ER', values: the space-separated tokens after OK/ER, error: {code, name} for ER) or kind "
    "'event' (event: name after '!:', values). Invalid lines have a reason; a host discards them.",
}


def build() -> dict[str, Any]:
    doc: dict[str, Any] = dict(SCHEMA)
    doc.update(
        {
            "protocol": PROTO,
            "firmware": FW,
            "num_leds": 12,
            "max_request_line_bytes": 96,
            "max_reply_line_bytes": 128,
            "defaults": {"brightness": 255, "timeout_ms": 10000, "frame_no": 0},
            "default_env": {"adc": 419, "battery_mv": 4095, "divider": 2, "vref_mv": 5000},
            "lowbat": {"below_mv": 3300, "rearm_at_mv": 3400, "check_period_ms": 1000},
            "crc8": crc_examples(),
            "board_cases": cases(),
            "host_lines": host_lines(),
        }
    )
    return doc


# ---------------------------------------------------------------------------------------- C++ header
# Plain constant data (string literals with explicit lengths, arrays of aggregates): it compiles in a
# moment, where the same vectors as std::string/std::vector initialisers took minutes under ASan.
_HEADER_TOP = """\
// Generated by firmware/tools/gen_vectors.py from protocols/led-ring-vectors.json: do not edit.
// The shared protocol vectors as C++ constants for the host tests (host/test_core.cpp). Byte strings
// carry their length (each JSON character U+0000..U+00FF is one byte, NUL included); see the JSON file's
// own comments for the meaning of every field. tests/firmware/test_build.py checks this file is current.
#ifndef LEDRING_VECTORS_H
#define LEDRING_VECTORS_H

#include <cstddef>
#include <cstdint>
#include <string>

namespace vectors {

template <typename T>
struct List {
    const T *items;
    std::size_t count;
    const T *begin() const { return items; }
    const T *end() const { return items + count; }
};

struct Bytes {
    const char *data;
    std::size_t size;
    std::string str() const { return std::string(data, size); }
};

struct MaybeInt {  // an expect_state number; unchecked unless set
    bool set;
    int64_t value;
};

struct Crc8Example {
    Bytes data;
    const char *crc;  // 2 uppercase hex digits
};

struct Step {
    enum Kind { kSend, kAdvanceMs, kSetAdc };
    Kind kind;
    Bytes send;            // kSend: bytes written to the board
    bool rx_overrun;       // kSend: bytes were lost while this line arrived
    int64_t value;         // kAdvanceMs: milliseconds; kSetAdc: the A0 reading
    List<Bytes> expect;    // exactly the lines the board writes in response
};

struct State {  // expect_state: null strings and unset numbers are not checked
    const char *shown;
    const char *staged;
    const char *wire_rgb;
    MaybeInt brightness;
    MaybeInt staged_brightness;
    MaybeInt frame_no;
    MaybeInt timeout_ms;
};

struct Case {
    const char *name;
    List<Step> steps;
    const State *expect_state;  // null: no state check
};

struct Document {
    const char *firmware;
    int64_t protocol;
    int64_t default_adc;
    List<Crc8Example> crc8;
    List<Case> board_cases;
};

namespace data {
"""

_STATE_STRINGS = ("shown", "staged", "wire_rgb")
_STATE_INTS = ("brightness", "staged_brightness", "frame_no", "timeout_ms")


def c_string(text: str) -> str:
    """A C++ string literal of ``text`` encoded as latin-1 (octal escapes for other bytes)."""
    chars = []
    for byte in text.encode("latin-1"):
        if byte in (0x22, 0x3F, 0x5C):  # '"', '?' (trigraphs) and backslash
            chars.append("\\" + chr(byte))
        elif byte in (0x0A, 0x0D):
            chars.append("\\n" if byte == 0x0A else "\\r")
        elif 0x20 <= byte < 0x7F:
            chars.append(chr(byte))
        else:
            chars.append(f"\\{byte:03o}")  # an octal escape takes at most three digits
    return '"' + "".join(chars) + '"'


def c_bytes(text: str) -> str:
    """A ``vectors::Bytes`` initialiser: the literal and its length in bytes."""
    return f"{{{c_string(text)}, {len(text.encode('latin-1'))}}}"


def _c_list(name: str | None, count: int) -> str:
    return f"{{{name}, {count}}}" if count else "{nullptr, 0}"


def _c_step(step: dict[str, Any], expect: str | None) -> str:
    expect_list = _c_list(expect, len(step["expect"]))
    if "send" in step:
        overrun = "true" if step.get("rx_overrun") else "false"
        return f"{{Step::kSend, {c_bytes(step['send'])}, {overrun}, 0, {expect_list}}}"
    if "advance_ms" in step:
        return f"{{Step::kAdvanceMs, {{nullptr, 0}}, false, {int(step['advance_ms'])}, {expect_list}}}"
    if "set_adc" in step:
        return f"{{Step::kSetAdc, {{nullptr, 0}}, false, {int(step['set_adc'])}, {expect_list}}}"
    raise ValueError(f"unknown step kind: {sorted(step)}")


def _c_state(state: dict[str, Any]) -> str:
    unknown = set(state) - set(_STATE_STRINGS) - set(_STATE_INTS)
    if unknown:
        raise ValueError(f"unknown expect_state keys: {sorted(unknown)}")
    fields = [c_string(state[k]) if k in state else "nullptr" for k in _STATE_STRINGS]
    fields += [f"{{true, {int(state[k])}}}" if k in state else "{false, 0}" for k in _STATE_INTS]
    return "{" + ", ".join(fields) + "}"


def header_text(doc: dict[str, Any]) -> str:
    """The C++ header of a vectors document (as decoded from the JSON file)."""
    out = [_HEADER_TOP]
    cases = []
    for i, bc in enumerate(doc["board_cases"]):
        steps = []
        for j, step in enumerate(bc["steps"]):
            expect = None
            if step["expect"]:
                expect = f"kExpect{i}_{j}"
                lines = ", ".join(c_bytes(line) for line in step["expect"])
                out.append(f"inline constexpr Bytes {expect}[] = {{{lines}}};\n")
            steps.append(_c_step(step, expect))
        out.append(f"inline constexpr Step kSteps{i}[] = {{\n")
        out.extend(f"    {s},\n" for s in steps)
        out.append("};\n")
        state = "nullptr"
        if "expect_state" in bc:
            out.append(f"inline constexpr State kState{i} = {_c_state(bc['expect_state'])};\n")
            state = f"&kState{i}"
        cases.append(f"{{{c_string(bc['name'])}, {_c_list(f'kSteps{i}', len(steps))}, {state}}}")
    out.append("inline constexpr Crc8Example kCrc8[] = {\n")
    out.extend(f"    {{{c_bytes(item['data'])}, {c_string(item['crc'])}}},\n" for item in doc["crc8"])
    out.append("};\ninline constexpr Case kCases[] = {\n")
    out.extend(f"    {c},\n" for c in cases)
    out.append("};\n\n}  // namespace data\n\n")
    out.append(
        f"inline constexpr Document kDocument = {{{c_string(doc['firmware'])}, {int(doc['protocol'])}, "
        f"{int(doc['default_env']['adc'])}, {{data::kCrc8, {len(doc['crc8'])}}}, "
        f"{{data::kCases, {len(cases)}}}}};\n\n}}  // namespace vectors\n\n#endif\n"
    )
    return "".join(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--check", action="store_true", help="exit 1 if the JSON file or the C++ header is out of date"
    )
    args = parser.parse_args()
    text = json.dumps(build(), indent=1, ensure_ascii=True) + "\n"
    header = header_text(json.loads(text))
    if args.check:
        code = 0
        for path, want in ((OUT, text), (HEADER, header)):
            ok = path.exists() and path.read_text(encoding="ascii") == want
            print(f"{path}: {'up to date' if ok else 'OUT OF DATE'}")
            code = code if ok else 1
        return code
    OUT.write_text(text, encoding="ascii")
    HEADER.write_text(header, encoding="ascii")
    print(f"wrote {OUT} and {HEADER}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
