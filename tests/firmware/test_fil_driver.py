"""The Python host driver (SerialLedRing) against the real firmware running on simavr."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from scopectl.hardware.ledring import SerialLedRing
from scopectl.hardware.ledring.sim.fil import FirmwareInTheLoop


@pytest.fixture
def ring(fil: FirmwareInTheLoop) -> Iterator[Any]:
    assert fil.path is not None
    with SerialLedRing(fil.path, timeout_s=2.0) as driver:
        yield driver


def _scaled(colors: np.ndarray, brightness: int) -> np.ndarray:
    return ((colors.astype(np.uint16) * (brightness + 1)) >> 8).astype(np.uint8)


def test_driver_identifies_the_firmware(ring: Any) -> None:
    info = ring.info()
    assert info.model == "SCOPECTL-LEDRING"
    assert info.firmware == "1.0.0"
    assert int(info.protocol) == 1


def test_driver_pattern_reaches_the_wire(fil: FirmwareInTheLoop, ring: Any) -> None:
    rng = np.random.default_rng(7)
    for brightness in (255, 200, 31):
        colors = rng.integers(0, 256, size=(12, 3), dtype=np.uint8)
        state = ring.set_pattern(colors, brightness=brightness)
        np.testing.assert_array_equal(state.colors, colors)
        assert state.brightness == brightness
        shown = fil.last_frame()  # set_pattern returns once the frame is out
        np.testing.assert_array_equal(shown.rgb, _scaled(colors, brightness))
        assert shown.brightness == brightness
        light, light_brightness = fil.ring_state()
        np.testing.assert_array_equal((light.astype(np.int64) * (light_brightness + 1)) >> 8, shown.rgb)
        assert fil.last_frame().errors == 0


def test_driver_set_all_and_off(fil: FirmwareInTheLoop, ring: Any) -> None:
    ring.set_all((255, 128, 7), brightness=127)
    np.testing.assert_array_equal(fil.emitted(), np.tile([127, 64, 3], (12, 1)).astype(np.uint8))
    frames = fil.frame_count
    ring.off()
    assert fil.frame_count == frames + 1
    assert not fil.emitted().any()


def test_driver_reads_the_injected_battery(fil: FirmwareInTheLoop, ring: Any) -> None:
    for mv in (3800.0, 4150.0):
        fil.battery_mv = mv
        assert mv - 20 <= ring.battery_mv() <= mv


def test_silent_driver_lets_the_board_switch_off(fil: FirmwareInTheLoop) -> None:
    assert fil.path is not None
    with SerialLedRing(fil.path, timeout_s=2.0, watchdog_ms=300) as driver:
        driver.set_all((10, 10, 10), brightness=255)
        assert fil.emitted().any()
        frames = fil.frame_count
        dark = fil.wait_for_frame(frames + 1, timeout_s=10)  # the host stays silent
        assert not dark.rgb.any()
