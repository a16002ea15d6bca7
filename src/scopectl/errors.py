"""The exception hierarchy of scopectl.

Every error a user can see is a :class:`ScopectlError` whose message is one line saying *what* went
wrong, *which* file or device, and *what to do*.  Vendor errors (pyserial, adb-shell, pymmcore,
h5py, rawpy, ...) are translated into these at one boundary per module; the CLI prints the message
and exits non-zero, with a traceback only under ``--debug``.

Hierarchy::

    ScopectlError
    ├── ConfigError            a configuration, rig or protocol file is invalid
    ├── InputFileError         an image or other input file is unreadable or unsuitable
    ├── StoreError             a slide / dataset store problem
    │   ├── StoreExistsError   refusing to overwrite an existing store
    │   ├── StoreLockedError   another process holds the store's write lock
    │   └── StoreCorruptError  a checksum or structure check failed
    ├── DeviceError            a hardware (or simulated hardware) device failed
    │   ├── DeviceNotFoundError  no device at the given address
    │   ├── DeviceTimeoutError   a device did not answer within its timeout
    │   └── DeviceProtocolError  a device answered, but not as the protocol says
    ├── SkipItem               a recoverable failure of one item (field, tile, capture)
    ├── RegistrationError      an image pair could not be registered
    ├── ModelError             a model file is missing, unsafe or incompatible
    ├── FilesystemError        the operating system refused a file operation (read-only, no permission,
    │   │                      disk full, file too large, not a directory ...)
    │   └── OutputError        an output file could not be written (nothing half-written is left)
    └── ServerError            a ``scopectl serve`` server refused a request or could not be reached

Exit codes (``docs/troubleshooting.md`` has an example of each): 1 other scopectl errors, 2 bad input or
configuration (also usage errors), 3 store, 4 device, 5 registration, 6 model, 7 file system, 8 server, 70 internal
error (a bug: please report it), 130 interrupted.

:func:`from_os_error` is the one mapping of ``OSError`` (and h5py's, which carry ``errno``) to these errors;
the CLI applies it at its boundary, so no command needs a special case.
"""

from __future__ import annotations

import errno as _errno
import os


class ScopectlError(Exception):
    """Base class of every error scopectl reports to a user.

    Parameters
    ----------
    message
        One line: what went wrong, naming the file or device, and what to do about it.
    hint
        Optional extra sentence appended after the message (e.g. the fix).
    """

    exit_code: int = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        self.message = " ".join(message.split())
        self.hint = " ".join(hint.split()) if hint else None
        super().__init__(self.one_line())

    def one_line(self) -> str:
        """The message and hint as a single line."""
        return f"{self.message} {self.hint}" if self.hint else self.message


class ConfigError(ScopectlError):
    """A configuration, rig or protocol file is invalid."""

    exit_code = 2


class InputFileError(ScopectlError):
    """An input file (image, model, dataset) is unreadable or unsuitable."""

    exit_code = 2


class StoreError(ScopectlError):
    """A problem with a slide or dataset store."""

    exit_code = 3


class StoreExistsError(StoreError):
    """Refusing to overwrite an existing store without ``--resume`` or ``--force``."""


class StoreLockedError(StoreError):
    """Another process holds the write lock of a store."""


class StoreCorruptError(StoreError):
    """A store failed a checksum or structure check."""


class DeviceError(ScopectlError):
    """A hardware or simulated device failed."""

    exit_code = 4


class DeviceNotFoundError(DeviceError):
    """No device answered at the configured address."""


class DeviceTimeoutError(DeviceError):
    """A device did not answer within its timeout."""


class DeviceProtocolError(DeviceError):
    """A device answered, but not as its protocol specifies (wrong firmware, garbage, bad checksum)."""


class SkipItem(ScopectlError):
    """A recoverable failure of one item; the caller may skip or retry it."""


