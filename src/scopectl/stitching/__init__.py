"""Stitching benchtop tiles into a mosaic (pure image code; no hardware imports).

Pairwise phase correlation of overlaps (sub-pixel), ASHLAR-style acceptance by a correlation threshold
learnt from unrelated strips, a global least-squares solve of tile positions that drops unreliable pairs,
linear feather blending, and block-wise writing into a chunked array (e.g. the slide store's mosaic).
See ``docs/stitching.md`` for the measured accuracy.

Layer: below registration, above the store; it may import the store and the low modules, nothing above.
"""

from __future__ import annotations

from .mosaic import WritableArray, assemble_mosaic, feather_weights, mosaic_geometry
from .pairwise import PairResult, candidate_pairs, null_threshold, register_pair, to_grey
from .solve import SolveResult, solve_positions
from .stitch import (
    StitchResult,
    StitchSettings,
    TileStore,
    nominal_positions_from_stage,
    stitch_store,
    stitch_tiles,
)

__all__ = [
    "PairResult",
    "SolveResult",
    "StitchResult",
    "StitchSettings",
    "TileStore",
    "WritableArray",
    "assemble_mosaic",
    "candidate_pairs",
    "feather_weights",
    "mosaic_geometry",
    "nominal_positions_from_stage",
    "null_threshold",
    "register_pair",
    "solve_positions",
    "stitch_store",
    "stitch_tiles",
    "to_grey",
]
