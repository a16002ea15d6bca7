"""The benchtop microscope through Micro-Manager (pymmcore-plus), real or simulated.

- :class:`Benchtop` — ``Benchtop.from_config(cfg)`` for a real scope, ``Benchtop.simulated(...)`` for the
  simulated one (pure-Python devices on ``UniMMCore`` rendering the digital twin);
  ``snap``, ``move_xy_um``, ``set_z_um``, ``position_um``, ``autofocus``, ``focus_map``, ``plan_scan``, ``scan``.
- :mod:`~scopectl.hardware.benchtop.focus` — focus measure and coarse-to-fine search.
- :mod:`~scopectl.hardware.benchtop.sim.world` — the simulated world shared by the simulated devices.
- :mod:`~scopectl.hardware.benchtop.measure` — stitching accuracy on the simulated scope
  (``python -m scopectl.hardware.benchtop.measure``); stitching itself is :mod:`scopectl.stitching`.
"""

from __future__ import annotations

from .benchtop import Benchtop, FocusMapResult, PlannedTile, ScanPlan, ScanRegion, ScanResult
from .engine import BenchtopEngine, TileHandler, TileSink
from .focus import AutofocusResult, AutofocusSettings, FocusPlane, focus_score, search_focus
from .sim.world import (
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
    "AutofocusResult",
    "AutofocusSettings",
    "Benchtop",
    "BenchtopEngine",
    "BenchtopFaults",
    "FocusMapResult",
    "FocusPlane",
    "PlannedTile",
    "Renderer",
    "ScanPlan",
    "ScanRegion",
    "ScanResult",
    "SimStageParams",
    "SimulatedWorld",
    "SnapTruth",
    "TileHandler",
    "TileSink",
    "TwinRenderer",
    "focus_score",
    "get_world",
    "register_world",
    "search_focus",
    "unregister_world",
]
