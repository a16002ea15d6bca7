"""Pure-Python Micro-Manager devices of the simulated benchtop (pymmcore-plus ``UniMMCore``).

Four device adapters — XY stage, Z drive, RGB camera and shutter — that share one
:class:`~scopectl.hardware.benchtop.sim.world.SimulatedWorld`.  They can be loaded two ways:

- by :func:`scopectl.hardware.benchtop.sim.simulated_benchtop`, which passes the world to the constructors;
- from a Micro-Manager configuration file, like real adapters::

      #py pyDevice,XY,scopectl.hardware.benchtop.sim.devices,SimXYStage
      #py pyDevice,Z,scopectl.hardware.benchtop.sim.devices,SimZStage
      #py pyDevice,Camera,scopectl.hardware.benchtop.sim.devices,SimRGBCamera
      #py pyDevice,Shutter,scopectl.hardware.benchtop.sim.devices,SimShutter
      #py Property,Core,Initialize,1

  Constructed without arguments, each device joins the world named by its ``World`` property
  (``"default"``: the digital twin's lung slide; see :func:`~scopectl.hardware.benchtop.sim.world.get_world`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
from pymmcore_plus.experimental.unicore import CameraDevice, ShutterDevice, StageDevice, XYStageDevice

from .world import SimulatedWorld, get_world

__all__ = ["SimRGBCamera", "SimShutter", "SimXYStage", "SimZStage", "simulated_config_text"]

WORLD_PROPERTY = "World"


class _WorldMixin:
    """Holds the shared world: given at construction, or looked up by name at initialisation."""

    _world: SimulatedWorld | None
    _world_name: str

    def _init_world(self, world: SimulatedWorld | None) -> None:
        self._world = world
        self._world_name = "default"

    def get_world_name(self) -> str:
        return self._world_name

    def set_world_name(self, value: str) -> None:
        self._world_name = str(value)

    @property
    def world(self) -> SimulatedWorld:
        """The world this device belongs to (resolved on first use)."""
        if self._world is None:
            self._world = get_world(self._world_name)
        return self._world


def _register_world_property(dev: Any) -> None:
    dev.register_property(
        name=WORLD_PROPERTY,
        default_value="default",
        getter=type(dev).get_world_name,
        setter=type(dev).set_world_name,
        is_pre_init=True,
    )


class SimXYStage(_WorldMixin, XYStageDevice):
    """Simulated motorised XY stage with travel time, limits, backlash and positioning error."""

    def __init__(self, world: SimulatedWorld | None = None) -> None:
        super().__init__()
        self._init_world(world)
        self._origin = (0.0, 0.0)
        _register_world_property(self)

    def initialize(self) -> None:
        _ = self.world

    def set_position_um(self, x: float, y: float) -> None:
        self.world.move_xy(float(x) + self._origin[0], float(y) + self._origin[1])
        self.core.events.XYStagePositionChanged.emit(self.get_label(), float(x), float(y))

    def get_position_um(self) -> tuple[float, float]:
        x, y = self.world.reported_xy()
        return x - self._origin[0], y - self._origin[1]

    def busy(self) -> bool:
        return self.world.xy_busy()

    def home(self) -> None:
        self._origin = (0.0, 0.0)
        self.world.move_xy(0.0, 0.0)

    def stop(self) -> None:
        self.world.stop_xy()

    def set_origin_x(self) -> None:
        x, _ = self.world.reported_xy()
        self._origin = (x, self._origin[1])

    def set_origin_y(self) -> None:
        _, y = self.world.reported_xy()
        self._origin = (self._origin[0], y)


class SimZStage(_WorldMixin, StageDevice):
    """Simulated motorised focus drive with travel time and limits."""

    def __init__(self, world: SimulatedWorld | None = None) -> None:
        super().__init__()
        self._init_world(world)
        _register_world_property(self)

    def initialize(self) -> None:
        _ = self.world

    def set_position_um(self, val: float) -> None:
        self.world.move_z(float(val))
        self.core.events.stagePositionChanged.emit(self.get_label(), float(val))

    def get_position_um(self) -> float:
        return self.world.z()

    def busy(self) -> bool:
        return self.world.z_busy()

    def home(self) -> None:
        self.world.move_z(0.0)

    def stop(self) -> None:
        self.world.stop_z()

    def set_origin(self) -> None:
        raise NotImplementedError("the simulated focus drive has a fixed origin")


class SimShutter(_WorldMixin, ShutterDevice):
    """Simulated transmitted-light shutter: the camera sees a dark frame while it is closed."""

    def __init__(self, world: SimulatedWorld | None = None) -> None:
        super().__init__()
        self._init_world(world)
        _register_world_property(self)

    def initialize(self) -> None:
        _ = self.world

    def get_open(self) -> bool:
        return self.world.shutter_open()

    def set_open(self, open: bool) -> None:
        self.world.set_shutter(bool(open))


class SimRGBCamera(_WorldMixin, CameraDevice):
    """Simulated 8-bit RGB camera rendering the world at the stage position and focus.

    Supports a hardware-like ROI: only the ROI is rendered (autofocus uses a central ROI to be fast).
    """

    def __init__(
        self, world: SimulatedWorld | None = None, *, sensor_shape: tuple[int, int] = (2048, 2048)
    ) -> None:
        super().__init__()
        self._init_world(world)
        self._exposure_ms = 10.0
        self._sensor = (int(sensor_shape[0]), int(sensor_shape[1]))
        self._roi: tuple[int, int, int, int] | None = None
        _register_world_property(self)
        self.register_property(
            name="SensorRows",
            default_value=self._sensor[0],
            getter=SimRGBCamera.get_sensor_rows,
            setter=SimRGBCamera.set_sensor_rows,
            limits=(16, 8192),
            is_pre_init=True,
        )
        self.register_property(
            name="SensorCols",
            default_value=self._sensor[1],
            getter=SimRGBCamera.get_sensor_cols,
            setter=SimRGBCamera.set_sensor_cols,
            limits=(16, 8192),
            is_pre_init=True,
        )

    def initialize(self) -> None:
        _ = self.world

    # sensor size properties (pre-init, so a configuration file can set them)
    def get_sensor_rows(self) -> int:
        return self._sensor[0]

    def set_sensor_rows(self, value: int) -> None:
        self._sensor = (int(value), self._sensor[1])
        self._roi = None

    def get_sensor_cols(self) -> int:
        return self._sensor[1]

    def set_sensor_cols(self, value: int) -> None:
        self._sensor = (self._sensor[0], int(value))
        self._roi = None

    # CameraDevice API
    def get_exposure(self) -> float:
        return self._exposure_ms

    def set_exposure(self, exposure: float) -> None:
        exposure = float(exposure)
        if not 0.0 < exposure <= 10_000.0:
            raise ValueError(f"exposure {exposure} ms is outside (0, 10000] ms")
        self._exposure_ms = exposure

    def shape(self) -> tuple[int, int, int]:
        if self._roi is not None:
            return (self._roi[3], self._roi[2], 3)
        return (self._sensor[0], self._sensor[1], 3)

    def dtype(self) -> np.dtype[np.uint8]:
        return np.dtype(np.uint8)

    def get_roi(self) -> tuple[int, int, int, int]:
        if self._roi is not None:
            return self._roi
        return (0, 0, self._sensor[1], self._sensor[0])

    def set_roi(self, x: int, y: int, width: int, height: int) -> None:
        rows, cols = self._sensor
        if x < 0 or y < 0 or width <= 0 or height <= 0 or x + width > cols or y + height > rows:
            raise ValueError(f"ROI ({x}, {y}, {width}, {height}) does not fit the {cols}x{rows} sensor")
        self._roi = (int(x), int(y), int(width), int(height))

    def clear_roi(self) -> None:
        self._roi = None

    def _frame(self) -> np.ndarray:
        rows, cols = self._sensor
        x, y, w, h = self.get_roi()
        offset = (y + (h - 1) / 2.0 - (rows - 1) / 2.0, x + (w - 1) / 2.0 - (cols - 1) / 2.0)
        return self.world.snap(shape=(h, w), exposure_ms=self._exposure_ms, offset_px=offset)

    def start_sequence(
        self, n: int | None, get_buffer: Callable[[Sequence[int], Any], np.ndarray]
    ) -> Iterator[Mapping[str, Any]]:
        count = 0
        limit = n if n is not None else 2**63
        while count < limit:
            frame = self._frame()
            buf = get_buffer(frame.shape, np.uint8)
            buf[:] = frame
            yield {"SimSnapIndex": str(self.world.snap_log[-1].index)}
            count += 1


def simulated_config_text(*, world: str = "default", sensor_shape: tuple[int, int] = (2048, 2048)) -> str:
    """A Micro-Manager configuration that loads the simulated benchtop's devices.

    Micro-Manager cannot express a pixel size for Python devices in a configuration file (a preset bound
    to a Python-device property never matches), so pass ``pixel_size_um`` to ``Benchtop.from_config``
    (0.37 µm for the twin's benchtop model).
    """
    mod = __name__
    lines = [
        "# scopectl simulated benchtop (pymmcore-plus UniMMCore with Python devices)",
        f"#py pyDevice,XY,{mod},SimXYStage",
        f"#py pyDevice,Z,{mod},SimZStage",
        f"#py pyDevice,Camera,{mod},SimRGBCamera",
        f"#py pyDevice,Shutter,{mod},SimShutter",
        *(f"#py Property,{label},World,{world}" for label in ("XY", "Z", "Camera", "Shutter")),
        f"#py Property,Camera,SensorRows,{int(sensor_shape[0])}",
        f"#py Property,Camera,SensorCols,{int(sensor_shape[1])}",
        "Property,Core,Initialize,1",
        "#py Property,Core,Camera,Camera",
        "#py Property,Core,XYStage,XY",
        "#py Property,Core,Focus,Z",
        "#py Property,Core,Shutter,Shutter",
    ]
    return "\n".join(lines) + "\n"
