"""The ADB wire format, as seen from the device side (used by the simulated adbd).

A message is a 24-byte header of six little-endian uint32 -- ``command, arg0, arg1, data_length,
data_check, magic`` with ``magic = command ^ 0xFFFFFFFF`` and ``data_check`` the plain byte sum of the
payload -- followed by the payload.  Authentication signs a 20-byte token with RSA PKCS#1 v1.5 over the
token taken as a pre-hashed SHA-1 digest; public keys travel in Android's own key format.

Nothing here imports adb-shell: the simulator must speak the protocol itself, so that it can catch the
driver's (and adb-shell's) mistakes.
"""

from __future__ import annotations

import base64
import binascii
import struct
from dataclasses import dataclass

__all__ = [
    "AUTH",
    "AUTH_RSAPUBLICKEY",
    "AUTH_SIGNATURE",
    "AUTH_TOKEN",
    "CLSE",
    "CNXN",
    "HEADER_SIZE",
    "OKAY",
    "OPEN",
    "VERSION",
    "VERSION_NO_CHECKSUM",
    "WRTE",
    "Header",
    "ProtocolViolation",
    "checksum",
    "decode_header",
    "encode_message",
    "parse_android_public_key",
    "verify_auth_signature",
]


def _cmd(name: bytes) -> int:
    return int.from_bytes(name, "little")


CNXN = _cmd(b"CNXN")
AUTH = _cmd(b"AUTH")
OPEN = _cmd(b"OPEN")
OKAY = _cmd(b"OKAY")
WRTE = _cmd(b"WRTE")
CLSE = _cmd(b"CLSE")
STLS = _cmd(b"STLS")
SYNC = _cmd(b"SYNC")
KNOWN_COMMANDS = frozenset({CNXN, AUTH, OPEN, OKAY, WRTE, CLSE, STLS, SYNC})

VERSION = 0x01000000
VERSION_NO_CHECKSUM = 0x01000001  # from this version on, hosts may send data_check = 0

AUTH_TOKEN = 1
AUTH_SIGNATURE = 2
AUTH_RSAPUBLICKEY = 3

HEADER = struct.Struct("<6I")
HEADER_SIZE = HEADER.size

# DigestInfo prefix of a SHA-1 hash in PKCS#1 v1.5 (RFC 8017, section 9.2, note 1).
_SHA1_DIGEST_INFO = bytes.fromhex("3021300906052b0e03021a05000414")
_ANDROID_KEY_WORDS = 64  # 2048-bit keys: 64 little-endian 32-bit words


class ProtocolViolation(Exception):
    """The peer sent something the ADB protocol does not allow (the connection is dropped)."""


@dataclass(frozen=True)
class Header:
    """A decoded message header."""

    command: int
    arg0: int
    arg1: int
    data_length: int
    data_check: int

    @property
    def name(self) -> str:
        """The four-letter command name (for messages)."""
        return self.command.to_bytes(4, "little").decode("ascii", "replace")


def checksum(data: bytes) -> int:
    """The ADB payload check: the plain sum of the bytes, modulo 2**32."""
    return sum(data) & 0xFFFFFFFF


def encode_message(command: int, arg0: int, arg1: int, data: bytes = b"") -> bytes:
    """One complete message (header + payload), always with a correct checksum."""
    return (
        HEADER.pack(
            command,
            arg0 & 0xFFFFFFFF,
            arg1 & 0xFFFFFFFF,
            len(data),
            checksum(data),
            command ^ 0xFFFFFFFF,
        )
        + data
    )


def decode_header(raw: bytes, *, max_data: int) -> Header:
    """Decode and validate a 24-byte header.

    Raises
    ------
    ProtocolViolation
        On a bad magic, an unknown command or a payload larger than ``max_data``.
    """
    if len(raw) != HEADER_SIZE:
        raise ProtocolViolation(f"short header ({len(raw)} bytes)")
    command, arg0, arg1, length, check, magic = HEADER.unpack(raw)
    if magic != command ^ 0xFFFFFFFF:
        raise ProtocolViolation(f"bad magic {magic:#010x} for command {command:#010x}")
    if command not in KNOWN_COMMANDS:
        raise ProtocolViolation(f"unknown command {command:#010x}")
    if length > max_data:
        raise ProtocolViolation(f"payload of {length} bytes exceeds maxdata {max_data}")
    return Header(command, arg0, arg1, length, check)


def parse_android_public_key(text: str) -> tuple[int, int]:
    """Parse an Android ADB public key (``<base64> user@host``) into ``(modulus, exponent)``.

    The base64 blob is ``u32 words, u32 n0inv, modulus[words] (LE), rr[words] (LE), u32 exponent``.

    Raises
    ------
    ValueError
        When the text is not such a key.
    """
    fields = text.strip().strip("\0").split()
    if not fields:
        raise ValueError("empty public key")
    try:
        blob = base64.b64decode(fields[0], validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"public key is not base64: {exc}") from None
    words = _ANDROID_KEY_WORDS
    expected = 4 + 4 + 4 * words + 4 * words + 4
    if len(blob) != expected:
        raise ValueError(f"public key blob is {len(blob)} bytes, expected {expected}")
    (nwords,) = struct.unpack_from("<I", blob, 0)
    if nwords != words:
        raise ValueError(f"public key has {nwords} words, expected {words}")
    modulus = int.from_bytes(blob[8 : 8 + 4 * words], "little")
    (exponent,) = struct.unpack_from("<I", blob, 8 + 8 * words)
    if modulus <= 0 or exponent < 3:
        raise ValueError("public key has an invalid modulus or exponent")
    return modulus, exponent


def verify_auth_signature(token: bytes, signature: bytes, *, modulus: int, exponent: int) -> bool:
    """True when ``signature`` is the PKCS#1 v1.5 signature of ``token`` (taken as a SHA-1 digest)."""
    size = (modulus.bit_length() + 7) // 8
    if len(signature) != size or len(token) != 20:
        return False
    value = int.from_bytes(signature, "big")
    if value >= modulus:
        return False
    decoded = pow(value, exponent, modulus).to_bytes(size, "big")
    suffix = b"\x00" + _SHA1_DIGEST_INFO + token
    padding = size - 2 - len(suffix)
    if padding < 8:
        return False
    expected = b"\x00\x01" + b"\xff" * padding + suffix
    return decoded == expected
