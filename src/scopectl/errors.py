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
    └── OutputError            an output file could not be written (nothing half-written is left)
"""

from __future__ import annotations


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


class OutputError(ScopectlError):
    """An output file (image, export, package) could not be written; nothing half-written is left."""

    exit_code = 7
