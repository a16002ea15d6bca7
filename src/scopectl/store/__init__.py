"""Storage: one HDF5 file per slide (see ``docs/store.md``), the data root's paths and its write lock.

Layer: below stitching, above the low modules; it may import only imageio, writers, config, metrics and
errors.  Everything that produces or consumes slides sits above it.  See ``docs/architecture.md``.
"""

from scopectl.store.lock import WriteLock
from scopectl.store.paths import DataRoot, validate_slide_id
from scopectl.store.slide import (
    FORMAT,
    SCHEMA_VERSION,
    CaptureMeta,
    CaptureRecord,
    MosaicInfo,
    ProvenanceEvent,
    RegistrationRecord,
    SlideStore,
    TileMeta,
    TileRecord,
)

__all__ = [
    "FORMAT",
    "SCHEMA_VERSION",
    "CaptureMeta",
    "CaptureRecord",
    "DataRoot",
    "MosaicInfo",
    "ProvenanceEvent",
    "RegistrationRecord",
    "SlideStore",
    "TileMeta",
    "TileRecord",
    "WriteLock",
    "validate_slide_id",
]
