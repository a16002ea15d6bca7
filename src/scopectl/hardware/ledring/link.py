"""The one boundary between the LED-ring drivers and pyserial.

:class:`SerialLink` opens any pyserial URL with :func:`serial.serial_for_url` (a device path,
``loop://``, ``socket://host:port``, ``spy://...``, ``hwgrep://regex``) or wraps a connection that is
already open, reads lines (scopectl's protocol) or raw chunks (Firmata) against deadlines and writes
bytes.  Every pyserial and OS exception is translated here into :class:`scopectl.errors.DeviceError`
subclasses; nothing above this module sees a vendor exception.
"""

from __future__ import annotations

import contextlib
import errno
import io
import sys
import time
from typing import Protocol

import serial

from scopectl.errors import DeviceError, DeviceNotFoundError, DeviceTimeoutError

__all__ = ["SerialLike", "SerialLink"]

_POLL_S = 0.02


class SerialLike(Protocol):
    """What the driver needs of a connection (a ``serial.Serial`` or any pyserial URL handler)."""

    timeout: float | None

    def read(self, size: int = 1) -> bytes: ...

    def write(self, data: bytes) -> int | None: ...

    @property
    def in_waiting(self) -> int: ...

    def reset_input_buffer(self) -> None: ...

    def close(self) -> None: ...


def _open_error(device: str, url: str, exc: BaseException) -> DeviceError:
    """Translate an exception raised while opening ``url``."""
    code = getattr(exc, "errno", None)
    text = " ".join(str(exc).split()) or type(exc).__name__
    if isinstance(exc, ValueError):
        return DeviceNotFoundError(
            f"{device}: cannot open {url!r}: {text}.",
            hint="Give a device path (/dev/ttyACM0) or a pyserial URL (socket://host:port, spy://, hwgrep://).",
        )
    if code == errno.EACCES:
        return DeviceError(
            f"{device}: permission denied opening {url}.",
            hint="Add your user to the 'dialout' group (then log in again) or fix the device permissions.",
        )
    if code == errno.EBUSY:
        return DeviceError(f"{device}: {url} is busy (another program has it open); close that program.")
    return DeviceNotFoundError(
        f"{device}: cannot open {url}, no device there ({text}).",
        hint="Check the cable and the port name (ls /dev/ttyACM* /dev/ttyUSB*) or the URL.",
    )


