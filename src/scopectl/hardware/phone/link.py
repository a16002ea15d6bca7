"""The ADB connection to one phone -- the single place where adb-shell is used and its errors translated.

:class:`AdbLink` offers what the camera driver needs -- a shell with recovered exit codes and capped
output, directory listings, and file pulls into a caller's sink.  Every call has a *total* deadline, not
only one per message: the transport under adb-shell (:class:`_Bounded`) refuses to wait past it, so a phone
that trickles its answer one entry a second cannot stretch a listing.  A listing is also bounded in size
(:data:`MAX_LIST_ENTRIES`).  After a transport failure the link marks itself broken and the next call
reconnects.
"""

from __future__ import annotations

import contextlib
import io
import secrets
import select
import socket
import struct
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from adb_shell import exceptions as adb_exc
from adb_shell.adb_device import AdbDevice
from adb_shell.transport.base_transport import BaseTransport

from scopectl.errors import (
    DeviceError,
    DeviceNotFoundError,
    DeviceProtocolError,
    DeviceTimeoutError,
    ScopectlError,
)
from scopectl.hardware.phone.config import PhoneTimeouts, parse_address
from scopectl.hardware.phone.parsing import parse_exit_code

__all__ = ["AdbLink", "RemoteEntry", "ShellResult"]

MAX_SHELL_OUTPUT_BYTES = 4 * 1024 * 1024
#: Most entries accepted in one directory listing (a camera folder with more: move old photos off the phone).
MAX_LIST_ENTRIES = 20_000
#: Most bytes accepted for one listing: every entry within the cap fits (24-byte header + 255-byte name).
MAX_LIST_BYTES = MAX_LIST_ENTRIES * 300


@dataclass(frozen=True)
class ShellResult:
    """Output (stdout and stderr merged) and exit code of one shell command."""

    output: str
    rc: int


@dataclass(frozen=True)
class RemoteEntry:
    """One directory entry as the phone listed it (the name is raw, unvalidated bytes)."""

    name: bytes
    mode: int
    size: int
    mtime: int


class _TcpTransport(BaseTransport):  # type: ignore[misc]
    """ADB over TCP, like adb-shell's, but a closed connection is an error instead of a busy wait."""

    def __init__(self, host: str, port: int) -> None:
        self._host = host
        self._port = port
        self._sock: socket.socket | None = None

    def close(self) -> None:
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_RDWR)
            self._sock.close()
            self._sock = None

    def connect(self, transport_timeout_s: float | None) -> None:
        self._sock = socket.create_connection((self._host, self._port), timeout=transport_timeout_s)
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _socket(self) -> socket.socket:
        if self._sock is None:
            raise adb_exc.AdbConnectionError(f"not connected to {self._host}:{self._port}")
        return self._sock

    def bulk_read(self, numbytes: int, transport_timeout_s: float | None) -> bytes:
        sock = self._socket()
        readable, _, _ = select.select([sock], [], [], transport_timeout_s)
        if not readable:
            raise adb_exc.TcpTimeoutException(
                f"reading from {self._host}:{self._port} timed out ({transport_timeout_s} s)"
            )
        data = sock.recv(numbytes)
        if not data:
            raise adb_exc.AdbConnectionError(f"{self._host}:{self._port} closed the connection")
        return data

    def bulk_write(self, data: bytes, transport_timeout_s: float | None) -> int:
        sock = self._socket()
        sock.settimeout(transport_timeout_s)
        sock.sendall(data)
        return len(data)


class _Deadline(Exception):
    """A total time limit was exceeded while data kept flowing."""


class _ListingCap(Exception):
    """A directory listing sent more than allowed."""


