"""Simulated LED-ring boards: the real wire protocols served on pseudo-terminals, for tests and ``--rig sim``.

* :class:`SimulatedLedBoard` — scopectl's firmware (protocol 1), modelled in pure Python by
  :class:`BoardCore` (:mod:`~scopectl.hardware.ledring.sim.firmware_model`);
* :class:`SimulatedFirmataBoard` — an Arduino running plain StandardFirmata, with a PWM-dimmed white LED;
* both run on :class:`PtyBoard` (:mod:`~scopectl.hardware.ledring.sim.pty_board`): a battery that sags
  under the LED load (:class:`BatteryModel`) and injectable faults (:class:`BoardFaults`);
* :mod:`~scopectl.hardware.ledring.sim.fil` — the real firmware on an emulated ATmega328P (simavr),
  imported separately (it needs ``make -C firmware fil``).

The drivers (:mod:`scopectl.hardware.ledring`) open these boards by their device path like real ones and
never import this package (an import-linter contract checks it); the simulated rig
(:mod:`scopectl.hardware.rig`) and the tests do.  This package may import the LED ring's protocol module
and :mod:`scopectl.errors`.
"""

from __future__ import annotations

from scopectl.hardware.ledring.sim.firmata_board import SimulatedFirmataBoard
from scopectl.hardware.ledring.sim.firmware_model import BatteryModel, BoardCore
from scopectl.hardware.ledring.sim.led_board import SimulatedLedBoard
from scopectl.hardware.ledring.sim.pty_board import BoardFaults, PtyBoard

__all__ = [
    "BatteryModel",
    "BoardCore",
    "BoardFaults",
    "PtyBoard",
    "SimulatedFirmataBoard",
    "SimulatedLedBoard",
]
