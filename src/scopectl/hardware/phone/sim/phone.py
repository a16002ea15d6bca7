"""The simulated phone behind the simulated adbd: storage, properties, battery, screen and camera app.

The camera app behaves like a real one: when the capture key arrives while it is in the foreground (screen
on, unlocked), it renders a photo through its :class:`CaptureSource`, writes the JPEG under a temporary
dot-name and renames it, then writes the DNG a moment later in two growing steps -- so a driver must list
before, poll after, ignore dot-files and wait for a stable size.

Thread safety: every public method takes the phone's lock; the camera app runs in worker threads that
:meth:`SimPhoneState.stop` joins (with a timeout).
"""

from __future__ import annotations

import posixpath
import stat as stat_mod
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

__all__ = [
    "KEYCODES",
    "CaptureSource",
    "PhoneFaults",
    "SimFile",
    "SimPhoneState",
]

CAMERA_DIR = "/sdcard/DCIM/Camera"
STILL_IMAGE_CAMERA = "android.media.action.STILL_IMAGE_CAMERA"

# The Android key codes the simulated phone knows (android.view.KeyEvent).
KEYCODES: dict[str, int] = {
    "KEYCODE_HOME": 3,
    "KEYCODE_BACK": 4,
    "KEYCODE_VOLUME_UP": 24,
    "KEYCODE_VOLUME_DOWN": 25,
    "KEYCODE_POWER": 26,
    "KEYCODE_CAMERA": 27,
    "KEYCODE_ENTER": 66,
    "KEYCODE_FOCUS": 80,
    "KEYCODE_MENU": 82,
    "KEYCODE_SLEEP": 223,
    "KEYCODE_WAKEUP": 224,
}


@runtime_checkable
class CaptureSource(Protocol):
    """What the simulated camera photographs.

    ``render_capture()`` returns ``(dng_bytes, jpeg_bytes, settings)``: the two files the phone writes and
    the exposure settings it used (ISO, exposure, white balance ...), which the simulator records in
    :attr:`SimPhoneState.captures`.  The rig integration plugs in the digital twin (rendering the slide at
    the phone stage's position under the current LED-ring state).
    """

    def render_capture(self) -> tuple[bytes, bytes, dict[str, Any]]: ...


@dataclass
class PhoneFaults:
    """Faults to inject; change them at any time (the simulator reads them when it needs them).

    Attributes
    ----------
    drop_transfers
        Number of file transfers (sync ``RECV``) during which the connection is cut; each cut uses one.
    drop_after_bytes
        How many bytes of the file are sent before such a cut.
    latency_s
        Extra delay before every shell command and sync request (a slow phone).
    camera_delay_s
        Extra delay between the capture key and the first file (a slow camera app).
    free_bytes
        Free storage the phone reports and enforces; ``None`` = plenty.  The camera app writes nothing
        when a photo does not fit (a full phone).
    capture_produces_no_file
        The camera app swallows the capture key (wrong mode, a dialog on screen ...).
    hostile_name
        The camera app lists its next DNG under this name (e.g. ``"../../escape.dng"``) -- a buggy or
        malicious phone.
    raw_disabled
        The camera app saves JPEG only (RAW switched off in its settings).
    list_entry_delay_s
        A directory listing sends one entry at a time, this long apart (a phone that trickles its answer).
    extra_list_entries
        Directory listings carry this many extra (junk) entries (a flood).
    """

    drop_transfers: int = 0
    drop_after_bytes: int = 16 * 1024
    latency_s: float = 0.0
    camera_delay_s: float = 0.0
    free_bytes: int | None = None
    capture_produces_no_file: bool = False
    hostile_name: str | None = None
    raw_disabled: bool = False
    list_entry_delay_s: float = 0.0
    extra_list_entries: int = 0


@dataclass
class SimFile:
    """A file in the simulated storage."""

    data: bytearray
    mtime: int
    mode: int = stat_mod.S_IFREG | 0o660


@dataclass
class SimCapture:
    """What the camera app did for one capture key press (the simulator's ground truth)."""

    key_time: float
    names: list[str]
    settings: dict[str, Any]
    written: bool
    reason: str = ""


