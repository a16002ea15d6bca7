"""Storage: one HDF5 file per slide (see ``docs/store.md``)."""

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
