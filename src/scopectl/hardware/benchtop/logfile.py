"""Where pymmcore-plus writes its log file: under the data root, never the home directory.

Importing pymmcore-plus opens ``~/.local/share/pymmcore-plus/logs/pymmcore-plus.log`` unless
``$PYMM_LOG_FILE`` says otherwise.  This module, imported by :mod:`scopectl.hardware.benchtop` before
pymmcore-plus, sets ``PYMM_LOG_FILE=0`` (no file) unless the user chose a file; :func:`pymmcore_log` then
sends the log to a file under the data root for the duration of a command.

Writing a log must never break or clutter a command: when the file cannot be written (a full disk, a
file-size limit), the handler stops writing, keeps the first error in :attr:`QuietFileHandler.failure`, and
prints no "Logging error" traceback.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from logging.handlers import RotatingFileHandler
from pathlib import Path

__all__ = ["LOGGER_NAME", "QuietFileHandler", "pymmcore_log"]

os.environ.setdefault("PYMM_LOG_FILE", os.devnull)  # "0" is not honoured by pymmcore-plus 0.x

LOGGER_NAME = "pymmcore-plus"
_FORMAT = logging.Formatter(
    "%(asctime)s.%(msecs)03d    tid0x%(thread)x [%(levelname)s,%(name)s] %(message)s",
    datefmt="%Y-%m-%dT%H:%M:%S",
)


class QuietFileHandler(RotatingFileHandler):
    """A rotating log file that gives up silently (remembering why) when it cannot be written."""

    def __init__(self, path: Path, *, max_bytes: int = 10_000_000, backups: int = 3) -> None:
        super().__init__(path, maxBytes=max_bytes, backupCount=backups, delay=True, encoding="utf-8")
        self.failure: str | None = None
        self.setFormatter(_FORMAT)

    def emit(self, record: logging.LogRecord) -> None:
        if self.failure is None:
            super().emit(record)

    def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802  (logging's name)
        exc = sys.exc_info()[1]
        if self.failure is None:
            self.failure = f"{self.baseFilename}: {type(exc).__name__}: {exc}"
        with contextlib.suppress(OSError):
            self.close()


@contextmanager
def pymmcore_log(path: Path | None, *, level: int = logging.INFO) -> Iterator[QuietFileHandler | None]:
    """Send pymmcore-plus's log to ``path`` (created with its folder) while the block runs.

    With ``path=None`` nothing is logged to a file.  Yields the handler (its ``failure`` says whether the
    file could be written).
    """
    if path is None:
        yield None
        return
    logger = logging.getLogger(LOGGER_NAME)
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = QuietFileHandler(path)
    handler.setLevel(level)
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        handler.close()
