"""The benchtop microscope through Micro-Manager (pymmcore-plus): the driver, its engine and autofocus.

- :class:`Benchtop` — ``Benchtop.from_config(cfg)`` for a real scope (or a core handed over ready, as the
  simulated scope does); ``snap``, ``move_xy_um``, ``set_z_um``, ``position_um``, ``autofocus``,
  ``focus_map``, ``plan_scan``, ``scan``.
- :mod:`~scopectl.hardware.benchtop.engine` — the MDA engine (per-tile autofocus events) and the tile
  handler that passes tiles to a :class:`TileSink` (a ``SlideStore``, or a :class:`MemorySink`).
- :mod:`~scopectl.hardware.benchtop.focus` — focus measure, coarse-to-fine search, focal planes.

The simulated scope lives in :mod:`scopectl.hardware.benchtop.sim` (imported separately).  This package may
import pymmcore-plus, useq-schema, :mod:`scopectl.errors` and :mod:`scopectl.store` (tile records); it never
imports its ``sim`` package (an import-linter contract checks it).  Stitching is :mod:`scopectl.stitching`.
"""

from __future__ import annotations

from . import logfile  # noqa: F401  (before pymmcore-plus is imported: no log file in the home directory)
from .benchtop import Benchtop, FocusMapResult, PlannedTile, ScanPlan, ScanRegion, ScanResult
from .engine import BenchtopEngine, MemorySink, TileHandler, TileSink
from .focus import AutofocusResult, AutofocusSettings, FocusPlane, focus_score, search_focus

__all__ = [
    "AutofocusResult",
    "AutofocusSettings",
    "Benchtop",
    "BenchtopEngine",
    "FocusMapResult",
    "FocusPlane",
    "MemorySink",
    "PlannedTile",
    "ScanPlan",
    "ScanRegion",
    "ScanResult",
    "TileHandler",
    "TileSink",
    "focus_score",
    "search_focus",
]