class _Bounded(BaseTransport):  # type: ignore[misc]
    """Any adb-shell transport, with a total deadline and a byte budget armed around one operation.

    Composition over adb-shell's public transport interface: every read waits at most until the deadline,
    and a read past it, or past the budget, raises.
    """

    def __init__(self, inner: BaseTransport) -> None:
        self._inner = inner
        self.deadline: float | None = None
        self.budget: int | None = None

    def close(self) -> None:
        self._inner.close()

    def connect(self, transport_timeout_s: float | None) -> None:
        self._inner.connect(transport_timeout_s)

    def bulk_read(self, numbytes: int, transport_timeout_s: float | None) -> bytes:
        timeout = transport_timeout_s
        if self.deadline is not None:
            remaining = self.deadline - time.monotonic()
            if remaining <= 0:
                raise _Deadline("the total time allowed has passed")
            timeout = remaining if timeout is None else min(timeout, remaining)
        data = bytes(self._inner.bulk_read(numbytes, timeout))
        if self.budget is not None:
            self.budget -= len(data)
            if self.budget < 0:
                raise _ListingCap
        return data

    def bulk_write(self, data: bytes, transport_timeout_s: float | None) -> int:
        timeout = transport_timeout_s
        if self.deadline is not None:
            timeout = max(0.001, self.deadline - time.monotonic())
            timeout = timeout if transport_timeout_s is None else min(timeout, transport_timeout_s)
        return int(self._inner.bulk_write(data, timeout))


class _OutputCap(Exception):
    """More shell output than allowed."""


def _message(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:200]


