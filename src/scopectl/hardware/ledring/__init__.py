"""The phone microscope's LED ring: one interface, two flavours, their simulators and the protocol code.

* :class:`LedRing` — the interface (set a pattern and wait until shown, battery voltage, device info,
  a timestamped history of every change).
* :class:`SerialLedRing` — the 12-LED NeoPixel ring running scopectl's firmware (protocol 1, any pyserial
  URL); :class:`FirmataLedRing` — a white LED and a battery divider on a board running plain
  StandardFirmata (pyfirmata2).
* :class:`LedRingConfig` and :func:`open_led_ring` — configuration and factory.
* :class:`SimulatedLedBoard` and :class:`SimulatedFirmataBoard` — simulated boards behind
  pseudo-terminals, with a sagging battery and injectable faults (:class:`BoardFaults`).
* :mod:`~scopectl.hardware.ledring.protocol` and :mod:`~scopectl.hardware.ledring.board` — the protocol
  code shared by the driver and the simulator.
"""

from __future__ import annotations

from scopectl.hardware.ledring.base import DeviceInfo, LedRing, LedState
from scopectl.hardware.ledring.board import BatteryModel, BoardCore
from scopectl.hardware.ledring.config import LedRingConfig, open_led_ring
from scopectl.hardware.ledring.firmata_ring import FirmataLedRing
from scopectl.hardware.ledring.pty_board import BoardFaults
from scopectl.hardware.ledring.serial_ring import BoardEvent, SerialLedRing
from scopectl.hardware.ledring.sim import SimulatedLedBoard
from scopectl.hardware.ledring.sim_firmata import SimulatedFirmataBoard

__all__ = [
    "BatteryModel",
    "BoardCore",
    "BoardEvent",
    "BoardFaults",
    "DeviceInfo",
    "FirmataLedRing",
    "LedRing",
    "LedRingConfig",
    "LedState",
    "SerialLedRing",
    "SimulatedFirmataBoard",
    "SimulatedLedBoard",
    "open_led_ring",
]