@dataclass
class _Timing:
    shutter_s: float = 0.03
    jpeg_rename_s: float = 0.03
    dng_gap_s: float = 0.05
    dng_growth_s: float = 0.03


@dataclass
class SimPhoneState:
    """Everything the simulated phone knows.  Create through :class:`SimulatedPhone`."""

    source: CaptureSource
    faults: PhoneFaults
    serial: str = "SIM0001"
    model: str = "scopectl simulated phone"
    manufacturer: str = "scopectl"
    android_version: str = "13"
    sdk: int = 33
    battery_pct: int = 87
    battery_mv: int = 4012
    capacity_bytes: int = 64 * 1024**3
    system_used_bytes: int = 12 * 1024**3
    awake: bool = True
    locked: bool = False
    secure_lock: bool = False
    capture_keycodes: frozenset[int] = frozenset({KEYCODES["KEYCODE_CAMERA"]})
    timing: _Timing = field(default_factory=_Timing)
    dirs: set[str] = field(default_factory=lambda: {"/", "/sdcard", "/sdcard/DCIM", CAMERA_DIR})
    files: dict[str, dict[str, SimFile]] = field(default_factory=dict)
    foreground: str = "com.android.launcher3"
    captures: list[SimCapture] = field(default_factory=list)
    _lock: threading.RLock = field(default_factory=threading.RLock)
    _threads: list[threading.Thread] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _counter: int = 0

    # ------------------------------------------------------------------ storage
    @staticmethod
    def normalize(path: str) -> str:
        """Resolve a device path like the kernel would (``..``, duplicate slashes, trailing slash)."""
        if not path.startswith("/"):
            path = "/sdcard/" + path
        path = posixpath.normpath(path)
        for alias in ("/storage/emulated/0", "/storage/self/primary", "/mnt/sdcard"):
            if path == alias or path.startswith(alias + "/"):
                path = "/sdcard" + path[len(alias) :]
        return "/" + path.lstrip("/")

    def used_bytes(self) -> int:
        """Bytes used on the shared storage."""
        with self._lock:
            return self.system_used_bytes + sum(len(f.data) for d in self.files.values() for f in d.values())

    def free_bytes(self) -> int:
        """Free bytes on the shared storage (the ``free_bytes`` fault overrides it)."""
        with self._lock:
            if self.faults.free_bytes is not None:
                return max(0, self.faults.free_bytes)
            return max(0, self.capacity_bytes - self.used_bytes())

    def lookup(self, path: str) -> SimFile | str | None:
        """A file, ``"dir"`` for a directory, or ``None`` when missing."""
        with self._lock:
            norm = self.normalize(path)
            if norm in self.dirs:
                return "dir"
            parent, name = posixpath.split(norm)
            return self.files.get(parent, {}).get(name)

    def listdir(self, path: str) -> list[tuple[str, int, int, int]] | None:
        """``(name, mode, size, mtime)`` of each entry (with ``.`` and ``..``), or ``None`` if not a dir."""
        with self._lock:
            norm = self.normalize(path)
            if norm not in self.dirs:
                return None
            now = int(time.time())
            dmode = stat_mod.S_IFDIR | 0o771
            out = [(".", dmode, 4096, now), ("..", dmode, 4096, now)]
            prefix = norm.rstrip("/") + "/"
            for d in sorted(self.dirs):
                if d != norm and d.startswith(prefix) and "/" not in d[len(prefix) :]:
                    out.append((d[len(prefix) :], dmode, 4096, now))
            for name, f in sorted(self.files.get(norm, {}).items()):
                out.append((name, f.mode, len(f.data), f.mtime))
            return out

    def read_file(self, path: str) -> bytes | None:
        """A snapshot of a file's bytes, or ``None``."""
        with self._lock:
            entry = self.lookup(path)
            return bytes(entry.data) if isinstance(entry, SimFile) else None

    def remove(self, path: str) -> bool:
        """Delete a file; False when it does not exist."""
        with self._lock:
            parent, name = posixpath.split(self.normalize(path))
            return self.files.get(parent, {}).pop(name, None) is not None

    def put_file(self, directory: str, name: str, data: bytes) -> None:
        """Create or replace a file (``name`` is taken as is: a hostile name may contain slashes)."""
        with self._lock:
            self.files.setdefault(self.normalize(directory), {})[name] = SimFile(
                bytearray(data), int(time.time())
            )

    # ------------------------------------------------------------------ apps and keys
    def start_activity(self, action: str) -> bool:
        """``am start -a ACTION``; True when an app handles the action."""
        with self._lock:
            if action != STILL_IMAGE_CAMERA:
                return False
            self.foreground = "com.android.camera"
            return True

    def key_event(self, code: int) -> None:
        """``input keyevent CODE``."""
        with self._lock:
            if code == KEYCODES["KEYCODE_WAKEUP"]:
                self.awake = True
            elif code == KEYCODES["KEYCODE_SLEEP"]:
                self.awake = False
            elif code == KEYCODES["KEYCODE_POWER"]:
                self.awake = not self.awake
                if not self.awake:
                    self.locked = True
            elif code == KEYCODES["KEYCODE_MENU"] and self.awake and not self.secure_lock:
                self.locked = False
            elif code in self.capture_keycodes:
                self._shutter()

    def dismiss_keyguard(self) -> None:
        """``wm dismiss-keyguard``: unlocks a swipe lock, not a PIN/pattern lock."""
        with self._lock:
            if self.awake and not self.secure_lock:
                self.locked = False

    def _shutter(self) -> None:
        key_time = time.time()
        if self.foreground != "com.android.camera" or not self.awake or self.locked:
            self.captures.append(SimCapture(key_time, [], {}, False, "camera app not in front"))
            return
        if self.faults.capture_produces_no_file:
            self.captures.append(SimCapture(key_time, [], {}, False, "capture swallowed (fault)"))
            return
        self._counter += 1
        stamp = time.strftime("%Y%m%d_%H%M%S", time.gmtime(key_time))
        stem = f"IMG_{stamp}_{self._counter:04d}"
        thread = threading.Thread(
            target=self._write_photo, args=(stem, key_time), name=f"sim-camera-{stem}", daemon=True
        )
        self._threads = [t for t in self._threads if t.is_alive()]
        self._threads.append(thread)
        thread.start()

    def _write_photo(self, stem: str, key_time: float) -> None:
        t = self.timing
        if self._stop.wait(t.shutter_s + self.faults.camera_delay_s):
            return
        dng, jpeg, settings = self.source.render_capture()
        with self._lock:
            if len(dng) + len(jpeg) > self.free_bytes():
                self.captures.append(SimCapture(key_time, [], dict(settings), False, "storage full"))
                return
            raw = not self.faults.raw_disabled
            dng_name = self.faults.hostile_name or f"{stem}.dng"
            self.faults.hostile_name = None
            names = [f"{stem}.jpg", dng_name] if raw else [f"{stem}.jpg"]
            record = SimCapture(key_time, names, dict(settings), True)
            self.captures.append(record)
            temp = f".pending-{int(key_time)}-{stem}.jpg"
            self.put_file(CAMERA_DIR, temp, jpeg)
        if self._stop.wait(t.jpeg_rename_s):
            return
        with self._lock:
            folder = self.files.get(CAMERA_DIR, {})
            if temp in folder:
                folder[f"{stem}.jpg"] = folder.pop(temp)
        if not raw or self._stop.wait(t.dng_gap_s):
            return
        with self._lock:
            self.put_file(CAMERA_DIR, dng_name, dng[: len(dng) // 2])
        if self._stop.wait(t.dng_growth_s):
            return
        with self._lock:
            self.put_file(CAMERA_DIR, dng_name, dng)

    def start(self) -> None:
        """Let the camera app work (again, after :meth:`stop`)."""
        self._stop.clear()

    def stop(self, *, timeout_s: float = 2.0) -> None:
        """Stop the camera app's workers (joined with a timeout)."""
        self._stop.set()
        for thread in list(self._threads):
            thread.join(timeout_s)
