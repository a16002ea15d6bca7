"""The acquisition plan: a frozen, serialisable model that expands into events.

The plan is computed once from a protocol, a slide id and a seed, saved into the slide store, and executed
by :mod:`scopectl.acquisition.engine`.  A resumed acquisition loads the saved plan rather than recomputing
it, so it executes exactly the same events.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any, Literal

import numpy as np
from pydantic import Field

from scopectl.acquisition.protocol import AcquisitionProtocol
from scopectl.config.base import FrozenModel
from scopectl.errors import ConfigError

__all__ = [
    "AcquisitionPlan",
    "CaptureField",
    "Event",
    "FieldPos",
    "FocusMap",
    "ScanTiles",
    "Stitch",
    "build_plan",
]


class FieldPos(FrozenModel):
    """A phone field: its planned centre on the slide (µm)."""

    index: int = Field(ge=0)
    x_um: float
    y_um: float


class FocusMap(FrozenModel):
    kind: Literal["focus_map"] = "focus_map"
    points: tuple[tuple[float, float], ...]


class ScanTiles(FrozenModel):
    """The benchtop tile scan of the region (planned by the scope as a useq grid, run by the MDA runner)."""

    kind: Literal["tiles"] = "tiles"
    left_um: float
    top_um: float
    right_um: float
    bottom_um: float
    overlap: float


class Stitch(FrozenModel):
    kind: Literal["stitch"] = "stitch"


class CaptureField(FrozenModel):
    kind: Literal["field"] = "field"
    field: FieldPos


Event = FocusMap | ScanTiles | Stitch | CaptureField


class AcquisitionPlan(FrozenModel):
    """Everything an acquisition will do, fixed before it starts."""

    format: Literal["scopectl-acquisition-plan"] = "scopectl-acquisition-plan"
    version: Literal[1] = 1
    slide_id: str
    seed: int
    protocol: dict[str, Any]
    fields: tuple[FieldPos, ...]
    focus_points: tuple[tuple[float, float], ...]

    def protocol_model(self) -> AcquisitionProtocol:
        return AcquisitionProtocol.model_validate(self.protocol)

    def scan_event(self) -> ScanTiles:
        reg = self.protocol_model().benchtop.region
        return ScanTiles(
            left_um=reg.x_um,
            top_um=reg.y_um,
            right_um=reg.x_um + reg.width_um,
            bottom_um=reg.y_um + reg.height_um,
            overlap=float(self.protocol["benchtop"]["tile_overlap"]),
        )

    def events(self) -> Iterator[Event]:
        """Benchtop first (focus map, tiles, stitch), then the phone fields."""
        yield FocusMap(points=self.focus_points)
        yield self.scan_event()
        yield Stitch()
        for f in self.fields:
            yield CaptureField(field=f)


def build_plan(protocol: AcquisitionProtocol, *, slide_id: str, seed: int) -> AcquisitionPlan:
    """Expand a protocol into the benchtop scan, phone fields and focus points.

    Raises
    ------
    ConfigError
        If the phone fields cannot fit inside the scanned region with the requested margin.
    """
    b = protocol.benchtop
    region = b.region

    p = protocol.phone
    half_h = p.capture_shape_px[0] * p.pixel_size_um / 2
    half_w = p.capture_shape_px[1] * p.pixel_size_um / 2
    m = p.fields.margin_um
    x0, x1 = region.x_um + m + half_w, region.x_um + region.width_um - m - half_w
    y0, y1 = region.y_um + m + half_h, region.y_um + region.height_um - m - half_h
    if x1 < x0 or y1 < y0:
        raise ConfigError(
            f"protocol '{protocol.name}': a phone field ({2 * half_w:.0f}×{2 * half_h:.0f} µm) plus the "
            f"{m:.0f} µm margin does not fit in the scanned region ({region.width_um:.0f}×{region.height_um:.0f} µm).",
            hint="Enlarge benchtop.region or reduce phone.fields.margin_um.",
        )
    n = p.fields.count
    if p.fields.pattern == "grid":
        cols = math.ceil(math.sqrt(n))
        rows = math.ceil(n / cols)
        gx = [x0 + (x1 - x0) * (i + 0.5) / cols for i in range(cols)] if cols > 1 else [(x0 + x1) / 2]
        gy = [y0 + (y1 - y0) * (i + 0.5) / rows for i in range(rows)] if rows > 1 else [(y0 + y1) / 2]
        pts = [(x, y) for y in gy for x in gx][:n]
    else:
        rng = np.random.default_rng([seed, 0x5EED])
        pts = [(float(rng.uniform(x0, x1)), float(rng.uniform(y0, y1))) for _ in range(n)]
    fields = tuple(FieldPos(index=i, x_um=float(x), y_um=float(y)) for i, (x, y) in enumerate(pts))

    k = b.autofocus.map_points
    cx, cy = region.x_um + region.width_um / 2, region.y_um + region.height_um / 2
    rx, ry = region.width_um * 0.35, region.height_um * 0.35
    focus: list[tuple[float, float]] = [(cx, cy)]
    # with more points: the centre plus points on an ellipse, enough to fit a tilted plane
    focus += [
        (cx + rx * math.cos(2 * math.pi * i / (k - 1)), cy + ry * math.sin(2 * math.pi * i / (k - 1)))
        for i in range(k - 1)
    ]
    return AcquisitionPlan(
        slide_id=slide_id,
        seed=seed,
        protocol=protocol.model_dump(mode="json"),
        fields=fields,
        focus_points=tuple(focus),
    )