class RegistrationError(ScopectlError):
    """An image pair could not be registered (too few matches, implausible transform, ...)."""

    exit_code = 5


class ModelError(ScopectlError):
    """A model file is missing, unsafe (e.g. a pickle) or incompatible."""

    exit_code = 6


class FilesystemError(ScopectlError):
    """The operating system refused a file operation: read-only file system, permission, full disk, ..."""

    exit_code = 7


class ServerError(ScopectlError):
    """A ``scopectl serve`` server refused a request or could not be reached (the message has its answer)."""

    exit_code = 8


#: errno -> (what happened, what to do).
_OS_ERRORS: dict[int, tuple[str, str]] = {
    _errno.EROFS: (
        "the file system is read-only",
        "Choose a writable location (--root, --out) or remount it.",
    ),
    _errno.EACCES: (
        "permission denied",
        "Check the owner and permissions of this path, or choose another location (--root, --out).",
    ),
    _errno.EPERM: (
        "operation not permitted",
        "Check the owner and permissions of this path, or choose another location (--root, --out).",
    ),
    _errno.ENOSPC: (
        "no space left on the device",
        "Free some space or choose another location (--root, --out), then run the command again.",
    ),
    _errno.EDQUOT: (
        "disk quota exceeded",
        "Free some space or choose another location (--root, --out), then run the command again.",
    ),
    _errno.EFBIG: (
        "file too large for this file system or for the process's file-size limit (ulimit -f)",
        "Raise the limit (ulimit -f unlimited) or write to another file system, then run the command again.",
    ),
    _errno.ENOTDIR: (
        "a part of this path is a file, not a directory",
        "Check that --root and --out name directories.",
    ),
    _errno.EISDIR: ("is a directory, not a file", "Name a file."),
    _errno.EEXIST: ("already exists", "Remove it or choose another name."),
    _errno.ENOENT: ("no such file or directory", "Check the path."),
    _errno.ELOOP: ("too many levels of symbolic links", "Check the links along this path."),
    _errno.ENAMETOOLONG: ("file name too long", "Use a shorter path."),
    _errno.EMFILE: ("too many open files", "Raise the limit (ulimit -n) or close other programs."),
    _errno.ENFILE: ("too many open files in the system", "Close other programs and try again."),
    _errno.EIO: (
        "input/output error",
        "The disk or network file system failed; check it (dmesg) and copy the data elsewhere.",
    ),
    _errno.ENXIO: ("no such device or address", "Name a regular file."),
    _errno.ETXTBSY: ("file is busy", "Close the program using it and try again."),
    _errno.EBUSY: ("device or resource busy", "Close the program using it and try again."),
    _errno.EXDEV: ("cannot move across file systems", "Keep temporary and final files on one file system."),
}


def from_os_error(
    exc: OSError, *, path: os.PathLike[str] | str | None = None, action: str = ""
) -> ScopectlError:
    """Translate an ``OSError`` into a :class:`FilesystemError` naming the file and what to do.

    Parameters
    ----------
    exc
        The error (Python's, or h5py's, which carry ``errno`` too).
    path
        The file concerned, when ``exc`` does not name it (h5py's errors do not).
    action
        What was being done ("write the slide", "read the model"), for the message.
    """
    name = path if path is not None else (exc.filename if exc.filename is not None else None)
    code = exc.errno if isinstance(exc.errno, int) else None
    what, todo = _OS_ERRORS.get(code, ("", "")) if code is not None else ("", "")
    if not what:
        what = os.strerror(code) if code is not None else _first_line(exc)
        todo = "Check the path, the disk and the permissions."
    where = f"{os.fsdecode(name)}: " if name is not None else ""
    doing = f"cannot {action}: " if action else ""
    return FilesystemError(f"{where}{doing}{what}.", hint=todo)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__


class OutputError(FilesystemError):
    """An output file (image, export, package) could not be written; nothing half-written is left."""

    exit_code = 7
