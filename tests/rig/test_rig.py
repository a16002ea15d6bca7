"""The rig as a whole: rig.yaml validation, `rig check`, and `rig sim` reached from outside."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import serial

from scopectl.cli.main import main
from scopectl.errors import ConfigError
from scopectl.hardware.ledring.protocol import crc8
from scopectl.hardware.rig import load_rig_config


def test_rig_check_sim_passes(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["rig", "check", "--rig", "sim", "--json"]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["ok"] is True
    devices = {d["device"]: d for d in report["devices"]}
    assert set(devices) == {"led_ring", "phone", "benchtop"}
    assert "SCOPECTL-LEDRING" in devices["led_ring"]["model"]
    assert devices["led_ring"]["battery"].endswith("mV")
    assert all(d["latency_ms"] >= 0 for d in devices.values())


def test_rig_check_with_missing_devices_exits_non_zero(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = tmp_path / "scope.cfg"
    cfg.write_text("# empty Micro-Manager configuration\n")
    rig = tmp_path / "rig.yaml"
    rig.write_text(
        "name: bench-1\n"
        f"led_ring: {{flavour: scopectl, url: {tmp_path / 'no-such-tty'}}}\n"
        "phone: {address: 127.0.0.1:9}\n"
        "benchtop: {mm_config: scope.cfg}\n"
    )
    rc = main(["rig", "check", "--rig", str(rig)])
    err = capsys.readouterr().err
    assert rc == 4
    assert "no-such-tty" in err and len(err.strip().splitlines()) == 1


def test_rig_file_errors_name_the_file_and_key(tmp_path: Path) -> None:
    rig = tmp_path / "rig.yaml"
    rig.write_text(
        "led_ring: {flavour: scopectl, url: /dev/ttyACM0}\nphone: {address: 1.2.3.4:5555}\n"
        "benchtop: {mm_config: x.cfg}\ndefault_protocl: lung-trichrome\n"
    )
    with pytest.raises(ConfigError, match=r"rig.yaml: default_protocl: unknown key"):
        load_rig_config(rig)
    rig.write_text(
        "led_ring: {flavour: neopixel, url: /dev/ttyACM0}\nphone: {address: 1.2.3.4:5555}\n"
        "benchtop: {mm_config: x.cfg}\n"
    )
    with pytest.raises(ConfigError, match=r"rig.yaml: led_ring: flavour"):
        load_rig_config(rig)
    # the failing section is found from the error's location, whichever device it is
    rig.write_text(
        "led_ring: {flavour: scopectl, url: /dev/ttyACM0}\nphone: {address: 1.2.3.4:5555, profle: sim}\n"
        "benchtop: {mm_config: x.cfg}\n"
    )
    with pytest.raises(ConfigError, match=r"rig.yaml: phone: profle: unknown key"):
        load_rig_config(rig)
    rig.write_text("led_ring: {flavour: scopectl, url: /dev/ttyACM0}\nphone: 5555\nbenchtop: {}\n")
    with pytest.raises(ConfigError, match=r"rig.yaml: phone: Input should be a valid dictionary"):
        load_rig_config(rig)
    rig.write_text(
        "led_ring: {flavour: scopectl, url: /dev/ttyACM0}\nphone: {address: 1.2.3.4:5555}\n"
        "benchtop: {mm_config: scope/x.cfg}\ndefault_protocol: pap-smear\n"
    )
    cfg = load_rig_config(rig)
    assert cfg.benchtop.mm_config == (tmp_path / "scope" / "x.cfg").resolve()
    assert cfg.default_protocol == "pap-smear"


def _line(seq: int, text: str) -> bytes:
    body = f"{seq:02X}:{text}"
    return f"{body}*{crc8(body.encode()):02X}\n".encode()


@pytest.mark.external("adb")
def test_rig_sim_is_reachable_from_outside(tmp_path: Path) -> None:
    exe = str(Path(sys.executable).with_name("scopectl"))
    with subprocess.Popen(
        [exe, "rig", "sim", "--json", "--duration-s", "60"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        try:
            assert proc.stdout is not None
            info = json.loads(proc.stdout.readline())
            # the LED ring: a serial device speaking our protocol
            with serial.Serial(info["led_ring"], 115200, timeout=2) as port:
                port.write(_line(1, "HELLO"))
                reply = port.readline().decode()
                assert re.match(r"01:OK SCOPECTL-LEDRING \S+ 1 12\*[0-9A-F]{2}\n", reply), reply
            # the phone: the official adb client, isolated from any user's adb server
            home = tmp_path / "home"
            home.mkdir()
            env = {**os.environ, "HOME": str(home), "ANDROID_ADB_SERVER_PORT": str(_free_port())}
            try:
                out = subprocess.run(
                    ["adb", "connect", info["phone"]],
                    env=env,
                    capture_output=True,
                    text=True,
                    timeout=30,
                    check=False,
                )
                # a new key: the phone asks "Allow USB debugging?" and the simulated user accepts
                assert "connected" in out.stdout or "failed to authenticate" in out.stdout, out
                waited = subprocess.run(
                    ["adb", "-s", info["phone"], "wait-for-device"],
                    env=env,
                    capture_output=True,
                    text=True,
                    timeout=30,
                    check=False,
                )
                assert waited.returncode == 0, waited
                out = subprocess.run(
                    ["adb", "-s", info["phone"], "shell", "getprop", "ro.product.model"],
                    env=env,
                    capture_output=True,
                    text=True,
                    timeout=30,
                    check=False,
                )
                assert out.returncode == 0 and "scopectl" in out.stdout.lower(), out
            finally:
                subprocess.run(["adb", "kill-server"], env=env, capture_output=True, timeout=30, check=False)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
    assert proc.returncode == 0


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_rig_sim_stops_on_sigterm_quickly() -> None:
    exe = str(Path(sys.executable).with_name("scopectl"))
    with subprocess.Popen(
        [exe, "rig", "sim", "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as p:
        assert p.stdout is not None
        json.loads(p.stdout.readline())
        t0 = time.monotonic()
        p.send_signal(signal.SIGTERM)
        p.wait(timeout=30)
        assert time.monotonic() - t0 < 20 and p.returncode == 0
