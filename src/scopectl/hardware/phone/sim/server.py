"""A simulated adbd on a loopback TCP port, speaking the real ADB protocol.

It serves adb-shell (:class:`adb_shell.adb_device.AdbDeviceTcp`) and the official ``adb`` client
(``adb connect``, ``adb shell CMD``, ``adb ls``, ``adb pull``): the connection handshake with optional RSA
authentication, legacy ``shell:`` streams and the file-sync service (``STAT``, ``LIST``, ``RECV``; ``SEND``
answers ``FAIL``).  No feature is advertised, so clients use exactly these.

Threads: one accept thread, one reader thread per connection and one worker per open stream; :meth:`stop`
closes every socket and joins every thread with a timeout.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import socket
import struct
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any, Self

from scopectl.hardware.phone.sim import protocol as p
from scopectl.hardware.phone.sim.phone import CaptureSource, PhoneFaults, SimFile, SimPhoneState
from scopectl.hardware.phone.sim.shell import ToyboxShell

__all__ = ["SimulatedPhone"]

_LOG = logging.getLogger(__name__)

_DEVICE_MAXDATA = 256 * 1024
_SYNC_CHUNK = 64 * 1024
_STREAM_IO_TIMEOUT_S = 10.0
_JOIN_TIMEOUT_S = 2.0


class _Closed(Exception):
    """The stream or connection went away."""


class _Stream:
    """One open stream: data from the host arrives in a queue, data to it waits for each OKAY."""

    def __init__(self, conn: _Connection, local_id: int, remote_id: int) -> None:
        self.conn = conn
        self.local_id = local_id
        self.remote_id = remote_id
        self._incoming: queue.Queue[bytes | None] = queue.Queue()
        self._buffer = bytearray()
        self._okay = threading.Event()
        self.closed_by_host = threading.Event()
        self.closed_by_us = False

    # called by the connection's reader thread
    def feed(self, data: bytes) -> None:
        self._incoming.put(data)

    def on_okay(self) -> None:
        self._okay.set()

    def on_host_close(self) -> None:
        self.closed_by_host.set()
        self._incoming.put(None)
        self._okay.set()

    # used by the service worker
    def write(self, data: bytes) -> None:
        """Send data in WRTE messages no larger than the host's maxdata, waiting for each OKAY."""
        view = memoryview(data)
        while view:
            chunk, view = view[: self.conn.maxdata], view[self.conn.maxdata :]
            self._okay.clear()
            self.conn.send(p.WRTE, self.local_id, self.remote_id, bytes(chunk))
            deadline = time.monotonic() + _STREAM_IO_TIMEOUT_S
            while not self._okay.wait(0.05):
                if self.conn.dead.is_set() or time.monotonic() > deadline:
                    raise _Closed
            if self.closed_by_host.is_set():
                raise _Closed

    def read_exact(self, n: int) -> bytes:
        """Read exactly ``n`` bytes of host data (sync requests are not aligned with WRTE boundaries)."""
        deadline = time.monotonic() + _STREAM_IO_TIMEOUT_S
        while len(self._buffer) < n:
            try:
                item = self._incoming.get(timeout=0.05)
            except queue.Empty:
                if self.conn.dead.is_set() or time.monotonic() > deadline:
                    raise _Closed from None
                continue
            if item is None:
                raise _Closed
            self._buffer += item
        out = bytes(self._buffer[:n])
        del self._buffer[:n]
        return out

    def close(self) -> None:
        """Send CLSE once (unless the host closed first and was already answered)."""
        if not self.closed_by_us:
            self.closed_by_us = True
            self.conn.close_stream(self)


