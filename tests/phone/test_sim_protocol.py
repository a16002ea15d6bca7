"""The simulated adbd speaks the real ADB protocol: adb-shell directly, the official ``adb`` client, and
raw packets that break the rules."""

from __future__ import annotations

import io
import os
import socket
import struct
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from adb_shell.adb_device import AdbDeviceTcp
from adb_shell.auth.keygen import keygen
from adb_shell.auth.sign_pythonrsa import PythonRSASigner
from adb_shell.exceptions import AdbCommandFailureException

from scopectl.hardware.phone.sim import SimulatedPhone
from scopectl.hardware.phone.sim import protocol as p

CAMERA = "/sdcard/DCIM/Camera"


@pytest.fixture
def keypair(tmp_path: Path) -> tuple[Path, str]:
    path = tmp_path / "adbkey"
    keygen(str(path))
    return path, Path(f"{path}.pub").read_text()


def _adb_shell_device(phone: SimulatedPhone, key: Path | None) -> Any:
    dev = AdbDeviceTcp("127.0.0.1", phone.port, default_transport_timeout_s=5)
    keys = [PythonRSASigner.FromRSAKeyPath(str(key))] if key else None
    assert dev.connect(rsa_keys=keys, auth_timeout_s=2, read_timeout_s=5)
    return dev


def _shoot(phone: SimulatedPhone) -> None:
    """Open the camera and fire it through the simulated shell, then wait for the files."""
    out, rc = phone.shell.run("am start -W -a android.media.action.STILL_IMAGE_CAMERA && input keyevent 27")
    assert rc == 0, out
    for _ in range(200):
        names = [n for n, *_ in phone.phone.listdir(CAMERA) or [] if n.endswith(".dng")]
        entry = phone.phone.lookup(f"{CAMERA}/{names[0]}") if names else None
        if entry is not None and not isinstance(entry, str) and len(entry.data) > 2000:
            time.sleep(0.1)
            return
        time.sleep(0.02)
    raise AssertionError("the simulated camera wrote nothing")


@pytest.mark.parametrize("auth", [False, True], ids=["open", "auth"])
def test_adb_shell_client(sim_factory: Any, keypair: tuple[Path, str], auth: bool) -> None:
    key, pub = keypair
    phone = sim_factory(require_auth=auth, authorized_keys=[pub] if auth else None, user_allows_after_s=None)
    dev = _adb_shell_device(phone, key if auth else None)
    try:
        assert dev.shell("getprop ro.product.model") == phone.phone.model + "\n"
        assert dev.shell("nosuchcmd; echo rc=$?") == "/system/bin/sh: nosuchcmd: not found\nrc=127\n"
        assert dev.shell("false || echo alt && echo both") == "alt\nboth\n"
        _shoot(phone)
        listing = {bytes(f.filename).decode(): f for f in dev.list(CAMERA)}
        assert {".", ".."} <= listing.keys()
        dng = next(n for n in listing if n.endswith(".dng"))
        expected = phone.phone.read_file(f"{CAMERA}/{dng}")
        assert expected is not None
        assert listing[dng].size == len(expected)
        assert dev.stat(f"{CAMERA}/{dng}")[1] == len(expected)
        assert dev.stat(f"{CAMERA}/missing.dng") == (0, 0, 0)
        buf = io.BytesIO()
        dev.pull(f"{CAMERA}/{dng}", buf)
        assert buf.getvalue() == expected
        with pytest.raises(AdbCommandFailureException, match="No such file"):
            dev.pull(f"{CAMERA}/missing.dng", io.BytesIO())
    finally:
        dev.close()


def test_unknown_key_is_refused_until_the_user_allows(sim_factory: Any, keypair: tuple[Path, str]) -> None:
    key, pub = keypair
    phone = sim_factory(require_auth=True, user_allows_after_s=None)
    dev = AdbDeviceTcp("127.0.0.1", phone.port, default_transport_timeout_s=2)
    with pytest.raises(Exception, match="timed out"):
        dev.connect(rsa_keys=[PythonRSASigner.FromRSAKeyPath(str(key))], auth_timeout_s=0.3, read_timeout_s=2)
    dev.close()
    assert phone.prompts == [pub.strip()]  # the phone "showed the dialog" with the offered key


def _raw_connection(phone: SimulatedPhone) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", phone.port), timeout=3)
    sock.sendall(p.encode_message(p.CNXN, p.VERSION_NO_CHECKSUM, 4096, b"host::\0"))
    return sock


def _read_message(sock: socket.socket) -> tuple[p.Header, bytes]:
    raw = b""
    while len(raw) < p.HEADER_SIZE:
        chunk = sock.recv(p.HEADER_SIZE - len(raw))
        if not chunk:
            raise ConnectionError("closed")
        raw += chunk
    header = p.decode_header(raw, max_data=1 << 20)
    data = b""
    while len(data) < header.data_length:
        data += sock.recv(header.data_length - len(data))
    assert p.checksum(data) == header.data_check, "the device must always send correct checksums"
    return header, data


def test_banner_version_and_zero_checksums(sim_factory: Any) -> None:
    phone = sim_factory()
    with _raw_connection(phone) as sock:
        header, banner = _read_message(sock)
        assert header.command == p.CNXN
        assert header.arg0 == p.VERSION_NO_CHECKSUM
        assert header.arg1 == 4096  # the host's smaller maxdata is respected
        assert banner.startswith(b"device::")
        assert b"features=" not in banner  # nothing advertised that is not implemented
        # a host at 0x01000001 may send checksum 0
        message = bytearray(p.encode_message(p.OPEN, 7, 0, b"shell:echo hi\0"))
        message[16:20] = b"\0\0\0\0"
        sock.sendall(bytes(message))
        okay, _ = _read_message(sock)
        assert okay.command == p.OKAY
        write, data = _read_message(sock)
        assert (write.command, data) == (p.WRTE, b"hi\n")
        assert len(data) <= 4096


