"""The rig: LED ring, phone and benchtop opened together, from ``rig.yaml`` or as the simulated rig.

A rig file (YAML) names the three devices::

    name: bench-1
    led_ring: {flavour: scopectl, url: /dev/ttyACM0}
    phone: {address: 192.168.1.20:5555, profile: generic-android}
    benchtop: {mm_config: olympus-ix83.cfg}
    phone_stage: manual
    default_protocol: lung-trichrome

``--rig sim`` is the simulated rig, always explicitly: an LED board behind a pseudo-terminal, an adbd on
loopback TCP and a Micro-Manager core with pure-Python devices, all sharing one simulated world (the digital
twin's slide, lit by the simulated ring, seen by both cameras at their stage positions).  The real drivers
talk to the simulators over those real transports.  Nothing ever falls back to simulation silently.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import shutil
import stat
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import Field, ValidationError

from scopectl.config.base import StrictModel, format_validation_error, load_mapping
from scopectl.errors import ConfigError, DeviceError, ScopectlError
from scopectl.hardware.ledring import SerialLedRing, open_led_ring
from scopectl.hardware.ledring.config import LedRingConfig
from scopectl.hardware.ledring.sim import BatteryModel, SimulatedLedBoard
from scopectl.hardware.phone import PhoneCamera, ensure_key
from scopectl.hardware.phone.config import PhoneConfig
from scopectl.hardware.phone.keys import default_key_path
from scopectl.hardware.phone.sim import SimulatedPhone

if TYPE_CHECKING:
    from scopectl.hardware.benchtop import Benchtop
    from scopectl.hardware.benchtop.sim import BenchtopFaults, SimulatedBenchtop
    from scopectl.hardware.ledring import LedRing, SerialLedRing
    from scopectl.hardware.ledring.sim import BoardFaults, SimulatedLedBoard
    from scopectl.hardware.phone import PhoneCamera
    from scopectl.hardware.phone.sim import PhoneFaults
    from scopectl.twin import Slide

__all__ = [
    "BenchtopConfig",
    "ManualPhoneStage",
    "PhoneStage",
    "Rig",
    "RigConfig",
    "SimRigFaults",
    "SimulatedPhoneStage",
    "SimulatedWorld",
    "load_rig_config",
    "open_rig",
    "open_simulated_rig",
]


class BenchtopConfig(StrictModel):
    """The benchtop section of a rig file: a Micro-Manager configuration."""

    mm_config: Path
    pixel_size_um: float | None = Field(default=None, gt=0, le=100)
    mm_path: Path | None = None
    timeout_s: float = Field(default=30.0, gt=0, le=600)


class RigConfig(StrictModel):
    """A rig file (``rig.yaml``): one section per device, validated by that device's configuration model."""

    name: str = Field(default="rig", min_length=1, max_length=64)
    led_ring: LedRingConfig
    phone: PhoneConfig
    benchtop: BenchtopConfig
    phone_stage: Literal["manual"] = "manual"
    default_protocol: str = "lung-trichrome"


_DEVICE_SECTIONS = ("led_ring", "phone", "benchtop")


def load_rig_config(path: Path) -> RigConfig:
    """Load a rig file; device sections are validated by their drivers' models, paths resolved relative to it.

    Raises
    ------
    ConfigError
        Naming the file, the device section and the key: ``rig.yaml: led_ring: flavour: ...``.
    """
    if not Path(path).is_file():
        raise ConfigError(
            f"{path}: rig file not found.", hint="Pass --rig PATH of a rig.yaml, or --rig sim explicitly."
        )
    data = load_mapping(Path(path))
    try:
        cfg = RigConfig.model_validate(data)
    except ValidationError as exc:
        # the first error's top-level key says which section failed: a device section is named like a file
        first = exc.errors()[0]["loc"]
        section = str(first[0]) if len(first) > 1 and first[0] in _DEVICE_SECTIONS else None
        raise ConfigError(format_validation_error(exc, str(path), section=section) + ".") from None
    bench = cfg.benchtop
    if not bench.mm_config.is_absolute():
        bench = bench.model_copy(update={"mm_config": (Path(path).parent / bench.mm_config).resolve()})
    return cfg.model_copy(update={"benchtop": bench})


