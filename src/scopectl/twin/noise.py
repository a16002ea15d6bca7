"""Deterministic, region-independent random fields for procedural slides.

Everything here is a pure function of (seed, salt, lattice or cell index): a region of a slide can be
rendered at any sampling without rendering the rest, and the same region always gives the same values.

* :func:`hash_uniform` — a counter-based hash (SplitMix64 finaliser) to uniform floats in [0, 1).
* :func:`value_noise` — smooth value noise: hashed values on a square lattice, interpolated with the
  Catmull-Rom cubic (via ``cv2.remap``) onto any pixel grid.
* :func:`fractal_noise` — a sum of octaves of value noise.
* :func:`cell_points` — jittered points per square cell (one hash per attribute), for placing objects.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
from numpy.typing import NDArray

__all__ = [
    "Grid",
    "aligned_grid",
    "cell_points",
    "fractal_noise",
    "hash_uniform",
    "upsample_field",
    "upsample_step_grid",
    "value_noise",
    "worley_f1_f2",
]

_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_GOLD = np.uint64(0x9E3779B97F4A7C15)
_OFFSET = 1 << 24  # cell indices may be negative (regions beyond the slide edge)


def _mix(z: NDArray[np.uint64]) -> NDArray[np.uint64]:
    z = (z ^ (z >> np.uint64(30))) * _M1
    z = (z ^ (z >> np.uint64(27))) * _M2
    out: NDArray[np.uint64] = z ^ (z >> np.uint64(31))
    return out


def hash_uniform(seed: int, salt: int, *keys: NDArray[np.int64] | int) -> NDArray[np.float64]:
    """Uniform [0, 1) values, a deterministic function of (seed, salt, keys...) broadcast together."""
    with np.errstate(over="ignore"):
        h = _mix(np.asarray([seed & 0xFFFFFFFFFFFF], dtype=np.uint64) * _GOLD + np.uint64(0x2545F4914F6CDD1D))
        for k in (salt, *keys):
            kk = (np.asarray(k, dtype=np.int64) + _OFFSET).astype(np.uint64)
            h = _mix((h ^ kk) * _GOLD + np.uint64(0x632BE59BD9B4E019))
    out: NDArray[np.float64] = (h >> np.uint64(11)).astype(np.float64) * (1.0 / 9007199254740992.0)
    return out


class Grid:
    """A regular pixel grid in slide µm: pixel (r, c) centre at (x0 + c·p, y0 + r·p).

    Parameters
    ----------
    x0_um, y0_um
        Centre of pixel (0, 0) in slide µm.
    shape
        (rows, columns).
    pixel_size_um
        Sampling in µm.
    """

    def __init__(self, *, x0_um: float, y0_um: float, shape: tuple[int, int], pixel_size_um: float) -> None:
        if pixel_size_um <= 0:
            raise ValueError(f"pixel_size_um must be positive, got {pixel_size_um}")
        if shape[0] < 1 or shape[1] < 1:
            raise ValueError(f"grid shape must be positive, got {shape}")
        self.x0_um = float(x0_um)
        self.y0_um = float(y0_um)
        self.shape = (int(shape[0]), int(shape[1]))
        self.pixel_size_um = float(pixel_size_um)

    @property
    def xs(self) -> NDArray[np.float64]:
        """x (µm) of each column."""
        return np.asarray(self.x0_um + np.arange(self.shape[1]) * self.pixel_size_um, dtype=np.float64)

    @property
    def ys(self) -> NDArray[np.float64]:
        """y (µm) of each row."""
        return np.asarray(self.y0_um + np.arange(self.shape[0]) * self.pixel_size_um, dtype=np.float64)

    @property
    def x1_um(self) -> float:
        return self.x0_um + (self.shape[1] - 1) * self.pixel_size_um

    @property
    def y1_um(self) -> float:
        return self.y0_um + (self.shape[0] - 1) * self.pixel_size_um

    def subgrid(self, *, factor: int) -> Grid:
        """A grid ``factor`` times coarser covering the same area (for smooth fields)."""
        rows = -(-self.shape[0] // factor) + 1
        cols = -(-self.shape[1] // factor) + 1
        return Grid(
            x0_um=self.x0_um, y0_um=self.y0_um, shape=(rows, cols), pixel_size_um=self.pixel_size_um * factor
        )


def _lattice_remap(
    lattice: NDArray[np.float32], *, i0: int, j0: int, spacing_um: float, grid: Grid
) -> NDArray[np.float32]:
    """Interpolate lattice values (rows i0.., cols j0.. at ``spacing_um``) onto ``grid`` (Catmull-Rom)."""
    mx = (grid.xs / spacing_um - j0).astype(np.float32)
    my = (grid.ys / spacing_um - i0).astype(np.float32)
    map_x = np.broadcast_to(mx[None, :], grid.shape)
    map_y = np.broadcast_to(my[:, None], grid.shape)
    out = np.asarray(
        cv2.remap(
            lattice,
            np.ascontiguousarray(map_x),
            np.ascontiguousarray(map_y),
            cv2.INTER_CUBIC,
            borderMode=cv2.BORDER_REPLICATE,
        ),
        dtype=np.float32,
    )
    return out


def value_noise(grid: Grid, *, seed: int, salt: int, scale_um: float) -> NDArray[np.float32]:
    """Smooth value noise in [-1, 1] (roughly) with feature size ``scale_um``, sampled on ``grid``."""
    i0 = int(np.floor(grid.y0_um / scale_um)) - 2
    i1 = int(np.floor(grid.y1_um / scale_um)) + 3
    j0 = int(np.floor(grid.x0_um / scale_um)) - 2
    j1 = int(np.floor(grid.x1_um / scale_um)) + 3
    ii = np.arange(i0, i1 + 1)[:, None]
    jj = np.arange(j0, j1 + 1)[None, :]
    lattice = (2.0 * hash_uniform(seed, salt, ii, jj) - 1.0).astype(np.float32)
    return _lattice_remap(lattice, i0=i0, j0=j0, spacing_um=scale_um, grid=grid)


def fractal_noise(
    grid: Grid, *, seed: int, salt: int, scale_um: float, octaves: int = 3, gain: float = 0.5
) -> NDArray[np.float32]:
    """Sum of ``octaves`` of value noise, scales halving and amplitudes multiplied by ``gain``."""
    total = np.zeros(grid.shape, dtype=np.float32)
    amp, norm = 1.0, 0.0
    for k in range(octaves):
        total += np.float32(amp) * value_noise(grid, seed=seed, salt=salt * 16 + k, scale_um=scale_um / 2**k)
        norm += amp
        amp *= gain
    total /= np.float32(norm)
    return total


def cell_points(
    *,
    seed: int,
    salt: int,
    cell_um: float,
    x0_um: float,
    y0_um: float,
    x1_um: float,
    y1_um: float,
    per_cell: int = 1,
    n_attrs: int = 8,
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """Jittered points in the square cells overlapping [x0, x1] × [y0, y1] (µm).

    Returns
    -------
    x_um, y_um
        Point positions, shape (N,).
    attrs
        (N, n_attrs) uniform [0, 1) attributes, each a hash of (seed, salt, cell, slot, attribute).
    """
    i = np.arange(int(np.floor(y0_um / cell_um)), int(np.floor(y1_um / cell_um)) + 1)
    j = np.arange(int(np.floor(x0_um / cell_um)), int(np.floor(x1_um / cell_um)) + 1)
    gi, gj = np.meshgrid(i, j, indexing="ij")
    ii = np.repeat(gi.ravel(), per_cell)
    jj = np.repeat(gj.ravel(), per_cell)
    slot = np.tile(np.arange(per_cell), i.size * j.size)
    x = (jj + hash_uniform(seed, salt, ii, jj, slot, -1)) * cell_um
    y = (ii + hash_uniform(seed, salt, ii, jj, slot, -2)) * cell_um
    attrs = hash_uniform(seed, salt, ii[:, None], jj[:, None], slot[:, None], np.arange(n_attrs)[None, :])
    return x, y, attrs


def worley_f1_f2(
    grid: Grid, *, seed: int, salt: int, cell_um: float, jitter: float = 0.9
) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
    """Distances (µm) to the nearest and second-nearest feature point (one per ``cell_um`` cell).

    Evaluated exactly at the grid's pixel centres; callers wanting speed pass a coarse grid and
    interpolate (the fields are continuous).
    """
    xs, ys = grid.xs, grid.ys
    ci = np.floor(ys / cell_um).astype(np.int64)
    cj = np.floor(xs / cell_um).astype(np.int64)
    i_lo, i_hi = int(ci.min()) - 1, int(ci.max()) + 1
    j_lo, j_hi = int(cj.min()) - 1, int(cj.max()) + 1
    li = np.arange(i_lo, i_hi + 1)[:, None]
    lj = np.arange(j_lo, j_hi + 1)[None, :]
    off = (1.0 - jitter) / 2.0
    fx = (lj + off + jitter * hash_uniform(seed, salt, li, lj, 0)) * cell_um
    fy = (li + off + jitter * hash_uniform(seed, salt, li, lj, 1)) * cell_um
    f1 = np.full(grid.shape, np.inf, dtype=np.float64)
    f2 = np.full(grid.shape, np.inf, dtype=np.float64)
    for di in (-1, 0, 1):
        for dj in (-1, 0, 1):
            ri = (ci + di - i_lo)[:, None]
            rj = (cj + dj - j_lo)[None, :]
            d = np.hypot(xs[None, :] - fx[ri, rj], ys[:, None] - fy[ri, rj])
            f2 = np.minimum(f2, np.maximum(f1, d))
            f1 = np.minimum(f1, d)
    return f1.astype(np.float32), f2.astype(np.float32)


def upsample_field(coarse: NDArray[np.float32], *, coarse_grid: Grid, grid: Grid) -> NDArray[np.float32]:
    """Interpolate a field sampled on ``coarse_grid`` onto ``grid`` (bicubic, edges replicated)."""
    mx = ((grid.xs - coarse_grid.x0_um) / coarse_grid.pixel_size_um).astype(np.float32)
    my = ((grid.ys - coarse_grid.y0_um) / coarse_grid.pixel_size_um).astype(np.float32)
    map_x = np.ascontiguousarray(np.broadcast_to(mx[None, :], grid.shape))
    map_y = np.ascontiguousarray(np.broadcast_to(my[:, None], grid.shape))
    out = np.asarray(
        cv2.remap(coarse, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE), dtype=np.float32
    )
    return out


def aligned_grid(grid: Grid, *, spacing_um: float) -> Grid:
    """A coarse grid on the global lattice of ``spacing_um`` (origin 0, 0) that covers ``grid``.

    Smooth fields evaluated on it and interpolated give the same value at a slide point whatever the
    region or sampling requested.
    """
    i0 = int(np.floor(grid.y0_um / spacing_um)) - 1
    j0 = int(np.floor(grid.x0_um / spacing_um)) - 1
    i1 = int(np.ceil(grid.y1_um / spacing_um)) + 1
    j1 = int(np.ceil(grid.x1_um / spacing_um)) + 1
    return Grid(
        x0_um=j0 * spacing_um,
        y0_um=i0 * spacing_um,
        shape=(i1 - i0 + 1, j1 - j0 + 1),
        pixel_size_um=spacing_um,
    )


def anisotropic_noise(
    grid: Grid, *, seed: int, salt: int, along_um: float, across_um: float, angle_rad: float
) -> NDArray[np.float32]:
    """Value noise stretched along ``angle_rad`` (feature sizes ``along_um`` × ``across_um``) on ``grid``.

    The lattice lives in rotated slide coordinates (a fixed linear map), so values at a slide point do
    not depend on the region rendered.
    """
    ca, sa = math.cos(angle_rad), math.sin(angle_rad)
    xs = grid.xs.astype(np.float64)
    ys = grid.ys.astype(np.float64)
    # rotated lattice coordinates: u along the fibres, v across
    u = (xs[None, :] * ca + ys[:, None] * sa) / along_um
    v = (-xs[None, :] * sa + ys[:, None] * ca) / across_um
    j0 = int(np.floor(u.min())) - 2
    i0 = int(np.floor(v.min())) - 2
    j1 = int(np.floor(u.max())) + 3
    i1 = int(np.floor(v.max())) + 3
    ii = np.arange(i0, i1 + 1)[:, None]
    jj = np.arange(j0, j1 + 1)[None, :]
    lattice = (2.0 * hash_uniform(seed, salt, ii, jj) - 1.0).astype(np.float32)
    out = cv2.remap(
        lattice,
        (u - j0).astype(np.float32),
        (v - i0).astype(np.float32),
        cv2.INTER_CUBIC,
        borderMode=cv2.BORDER_REPLICATE,
    )
    return np.asarray(out, dtype=np.float32)


def fibres(
    grid: Grid, *, seed: int, salt: int, width_um: float, length_um: float, orientation_scale_um: float = 80.0
) -> NDArray[np.float32]:
    """Wavy fibres ~``width_um`` wide, locally aligned along a slowly varying direction, values 0..1.

    Fibres are the zero crossings of value noise stretched along one of four fixed directions; the four
    are blended with weights that follow a smooth orientation field.
    """
    phi = (value_noise(grid, seed=seed, salt=salt * 8 + 7, scale_um=orientation_scale_um) + 1.0) * (
        math.pi / 2
    )
    total = np.zeros(grid.shape, dtype=np.float32)
    norm = np.zeros(grid.shape, dtype=np.float32)
    for k in range(4):
        theta = k * math.pi / 4
        w = (np.maximum(np.cos(2.0 * (phi - np.float32(theta))), 0.0) ** 2).astype(np.float32)
        n = anisotropic_noise(
            grid, seed=seed, salt=salt * 8 + k, along_um=length_um, across_um=width_um * 2.0, angle_rad=theta
        )
        ridge = np.clip(1.0 - np.abs(n) * 2.5, 0.0, 1.0) ** 2
        total += w * ridge
        norm += w
    out = np.asarray(total / np.maximum(norm, np.float32(1e-6)), dtype=np.float32)
    return out


def upsample_step_grid(
    coarse: NDArray[np.float32], *, step: int, shape: tuple[int, int]
) -> NDArray[np.float32]:
    """Bilinear interpolation of values sampled at pixels (k·step, l·step) onto every pixel of ``shape``.

    ``coarse`` must cover the shape: at least ``ceil((shape - 1) / step) + 1`` samples per axis.
    """
    rows, cols = shape
    map_c = np.arange(cols, dtype=np.float32) / np.float32(step)
    map_r = np.arange(rows, dtype=np.float32) / np.float32(step)
    out = cv2.remap(
        coarse,
        np.ascontiguousarray(np.broadcast_to(map_c[None, :], (rows, cols))),
        np.ascontiguousarray(np.broadcast_to(map_r[:, None], (rows, cols))),
        cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_REPLICATE,
    )
    return np.asarray(out, dtype=np.float32)
