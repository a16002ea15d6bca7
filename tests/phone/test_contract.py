"""Contract tests of the phone camera driver: run against the simulated phone (with and without RSA
authentication) and against a real phone::

    pytest tests/phone -m hardware --phone-serial 192.168.1.20:5555   # or a USB serial

The real phone needs USB debugging authorised for scopectl's key (the first run prompts), the screen
unlocked, and its camera app set to save RAW (DNG) + JPEG; ``SCOPECTL_PHONE_PROFILE`` picks a built-in
profile other than ``generic-android``.  The real-phone tests take photos and delete them afterwards.
"""

from __future__ import annotations

import hashlib
import io
import os
import shlex
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import rawpy

from scopectl.errors import DeviceError
from scopectl.hardware.phone import PhoneCamera, PhoneTimeouts
from scopectl.hardware.phone.sim import SimulatedPhone
from support import require_option


class Target:
    """A camera under test and, for the simulator, the phone behind it."""

    def __init__(self, camera: PhoneCamera, phone: SimulatedPhone | None) -> None:
        self.camera = camera
        self.phone = phone


@pytest.fixture(
    params=["sim", "sim-auth", pytest.param("real", marks=pytest.mark.hardware)],
)
def target(request: pytest.FixtureRequest, fast_timeouts: PhoneTimeouts, tmp_path: Path) -> Iterator[Target]:
    if request.param == "real":
        address = require_option(request.config, "--phone-serial")
        camera = PhoneCamera(address, profile=os.environ.get("SCOPECTL_PHONE_PROFILE", "generic-android"))
        with camera:
            yield Target(camera, None)
        return
    pubkey = request.getfixturevalue("scopectl_pubkey")
    sim_factory = request.getfixturevalue("sim_factory")
    auth = request.param == "sim-auth"
    phone = sim_factory(
        require_auth=auth, authorized_keys=[pubkey] if auth else None, user_allows_after_s=None
    )
    prompts: list[str] = []
    camera = PhoneCamera(phone.address, profile="sim", timeouts=fast_timeouts, on_auth_prompt=prompts.append)
    with camera:
        yield Target(camera, phone)
    assert prompts == [], "an authorised key must not prompt"


def test_info_reports_the_phone(target: Target) -> None:
    info = target.camera.info()
    assert info.model
    assert info.android_version
    assert info.free_bytes > 0
    assert 0.0 <= info.battery_pct <= 100.0
    assert info.serial
    if target.phone is not None:
        assert info.model == target.phone.phone.model
        assert info.battery_pct == pytest.approx(target.phone.phone.battery_pct)
        assert info.free_bytes == target.phone.phone.free_bytes() // 1024 * 1024
        assert info.battery_mv == target.phone.phone.battery_mv


def test_shell_recovers_exit_codes(target: Target) -> None:
    cam = target.camera
    assert cam.shell("echo hello").output == "hello\n"
    assert cam.shell("false", check=False).rc == 1
    missing = cam.shell("scopectl-no-such-command", check=False)
    assert missing.rc == 127
    assert "not found" in missing.output
    with pytest.raises(DeviceError, match="exit code 127"):
        cam.shell("scopectl-no-such-command")


def _decode_raw(path: Path) -> np.ndarray:
    with rawpy.imread(io.BytesIO(path.read_bytes())) as raw:
        return np.array(raw.raw_image_visible, copy=True)


def test_capture_pulls_verified_dng_and_jpeg(target: Target, tmp_path: Path) -> None:
    dest = tmp_path / "captures"
    files = target.camera.capture(dest)
    assert files.dng is not None
    assert files.jpeg is not None
    assert files.dng.parent == dest
    assert files.jpeg.parent == dest
    assert files.dng.name.lower().endswith(".dng")
    assert files.dng.stem == files.jpeg.stem
    assert sorted(p.name for p in dest.iterdir()) == sorted([files.dng.name, files.jpeg.name])  # no leftovers
    assert hashlib.sha256(files.dng.read_bytes()).hexdigest() == files.dng_sha256
    assert hashlib.sha256(files.jpeg.read_bytes()).hexdigest() == files.jpeg_sha256
    assert files.shutter_to_file_s > 0
    assert set(files.latencies_s) >= {"keys_s", "first_file_s", "shutter_to_file_s", "pull_s"}
    assert "iso" in files.settings
    raw = _decode_raw(files.dng)
    assert raw.ndim == 2
    assert raw.size > 0
    if target.phone is not None:
        assert files.hash_verified_on_phone
        assert files.transfer_attempts == 2
        source = target.phone.phone.source
        np.testing.assert_array_equal(raw, source.frames[-1])  # type: ignore[attr-defined]
        assert files.settings["iso"] == 100
        assert files.settings["exposure_s"] == pytest.approx(1 / 125)
        assert files.settings["light_source"] == "cloudy"
        assert files.settings["white_balance"] == "manual"
        remote = target.phone.phone.read_file(files.dng_remote or "")
        assert remote == files.dng.read_bytes()
    assert files.dng_remote is not None
    assert files.jpeg_remote is not None
    target.camera.shell(f"rm -f {shlex.quote(files.dng_remote)} {shlex.quote(files.jpeg_remote)}")


def test_consecutive_captures_and_delete_after(target: Target, tmp_path: Path) -> None:
    dest = tmp_path / "captures"
    first = target.camera.capture(dest, delete_after=True)
    second = target.camera.capture(dest, delete_after=True)
    assert first.dng != second.dng
    assert first.dng_sha256 != second.dng_sha256
    assert len(list(dest.iterdir())) == 4
    for remote in (first.dng_remote, first.jpeg_remote, second.dng_remote, second.jpeg_remote):
        assert remote is not None
        listing = target.camera.shell(f"ls {shlex.quote(remote)}", check=False)
        assert listing.rc != 0, f"{remote} should have been deleted from the phone"


def test_capture_keeps_phone_files_by_default(target: Target, tmp_path: Path) -> None:
    files = target.camera.capture(tmp_path)
    assert files.jpeg_remote is not None
    assert files.jpeg_remote is not None
    assert files.dng_remote is not None
    assert target.camera.shell(f"ls {shlex.quote(files.jpeg_remote)}").rc == 0
    target.camera.shell(f"rm -f {shlex.quote(files.jpeg_remote)} {shlex.quote(files.dng_remote)}")