class SerialLink:
    """A connection with deadlines, read by lines or by chunks; the only place pyserial exceptions are handled.

    Parameters
    ----------
    url
        pyserial URL or device path (ignored for opening when ``connection`` is given; still used
        in messages).
    baudrate
        Baud rate (ignored by ``socket://`` and ``loop://``).
    connection
        An already open pyserial-like object to use instead of opening ``url``.  The link owns it
        afterwards and closes it in :meth:`close`.
    max_line_bytes
        Lines longer than this are dropped up to the next ``'\\n'`` and reported as noise.
    write_timeout_s
        A write that cannot complete within this time fails with :class:`DeviceTimeoutError`.
    device
        What is connected, for messages (``"LED ring"``, ``"Firmata LED"``).

    Notes
    -----
    Not thread-safe by itself; the driver serialises access.
    """

    def __init__(
        self,
        url: str,
        *,
        baudrate: int = 115200,
        connection: SerialLike | None = None,
        max_line_bytes: int = 256,
        write_timeout_s: float = 2.0,
        device: str = "LED ring",
    ) -> None:
        self.url = url
        self.device = device
        self.max_line_bytes = max_line_bytes
        self._buffer = bytearray()
        self._discarding = False
        self.bytes_received = 0
        self.noise_bytes = 0
        if connection is None:
            try:
                connection = serial.serial_for_url(
                    url, baudrate=baudrate, timeout=_POLL_S, write_timeout=write_timeout_s
                )
            except (serial.SerialException, OSError, ValueError) as exc:
                raise _open_error(device, url, exc) from exc
        else:
            try:
                connection.timeout = _POLL_S
            except (serial.SerialException, OSError, ValueError) as exc:
                raise DeviceError(f"{device} at {url}: cannot configure the connection ({exc}).") from exc
        self._ser: SerialLike | None = connection

    def _io_error(self, what: str, exc: BaseException) -> DeviceError:
        if isinstance(exc, serial.SerialTimeoutException):
            return DeviceTimeoutError(
                f"{self.device} at {self.url}: timed out {what}.",
                hint="Check that the board is connected and powered.",
            )
        text = " ".join(str(exc).split()) or type(exc).__name__
        return DeviceError(
            f"{self.device} at {self.url}: connection lost while {what} ({text}).",
            hint="Check the cable, then reopen the device.",
        )

    def _conn(self) -> SerialLike:
        if self._ser is None:
            raise DeviceError(f"{self.device} at {self.url}: the connection is closed; reopen the device.")
        return self._ser

    def write(self, data: bytes) -> None:
        """Write all of ``data``."""
        conn = self._conn()
        try:
            conn.write(data)
        except (serial.SerialException, OSError) as exc:
            raise self._io_error("writing", exc) from exc

    def discard_input(self) -> int:
        """Drop buffered and pending input; return the number of bytes dropped."""
        conn = self._conn()
        dropped = len(self._buffer)
        self._buffer.clear()
        self._discarding = False
        try:
            waiting = conn.in_waiting
            if waiting:
                dropped += len(conn.read(waiting))
            conn.reset_input_buffer()
        except (serial.SerialException, OSError) as exc:
            raise self._io_error("discarding input", exc) from exc
        return dropped

    def bytes_waiting(self) -> int:
        """Bytes received and not read yet (without waiting)."""
        conn = self._conn()
        try:
            return int(conn.in_waiting)
        except (serial.SerialException, OSError) as exc:
            raise self._io_error("reading", exc) from exc

    def read_chunk(self) -> bytes:
        """Read what has arrived; with nothing there, wait at most one poll interval (20 ms) for a byte.

        For byte-oriented protocols (Firmata); do not mix with :meth:`read_line` on one link.
        """
        conn = self._conn()
        try:
            waiting = conn.in_waiting
            chunk = conn.read(waiting if waiting > 0 else 1)
        except (serial.SerialException, OSError) as exc:
            raise self._io_error("reading", exc) from exc
        self.bytes_received += len(chunk)
        return bytes(chunk)

    def _fill(self) -> bool:
        """Read what is available (waiting at most one poll interval); False when nothing came."""
        chunk = self.read_chunk()
        if not chunk:
            return False
        self._buffer.extend(chunk)
        return True

    def read_line(self, deadline: float) -> bytes | None:
        """Return the next complete line (with its ``'\\n'``), or None if none completed by ``deadline``.

        ``deadline`` is a :func:`time.monotonic` value.  Lines longer than ``max_line_bytes`` are
        discarded up to their ``'\\n'`` (counted in :attr:`noise_bytes`).
        """
        while True:
            newline = self._buffer.find(b"\n")
            if newline >= 0:
                line = bytes(self._buffer[: newline + 1])
                del self._buffer[: newline + 1]
                if self._discarding or len(line) > self.max_line_bytes:
                    self._discarding = False
                    self.noise_bytes += len(line)
                    continue
                return line
            if len(self._buffer) > self.max_line_bytes:
                self.noise_bytes += len(self._buffer)
                self._buffer.clear()
                self._discarding = True
            if time.monotonic() >= deadline:
                return None
            self._fill()

    def close(self) -> None:
        """Close the connection (idempotent; errors while closing are ignored)."""
        conn, self._ser = self._ser, None
        if conn is None:
            return
        with contextlib.suppress(serial.SerialException, OSError):
            conn.close()
        # pyserial's spy:// handler opens its ``?file=`` log and never closes it
        output = getattr(getattr(conn, "formatter", None), "output", None)
        if isinstance(output, io.IOBase) and output not in (sys.stdout, sys.stderr) and not output.closed:
            output.close()
