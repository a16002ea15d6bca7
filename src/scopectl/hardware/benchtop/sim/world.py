"""The simulated benchtop world: what the simulated stage, focus drive, shutter and camera share.

The simulated devices (:mod:`scopectl.hardware.benchtop.sim.devices`) are thin Micro-Manager device adapters;
the physics lives here so that all of them see one consistent state:

- the **XY stage** has limits, a travel time (speed + settle time, scaled by ``time_scale`` so tests run
  fast), a little backlash (the carriage lags by half the play behind the last direction of travel) and a
  random positioning error per move (what an open-loop stage does; stitching has to fix it);
- the **Z drive** has limits and a travel time;
- the **slide** is tilted: its focal plane is ``z = z0 + slope_x·x + slope_y·y`` in stage coordinates;
- the **camera** renders the slide through a :class:`Renderer` at the *true* stage position, with the focus
  offset ``z_drive - plane(x, y)``, and a different noise seed on every snap.

Coordinates are stage micrometres, x to the right and y *down* (image rows follow +y), as on the slide.
The stage reports the position it was commanded to (like an encoder-less stepper stage); the true
position (with error and backlash) is known only here, and is recorded per snap in :attr:`snap_log` so that
stitching accuracy can be measured against it (~200 bytes per snap; a long-running simulation may clear it).

Thread-safety: every public method takes the world's lock; devices may be polled from any thread.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np

from scopectl.errors import ConfigError
from scopectl.hardware.benchtop.focus import FocusPlane
from scopectl.twin import BenchtopModel, make_slide

if TYPE_CHECKING:
    from scopectl.twin import BenchtopModel, Slide

__all__ = [
    "BenchtopFaults",
    "Renderer",
    "SimStageParams",
    "SimulatedWorld",
    "SnapTruth",
    "TwinRenderer",
    "get_world",
    "register_world",
    "unregister_world",
]


@runtime_checkable
class Renderer(Protocol):
    """Renders what the benchtop camera sees.

    ``render`` returns a ``uint8`` array of ``shape + (3,)`` centred on the given slide point, with the
    objective ``focus_z_um`` above (positive) or below the sample's focal plane; ``seed`` selects the
    noise realisation (the camera passes a new one per snap).
    """

    @property
    def pixel_size_um(self) -> float:
        """Size of one camera pixel at the sample, in micrometres."""
        ...

    def render(
        self,
        *,
        center_x_um: float,
        center_y_um: float,
        focus_z_um: float,
        shape: tuple[int, int],
        exposure_ms: float,
        seed: int,
    ) -> np.ndarray:
        """Render one frame (H, W, 3) uint8."""
        ...


class TwinRenderer:
    """The product renderer: the digital twin's benchtop model looking at a simulated slide.

    Parameters
    ----------
    slide
        A :class:`scopectl.twin.Slide` (e.g. ``make_slide("lung", seed=0)``).
    model
        The benchtop optical model; the default :class:`scopectl.twin.BenchtopModel` (20×/0.75, 0.37 µm px).
    """

    def __init__(self, slide: Slide, *, model: BenchtopModel | None = None) -> None:

        self.slide = slide
        self.model = model if model is not None else BenchtopModel()

    @property
    def pixel_size_um(self) -> float:
        """Camera pixel size at the sample (µm)."""
        return float(self.model.pixel_size_um)

    def render(
        self,
        *,
        center_x_um: float,
        center_y_um: float,
        focus_z_um: float,
        shape: tuple[int, int],
        exposure_ms: float,
        seed: int,
    ) -> np.ndarray:
        """Render the slide at a stage position and focus offset (see :class:`Renderer`)."""
        return self.model.render(
            self.slide,
            center_x_um=center_x_um,
            center_y_um=center_y_um,
            focus_z_um=focus_z_um,
            shape=shape,
            exposure_ms=exposure_ms,
            seed=seed,
        )


@dataclass
class BenchtopFaults:
    """Faults to inject into the simulated benchtop (counted from when they are set).

    Attributes
    ----------
    stall_xy_after_moves
        After this many further XY moves, the stage stops answering: the next move never completes
        (the core's wait times out).  ``None``: no stall.
    camera_fail_after_snaps
        After this many further snaps, the camera returns no image (raises).  ``None``: never.
    """

    stall_xy_after_moves: int | None = None
    camera_fail_after_snaps: int | None = None


@dataclass(frozen=True)
class SimStageParams:
    """Mechanics of the simulated stage and focus drive.

    ``time_scale`` multiplies every simulated duration (1.0 = real time; tests use ~0.01).
    """

    x_limits_um: tuple[float, float] = (-5_000.0, 80_000.0)
    y_limits_um: tuple[float, float] = (-5_000.0, 30_000.0)
    z_limits_um: tuple[float, float] = (-500.0, 5_000.0)
    xy_speed_um_per_s: float = 20_000.0
    xy_settle_ms: float = 20.0
    z_speed_um_per_s: float = 2_000.0
    z_settle_ms: float = 5.0
    backlash_um: float = 2.0
    position_error_um: float = 1.5
    time_scale: float = 1.0

    def __post_init__(self) -> None:
        for name in ("x_limits_um", "y_limits_um", "z_limits_um"):
            lo, hi = getattr(self, name)
            if not lo < hi:
                raise ConfigError(
                    f"simulated stage: {name} must be (low, high) with low < high, got {(lo, hi)}."
                )
        if self.xy_speed_um_per_s <= 0 or self.z_speed_um_per_s <= 0:
            raise ConfigError("simulated stage: speeds must be positive.")
        if min(self.xy_settle_ms, self.z_settle_ms, self.backlash_um, self.position_error_um) < 0:
            raise ConfigError("simulated stage: settle times, backlash and position error must be >= 0.")
        if self.time_scale < 0:
            raise ConfigError("simulated stage: time_scale must be >= 0.")


@dataclass(frozen=True)
class SnapTruth:
    """Ground truth of one simulated snap (the true optical-axis position, not the reported one)."""

    index: int
    seed: int
    commanded_x_um: float
    commanded_y_um: float
    true_x_um: float
    true_y_um: float
    z_um: float
    focus_offset_um: float
    shutter_open: bool


@dataclass
class _Move:
    """A linear move from ``start`` to ``end`` between two monotonic times."""

    start: tuple[float, ...]
    end: tuple[float, ...]
    t0: float
    t1: float

    def at(self, now: float) -> tuple[float, ...]:
        if now >= self.t1 or self.t1 <= self.t0:
            return self.end
        f = max(0.0, (now - self.t0) / (self.t1 - self.t0))
        return tuple(a + (b - a) * f for a, b in zip(self.start, self.end, strict=True))


@dataclass
class _XYState:
    commanded: _Move
    true: _Move
    direction: list[int] = field(default_factory=lambda: [1, 1])


class SimulatedWorld:
    """Shared state of the simulated benchtop (see the module docstring).

    Parameters
    ----------
    renderer
        What the camera sees (:class:`TwinRenderer` for the product, anything with the
        :class:`Renderer` shape in tests).
    focus_plane
        The slide's focal plane in stage coordinates (tilt included).
    stage
        Stage mechanics.
    slide_origin_um
        Stage position ``(x, y)`` at which the slide's top-left corner is on the optical axis:
        the renderer is asked for slide point ``stage - slide_origin``.
    seed
        Seeds the positioning errors and the per-snap noise.
    reproducible
        Derive the positioning error of a move from its target, and the noise of a snap from the commanded
        position and focus, instead of from running counters: the same commanded position then always
        gives the same frame, so an interrupted and resumed acquisition equals an uninterrupted one.
        (Backlash still depends on the approach direction; pair this with ``Benchtop(approach_um > 0)``.)
    """

    def __init__(
        self,
        renderer: Renderer,
        *,
        focus_plane: FocusPlane | None = None,
        stage: SimStageParams | None = None,
        slide_origin_um: tuple[float, float] = (0.0, 0.0),
        seed: int = 0,
        reproducible: bool = False,
    ) -> None:
        self.renderer = renderer
        self.focus_plane = focus_plane if focus_plane is not None else FocusPlane()
        self.stage = stage if stage is not None else SimStageParams()
        self.slide_origin_um = (float(slide_origin_um[0]), float(slide_origin_um[1]))
        self.seed = int(seed)
        self.reproducible = bool(reproducible)
        self.faults = BenchtopFaults()
        self._rng = np.random.default_rng([self.seed, 0x5EED])
        self._lock = threading.RLock()
        now = time.monotonic()
        self._xy = _XYState(_Move((0.0, 0.0), (0.0, 0.0), now, now), self._initial_true(now))
        self._z = _Move((0.0,), (0.0,), now, now)
        self._shutter_open = False
        self._snap_counter = 0
        self.snap_log: list[SnapTruth] = []

    def _initial_true(self, now: float) -> _Move:
        half = self.stage.backlash_um / 2.0
        return _Move((-half, -half), (-half, -half), now, now)

    # ------------------------------------------------------------------ XY stage
    def xy_limits_ok(self, x_um: float, y_um: float) -> bool:
        """True when ``(x_um, y_um)`` is inside the stage's travel."""
        (x0, x1), (y0, y1) = self.stage.x_limits_um, self.stage.y_limits_um
        return math.isfinite(x_um) and math.isfinite(y_um) and x0 <= x_um <= x1 and y0 <= y_um <= y1

    def move_xy(self, x_um: float, y_um: float) -> None:
        """Start a move to ``(x_um, y_um)``; it ends after the simulated travel + settle time.

        Raises
        ------
        ValueError
            If the target is outside the travel limits (the stage does not move).
        """
        if not self.xy_limits_ok(x_um, y_um):
            raise ValueError(
                f"XY target ({x_um:.1f}, {y_um:.1f}) um is outside the stage limits "
                f"x {self.stage.x_limits_um}, y {self.stage.y_limits_um}"
            )
        with self._lock:
            now = time.monotonic()
            cur_cmd = self._xy.commanded.at(now)
            cur_true = self._xy.true.at(now)
            target = (float(x_um), float(y_um))
            direction = list(self._xy.direction)
            for axis in range(2):
                delta = target[axis] - cur_cmd[axis]
                if abs(delta) > 1e-9:
                    direction[axis] = 1 if delta > 0 else -1
            moved = any(abs(t - c) > 1e-9 for t, c in zip(target, cur_cmd, strict=True))
            rng = self._rng
            if self.reproducible:
                rng = np.random.default_rng(_position_seed(self.seed, 0x57A6E, target[0], target[1]))
            error = (
                rng.normal(0.0, self.stage.position_error_um, size=2)
                if moved and self.stage.position_error_um > 0
                else np.zeros(2)
            )
            half = self.stage.backlash_um / 2.0
            true_end = tuple(target[a] - direction[a] * half + float(error[a]) for a in range(2))
            if not moved:
                true_end = cur_true
            distance = math.hypot(target[0] - cur_cmd[0], target[1] - cur_cmd[1])
            duration = (
                (distance / self.stage.xy_speed_um_per_s + self.stage.xy_settle_ms / 1000.0)
                * self.stage.time_scale
                if moved
                else 0.0
            )
            stall = self.faults.stall_xy_after_moves
            if moved and stall is not None:
                if stall <= 0:
                    duration = 1e9  # a stalled controller: the move never completes
                else:
                    self.faults.stall_xy_after_moves = stall - 1
            self._xy = _XYState(
                _Move(cur_cmd, target, now, now + duration),
                _Move(cur_true, true_end, now, now + duration),
                direction,
            )

    def stop_xy(self) -> None:
        """Stop the XY stage where it is now."""
        with self._lock:
            now = time.monotonic()
            cmd, true = self._xy.commanded.at(now), self._xy.true.at(now)
            self._xy = _XYState(_Move(cmd, cmd, now, now), _Move(true, true, now, now), self._xy.direction)

    def reported_xy(self) -> tuple[float, float]:
        """The position the stage reports (the commanded path, without error or backlash)."""
        with self._lock:
            x, y = self._xy.commanded.at(time.monotonic())
            return float(x), float(y)

    def true_xy(self) -> tuple[float, float]:
        """The true optical-axis position in stage coordinates (only the simulation knows it)."""
        with self._lock:
            x, y = self._xy.true.at(time.monotonic())
            return float(x), float(y)

    def xy_busy(self) -> bool:
        """True while the XY stage is moving or settling."""
        with self._lock:
            return time.monotonic() < self._xy.commanded.t1

    # ------------------------------------------------------------------ Z drive
    def z_limits_ok(self, z_um: float) -> bool:
        """True when ``z_um`` is inside the focus drive's travel."""
        lo, hi = self.stage.z_limits_um
        return math.isfinite(z_um) and lo <= z_um <= hi

    def move_z(self, z_um: float) -> None:
        """Start a focus move.

        Raises
        ------
        ValueError
            If ``z_um`` is outside the focus drive's travel.
        """
        if not self.z_limits_ok(z_um):
            raise ValueError(
                f"Z target {z_um:.2f} um is outside the focus drive limits {self.stage.z_limits_um}"
            )
        with self._lock:
            now = time.monotonic()
            cur = self._z.at(now)[0]
            duration = (
                abs(z_um - cur) / self.stage.z_speed_um_per_s + self.stage.z_settle_ms / 1000.0
            ) * self.stage.time_scale
            self._z = _Move((cur,), (float(z_um),), now, now + duration)

    def stop_z(self) -> None:
        """Stop the focus drive where it is now."""
        with self._lock:
            now = time.monotonic()
            cur = self._z.at(now)
            self._z = _Move(cur, cur, now, now)

    def z(self) -> float:
        """Current focus drive position (µm)."""
        with self._lock:
            return float(self._z.at(time.monotonic())[0])

    def z_busy(self) -> bool:
        """True while the focus drive is moving or settling."""
        with self._lock:
            return time.monotonic() < self._z.t1

    # ------------------------------------------------------------------ shutter
    def set_shutter(self, is_open: bool) -> None:
        """Open or close the transmitted-light shutter."""
        with self._lock:
            self._shutter_open = bool(is_open)

    def shutter_open(self) -> bool:
        """True when the shutter is open."""
        with self._lock:
            return self._shutter_open

    # ------------------------------------------------------------------ camera
    @property
    def pixel_size_um(self) -> float:
        """Camera pixel size at the sample (µm), from the renderer."""
        return float(self.renderer.pixel_size_um)

    def focus_offset_um(self) -> float:
        """Objective focus relative to the slide's focal plane at the current true position."""
        with self._lock:
            x, y = self.true_xy()
            return self.z() - self.focus_plane.z_at(x, y)

    def snap(
        self, *, shape: tuple[int, int], exposure_ms: float, offset_px: tuple[float, float] = (0.0, 0.0)
    ) -> np.ndarray:
        """Render one frame at the current true position and focus.

        Parameters
        ----------
        shape
            ``(rows, cols)`` of the frame.
        exposure_ms
            Exposure time passed to the renderer.
        offset_px
            ``(rows, cols)`` offset of the frame centre from the optical axis (a camera ROI).
        """
        with self._lock:
            index = self._snap_counter
            self._snap_counter += 1
            fail = self.faults.camera_fail_after_snaps
            if fail is not None:
                if fail <= 0:
                    raise RuntimeError("simulated camera fault: the camera returned no image")
                self.faults.camera_fail_after_snaps = fail - 1
            cmd_x, cmd_y = self.reported_xy()
            if self.reproducible:
                seed = _position_seed(self.seed, 0x5A9, cmd_x, cmd_y, self.z())
            else:
                seed = int(np.random.SeedSequence([self.seed, index]).generate_state(1)[0])
            x, y = self.true_xy()
            z = self.z()
            focus = z - self.focus_plane.z_at(x, y)
            is_open = self._shutter_open
            self.snap_log.append(SnapTruth(index, seed, cmd_x, cmd_y, x, y, z, focus, is_open))
        rows, cols = int(shape[0]), int(shape[1])
        if not is_open:
            rng = np.random.default_rng(seed)
            return rng.poisson(1.0, size=(rows, cols, 3)).astype(np.uint8)
        px = self.pixel_size_um
        img = self.renderer.render(
            center_x_um=x - self.slide_origin_um[0] + offset_px[1] * px,
            center_y_um=y - self.slide_origin_um[1] + offset_px[0] * px,
            focus_z_um=focus,
            shape=(rows, cols),
            exposure_ms=float(exposure_ms),
            seed=seed,
        )
        out = np.asarray(img)
        if out.shape != (rows, cols, 3) or out.dtype != np.uint8:
            raise ValueError(f"renderer returned {out.dtype} {out.shape}, expected uint8 {(rows, cols, 3)}")
        return out

    def truth_for(self, commanded_x_um: float, commanded_y_um: float, *, tol_um: float = 1e-6) -> SnapTruth:
        """The last snap taken while the stage was commanded to ``(x, y)`` (for accuracy measurements).

        Raises
        ------
        KeyError
            If no snap was taken at that commanded position.
        """
        with self._lock:
            for truth in reversed(self.snap_log):
                if (
                    abs(truth.commanded_x_um - commanded_x_um) <= tol_um
                    and abs(truth.commanded_y_um - commanded_y_um) <= tol_um
                ):
                    return truth
        raise KeyError(f"no simulated snap at commanded position ({commanded_x_um}, {commanded_y_um})")


_REGISTRY: dict[str, SimulatedWorld] = {}
_REGISTRY_LOCK = threading.Lock()


def register_world(name: str, world: SimulatedWorld) -> None:
    """Make a world available to simulated devices loaded from a configuration file.

    Devices created by Micro-Manager from ``#py pyDevice,...`` lines take no constructor arguments; their
    ``World`` property names the world they join (``"default"`` unless set).
    """
    with _REGISTRY_LOCK:
        _REGISTRY[name] = world


def unregister_world(name: str) -> None:
    """Forget a registered world (no error if it is unknown)."""
    with _REGISTRY_LOCK:
        _REGISTRY.pop(name, None)


def get_world(name: str) -> SimulatedWorld:
    """Return the world registered under ``name``.

    The name ``"default"`` is created on first use: the digital twin's lung slide (seed 0) on a flat
    focal plane at z = 0.

    Raises
    ------
    ConfigError
        If no world of that name is registered.
    """
    with _REGISTRY_LOCK:
        if name in _REGISTRY:
            return _REGISTRY[name]
        if name != "default":
            raise ConfigError(
                f"simulated benchtop: no world named {name!r} is registered; "
                "call scopectl.hardware.benchtop.register_world first or use 'default'."
            )

        world = SimulatedWorld(TwinRenderer(make_slide("lung", seed=0)), seed=0)
        _REGISTRY[name] = world
        return world


def _position_seed(seed: int, salt: int, *coords_um: float) -> int:
    """A seed derived from a position (rounded to 1 nm), so it does not depend on history."""
    ints = [int(seed), int(salt)] + [round(c * 1000.0) & 0xFFFF_FFFF_FFFF for c in coords_um]
    return int(np.random.SeedSequence(ints).generate_state(1)[0])
