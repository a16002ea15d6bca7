"""Storage: one HDF5 file per slide (see ``docs/store.md``)."""

from scopectl.store.lock import WriteLock
from scopectl.store.paths import DataRoot, validate_slide_id
from scopectl.store.slide import (
    FORMAT,
    SCHEMA_VERSION,
    CaptureRecord,
    MosaicInfo,
    RegistrationRecord,
    SlideStore,
    TileRecord,
)

__all__ = [
    "FORMAT",
    "SCHEMA_VERSION",
    "CaptureRecord",
    "DataRoot",
    "MosaicInfo",
    "RegistrationRecord",
    "SlideStore",
    "TileRecord",
    "WriteLock",
    "validate_slide_id",
]