class AdbLink:
    """One ADB connection (TCP ``host:port`` or USB serial).

    Parameters
    ----------
    address
        ``host:port`` or a USB serial number.
    signers
        Callable returning the RSA signers to offer (called on each connect).
    timeouts
        The driver's timeouts.
    on_auth_prompt
        Called with a one-line message when the phone must confirm the key ("Allow USB debugging?").

    Notes
    -----
    Not thread-safe: one caller at a time.
    """

    def __init__(
        self,
        address: str,
        *,
        signers: Callable[[], list[Any]],
        timeouts: PhoneTimeouts,
        on_auth_prompt: Callable[[str], None],
    ) -> None:
        try:
            self._target = parse_address(address)
        except ValueError as exc:
            raise DeviceNotFoundError(f"phone address {exc}.") from None
        self.address = address
        self._signers = signers
        self.timeouts = timeouts
        self._on_auth_prompt = on_auth_prompt
        self._device: Any = None
        self._transport: _Bounded | None = None
        self.broken = True
        self.reconnects = 0

    # ------------------------------------------------------------------ error boundary
    @contextlib.contextmanager
    def _translate(self, action: str, timeout_s: float) -> Iterator[None]:
        """Map adb-shell and socket errors to scopectl errors; mark the link broken on transport errors."""
        where = f"phone {self.address}"
        try:
            yield
        except ScopectlError:
            raise
        except (adb_exc.TcpTimeoutException, adb_exc.AdbTimeoutError, TimeoutError, _Deadline) as exc:
            self._mark_broken()
            raise DeviceTimeoutError(
                f"{where}: {action} timed out after {timeout_s:g} s ({_message(exc)}); "
                "check that the phone is awake, on the same network, and that USB debugging is on."
            ) from None
        except ConnectionRefusedError:
            self._mark_broken()
            raise DeviceNotFoundError(
                f"{where}: connection refused; enable ADB over TCP on the phone (adb tcpip 5555 over USB, "
                "or Wireless debugging) and check the address."
            ) from None
        except adb_exc.DeviceAuthError as exc:
            self._mark_broken()
            raise DeviceError(
                f"{where}: authentication failed ({_message(exc)}); check the ADB key."
            ) from None
        except (
            adb_exc.AdbConnectionError,
            adb_exc.UsbReadFailedError,
            adb_exc.UsbWriteFailedError,
            ConnectionError,
            OSError,
        ) as exc:
            self._mark_broken()
            raise DeviceError(
                f"{where}: connection lost during {action} ({_message(exc)}); check the cable or Wi-Fi and retry."
            ) from None
        except adb_exc.AdbCommandFailureException as exc:
            raise DeviceError(f"{where}: {action} failed on the phone ({_message(exc)}).") from None
        except _OutputCap:
            self._mark_broken()
            raise DeviceProtocolError(
                f"{where}: {action} produced more than {MAX_SHELL_OUTPUT_BYTES} bytes of output; refusing it."
            ) from None
        except _ListingCap:
            self._mark_broken()
            raise DeviceProtocolError(
                f"{where}: {action} returned more than {MAX_LIST_ENTRIES:,} entries ({MAX_LIST_BYTES:,} bytes); "
                "refusing it.",
                hint="Move old photos off the phone, or check the profile's camera_dir.",
            ) from None
        except (
            adb_exc.InvalidChecksumError,
            adb_exc.InvalidCommandError,
            adb_exc.InvalidResponseError,
            adb_exc.DevicePathInvalidError,
            struct.error,
            KeyError,
            ValueError,
            UnicodeError,
        ) as exc:
            self._mark_broken()
            raise DeviceProtocolError(
                f"{where}: garbled ADB answer during {action} ({type(exc).__name__}: {_message(exc)}); "
                "reconnect, and update adb-shell if it persists."
            ) from None

    def _mark_broken(self) -> None:
        self.broken = True
        if self._device is not None:
            with contextlib.suppress(Exception):
                self._device.close()

    # ------------------------------------------------------------------ connection
    def _make_device(self) -> Any:
        if isinstance(self._target, tuple):
            host, port = self._target
            self._transport = _Bounded(_TcpTransport(host, port))
            return AdbDevice(self._transport, default_transport_timeout_s=self.timeouts.command_s)
        try:
            from adb_shell.transport.usb_transport import UsbTransport  # needs libusb1
        except ImportError:
            raise DeviceError(
                f"phone {self.address}: USB needs the 'libusb1' package (pip install 'adb-shell[usb]'); "
                "or connect over TCP (adb tcpip 5555, then use host:5555)."
            ) from None
        self._transport = _Bounded(UsbTransport.find_adb(self._target, None, self.timeouts.command_s))
        return AdbDevice(self._transport, default_transport_timeout_s=self.timeouts.command_s)

    @contextlib.contextmanager
    def _bounded(self, limit_s: float, *, max_bytes: int | None = None) -> Iterator[None]:
        """Arm a total deadline (and a byte budget) on the transport for the calls in the block."""
        transport = self._transport
        if transport is None:
            yield
            return
        transport.deadline = time.monotonic() + limit_s
        transport.budget = max_bytes
        try:
            yield
        finally:
            transport.deadline = None
            transport.budget = None

    def connect(self) -> None:
        """(Re)connect and authenticate; prompts through ``on_auth_prompt`` when the phone must confirm."""
        self.close()
        t = self.timeouts
        signers = self._signers()

        def prompt(_device: Any) -> None:
            self._on_auth_prompt(
                f"phone {self.address}: unlock the phone and tap 'Allow' on the 'Allow USB debugging?' "
                f"dialog (tick 'Always allow'); waiting up to {t.auth_s:g} s."
            )

        with self._translate("connecting", t.connect_s):
            try:
                device = self._make_device()
                self._device = device
                ok = device.connect(
                    rsa_keys=signers,
                    transport_timeout_s=t.connect_s,
                    auth_timeout_s=t.auth_s,
                    read_timeout_s=t.connect_s,
                    auth_callback=prompt,
                )
            except (adb_exc.TcpTimeoutException, adb_exc.UsbReadFailedError) as exc:
                self._mark_broken()
                raise DeviceTimeoutError(
                    f"phone {self.address}: no answer to the ADB handshake or the 'Allow' dialog "
                    f"({_message(exc)}); accept the key on the phone and retry."
                ) from None
            except adb_exc.UsbDeviceNotFoundError as exc:
                raise DeviceNotFoundError(
                    f"phone {self.address}: no such USB device ({_message(exc)}); check the cable and serial, "
                    "and stop a running adb server (adb kill-server), which holds the USB interface."
                ) from None
            except socket.gaierror as exc:
                raise DeviceNotFoundError(f"phone {self.address}: unknown host ({_message(exc)}).") from None
        if not ok:
            raise DeviceError(f"phone {self.address}: the ADB handshake failed; replug or restart adbd.")
        self.broken = False

    def ensure_connected(self) -> None:
        """Connect when never connected or after a transport failure."""
        if self.broken:
            if self._device is not None:
                self.reconnects += 1
            self.connect()

    def close(self) -> None:
        """Close the connection (idempotent)."""
        if self._device is not None:
            with contextlib.suppress(Exception):
                self._device.close()
            self._device = None
        self.broken = True

    # ------------------------------------------------------------------ services
    def shell(self, command: str, *, timeout_s: float | None = None) -> ShellResult:
        """Run ``command`` in the phone's shell; output capped, exit code recovered.

        Raises
        ------
        DeviceTimeoutError, DeviceError, DeviceProtocolError
        """
        self.ensure_connected()
        limit = timeout_s if timeout_s is not None else self.timeouts.command_s
        marker = f"__SCOPECTL_RC_{secrets.token_hex(6)}"
        wrapped = f"{command}; echo {marker}=$?"
        chunks: list[bytes] = []
        total = 0
        with self._translate(f"'{command[:60]}'", limit), self._bounded(limit):
            deadline = time.monotonic() + limit
            stream = self._device.streaming_shell(
                wrapped, transport_timeout_s=limit, read_timeout_s=limit, decode=False
            )
            try:
                for chunk in stream:
                    total += len(chunk)
                    if total > MAX_SHELL_OUTPUT_BYTES:
                        raise _OutputCap
                    chunks.append(bytes(chunk))
                    if time.monotonic() > deadline:
                        raise _Deadline(f"still receiving output after {limit:g} s")
            finally:
                stream.close()
        text = b"".join(chunks).decode("utf-8", "replace")
        output, rc = parse_exit_code(text, marker=marker, device=self.address, command=command[:60])
        return ShellResult(output, rc)

    def listdir(self, path: str, *, timeout_s: float | None = None) -> list[RemoteEntry]:
        """Entries of a phone directory (``.`` and ``..`` removed; names unvalidated).

        The whole listing must arrive within ``timeout_s`` (default ``timeouts.command_s``) and hold at most
        :data:`MAX_LIST_ENTRIES` entries.

        Raises
        ------
        DeviceTimeoutError, DeviceProtocolError, DeviceError
        """
        self.ensure_connected()
        limit = timeout_s if timeout_s is not None else self.timeouts.command_s
        with self._translate(f"listing {path}", limit), self._bounded(limit, max_bytes=MAX_LIST_BYTES):
            entries = self._device.list(path, transport_timeout_s=limit, read_timeout_s=limit)
        if len(entries) > MAX_LIST_ENTRIES:
            self._mark_broken()
            raise DeviceProtocolError(
                f"phone {self.address}: listing {path} returned {len(entries):,} entries (more than "
                f"{MAX_LIST_ENTRIES:,}); refusing it.",
                hint="Move old photos off the phone, or check the profile's camera_dir.",
            )
        out = []
        for entry in entries:
            name = bytes(entry.filename)
            if name in (b".", b".."):
                continue
            out.append(RemoteEntry(name, int(entry.mode), int(entry.size), int(entry.mtime)))
        return out

    def stat(self, path: str) -> tuple[int, int, int]:
        """``(mode, size, mtime)`` of a phone path; all zero when it does not exist."""
        self.ensure_connected()
        limit = self.timeouts.command_s
        with self._translate(f"stat {path}", limit), self._bounded(limit):
            mode, size, mtime = self._device.stat(path, transport_timeout_s=limit, read_timeout_s=limit)
        return int(mode), int(size), int(mtime)

    def pull(self, path: str, sink: Callable[[bytes], None]) -> None:
        """Stream a phone file into ``sink`` (called with each chunk; it may raise to abort).

        The whole transfer is bounded by ``timeouts.transfer_s``; each read by ``timeouts.command_s``.
        """
        self.ensure_connected()
        limit = self.timeouts.transfer_s
        per_read = min(self.timeouts.command_s, limit)
        deadline = time.monotonic() + limit

        class _Sink(io.BytesIO):
            def write(self, data: Any) -> int:
                if time.monotonic() > deadline:
                    raise _Deadline(f"transfer still running after {limit:g} s")
                chunk = bytes(data)
                sink(chunk)
                return len(chunk)

        with self._translate(f"pulling {path}", limit):
            try:
                self._device.pull(path, _Sink(), transport_timeout_s=per_read, read_timeout_s=per_read)
            except BaseException:
                # the sink refused the data (or the transfer failed): the stream is in an unknown state,
                # so start afresh next time
                self._mark_broken()
                raise