# --------------------------------------------------------------------------------------- phone stages
class PhoneStage(ABC):
    """Moves the phone microscope's sample tray to a field (by hand, or simulated)."""

    manual: bool = True

    @abstractmethod
    def move_to(self, x_um: float, y_um: float, *, label: str) -> tuple[float, float] | None:
        """Bring the field centred at (x, y) µm under the phone; returns the position if it is known."""


class ManualPhoneStage(PhoneStage):
    """A hand-driven xyz stage: the operator is asked to move to each field and press Enter."""

    manual = True

    def __init__(self, prompt: Callable[[str], None]) -> None:
        self._prompt = prompt

    def move_to(self, x_um: float, y_um: float, *, label: str) -> tuple[float, float] | None:
        self._prompt(
            f"Move the phone stage to {label}: slide x = {x_um / 1000:.3f} mm, y = {y_um / 1000:.3f} mm, "
            "focus, then press Enter"
        )
        return None


# ------------------------------------------------------------------------------------ simulated world
def _stable_seed(*parts: Any) -> int:
    h = hashlib.sha256(repr(parts).encode()).digest()
    return int.from_bytes(h[:8], "little") & 0x7FFF_FFFF_FFFF_FFFF


class SimulatedWorld:
    """What the simulated phone sees: the twin's slide at the phone-stage position under the ring's light.

    Renders are seeded by the world seed and the stage position, so the same field gives the same capture
    in an interrupted-and-resumed run and an uninterrupted one.
    """

    def __init__(
        self,
        slide: Any,
        *,
        seed: int,
        ring_state: Callable[[], tuple[np.ndarray, int]],
        battery_mv: Callable[[], float],
        capture_shape: tuple[int, int] = (1024, 1024),
        phone_position_error_um: float = 25.0,
    ) -> None:
        from scopectl.twin import PhoneModel  # the twin (SciPy, OpenCV) loads only for the simulated rig

        self.slide = slide
        self.seed = int(seed)
        self.phone_model = PhoneModel()
        self.capture_shape = capture_shape
        self.phone_position_error_um = float(phone_position_error_um)
        self._ring_state = ring_state
        self._battery_mv = battery_mv
        self._lock = threading.Lock()
        self.phone_x_um = slide.width_um / 2
        self.phone_y_um = slide.height_um / 2
        self.phone_focus_z_um = 0.0
        self.last_truth: Any = None

    def move_phone(self, x_um: float, y_um: float) -> tuple[float, float]:
        """Move the phone stage, with a reproducible positioning error (a hand-made xyz stage is not exact)."""
        rng = np.random.default_rng(_stable_seed(self.seed, "phone-stage", round(x_um, 3), round(y_um, 3)))
        err = rng.normal(0.0, self.phone_position_error_um, size=2)
        with self._lock:
            self.phone_x_um = float(np.clip(x_um + err[0], 0.0, self.slide.width_um))
            self.phone_y_um = float(np.clip(y_um + err[1], 0.0, self.slide.height_um))
            return self.phone_x_um, self.phone_y_um

    def render_capture(self) -> tuple[bytes, bytes, dict[str, Any]]:
        """The simulated camera app's shot (called by the simulated phone on the shutter key)."""
        from scopectl.twin import Illumination  # the twin (SciPy, OpenCV) loads only for the simulated rig

        colors, brightness = self._ring_state()
        ill = Illumination(
            colors=np.asarray(colors), brightness=int(brightness), battery_mv=float(self._battery_mv())
        )
        with self._lock:
            x, y, z = self.phone_x_um, self.phone_y_um, self.phone_focus_z_um
        seed = _stable_seed(
            self.seed, "capture", round(x, 3), round(y, 3), ill.brightness, ill.colors.tobytes()
        )
        cap = self.phone_model.capture(
            self.slide,
            center_x_um=x,
            center_y_um=y,
            focus_z_um=z,
            illumination=ill,
            seed=seed,
            shape=self.capture_shape,
        )
        self.last_truth = cap.truth
        return cap.dng, cap.jpeg, dict(cap.settings)


