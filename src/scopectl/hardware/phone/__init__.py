"""The phone camera over ADB (adb-shell), and a simulated phone speaking the real ADB protocol.

::

    from scopectl.hardware.phone import PhoneCamera
    with PhoneCamera("192.168.1.20:5555", profile="generic-android") as cam:
        print(cam.info())
        files = cam.capture(Path("captures"), delete_after=True)

The simulator lives in :mod:`scopectl.hardware.phone.sim` (imported separately).  This package may import
adb-shell, :mod:`scopectl.errors` and :mod:`scopectl.config`; it never imports its ``sim`` package (an
import-linter contract checks it).
"""

from __future__ import annotations

from scopectl.hardware.phone.camera import CaptureFiles, PhoneCamera, PhoneInfo
from scopectl.hardware.phone.config import (
    BUILTIN_PROFILES,
    PhoneConfig,
    PhoneProfile,
    PhoneTimeouts,
    resolve_profile,
)
from scopectl.hardware.phone.keys import default_key_path, ensure_key, load_signers
from scopectl.hardware.phone.link import ShellResult

__all__ = [
    "BUILTIN_PROFILES",
    "CaptureFiles",
    "PhoneCamera",
    "PhoneConfig",
    "PhoneInfo",
    "PhoneProfile",
    "PhoneTimeouts",
    "ShellResult",
    "default_key_path",
    "ensure_key",
    "load_signers",
    "resolve_profile",
]
