"""The LED-ring line protocol (version 1): CRC, line encoding and parsing, pure Python.

This module is shared by the host driver (:mod:`scopectl.hardware.ledring.serial_ring`, which encodes
requests and parses replies and events) and the simulated board
(:mod:`scopectl.hardware.ledring.sim.firmware_model`, which parses requests and encodes replies).  The
authoritative description is ``protocols/led-ring-protocol.md``; the firmware implements the same rules.

Wire format (ASCII, ``'\\n'``-terminated; a ``'\\r'`` before the ``'\\n'`` is ignored)::

    request   <SEQ>:<CMD>[ <ARG>]...*<CRC>
    reply     <SEQ>:OK[ <VAL>]...*<CRC>      or   <SEQ>:ER <code> <NAME>*<CRC>
    event     !:<EVENT>[ <VAL>]...*<CRC>

``SEQ`` is two upper-case hex digits (``--`` in a reply when the request's SEQ was unreadable), ``CRC``
is CRC-8 (polynomial 0x07, init 0x00, no reflection, no final xor) over every byte before ``'*'``,
written as two upper-case hex digits.  A line is at most :data:`MAX_LINE_BYTES` bytes including the
``'\\n'``.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

__all__ = [
    "CRC_POLY",
    "MAX_LINE_BYTES",
    "MAX_REPLY_BYTES",
    "MODEL",
    "NUM_LEDS",
    "PROTOCOL_VERSION",
    "ErrorCode",
    "LineError",
    "Message",
    "crc8",
    "encode_error",
    "encode_event",
    "encode_line",
    "encode_reply",
    "encode_request",
    "parse_message",
    "scale_channel",
    "split_crc",
]

PROTOCOL_VERSION = 1
"""The protocol version this module speaks (reported by ``HELLO``)."""

NUM_LEDS = 12
"""Number of LEDs on the ring."""

MAX_LINE_BYTES = 96
"""Longest request line the board accepts, including the terminating ``'\\n'``."""

MAX_REPLY_BYTES = 128
"""Longest line the host accepts from the board (``STATE`` replies exceed :data:`MAX_LINE_BYTES`)."""

CRC_POLY = 0x07

MODEL = "SCOPECTL-LEDRING"
"""The model name the firmware reports in its ``HELLO`` reply."""


class ErrorCode(enum.IntEnum):
    """Error codes of ``ER`` replies; the member name is the ``<NAME>`` on the wire."""

    CRC = 1
    SYNTAX = 2
    RANGE = 3
    UNKNOWN = 4
    TOOLONG = 5
    BUSY = 6


def _crc_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = ((crc << 1) ^ CRC_POLY) & 0xFF if crc & 0x80 else (crc << 1) & 0xFF
        table.append(crc)
    return tuple(table)


_CRC_TABLE = _crc_table()


def crc8(data: bytes) -> int:
    """CRC-8 with polynomial 0x07, initial value 0x00, no reflection and no final xor.

    ``crc8(b"123456789") == 0xF4`` (the standard check value of CRC-8/SMBUS).
    """
    crc = 0
    for byte in data:
        crc = _CRC_TABLE[crc ^ byte]
    return crc


def scale_channel(value: int, brightness: int) -> int:
    """A colour channel as sent to the LEDs: ``(value * (brightness + 1)) >> 8``."""
    return (value * (brightness + 1)) >> 8


class LineError(ValueError):
    """A received line is not a well-formed protocol line (bad framing, CRC, SEQ or characters)."""


def encode_line(body: str, *, limit: int = MAX_REPLY_BYTES) -> bytes:
    """Append ``*<CRC>\\n`` to a line body (everything before the ``'*'``).

    Raises
    ------
    ValueError
        If the body is not printable ASCII, contains ``'*'``, or the line would exceed
        :data:`MAX_LINE_BYTES`.
    """
    raw = body.encode("ascii")
    if any(b < 0x20 or b > 0x7E or b == 0x2A for b in raw):
        raise ValueError(f"line body {body!r} must be printable ASCII without '*'")
    line = raw + b"*%02X\n" % crc8(raw)
    if len(line) > limit:
        raise ValueError(f"line {body!r} is {len(line)} bytes, more than {limit}")
    return line


def _fields(values: Sequence[int | str]) -> str:
    return "".join(f" {v}" for v in values)


def encode_request(seq: int, command: str, args: Sequence[int | str] = ()) -> bytes:
    """Encode a request line ``<SEQ>:<CMD>[ <ARG>]...*<CRC>\\n``."""
    if not 0 <= seq <= 0xFF:
        raise ValueError(f"sequence number {seq} is outside 0..255")
    return encode_line(f"{seq:02X}:{command}{_fields(args)}", limit=MAX_LINE_BYTES)


def encode_reply(seq: int | None, values: Sequence[int | str] = ()) -> bytes:
    """Encode an ``OK`` reply; ``seq`` None writes ``--``."""
    tag = "--" if seq is None else f"{seq:02X}"
    return encode_line(f"{tag}:OK{_fields(values)}")


def encode_error(seq: int | None, code: ErrorCode) -> bytes:
    """Encode an ``ER <code> <NAME>`` reply; ``seq`` None writes ``--``."""
    tag = "--" if seq is None else f"{seq:02X}"
    return encode_line(f"{tag}:ER {int(code)} {code.name}")


def encode_event(name: str, values: Sequence[int | str] = ()) -> bytes:
    """Encode an event line ``!:<EVENT>[ <VAL>]...*<CRC>\\n``."""
    return encode_line(f"!:{name}{_fields(values)}")


@dataclass(frozen=True)
class Message:
    """A parsed line sent by the board: a reply or an event.

    Attributes
    ----------
    kind
        ``"reply"`` or ``"event"``.
    seq
        The reply's sequence number; None for ``--`` replies and for events.
    ok
        True for ``OK`` replies; False for ``ER`` replies; True for events.
    name
        ``"OK"``, ``"ER"`` or the event name (``BOOT``, ``TIMEOUT``, ``LOWBAT``...).
    fields
        The space-separated values after the name.
    error
        The error code of an ``ER`` reply (None otherwise).
    """

    kind: Literal["reply", "event"]
    seq: int | None
    ok: bool
    name: str
    fields: tuple[str, ...]
    error: ErrorCode | int | None = None


_SEQ_RE = re.compile(rb"[0-9A-F]{2}")
_CRC_RE = re.compile(rb"\*([0-9A-F]{2})")
_NAME_RE = re.compile(r"[A-Z][A-Z0-9_]*")


def split_crc(line: bytes) -> bytes:
    """Check a line's ``*<CRC>`` trailer and return the body before the ``'*'``.

    ``line`` must end with ``'\\n'`` (an optional ``'\\r'`` before it is ignored).

    Raises
    ------
    LineError
        If the trailer is missing, malformed or the CRC does not match.
    """
    if not line.endswith(b"\n"):
        raise LineError("no line terminator (truncated line)")
    line = line[:-1]
    if line.endswith(b"\r"):
        line = line[:-1]
    if len(line) < 3 or _CRC_RE.fullmatch(line[-3:]) is None:
        raise LineError("missing or malformed '*CRC' trailer")
    body = line[:-3]
    if int(line[-2:], 16) != crc8(body):
        raise LineError(f"CRC mismatch (line says {line[-2:].decode()}, computed {crc8(body):02X})")
    return body


def parse_message(line: bytes) -> Message:
    """Parse a reply or event line sent by the board.

    Parameters
    ----------
    line
        One line including its ``'\\n'`` (an optional ``'\\r'`` before it is ignored).

    Raises
    ------
    LineError
        If the line is not a well-formed reply or event: bad CRC, bad SEQ, non-ASCII bytes, empty
        fields or an unknown shape.  Callers treat such a line as noise.
    """
    body = split_crc(line)
    if any(b < 0x20 or b > 0x7E for b in body):
        raise LineError("non-printable byte in line")
    text = body.decode("ascii")
    head, sep, rest = text.partition(":")
    if not sep:
        raise LineError("no ':' after the sequence field")
    parts = rest.split(" ")
    if any(p == "" for p in parts):
        raise LineError("empty field (double or trailing space)")
    name, fields = parts[0], tuple(parts[1:])
    if head == "!":
        if _NAME_RE.fullmatch(name) is None:
            raise LineError(f"bad event name {name!r}")
        return Message("event", None, True, name, fields)
    if head == "--":
        seq = None
    elif _SEQ_RE.fullmatch(head.encode()) is not None:
        seq = int(head, 16)
    else:
        raise LineError(f"bad sequence field {head!r}")
    if name == "OK":
        return Message("reply", seq, True, name, fields)
    if name == "ER":
        if len(fields) != 2 or not fields[0].isdigit() or len(fields[0]) > 3:
            raise LineError(f"malformed error reply {rest!r}")
        number = int(fields[0])
        code: ErrorCode | int = ErrorCode(number) if number in ErrorCode._value2member_map_ else number
        return Message("reply", seq, False, name, fields, error=code)
    raise LineError(f"reply is neither OK nor ER: {name!r}")
