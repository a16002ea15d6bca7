"""Contract tests of SerialLedRing, run unchanged against the simulated board, the firmware in the loop
and (with ``-m hardware --ledring-url URL``) a real board."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pytest

from scopectl.errors import DeviceError
from scopectl.hardware.ledring import LedRingConfig, LedState, SerialLedRing, open_led_ring


def open_ring(target: Any, **kwargs: object) -> SerialLedRing:
    return SerialLedRing(target.url, **{**target.open_kwargs, **kwargs})  # type: ignore[arg-type]


def board_emits(target: Any, state: LedState) -> None:
    """For simulated boards: what the board's LEDs emit equals what the driver says is shown."""
    if target.board is not None:
        np.testing.assert_array_equal(target.board.emitted(), state.emitted())


def test_info_identifies_the_firmware(ring_target: Any) -> None:
    with open_ring(ring_target) as ring:
        info = ring.info()
        assert info.kind == "ledring/scopectl"
        assert info.model == "SCOPECTL-LEDRING"
        assert info.protocol == "1"
        assert info.firmware.count(".") == 2
        assert info.address == ring_target.url
        assert info.extra["num_leds"] == ring.num_leds == 12
        assert info.extra["uptime_ms"] >= 0


def test_pattern_is_shown_and_read_back(ring_target: Any) -> None:
    rng = np.random.default_rng(5)
    pattern = rng.integers(0, 256, size=(12, 3), dtype=np.uint8)
    with open_ring(ring_target) as ring:
        before = time.time()
        shown = ring.set_pattern(pattern, brightness=200)
        assert before <= shown.shown_at <= time.time()
        np.testing.assert_array_equal(shown.colors, pattern)
        assert shown.brightness == 200 and shown.cause == "set"
        board_emits(ring_target, shown)
        read = ring.state()
        assert read.same_light(shown)
        assert ring.history[-1][1] is shown


def test_set_all_clips_and_rounds_its_arguments(ring_target: Any) -> None:
    with open_ring(ring_target) as ring:
        state = ring.set_all((300, -5, 12.6), brightness=999)  # type: ignore[arg-type]
        np.testing.assert_array_equal(state.colors, np.tile([255, 0, 13], (12, 1)))
        assert state.brightness == 255
        board_emits(ring_target, state)
        assert ring.state().same_light(state)


@pytest.mark.parametrize(
    ("colors", "message"),
    [
        (np.zeros((11, 3)), "shape"),
        (np.full((12, 3), np.nan), "finite"),
        (np.zeros((12, 3), dtype=object), "numeric"),
    ],
)
def test_invalid_patterns_are_refused_before_anything_is_sent(
    ring_target: Any, colors: np.ndarray, message: str
) -> None:
    with open_ring(ring_target) as ring:
        history = list(ring.history)
        with pytest.raises(ValueError, match=message):
            ring.set_pattern(colors, brightness=10)
        assert ring.history == history


def test_off_keeps_brightness_and_is_recorded(ring_target: Any) -> None:
    with open_ring(ring_target) as ring:
        lit = ring.set_all((10, 20, 30), brightness=77)
        dark = ring.off()
        assert dark.is_off and dark.brightness == 77 and dark.cause == "off"
        board_emits(ring_target, dark)
        assert [s for _, s in ring.history[-2:]] == [lit, dark]
        times = [t for t, _ in ring.history]
        assert times == sorted(times)


def test_battery_reading_is_plausible(ring_target: Any) -> None:
    with open_ring(ring_target) as ring:
        mv = ring.battery_mv()
        assert 2500.0 <= mv <= 10000.0
        if ring_target.board is not None:
            assert mv == pytest.approx(ring_target.board.battery_mv, abs=25.0)


def test_watchdog_switches_off_and_is_recorded(ring_target: Any) -> None:
    with open_ring(ring_target, watchdog_ms=200) as ring:
        ring.set_all((50, 50, 50), brightness=255)
        time.sleep(0.6)
        seen = ring.state()
        assert seen.is_off
        assert [e.name for e in ring.events][-1:] == ["TIMEOUT"]
        assert ring.history[-1][1].cause == "timeout"
        board_emits(ring_target, seen)


def test_reset_reboots_and_the_ring_recovers(ring_target: Any) -> None:
    with open_ring(ring_target) as ring:
        ring.set_all((1, 2, 3), brightness=255)
        boots = ring.boot_count
        ring.reset()
        assert ring.boot_count == boots + 1
        assert ring.state().is_off
        assert ring.history[-1][1].cause == "boot"
        state = ring.set_all((4, 5, 6), brightness=128)
        board_emits(ring_target, state)


def test_closed_ring_refuses_calls(ring_target: Any) -> None:
    ring = open_ring(ring_target)
    ring.close()
    ring.close()
    with pytest.raises(DeviceError, match="closed"):
        ring.battery_mv()


def test_factory_opens_the_configured_flavour(ring_target: Any) -> None:
    cfg = LedRingConfig.model_validate({"flavour": "scopectl", "url": ring_target.url, "timeout_s": 1.0})
    with open_led_ring(cfg) as ring:
        assert isinstance(ring, SerialLedRing)
        assert ring.ping() >= 0
