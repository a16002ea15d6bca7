"""The simulated benchtop: the real driver (:class:`~scopectl.hardware.benchtop.Benchtop`) on a core of
simulated devices.

:func:`simulated_benchtop` builds the simulated world, loads the four simulated devices into a
``UniMMCore`` and hands the core to the driver; the driver runs unchanged.  The result is a
:class:`SimulatedBenchtop`: the driver plus the world, whose ground truth (true stage positions, focus
offsets) and faults tests and the simulated rig use.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import TYPE_CHECKING

from pymmcore_plus.experimental.unicore import UniMMCore

from scopectl.hardware.benchtop.benchtop import Benchtop, set_pixel_size_preset
from scopectl.hardware.benchtop.focus import AutofocusSettings, FocusPlane

from .devices import SimRGBCamera, SimShutter, SimXYStage, SimZStage
from .world import Renderer, SimStageParams, SimulatedWorld, TwinRenderer

if TYPE_CHECKING:
    from scopectl.twin import Slide

__all__ = ["SimulatedBenchtop", "simulated_benchtop"]

DEFAULT_FOCUS_PLANE = FocusPlane(0.0, 0.0008, -0.0005)
"""A slightly tilted slide: 0.8 µm/mm in x, −0.5 µm/mm in y."""


class SimulatedBenchtop(Benchtop):
    """The benchtop driver on simulated devices, with the :class:`SimulatedWorld` they share.

    Build it with :func:`simulated_benchtop`.  Everything but :attr:`world` and :attr:`simulated_scope`
    is :class:`~scopectl.hardware.benchtop.Benchtop`'s.
    """

    def __init__(
        self,
        core: UniMMCore,
        *,
        world: SimulatedWorld,
        timeout_s: float = 30.0,
        z_limits_um: tuple[float, float] | None = None,
        approach_um: float = 0.0,
        autofocus_settings: AutofocusSettings | None = None,
    ) -> None:
        self.world = world
        super().__init__(
            core,
            name="simulated",
            timeout_s=timeout_s,
            z_limits_um=z_limits_um,
            approach_um=approach_um,
            autofocus_settings=autofocus_settings,
        )

    @property
    def simulated_scope(self) -> bool:
        """Always True."""
        return True


def _renderer(renderer_or_slide: Renderer | Slide | None, seed: int) -> Renderer:
    if renderer_or_slide is None:
        from scopectl.twin import make_slide  # the twin (SciPy, OpenCV) loads only when a slide is made here

        return TwinRenderer(make_slide("lung", seed=seed))
    if isinstance(renderer_or_slide, Renderer):
        return renderer_or_slide
    return TwinRenderer(renderer_or_slide)


def _load_devices(core: UniMMCore, world: SimulatedWorld, sensor_shape: tuple[int, int]) -> None:
    core.loadPyDevice("XY", SimXYStage(world))
    core.loadPyDevice("Z", SimZStage(world))
    core.loadPyDevice("Camera", SimRGBCamera(world, sensor_shape=sensor_shape))
    core.loadPyDevice("Shutter", SimShutter(world))
    core.initializeAllDevices()
    core.setXYStageDevice("XY")
    core.setFocusDevice("Z")
    core.setCameraDevice("Camera")
    core.setShutterDevice("Shutter")
    set_pixel_size_preset(core, world.pixel_size_um)


def simulated_benchtop(
    renderer_or_slide: Renderer | Slide | None = None,
    *,
    seed: int = 0,
    sensor_shape: tuple[int, int] = (2048, 2048),
    focus_plane: FocusPlane | None = None,
    stage: SimStageParams | None = None,
    slide_origin_um: tuple[float, float] = (0.0, 0.0),
    start_z_um: float | None = None,
    timeout_s: float = 30.0,
    approach_um: float = 0.0,
    reproducible: bool = False,
    autofocus_settings: AutofocusSettings | None = None,
) -> SimulatedBenchtop:
    """A simulated benchtop on ``UniMMCore`` with pure-Python devices.

    Parameters
    ----------
    renderer_or_slide
        A :class:`Renderer`, a :class:`scopectl.twin.Slide` (rendered by the twin's benchtop model), or
        ``None`` for the twin's lung slide with ``seed``.
    seed
        Seeds the slide (when made here), the stage errors and the camera noise.
    sensor_shape
        Camera ``(rows, cols)``; the paper's camera gives 2048×2048 tiles.
    focus_plane
        The slide's focal plane; default :data:`DEFAULT_FOCUS_PLANE` (a slightly tilted slide).
    stage
        Stage mechanics (travel time, limits, backlash, positioning error, ``time_scale``).
    slide_origin_um
        Stage position of the slide's top-left corner (see :class:`SimulatedWorld`).
    start_z_um
        Initial focus height (default: in focus at the stage origin).
    timeout_s, approach_um, autofocus_settings
        As for :class:`~scopectl.hardware.benchtop.Benchtop`.
    reproducible
        Stage errors and camera noise depend on the commanded position, not on history (see
        :class:`SimulatedWorld`); with ``approach_um > 0`` a resumed scan then retakes identical tiles.
    """
    plane = focus_plane if focus_plane is not None else DEFAULT_FOCUS_PLANE
    params = stage if stage is not None else SimStageParams()
    world = SimulatedWorld(
        _renderer(renderer_or_slide, seed),
        focus_plane=plane,
        stage=params,
        slide_origin_um=slide_origin_um,
        seed=seed,
        reproducible=reproducible,
    )
    core = UniMMCore(mm_path=str(Path(__file__).parent))  # any mm_path: no search for an installation
    try:
        _load_devices(core, world, sensor_shape)
        bench = SimulatedBenchtop(
            core,
            world=world,
            timeout_s=timeout_s,
            z_limits_um=params.z_limits_um,
            approach_um=approach_um,
            autofocus_settings=autofocus_settings,
        )
        bench.set_z_um(plane.z_at(0.0, 0.0) if start_z_um is None else float(start_z_um))
        return bench
    except BaseException:
        with contextlib.suppress(Exception):
            core.unloadAllDevices()
        raise
