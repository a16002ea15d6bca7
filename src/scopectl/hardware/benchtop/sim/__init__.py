"""The simulated benchtop: pure-Python Micro-Manager devices sharing one simulated world, under the real driver.

* :func:`simulated_benchtop` — builds the world, loads the devices into a ``UniMMCore`` and hands it to
  the driver; returns a :class:`SimulatedBenchtop` (the driver plus :attr:`~SimulatedBenchtop.world`).
* :class:`SimulatedWorld` (:mod:`~scopectl.hardware.benchtop.sim.world`) — stage mechanics, tilted slide,
  camera rendering through a :class:`Renderer` (:class:`TwinRenderer`: the digital twin), ground truth
  per snap (:class:`SnapTruth`), injectable faults (:class:`BenchtopFaults`); a registry of named worlds
  for devices loaded from a configuration file.
* :mod:`~scopectl.hardware.benchtop.sim.devices` — the devices (XY stage, Z drive, RGB camera, shutter)
  and :func:`simulated_config_text`, a Micro-Manager configuration that loads them.

The driver (:mod:`scopectl.hardware.benchtop`) never imports this package (an import-linter contract
checks it); the simulated rig and the tests do.  This package may import the driver, pymmcore-plus,
:mod:`scopectl.errors` and, for rendering, :mod:`scopectl.twin`.
"""

from __future__ import annotations

from .benchtop import DEFAULT_FOCUS_PLANE, SimulatedBenchtop, simulated_benchtop
from .devices import SimRGBCamera, SimShutter, SimXYStage, SimZStage, simulated_config_text
from .world import (
    BenchtopFaults,
    Renderer,
    SimStageParams,
    SimulatedWorld,
    SnapTruth,
    TwinRenderer,
    get_world,
    register_world,
    unregister_world,
)

__all__ = [
    "DEFAULT_FOCUS_PLANE",
    "BenchtopFaults",
    "Renderer",
    "SimRGBCamera",
    "SimShutter",
    "SimStageParams",
    "SimXYStage",
    "SimZStage",
    "SimulatedBenchtop",
    "SimulatedWorld",
    "SnapTruth",
    "TwinRenderer",
    "get_world",
    "register_world",
    "simulated_benchtop",
    "simulated_config_text",
    "unregister_world",
]
