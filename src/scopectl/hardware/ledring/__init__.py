"""The phone microscope's LED ring: one interface, two drivers, their configuration and protocol code.

* :class:`LedRing` — the interface (set a pattern and wait until shown, battery voltage, device info,
  a timestamped history of every change).
* :class:`SerialLedRing` — the 12-LED NeoPixel ring running scopectl's firmware (protocol 1, any pyserial
  URL); :class:`FirmataLedRing` — a white LED and a battery divider on a board running plain
  StandardFirmata.
* :class:`LedRingConfig` and :func:`open_led_ring` — configuration and factory.
* :mod:`~scopectl.hardware.ledring.protocol` — the line protocol (CRC, encoding, parsing);
  :mod:`~scopectl.hardware.ledring.link` — the one boundary to pyserial.

The simulated boards live in :mod:`scopectl.hardware.ledring.sim` (imported separately).  This package may
import :mod:`scopectl.errors` and :mod:`scopectl.config`; it never imports its ``sim`` package (an
import-linter contract checks it).
"""

from __future__ import annotations

from scopectl.hardware.ledring.base import DeviceInfo, LedRing, LedState
from scopectl.hardware.ledring.config import LedRingConfig, open_led_ring
from scopectl.hardware.ledring.firmata_ring import FirmataLedRing
from scopectl.hardware.ledring.serial_ring import BoardEvent, SerialLedRing

__all__ = [
    "BoardEvent",
    "DeviceInfo",
    "FirmataLedRing",
    "LedRing",
    "LedRingConfig",
    "LedState",
    "SerialLedRing",
    "open_led_ring",
]
