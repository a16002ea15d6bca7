"""An exclusive, crash-proof write lock for a store file.

The lock is an ``fcntl.flock`` on ``<store>.lock``; the kernel releases it when the holder dies (even by
``kill -9``), so a crashed acquisition never leaves a stale lock.  The lock file holds a JSON
description of the holder (pid, host, user, command, start time) so a second writer is told who
holds it.  The file is removed on release; the inode check in :meth:`WriteLock.acquire` makes that
race-free.
"""

from __future__ import annotations

import contextlib
import fcntl
import getpass
import json
import os
import socket
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from scopectl.errors import StoreLockedError

__all__ = ["WriteLock", "lock_path_for"]


def lock_path_for(path: Path) -> Path:
    """The lock file that guards ``path``."""
    return path.with_name(path.name + ".lock")


class WriteLock:
    """Exclusive write lock on a store path (not re-entrant; one per process and path).

    Thread-safety: an instance must be used from one thread.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.lock_path = lock_path_for(self.path)
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def holder(self) -> dict[str, Any] | None:
        """The description written by the current holder, if readable."""
        try:
            text = self.lock_path.read_text(encoding="utf-8")
            data = json.loads(text)
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def probe(self) -> dict[str, Any] | None:
        """Without taking the lock: the holder's description if some process holds it, else None."""
        try:
            fd = os.open(self.lock_path, os.O_RDONLY)
        except OSError:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return self.holder() or {"pid": "?"}
        else:
            fcntl.flock(fd, fcntl.LOCK_UN)
            return None
        finally:
            os.close(fd)

    def remove_if_stale(self) -> bool:
        """Remove the lock file when no process holds it (a holder killed by ``kill -9`` leaves it behind).

        Returns True when the file was removed.  Never blocks, never creates the file.
        """
        if self._fd is not None:
            return False
        try:
            fd = os.open(self.lock_path, os.O_RDWR | os.O_NOFOLLOW)
        except OSError:
            return False
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False
            try:
                if os.fstat(fd).st_ino != os.stat(self.lock_path).st_ino:
                    return False
                os.unlink(self.lock_path)
            except FileNotFoundError:
                return False
            return True
        finally:
            os.close(fd)

    def acquire(self) -> None:
        """Take the lock or raise :class:`StoreLockedError` naming the holder."""
        if self._fd is not None:
            return
        self.lock_path.parent.mkdir(parents=True, exist_ok=True)
        for _attempt in range(10):
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                info = self.holder() or {}
                who = (
                    f"pid {info.get('pid', '?')} on {info.get('host', '?')} (user {info.get('user', '?')}, "
                    f"'{info.get('command', '?')}', since {info.get('started', '?')})"
                )
                raise StoreLockedError(
                    f"{self.path}: another process is writing this slide: {who}.",
                    hint="Wait for it to finish or stop it; the lock is released automatically when it exits.",
                ) from None
            # The file may have been unlinked by a releasing holder between our open and flock.
            try:
                same = os.fstat(fd).st_ino == os.stat(self.lock_path).st_ino
            except FileNotFoundError:
                same = False
            if not same:
                os.close(fd)
                continue
            info = {
                "pid": os.getpid(),
                "host": socket.gethostname(),
                "user": _user(),
                "command": " ".join(os.path.basename(a) if i == 0 else a for i, a in enumerate(sys.argv))[
                    :200
                ],
                "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            }
            os.ftruncate(fd, 0)
            os.write(fd, json.dumps(info).encode())
            os.fsync(fd)
            self._fd = fd
            return
        raise StoreLockedError(f"{self.path}: could not take the write lock (lock file keeps changing).")

    def release(self) -> None:
        """Release the lock (idempotent)."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.lock_path)
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)

    def __enter__(self) -> WriteLock:
        self.acquire()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid())
