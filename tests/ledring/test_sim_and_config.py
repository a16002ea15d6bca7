"""The simulators' battery model and accessors for the digital twin, and the LED-ring configuration."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from scopectl.config.base import load_model
from scopectl.errors import ConfigError
from scopectl.hardware.ledring import LedRingConfig, SerialLedRing
from scopectl.hardware.ledring.protocol import encode_request
from scopectl.hardware.ledring.sim import BatteryModel, BoardFaults, SimulatedFirmataBoard, SimulatedLedBoard


def test_ring_state_and_battery_follow_the_driver() -> None:
    with SimulatedLedBoard() as board:
        assert board.path is not None
        idle_mv = board.battery_mv
        with SerialLedRing(board.path, timeout_s=0.5) as ring:
            ring.set_all((255, 255, 255), brightness=255)
            colors, brightness = board.ring_state()
            assert np.all(colors == 255) and brightness == 255
            lit_mv = board.battery_mv
            assert idle_mv - lit_mv == pytest.approx(0.3 * 720.0, abs=1.0)
            assert ring.battery_mv() == pytest.approx(lit_mv, abs=10.0)
            ring.set_all((255, 0, 0), brightness=127)
            np.testing.assert_array_equal(board.emitted(), np.tile([127, 0, 0], (12, 1)))
            assert board.load_ma == pytest.approx(20.0 + 12 * 20.0 * 127 / 255)


def test_battery_falls_over_accelerated_time() -> None:
    battery = BatteryModel(charge=0.5, time_scale=3600.0)  # one simulated second is one hour
    with SimulatedLedBoard(battery=battery, virtual_clock=True) as board:
        start_mv = board.battery_mv
        board.advance_ms(1000)  # one hour at 20 mA idle
        after_idle = board.battery_mv
        assert battery.charge == pytest.approx(0.5 - 20.0 / 2000.0, abs=1e-6)
        assert after_idle < start_mv
        with board._lock:
            board.core.receive(encode_request(1, "ALL", (255, 255, 255)) + encode_request(2, "SHOW"))
        board.advance_ms(1000)  # one hour at 740 mA
        assert battery.charge == pytest.approx(0.49 - 740.0 / 2000.0, abs=1e-6)
        assert board.battery_mv < after_idle - 300.0


def test_battery_voltage_can_be_set_for_a_scenario() -> None:
    with SimulatedLedBoard() as board:
        board.battery_mv = 3500.0
        assert board.battery_mv == pytest.approx(3500.0, abs=0.5)
        board.set_adc(None)
        assert board.core.measure_battery_mv() == pytest.approx(3500.0, abs=10.0)


def test_firmata_board_describes_its_light_like_a_ring() -> None:
    with SimulatedFirmataBoard(led_pin=10, battery_pin=2) as board:
        colors, brightness = board.ring_state()
        assert colors.shape == (12, 3) and brightness == 0
        assert board.adc_value() == round(board.battery_mv / 2.0 * 1023 / 5000.0)


def test_fault_settings_are_validated_and_seeded() -> None:
    with pytest.raises(ValueError, match="outside 0..1"):
        BoardFaults(rx_drop=1.5)
    with pytest.raises(ValueError, match=">= 1"):
        BoardFaults(reset_after_messages=0)
    board = SimulatedLedBoard(faults=BoardFaults(rx_corrupt=0.5, seed=7))
    first = [board._rng.random() for _ in range(3)]
    board.set_faults(seed=7)
    assert [board._rng.random() for _ in range(3)] == first
    assert board.faults.rx_corrupt == 0.5


def test_stop_is_idempotent_and_start_once() -> None:
    board = SimulatedLedBoard()
    board.start()
    with pytest.raises(RuntimeError, match="already started"):
        board.start()
    board.stop()
    board.stop()


def test_config_from_yaml_and_its_errors(tmp_path: Path) -> None:
    path = tmp_path / "ring.yaml"
    path.write_text("flavour: firmata\nport: /dev/ttyACM1\nled_pin: 10\ndivider_ratio: 3\n")
    cfg = load_model(LedRingConfig, path)
    assert (cfg.flavour, cfg.url, cfg.led_pin, cfg.divider_ratio) == ("firmata", "/dev/ttyACM1", 10, 3.0)
    path.write_text("flavour: scopectl\nurl: socket://pi:7000\ntimout_s: 2\n")
    with pytest.raises(ConfigError, match="timout_s: unknown key"):
        load_model(LedRingConfig, path)
    with pytest.raises(ValidationError, match="device path"):
        LedRingConfig(flavour="firmata", url="socket://pi:7000")
    with pytest.raises(ValidationError, match="retries"):
        LedRingConfig(url="/dev/ttyACM0", retries=-1)
