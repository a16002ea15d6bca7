"""Where the service keeps its files, all under ``<root>/serve/``.

::

    serve/scopectl.sqlite3             the embedded database (not used with --db postgresql://...)
    serve/objects/<aa>/<sha256>        every upload, as received, named by its SHA-256, read-only
    serve/captures/<capture id>/       what is derived from a capture:
        input.tiles                    the input's deep-zoom pyramid (a tile pack, scopectl.serve.tiles)
        input.ome.tif, input.tif       the decoded input with its pixel size (written on first download)
        job-<n>.tiles                  the enhanced image's pyramid, made by job n
        job-<n>.ome.tif                the enhanced image (OME-TIFF), made by job n; job-<n>.tif on demand
    serve/incoming/                    uploads being received (removed when done or failed)

Every path is built from a SHA-256 the server computed or an identifier it generated and validated here,
never from anything a client sent.  With PostgreSQL and remote workers this folder is on a shared filesystem
mounted at the same ``--root`` everywhere.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

from scopectl.errors import StoreError

__all__ = ["ServeFiles"]

_SHA_RE = re.compile(r"^[0-9a-f]{64}$")
_ID_RE = re.compile(r"^[0-9a-f]{16}$")
_CHUNK = 1024 * 1024


@dataclass(frozen=True)
class ServeFiles:
    """The service's folder under a data root."""

    root: Path

    @property
    def base(self) -> Path:
        return self.root / "serve"

    def ensure(self) -> None:
        """Create the folders (0700: only the service's user reads uploads)."""
        for sub in ("objects", "captures", "incoming"):
            (self.base / sub).mkdir(parents=True, exist_ok=True, mode=0o700)

    def object_path(self, sha256: str) -> Path:
        if not _SHA_RE.match(sha256):
            raise StoreError(f"{sha256!r} is not a SHA-256 digest.")
        return self.base / "objects" / sha256[:2] / sha256

    def capture_dir(self, capture_id: str) -> Path:
        if not _ID_RE.match(capture_id):
            raise StoreError(f"{capture_id!r} is not a capture id.")
        return self.base / "captures" / capture_id

    def input_tiles(self, capture_id: str) -> Path:
        return self.capture_dir(capture_id) / "input.tiles"

    def input_export(self, capture_id: str, fmt: str) -> Path:
        return self.capture_dir(capture_id) / ("input.ome.tif" if fmt == "ome-tiff" else "input.tif")

    def job_tiles(self, capture_id: str, job_id: int) -> Path:
        return self.capture_dir(capture_id) / f"job-{int(job_id)}.tiles"

    def job_export(self, capture_id: str, job_id: int, fmt: str) -> Path:
        suffix = ".ome.tif" if fmt == "ome-tiff" else ".tif"
        return self.capture_dir(capture_id) / f"job-{int(job_id)}{suffix}"

    @property
    def incoming(self) -> Path:
        return self.base / "incoming"

    def keep(self, path: Path, *, sha256: str) -> Path:
        """Move a received upload (already fsynced) to its immutable place, ``objects/<aa>/<sha256>``, read-only.

        An object that is already there (the same bytes uploaded before) is kept as it is.
        """
        dest = self.object_path(sha256)
        dest.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        if dest.exists():
            path.unlink(missing_ok=True)
            return dest
        os.chmod(path, 0o400)
        os.replace(path, dest)
        _fsync_dir(dest.parent)
        return dest

    def verify_object(self, sha256: str) -> Path:
        """The object's path, after checking its bytes still hash to its name.

        Raises
        ------
        StoreError
            If the object is missing or was modified.
        """
        path = self.object_path(sha256)
        h = hashlib.sha256()
        try:
            with open(path, "rb") as fh:
                for chunk in iter(lambda: fh.read(_CHUNK), b""):
                    h.update(chunk)
        except FileNotFoundError:
            raise StoreError(
                f"{path}: the stored upload is missing.", hint="Restore serve/objects/."
            ) from None
        if h.hexdigest() != sha256:
            raise StoreError(f"{path}: the stored upload was modified (its SHA-256 differs from its name).")
        return path


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
