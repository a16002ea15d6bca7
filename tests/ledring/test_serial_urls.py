"""SerialLedRing over pyserial's URL handlers (socket://, spy://, loop://, hwgrep://) and open errors."""

from __future__ import annotations

import os
import random
import select
import socket
import threading
import tty
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import serial

from scopectl.errors import DeviceNotFoundError, DeviceProtocolError, DeviceTimeoutError
from scopectl.hardware.ledring import SerialLedRing
from scopectl.hardware.ledring.sim import SimulatedLedBoard

FAST = {"timeout_s": 0.2, "connect_timeout_s": 0.6}


class TcpServer:
    """A loopback TCP server on a thread; ``serve(conn, stop)`` handles the one connection."""

    def __init__(self, serve: Callable[[socket.socket, threading.Event], None]) -> None:
        self._serve = serve
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(5.0)
        self.port = self._listener.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            conn, _ = self._listener.accept()
        except OSError:
            return
        with conn:
            self._serve(conn, self._stop)

    def close(self) -> None:
        self._stop.set()
        self._listener.close()
        self._thread.join(5.0)
        assert not self._thread.is_alive()


def bridge_to(path: str) -> Callable[[socket.socket, threading.Event], None]:
    """Pump bytes between a TCP connection and a serial device (a ser2net in miniature)."""

    def serve(conn: socket.socket, stop: threading.Event) -> None:
        fd = os.open(path, os.O_RDWR | os.O_NOCTTY)
        tty.setraw(fd)
        try:
            while not stop.is_set():
                ready, _, _ = select.select([conn, fd], [], [], 0.02)
                if conn in ready:
                    data = conn.recv(4096)
                    if not data:
                        return
                    os.write(fd, data)
                if fd in ready:
                    conn.sendall(os.read(fd, 4096))
        finally:
            os.close(fd)

    return serve


@pytest.fixture
def board() -> Iterator[SimulatedLedBoard]:
    with SimulatedLedBoard() as sim:
        yield sim


def test_socket_url_through_a_tcp_bridge(board: SimulatedLedBoard) -> None:
    assert board.path is not None
    server = TcpServer(bridge_to(board.path))
    try:
        with SerialLedRing(f"socket://127.0.0.1:{server.port}", **FAST) as ring:  # type: ignore[arg-type]
            assert ring.info().model == "SCOPECTL-LEDRING"
            state = ring.set_all((12, 34, 56), brightness=250)
            assert board.ring_state()[0][5].tolist() == [12, 34, 56]
            assert ring.state().same_light(state)
    finally:
        server.close()


def test_spy_url_logs_the_traffic(board: SimulatedLedBoard, tmp_path: Path) -> None:
    assert board.path is not None
    log = tmp_path / "spy.txt"
    with SerialLedRing(f"spy://{board.path}?file={log}", **FAST) as ring:  # type: ignore[arg-type]
        ring.set_all((1, 1, 1), brightness=1)
    text = log.read_text()
    assert "TX" in text and "RX" in text and "01:HELLO*" in text


def test_an_open_connection_can_be_given(board: SimulatedLedBoard) -> None:
    assert board.path is not None
    connection = serial.serial_for_url(board.path, baudrate=115200)
    ring = SerialLedRing(board.path, connection=connection, **FAST)  # type: ignore[arg-type]
    ring.set_all((3, 3, 3), brightness=3)
    ring.close()
    assert not connection.is_open


def test_loop_url_is_reported_as_an_echo_not_a_ring() -> None:
    with pytest.raises(DeviceProtocolError, match="echoes what is sent"):
        SerialLedRing("loop://", **FAST)  # type: ignore[arg-type]


def test_garbage_speaking_device_is_wrong_firmware() -> None:
    rng = random.Random(3)

    def babble(conn: socket.socket, stop: threading.Event) -> None:
        conn.settimeout(0.02)
        while not stop.is_set():
            try:
                conn.recv(4096)
            except TimeoutError:
                pass
            except OSError:
                return
            try:
                conn.sendall(bytes(rng.randrange(256) for _ in range(40)) + b"\n")
            except OSError:
                return

    server = TcpServer(babble)
    try:
        with pytest.raises(DeviceProtocolError, match="no valid scopectl LED-ring reply"):
            SerialLedRing(f"socket://127.0.0.1:{server.port}", **FAST)  # type: ignore[arg-type]
    finally:
        server.close()


def test_silent_device_is_a_timeout() -> None:
    def silent(conn: socket.socket, stop: threading.Event) -> None:
        stop.wait(10.0)

    server = TcpServer(silent)
    try:
        with pytest.raises(DeviceTimeoutError, match="no answer to HELLO"):
            SerialLedRing(f"socket://127.0.0.1:{server.port}", **FAST)  # type: ignore[arg-type]
    finally:
        server.close()


@pytest.mark.parametrize(
    "url",
    [
        "/dev/does-not-exist-scopectl",
        "nosuchscheme://x",
        "hwgrep://no-such-device-scopectl-xyz",
        "socket://127.0.0.1:1",
    ],
)
def test_nothing_at_the_address_is_not_found(url: str) -> None:
    with pytest.raises(DeviceNotFoundError, match="LED ring"):
        SerialLedRing(url, **FAST)  # type: ignore[arg-type]
