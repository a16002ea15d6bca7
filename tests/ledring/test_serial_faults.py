"""Every injected fault ends in a recovered command or one clear error, never a hang (simulated board)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import numpy as np
import pytest

from scopectl.errors import DeviceError, DeviceProtocolError, DeviceTimeoutError
from scopectl.hardware.ledring import SerialLedRing
from scopectl.hardware.ledring.protocol import encode_reply
from scopectl.hardware.ledring.sim import BoardFaults, SimulatedLedBoard
from scopectl.hardware.ledring.sim.firmware_model import BoardCore

FAST = {"timeout_s": 0.25, "connect_timeout_s": 1.0, "retries": 4}


@pytest.fixture
def board() -> Iterator[SimulatedLedBoard]:
    with SimulatedLedBoard() as sim:
        yield sim


def patterns(count: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, size=(12, 3), dtype=np.uint8) for _ in range(count)]


@pytest.mark.parametrize(
    "faults",
    [
        BoardFaults(rx_drop=0.01, seed=1),
        BoardFaults(rx_corrupt=0.01, seed=2),
        BoardFaults(tx_drop=0.002, seed=3),
        BoardFaults(tx_corrupt=0.002, seed=4),
        BoardFaults(rx_overrun=0.01, seed=5),
    ],
    ids=["rx_drop", "rx_corrupt", "tx_drop", "tx_corrupt", "rx_overrun"],
)
def test_byte_faults_are_recovered_by_retries(board: SimulatedLedBoard, faults: BoardFaults) -> None:
    assert board.path is not None
    with SerialLedRing(board.path, **FAST) as ring:  # type: ignore[arg-type]
        board.faults = faults
        frames_before = board.core.frame_no
        shown = 0
        for pattern in patterns(6, seed=faults.seed):
            state = ring.set_pattern(pattern, brightness=180)
            shown += 1
            colors, brightness = board.ring_state()
            np.testing.assert_array_equal(colors, pattern)
            assert brightness == 180
            np.testing.assert_array_equal(board.emitted(), state.emitted())
        assert ring.retry_count > 0, "the faults never hit: the test would prove nothing"
        # retried SHOWs were answered from the board's cache, never shown twice
        assert board.core.frame_no - frames_before == shown


def test_stalled_board_gives_one_timeout_error_then_recovers(board: SimulatedLedBoard) -> None:
    assert board.path is not None
    with SerialLedRing(board.path, timeout_s=0.1, retries=2, connect_timeout_s=1.0) as ring:
        board.stall(0.15)  # shorter than the retries: recovered
        assert ring.battery_mv() > 0
        board.stall(2.0)
        with pytest.raises(DeviceTimeoutError, match="no valid reply to STATE after 3 attempt"):
            ring.state()
        board.stall(0.0)
        # the stale replies the board now sends for the old attempts are skipped
        state = ring.set_all((9, 9, 9), brightness=99)
        assert board.ring_state()[1] == 99
        assert ring.state().same_light(state)


def test_reset_in_mid_pattern_is_detected_and_the_pattern_redone(board: SimulatedLedBoard) -> None:
    assert board.path is not None
    pattern = patterns(1, seed=9)[0]
    with SerialLedRing(board.path, **FAST) as ring:  # type: ignore[arg-type]
        ring.set_all((7, 7, 7), brightness=255)
        board.set_faults(reset_after_messages=6)  # BRI, SET 0..4, then the board resets
        state = ring.set_pattern(pattern, brightness=150)
        assert board.resets == 1
        assert ring.boot_count == 1
        np.testing.assert_array_equal(board.ring_state()[0], pattern)
        causes = [s.cause for _, s in ring.history]
        assert causes[-2:] == ["boot", "set"]
        assert ring.history[-1][1] is state
        assert [e.name for e in ring.events] == ["BOOT"]


def test_reset_between_commands_is_seen_at_the_next_exchange(board: SimulatedLedBoard) -> None:
    assert board.path is not None
    with SerialLedRing(board.path, **FAST) as ring:  # type: ignore[arg-type]
        ring.set_all((200, 0, 0), brightness=255)
        board.reset()
        seen = ring.state()
        assert seen.is_off
        assert ring.history[-1][1].cause == "boot"
        ring.set_all((0, 200, 0), brightness=255)
        assert board.ring_state()[0][0].tolist() == [0, 200, 0]


def test_brownout_gives_one_clear_error_and_dimmer_light_still_works(board: SimulatedLedBoard) -> None:
    assert board.path is not None
    with SerialLedRing(board.path, **FAST) as ring:  # type: ignore[arg-type]
        board.battery.charge = 0.02  # 3120 mV open circuit: 12 white LEDs pull it below 3000 mV
        board.set_faults(brownout_mv=3000.0)
        dim = ring.set_all((255, 255, 255), brightness=40)
        with pytest.raises(DeviceError, match="brown-out") as info:
            ring.set_all((255, 255, 255), brightness=255)
        assert type(info.value) is DeviceError
        assert board.brownouts >= 1
        assert ring.history[-1][1].cause == "boot"
        state = ring.set_all((255, 255, 255), brightness=40)
        assert state.same_light(dim)
        np.testing.assert_array_equal(board.emitted(), state.emitted())


def test_low_battery_event_is_recorded(board: SimulatedLedBoard) -> None:
    assert board.path is not None
    with SerialLedRing(board.path, **FAST) as ring:  # type: ignore[arg-type]
        board.set_adc(330)  # 3225 mV: below the 3300 mV alarm
        deadline = time.monotonic() + 3.0
        while ring.low_battery_mv is None and time.monotonic() < deadline:
            ring.ping()
            time.sleep(0.05)
        assert ring.low_battery_mv == 3225.0
        assert [e.name for e in ring.events] == ["LOWBAT"]
        assert ring.events[0].fields == ("3225",)


class _Proto2Core(BoardCore):
    def _run(self, seq: int, command: bytes, args: list[int]) -> tuple[bytes, bool]:
        if command == b"HELLO":
            return encode_reply(seq, ("SCOPECTL-LEDRING", "2.0.0", 2, 12)), False
        return super()._run(seq, command, args)


class _OtherCore(BoardCore):
    def _run(self, seq: int, command: bytes, args: list[int]) -> tuple[bytes, bool]:
        if command == b"HELLO":
            return encode_reply(seq, ("BLINKY", "0.1")), False
        return super()._run(seq, command, args)


@pytest.mark.parametrize(
    ("core", "message"),
    [
        (_Proto2Core, "speaks protocol 2 .* speaks protocol 1"),
        (_OtherCore, "not SCOPECTL-LEDRING: wrong firmware"),
    ],
)
def test_wrong_firmware_or_protocol_is_a_clear_error(core: type[BoardCore], message: str) -> None:
    with SimulatedLedBoard() as sim:
        sim.core = core(read_adc=lambda: 419)
        sim.reset()
        assert sim.path is not None
        with pytest.raises(DeviceProtocolError, match=message):
            SerialLedRing(sim.path, **FAST)  # type: ignore[arg-type]


def test_silent_board_is_a_timeout_and_open_is_bounded(board: SimulatedLedBoard) -> None:
    assert board.path is not None
    board.stall(60.0)
    with pytest.raises(DeviceTimeoutError, match="no answer to HELLO"):
        SerialLedRing(board.path, timeout_s=0.1, connect_timeout_s=0.3)


def test_concurrent_callers_are_serialised(board: SimulatedLedBoard) -> None:
    assert board.path is not None
    errors: list[BaseException] = []
    with SerialLedRing(board.path, **FAST) as ring:  # type: ignore[arg-type]

        def worker(level: int) -> None:
            try:
                for _ in range(10):
                    ring.set_all((level, level, level), brightness=255)
                    ring.battery_mv()
            except BaseException as exc:  # collected and re-raised by the test
                errors.append(exc)

        threads = [threading.Thread(target=worker, args=(level,)) for level in (10, 20, 30)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10.0)
        assert not errors
        assert ring.retry_count == 0 and ring.noise_lines == 0
        assert len(ring.history) >= 3
