"""The data root: the one place where slide ids and names become paths.

Layout under the root (``--root``, ``$SCOPECTL_ROOT`` or ``./scopectl-data``)::

    slides/<slide-id>.h5      one file per slide (:mod:`scopectl.store.slide`)
    datasets/<name>.h5        training sets
    models/<name>/            trained models
    reports/                  figures and tables
    logs/                     log files of libraries scopectl drives (pymmcore-plus)
    .scopectl/                private working folders (mode 0700): simulator keys, files being pulled

Every id or name given on the command line is validated here, by :meth:`DataRoot.slide_path` and its
siblings, before it becomes a path, so no command can be talked into a path outside the root.

Leftovers of killed processes
-----------------------------
A writer killed with ``kill -9`` cannot clean up: :func:`scopectl.store.importer.import_slide` leaves its
``.<id>.h5.partial-<pid>`` file and a ``<id>.h5.lock`` file, an acquisition its private working folder.
:meth:`DataRoot.stale_items` finds those whose process is gone (the pid is not running and the slide's
write lock is free); writing commands remove them with :meth:`DataRoot.sweep_stale` and say so, and
``scopectl store ls`` shows them.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path

from scopectl.errors import ConfigError, InputFileError, from_os_error
from scopectl.store.lock import WriteLock

__all__ = ["DataRoot", "StaleItem", "pid_alive", "sweep_stale_partials", "validate_name", "validate_slide_id"]

#: ``.<name>.partial-<pid>``: a file being written by process ``pid`` (renamed into place when complete).
PARTIAL_RE = re.compile(r"^\.(?P<target>.+)\.partial-(?P<pid>[0-9]{1,10})$")
#: ``<kind>-<pid>``: a private working folder of process ``pid`` under ``.scopectl/``.
WORKDIR_RE = re.compile(r"^(?P<kind>[a-z]+)-(?P<pid>[0-9]{1,10})$")


def validate_slide_id(slide_id: str) -> str:
    """Slide ids become file names: letters, digits, '-', '_' and '.', 1–64 characters, not starting with '.'.

    Raises
    ------
    InputFileError
        If the id could name anything but one file in ``slides/`` (``..``, ``/``, a hidden name ...).
    """
    return validate_name(slide_id, what="slide id")


def validate_name(name: str, *, what: str) -> str:
    """Validate an id or name that becomes one file or folder name under the root (see :func:`validate_slide_id`)."""
    ok = (
        isinstance(name, str)
        and 0 < len(name) <= 64
        and not name.startswith(".")
        and all(c.isascii() and (c.isalnum() or c in "-_.") for c in name)
    )
    if not ok:
        raise InputFileError(
            f"invalid {what} {name!r}.",
            hint="Use 1–64 letters, digits, '-', '_' or '.', not starting with '.'.",
        )
    return name


def pid_alive(pid: int) -> bool:
    """True when a process ``pid`` exists on this machine (it may belong to another user)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass(frozen=True)
class StaleItem:
    """A leftover of a killed process: a partial file, a free lock file or a private working folder."""

    path: Path
    kind: str  # "partial", "lock" or "workdir"
    pid: int | None
    size_bytes: int

    def describe(self) -> str:
        who = f"process {self.pid}, which is no longer running" if self.pid is not None else "a killed writer"
        return f"{self.path} ({self.kind}, {self.size_bytes / 1e6:.1f} MB, left by {who})"