class SimulatedPhoneStage(PhoneStage):
    """The simulated rig's phone stage: it moves itself (with the world's positioning error)."""

    manual = False

    def __init__(self, world: SimulatedWorld) -> None:
        self.world = world

    def move_to(self, x_um: float, y_um: float, *, label: str) -> tuple[float, float] | None:
        return self.world.move_phone(x_um, y_um)


def _close_all(closers: list[Callable[[], None]]) -> None:
    """Call closers in reverse order of opening, each even if an earlier one failed; empties the list."""
    while closers:
        closer = closers.pop()
        with contextlib.suppress(Exception):
            closer()


# ------------------------------------------------------------------------------------------- the rig
@dataclass
class Rig:
    """The three devices and the phone stage, opened; close it (or use it as a context manager)."""

    name: str
    simulated: bool
    led: LedRing
    phone: PhoneCamera
    benchtop: Benchtop
    phone_stage: PhoneStage
    default_protocol: str
    description: dict[str, Any]
    world: SimulatedWorld | None = None
    addresses: dict[str, str] = field(default_factory=dict)
    _closers: list[Callable[[], None]] = field(default_factory=list, repr=False)

    def close(self) -> None:
        """Close drivers, then simulators (each with its own timeout); idempotent."""
        _close_all(self._closers)

    def __enter__(self) -> Rig:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_rig(
    spec: str | Path,
    *,
    seed: int = 0,
    sample: str = "lung",
    prompt: Callable[[str], None] | None = None,
    capture_shape: tuple[int, int] = (1024, 1024),
    benchtop_tile_shape: tuple[int, int] = (1024, 1024),
    workdir: Path | None = None,
) -> Rig:
    """Open a rig: ``"sim"`` for the simulated rig, else the path of a rig file.

    ``workdir`` is the simulated rig's private folder (mode 0700; its ADB key lives there), e.g. one under
    the data root (:meth:`scopectl.store.DataRoot.private_dir`); see :func:`open_simulated_rig`.

    Raises
    ------
    ConfigError
        If the rig file is invalid.
    DeviceError
        If a device does not answer (never replaced by a simulator).

    ``capture_shape`` and ``benchtop_tile_shape`` set the simulated cameras' frames (a protocol's
    ``phone.capture_shape_px`` and ``benchtop.tile_shape_px``); real cameras have their own.
    """
    if str(spec) == "sim":
        return open_simulated_rig(
            seed=seed,
            sample=sample,
            capture_shape=capture_shape,
            benchtop_sensor_shape=benchtop_tile_shape,
            workdir=workdir,
        )
    path = Path(spec)
    if not path.is_file():
        raise ConfigError(
            f"{path}: rig file not found.", hint="Pass --rig PATH of a rig.yaml, or --rig sim explicitly."
        )
    cfg = load_rig_config(path)
    return _open_real_rig(cfg, prompt=prompt)


def _open_real_rig(cfg: RigConfig, *, prompt: Callable[[str], None] | None) -> Rig:
    # pymmcore-plus (Micro-Manager) loads only for the benchtop
    from scopectl.hardware.benchtop import Benchtop

    closers: list[Callable[[], None]] = []
    try:
        led = open_led_ring(cfg.led_ring)
        closers.append(led.close)
        phone = PhoneCamera.from_config(cfg.phone)
        phone.connect()
        closers.append(phone.close)
        bench = Benchtop.from_config(
            cfg.benchtop.mm_config,
            pixel_size_um=cfg.benchtop.pixel_size_um,
            mm_path=cfg.benchtop.mm_path,
            timeout_s=cfg.benchtop.timeout_s,
        )
        closers.append(bench.close)
    except BaseException:
        _close_all(closers)
        raise
    stage = ManualPhoneStage(prompt or _no_operator)
    return Rig(
        name=cfg.name,
        simulated=False,
        led=led,
        phone=phone,
        benchtop=bench,
        phone_stage=stage,
        default_protocol=cfg.default_protocol,
        description={"name": cfg.name, "kind": "real", **_describe(led, phone, bench)},
        _closers=closers,
    )


