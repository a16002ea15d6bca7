"""The phone camera driver: connect over ADB, take a photo, and fetch its DNG and JPEG safely.

A capture (:meth:`PhoneCamera.capture`):

1. checks the screen is on and unlocked (waking it, dismissing a swipe lock) and that storage has room;
2. opens the still-camera app (first capture after connecting);
3. lists the camera folder, presses the profile's key sequence, then polls the folder: new names only,
   temporary dot-files ignored, a file accepted once its size is unchanged for ``stable_polls`` listings
   spanning at least ``timeouts.stable_s``;
   DNG and JPEG paired by stem;
4. pulls each file into a temporary file in the destination, checks its size against the listing and its
   SHA-256 against ``sha256sum`` run on the phone, then links it into place (never overwriting);
   a dropped connection or a mismatch is retried after reconnecting;
5. optionally deletes the files from the phone, and reads the settings from the DNG/EXIF tags.

Everything the phone reports -- names, sizes, shell output -- is validated (see
:mod:`scopectl.hardware.phone.parsing`).  Not thread-safe: one capture at a time per camera.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import shlex
import stat
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from scopectl.errors import ConfigError, DeviceError, DeviceProtocolError, DeviceTimeoutError, InputFileError
from scopectl.hardware.phone.config import PhoneConfig, PhoneProfile, PhoneTimeouts, resolve_profile
from scopectl.hardware.phone.keys import load_signers
from scopectl.hardware.phone.link import AdbLink, RemoteEntry, ShellResult
from scopectl.hardware.phone.metadata import read_capture_settings
from scopectl.hardware.phone.parsing import (
    parse_am_start,
    parse_battery,
    parse_df_free_bytes,
    parse_keyguard_showing,
    parse_sha256sum,
    parse_wakefulness,
    safe_remote_name,
)

__all__ = ["CaptureFiles", "PhoneCamera", "PhoneInfo"]

_LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class PhoneInfo:
    """What the phone says about itself."""

    model: str
    android_version: str
    free_bytes: int
    battery_pct: float
    serial: str
    manufacturer: str = ""
    battery_mv: int | None = None


@dataclass(frozen=True)
class CaptureFiles:
    """The files of one capture, verified and stored locally.

    Attributes
    ----------
    dng, jpeg
        Local paths (``None`` when the profile allows a missing kind and it did not appear).
    dng_sha256, jpeg_sha256
        Hex SHA-256 of the local files (equal to the phone's when its shell offers ``sha256sum``).
    dng_remote, jpeg_remote
        Full paths on the phone.
    shutter_to_file_s
        From the shutter key to the moment all files were seen complete (resolution: the poll interval).
    settings
        ISO, exposure, white balance ... from the DNG/EXIF tags (see :func:`read_capture_settings`).
    latencies_s
        ``keys_s`` (sending the key sequence), ``first_file_s`` (key to first new file seen),
        ``shutter_to_file_s``, ``pull_s``, ``delete_s``.
    timestamp
        Unix time of the shutter key.
    hash_verified_on_phone
        True when the phone computed the same SHA-256.
    transfer_attempts
        Pull attempts summed over the files (1 per file when nothing went wrong).
    """

    dng: Path | None
    jpeg: Path | None
    dng_sha256: str | None
    jpeg_sha256: str | None
    dng_remote: str | None
    jpeg_remote: str | None
    shutter_to_file_s: float
    settings: dict[str, Any]
    latencies_s: dict[str, float] = field(default_factory=dict)
    timestamp: float = 0.0
    hash_verified_on_phone: bool = False
    transfer_attempts: int = 0


@dataclass
class _SizeHistory:
    """A file's size across listings: current size, how many listings saw it, since when."""

    size: int = -1
    count: int = 0
    since: float = 0.0

    def observe(self, size: int, now: float) -> None:
        if size == self.size:
            self.count += 1
        else:
            self.size, self.count, self.since = size, 1, now

    def stable(self, now: float, *, polls: int, min_s: float) -> bool:
        return self.size > 0 and self.count >= polls and now - self.since >= min_s


@dataclass(frozen=True)
class _Pulled:
    path: Path
    sha256: str
    attempts: int
    verified_on_phone: bool
    created: bool


@dataclass
class _PulledPhoto:
    """The local files of one photo, their SHA-256, and how the transfer went."""

    local: dict[str, Path] = field(default_factory=dict)
    digests: dict[str, str] = field(default_factory=dict)
    attempts: int = 0
    verified: bool = True
    pull_s: float = 0.0
    settings: dict[str, Any] = field(default_factory=dict)


class _Retry(Exception):
    """A transfer failed in a way another attempt may fix."""


def _stderr_prompt(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class PhoneCamera:
    """A phone used as the microscope's camera, driven over ADB.

    Parameters
    ----------
    address
        ``host:port`` (ADB over TCP) or a USB serial number.
    key_path
        scopectl's ADB key (created if missing); default ``$XDG_CONFIG_HOME/scopectl/adbkey``.
    profile
        A :class:`PhoneProfile` or a built-in profile name.
    timeouts
        Every wait of the driver.
    max_file_bytes
        Refuse files the phone lists (or sends) larger than this.
    min_free_bytes
        Refuse to shoot when the phone has less free storage than this.
    transfer_retries
        Extra attempts per file after a dropped connection or a size/hash mismatch.
    delete_after
        Default of :meth:`capture`'s ``delete_after``.
    on_auth_prompt
        Called with a one-line instruction when the phone must authorise the key (default: stderr).
    use_official_key
        Also offer the official client's ``~/.android/adbkey``.
    camera_dir
        Overrides the profile's camera folder.
    """

    def __init__(
        self,
        address: str,
        *,
        key_path: Path | None = None,
        profile: PhoneProfile | str = "generic-android",
        timeouts: PhoneTimeouts | None = None,
        max_file_bytes: int = 512 * 1024**2,
        min_free_bytes: int = 256 * 1024**2,
        transfer_retries: int = 2,
        delete_after: bool = False,
        on_auth_prompt: Callable[[str], None] | None = None,
        use_official_key: bool = True,
        camera_dir: str | None = None,
    ) -> None:
        self.profile = resolve_profile(profile)
        if camera_dir is not None:
            self.profile = PhoneProfile.model_validate(
                {**self.profile.model_dump(), "camera_dir": camera_dir}
            )
        self.timeouts = timeouts if timeouts is not None else PhoneTimeouts()
        if max_file_bytes <= 0 or min_free_bytes < 0 or transfer_retries < 0:
            raise ConfigError(
                f"phone {address}: max_file_bytes must be > 0 and min_free_bytes, transfer_retries >= 0."
            )
        self.max_file_bytes = max_file_bytes
        self.min_free_bytes = min_free_bytes
        self.transfer_retries = transfer_retries
        self.delete_after = delete_after
        self._key_path = key_path
        self._use_official_key = use_official_key
        self._link = AdbLink(
            address,
            signers=self._signers,
            timeouts=self.timeouts,
            on_auth_prompt=on_auth_prompt or _stderr_prompt,
        )
        self._dng_re = re.compile(self.profile.dng_pattern, re.IGNORECASE)
        self._jpeg_re = re.compile(self.profile.jpeg_pattern, re.IGNORECASE)
        self._camera_open_on: int | None = None
        self._phone_lacks_sha256 = False

    @classmethod
    def from_config(cls, cfg: PhoneConfig, **kwargs: Any) -> PhoneCamera:
        """Build from a validated :class:`PhoneConfig` (keyword arguments override)."""
        args: dict[str, Any] = {
            "key_path": cfg.key_path,
            "camera_dir": cfg.camera_dir,
            "profile": cfg.profile,
            "timeouts": cfg.timeouts,
            "max_file_bytes": cfg.max_file_bytes,
            "min_free_bytes": cfg.min_free_bytes,
            "transfer_retries": cfg.transfer_retries,
            "delete_after": cfg.delete_after,
        }
        args.update(kwargs)
        return cls(cfg.address, **args)

    def _signers(self) -> list[Any]:
        return load_signers(self._key_path, use_official=self._use_official_key)

    # ------------------------------------------------------------------ connection
    @property
    def address(self) -> str:
        """The phone's address."""
        return self._link.address

    @property
    def reconnects(self) -> int:
        """How many times the connection was re-established after a failure."""
        return self._link.reconnects

    def connect(self) -> None:
        """Connect (waiting for the user's 'Allow' on first use); idempotent."""
        self._link.ensure_connected()

    def close(self) -> None:
        """Close the connection."""
        self._link.close()

    def __enter__(self) -> Self:
        self.connect()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def shell(self, command: str, *, check: bool = True, timeout_s: float | None = None) -> ShellResult:
        """Run a shell command on the phone; with ``check``, a non-zero exit code raises DeviceError."""
        result = self._link.shell(command, timeout_s=timeout_s)
        if check and result.rc != 0:
            last = result.output.strip().splitlines()[-1][:160] if result.output.strip() else ""
            raise DeviceError(
                f"phone {self.address}: {command[:60]!r} failed with exit code {result.rc} ({last}); "
                "this phone's shell may lack the command -- choose a matching phone profile."
            )
        return result

    # ------------------------------------------------------------------ status
    def _getprop(self, name: str) -> str:
        value = self.shell(f"getprop {name}").output.strip()
        return "".join(ch for ch in value if ch.isprintable())[:120]

    def free_bytes(self) -> int:
        """Free bytes on the storage holding the camera folder."""
        out = self.shell(f"df -k {shlex.quote(self.profile.camera_dir)}").output
        return parse_df_free_bytes(out, device=self.address)

    def info(self) -> PhoneInfo:
        """Model, Android version, free storage, battery level and serial number."""
        battery_pct, battery_mv = parse_battery(self.shell("dumpsys battery").output, device=self.address)
        serial = self._getprop("ro.serialno") or self.address
        return PhoneInfo(
            model=self._getprop("ro.product.model"),
            android_version=self._getprop("ro.build.version.release"),
            free_bytes=self.free_bytes(),
            battery_pct=battery_pct,
            serial=serial,
            manufacturer=self._getprop("ro.product.manufacturer"),
            battery_mv=battery_mv,
        )

    def ensure_screen_ready(self) -> None:
        """Wake the screen and make sure it is unlocked (a swipe lock is dismissed).

        Raises
        ------
        DeviceError
            When the screen stays off or a PIN/pattern lock is showing.
        """
        deadline = time.monotonic() + self.timeouts.wake_wait_s
        woke = dismissed = False
        while True:
            awake = parse_wakefulness(self.shell("dumpsys power").output)
            locked = parse_keyguard_showing(self.shell("dumpsys window policy").output)
            if awake is not False and locked is not True:
                if awake is None or locked is None:
                    _LOG.info("phone %s: screen state not reported; assuming on and unlocked", self.address)
                return
            if time.monotonic() > deadline:
                what = "the screen stays off" if awake is False else "the lock screen is showing"
                raise DeviceError(
                    f"phone {self.address}: {what}; unlock it, set the screen lock to None or Swipe, and enable "
                    "Developer options > Stay awake."
                )
            if awake is False and not woke:
                self.shell("input keyevent KEYCODE_WAKEUP")
                woke = True
            elif locked is True and not dismissed:
                self.shell("wm dismiss-keyguard", check=False)
                dismissed = True
            time.sleep(min(0.2, self.timeouts.poll_interval_s))

    def open_camera_app(self) -> None:
        """Open the still-camera app (``am start -W -a ACTION``) and wait ``launch_wait_s``."""
        action = self.profile.camera_action
        out = self.shell(f"am start -W -a {action}").output
        parse_am_start(out, device=self.address, action=action)
        if self.timeouts.launch_wait_s:
            time.sleep(self.timeouts.launch_wait_s)
        self._camera_open_on = self._link.reconnects

    # ------------------------------------------------------------------ capture
    def _listing(
        self, *, tolerated: frozenset[bytes] | None, timeout_s: float | None = None
    ) -> tuple[dict[str, RemoteEntry], frozenset[bytes]]:
        """Entries of the camera folder with validated names, and the raw names that failed validation.

        With ``tolerated=None`` (the listing before the shot) unsafe names are logged and skipped, so one
        odd old file does not block every capture; afterwards an unsafe name not in ``tolerated`` is a new
        file and raises DeviceProtocolError.
        """
        entries: dict[str, RemoteEntry] = {}
        unsafe: set[bytes] = set()
        for entry in self._link.listdir(self.profile.camera_dir, timeout_s=timeout_s):
            try:
                name = safe_remote_name(entry.name, device=self.address)
            except DeviceProtocolError as exc:
                if tolerated is not None and entry.name not in tolerated:
                    raise
                if tolerated is None:
                    _LOG.warning("%s (ignored: it was there before the shot)", exc.message)
                unsafe.add(entry.name)
                continue
            entries[name] = entry
        return entries, frozenset(unsafe)

    def _kind(self, name: str) -> tuple[str, str] | None:
        for kind, regex in (("dng", self._dng_re), ("jpeg", self._jpeg_re)):
            m = regex.fullmatch(name)
            if m is not None:
                return kind, m.group("stem")
        return None

    def _wait_for_photo(
        self, before: dict[str, RemoteEntry], tolerated: frozenset[bytes], key_time: float
    ) -> tuple[dict[str, str], dict[str, int], float, float]:
        """Poll until one new photo's files are complete; returns names, sizes and timings."""
        t = self.timeouts
        profile = self.profile
        required = {k for k, need in (("dng", profile.require_dng), ("jpeg", profile.require_jpeg)) if need}
        deadline = key_time + t.capture_s
        history: dict[str, _SizeHistory] = {}
        first_seen: float | None = None
        complete_since: dict[str, float] = {}
        while True:
            now = time.time()
            listing = self._poll_listing(tolerated, deadline=deadline, now=now)
            if listing is None:
                continue  # reconnected: list again
            groups, stale_stems = self._new_files(listing, before, history, now=now)
            if groups and first_seen is None:
                first_seen = now
            ready = self._ready_photos(
                groups, stale_stems, history, complete_since, now=now, deadline=deadline, required=required
            )
            if len(ready) > 1:
                raise DeviceProtocolError(
                    f"phone {self.address}: {len(ready)} new photos appeared ({', '.join(sorted(ready))}) for one "
                    "shutter press; the key sequence may trigger a burst -- check the phone profile."
                )
            if ready:
                files = next(iter(ready.values()))
                final_sizes = {kind: history[name].size for kind, name in files.items()}
                assert first_seen is not None
                return files, final_sizes, first_seen - key_time, now - key_time
            if now >= deadline:
                raise self._no_photo_error(groups, stale_stems, required)
            time.sleep(min(t.poll_interval_s, max(0.0, deadline - time.time()) + 0.001))

    def _poll_listing(
        self, tolerated: frozenset[bytes], *, deadline: float, now: float
    ) -> dict[str, RemoteEntry] | None:
        """One listing of the camera folder, or None after a dropped connection (re-established while the
        capture's time is left)."""
        t = self.timeouts
        # each listing ends by the capture's deadline (at least one poll interval), so a phone that
        # trickles its listing cannot stretch the wait beyond what the error message says
        budget = min(t.command_s, max(deadline - now, t.poll_interval_s))
        try:
            listing, _ = self._listing(tolerated=tolerated, timeout_s=budget)
        except DeviceError as exc:
            # the photo may well be on its way: a dropped connection is re-established while time is left
            if isinstance(exc, DeviceTimeoutError) and time.time() >= deadline:
                raise DeviceTimeoutError(
                    f"phone {self.address}: no complete photo listed within {t.capture_s:g} s of the shutter "
                    f"key: listing {self.profile.camera_dir} did not finish in time ({exc.message}).",
                    hint="The phone answers too slowly: check it, or raise timeouts.capture_s.",
                ) from None
            if isinstance(exc, DeviceProtocolError) or not self._link.broken or time.time() >= deadline:
                raise
            _LOG.warning("phone %s: %s; reconnecting while waiting for the photo", self.address, exc.message)
            time.sleep(t.poll_interval_s)
            return None
        return listing

    def _new_files(
        self,
        listing: dict[str, RemoteEntry],
        before: dict[str, RemoteEntry],
        history: dict[str, _SizeHistory],
        *,
        now: float,
    ) -> tuple[dict[str, dict[str, str]], set[str]]:
        """The photo files listed since the shutter key, grouped by stem ({stem: {kind: name}}), with their
        sizes recorded in ``history``; and the stems of photos that were there before."""
        groups: dict[str, dict[str, str]] = {}
        stale_stems: set[str] = set()
        for name, entry in listing.items():
            kind_stem = self._kind(name)
            if kind_stem is None:
                continue
            kind, stem = kind_stem
            if name in before:
                stale_stems.add(stem)
                continue
            if name.startswith("."):
                continue  # a temporary file still being written
            if not stat.S_ISREG(entry.mode):
                continue
            if entry.size > self.max_file_bytes:
                raise DeviceProtocolError(
                    f"phone {self.address}: {name} is {entry.size} bytes, above max_file_bytes "
                    f"{self.max_file_bytes}; raise the cap if that is a real photo."
                )
            history.setdefault(name, _SizeHistory()).observe(entry.size, now)
            groups.setdefault(stem, {})[kind] = name
        return groups, stale_stems

    def _ready_photos(
        self,
        groups: dict[str, dict[str, str]],
        stale_stems: set[str],
        history: dict[str, _SizeHistory],
        complete_since: dict[str, float],
        *,
        now: float,
        deadline: float,
        required: set[str],
    ) -> dict[str, dict[str, str]]:
        """The new photos whose required files have a stable size (an optional partner file is waited for
        ``pair_grace_s``)."""
        t = self.timeouts
        ready: dict[str, dict[str, str]] = {}
        for stem, files in groups.items():
            if stem in stale_stems:
                continue  # belongs to an earlier photo whose other file arrived late
            stable = all(
                history[n].stable(now, polls=self.profile.stable_polls, min_s=t.stable_s)
                for n in files.values()
            )
            if stable and required <= files.keys() and files:
                complete_since.setdefault(stem, now)
                optional_missing = {"dng", "jpeg"} - files.keys()
                waited = now - complete_since[stem]
                if not optional_missing or waited >= t.pair_grace_s or now >= deadline:
                    ready[stem] = files
            else:
                complete_since.pop(stem, None)
        return ready

    def _no_photo_error(
        self, groups: dict[str, dict[str, str]], stale_stems: set[str], required: set[str]
    ) -> DeviceTimeoutError:
        """Why no complete photo appeared by the deadline, and what to do."""
        profile = self.profile
        fresh = {stem: files for stem, files in groups.items() if stem not in stale_stems}
        incomplete = [(stem, files) for stem, files in fresh.items() if not required <= files.keys()]
        if fresh and not incomplete:
            growing = ", ".join(sorted(n for files in fresh.values() for n in files.values()))
            detail = f"{growing} did not reach a stable size"
            hint = "the phone writes slowly: raise timeouts.capture_s."
        elif incomplete:
            files = incomplete[0][1]
            missing = " + ".join(sorted(required - files.keys())).upper()
            detail = f"only {', '.join(sorted(files.values()))} appeared (no {missing})"
            hint = "enable RAW+JPEG in the camera app, or choose a profile that does not require both."
        else:
            detail = f"no new photo appeared in {profile.camera_dir}"
            hint = (
                "check that the camera app is open in photo mode and reacts to "
                f"{' '.join(profile.capture_keys)}, that the screen is on and that storage is not full"
                f"{self._free_space_note()}."
            )
        return DeviceTimeoutError(
            f"phone {self.address}: {detail} within {self.timeouts.capture_s:g} s of the shutter key; {hint}"
        )

    def _free_space_note(self) -> str:
        """`` (N MB free)`` for error messages; empty when the phone cannot say."""
        try:
            return f" ({self.free_bytes() / 1e6:.1f} MB free)"
        except DeviceError:
            return ""

    def _press_keys(self) -> None:
        keys = self.profile.capture_keys
        if self.profile.key_interval_s == 0:
            self.shell("input keyevent " + " ".join(keys))
            return
        for i, key in enumerate(keys):
            if i:
                time.sleep(self.profile.key_interval_s)
            self.shell(f"input keyevent {key}")

    def capture(self, dest_dir: Path, *, delete_after: bool | None = None) -> CaptureFiles:
        """Take one photo and store its files in ``dest_dir`` (created if missing).

        Parameters
        ----------
        dest_dir
            Local folder; files keep the phone's (validated) names and are never overwritten.
        delete_after
            Delete the files from the phone once both are verified (default: the camera's setting).

        Raises
        ------
        DeviceTimeoutError
            When no complete photo appears within ``timeouts.capture_s``.
        DeviceProtocolError
            On an unsafe file name, an oversized file or an ambiguous burst.
        DeviceError
            When the phone is locked, its storage is full or a transfer keeps failing.
        """
        dest = Path(dest_dir)
        delete = self.delete_after if delete_after is None else delete_after
        profile = self.profile
        self._ready_to_capture(dest)
        before, tolerated = self._listing(tolerated=None)
        key_time = time.time()
        t0 = time.perf_counter()
        self._press_keys()
        keys_s = time.perf_counter() - t0
        files, sizes, first_s, shutter_to_file_s = self._wait_for_photo(before, tolerated, key_time)
        pulled = self._pull_photo(files, sizes, dest)
        delete_s = 0.0
        if delete:
            t_del = time.perf_counter()
            targets = " ".join(shlex.quote(f"{profile.camera_dir}/{n}") for n in files.values())
            self.shell(f"rm -f {targets}")
            delete_s = time.perf_counter() - t_del
        remote_of = {k: f"{profile.camera_dir}/{n}" for k, n in files.items()}
        return CaptureFiles(
            dng=pulled.local.get("dng"),
            jpeg=pulled.local.get("jpeg"),
            dng_sha256=pulled.digests.get("dng"),
            jpeg_sha256=pulled.digests.get("jpeg"),
            dng_remote=remote_of.get("dng"),
            jpeg_remote=remote_of.get("jpeg"),
            shutter_to_file_s=shutter_to_file_s,
            settings=pulled.settings,
            latencies_s={
                "keys_s": keys_s,
                "first_file_s": first_s,
                "shutter_to_file_s": shutter_to_file_s,
                "pull_s": pulled.pull_s,
                "delete_s": delete_s,
            },
            timestamp=key_time,
            hash_verified_on_phone=pulled.verified and bool(pulled.local),
            transfer_attempts=pulled.attempts,
        )

    def _ready_to_capture(self, dest: Path) -> None:
        """Create ``dest``, connect, wake and unlock the screen, check free space, open the camera app."""
        try:
            dest.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InputFileError(f"{dest}: cannot create the destination folder ({exc.strerror}).") from None
        self._link.ensure_connected()
        self.ensure_screen_ready()
        free = self.free_bytes()
        if free < self.min_free_bytes:
            raise DeviceError(
                f"phone {self.address}: only {free / 1e6:.1f} MB free on {self.profile.camera_dir} (need at least "
                f"{self.min_free_bytes / 1e6:.0f} MB); delete old photos or capture with delete_after."
            )
        if self.profile.relaunch_each_capture or self._camera_open_on != self._link.reconnects:
            self.open_camera_app()

    def _pull_photo(self, files: dict[str, str], sizes: dict[str, int], dest: Path) -> _PulledPhoto:
        """Pull and verify every file of one photo into ``dest``, and read its capture settings; all or
        nothing (the files stay on the phone, nothing half-done stays here)."""
        out = _PulledPhoto()
        created: list[Path] = []
        t_pull = time.perf_counter()
        try:
            for kind in ("dng", "jpeg"):
                if kind not in files:
                    continue
                remote = f"{self.profile.camera_dir}/{files[kind]}"
                pulled = self._pull_verified(remote, files[kind], sizes[kind], dest)
                out.local[kind], out.digests[kind] = pulled.path, pulled.sha256
                if pulled.created:
                    created.append(pulled.path)
                out.attempts += pulled.attempts
                out.verified = out.verified and pulled.verified_on_phone
            out.pull_s = time.perf_counter() - t_pull
            out.settings = read_capture_settings(dng=out.local.get("dng"), jpeg=out.local.get("jpeg"))
        except BaseException:
            for path in created:
                with contextlib.suppress(OSError):
                    path.unlink()
            raise
        return out

    # ------------------------------------------------------------------ transfer
    def _remote_sha256(self, remote: str) -> str | None:
        """The phone's SHA-256 of ``remote``; None when its shell has no ``sha256sum`` (and the profile
        does not demand one) or the profile disables the check."""
        wanted = self.profile.has_sha256sum
        if wanted is False or self._phone_lacks_sha256:
            return None
        result = self.shell(
            f"sha256sum {shlex.quote(remote)}", check=False, timeout_s=self.timeouts.transfer_s
        )
        if result.rc == 127 and wanted is None:
            _LOG.warning("phone %s: no sha256sum in its shell; verifying sizes only", self.address)
            self._phone_lacks_sha256 = True
            return None
        if result.rc != 0:
            raise DeviceError(
                f"phone {self.address}: sha256sum {remote} failed with exit code {result.rc} "
                f"({result.output.strip()[-160:]!r}); set has_sha256sum: false in the phone profile to skip it."
            )
        return parse_sha256sum(result.output, path=remote, device=self.address)

    def _pull_verified(self, remote: str, name: str, size: int, dest: Path) -> _Pulled:
        """Pull ``remote`` into ``dest/name`` with size and hash checks."""
        name = safe_remote_name(name, device=self.address)
        final = dest / name
        if final.resolve().parent != dest.resolve():
            raise DeviceProtocolError(f"phone {self.address}: {name!r} would leave {dest}; refusing it.")
        last_reason = ""
        for attempt in range(1, self.transfer_retries + 2):
            temp = dest / f".{name}.{uuid.uuid4().hex[:12]}.part"
            try:
                if attempt > 1:
                    size = self._current_size(remote)
                digest = self._pull_once(remote, size, temp)
                phone_digest = self._remote_sha256(remote)
                on_phone = phone_digest is not None
                if phone_digest is not None:
                    if phone_digest != digest:
                        raise _Retry(f"SHA-256 differs (phone {phone_digest[:12]}…, local {digest[:12]}…)")
                    on_phone = True
                created = self._link_into_place(temp, final, digest)
                return _Pulled(final, digest, attempt, on_phone, created)
            except _Retry as exc:
                last_reason = str(exc)
            except DeviceError as exc:
                if isinstance(exc, DeviceProtocolError) or not self._link.broken:
                    raise
                last_reason = exc.message
            finally:
                with contextlib.suppress(OSError):
                    temp.unlink()
            _LOG.warning(
                "phone %s: pulling %s failed (%s); attempt %d", self.address, remote, last_reason, attempt
            )
        raise DeviceError(
            f"phone {self.address}: pulling {remote} failed after {self.transfer_retries + 1} attempts "
            f"({last_reason}); check the connection and retry the capture."
        )

    def _current_size(self, remote: str) -> int:
        """The file's size now (it may have grown since the listing); checks it still exists and fits."""
        mode, size, _ = self._link.stat(remote)
        if mode == 0 and size == 0:
            raise DeviceError(f"phone {self.address}: {remote} disappeared before it could be pulled.")
        if not stat.S_ISREG(mode):
            raise DeviceProtocolError(f"phone {self.address}: {remote} is no longer a regular file.")
        if size > self.max_file_bytes:
            raise DeviceProtocolError(
                f"phone {self.address}: {remote} is {size} bytes, above max_file_bytes {self.max_file_bytes}."
            )
        return size

    def _pull_once(self, remote: str, size: int, temp: Path) -> str:
        digest = hashlib.sha256()
        received = 0

        try:
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except OSError as exc:
            raise InputFileError(f"{temp}: cannot write into the destination ({exc.strerror}).") from None
        with os.fdopen(fd, "wb") as fh:

            def sink(chunk: bytes) -> None:
                nonlocal received
                received += len(chunk)
                if received > self.max_file_bytes:
                    raise DeviceProtocolError(
                        f"phone {self.address}: {remote} sent more than max_file_bytes ({self.max_file_bytes}) "
                        "bytes; refusing it."
                    )
                if received > size:
                    raise _Retry(f"{remote} grew beyond the {size} bytes listed during the transfer")
                digest.update(chunk)
                fh.write(chunk)

            self._link.pull(remote, sink)
            fh.flush()
            os.fsync(fh.fileno())
        if received != size:
            raise _Retry(f"received {received} of {size} bytes")
        return digest.hexdigest()

    def _link_into_place(self, temp: Path, final: Path, digest: str) -> bool:
        """Hard-link the verified temp file to its final name; never overwrite a different file.

        Returns False when an identical file was already there (a repeated capture into the same folder).
        """
        try:
            os.link(temp, final)
            return True
        except FileExistsError:
            existing = hashlib.sha256(final.read_bytes()).hexdigest()
            if existing != digest:
                raise InputFileError(
                    f"{final}: a different file with this name exists; refusing to overwrite it -- "
                    "capture into an empty folder."
                ) from None
            return False
        except OSError as exc:
            raise InputFileError(f"{final}: cannot store the pulled file ({exc.strerror}).") from None
