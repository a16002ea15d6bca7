"""Acquisition protocols: what to acquire from one slide, as a validated YAML file.

A protocol sets the benchtop side (objective, pixel size, region, tile overlap, autofocus, exposure), the
phone side (ISO, exposure, white balance, file formats, how many fields and how they are chosen), the LED
ring (colour, brightness, settle time) and the acquisition-time checks.  One file per sample type ships in
the repository's ``protocols/`` folder: ``lung-trichrome``, ``pap-smear``, ``blood-smear``; copy one to make
a new protocol and pass its path to ``--protocol``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from scopectl.config.base import StrictModel, load_model
from scopectl.errors import ConfigError

__all__ = [
    "AcquisitionProtocol",
    "AutofocusSpec",
    "BenchtopSpec",
    "ChecksSpec",
    "FieldsSpec",
    "LedSpec",
    "PhoneSpec",
    "RegionSpec",
    "find_protocol",
    "load_protocol",
    "protocol_dirs",
]

SampleType = Literal["lung", "pap", "blood"]


class RegionSpec(StrictModel):
    """The slide region to scan, in slide coordinates (µm from the slide's top-left corner, y down)."""

    x_um: float = Field(ge=0, le=80_000)
    y_um: float = Field(ge=0, le=30_000)
    width_um: float = Field(gt=0, le=60_000)
    height_um: float = Field(gt=0, le=30_000)


class AutofocusSpec(StrictModel):
    """Image-based software autofocus (coarse-to-fine) and the focus map over the region."""

    method: Literal["software", "none"] = "software"
    range_um: float = Field(default=20.0, gt=0, le=500)
    coarse_step_um: float = Field(default=2.0, gt=0, le=100)
    fine_step_um: float = Field(default=0.25, gt=0, le=10)
    map_points: int = Field(
        default=5, ge=1, le=49, description="positions where focus is measured; plane fit"
    )


class BenchtopSpec(StrictModel):
    objective: str = "20x/0.75NA"
    pixel_size_um: float = Field(default=0.37, gt=0.01, le=20)
    tile_shape_px: tuple[int, int] = (2048, 2048)
    tile_overlap: float = Field(default=0.1, ge=0.02, le=0.5)
    exposure_ms: float = Field(default=10.0, gt=0, le=10_000)
    region: RegionSpec
    autofocus: AutofocusSpec = AutofocusSpec()

    @model_validator(mode="after")
    def _tile_shape(self) -> BenchtopSpec:
        if not all(16 <= v <= 8192 for v in self.tile_shape_px):
            raise ValueError("tile_shape_px must be between 16 and 8192 pixels per side")
        return self


class FieldsSpec(StrictModel):
    """Where the phone captures are taken, inside the scanned region."""

    count: int = Field(ge=1, le=100_000)
    pattern: Literal["grid", "random"] = "grid"
    margin_um: float = Field(default=50.0, ge=0, le=5_000, description="kept clear of the region's edge")


class PhoneSpec(StrictModel):
    iso: int = Field(default=100, ge=25, le=6400)
    exposure: Literal["auto"] = "auto"
    white_balance: Literal["cloudy", "daylight", "auto"] = "cloudy"
    formats: tuple[Literal["dng", "jpeg"], ...] = ("dng", "jpeg")
    pixel_size_um: float = Field(default=0.397, gt=0.01, le=20, description="nominal, at the sample")
    capture_shape_px: tuple[int, int] = Field(
        default=(1024, 1024), description="central crop kept per capture"
    )
    fields: FieldsSpec

    @model_validator(mode="after")
    def _formats(self) -> PhoneSpec:
        if not self.formats or len(set(self.formats)) != len(self.formats):
            raise ValueError("formats must list dng and/or jpeg, each once")
        return self


class LedSpec(StrictModel):
    color_rgb: tuple[int, int, int] = (255, 255, 255)
    brightness: int = Field(default=160, ge=1, le=255)
    settle_ms: float = Field(default=200.0, ge=0, le=60_000)

    @model_validator(mode="after")
    def _rgb(self) -> LedSpec:
        if not all(0 <= c <= 255 for c in self.color_rgb):
            raise ValueError("color_rgb values must be 0..255")
        return self


class ChecksSpec(StrictModel):
    """Acquisition-time checks: a bad dataset is caught at the bench."""

    min_battery_mv: float = Field(default=3500.0, ge=0, le=10_000)
    max_overexposed_fraction: float = Field(default=0.02, ge=0, le=1)
    min_sharpness: float = Field(
        default=0.002, ge=0, description="variance of the Laplacian of [0,1] luminance"
    )
    locate: bool = True
    min_match_inliers: int = Field(default=15, ge=4, le=10_000)
    max_location_error_um: float = Field(default=150.0, gt=0, description="vs. the planned field position")
    max_retries: int = Field(default=3, ge=0, le=20)


class AcquisitionProtocol(StrictModel):
    """One acquisition protocol (a YAML file in ``protocols/``)."""

    name: str = Field(min_length=1, max_length=64)
    sample: SampleType
    description: str = ""
    preparation: str = Field(
        default="", description="the human slide-preparation protocol (Markdown file name)"
    )
    benchtop: BenchtopSpec
    phone: PhoneSpec
    led: LedSpec = LedSpec()
    checks: ChecksSpec = ChecksSpec()


def protocol_dirs() -> list[Path]:
    """Where named protocols are looked up: ``$SCOPECTL_PROTOCOLS`` (os.pathsep-separated), then the
    package's ``data/protocols`` (a link to the repository's ``protocols/`` in a checkout, a copy in an
    installed wheel), then the repository's ``protocols/`` (for checkouts without symbolic links)."""
    dirs = [Path(p) for p in os.environ.get("SCOPECTL_PROTOCOLS", "").split(os.pathsep) if p]
    here = Path(__file__).resolve()
    dirs.append(here.parents[1] / "data" / "protocols")
    dirs.append(here.parents[3] / "protocols")
    return dirs


def find_protocol(name_or_path: str) -> Path:
    """Resolve ``--protocol NAME|PATH`` to a file."""
    p = Path(name_or_path)
    if p.suffix.lower() in (".yaml", ".yml", ".json") or os.sep in name_or_path:
        if not p.is_file():
            raise ConfigError(f"{p}: protocol file not found.")
        return p
    for d in protocol_dirs():
        for ext in (".yaml", ".yml"):
            cand = d / f"{name_or_path}{ext}"
            if cand.is_file():
                return cand
    known = sorted({f.stem for d in protocol_dirs() if d.is_dir() for f in d.glob("*.yaml")})
    raise ConfigError(
        f"unknown protocol '{name_or_path}'.",
        hint=f"Known: {', '.join(known) or 'none'}; or pass the path of a protocol YAML file.",
    )


def load_protocol(name_or_path: str) -> AcquisitionProtocol:
    """Load and validate a protocol by name or path."""
    return load_model(AcquisitionProtocol, find_protocol(name_or_path))