class _Connection:
    """One host connection: handshake, authentication and stream multiplexing."""

    def __init__(self, server: SimulatedPhone, sock: socket.socket) -> None:
        self.server = server
        self.sock = sock
        self.dead = threading.Event()
        self.maxdata = _DEVICE_MAXDATA
        self.version = p.VERSION
        self.online = False
        self._token = b""
        self._send_lock = threading.Lock()
        self._streams: dict[int, _Stream] = {}
        self._streams_lock = threading.Lock()
        self._next_id = 1
        self.workers: list[threading.Thread] = []

    # ------------------------------------------------------------------ I/O
    def send(self, command: int, arg0: int, arg1: int, data: bytes = b"") -> None:
        message = p.encode_message(command, arg0, arg1, data)
        with self._send_lock:
            if self.dead.is_set():
                raise _Closed
            try:
                self.sock.sendall(message)
            except OSError:
                self.abort()
                raise _Closed from None

    def abort(self) -> None:
        """Cut the connection (used for the drop fault and on shutdown)."""
        self.dead.set()
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            self.sock.close()

    def _recv_exact(self, n: int) -> bytes:
        data = bytearray()
        while len(data) < n:
            if self.dead.is_set() or self.server.stopping.is_set():
                raise _Closed
            try:
                chunk = self.sock.recv(n - len(data))
            except TimeoutError:
                continue
            except OSError:
                raise _Closed from None
            if not chunk:
                raise _Closed
            data += chunk
        return bytes(data)

    # ------------------------------------------------------------------ reader loop
    def serve(self) -> None:
        try:
            while True:
                header = p.decode_header(
                    self._recv_exact(p.HEADER_SIZE), max_data=self.server.max_host_payload
                )
                data = self._recv_exact(header.data_length) if header.data_length else b""
                skip_check = self.version >= p.VERSION_NO_CHECKSUM and header.data_check == 0
                if not skip_check and p.checksum(data) != header.data_check:
                    raise p.ProtocolViolation(f"bad checksum on {header.name}")
                self._dispatch(header, data)
        except _Closed:
            pass
        except p.ProtocolViolation as exc:
            _LOG.warning("simulated phone: dropping connection: %s", exc)
        finally:
            self.abort()
            with self._streams_lock:
                streams = list(self._streams.values())
            for stream in streams:
                stream.on_host_close()

    def _dispatch(self, h: p.Header, data: bytes) -> None:
        if h.command == p.CNXN:
            self._on_connect(h, data)
        elif h.command == p.AUTH:
            self._on_auth(h, data)
        elif not self.online:
            raise p.ProtocolViolation(f"{h.name} before the connection was authorised")
        elif h.command == p.OPEN:
            self._on_open(h, data)
        elif h.command == p.OKAY:
            stream = self._stream(h.arg1)
            if stream is not None:
                stream.on_okay()
        elif h.command == p.WRTE:
            stream = self._stream(h.arg1)
            if stream is None:
                self.send(p.CLSE, 0, h.arg0)
                return
            stream.feed(data)
            self.send(p.OKAY, stream.local_id, stream.remote_id)
        elif h.command == p.CLSE:
            stream = self._stream(h.arg1)
            if stream is not None:
                stream.on_host_close()
                with self._streams_lock:
                    self._streams.pop(stream.local_id, None)
                if not stream.closed_by_us:
                    stream.closed_by_us = True
                    self.send(p.CLSE, stream.local_id, stream.remote_id)
        else:
            raise p.ProtocolViolation(f"unsupported command {h.name}")

    def _stream(self, local_id: int) -> _Stream | None:
        with self._streams_lock:
            return self._streams.get(local_id)

    def close_stream(self, stream: _Stream) -> None:
        with self._streams_lock:
            self._streams.pop(stream.local_id, None)
        with contextlib.suppress(_Closed):
            self.send(p.CLSE, stream.local_id, stream.remote_id)

    # ------------------------------------------------------------------ handshake
    def _banner(self) -> bytes:
        ph = self.server.phone
        props = f"ro.product.name=scopectl_sim;ro.product.model={ph.model};ro.product.device=scopectl_sim;"
        return b"device::" + props.encode()

    def _on_connect(self, h: p.Header, data: bytes) -> None:
        if h.arg0 < p.VERSION:
            raise p.ProtocolViolation(f"host protocol version {h.arg0:#x} too old")
        self.version = min(h.arg0, p.VERSION_NO_CHECKSUM)
        self.maxdata = max(1024, min(h.arg1, _DEVICE_MAXDATA))
        self.online = False
        if self.server.require_auth:
            self._send_token()
        else:
            self._go_online()

    def _send_token(self) -> None:
        self._token = os.urandom(20)
        self.send(p.AUTH, p.AUTH_TOKEN, 0, self._token)

    def _go_online(self) -> None:
        self.online = True
        self.send(p.CNXN, self.version, self.maxdata, self._banner())

    def _on_auth(self, h: p.Header, data: bytes) -> None:
        if not self.server.require_auth or not self._token:
            raise p.ProtocolViolation("unexpected AUTH")
        if h.arg0 == p.AUTH_SIGNATURE:
            for modulus, exponent in self.server.authorized_public_keys():
                if p.verify_auth_signature(self._token, data, modulus=modulus, exponent=exponent):
                    self._go_online()
                    return
            self._send_token()
        elif h.arg0 == p.AUTH_RSAPUBLICKEY:
            key_text = data.rstrip(b"\0").decode("ascii", "replace")
            try:
                p.parse_android_public_key(key_text)
            except ValueError as exc:
                raise p.ProtocolViolation(f"bad public key: {exc}") from None
            self.server.prompts.append(key_text)
            delay = self.server.user_allows_after_s
            if delay is None:
                return  # the user never taps "Allow": the host waits until its own timeout
            if self.server.stopping.wait(delay) or self.dead.is_set():
                return
            self.server.authorize(key_text)
            self._go_online()
        else:
            raise p.ProtocolViolation(f"AUTH type {h.arg0} not allowed from a host")

    # ------------------------------------------------------------------ services
    def _on_open(self, h: p.Header, data: bytes) -> None:
        service = data.rstrip(b"\0").decode("utf-8", "surrogateescape")
        handler: Callable[[_Stream, str], None] | None = None
        if service.startswith("shell:") and service != "shell:":  # no interactive shell (pty) here
            handler = self.server.serve_shell
        elif service == "sync:":
            handler = self.server.serve_sync
        if handler is None:
            self.send(p.CLSE, 0, h.arg0)  # refuse the stream, as adbd does for unknown services
            return
        with self._streams_lock:
            local_id = self._next_id
            self._next_id += 1
            stream = _Stream(self, local_id, h.arg0)
            self._streams[local_id] = stream
        self.send(p.OKAY, local_id, h.arg0)
        arg = service.split(":", 1)[1]
        worker = threading.Thread(
            target=self._run_service, args=(handler, stream, arg), name=f"sim-adb-{service[:20]}", daemon=True
        )
        self.workers = [w for w in self.workers if w.is_alive()]
        self.workers.append(worker)
        worker.start()

    def _run_service(self, handler: Callable[[_Stream, str], None], stream: _Stream, arg: str) -> None:
        try:
            handler(stream, arg)
        except _Closed:
            pass
        finally:
            if not self.dead.is_set():
                stream.close()