class DataRoot:
    """The data root directory and the paths under it.

    Creating one touches nothing; the methods that write (:meth:`ensure_writable`, :meth:`private_dir`,
    :meth:`sweep_stale`) say so.

    Raises
    ------
    ConfigError
        From every path method, when the root exists but is not a directory.
    """

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"DataRoot({str(self.root)!r})"

    # ------------------------------------------------------------------ folders
    def _base(self) -> Path:
        try:
            st = self.root.stat()
        except FileNotFoundError:
            return self.root
        except NotADirectoryError:
            st = None
        except OSError as exc:
            raise from_os_error(exc, path=self.root, action="use it as the data root") from None
        if st is None or not stat.S_ISDIR(st.st_mode):
            raise ConfigError(
                f"data root {self.root}: is not a directory.",
                hint="Name a directory with --root (or $SCOPECTL_ROOT); it is created when missing.",
            )
        return self.root

    @property
    def slides_dir(self) -> Path:
        return self._base() / "slides"

    @property
    def datasets_dir(self) -> Path:
        return self._base() / "datasets"

    @property
    def models_dir(self) -> Path:
        return self._base() / "models"

    @property
    def reports_dir(self) -> Path:
        return self._base() / "reports"

    @property
    def logs_dir(self) -> Path:
        return self._base() / "logs"

    @property
    def work_dir(self) -> Path:
        """Private working folders (``.scopectl/``, mode 0700)."""
        return self._base() / ".scopectl"

    # ------------------------------------------------------------------ ids -> paths
    def slide_path(self, slide_id: str) -> Path:
        """``slides/<slide_id>.h5`` after validating the id (:func:`validate_slide_id`)."""
        return self.slides_dir / f"{validate_slide_id(slide_id)}.h5"

    def dataset_path(self, name: str) -> Path:
        """``datasets/<name>.h5`` after validating the name."""
        return self.datasets_dir / f"{validate_name(name, what='dataset name')}.h5"

    def report_dir(self, name: str) -> Path:
        """``reports/<name>`` (a slide id or model name) after validating the name."""
        return self.reports_dir / validate_name(name, what="report name")

    # ------------------------------------------------------------------ writing
    def ensure_writable(self, *folders: Path) -> None:
        """Create the root and ``folders`` and check that a file can be created in each.

        Called before work starts (an acquisition checks this before it powers the rig), so a read-only or
        full root is one clear error instead of a failure halfway.

        Raises
        ------
        ConfigError
            If the root is not a directory.
        FilesystemError
            If a folder cannot be created or written (read-only, permission, full disk ...).
        """
        base = self._base()
        for folder in folders or (base,):
            try:
                folder.mkdir(parents=True, exist_ok=True)
                probe = folder / f".write-test-{os.getpid()}"
                fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
                try:
                    os.write(fd, b"\0")
                finally:
                    os.close(fd)
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(probe)
            except FileExistsError:
                raise ConfigError(
                    f"{folder}: exists and is not a directory.",
                    hint="Move it away; scopectl keeps a folder there.",
                ) from None
            except OSError as exc:
                raise from_os_error(exc, path=folder, action="write into the data root") from None

    def private_dir(self, kind: str) -> Path:
        """A fresh private working folder ``.scopectl/<kind>-<pid>`` (mode 0700) for this process.

        Used for what must never land in a shared temporary folder: a simulator's ADB private key, files
        being pulled from the phone.  Remove it with :func:`shutil.rmtree` when done; a killed process's
        folder is removed by :meth:`sweep_stale`.
        """
        if not re.fullmatch(r"[a-z]+", kind):
            raise ValueError(f"private folder kind {kind!r}: lowercase letters only")
        base = self.work_dir
        try:
            base.mkdir(mode=0o700, parents=True, exist_ok=True)
            st = base.lstat()
            if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid():
                raise ConfigError(
                    f"{base}: is not a directory owned by you.", hint="Remove it; scopectl recreates it."
                )
            if stat.S_IMODE(st.st_mode) != 0o700:
                os.chmod(base, 0o700)
            path = base / f"{kind}-{os.getpid()}"
            if path.exists():
                shutil.rmtree(path)
            path.mkdir(mode=0o700)
        except OSError as exc:
            raise from_os_error(exc, path=base, action="create a private working folder") from None
        return path

    # ------------------------------------------------------------------ leftovers
    def stale_items(self) -> list[StaleItem]:
        """Leftovers of killed processes under the root (nothing is removed)."""
        items: list[StaleItem] = []
        slides = self.slides_dir
        if slides.is_dir():
            items.extend(_stale_partials(slides, locked_by_target=True))
            for lock in sorted(slides.glob("*.lock")):  # a slide's, or a partial file's (an import's)
                if WriteLock(lock.with_name(lock.name[: -len(".lock")])).probe() is None:
                    items.append(StaleItem(lock, "lock", None, _size(lock)))
        work = self.work_dir
        if work.is_dir():
            for entry in sorted(work.iterdir()):
                m = WORKDIR_RE.match(entry.name)
                if m and entry.is_dir() and not entry.is_symlink() and not pid_alive(int(m["pid"])):
                    items.append(StaleItem(entry, "workdir", int(m["pid"]), _tree_size(entry)))
        return items

    def sweep_stale(self) -> list[StaleItem]:
        """Remove the leftovers of killed processes (see :meth:`stale_items`); returns what was removed."""
        removed: list[StaleItem] = []
        for item in self.stale_items():
            try:
                if item.kind == "workdir":
                    shutil.rmtree(item.path)
                elif item.kind == "lock":
                    if not WriteLock(item.path.with_name(item.path.name[: -len(".lock")])).remove_if_stale():
                        continue
                else:
                    item.path.unlink()
            except FileNotFoundError:
                continue
            except OSError:
                continue  # a read-only root: the command fails on its own write with a clear error
            removed.append(item)
        return removed


def sweep_stale_partials(folder: Path) -> list[StaleItem]:
    """Remove ``.<name>.partial-<pid>`` files of dead processes in ``folder`` (an output folder)."""
    removed: list[StaleItem] = []
    if not folder.is_dir():
        return removed
    for item in _stale_partials(folder, locked_by_target=False):
        try:
            item.path.unlink()
        except OSError:
            continue
        removed.append(item)
    return removed


def _stale_partials(folder: Path, *, locked_by_target: bool) -> list[StaleItem]:
    out = []
    for entry in sorted(folder.iterdir()):
        m = PARTIAL_RE.match(entry.name)
        if m is None or entry.is_symlink() or not entry.is_file():
            continue
        pid = int(m["pid"])
        if pid_alive(pid):
            continue
        if locked_by_target and WriteLock(folder / m["target"]).probe() is not None:
            continue  # a writer holds the slide: the file may be its (pid reuse across machines)
        out.append(StaleItem(entry, "partial", pid, _size(entry)))
    return out


def _size(path: Path) -> int:
    try:
        return path.lstat().st_size
    except OSError:
        return 0


def _tree_size(path: Path) -> int:
    total = 0
    for p in path.rglob("*"):
        total += _size(p)
    return total
