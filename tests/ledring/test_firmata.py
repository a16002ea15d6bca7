"""FirmataLedRing against the simulated StandardFirmata board and, with ``-m hardware
--firmata-port PATH``, a real one; faults on the simulated board."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from pyfirmata2 import BOARDS
from pyfirmata2.util import pin_list_to_board_dict

from scopectl.errors import DeviceError, DeviceNotFoundError, DeviceTimeoutError
from scopectl.hardware.ledring import FirmataLedRing, LedRingConfig, open_led_ring
from scopectl.hardware.ledring.sim import BoardFaults, SimulatedFirmataBoard, SimulatedLedBoard
from scopectl.hardware.ledring.sim.firmata_board import CAPABILITY_QUERY, END_SYSEX, START_SYSEX

FAST: dict[str, Any] = {"setup_wait_s": 0.0, "timeout_s": 0.2, "connect_timeout_s": 0.6}


def open_ring(target: Any, **kwargs: Any) -> FirmataLedRing:
    return FirmataLedRing(target.url, **{**target.open_kwargs, **kwargs})


# ---- contract (simulated and real) ------------------------------------------------------------------
def test_info_and_single_white_led(firmata_target: Any) -> None:
    with open_ring(firmata_target) as ring:
        info = ring.info()
        assert info.kind == "ledring/firmata"
        assert "Firmata" in info.model
        assert info.protocol.count(".") == 1 and info.firmware.count(".") == 1
        assert ring.num_leds == 1
        assert info.extra["led_pin"] == 9 and info.extra["battery_pin"] == 0


def test_brightness_sets_the_pwm_duty_and_reads_back(firmata_target: Any) -> None:
    with open_ring(firmata_target) as ring:
        state = ring.set_all((200, 100, 30), brightness=128)  # grey level 110 -> duty (110*129)>>8 = 55
        np.testing.assert_array_equal(state.colors, [[110, 110, 110]])
        assert state.brightness == 128 and int(state.emitted()[0, 0]) == 55
        if firmata_target.board is not None:
            assert firmata_target.board.duty() == 55
            colors, brightness = firmata_target.board.ring_state()
            assert brightness == 55 and np.all(colors == 255)
        assert ring.state() is state
        off = ring.off()
        assert off.is_off and ring.state().is_off
        assert [s.cause for _, s in ring.history][-2:] == ["set", "off"]


def test_pattern_shape_is_one_led(firmata_target: Any) -> None:
    with open_ring(firmata_target) as ring:
        with pytest.raises(ValueError, match=r"shape \(1, 3\)"):
            ring.set_pattern(np.zeros((12, 3)), brightness=10)
        state = ring.set_pattern(np.array([[255, 255, 255]]), brightness=300)
        assert state.brightness == 255 and int(state.emitted()[0, 0]) == 255


def test_battery_voltage_through_the_divider(firmata_target: Any) -> None:
    with open_ring(firmata_target) as ring:
        mv = ring.battery_mv()
        assert 2500.0 <= mv <= 10000.0
        if firmata_target.board is not None:
            lsb_mv = 5000.0 * 2.0 / 1023.0
            assert mv == pytest.approx(firmata_target.board.battery_mv, abs=lsb_mv)


def test_factory_opens_a_firmata_ring(firmata_target: Any) -> None:
    cfg = LedRingConfig.model_validate(
        {"flavour": "firmata", "port": firmata_target.url, **firmata_target.open_kwargs}
    )
    with open_led_ring(cfg) as ring:
        assert isinstance(ring, FirmataLedRing)
        assert ring.battery_mv() > 0


# ---- simulated board only ------------------------------------------------------------------------------
@pytest.fixture
def board() -> Iterator[SimulatedFirmataBoard]:
    with SimulatedFirmataBoard() as sim:
        yield sim


def test_battery_sags_under_the_led_load(board: SimulatedFirmataBoard) -> None:
    assert board.path is not None
    with FirmataLedRing(board.path, **FAST) as ring:
        idle = ring.battery_mv()
        ring.set_all((255, 255, 255), brightness=255)
        loaded = ring.battery_mv()
        expected_sag = board.battery.internal_resistance_ohm * board.led_full_ma
        assert idle - loaded == pytest.approx(expected_sag, abs=2 * 5000.0 * 2.0 / 1023.0)


@pytest.mark.parametrize(
    "faults",
    [
        BoardFaults(rx_drop=0.08, seed=11),
        BoardFaults(rx_corrupt=0.08, seed=12),
        BoardFaults(tx_drop=0.03, seed=13),
        BoardFaults(tx_corrupt=0.03, seed=14),
    ],
    ids=["rx_drop", "rx_corrupt", "tx_drop", "tx_corrupt"],
)
def test_byte_faults_are_recovered(board: SimulatedFirmataBoard, faults: BoardFaults) -> None:
    assert board.path is not None
    with FirmataLedRing(board.path, **{**FAST, "retries": 6, "battery_samples": 5}) as ring:
        board.faults = faults
        for duty in (17, 200, 3, 255, 90, 128):
            state = ring.set_all((255, 255, 255), brightness=duty)
            assert board.duty() == int(state.emitted()[0, 0]) == duty
            assert ring.battery_mv() == pytest.approx(board.battery_mv, abs=60.0)
        assert board.faults_injected > 0, "the faults never hit: the test would prove nothing"


def test_reset_in_mid_session_is_recorded_and_recovered(board: SimulatedFirmataBoard) -> None:
    assert board.path is not None
    with FirmataLedRing(board.path, **FAST) as ring:
        ring.set_all((255, 255, 255), brightness=100)
        board.reset()
        time.sleep(0.05)
        assert ring.state().is_off
        assert ring.boot_count == 1 and ring.history[-1][1].cause == "boot"
        ring.set_all((255, 255, 255), brightness=150)
        assert board.duty() == 150
        assert ring.battery_mv() > 0  # analog reporting was switched on again after the reset


def test_reset_while_writing_is_recovered(board: SimulatedFirmataBoard) -> None:
    assert board.path is not None
    with FirmataLedRing(board.path, **FAST) as ring:
        board.set_faults(reset_after_messages=1)  # the PWM write itself is lost to a reset
        ring.set_all((255, 255, 255), brightness=60)
        assert board.duty() == 60 and board.resets == 1 and ring.rewrites >= 1


def test_stalled_board_gives_one_timeout_error_then_recovers(board: SimulatedFirmataBoard) -> None:
    assert board.path is not None
    with FirmataLedRing(board.path, **{**FAST, "retries": 1}) as ring:
        board.stall(3.0)
        with pytest.raises(DeviceTimeoutError, match="no answer to the pin read-back"):
            ring.set_all((255, 255, 255), brightness=70)
        board.stall(0.0)
        ring.set_all((255, 255, 255), brightness=80)
        assert board.duty() == 80


def test_brownout_gives_one_clear_error(board: SimulatedFirmataBoard) -> None:
    assert board.path is not None
    with FirmataLedRing(board.path, **FAST) as ring:
        board.battery.charge = 0.0  # 3000 mV open circuit
        board.battery.internal_resistance_ohm = 2.0  # the full LED current pulls it below 2900 mV
        board.set_faults(brownout_mv=2900.0)
        with pytest.raises(DeviceError, match="brown-out"):
            ring.set_all((255, 255, 255), brightness=255)
        assert board.brownouts >= 1
        ring.set_all((255, 255, 255), brightness=20)
        assert board.duty() == 20


def test_a_board_still_streaming_from_an_earlier_session_opens(board: SimulatedFirmataBoard) -> None:
    """A board left streaming analog reports (every 1 ms) is drained with a deadline, then driven."""
    assert board.path is not None
    with board._lock:
        board.analog_reporting[0] = True
        board.sampling_interval_ms = 1
    started = time.monotonic()
    with FirmataLedRing(board.path, **FAST) as ring:
        assert time.monotonic() - started < 2.0
        ring.set_all((255, 255, 255), brightness=90)
        assert board.duty() == 90
        assert ring.battery_mv() == pytest.approx(board.battery_mv, abs=60.0)
    # closing stops the reports; the board reads the last message in its own time, as a real one does
    deadline = time.monotonic() + 5.0
    while board.analog_reporting[0] and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not board.analog_reporting[0]


def test_capability_response_describes_an_uno(board: SimulatedFirmataBoard) -> None:
    with board._lock:
        reply = b"".join(board._feed(b)[0] for b in (START_SYSEX, CAPABILITY_QUERY, END_SYSEX))
    assert reply[:2] == bytes((START_SYSEX, 0x6C)) and reply[-1] == END_SYSEX
    pins: list[list[int]] = [[]]
    for value in reply[2:-1]:
        pins[-1].append(value)
        if value == 0x7F:
            pins.append([])
    layout = pin_list_to_board_dict(pins[:-1])
    assert set(layout["pwm"]) == set(BOARDS["arduino"]["pwm"])
    assert len(layout["analog"]) == len(BOARDS["arduino"]["analog"])
    assert set(layout["disabled"]) == set(BOARDS["arduino"]["disabled"])


def test_wrong_address_and_wrong_firmware_are_clear_errors() -> None:
    with pytest.raises(DeviceNotFoundError, match="URL"):
        FirmataLedRing("socket://127.0.0.1:9", **FAST)
    with pytest.raises(DeviceNotFoundError, match="cannot open"):
        FirmataLedRing("/dev/does-not-exist-scopectl", **FAST)
    with SimulatedLedBoard() as ours:  # scopectl's firmware does not speak Firmata
        assert ours.path is not None
        with pytest.raises(DeviceTimeoutError, match="no Firmata answer"):
            FirmataLedRing(ours.path, **FAST)


def test_board_error_strings_are_logged(
    board: SimulatedFirmataBoard, caplog: pytest.LogCaptureFixture
) -> None:
    assert board.path is not None
    with FirmataLedRing(board.path, **FAST) as ring:
        ring._link.write(bytes((0xF4, 2, 3)))  # SET_PIN_MODE pin 2 PWM: not a PWM pin on an Uno
        ring.state()
        assert ring.board_messages == ["Unknown pin mode"]
        assert "Unknown pin mode" in caplog.text


def test_unmodified_pyfirmata2_drives_the_simulator(
    board: SimulatedFirmataBoard, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The simulator serves pyfirmata2 used the documented way (its own reader thread, callbacks)."""
    import pyfirmata2

    assert board.path is not None
    monkeypatch.setattr(pyfirmata2.pyfirmata2, "BOARD_SETUP_WAIT_TIME", 0)
    arduino = pyfirmata2.Arduino(board.path)
    samples: list[float] = []
    try:
        arduino.samplingOn(10)
        battery = arduino.get_pin("a:0:i")
        battery.register_callback(samples.append)
        arduino.get_pin("d:9:p").write(0.5)
        deadline = time.monotonic() + 5.0
        while (len(samples) < 3 or board.duty() != 128) and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        arduino.exit()
    assert board.duty() == 128
    assert board.sampling_interval_ms == 10
    assert len(samples) >= 3
    assert samples[-1] * 5000.0 * 2.0 == pytest.approx(board.battery_mv, abs=2 * 5000.0 * 2.0 / 1023.0)
