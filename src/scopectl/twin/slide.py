"""Virtual slides: stain amounts and depths in physical coordinates, rendered on demand.

A :class:`Slide` is a continuous object in slide µm (origin at the top-left corner, x to the right,
y down). :meth:`Slide.render` samples any region at any pixel size and returns, per depth layer, the
amount of each stain (its peak optical density) in every pixel, plus the height of the slide's focal
plane. Instruments turn amounts into transmitted light with the stains' absorbance spectra
(Beer-Lambert), so colour follows the illumination spectrum the way real dyes do.

Procedural slides place their objects per spatial cell from a hash of (seed, cell): rendering a region
touches only the cells near it, so slides of many mm² need no memory beyond the rendered pixels, and
the same region always renders to the same values.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from numpy.typing import NDArray

from scopectl.errors import InputFileError
from scopectl.twin.noise import (
    Grid,
    aligned_grid,
    cell_points,
    fibres,
    fractal_noise,
    upsample_field,
    value_noise,
    worley_f1_f2,
)
from scopectl.twin.spectra import STAINS, Stain, cie_xyz_cmfs, srgb_from_xyz_matrix

__all__ = [
    "BarTargetSlide",
    "BloodSlide",
    "ImageSlide",
    "LungSlide",
    "PapSlide",
    "Slide",
    "SlideLayer",
    "SlideRender",
    "make_slide",
    "slide_from_image",
]

SampleName = str


@dataclass
class SlideLayer:
    """Stain amounts of the objects at one depth.

    Attributes
    ----------
    z_um
        Depth of the layer relative to the slide's focal plane (positive = farther from the objective).
    amounts
        (rows, columns, n_stains) float32 peak optical densities.
    """

    z_um: float
    amounts: NDArray[np.float32]


@dataclass
class SlideRender:
    """A rendered region: the grid, the stains, the layers and the focal-plane height map."""

    grid: Grid
    stains: tuple[Stain, ...]
    layers: list[SlideLayer]
    surface_um: NDArray[np.float32]

    def optical_density(self, layer: SlideLayer) -> NDArray[np.float32]:
        """Optical density per wavelength band, (rows, columns, N_BANDS), of one layer."""
        spectra = np.stack([s.absorbance for s in self.stains], axis=0).astype(np.float32)
        out: NDArray[np.float32] = layer.amounts @ spectra
        return out


class Slide(ABC):
    """A virtual slide of physical size ``width_um`` × ``height_um``.

    Subclasses define :attr:`stains` and :meth:`_render_layers`. Regions outside the slide render as
    clear glass.
    """

    sample: str
    width_um: float
    height_um: float
    stains: tuple[Stain, ...]

    def __init__(self, *, sample: str, width_um: float, height_um: float, stains: tuple[Stain, ...]) -> None:
        if width_um <= 0 or height_um <= 0:
            raise ValueError(f"slide size must be positive, got {width_um} x {height_um} µm")
        self.sample = sample
        self.width_um = float(width_um)
        self.height_um = float(height_um)
        self.stains = stains

    def stain_index(self, name: str) -> int:
        """Index of a stain in :attr:`stains`."""
        for k, s in enumerate(self.stains):
            if s.name == name:
                return k
        raise KeyError(name)

    def render(
        self, *, x0_um: float, y0_um: float, shape: tuple[int, int], pixel_size_um: float
    ) -> SlideRender:
        """Render a region.

        Parameters
        ----------
        x0_um, y0_um
            Centre of pixel (0, 0) in slide µm.
        shape
            (rows, columns) of the grid.
        pixel_size_um
            Sampling; edges are antialiased over one pixel (an approximation of the pixel aperture).
        """
        grid = Grid(x0_um=x0_um, y0_um=y0_um, shape=shape, pixel_size_um=pixel_size_um)
        layers = self._render_layers(grid)
        for layer in layers:  # textures can push a stain's amount below zero: clip (amounts are physical)
            np.maximum(layer.amounts, 0.0, out=layer.amounts)
        inside = self._inside_mask(grid)
        if inside is not None:
            for layer in layers:
                layer.amounts *= inside[..., None]
        return SlideRender(grid=grid, stains=self.stains, layers=layers, surface_um=self.surface_um(grid))

    def _inside_mask(self, grid: Grid) -> NDArray[np.float32] | None:
        xs, ys = grid.xs, grid.ys
        if xs[0] >= 0 and ys[0] >= 0 and xs[-1] <= self.width_um and ys[-1] <= self.height_um:
            return None
        mx = ((xs >= 0) & (xs <= self.width_um)).astype(np.float32)
        my = ((ys >= 0) & (ys <= self.height_um)).astype(np.float32)
        out: NDArray[np.float32] = my[:, None] * mx[None, :]
        return out

    def surface_um(self, grid: Grid) -> NDArray[np.float32]:
        """Height (µm) of the focal plane of the specimen at each pixel (flat unless overridden)."""
        return np.zeros(grid.shape, dtype=np.float32)

    def depth_extent_um(self) -> float:
        """A bound on |depth| (µm) of any object relative to the nominal focal plane (0 for flat slides)."""
        return 0.0

    @abstractmethod
    def _render_layers(self, grid: Grid) -> list[SlideLayer]:
        """Stain amounts per depth layer on ``grid``."""


# --------------------------------------------------------------------------------------------------
# Object stamping


def _bbox(grid: Grid, cx: float, cy: float, radius: float) -> tuple[int, int, int, int] | None:
    p = grid.pixel_size_um
    c0 = max(math.floor((cx - radius - grid.x0_um) / p), 0)
    c1 = min(math.ceil((cx + radius - grid.x0_um) / p) + 1, grid.shape[1])
    r0 = max(math.floor((cy - radius - grid.y0_um) / p), 0)
    r1 = min(math.ceil((cy + radius - grid.y0_um) / p) + 1, grid.shape[0])
    if c0 >= c1 or r0 >= r1:
        return None
    return r0, r1, c0, c1


@dataclass
class _Blob:
    """Local coordinates of an irregular ellipse on a grid window."""

    r0: int
    r1: int
    c0: int
    c1: int
    coverage: NDArray[np.float32]  # 0..1, antialiased edge
    rho: NDArray[np.float32]  # normalised radius (0 centre, 1 edge)
    u: NDArray[np.float32]  # coordinate along the major axis, µm
    v: NDArray[np.float32]  # coordinate along the minor axis, µm


def _blob(
    grid: Grid,
    cx: float,
    cy: float,
    ra: float,
    rb: float,
    theta: float,
    wobble: tuple[tuple[int, float, float], ...] = (),
) -> _Blob | None:
    """An ellipse (semi-axes ``ra`` ≥ ``rb`` µm, angle ``theta``) with radius modulated by harmonics."""
    amp = sum(a for _, a, _ in wobble)
    box = _bbox(grid, cx, cy, ra * (1.0 + amp) + grid.pixel_size_um)
    if box is None:
        return None
    r0, r1, c0, c1 = box
    p = grid.pixel_size_um
    x = (grid.x0_um + np.arange(c0, c1) * p - cx).astype(np.float32)[None, :]
    y = (grid.y0_um + np.arange(r0, r1) * p - cy).astype(np.float32)[:, None]
    ct, st = np.float32(math.cos(theta)), np.float32(math.sin(theta))
    u = x * ct + y * st
    v = -x * st + y * ct
    dist = np.sqrt(u * u + v * v)
    # ellipse: r_dir / dist = 1 / rho_e with rho_e the normalised elliptical radius (no trigonometry)
    rho_e = np.sqrt((u * np.float32(1.0 / ra)) ** 2 + (v * np.float32(1.0 / rb)) ** 2)
    r_dir = dist / np.maximum(rho_e, np.float32(1e-6))
    r_dir[rho_e < 1e-6] = min(ra, rb)
    if wobble:
        # cos(k·phi + ph) = Re(z^k · e^{i ph}) with z = (u + i v) / dist
        z = (u + 1j * v).astype(np.complex64) / np.maximum(dist, np.float32(1e-6))
        mod = np.ones_like(dist)
        zk = np.ones_like(z)
        kk = 0
        for k, a, ph in sorted(wobble):
            while kk < k:
                zk = zk * z
                kk += 1
            mod += np.float32(a) * (zk * np.complex64(complex(math.cos(ph), math.sin(ph)))).real
        r_dir = r_dir * mod
    cov = np.clip(0.5 + (r_dir - dist) / np.float32(p), 0.0, 1.0).astype(np.float32)
    rho = (dist / np.maximum(r_dir, np.float32(1e-6))).astype(np.float32)
    return _Blob(r0, r1, c0, c1, cov, rho, u.astype(np.float32), v.astype(np.float32))


def _add(
    layer: NDArray[np.float32], blob: _Blob, density: NDArray[np.float32], amounts: dict[int, float]
) -> None:
    win = layer[blob.r0 : blob.r1, blob.c0 : blob.c1]
    vec = np.zeros(layer.shape[2], dtype=np.float32)
    for k, a in amounts.items():
        vec[k] = a
    win += density[..., None] * vec


def _local_noise(blob: _Blob, *, seed: float, freq: float) -> NDArray[np.float32]:
    """Cheap granular texture in [-1, 1] inside a blob (sum of two hashed plane waves)."""
    a = seed * 12.9898
    out: NDArray[np.float32] = (
        0.5 * np.sin(freq * (blob.u * math.cos(a) + blob.v * math.sin(a)) + 7.0 * seed)
        + 0.5 * np.sin(1.7 * freq * (blob.u * math.sin(3 * a) - blob.v * math.cos(3 * a)) + 13.0 * seed)
    ).astype(np.float32)
    return out


def _wobble(attrs: NDArray[np.float64], start: int, strength: float) -> tuple[tuple[int, float, float], ...]:
    return (
        (2, strength * attrs[start], 2 * math.pi * attrs[start + 1]),
        (3, 0.6 * strength * attrs[start + 2], 2 * math.pi * attrs[start + 3]),
        (5, 0.3 * strength * attrs[start + 4], 2 * math.pi * attrs[start + 5]),
    )


def _stains(*names: str) -> tuple[Stain, ...]:
    return tuple(STAINS[n] for n in names)


def _smoothstep(x: NDArray[np.float32]) -> NDArray[np.float32]:
    t = np.clip(x, 0.0, 1.0)
    out: NDArray[np.float32] = t * t * (3.0 - 2.0 * t)
    return out


class _ProceduralSlide(Slide):
    """Common parts of the procedural slides: a seed and a smooth focal-plane height map."""

    surface_amplitude_um: float = 0.5
    surface_tilt_um_per_mm: float = 0.4

    def __init__(
        self, *, sample: str, seed: int, width_um: float, height_um: float, stains: tuple[Stain, ...]
    ) -> None:
        super().__init__(sample=sample, width_um=width_um, height_um=height_um, stains=stains)
        self.seed = int(seed)
        rng = np.random.default_rng([self.seed, 7])
        angle = rng.uniform(0, 2 * math.pi)
        self._tilt = (
            self.surface_tilt_um_per_mm * 1e-3 * math.cos(angle),
            self.surface_tilt_um_per_mm * 1e-3 * math.sin(angle),
        )

    layer_z_um: tuple[float, ...] = (0.0,)

    def depth_extent_um(self) -> float:
        tilt = math.hypot(*self._tilt) * math.hypot(self.width_um, self.height_um) / 2
        return max(abs(z) for z in self.layer_z_um) + 1.5 * self.surface_amplitude_um + tilt

    def surface_um(self, grid: Grid) -> NDArray[np.float32]:
        coarse = aligned_grid(grid, spacing_um=20.0)
        field = self.surface_amplitude_um * fractal_noise(
            coarse, seed=self.seed, salt=901, scale_um=600.0, octaves=2
        )
        cx, cy = self.width_um / 2, self.height_um / 2
        field = field + (
            self._tilt[0] * (coarse.xs[None, :] - cx) + self._tilt[1] * (coarse.ys[:, None] - cy)
        ).astype(np.float32)
        return upsample_field(field.astype(np.float32), coarse_grid=coarse, grid=grid)

    def _fine_texture(
        self, grid: Grid, *, salt: int, scale_um: float = 2.4, ridged: bool = False
    ) -> NDArray[np.float32]:
        """Granular (or, ``ridged``, fibrous) texture down to ~0.6 µm, roughly in [-1, 1]."""
        n = fractal_noise(grid, seed=self.seed, salt=salt, scale_um=scale_um, octaves=3, gain=0.7)
        if ridged:
            out: NDArray[np.float32] = (1.0 - 4.0 * np.abs(n)).astype(np.float32)
            return out
        return (2.2 * n).astype(np.float32)

    def _points(
        self, grid: Grid, *, salt: int, cell_um: float, reach_um: float, per_cell: int = 1, n_attrs: int = 12
    ) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
        x, y, attrs = cell_points(
            seed=self.seed,
            salt=salt,
            cell_um=cell_um,
            x0_um=grid.x0_um - reach_um,
            y0_um=grid.y0_um - reach_um,
            x1_um=grid.x1_um + reach_um,
            y1_um=grid.y1_um + reach_um,
            per_cell=per_cell,
            n_attrs=n_attrs,
        )
        keep = (x >= 0) & (x <= self.width_um) & (y >= 0) & (y <= self.height_um)
        return x[keep], y[keep], attrs[keep]


def _window(field: NDArray[np.float32], blob: _Blob) -> NDArray[np.float32]:
    """The part of a full-grid field under a blob."""
    return field[blob.r0 : blob.r1, blob.c0 : blob.c1]


def _sample_at(
    field: NDArray[np.float32], coarse: Grid, x: NDArray[np.float64], y: NDArray[np.float64]
) -> NDArray[np.float32]:
    """Nearest-sample lookup of a coarse field at points (clipped to its extent)."""
    c = np.clip(np.rint((x - coarse.x0_um) / coarse.pixel_size_um).astype(np.int64), 0, coarse.shape[1] - 1)
    r = np.clip(np.rint((y - coarse.y0_um) / coarse.pixel_size_um).astype(np.int64), 0, coarse.shape[0] - 1)
    out: NDArray[np.float32] = field[r, c]
    return out


# --------------------------------------------------------------------------------------------------
# Masson's trichrome lung


class LungSlide(_ProceduralSlide):
    """Masson's-trichrome-stained lung section (~4 µm thick).

    Alveolar septa (a Worley-noise cell wall network, ~100 µm alveoli) and denser interstitial regions
    carry blue collagen (aniline blue) with fibrous texture and red cytoplasm / smooth muscle (Biebrich
    scarlet-acid fuchsin); elongated dark nuclei (Weigert's iron haematoxylin) sit in the tissue at
    their own depth; a few red cells in capillaries and macrophages in the air spaces.
    """

    surface_amplitude_um = 0.5
    layer_z_um = (-0.7, 0.0, 0.7)
    wall_um = (8.0, 20.0)
    dense_threshold = -0.1
    dense_scale_um = 150.0
    red_bias = 0.25
    collagen_od = 0.24
    cytoplasm_od = 0.45
    fibril_width_um = 0.7
    fibril_amp = 1.0
    grain_scale_um = 0.8
    grain_amp = 0.9
    chromatin_amp = 0.6

    def __init__(self, *, seed: int, width_um: float = 4000.0, height_um: float = 4000.0) -> None:
        super().__init__(
            sample="lung",
            seed=seed,
            width_um=width_um,
            height_um=height_um,
            stains=_stains("aniline_blue", "biebrich_fuchsin", "iron_haematoxylin", "haemoglobin"),
        )

    def _tissue(self, grid: Grid) -> NDArray[np.float32]:
        """Tissue fraction 0..1 (septa plus dense regions) on ``grid`` (already antialiased)."""
        f1, f2 = worley_f1_f2(grid, seed=self.seed, salt=11, cell_um=85.0)
        wall = self.wall_um[0] + (self.wall_um[1] - self.wall_um[0]) / 2 * (
            value_noise(grid, seed=self.seed, salt=12, scale_um=80.0) + 1.0
        )
        wall += 5.0 * np.maximum(value_noise(grid, seed=self.seed, salt=13, scale_um=35.0), 0.0)
        septa = np.clip(0.5 + (wall / 2.0 - (f2 - f1) / 2.0) / max(grid.pixel_size_um, 0.5), 0.0, 1.0)
        dense = _smoothstep(
            (
                fractal_noise(grid, seed=self.seed, salt=14, scale_um=self.dense_scale_um, octaves=2)
                - self.dense_threshold
            )
            / 0.15
        )
        out: NDArray[np.float32] = np.maximum(septa, dense).astype(np.float32)
        return out

    def _render_layers(self, grid: Grid) -> list[SlideLayer]:
        layers = [np.zeros((*grid.shape, len(self.stains)), dtype=np.float32) for _ in self.layer_z_um]
        coarse = aligned_grid(grid, spacing_um=1.0) if grid.pixel_size_um < 1.0 else grid
        tissue_c = self._tissue(coarse)
        tissue = upsample_field(tissue_c, coarse_grid=coarse, grid=grid) if coarse is not grid else tissue_c
        tissue = np.clip(tissue, 0.0, 1.0)
        fibre = fractal_noise(grid, seed=self.seed, salt=21, scale_um=7.0, octaves=2)
        red_zone = _smoothstep(
            (fractal_noise(grid, seed=self.seed, salt=22, scale_um=90.0, octaves=2) + self.red_bias) / 0.5
        )
        fibrils = (
            2.0 * fibres(grid, seed=self.seed, salt=23, width_um=self.fibril_width_um, length_um=12.0) - 0.5
        )
        grain = self._fine_texture(grid, salt=24, scale_um=self.grain_scale_um)
        blue = (
            tissue
            * (self.collagen_od + 0.22 * fibre + 0.15 * (1.0 - red_zone))
            * (1.0 + self.fibril_amp * fibrils)
            * (1.0 + 0.5 * self.grain_amp * grain)
        )
        red = (
            tissue
            * (0.08 + self.cytoplasm_od * red_zone * (0.7 + 0.3 * fibre))
            * (1.0 + self.grain_amp * grain)
        )
        stroma = layers[1]
        stroma[..., 0] = np.clip(blue, 0.0, None)
        stroma[..., 1] = np.clip(red, 0.0, None)

        # nuclei: elongated, dark, in tissue, each at its own depth
        xs, ys, at = self._points(grid, salt=31, cell_um=9.5, reach_um=10.0, n_attrs=14)
        frac = _sample_at(tissue_c, coarse, xs, ys)
        keep = at[:, 0] < 0.85 * frac
        for x, y, a in zip(xs[keep], ys[keep], at[keep], strict=True):
            ra = 3.0 + 2.5 * a[1]
            rb = 1.6 + 1.0 * a[2]
            blob = _blob(grid, x, y, ra, rb, math.pi * a[3], _wobble(a, 4, 0.08))
            if blob is None:
                continue
            tex = 0.85 + self.chromatin_amp * _window(grain, blob)
            dens = blob.coverage * tex * (0.75 + 0.25 * np.sqrt(np.clip(1.0 - blob.rho**2, 0.0, 1.0)))
            layer = layers[min(int(a[11] * 3.0), 2)]
            _add(layer, blob, dens, {2: 0.95 + 0.4 * a[12]})

        # red cells in capillaries (in tissue) and macrophages in air spaces
        xs, ys, at = self._points(grid, salt=32, cell_um=25.0, reach_um=6.0, n_attrs=8)
        fracs = _sample_at(tissue_c, coarse, xs, ys)
        for x, y, a, frac in zip(xs, ys, at, fracs, strict=True):
            if a[0] < 0.35 * frac:
                blob = _blob(grid, x, y, 3.2, 3.0, 0.0)
                if blob is not None:
                    dens = blob.coverage * (0.8 + 0.2 * blob.rho)
                    _add(layers[1], blob, dens, {1: 0.35, 3: 0.25})
            elif a[0] > 0.985 and frac < 0.2:
                blob = _blob(grid, x, y, 7.0 + 2 * a[1], 6.0 + 2 * a[2], math.pi * a[3], _wobble(a, 2, 0.1))
                if blob is None:
                    continue
                tex = 0.8 + 0.2 * _local_noise(blob, seed=float(a[5]), freq=1.5)
                _add(layers[2], blob, blob.coverage * tex, {1: 0.3, 0: 0.1, 2: 0.08})
                nuc = _blob(grid, x + 2.0, y - 1.0, 3.0, 2.5, 0.0)
                if nuc is not None:
                    _add(layers[2], nuc, nuc.coverage, {2: 0.8})
        return [SlideLayer(z, arr) for z, arr in zip(self.layer_z_um, layers, strict=True)]


# --------------------------------------------------------------------------------------------------
# Papanicolaou smear


class PapSlide(_ProceduralSlide):
    """Papanicolaou-stained cervical smear: squamous cells spread over ~12 µm of depth.

    Superficial cells (eosin/Orange G pink-orange cytoplasm, small pyknotic nuclei) and intermediate
    cells (light-green cytoplasm, larger vesicular nuclei), 35-60 µm polygonal flat cells, overlapping
    in clusters whose density varies across the smear; neutrophils with lobed nuclei; faint mucus.
    Each cell lies in one of three depth layers (-4.5, 0, +4.5 µm), most in the middle one.
    """

    surface_amplitude_um = 1.0
    layer_z_um = (-4.5, 0.0, 4.5)
    grain_scale_um = 0.8
    grain_amp = 0.5
    wrinkle_scale_um = 1.5
    cell_density_floor = 0.6
    mottle_scale_um = 4.0
    mottle_amp = 0.35
    wrinkle_amp = 0.4
    chromatin_amp = 0.6

    def __init__(self, *, seed: int, width_um: float = 4000.0, height_um: float = 4000.0) -> None:
        super().__init__(
            sample="pap",
            seed=seed,
            width_um=width_um,
            height_um=height_um,
            stains=_stains("haematoxylin", "eosin", "orange_g", "light_green"),
        )

    def _render_layers(self, grid: Grid) -> list[SlideLayer]:
        nl = len(self.layer_z_um)
        layers = [np.zeros((*grid.shape, len(self.stains)), dtype=np.float32) for _ in range(nl)]
        coarse = aligned_grid(grid, spacing_um=10.0)
        density = 0.5 + 0.5 * fractal_noise(coarse, seed=self.seed, salt=41, scale_um=500.0, octaves=2)
        depth_bias = fractal_noise(coarse, seed=self.seed, salt=42, scale_um=300.0, octaves=1)
        # mucus: faint light-green strands
        mucus = np.maximum(fractal_noise(grid, seed=self.seed, salt=43, scale_um=60.0, octaves=3) - 0.2, 0.0)
        layers[1][..., 3] += 0.12 * mucus
        grain = self._fine_texture(grid, salt=46, scale_um=self.grain_scale_um)
        wrinkles = self._fine_texture(grid, salt=47, scale_um=self.wrinkle_scale_um, ridged=True)
        mottle = self._fine_texture(grid, salt=48, scale_um=self.mottle_scale_um)

        xs, ys, at = self._points(grid, salt=44, cell_um=38.0, reach_um=40.0, per_cell=2, n_attrs=16)
        dens_at = _sample_at(density, coarse, xs, ys)
        bias_at = _sample_at(depth_bias, coarse, xs, ys)
        for x, y, a, d, b in zip(xs, ys, at, dens_at, bias_at, strict=True):
            if a[0] > self.cell_density_floor + 0.75 * d:
                continue
            superficial = a[1] < 0.45
            ra = 20.0 + 10.0 * a[2]
            rb = ra * (0.7 + 0.25 * a[3])
            blob = _blob(grid, x, y, ra, rb, math.pi * a[4], _wobble(a, 5, 0.12))
            if blob is None:
                continue
            z = float(np.clip(0.5 + 0.45 * b + 0.35 * (a[11] - 0.5), 0.0, 0.999))
            layer = layers[int(z * nl)]
            tex = (
                (1.0 + self.grain_amp * _window(grain, blob))
                * (1.0 + self.wrinkle_amp * _window(wrinkles, blob))
                * (1.0 + self.mottle_amp * _window(mottle, blob))
            )
            fold = 1.0 + 0.6 * np.clip(_local_noise(blob, seed=float(a[13]), freq=0.15), 0.0, 1.0)
            dens = blob.coverage * tex * fold
            if superficial:
                amounts = {1: 0.22 + 0.12 * a[14], 2: 0.12 + 0.25 * a[15] ** 2, 3: 0.02}
            else:
                amounts = {3: 0.25 + 0.15 * a[14], 1: 0.03, 0: 0.03}
            _add(layer, blob, dens, amounts)
            nr = (2.2 + 0.8 * a[14]) if superficial else (3.8 + 1.2 * a[14])
            off = 0.25 * ra * (a[15] - 0.5)
            nuc = _blob(grid, x + off, y - off, nr, nr * 0.85, math.pi * a[4], _wobble(a, 9, 0.05))
            if nuc is not None:
                chrom = 0.85 + self.chromatin_amp * _window(grain, nuc)
                _add(layer, nuc, nuc.coverage * chrom, {0: 0.9 if superficial else 0.6})

        # neutrophils: lobed nuclei in groups
        xs, ys, at = self._points(grid, salt=45, cell_um=30.0, reach_um=8.0, n_attrs=12)
        dens_at = _sample_at(density, coarse, xs, ys)
        for x, y, a, d in zip(xs, ys, at, dens_at, strict=True):
            if a[0] > 0.35 * d:
                continue
            layer = layers[min(int(a[1] * nl), nl - 1)]
            cell = _blob(grid, x, y, 5.5, 5.0, 0.0)
            if cell is None:
                continue
            _add(layer, cell, cell.coverage, {1: 0.06, 3: 0.04})
            for k in range(3):
                ang = 2 * math.pi * (a[2] + k / 3.0)
                lobe = _blob(grid, x + 2.0 * math.cos(ang), y + 2.0 * math.sin(ang), 1.7, 1.4, ang)
                if lobe is not None:
                    _add(layer, lobe, lobe.coverage, {0: 0.85})
        return [SlideLayer(z, arr) for z, arr in zip(self.layer_z_um, layers, strict=True)]


# --------------------------------------------------------------------------------------------------
# Thin blood smear with trypanosomes


class BloodSlide(_ProceduralSlide):
    """Thin mouse blood smear, Hema 3 (Wright-Giemsa type) stain, infected with *T. brucei*.

    Red cells (~6 µm, haemoglobin plus eosin, central pallor) in a monolayer whose density varies
    across the smear; a few white cells (lymphocytes with a round purple nucleus and a blue rim,
    neutrophils with lobed nuclei); platelets; trypanosomes: 20-30 µm wavy blue bodies with a
    purple central nucleus, a dark posterior kinetoplast and a flagellum along the undulating membrane.
    """

    surface_amplitude_um = 0.3
    grain_scale_um = 0.8
    rbc_texture_amp = 0.5
    chromatin_amp = 0.6
    rbc_cell_um = 4.2
    rbc_od = (0.7, 0.6)
    plasma_amp = 0.04

    def __init__(self, *, seed: int, width_um: float = 4000.0, height_um: float = 4000.0) -> None:
        super().__init__(
            sample="blood",
            seed=seed,
            width_um=width_um,
            height_um=height_um,
            stains=_stains("haemoglobin", "eosin", "azure", "romanowsky_purple"),
        )

    def _render_layers(self, grid: Grid) -> list[SlideLayer]:
        layer = np.zeros((*grid.shape, len(self.stains)), dtype=np.float32)
        coarse = aligned_grid(grid, spacing_um=10.0)
        density = 0.5 + 0.5 * fractal_noise(coarse, seed=self.seed, salt=51, scale_um=250.0, octaves=2)
        grain = self._fine_texture(grid, salt=56, scale_um=self.grain_scale_um)
        # plasma proteins and stain precipitate: a faint granular film between the cells
        layer[..., 1] += self.plasma_amp * np.maximum(1.0 + grain, 0.0)
        xs, ys, at = self._points(grid, salt=52, cell_um=self.rbc_cell_um, reach_um=5.0, n_attrs=6)
        dens_at = _sample_at(density, coarse, xs, ys)
        for x, y, a, d in zip(xs, ys, at, dens_at, strict=True):
            if a[0] > 0.45 + 0.5 * d:
                continue
            r = 2.8 + 0.5 * a[1]
            blob = _blob(grid, x, y, r, r * (0.92 + 0.08 * a[2]), math.pi * a[3])
            if blob is None:
                continue
            pallor = 1.0 - 0.45 * np.exp(-((blob.rho / 0.45) ** 2))
            dens = (
                blob.coverage
                * pallor
                * (0.9 + 0.2 * a[4])
                * (1.0 + self.rbc_texture_amp * _window(grain, blob))
            )
            _add(layer, blob, dens, {0: self.rbc_od[0], 1: self.rbc_od[1]})

        # platelets
        xs, ys, at = self._points(grid, salt=53, cell_um=20.0, reach_um=2.0, n_attrs=4)
        for x, y, a in zip(xs, ys, at, strict=True):
            if a[0] > 0.5:
                continue
            blob = _blob(grid, x, y, 1.0 + 0.5 * a[1], 0.8 + 0.3 * a[2], math.pi * a[3])
            if blob is not None:
                _add(layer, blob, blob.coverage, {3: 0.45, 2: 0.1})

        # white cells
        xs, ys, at = self._points(grid, salt=54, cell_um=110.0, reach_um=8.0, n_attrs=10)
        for x, y, a in zip(xs, ys, at, strict=True):
            if a[0] > 0.5:
                continue
            lymph = a[1] < 0.65
            rc = (4.5 + a[2]) if lymph else (6.0 + a[2])
            cell = _blob(grid, x, y, rc, rc * 0.95, 0.0, _wobble(a, 3, 0.04))
            if cell is None:
                continue
            # a white cell displaces the red cells under it: clear them, then stain
            win = layer[cell.r0 : cell.r1, cell.c0 : cell.c1]
            win *= (1.0 - cell.coverage)[..., None]
            _add(layer, cell, cell.coverage, {2: 0.18, 1: 0.05} if lymph else {1: 0.12, 3: 0.05})
            if lymph:
                nuc = _blob(grid, x + 0.6, y, rc * 0.8, rc * 0.75, 0.0)
                if nuc is not None:
                    chrom = 0.85 + self.chromatin_amp * _window(grain, nuc)
                    _add(layer, nuc, nuc.coverage * chrom, {3: 0.85, 2: 0.2})
            else:
                for k in range(4):
                    ang = 2 * math.pi * (a[9] + k / 4.0)
                    lobe = _blob(grid, x + 2.6 * math.cos(ang), y + 2.6 * math.sin(ang), 1.8, 1.3, ang)
                    if lobe is not None:
                        _add(layer, lobe, lobe.coverage, {3: 0.8})

        # trypanosomes
        xs, ys, at = self._points(grid, salt=55, cell_um=60.0, reach_um=20.0, n_attrs=10)
        for x, y, a in zip(xs, ys, at, strict=True):
            if a[0] > 0.55:
                continue
            self._trypanosome(layer, grid, x, y, a)
        return [SlideLayer(0.0, layer)]

    def _trypanosome(
        self, layer: NDArray[np.float32], grid: Grid, x: float, y: float, a: NDArray[np.float64]
    ) -> None:
        length = 20.0 + 10.0 * a[1]
        theta = 2 * math.pi * a[2]
        wave_amp = 1.2 + 1.5 * a[3]
        wave_k = 2 * math.pi / (12.0 + 8.0 * a[4])
        phase = 2 * math.pi * a[5]
        box = _bbox(grid, x, y, length / 2 + wave_amp + 3.0)
        if box is None:
            return
        r0, r1, c0, c1 = box
        p = grid.pixel_size_um
        px = (grid.x0_um + np.arange(c0, c1) * p - x)[None, :]
        py = (grid.y0_um + np.arange(r0, r1) * p - y)[:, None]
        ct, st = math.cos(theta), math.sin(theta)
        # centre line: s along the body in [-L/2, L/2], lateral offset a sin(k s + phase)
        s = np.linspace(-length / 2, length / 2, 48)
        lat = wave_amp * np.sin(wave_k * s + phase)
        cx = s * ct - lat * st
        cy = s * st + lat * ct
        # distance to the polyline (vectorised over segments)
        best = np.full((r1 - r0, c1 - c0), np.inf, dtype=np.float64)
        best_t = np.zeros_like(best)
        for k in range(s.size - 1):
            ax, ay = cx[k], cy[k]
            bx, by = cx[k + 1] - ax, cy[k + 1] - ay
            seg2 = bx * bx + by * by
            t = np.clip(((px - ax) * bx + (py - ay) * by) / seg2, 0.0, 1.0)
            d = np.hypot(px - ax - t * bx, py - ay - t * by)
            upd = d < best
            best = np.where(upd, d, best)
            best_t = np.where(upd, (k + t) / (s.size - 1), best_t)
        # body width tapers to the ends; posterior (t=0) blunt, anterior (t=1) thin
        half_w = 0.35 + 1.1 * np.sin(np.pi * np.clip(best_t * 0.95 + 0.03, 0, 1)) ** 0.8
        body = np.clip(0.5 + (half_w - best) / p, 0.0, 1.0).astype(np.float32)
        flag = np.clip(0.5 + (0.25 - best) / p, 0.0, 1.0).astype(np.float32)
        win = layer[r0:r1, c0:c1]
        win[..., 2] += 0.35 * body + 0.25 * flag
        win[..., 3] += 0.28 * body
        # nucleus at mid-body, kinetoplast near the posterior end
        for frac, rad, amt in ((0.5 + 0.06 * (a[6] - 0.5), 1.1, 0.9), (0.1, 0.45, 1.0)):
            k = int(frac * (s.size - 1))
            nuc = _blob(grid, x + cx[k], y + cy[k], rad * 1.3, rad, theta)
            if nuc is not None:
                _add(layer, nuc, nuc.coverage, {3: amt})


# --------------------------------------------------------------------------------------------------
# Resolution target and image slides


class BarTargetSlide(Slide):
    """A chrome-on-glass line grating (vertical bars) of one period, for resolution checks.

    Bars of width period/2 start at ``x = phase_um + k·period_um``; pixel coverage is integrated
    exactly over each pixel's width (a box aperture), so the target is alias-free at any sampling.
    """

    def __init__(
        self,
        *,
        period_um: float,
        phase_um: float = 0.0,
        optical_density: float = 2.0,
        width_um: float = 2000.0,
        height_um: float = 2000.0,
    ) -> None:
        if period_um <= 0:
            raise ValueError(f"period_um must be positive, got {period_um}")
        super().__init__(sample="target", width_um=width_um, height_um=height_um, stains=_stains("neutral"))
        self.period_um = float(period_um)
        self.phase_um = float(phase_um)
        self.optical_density = float(optical_density)

    def _integral(self, x: NDArray[np.float64]) -> NDArray[np.float64]:
        p = self.period_um
        t = x - self.phase_um
        out: NDArray[np.float64] = np.floor(t / p) * (p / 2) + np.clip(np.mod(t, p), 0.0, p / 2)
        return out

    def _render_layers(self, grid: Grid) -> list[SlideLayer]:
        h = grid.pixel_size_um / 2
        xs = grid.xs
        cover = (self._integral(xs + h) - self._integral(xs - h)) / (2 * h)
        amounts = np.broadcast_to(
            (self.optical_density * cover).astype(np.float32)[None, :, None], (*grid.shape, 1)
        ).copy()
        return [SlideLayer(0.0, amounts)]


def _image_stains() -> tuple[Stain, ...]:
    """Pseudo-stains absorbing in the red, green and blue parts of the spectrum (for image slides)."""
    srgb = np.clip(cie_xyz_cmfs() @ srgb_from_xyz_matrix().T, 0.0, None)
    names = ("image_red", "image_green", "image_blue")
    return tuple(Stain(n, srgb[:, k] / srgb[:, k].max()) for k, n in enumerate(names))


class ImageSlide(Slide):
    """An RGB image (a benchtop photograph, a scan) used as a slide at a given µm per pixel.

    Each channel's transmittance becomes the amount of a pseudo-stain absorbing in that channel's part
    of the spectrum (OD = -log10 of the channel value relative to the brightest background), so the
    image re-renders through the instruments with its colours approximately preserved.
    """

    def __init__(self, rgb: NDArray[np.uint8], *, um_per_px: float, sample: str = "image") -> None:
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise ValueError(f"expected an (H, W, 3) uint8 image, got {rgb.shape} {rgb.dtype}")
        if um_per_px <= 0:
            raise ValueError(f"um_per_px must be positive, got {um_per_px}")
        h, w = rgb.shape[:2]
        super().__init__(
            sample=sample, width_um=w * um_per_px, height_um=h * um_per_px, stains=_image_stains()
        )
        self.um_per_px = float(um_per_px)
        lin = (rgb.astype(np.float32) / 255.0) ** 2.2
        white = np.maximum(np.percentile(lin.reshape(-1, 3), 99.5, axis=0), 1e-3).astype(np.float32)
        self._od = (-np.log10(np.clip(lin / white, 1e-3, 1.0))).astype(np.float32)

    def _render_layers(self, grid: Grid) -> list[SlideLayer]:
        src = self._od
        ratio = grid.pixel_size_um / self.um_per_px
        if ratio > 1.0:
            sigma = 0.5 * math.sqrt(ratio * ratio - 1.0)
            src = cv2.GaussianBlur(src, (0, 0), sigmaX=sigma, sigmaY=sigma, borderType=cv2.BORDER_REFLECT)
        mx = (grid.xs / self.um_per_px - 0.5).astype(np.float32)
        my = (grid.ys / self.um_per_px - 0.5).astype(np.float32)
        map_x = np.ascontiguousarray(np.broadcast_to(mx[None, :], grid.shape))
        map_y = np.ascontiguousarray(np.broadcast_to(my[:, None], grid.shape))
        out = cv2.remap(src, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        return [SlideLayer(0.0, np.maximum(out, 0.0).astype(np.float32))]


def make_slide(sample: str, *, seed: int, width_um: float = 4000.0, height_um: float = 4000.0) -> Slide:
    """A procedural slide of one of the paper's sample types.

    Parameters
    ----------
    sample
        ``"lung"`` (Masson's trichrome), ``"pap"`` (Papanicolaou smear) or ``"blood"`` (thin smear
        with trypanosomes).
    seed
        Everything on the slide is a deterministic function of the seed.
    width_um, height_um
        Physical size; the origin is the top-left corner.
    """
    kinds: dict[str, type[LungSlide] | type[PapSlide] | type[BloodSlide]] = {
        "lung": LungSlide,
        "pap": PapSlide,
        "blood": BloodSlide,
    }
    if sample not in kinds:
        raise ValueError(f"unknown sample {sample!r}: choose lung, pap or blood")
    return kinds[sample](seed=seed, width_um=width_um, height_um=height_um)


def slide_from_image(path: str | Path, *, um_per_px: float) -> Slide:
    """Use an RGB image file as a slide sampled at ``um_per_px``.

    Raises
    ------
    InputFileError
        If the file cannot be read as an 8-bit (or 16-bit) colour or grey image.
    """
    p = Path(path)
    if not p.is_file():
        raise InputFileError(f"{p}: image file not found; check the path.")
    data = np.fromfile(p, dtype=np.uint8)
    img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if img is None:
        if p.suffix.lower() in (".tif", ".tiff"):
            import tifffile  # tifffile loads only for TIFF files (keeps `scopectl --help` fast)

            try:
                img = tifffile.imread(p)
            except Exception as exc:  # tifffile raises many types; translate at this boundary
                raise InputFileError(
                    f"{p}: cannot read TIFF ({exc}); export an 8-bit RGB TIFF or PNG."
                ) from None
        else:
            raise InputFileError(f"{p}: not a readable image; use PNG, JPEG or TIFF.")
    else:
        if img.ndim == 3 and img.shape[2] >= 3:
            img = cv2.cvtColor(img[..., :3], cv2.COLOR_BGR2RGB)
    img = np.asarray(img)
    if img.dtype == np.uint16:
        img = (img // 257).astype(np.uint8)
    if img.dtype != np.uint8:
        raise InputFileError(f"{p}: unsupported pixel type {img.dtype}; use 8- or 16-bit images.")
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    if img.ndim != 3 or img.shape[2] < 3 or min(img.shape[:2]) < 2:
        raise InputFileError(f"{p}: expected a colour or grey image, got shape {img.shape}.")
    if um_per_px <= 0 or not math.isfinite(um_per_px):
        raise InputFileError(f"{p}: um_per_px must be a positive number, got {um_per_px}.")
    return ImageSlide(np.ascontiguousarray(img[..., :3]), um_per_px=um_per_px, sample=p.stem)
