"""Strict parsing of what a phone says, configuration validation, ADB keys and capture metadata."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from scopectl.config.base import load_model
from scopectl.errors import ConfigError, DeviceProtocolError
from scopectl.hardware.phone import PhoneConfig, PhoneProfile, resolve_profile
from scopectl.hardware.phone.keys import default_key_path, ensure_key, load_signers, official_key_path
from scopectl.hardware.phone.metadata import read_capture_settings
from scopectl.hardware.phone.parsing import (
    parse_am_start,
    parse_battery,
    parse_df_free_bytes,
    parse_exit_code,
    parse_keyguard_showing,
    parse_sha256sum,
    parse_wakefulness,
    safe_remote_name,
)

DEV = "10.0.0.2:5555"


# ------------------------------------------------------------------------------------------ names
@pytest.mark.parametrize(
    "name",
    [
        "../x.dng",
        "a/b.jpg",
        "/etc/passwd",
        "..",
        ".",
        "",
        "a\\b.dng",
        "IMG\n.jpg",
        "IMG\x1b[2J.jpg",
        "x" * 256,
        "IMG\u202e.gpj",
        b"\xff\xfe.dng",
    ],
)
def test_unsafe_names_are_rejected(name: str | bytes) -> None:
    with pytest.raises(DeviceProtocolError, match=f"phone {DEV}"):
        safe_remote_name(name, device=DEV)


@pytest.mark.parametrize(
    "name", ["IMG_20240101_120000.dng", ".pending-1-IMG.jpg", "Ünïcode photo 1.JPG", "a" * 255]
)
def test_ordinary_names_are_kept(name: str) -> None:
    assert safe_remote_name(name.encode(), device=DEV) == name


@given(st.binary(max_size=300))
def test_an_accepted_name_never_leaves_the_destination(raw: bytes) -> None:
    dest = Path("/data/captures")
    try:
        name = safe_remote_name(raw, device=DEV)
    except DeviceProtocolError:
        return
    target = Path(os.path.normpath(dest / name))
    assert target.parent == dest


# ------------------------------------------------------------------------------------------ shell output
def test_exit_code_recovery() -> None:
    assert parse_exit_code("out\n__M=0\n", marker="__M", device=DEV, command="x") == ("out\n", 0)
    assert parse_exit_code("__M=127\r\n", marker="__M", device=DEV, command="x") == ("", 127)
    # a spoofed marker in the middle of the output does not count: only the final line does
    assert parse_exit_code("__M=0\nerr\n__M=2\n", marker="__M", device=DEV, command="x") == (
        "__M=0\nerr\n",
        2,
    )
    for bad in ("out\n", "__M=0\ntrailing\n", "__M=999\n", "__M=-1\n"):
        with pytest.raises(DeviceProtocolError, match="exit status"):
            parse_exit_code(bad, marker="__M", device=DEV, command="x")


def test_battery() -> None:
    text = "Current Battery Service state:\n  AC powered: false\n  level: 45\n  scale: 50\n  voltage: 3900\n"
    assert parse_battery(text, device=DEV) == (90.0, 3900)
    assert parse_battery("  level: 80\n  scale: 100\n  voltage: 4\n", device=DEV) == (80.0, None)
    for bad in ("  level: high\n", "  scale: 100\n", "  level: 120\n  scale: 100\n", "garbage"):
        with pytest.raises(DeviceProtocolError, match="dumpsys battery"):
            parse_battery(bad, device=DEV)


def test_df() -> None:
    text = (
        "Filesystem     1K-blocks    Used Available Use% Mounted on\n"
        "/dev/fuse       54384500 9876543  44507957  19% /storage/emulated\n"
    )
    assert parse_df_free_bytes(text, device=DEV) == 44507957 * 1024
    for bad in (
        "",
        "Filesystem Size Used Free Blksize\n/sdcard 54G 9G 44G 4096\n",  # pre-toybox format: refused, not guessed
        text.replace("44507957", "44.5G"),
        text + text.splitlines()[1] + "\n",
    ):
        with pytest.raises(DeviceProtocolError, match="df -k"):
            parse_df_free_bytes(bad, device=DEV)


def test_sha256sum() -> None:
    digest = "a" * 64
    assert parse_sha256sum(f"{digest}  /sdcard/x.dng\n", path="/sdcard/x.dng", device=DEV) == digest
    for bad in (
        f"{digest}  /sdcard/y.dng\n",
        f"{digest[:-1]}  /sdcard/x.dng\n",
        "",
        f"{digest}  /sdcard/x.dng\n" * 2,
    ):
        with pytest.raises(DeviceProtocolError, match="sha256sum"):
            parse_sha256sum(bad, path="/sdcard/x.dng", device=DEV)


def test_screen_state() -> None:
    assert parse_wakefulness("  mWakefulness=Awake\n") is True
    assert parse_wakefulness("  mWakefulness=Asleep\n") is False
    assert parse_wakefulness("nothing here") is None
    assert parse_keyguard_showing("    mDreamingLockscreen=false isStatusBarKeyguard=true\n") is True
    assert parse_keyguard_showing("    mShowingLockscreen=false\n") is False
    assert parse_keyguard_showing("") is None


def test_am_start() -> None:
    parse_am_start("Starting: Intent { act=x }\nStatus: ok\nComplete\n", device=DEV, action="x")
    parse_am_start(
        "Warning: Activity not started, its current task has been brought to the front\n",
        device=DEV,
        action="x",
    )
    with pytest.raises(DeviceProtocolError, match="could not open the camera app"):
        parse_am_start("Error: Activity not started, unable to resolve Intent\n", device=DEV, action="x")
    with pytest.raises(DeviceProtocolError, match="status timeout"):
        parse_am_start("Status: timeout\n", device=DEV, action="x")


# ------------------------------------------------------------------------------------------ configuration
def test_config_validation(tmp_path: Path) -> None:
    cfg_file = tmp_path / "phone.yaml"
    cfg_file.write_text("address: 192.168.1.20:5555\nprofile: volume-shutter\ndelete_after: true\n")
    cfg = load_model(PhoneConfig, cfg_file)
    assert resolve_profile(cfg.profile).capture_keys == ("KEYCODE_VOLUME_DOWN",)
    assert PhoneConfig(address="0123456789ABCDEF").address == "0123456789ABCDEF"
    for bad in (
        "address: host:99999\n",
        "address: 'a b:5555'\n",
        "address: x:5555\nprofile: nokia-lumia\n",
        "address: x:5555\ntimeouts: {capture_s: -1}\n",
        "address: x:5555\nmax_file_byte: 3\n",
    ):
        cfg_file.write_text(bad)
        with pytest.raises(ConfigError, match=str(cfg_file)):
            load_model(PhoneConfig, cfg_file)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("capture_keys", ("KEYCODE_CAMERA; rm -rf /sdcard",)),
        ("capture_keys", ()),
        ("camera_action", "x; reboot"),
        ("camera_dir", "/sdcard/../data"),
        ("camera_dir", "relative/dir"),
        ("camera_dir", "/sdcard/$(id)"),
        ("dng_pattern", r".*\.dng"),
        ("jpeg_pattern", "(?P<stem>"),
    ],
)
def test_profile_rejects_injection_and_bad_patterns(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=field):
        PhoneProfile.model_validate({"name": "x", field: value})


def test_unknown_profile_name() -> None:
    with pytest.raises(ConfigError, match="built-in profiles are"):
        resolve_profile("nokia-lumia-1020")


# ------------------------------------------------------------------------------------------ keys
def test_key_is_created_owner_only_under_xdg(isolated_home: Path) -> None:
    path = default_key_path()
    assert path == isolated_home / ".config" / "scopectl" / "adbkey"
    ensure_key(path)
    assert path.stat().st_mode & 0o777 == 0o600
    assert path.parent.stat().st_mode & 0o777 == 0o700
    pub = Path(f"{path}.pub").read_text()
    assert pub.split()[0].startswith("QAAAA")  # Android key format: 64 words, little-endian
    before = path.read_bytes()
    ensure_key(path)
    assert path.read_bytes() == before, "an existing key is kept"
    assert [p.name for p in path.parent.iterdir() if p.name.startswith(".adbkey-")] == []


def test_loose_permissions_are_tightened_and_links_refused(isolated_home: Path) -> None:
    path = ensure_key(default_key_path())
    os.chmod(path, 0o644)
    ensure_key(path)
    assert path.stat().st_mode & 0o777 == 0o600
    link = path.parent / "link"
    link.symlink_to(path)
    with pytest.raises(ConfigError, match="regular file"):
        ensure_key(link)


def test_signers_offer_the_official_key_second(isolated_home: Path) -> None:
    from adb_shell.auth.keygen import keygen

    assert len(load_signers()) == 1
    official = official_key_path()
    official.parent.mkdir()
    keygen(str(official))
    signers = load_signers()
    assert len(signers) == 2
    assert signers[1].GetPublicKey() == Path(f"{official}.pub").read_text()
    assert len(load_signers(use_official=False)) == 1


def test_missing_public_half_is_regenerated(isolated_home: Path) -> None:
    path = ensure_key(default_key_path())
    pub = Path(f"{path}.pub")
    original = pub.read_text()
    pub.unlink()
    ensure_key(path)
    assert pub.read_text().split()[0] == original.split()[0]


def test_garbage_key_is_a_config_error(isolated_home: Path) -> None:
    path = default_key_path()
    path.parent.mkdir(parents=True)
    path.write_text("not a key")
    Path(f"{path}.pub").write_text("nor this")
    with pytest.raises(ConfigError, match="not a usable ADB key"):
        load_signers(path)


# ------------------------------------------------------------------------------------------ metadata
def test_settings_from_real_files(source: Any, tmp_path: Path) -> None:
    source.iso, source.exposure_s = 200, 1 / 60
    dng, jpeg, _ = source.render_capture()
    (tmp_path / "a.dng").write_bytes(dng)
    (tmp_path / "a.jpg").write_bytes(jpeg)
    settings = read_capture_settings(dng=tmp_path / "a.dng", jpeg=tmp_path / "a.jpg")
    assert settings["iso"] == 200
    assert settings["exposure_s"] == pytest.approx(1 / 60)
    assert settings["light_source"] == "cloudy"
    assert settings["as_shot_neutral"] == [1.0, 1.0, 1.0]
    assert settings["settings_source"]["iso"] == "dng"
    assert settings["settings_source"]["light_source"] == "jpeg"


def test_corrupt_files_are_input_errors(tmp_path: Path) -> None:
    from scopectl.errors import InputFileError

    (tmp_path / "bad.dng").write_bytes(b"II*\0garbage")
    (tmp_path / "bad.jpg").write_bytes(b"\xff\xd8\xff\xe0garbage")
    with pytest.raises(InputFileError, match="bad.dng"):
        read_capture_settings(dng=tmp_path / "bad.dng", jpeg=None)
    with pytest.raises(InputFileError, match="bad.jpg"):
        read_capture_settings(dng=None, jpeg=tmp_path / "bad.jpg")
