"""The AVR firmware builds with the Debian toolchain and fits the ATmega328P; shared files are consistent."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from fw_helpers import FIRMWARE, REPO, VECTORS

from scopectl.hardware.ledring.protocol import crc8

FLASH_BYTES = 32768 - 512  # minus the optiboot bootloader
RAM_BYTES = 2048


def test_hex_is_valid_intel_hex_and_fits_flash(firmware_elf: Path) -> None:
    hex_path = FIRMWARE / "build" / "scopectl_ledring.hex"
    top = 0
    records = hex_path.read_text(encoding="ascii").split()
    assert records[-1] == ":00000001FF"
    for record in records:
        raw = bytes.fromhex(record[1:])
        assert sum(raw) & 0xFF == 0, f"bad checksum in {record}"
        length, address, kind = raw[0], int.from_bytes(raw[1:3], "big"), raw[3]
        assert len(raw) == length + 5
        if kind == 0:
            top = max(top, address + length)
    assert 1000 < top <= FLASH_BYTES


def test_static_ram_leaves_room_for_the_stack(firmware_elf: Path) -> None:
    out = subprocess.run(
        ["avr-size", "-A", str(firmware_elf)], capture_output=True, text=True, check=True
    ).stdout
    sizes = {m.group(1): int(m.group(2)) for m in re.finditer(r"^\.(data|bss)\s+(\d+)", out, re.M)}
    assert sizes["bss"] > 0
    assert sizes["data"] + sizes["bss"] <= RAM_BYTES - 512, out


def test_vectors_file_is_generated_from_its_script() -> None:
    proc = subprocess.run(
        [sys.executable, str(FIRMWARE / "tools" / "gen_vectors.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_every_vector_line_carries_a_correct_crc() -> None:
    doc = json.loads(VECTORS.read_text(encoding="ascii"))
    for item in doc["crc8"]:
        assert f"{crc8(item['data'].encode('latin-1')):02X}" == item["crc"]
    checked = 0
    for case in doc["board_cases"]:
        for step in case["steps"]:
            for line in step["expect"]:
                body, _, tail = line.encode("latin-1").rpartition(b"*")
                assert tail == b"%02X\n" % crc8(body), (case["name"], line)
                checked += 1
    for item in doc["host_lines"]:
        if item["valid"]:
            body, _, tail = item["line"].encode("latin-1").rpartition(b"*")
            assert tail.rstrip(b"\r\n") == b"%02X" % crc8(body)
    assert checked > 100
    # vectors that claim a lowercase CRC really have one (a CRC without letters would be valid)
    lowercase = [i["line"] for i in doc["host_lines"] if i.get("reason") == "CRC not uppercase"]
    lowercase += [
        s["send"] for c in doc["board_cases"] if c["name"] == "crc_lowercase_hex" for s in c["steps"]
    ]
    assert len(lowercase) == 2
    for line in lowercase:
        assert set(line.rstrip("\r\n")[-2:]) & set("abcdef"), line


def test_protocol_document_covers_every_command_and_error() -> None:
    doc = (REPO / "protocols" / "led-ring-protocol.md").read_text(encoding="utf-8")
    source = (FIRMWARE / "scopectl_ledring" / "ledring_core.cpp").read_text(encoding="utf-8")
    commands = re.findall(r'\{"([A-Z]+)", \d, \{', source)
    assert len(commands) == 11
    for name in commands:
        assert f"`{name}" in doc, name
    for code, name in enumerate(["CRC", "SYNTAX", "RANGE", "UNKNOWN", "TOOLONG", "BUSY"], start=1):
        assert f"{code} {name}" in doc