def _no_operator(message: str) -> None:
    raise DeviceError(
        f"manual phone stage: {message.split(':')[0]} needs an operator.",
        hint="Run scopectl acquire in a terminal so it can ask you to move the stage.",
    )


def _describe(led: Any, phone: Any, bench: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    with contextlib.suppress(ScopectlError):
        out["led_ring"] = led.info().to_dict()
    with contextlib.suppress(ScopectlError):
        info = phone.info()
        out["phone"] = {"model": info.model, "android": info.android_version, "serial": info.serial}
    with contextlib.suppress(ScopectlError):
        out["benchtop"] = bench.info()
    return out


@dataclass
class SimRigFaults:
    """Faults to inject into the simulated rig's devices (each simulator's own fault settings)."""

    led: BoardFaults | None = None
    phone: PhoneFaults | None = None
    benchtop: BenchtopFaults | None = None
    benchtop_timeout_s: float = 30.0


def open_simulated_rig(
    *,
    seed: int = 0,
    sample: str = "lung",
    capture_shape: tuple[int, int] = (1024, 1024),
    benchtop_sensor_shape: tuple[int, int] = (1024, 1024),
    slide_size_um: tuple[float, float] = (4000.0, 4000.0),
    workdir: Path | None = None,
    faults: SimRigFaults | None = None,
) -> Rig:
    """Start every simulator and connect the real drivers to them over their real transports.

    The LED board runs behind a pseudo-terminal (driven by :class:`SerialLedRing`), the phone is an adbd on
    127.0.0.1 (driven by :class:`PhoneCamera` with RSA authentication), and the benchtop is a Micro-Manager
    core with pure-Python devices.  All three see one slide of the digital twin.

    The rig's ADB key pair is made in ``workdir`` (which must be private: mode 0700); without one, in a
    fresh folder ``sim-<pid>`` beside scopectl's own key in the user's configuration folder
    (``~/.config/scopectl``), removed when the rig closes.  Never in a shared temporary folder.
    """
    from scopectl.twin import make_slide  # the twin (SciPy, OpenCV) loads only for the simulated rig

    closers: list[Callable[[], None]] = []
    try:
        if workdir is None:
            workdir = default_key_path().parent / f"sim-{os.getpid()}"
            workdir.mkdir(mode=0o700, parents=True, exist_ok=True)
            closers.append(functools.partial(shutil.rmtree, workdir, ignore_errors=True))
        if stat.S_IMODE(workdir.stat().st_mode) & 0o077:
            os.chmod(workdir, 0o700)
        slide = make_slide(sample, seed=seed, width_um=slide_size_um[0], height_um=slide_size_um[1])
        f = faults or SimRigFaults()
        board, led = _start_simulated_led(f, closers)

        world = SimulatedWorld(
            slide,
            seed=seed,
            ring_state=board.ring_state,
            battery_mv=lambda: float(board.battery_mv),
            capture_shape=capture_shape,
        )
        key_path = workdir / "adbkey"
        ensure_key(key_path)
        public_key = Path(f"{key_path}.pub").read_text(encoding="utf-8").strip()
        # Our key is authorised; another client (e.g. the official adb) gets the "Allow?" prompt, which the
        # simulated user accepts.
        sim_phone = SimulatedPhone(world, require_auth=True, authorized_keys=[public_key], faults=f.phone)
        port = sim_phone.start()
        closers.append(sim_phone.stop)
        phone = PhoneCamera(
            f"127.0.0.1:{port}", key_path=key_path, profile="sim", use_official_key=False, delete_after=True
        )
        phone.connect()
        closers.append(phone.close)

        bench = _start_simulated_benchtop(slide, seed, benchtop_sensor_shape, f, closers)
    except BaseException:
        _close_all(closers)
        raise
    return Rig(
        name="sim",
        simulated=True,
        led=led,
        phone=phone,
        benchtop=bench,
        phone_stage=SimulatedPhoneStage(world),
        default_protocol="lung-trichrome",
        description={
            "name": "sim",
            "kind": "simulated",
            "seed": seed,
            "sample": sample,
            "slide_size_um": list(slide_size_um),
            **_describe(led, phone, bench),
        },
        world=world,
        addresses={"led_ring": led.address, "phone": f"127.0.0.1:{port}"},
        _closers=closers,
    )


def _start_simulated_led(
    faults: SimRigFaults, closers: list[Callable[[], None]]
) -> tuple[SimulatedLedBoard, SerialLedRing]:
    """The simulated LED board on a pty, and the real driver connected to it."""

    # The battery sags with the LED load; it does not drain with wall-clock time, so a simulated
    # acquisition is reproducible whatever its pace (the LED-ring tests exercise the drain).
    board = SimulatedLedBoard(battery=BatteryModel(charge=0.9, time_scale=0.0), faults=faults.led)
    led_path = board.start()
    closers.append(board.stop)
    led = SerialLedRing(led_path, watchdog_ms=60_000)  # stays lit across the longest gap between fields
    closers.append(led.close)
    return board, led


def _start_simulated_benchtop(
    slide: Slide,
    seed: int,
    sensor_shape: tuple[int, int],
    faults: SimRigFaults,
    closers: list[Callable[[], None]],
) -> SimulatedBenchtop:
    """The simulated benchtop looking at ``slide``."""
    # pymmcore-plus (Micro-Manager) loads only for the benchtop
    from scopectl.hardware.benchtop.sim import simulated_benchtop

    # reproducible + approach: the same commanded tile gives the same frame, so resumed runs are identical
    bench = simulated_benchtop(
        slide,
        seed=seed,
        sensor_shape=sensor_shape,
        reproducible=True,
        approach_um=20.0,
        timeout_s=faults.benchtop_timeout_s,
    )
    if faults.benchtop is not None:
        bench.world.faults = faults.benchtop
    closers.append(bench.close)
    return bench


def check_rig(rig: Rig) -> list[dict[str, Any]]:
    """Probe each device: found, model or firmware, battery, round-trip latency."""
    rows: list[dict[str, Any]] = []

    def probe(name: str, fn: Callable[[], dict[str, Any]]) -> None:
        t0 = time.perf_counter()
        try:
            details = fn()
            rows.append(
                {"device": name, "found": True, "latency_ms": 1000 * (time.perf_counter() - t0), **details}
            )
        except ScopectlError as exc:
            rows.append({"device": name, "found": False, "error": exc.one_line()})

    def led() -> dict[str, Any]:
        info = rig.led.info()
        mv = rig.led.battery_mv()
        return {
            "model": f"{info.model} fw {info.firmware}",
            "battery": f"{mv:.0f} mV",
            "address": info.address,
        }

    def phone() -> dict[str, Any]:
        info = rig.phone.info()
        return {
            "model": f"{info.model} (Android {info.android_version})",
            "battery": f"{info.battery_pct}%" if info.battery_pct is not None else "?",
            "address": rig.phone.address,
        }

    def bench() -> dict[str, Any]:
        info = rig.benchtop.info()
        x, y, z = rig.benchtop.position_um()
        return {
            "model": str(info.get("camera", info.get("name", "benchtop"))),
            "battery": "mains",
            "address": f"stage {x:.0f},{y:.0f},{z:.1f} µm",
        }

    probe("led_ring", led)
    probe("phone", phone)
    probe("benchtop", bench)
    return rows
