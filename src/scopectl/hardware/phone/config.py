"""Configuration of the phone camera: connection, timeouts and per-phone capture profiles.

A :class:`PhoneProfile` says how one phone model (or camera app) takes a photo: which intent opens the
still camera, which key sequence fires the shutter, where the files land and how they are named.  Built-in
profiles are in :data:`BUILTIN_PROFILES`; a rig file may give a full profile instead of a name.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

from pydantic import Field, field_validator

from scopectl.config.base import StrictModel
from scopectl.errors import ConfigError

__all__ = ["BUILTIN_PROFILES", "PhoneConfig", "PhoneProfile", "PhoneTimeouts", "resolve_profile"]

_KEY_RE = re.compile(r"KEYCODE_[A-Z0-9_]{1,40}|[0-9]{1,3}")
_ACTION_RE = re.compile(r"[A-Za-z][A-Za-z0-9_.]{0,199}")
_REMOTE_DIR_RE = re.compile(r"/[A-Za-z0-9_./-]{0,254}")
_USB_SERIAL_RE = re.compile(r"[A-Za-z0-9._-]{1,64}")
_HOST_RE = re.compile(r"[A-Za-z0-9.-]{1,253}|\[[0-9A-Fa-f:.]{2,45}\]")


class PhoneTimeouts(StrictModel):
    """Every wait of the phone driver, in seconds."""

    connect_s: float = Field(10.0, gt=0, le=600, description="TCP connect and ADB handshake")
    auth_s: float = Field(60.0, gt=0, le=3600, description="waiting for the user to tap 'Allow' on the phone")
    command_s: float = Field(15.0, gt=0, le=600, description="one shell command or file listing")
    transfer_s: float = Field(300.0, gt=0, le=3600, description="pulling one file")
    capture_s: float = Field(20.0, gt=0, le=600, description="from the shutter key to stable files")
    pair_grace_s: float = Field(5.0, ge=0, le=600, description="wait for an optional second file")
    poll_interval_s: float = Field(0.25, gt=0, le=10, description="between listings while waiting")
    stable_s: float = Field(0.5, ge=0, le=60, description="a new file's size must stay unchanged this long")
    launch_wait_s: float = Field(1.5, ge=0, le=60, description="after opening the camera app")
    wake_wait_s: float = Field(3.0, gt=0, le=60, description="for the screen to turn on / unlock")


class PhoneProfile(StrictModel):
    """How one phone (camera app) takes and stores a photo.

    Notes
    -----
    ``dng_pattern`` and ``jpeg_pattern`` are regular expressions matched against the whole file name
    (case-insensitive) with a named group ``stem``; a DNG and a JPEG with the same stem are one photo.
    """

    name: str = Field(min_length=1, max_length=64)
    description: str = ""
    camera_action: str = "android.media.action.STILL_IMAGE_CAMERA"
    capture_keys: tuple[str, ...] = Field(("KEYCODE_CAMERA",), min_length=1, max_length=8)
    key_interval_s: float = Field(0.0, ge=0, le=10, description="pause between the keys of the sequence")
    camera_dir: str = "/sdcard/DCIM/Camera"
    dng_pattern: str = r"(?P<stem>.+)\.dng"
    jpeg_pattern: str = r"(?P<stem>.+)\.jpe?g"
    require_dng: bool = True
    require_jpeg: bool = True
    has_sha256sum: bool | None = Field(
        None,
        description="verify each file against the phone's sha256sum: true = required, false = never, "
        "null = when the shell has it (toybox, Android >= 6)",
    )
    stable_polls: int = Field(2, ge=2, le=20, description="listings with an unchanged size before accepting")
    relaunch_each_capture: bool = False

    @field_validator("capture_keys")
    @classmethod
    def _keys(cls, keys: tuple[str, ...]) -> tuple[str, ...]:
        for key in keys:
            if not _KEY_RE.fullmatch(key):
                raise ValueError(f"{key!r} is not an Android key code (KEYCODE_NAME or a number)")
        return keys

    @field_validator("camera_action")
    @classmethod
    def _action(cls, action: str) -> str:
        if not _ACTION_RE.fullmatch(action):
            raise ValueError(f"{action!r} is not an intent action name")
        return action

    @field_validator("camera_dir")
    @classmethod
    def _camera_dir(cls, path: str) -> str:
        if not _REMOTE_DIR_RE.fullmatch(path) or "/../" in path + "/" or "//" in path:
            raise ValueError(
                f"{path!r} must be an absolute phone path of letters, digits, '_', '.', '-', '/'"
            )
        return path.rstrip("/") or "/"

    @field_validator("dng_pattern", "jpeg_pattern")
    @classmethod
    def _pattern(cls, pattern: str) -> str:
        try:
            compiled = re.compile(pattern, re.IGNORECASE)
        except re.error as exc:
            raise ValueError(f"not a regular expression: {exc}") from None
        if "stem" not in compiled.groupindex:
            raise ValueError("the pattern needs a named group (?P<stem>...)")
        return pattern


BUILTIN_PROFILES: dict[str, PhoneProfile] = {
    p.name: p
    for p in (
        PhoneProfile(
            name="generic-android",
            description="Stock Android camera set to save RAW (DNG) + JPEG; shutter on KEYCODE_CAMERA.",
        ),
        PhoneProfile(
            name="generic-android-jpeg",
            description="Stock Android camera saving JPEG only (a DNG is kept when one appears).",
            require_dng=False,
        ),
        PhoneProfile(
            name="volume-shutter",
            description="Camera apps that fire on a volume key (e.g. many OEM apps and Open Camera).",
            capture_keys=("KEYCODE_VOLUME_DOWN",),
        ),
        PhoneProfile(
            name="focus-then-shutter",
            description="Half-press focus (KEYCODE_FOCUS), then the camera key.",
            capture_keys=("KEYCODE_FOCUS", "KEYCODE_CAMERA"),
            key_interval_s=0.8,
        ),
        PhoneProfile(
            name="sim",
            description="scopectl's simulated phone.",
            has_sha256sum=True,
        ),
    )
}


def resolve_profile(profile: str | PhoneProfile) -> PhoneProfile:
    """A profile object from a built-in name or the object itself.

    Raises
    ------
    ConfigError
        For an unknown profile name.
    """
    if isinstance(profile, PhoneProfile):
        return profile
    try:
        return BUILTIN_PROFILES[profile]
    except KeyError:
        known = ", ".join(sorted(BUILTIN_PROFILES))
        raise ConfigError(f"unknown phone profile {profile!r}; built-in profiles are: {known}.") from None


class PhoneConfig(StrictModel):
    """The phone section of a rig file.

    ``address`` is ``host:port`` for ADB over TCP (after ``adb tcpip 5555``) or a USB serial number.
    """

    address: str = Field(min_length=1, max_length=300)
    profile: Annotated[str, Field(min_length=1)] | PhoneProfile = "generic-android"
    key_path: Path | None = None
    camera_dir: str | None = Field(None, description="overrides the profile's camera folder")
    timeouts: PhoneTimeouts = Field(default_factory=PhoneTimeouts)
    max_file_bytes: int = Field(512 * 1024**2, gt=0, le=64 * 1024**3)
    min_free_bytes: int = Field(256 * 1024**2, ge=0, le=1024**4)
    transfer_retries: int = Field(2, ge=0, le=10)
    delete_after: bool = False

    @field_validator("address")
    @classmethod
    def _address(cls, address: str) -> str:
        parse_address(address)
        return address

    @field_validator("camera_dir")
    @classmethod
    def _camera_dir(cls, path: str | None) -> str | None:
        return None if path is None else PhoneProfile._camera_dir(path)

    @field_validator("profile")
    @classmethod
    def _profile(cls, profile: str | PhoneProfile) -> str | PhoneProfile:
        if isinstance(profile, str) and profile not in BUILTIN_PROFILES:
            raise ValueError(f"unknown profile {profile!r}; built-in: {', '.join(sorted(BUILTIN_PROFILES))}")
        return profile


def parse_address(address: str) -> tuple[str, int] | str:
    """``(host, port)`` for a TCP address, or the USB serial.

    Raises
    ------
    ValueError
        When the address is neither.
    """
    if ":" in address:
        host, _, port_text = address.rpartition(":")
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise ValueError(
                f"{address!r}: the port must be a number from 1 to 65535 (e.g. 192.168.1.20:5555)"
            )
        if not _HOST_RE.fullmatch(host):
            raise ValueError(f"{address!r}: {host!r} is not a host name or IP address")
        return host.strip("[]"), int(port_text)
    if not _USB_SERIAL_RE.fullmatch(address):
        raise ValueError(f"{address!r} is neither host:port nor a USB serial number")
    return address
