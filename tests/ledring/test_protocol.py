"""The shared protocol vectors through the pure-Python protocol code (host parser and board model)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scopectl.hardware.ledring.protocol import (
    ErrorCode,
    LineError,
    crc8,
    encode_error,
    encode_event,
    encode_reply,
    encode_request,
    parse_message,
    scale_channel,
)
from scopectl.hardware.ledring.sim.firmware_model import BatteryModel, BoardCore, adc_from_mv, mv_from_adc_sum


def _bytes(text: str) -> bytes:
    return text.encode("latin-1")


def test_crc8_examples(vectors: dict[str, Any]) -> None:
    assert len(vectors["crc8"]) >= 3
    for example in vectors["crc8"]:
        assert f"{crc8(_bytes(example['data'])):02X}" == example["crc"], example


def test_host_parser_accepts_and_rejects_like_the_vectors(vectors: dict[str, Any]) -> None:
    checked = 0
    for item in vectors["host_lines"]:
        line = _bytes(item["line"])
        if not item["valid"]:
            with pytest.raises(LineError):
                parse_message(line)
            checked += 1
            continue
        message = parse_message(line)
        assert message.kind == item["kind"], item
        if item["kind"] == "event":
            assert message.name == item["event"]
            assert list(message.fields) == item["values"]
        else:
            assert message.seq == item["seq"]
            assert message.ok == (item["status"] == "OK")
            assert list(message.fields) == item["values"]
            if "error" in item:
                assert message.error == item["error"]["code"]
                assert ErrorCode(item["error"]["code"]).name == item["error"]["name"]
        checked += 1
    assert checked == len(vectors["host_lines"]) > 20


def run_case_on_core(case: dict[str, Any], default_adc: int) -> BoardCore:
    """Run one board case against a freshly booted :class:`BoardCore`, asserting every step's output."""
    adc = [default_adc]
    core = BoardCore(read_adc=lambda: adc[0])
    core.boot(0)
    for index, step in enumerate(case["steps"]):
        if "set_adc" in step:
            adc[0] = step["set_adc"]
            out = b""
        elif "advance_ms" in step:
            out = core.advance(core.now_ms + step["advance_ms"])
        else:
            if step.get("rx_overrun"):
                core.note_overrun()
            out = core.receive(_bytes(step["send"]))
        expected = b"".join(_bytes(line) for line in step["expect"])
        assert out == expected, f"{case['name']} step {index}: {step}"
    return core


def check_state(core: BoardCore, expected: dict[str, Any]) -> None:
    actual = {
        "shown": core.shown.tobytes().hex().upper(),
        "staged": core.staged.tobytes().hex().upper(),
        "brightness": core.brightness,
        "staged_brightness": core.staged_brightness,
        "frame_no": core.frame_no,
        "timeout_ms": core.timeout_ms,
        "wire_rgb": core.wire_rgb().tobytes().hex().upper(),
    }
    for key, value in expected.items():
        assert actual[key] == value, key


def test_board_model_passes_every_board_case(vectors: dict[str, Any]) -> None:
    cases = vectors["board_cases"]
    assert len(cases) >= 40
    for case in cases:
        core = run_case_on_core(case, vectors["default_env"]["adc"])
        check_state(core, case.get("expect_state", {}))


def test_board_model_matches_the_documented_constants(vectors: dict[str, Any]) -> None:
    core = BoardCore()
    boot = core.boot(0)
    assert boot == encode_event("BOOT", (vectors["firmware"], vectors["protocol"]))
    defaults = vectors["defaults"]
    assert (core.brightness, core.timeout_ms, core.frame_no) == (
        defaults["brightness"],
        defaults["timeout_ms"],
        defaults["frame_no"],
    )
    env = vectors["default_env"]
    assert mv_from_adc_sum(16 * env["adc"]) == env["battery_mv"]
    assert adc_from_mv(env["battery_mv"]) == env["adc"]


def test_wire_order_is_grb_with_brightness() -> None:
    core = BoardCore()
    core.boot(0)
    core.receive(encode_request(1, "SET", (0, 200, 100, 50)) + encode_request(2, "BRI", (127,)))
    core.receive(encode_request(3, "SHOW"))
    expected_first = bytes((scale_channel(100, 127), scale_channel(200, 127), scale_channel(50, 127)))
    assert core.wire_bytes()[:3] == expected_first == bytes((50, 100, 25))
    assert core.wire_bytes()[3:] == bytes(33)


def test_frames_are_reported_to_a_listener() -> None:
    frames: list[np.ndarray] = []
    core = BoardCore()
    core.on_frame = frames.append
    core.boot(0)
    core.receive(encode_request(1, "ALL", (9, 9, 9)) + encode_request(2, "SHOW") + encode_request(2, "SHOW"))
    assert len(frames) == 2  # the dark boot frame and one SHOW; the duplicate is not re-executed
    assert np.all(frames[1] == 9)


@settings(max_examples=200, deadline=None)
@given(
    seq=st.integers(0, 255),
    values=st.lists(
        st.one_of(st.integers(0, 2**32 - 1), st.from_regex(r"[A-Z0-9.]{1,8}", fullmatch=True)), max_size=4
    ),
)
def test_replies_round_trip(seq: int, values: list[int | str]) -> None:
    message = parse_message(encode_reply(seq, values))
    assert (message.kind, message.seq, message.ok) == ("reply", seq, True)
    assert message.fields == tuple(str(v) for v in values)


@settings(max_examples=200, deadline=None)
@given(position=st.integers(0, 39), flip=st.integers(0, 7))
def test_any_single_bit_flip_is_detected(position: int, flip: int) -> None:
    good = encode_reply(7, ("1", "2"))
    corrupted = bytearray(good)
    index = position % (len(good) - 1)  # not the terminator
    corrupted[index] ^= 1 << flip
    with pytest.raises(LineError):
        parse_message(bytes(corrupted))


def test_errors_and_events_encode_as_documented() -> None:
    assert encode_error(None, ErrorCode.CRC) == b"--:ER 1 CRC*D2\n"
    assert parse_message(encode_error(0x42, ErrorCode.UNKNOWN)).error == ErrorCode.UNKNOWN
    assert encode_event("TIMEOUT") == b"!:TIMEOUT*AE\n"
    with pytest.raises(ValueError, match="more than 96"):
        encode_request(1, "BRI", ("0" * 100,))


def test_battery_sags_under_load_and_with_charge_drawn() -> None:
    battery = BatteryModel(charge=0.8, internal_resistance_ohm=0.3, time_scale=3600.0)
    white = np.full((12, 3), 255, np.uint8)
    idle_ma = battery.load_ma(np.zeros((12, 3), np.uint8))
    full_ma = battery.load_ma(white)
    assert full_ma - idle_ma == pytest.approx(12 * 60.0)
    assert battery.voltage_mv(idle_ma) - battery.voltage_mv(full_ma) == pytest.approx(0.3 * 720.0)
    before = battery.open_circuit_mv()
    battery.drain(full_ma, 1.0)  # one second at 3600x = one hour at 740 mA
    assert battery.charge == pytest.approx(0.8 - 740.0 / 2000.0)
    assert battery.open_circuit_mv() < before - 100.0