def test_bad_checksum_from_an_old_host_drops_the_connection(sim_factory: Any) -> None:
    phone = sim_factory()
    with socket.create_connection(("127.0.0.1", phone.port), timeout=3) as sock:
        sock.sendall(p.encode_message(p.CNXN, p.VERSION, 4096, b"host::\0"))
        _read_message(sock)
        message = bytearray(p.encode_message(p.OPEN, 7, 0, b"shell:echo hi\0"))
        message[16:20] = struct.pack("<I", 12345)
        sock.sendall(bytes(message))
        with pytest.raises((ConnectionError, OSError)):
            _read_message(sock)


def test_open_before_auth_is_refused(sim_factory: Any) -> None:
    phone = sim_factory(require_auth=True)
    with _raw_connection(phone) as sock:
        header, token = _read_message(sock)
        assert (header.command, header.arg0, len(token)) == (p.AUTH, p.AUTH_TOKEN, 20)
        sock.sendall(p.encode_message(p.OPEN, 1, 0, b"shell:id\0"))
        with pytest.raises((ConnectionError, OSError)):
            _read_message(sock)


def test_signature_check(keypair: tuple[Path, str]) -> None:
    key, pub = keypair
    modulus, exponent = p.parse_android_public_key(pub)
    signer = PythonRSASigner.FromRSAKeyPath(str(key))
    token = os.urandom(20)
    signature = signer.Sign(token)
    assert p.verify_auth_signature(token, signature, modulus=modulus, exponent=exponent)
    assert not p.verify_auth_signature(os.urandom(20), signature, modulus=modulus, exponent=exponent)
    assert not p.verify_auth_signature(token, signature[:-1] + b"\0", modulus=modulus, exponent=exponent)
    with pytest.raises(ValueError, match="base64"):
        p.parse_android_public_key("not*base64 user@host")


# ---------------------------------------------------------------------------------------------- official adb
@pytest.fixture
def official_adb(tmp_path: Path) -> Iterator[Any]:
    """The official client, isolated: its own HOME and server port; its server is killed afterwards."""
    home = tmp_path / "adb-home"
    (home / ".android").mkdir(parents=True)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        server_port = s.getsockname()[1]
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "ANDROID_USER_HOME": str(home / ".android"),
        "ANDROID_ADB_SERVER_PORT": str(server_port),
    }

    def adb(*args: str, timeout_s: float = 20) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["adb", *args], env=env, capture_output=True, text=True, timeout=timeout_s, check=False
        )

    adb.home = home  # type: ignore[attr-defined]
    try:
        yield adb
    finally:
        adb("kill-server", timeout_s=10)


@pytest.mark.parametrize("auth", [False, True], ids=["open", "auth"])
def test_official_adb_client(sim_factory: Any, official_adb: Any, auth: bool, tmp_path: Path) -> None:
    authorized = None
    if auth:
        key = official_adb.home / ".android" / "adbkey"
        keygen(str(key))
        authorized = [Path(f"{key}.pub").read_text()]
    phone = sim_factory(require_auth=auth, authorized_keys=authorized, user_allows_after_s=None)
    serial = phone.address

    connected = official_adb("connect", serial)
    assert connected.returncode == 0, connected.stderr
    assert f"connected to {serial}" in connected.stdout
    assert official_adb("-s", serial, "wait-for-device", timeout_s=15).returncode == 0
    devices = official_adb("devices").stdout
    assert f"{serial}\tdevice" in devices

    model = official_adb("-s", serial, "shell", "getprop", "ro.product.model")
    assert model.stdout == phone.phone.model + "\n"
    missing = official_adb("-s", serial, "shell", "nosuchcmd")
    assert "nosuchcmd: not found" in missing.stdout

    _shoot(phone)
    listing = official_adb("-s", serial, "ls", CAMERA)
    assert listing.returncode == 0, listing.stderr
    names = [line.split()[-1] for line in listing.stdout.splitlines()]
    dng = next(n for n in names if n.endswith(".dng"))
    expected = phone.phone.read_file(f"{CAMERA}/{dng}")
    assert expected is not None
    size_hex = next(line.split()[1] for line in listing.stdout.splitlines() if line.endswith(dng))
    assert int(size_hex, 16) == len(expected)

    target = tmp_path / "pulled.dng"
    pulled = official_adb("-s", serial, "pull", f"{CAMERA}/{dng}", str(target))
    assert pulled.returncode == 0, pulled.stderr
    assert target.read_bytes() == expected
    gone = official_adb("-s", serial, "pull", f"{CAMERA}/missing.dng", str(tmp_path / "x"))
    assert gone.returncode != 0
    assert "does not exist" in gone.stdout + gone.stderr
    assert official_adb("disconnect", serial).returncode == 0


def test_a_plain_renderer_function_is_a_capture_source(
    sim_factory: Any, source: Any, fast_timeouts: Any, tmp_path: Path
) -> None:
    from scopectl.hardware.phone import PhoneCamera

    def renderer() -> tuple[bytes, bytes]:
        dng, jpeg, _settings = source.render_capture()
        return dng, jpeg

    phone = sim_factory(source=renderer)
    with PhoneCamera(phone.address, profile="sim", timeouts=fast_timeouts) as cam:
        files = cam.capture(tmp_path)
    assert files.settings["iso"] == 100  # read from the files themselves
    assert phone.phone.captures[-1].settings == {}
    with pytest.raises(TypeError, match="neither a CaptureSource nor a callable"):
        SimulatedPhone(42)  # type: ignore[arg-type]
