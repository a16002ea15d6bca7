"""Firmware in the loop: the built firmware on simavr, driven over its pty, checked on the decoded wire."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fw_helpers import FIRMWARE, VECTORS, Link, frame, make

from scopectl.errors import DeviceNotFoundError
from scopectl.hardware.ledring.sim.fil import FirmwareInTheLoop

# WS2812B high-phase windows in 16 MHz cycles (datasheet: T0H 0.4 us, T1H 0.8 us, +-150 ns)
T0H = range(4, 9)
T1H = range(11, 15)


def _scaled(rgb: tuple[int, int, int], brightness: int) -> list[int]:
    return [(c * (brightness + 1)) >> 8 for c in rgb]


def test_hello_identifies_the_firmware(link: Link) -> None:
    assert link.request("00:HELLO") == frame("00:OK SCOPECTL-LEDRING 1.0.0 1 12")


def test_set_bri_show_reach_the_wire(fil: FirmwareInTheLoop, link: Link) -> None:
    assert fil.frame_count == 1  # the dark frame at boot
    boot = fil.last_frame()
    assert boot.bits == 288 and boot.errors == 0 and not boot.rgb.any()
    assert link.request("01:SET 0 255 0 0") == frame("01:OK")
    assert link.request("02:SET 5 0 200 17") == frame("02:OK")
    assert link.request("03:SET 11 1 2 3") == frame("03:OK")
    assert link.request("04:BRI 127") == frame("04:OK")
    assert fil.frame_count == 1, "SET/BRI must only stage"
    assert link.request("05:SHOW") == frame("05:OK 1")
    shown = fil.wait_for_frame(2, timeout_s=3)
    expected = np.zeros((12, 3), dtype=np.uint8)
    expected[0] = _scaled((255, 0, 0), 127)
    expected[5] = _scaled((0, 200, 17), 127)
    expected[11] = _scaled((1, 2, 3), 127)
    np.testing.assert_array_equal(shown.rgb, expected)
    assert shown.grb[:3] == bytes([0, 127, 0])  # wire order G, R, B
    assert shown.brightness == 127
    assert shown.bits == 288 and shown.errors == 0
    assert shown.t0h_cycles[0] in T0H and shown.t0h_cycles[1] in T0H
    assert shown.t1h_cycles[0] in T1H and shown.t1h_cycles[1] in T1H
    assert shown.max_low_cycles < 80  # < 5 us: no gap a WS2812 could take for a latch
    colors, brightness = fil.ring_state()  # the light, with SimulatedLedBoard.ring_state's meaning
    np.testing.assert_array_equal((colors.astype(np.int64) * (brightness + 1)) >> 8, expected)
    state = link.request("06:STATE")
    assert state == frame("06:OK 127 1 10000 FF0000" + "000000" * 4 + "00C811" + "000000" * 5 + "010203")


def test_all_off_and_full_brightness(fil: FirmwareInTheLoop, link: Link) -> None:
    assert link.request("10:ALL 10 20 255") == frame("10:OK")
    assert link.request("11:SHOW") == frame("11:OK 1")
    np.testing.assert_array_equal(fil.wait_for_frame(2, timeout_s=3).rgb, np.tile([10, 20, 255], (12, 1)))
    assert link.request("12:OFF") == frame("12:OK 2")
    off = fil.wait_for_frame(3, timeout_s=3)
    assert not off.rgb.any() and off.brightness == 255


def test_battery_reading_follows_injected_voltage(fil: FirmwareInTheLoop, link: Link) -> None:
    for seq, mv in enumerate((4000, 3700, 4200, 3000)):
        fil.battery_mv = mv
        reply = link.request(f"2{seq}:BAT")
        assert reply.startswith(f"2{seq}:OK ".encode())
        measured = int(reply.split(b" ")[1].split(b"*")[0])
        # 10-bit ADC behind a 1:2 divider: one LSB is 9.8 mV, and the firmware floors
        assert mv - 20 <= measured <= mv, (mv, measured)


def _uptime_ms(link: Link, seq: int) -> int:
    reply = link.request(f"{seq & 0xFF:02X}:PING")
    return int(reply.split(b" ")[1].split(b"*")[0])


def _let_battery_checks_run(link: Link, first_seq: int) -> None:
    """Wait (in emulated time, via PING) until at least one 1 s battery check has run."""
    start = _uptime_ms(link, first_seq)
    seq = first_seq + 1
    while _uptime_ms(link, seq) < start + 1100:
        seq += 1
        time.sleep(0.1)


def test_low_battery_event_once_per_crossing(fil: FirmwareInTheLoop, link: Link) -> None:
    fil.battery_mv = 3200
    event = link.wait_event("LOWBAT", timeout_s=5)
    assert event.startswith(b"!:LOWBAT 31") and event == frame(event[:-4].decode())
    fil.battery_mv = 3150  # still low: no second event
    _let_battery_checks_run(link, 0x10)
    assert not [e for e in link.events if e.startswith(b"!:LOWBAT")]
    fil.battery_mv = 3500  # >= 3400 mV re-arms the alarm
    _let_battery_checks_run(link, 0x40)
    fil.battery_mv = 3100
    assert link.wait_event("LOWBAT", timeout_s=5).startswith(b"!:LOWBAT 30")


def test_silence_timeout_switches_off_and_reports(fil: FirmwareInTheLoop, link: Link) -> None:
    assert link.request("30:ALL 50 60 70") == frame("30:OK")
    assert link.request("31:SHOW") == frame("31:OK 1")
    assert link.request("32:TIMEOUT 300") == frame("32:OK")
    assert link.wait_event("TIMEOUT", timeout_s=10) == frame("!:TIMEOUT")
    dark = fil.wait_for_frame(3, timeout_s=3)
    assert not dark.rgb.any()
    assert link.request("33:STATE") == frame("33:OK 255 2 300 " + "0" * 72)


def test_corrupt_frames_get_error_replies(fil: FirmwareInTheLoop, link: Link) -> None:
    good = frame("40:SHOW")
    link.send(good[:-3] + (b"00" if good[-3:-1] != b"00" else b"01") + b"\n")
    assert link.read_line() == frame("--:ER 1 CRC")
    link.send(b"40:SHOW\n")
    assert link.read_line() == frame("--:ER 1 CRC")
    link.send(b"\x00\xff\xfe garbage\r\n")
    assert link.read_line() == frame("--:ER 1 CRC")
    link.send(frame("41:" + "X" * 100))
    assert link.read_line() == frame("--:ER 5 TOOLONG")
    assert link.request("42:BLINK") == frame("42:ER 4 UNKNOWN")
    assert link.request("43:SET 12 0 0 0") == frame("43:ER 3 RANGE")
    assert link.request("44:SET 1 2") == frame("44:ER 2 SYNTAX")
    assert link.request("4:PING") == frame("--:ER 2 SYNTAX")
    assert fil.frame_count == 1, "no error may show a frame"
    assert link.request("45:HELLO") == frame("45:OK SCOPECTL-LEDRING 1.0.0 1 12")


def test_duplicate_seq_is_not_executed_again(fil: FirmwareInTheLoop, link: Link) -> None:
    assert link.request("50:ALL 1 2 3") == frame("50:OK")
    assert link.request("51:SHOW") == frame("51:OK 1")
    fil.wait_for_frame(2, timeout_s=3)
    assert link.request("51:SHOW") == frame("51:OK 1")
    assert link.request("51:SHOW") == frame("51:OK 1")
    assert link.request("52:OFF") == frame("52:OK 2")
    assert link.request("52:OFF") == frame("52:OK 2")
    fil.wait_for_frame(3, timeout_s=3)
    assert link.request("53:PING").startswith(b"53:OK ")
    assert fil.frame_count == 3, "retries must not send frames"
    assert link.request("54:STATE") == frame("54:OK 255 2 10000 " + "0" * 72)


def test_reset_reboots_through_the_watchdog(fil: FirmwareInTheLoop, link: Link) -> None:
    assert link.request("60:ALL 9 9 9") == frame("60:OK")
    assert link.request("61:SHOW") == frame("61:OK 1")
    assert link.request("62:RESET") == frame("62:OK")
    link.events.clear()  # the power-up !:BOOT, if it was still in the pty when the port opened
    assert link.wait_event("BOOT", timeout_s=5) == frame("!:BOOT 1.0.0 1")
    assert not fil.wait_for_frame(3, timeout_s=3).rgb.any()  # boot blanks the ring
    assert link.request("63:STATE") == frame("63:OK 255 0 10000 " + "0" * 72)
    uptime = int(link.request("64:PING").split(b" ")[1].split(b"*")[0])
    assert uptime < 2000


def _plain_cases() -> list[dict[str, Any]]:
    doc = json.loads(VECTORS.read_text(encoding="ascii"))
    return [c for c in doc["board_cases"] if not c.get("needs")]


def test_shared_vectors_on_the_emulated_board(fil: FirmwareInTheLoop, link: Link) -> None:
    """Every vector case that needs no virtual clock / ADC / overrun injection, on the real firmware."""
    cases = _plain_cases()
    assert len(cases) >= 25
    for case in cases:
        frames_before = fil.frame_count
        assert link.request("EE:RESET") == frame("EE:OK"), case["name"]
        link.events.clear()  # earlier events; the reboot's !:BOOT follows the OK
        assert link.wait_event("BOOT", timeout_s=5) == frame("!:BOOT 1.0.0 1")
        fil.wait_for_frame(frames_before + 1, timeout_s=3)
        link.events.clear()
        for step in case["steps"]:
            link.send(step["send"].encode("latin-1"))
            for want in step["expect"]:
                got = link.read_line(skip_events=False)
                assert got == want.encode("latin-1"), (case["name"], step["send"])
        state = case.get("expect_state", {})
        reply = link.request("ED:STATE")
        assert not link.events, (case["name"], link.events)
        fields = reply.split(b"*")[0].decode().split(" ")
        assert fields[0] == "ED:OK", (case["name"], reply)
        if "brightness" in state:
            assert int(fields[1]) == state["brightness"], case["name"]
        if "frame_no" in state:
            assert int(fields[2]) == state["frame_no"], case["name"]
        if "timeout_ms" in state:
            assert int(fields[3]) == state["timeout_ms"], case["name"]
        if "shown" in state:
            assert fields[4] == state["shown"], case["name"]
        if "wire_rgb" in state:
            assert fil.last_frame().rgb.tobytes().hex().upper() == state["wire_rgb"], case["name"]
            assert fil.last_frame().brightness == state.get("brightness", fil.last_frame().brightness)


def test_missing_harness_is_reported_not_hung(tmp_path: Path) -> None:
    board = FirmwareInTheLoop(harness_path=tmp_path / "nope", elf_path=tmp_path / "nope.elf")
    with pytest.raises(DeviceNotFoundError, match="make -C firmware fil"):
        board.start()


def test_emulated_clock_never_runs_ahead_of_the_wall_clock(fil_harness: Path, firmware_elf: Path) -> None:
    """The harness throttles to real time: uptime (PING) can lag the wall clock but never lead it."""
    started = time.monotonic()
    with FirmwareInTheLoop(elf_path=firmware_elf, harness_path=fil_harness) as board:
        assert board.path is not None
        link = Link(board.path)
        try:
            for seq in range(5):
                uptime_ms = _uptime_ms(link, seq)
                assert uptime_ms <= (time.monotonic() - started) * 1000 + 2, uptime_ms
                time.sleep(0.1)
            assert uptime_ms >= 400  # and it does advance
        finally:
            link.close()


def test_battery_divider_is_a_build_option(fil_harness: Path) -> None:
    """A firmware built with DIVIDER_NUM=3 reads a battery behind a 1:3 divider correctly."""
    proc = make("all", "BUILD=build/divider3", "DIVIDER_NUM=3", "DIVIDER_DEN=1")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    elf = FIRMWARE / "build" / "divider3" / "scopectl_ledring.elf"
    with FirmwareInTheLoop(battery_mv=7400, divider=(3, 1), elf_path=elf, harness_path=fil_harness) as board:
        assert board.path is not None
        link = Link(board.path)
        try:
            reply = link.request("01:BAT")
            measured = int(reply.split(b" ")[1].split(b"*")[0])
            assert 7400 - 30 <= measured <= 7400, measured  # one LSB is 14.7 mV behind 1:3
        finally:
            link.close()
