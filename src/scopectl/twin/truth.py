"""Ground truth of a phone capture: the exact mapping from phone pixels to slide µm.

The mapping is ``slide = H · (p + w(p))`` in homogeneous coordinates, where ``p = (col, row)`` is a
phone pixel (of the capture as stored, pixel centres at integer coordinates), ``w`` a smooth
displacement field in pixels (radial lens distortion about the optical axis plus a random
low-frequency component, a sum of a few sinusoidal modes), and ``H`` a 3×3 homography (scale,
rotation, translation and a small perspective tilt) from undistorted phone pixels to slide µm. It is
the mapping of the green channel; red and blue are magnified by ``1 + lateral_colour[c]`` about the
optical axis before the distortion (lateral chromatic aberration).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = ["PhoneGroundTruth", "WarpMode"]


@dataclass(frozen=True)
class WarpMode:
    """One sinusoidal mode of the random warp: displacement (amp_col, amp_row) px · sin(2π f·p + phase)."""

    amp_col_px: float
    amp_row_px: float
    freq_col: float  # cycles per pixel
    freq_row: float
    phase: float


@dataclass(frozen=True)
class PhoneGroundTruth:
    """Exact mapping of one capture's pixels to slide µm (see the module docstring).

    Attributes
    ----------
    homography
        (3, 3) from undistorted phone pixel (col, row, 1) to slide (x, y, w) µm.
    shape
        (rows, columns) of the capture.
    axis_px
        (row, col) of the optical axis in the capture.
    field_radius_px
        Radius (px) at which the normalised field coordinate rho is 1.
    distortion_k1
        Radial distortion: displacement = d · k1 · rho² (d = p - axis).
    warp_modes
        The random low-frequency component.
    lateral_colour
        (red, green, blue) relative magnification (green is 0).
    pixel_size_um
        Nominal phone pixel size at the sample.
    """

    homography: NDArray[np.float64]
    shape: tuple[int, int]
    axis_px: tuple[float, float]
    field_radius_px: float
    distortion_k1: float
    warp_modes: tuple[WarpMode, ...] = ()
    lateral_colour: tuple[float, float, float] = (0.0, 0.0, 0.0)
    pixel_size_um: float = 0.4043
    extra: dict[str, Any] = field(default_factory=dict)

    # ------------------------------------------------------------------ mapping
    def displacement_px(
        self, rows: NDArray[np.float64], cols: NDArray[np.float64]
    ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """The warp w(p): (d_row, d_col) in pixels at phone pixels (rows, cols)."""
        rows = np.asarray(rows, dtype=np.float64)
        cols = np.asarray(cols, dtype=np.float64)
        dr = rows - self.axis_px[0]
        dc = cols - self.axis_px[1]
        rho2 = (dr * dr + dc * dc) / self.field_radius_px**2
        out_r = dr * self.distortion_k1 * rho2
        out_c = dc * self.distortion_k1 * rho2
        for m in self.warp_modes:
            s = np.sin(2 * math.pi * (m.freq_col * cols + m.freq_row * rows) + m.phase)
            out_r = out_r + m.amp_row_px * s
            out_c = out_c + m.amp_col_px * s
        return out_r, out_c

    def to_slide_um(
        self, rows: NDArray[np.float64], cols: NDArray[np.float64], *, channel: int = 1
    ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """Slide (x_um, y_um) imaged at phone pixels (rows, cols); ``channel`` 0/1/2 = R/G/B."""
        rows = np.asarray(rows, dtype=np.float64)
        cols = np.asarray(cols, dtype=np.float64)
        d_r, d_c = self.displacement_px(rows, cols)
        ur = rows + d_r
        uc = cols + d_c
        mag = 1.0 + self.lateral_colour[channel]
        if mag != 1.0:
            ur = self.axis_px[0] + (ur - self.axis_px[0]) / mag
            uc = self.axis_px[1] + (uc - self.axis_px[1]) / mag
        h = self.homography
        w = h[2, 0] * uc + h[2, 1] * ur + h[2, 2]
        x = (h[0, 0] * uc + h[0, 1] * ur + h[0, 2]) / w
        y = (h[1, 0] * uc + h[1, 1] * ur + h[1, 2]) / w
        return x, y

    def to_phone_px(
        self, x_um: NDArray[np.float64], y_um: NDArray[np.float64], *, iterations: int = 8
    ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """Inverse mapping: phone (rows, cols) that image slide points (green channel).

        Inverts the homography exactly and the (small, smooth) warp by fixed-point iteration; the
        residual is below 1e-6 px for warps of a few pixels.
        """
        x = np.asarray(x_um, dtype=np.float64)
        y = np.asarray(y_um, dtype=np.float64)
        hi = np.linalg.inv(self.homography)
        w = hi[2, 0] * x + hi[2, 1] * y + hi[2, 2]
        uc = (hi[0, 0] * x + hi[0, 1] * y + hi[0, 2]) / w
        ur = (hi[1, 0] * x + hi[1, 1] * y + hi[1, 2]) / w
        rows, cols = ur.copy(), uc.copy()
        for _ in range(iterations):
            d_r, d_c = self.displacement_px(rows, cols)
            rows = ur - d_r
            cols = uc - d_c
        return rows, cols

    def warp_field(self, *, step_px: int = 32) -> dict[str, Any]:
        """The displacement field sampled every ``step_px`` pixels (for consumers without this code)."""
        rr = np.arange(0, self.shape[0] + step_px - 1, step_px, dtype=np.float64)
        cc = np.arange(0, self.shape[1] + step_px - 1, step_px, dtype=np.float64)
        rows, cols = np.meshgrid(rr, cc, indexing="ij")
        d_r, d_c = self.displacement_px(rows, cols)
        return {
            "step_px": step_px,
            "rows": rr.tolist(),
            "cols": cc.tolist(),
            "d_row_px": d_r.tolist(),
            "d_col_px": d_c.tolist(),
        }

    # ------------------------------------------------------------------ serialisation
    def to_dict(self, *, include_field: bool = False) -> dict[str, Any]:
        """JSON-serialisable description (exact: :meth:`from_dict` restores the same mapping)."""
        out: dict[str, Any] = {
            "format": "scopectl.twin.truth",
            "schema_version": 1,
            "mapping": "slide_um = H @ (p + w(p)); p = (col, row, 1); see scopectl.twin.truth",
            "homography": self.homography.tolist(),
            "shape": list(self.shape),
            "axis_px": list(self.axis_px),
            "field_radius_px": self.field_radius_px,
            "distortion_k1": self.distortion_k1,
            "warp_modes": [
                {
                    "amp_col_px": m.amp_col_px,
                    "amp_row_px": m.amp_row_px,
                    "freq_col": m.freq_col,
                    "freq_row": m.freq_row,
                    "phase": m.phase,
                }
                for m in self.warp_modes
            ],
            "lateral_colour": list(self.lateral_colour),
            "pixel_size_um": self.pixel_size_um,
            "extra": self.extra,
        }
        if include_field:
            out["warp_field"] = self.warp_field()
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PhoneGroundTruth:
        """Inverse of :meth:`to_dict`; raises ValueError on malformed input."""
        try:
            h = np.asarray(data["homography"], dtype=np.float64)
            if h.shape != (3, 3) or not np.all(np.isfinite(h)):
                raise ValueError("homography must be a finite 3x3 matrix")
            shape = (int(data["shape"][0]), int(data["shape"][1]))
            axis = (float(data["axis_px"][0]), float(data["axis_px"][1]))
            modes = tuple(
                WarpMode(
                    float(m["amp_col_px"]),
                    float(m["amp_row_px"]),
                    float(m["freq_col"]),
                    float(m["freq_row"]),
                    float(m["phase"]),
                )
                for m in data.get("warp_modes", [])
            )
            lat = tuple(float(v) for v in data.get("lateral_colour", (0.0, 0.0, 0.0)))
            if len(lat) != 3:
                raise ValueError("lateral_colour must have three values")
            return cls(
                homography=h,
                shape=shape,
                axis_px=axis,
                field_radius_px=float(data["field_radius_px"]),
                distortion_k1=float(data["distortion_k1"]),
                warp_modes=modes,
                lateral_colour=(lat[0], lat[1], lat[2]),
                pixel_size_um=float(data.get("pixel_size_um", 0.4043)),
                extra=dict(data.get("extra", {})),
            )
        except (KeyError, TypeError, IndexError) as exc:
            raise ValueError(f"malformed ground-truth mapping: {exc!r}") from None
