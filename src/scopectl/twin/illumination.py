"""The phone microscope's illumination: a 12-LED NeoPixel ring behind a polymer diffuser, on a battery.

Model (each choice in ``docs/twin.md``):

* Each WS2812B LED has red, green and blue dies with narrow emission lines (623, 522, 467 nm); a
  colour value v (0-255) drives a die at duty v/255, scaled by the global brightness/255 (PWM).
* Battery: each die needs headroom above its forward voltage; its output falls linearly to zero as
  the battery voltage drops from ``Vf + 0.8 V`` to ``Vf + 0.2 V`` (blue and green, Vf ≈ 3.1 V, fade
  first; a fresh 4.1 V cell drives all dies fully, so white turns yellow-red as the battery runs down).
* Geometry: LEDs on a circle of radius 15.5 mm, 10 mm below a diffuser (50% transmission) right under
  the slide; irradiance of a Lambertian LED on the diffuser ∝ h² / (h² + s²)², blurred by the
  diffuser's scattering; plus a fixed low-frequency non-uniformity of the diffuser (±3%).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from scopectl.twin.spectra import LED_EMITTERS

__all__ = ["Illumination", "IlluminationGeometry", "battery_factors"]


@dataclass(frozen=True)
class Illumination:
    """State of the LED ring as the twin sees it.

    Attributes
    ----------
    colors
        (12, 3) uint8 RGB value of each LED.
    brightness
        Global brightness 0-255 (NeoPixel ``setBrightness``).
    battery_mv
        Battery voltage in millivolts.
    """

    colors: NDArray[np.uint8]
    brightness: int
    battery_mv: float

    def __post_init__(self) -> None:
        c = np.asarray(self.colors)
        if c.shape != (12, 3):
            raise ValueError(f"Illumination.colors must be (12, 3), got {c.shape}")
        if not 0 <= int(self.brightness) <= 255:
            raise ValueError(f"brightness must be 0..255, got {self.brightness}")
        if not 0.0 <= float(self.battery_mv) <= 10000.0:
            raise ValueError(f"battery_mv must be 0..10000, got {self.battery_mv}")
        object.__setattr__(self, "colors", np.clip(c, 0, 255).astype(np.uint8))

    @classmethod
    def white(cls, brightness: int = 255, battery_mv: float = 4100.0) -> Illumination:
        """All twelve LEDs white (255, 255, 255)."""
        return cls(colors=np.full((12, 3), 255, dtype=np.uint8), brightness=brightness, battery_mv=battery_mv)

    def to_dict(self) -> dict[str, object]:
        """JSON-serialisable description."""
        return {
            "colors": self.colors.tolist(),
            "brightness": int(self.brightness),
            "battery_mv": float(self.battery_mv),
        }


def battery_factors(battery_mv: float) -> NDArray[np.float64]:
    """Output of the red, green and blue dies relative to a full battery, at ``battery_mv``."""
    v = battery_mv / 1000.0
    out = np.array([np.clip((v - (e.forward_v + 0.2)) / 0.6, 0.0, 1.0) for e in LED_EMITTERS])
    return out


@dataclass(frozen=True)
class IlluminationGeometry:
    """Geometry of the ring and diffuser (defaults: Adafruit 12-LED ring, Zenith diffuser)."""

    ring_radius_mm: float = 15.5
    diffuser_distance_mm: float = 10.0
    diffuser_blur_mm: float = 3.0
    diffuser_transmission: float = 0.5
    nonuniformity: float = 0.03
    led_power_tolerance: float = 0.05
    unit_seed: int = 1643
    led_angles_rad: tuple[float, ...] = field(
        default_factory=lambda: tuple(2 * math.pi * k / 12 for k in range(12))
    )

    def led_power_spread(self) -> NDArray[np.float64]:
        """Fixed per-LED, per-die power factors (manufacturing spread), (12, 3)."""
        rng = np.random.default_rng([self.unit_seed, 12])
        out: NDArray[np.float64] = 1.0 + self.led_power_tolerance * rng.standard_normal((12, 3))
        return out

    def die_irradiance(
        self, illumination: Illumination, x_mm: NDArray[np.float64], y_mm: NDArray[np.float64]
    ) -> NDArray[np.float64]:
        """Relative irradiance of the red, green and blue dies at sample points (mm from the axis).

        Returns (..., 3); clear glass under twelve full-power white LEDs on a full battery gives ~1
        per die at the axis (before the emitters' relative powers are applied).
        """
        h = self.diffuser_distance_mm
        hb = math.hypot(h, self.diffuser_blur_mm)  # diffuser scattering widens the lobe
        drive = (illumination.colors.astype(np.float64) / 255.0) * (illumination.brightness / 255.0)
        drive = drive * self.led_power_spread() * battery_factors(illumination.battery_mv)[None, :]
        out = np.zeros((*np.shape(x_mm), 3))
        r = self.ring_radius_mm
        norm = 12.0 * hb**2 / (hb**2 + r**2) ** 2
        for k, ang in enumerate(self.led_angles_rad):
            s2 = (x_mm - r * math.cos(ang)) ** 2 + (y_mm - r * math.sin(ang)) ** 2
            g = hb**2 / (hb**2 + s2) ** 2 / norm
            out += g[..., None] * drive[k][None, :] if np.ndim(g) else g * drive[k]
        return out * self.diffuser_transmission / 0.5