class _CallableSource:
    """Adapts ``renderer() -> (dng, jpeg)`` or ``(dng, jpeg, settings)`` to :class:`CaptureSource`."""

    def __init__(self, renderer: Callable[[], tuple[Any, ...]]) -> None:
        self.renderer = renderer

    def render_capture(self) -> tuple[bytes, bytes, dict[str, Any]]:
        result = self.renderer()
        if len(result) == 2:
            return bytes(result[0]), bytes(result[1]), {}
        if len(result) == 3 and isinstance(result[2], dict):
            return bytes(result[0]), bytes(result[1]), dict(result[2])
        raise TypeError("a renderer must return (dng_bytes, jpeg_bytes) or (dng_bytes, jpeg_bytes, settings)")


def as_capture_source(source: CaptureSource | Callable[[], tuple[Any, ...]]) -> CaptureSource:
    """A :class:`CaptureSource` from one, or from a plain renderer function."""
    if isinstance(source, CaptureSource):
        return source
    if callable(source):
        return _CallableSource(source)
    raise TypeError(f"{source!r} is neither a CaptureSource nor a callable renderer")


class SimulatedPhone:
    """A simulated phone reachable as an ADB device on ``host:port``.

    Parameters
    ----------
    source
        What the camera photographs: a :class:`CaptureSource`, or a function returning
        ``(dng_bytes, jpeg_bytes)`` or ``(dng_bytes, jpeg_bytes, settings)``.
    host, port
        Where to listen; ``port=0`` picks a free port (returned by :meth:`start`).
    require_auth
        Demand RSA authentication, as a real phone does.
    authorized_keys
        Public keys (Android format, the content of ``adbkey.pub``) already authorised on the phone.
    faults
        Faults to inject; may be changed while the phone runs.
    user_allows_after_s
        When an unknown key is offered, the simulated user taps "Allow" after this delay; ``None``: never.
    """

    def __init__(
        self,
        source: CaptureSource | Callable[[], tuple[Any, ...]],
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        require_auth: bool = False,
        authorized_keys: list[str] | None = None,
        faults: PhoneFaults | None = None,
        user_allows_after_s: float | None = 0.05,
        serial: str = "SIM0001",
    ) -> None:
        self.host = host
        self.port = port
        self.require_auth = require_auth
        self.faults = faults if faults is not None else PhoneFaults()
        self.phone = SimPhoneState(source=as_capture_source(source), faults=self.faults, serial=serial)
        self.shell = ToyboxShell(self.phone)
        self.user_allows_after_s = user_allows_after_s
        self.prompts: list[str] = []
        self.max_host_payload = 1024 * 1024
        self.stopping = threading.Event()
        self._keys: list[str] = []
        self._key_lock = threading.Lock()
        for key in authorized_keys or []:
            self.authorize(key)
        self._listener: socket.socket | None = None
        self._accept_thread: threading.Thread | None = None
        self._connections: list[tuple[_Connection, threading.Thread]] = []
        self._conn_lock = threading.Lock()

    # ------------------------------------------------------------------ keys
    def authorize(self, public_key: str) -> None:
        """Add a public key (``adbkey.pub`` content) to the phone's authorised keys."""
        p.parse_android_public_key(public_key)
        with self._key_lock:
            if public_key.strip() not in self._keys:
                self._keys.append(public_key.strip())

    def authorized_public_keys(self) -> list[tuple[int, int]]:
        with self._key_lock:
            return [p.parse_android_public_key(k) for k in self._keys]

    # ------------------------------------------------------------------ life cycle
    @property
    def address(self) -> str:
        """``host:port`` for clients."""
        return f"{self.host}:{self.port}"

    def start(self) -> int:
        """Start listening; returns the port."""
        if self._listener is not None:
            return self.port
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((self.host, self.port))
        listener.listen(8)
        listener.settimeout(0.1)
        self._listener = listener
        self.port = listener.getsockname()[1]
        self.stopping.clear()
        self.phone.start()
        self._accept_thread = threading.Thread(target=self._accept_loop, name="sim-adbd-accept", daemon=True)
        self._accept_thread.start()
        return self.port

    def stop(self) -> None:
        """Close every connection and join every thread (each with a timeout)."""
        self.stopping.set()
        self.phone.stop(timeout_s=_JOIN_TIMEOUT_S)
        if self._accept_thread is not None:
            self._accept_thread.join(_JOIN_TIMEOUT_S)
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        self.drop_connections()
        with self._conn_lock:
            conns = list(self._connections)
            self._connections.clear()
        for conn, thread in conns:
            thread.join(_JOIN_TIMEOUT_S)
            for worker in conn.workers:
                worker.join(_JOIN_TIMEOUT_S)

    def drop_connections(self) -> None:
        """Cut every open connection (like pulling the cable or losing Wi-Fi)."""
        with self._conn_lock:
            conns = [c for c, _ in self._connections]
        for conn in conns:
            conn.abort()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _accept_loop(self) -> None:
        assert self._listener is not None
        while not self.stopping.is_set():
            try:
                sock, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            sock.settimeout(0.1)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn = _Connection(self, sock)
            thread = threading.Thread(target=conn.serve, name="sim-adbd-conn", daemon=True)
            with self._conn_lock:
                self._connections = [(c, t) for c, t in self._connections if t.is_alive()]
                self._connections.append((conn, thread))
            thread.start()

    # ------------------------------------------------------------------ services
    def _slow(self) -> None:
        if self.faults.latency_s > 0:
            self.stopping.wait(self.faults.latency_s)

    def serve_shell(self, stream: _Stream, command: str) -> None:
        """Legacy ``shell:CMD``: output, then close (no exit code on the wire)."""
        self._slow()
        output, _rc = self.shell.run(command)
        if output:
            stream.write(output)

    def serve_sync(self, stream: _Stream, _arg: str) -> None:
        """The file-sync service: ``STAT``, ``LIST``, ``RECV``, ``QUIT`` (``SEND`` is refused)."""
        while True:
            request, length = struct.unpack("<4sI", stream.read_exact(8))
            if request == b"QUIT":
                return
            if length > 4096:
                self._sync_fail(stream, "path too long")
                return
            path = stream.read_exact(length).decode("utf-8", "surrogateescape")
            self._slow()
            if request == b"STAT":
                entry = self.phone.lookup(path)
                if entry is None:
                    stream.write(struct.pack("<4s3I", b"STAT", 0, 0, 0))
                elif entry == "dir":
                    stream.write(struct.pack("<4s3I", b"STAT", 0o40771, 4096, int(time.time())))
                else:
                    assert isinstance(entry, SimFile)
                    stream.write(struct.pack("<4s3I", b"STAT", entry.mode, len(entry.data), entry.mtime))
            elif request == b"LIST":
                entries = list(self.phone.listdir(path) or [])
                entries += [
                    (f"junk-{k:08d}.bin", 0o100644, 0, 0) for k in range(self.faults.extra_list_entries)
                ]
                delay = self.faults.list_entry_delay_s
                out = bytearray()
                for name, mode, size, mtime in entries:
                    raw = name.encode("utf-8", "surrogateescape")
                    out += struct.pack("<4s4I", b"DENT", mode, size, mtime, len(raw)) + raw
                    if delay > 0:  # trickle: one entry per message
                        stream.write(bytes(out))
                        out.clear()
                        if self.stopping.wait(delay):
                            return
                out += struct.pack("<4s4I", b"DONE", 0, 0, 0, 0)
                stream.write(bytes(out))
            elif request == b"RECV":
                self._send_file(stream, path)
            elif request == b"SEND":
                self._sync_fail(stream, "read-only simulated storage")
                return
            else:
                self._sync_fail(stream, f"unknown sync request {request!r}")
                return

    def _sync_fail(self, stream: _Stream, message: str) -> None:
        raw = message.encode()
        stream.write(struct.pack("<4sI", b"FAIL", len(raw)) + raw)

    def _send_file(self, stream: _Stream, path: str) -> None:
        data = self.phone.read_file(path)
        if data is None:
            entry = self.phone.lookup(path)
            self._sync_fail(stream, "is a directory" if entry == "dir" else "No such file or directory")
            return
        drop_at = None
        if self.faults.drop_transfers > 0:
            self.faults.drop_transfers -= 1
            drop_at = min(self.faults.drop_after_bytes, max(0, len(data) - 1))
        sent = 0
        while sent < len(data):
            end = min(len(data), sent + _SYNC_CHUNK)
            if drop_at is not None and end > drop_at:
                end = drop_at
                if end > sent:
                    stream.write(struct.pack("<4sI", b"DATA", end - sent) + data[sent:end])
                stream.conn.abort()
                raise _Closed
            stream.write(struct.pack("<4sI", b"DATA", end - sent) + data[sent:end])
            sent = end
            if self.faults.latency_s > 0:
                self.stopping.wait(self.faults.latency_s / 10)
        stream.write(struct.pack("<4sI", b"DONE", 0))
