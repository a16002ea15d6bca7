"""Registration of phone captures to the benchtop mosaic, and training-set building.

* :mod:`~scopectl.registration.fov` — locate a capture in the mosaic (SIFT, ratio test, RANSAC).
* :mod:`~scopectl.registration.elastic` — pyramid elastic registration (after NanoJ-SQUIRREL).
* :mod:`~scopectl.registration.pair` — register one capture and render it at L × the benchtop pixel.
* :mod:`~scopectl.registration.workflow` — register a slide store; rebuild stored pairs.
* :mod:`~scopectl.registration.distortion` — the mean shift map, a fixed correction of a rig.
* :mod:`~scopectl.registration.dataset` — training sets: cuts patches and hands them to
  :mod:`scopectl.store.dataset`, which owns the file format (``open_dataset`` reads it).

Layer: below learning, above stitching; it may import stitching, the store and the low modules, never
learning, evaluation, hardware, acquisition, the twin, the service or the CLI.  See ``docs/registration.md``
and ``docs/architecture.md``.
"""

from __future__ import annotations

from scopectl.registration.dataset import DatasetParams, build_dataset
from scopectl.registration.distortion import DistortionMap, load_distortion_map
from scopectl.registration.elastic import DisplacementField, ElasticParams, ElasticResult, elastic_register
from scopectl.registration.fov import FovMatch, FovParams, MosaicIndex, match_fov
from scopectl.registration.pair import (
    PairGeometry,
    RegisteredPair,
    RegisterParams,
    register_pair,
    render_registered,
)
from scopectl.registration.workflow import CaptureReport, StoredPair, load_pair, register_slide

__all__ = [
    "CaptureReport",
    "DatasetParams",
    "DisplacementField",
    "DistortionMap",
    "ElasticParams",
    "ElasticResult",
    "FovMatch",
    "FovParams",
    "MosaicIndex",
    "PairGeometry",
    "RegisterParams",
    "RegisteredPair",
    "StoredPair",
    "build_dataset",
    "elastic_register",
    "load_distortion_map",
    "load_pair",
    "match_fov",
    "register_pair",
    "register_slide",
    "render_registered",
]
