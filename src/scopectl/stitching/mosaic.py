"""Block-wise mosaic assembly with linear feather blending.

Tiles are placed at integer pixel positions (the solved sub-pixel positions rounded; the residual ≤ 0.5 px
is far below the optical resolution of a 0.75 NA objective at 0.37 µm pixels) and blended with weights
that fall linearly to zero at each tile edge (the product of a row ramp and a column ramp), so seams fade
across the overlap.  The mosaic is produced one block at a time, so it can be written straight into a
chunked HDF5 dataset far larger than memory; tiles may be a lazy sequence (read on access) and are kept in
a small cache while a band of blocks is built.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import numpy as np

__all__ = ["WritableArray", "assemble_mosaic", "feather_weights", "mosaic_geometry"]


class WritableArray(Protocol):
    """What the mosaic is written into: a NumPy array or an h5py dataset (``(rows, cols, 3)`` uint8)."""

    @property
    def shape(self) -> tuple[int, ...]: ...

    def __setitem__(self, key: Any, value: np.ndarray) -> None: ...


def feather_weights(shape: tuple[int, int]) -> np.ndarray:
    """Linear feather weights of a tile: ``min(r + 1, H - r) · min(c + 1, W - c)``, float32."""
    rows, cols = shape
    wr = np.minimum(np.arange(1, rows + 1), np.arange(rows, 0, -1)).astype(np.float32)
    wc = np.minimum(np.arange(1, cols + 1), np.arange(cols, 0, -1)).astype(np.float32)
    return np.outer(wr, wc)


def mosaic_geometry(
    positions_px: np.ndarray, tile_shape: tuple[int, int]
) -> tuple[np.ndarray, tuple[int, int], tuple[int, int]]:
    """Integer tile corners in the mosaic, the mosaic shape, and the mosaic origin in the input frame.

    Returns
    -------
    corners, shape, origin
        ``corners`` ``(N, 2)`` int top-left of each tile in mosaic pixels; ``shape`` ``(rows, cols)``;
        ``origin`` the input-frame position of mosaic pixel ``(0, 0)``.
    """
    pos = np.rint(np.asarray(positions_px, dtype=np.float64)).astype(np.int64)
    origin = pos.min(axis=0)
    corners = pos - origin
    ends = corners + np.array(tile_shape)
    shape = (int(ends[:, 0].max()), int(ends[:, 1].max()))
    return corners, shape, (int(origin[0]), int(origin[1]))


class _TileCache:
    """The most recently used tiles of a (lazy) sequence, checked for shape and type when read."""

    def __init__(self, tiles: Sequence[np.ndarray], tile_shape: tuple[int, int], *, size: int) -> None:
        self.tiles = tiles
        self.tile_shape = tile_shape
        self.size = size
        self._cache: OrderedDict[int, np.ndarray] = OrderedDict()

    def get(self, k: int) -> np.ndarray:
        if k in self._cache:
            self._cache.move_to_end(k)
            return self._cache[k]
        t = np.asarray(self.tiles[k])
        if t.shape != (*self.tile_shape, 3) or t.dtype != np.uint8:
            raise ValueError(f"tile {k} is {t.dtype} {t.shape}, expected uint8 {(*self.tile_shape, 3)}")
        self._cache[k] = t
        if len(self._cache) > self.size:
            self._cache.popitem(last=False)
        return t


def _blend_block(
    block: tuple[int, int, int, int],
    *,
    corners: np.ndarray,
    cache: _TileCache,
    weights: np.ndarray,
    fill: int,
) -> np.ndarray:
    """Mosaic rows r0:r1, columns c0:c1 (``block``): the feather-weighted mean of the tiles that overlap it."""
    r0, r1, c0, c1 = block
    th, tw = cache.tile_shape
    acc = np.zeros((r1 - r0, c1 - c0, 3), dtype=np.float32)
    wsum = np.zeros((r1 - r0, c1 - c0), dtype=np.float32)
    hits = np.nonzero(
        (corners[:, 0] < r1) & (corners[:, 0] + th > r0) & (corners[:, 1] < c1) & (corners[:, 1] + tw > c0)
    )[0]
    for k in hits:
        tr, tc = int(corners[k, 0]), int(corners[k, 1])
        ar0, ar1 = max(r0, tr), min(r1, tr + th)
        ac0, ac1 = max(c0, tc), min(c1, tc + tw)
        t = cache.get(int(k))
        wt = weights[ar0 - tr : ar1 - tr, ac0 - tc : ac1 - tc]
        acc[ar0 - r0 : ar1 - r0, ac0 - c0 : ac1 - c0] += (
            t[ar0 - tr : ar1 - tr, ac0 - tc : ac1 - tc].astype(np.float32) * wt[..., None]
        )
        wsum[ar0 - r0 : ar1 - r0, ac0 - c0 : ac1 - c0] += wt
    out = np.full((r1 - r0, c1 - c0, 3), fill, dtype=np.uint8)
    covered = wsum > 0
    out[covered] = np.clip(np.rint(acc[covered] / wsum[covered][:, None]), 0, 255).astype(np.uint8)
    return out


def assemble_mosaic(
    tiles: Sequence[np.ndarray],
    *,
    positions_px: np.ndarray,
    out: WritableArray | Callable[[tuple[int, int], tuple[int, int]], WritableArray] | None = None,
    block_px: int = 2048,
    fill: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[WritableArray, tuple[int, int]]:
    """Blend RGB tiles into a mosaic, block by block.

    Parameters
    ----------
    tiles
        ``(H, W, 3)`` uint8 tiles, all the same shape; may be lazy (indexing reads a tile).
    positions_px
        ``(N, 2)`` top-left positions (rows, cols) in any common frame.
    out
        Where to write: ``None`` (a new NumPy array), an array of the mosaic's shape, or a factory
        ``out(shape, origin_px)`` returning one (e.g. ``store.write_mosaic(None, shape=..., ...)``).
    block_px
        Block edge length; memory use is ~ ``16 · block_px²`` bytes plus the cached tiles.
    fill
        Value of mosaic pixels no tile covers.
    progress
        Called with ``(blocks_done, blocks_total)``.

    Returns
    -------
    mosaic, origin_px
        The written array and the input-frame position of its pixel ``(0, 0)``.
    """
    n = len(tiles)
    if n == 0:
        raise ValueError("no tiles to assemble")
    first = np.asarray(tiles[0])
    if first.ndim != 3 or first.shape[2] != 3 or first.dtype != np.uint8:
        raise ValueError(f"tiles must be (H, W, 3) uint8, got {first.dtype} {first.shape}")
    tile_shape = (int(first.shape[0]), int(first.shape[1]))
    pos = np.asarray(positions_px, dtype=np.float64).reshape(-1, 2)
    if len(pos) != n:
        raise ValueError(f"{n} tiles but {len(pos)} positions")
    corners, shape, origin = mosaic_geometry(pos, tile_shape)
    if out is None:
        target: WritableArray = np.empty((*shape, 3), dtype=np.uint8)
    elif callable(out) and not hasattr(out, "__setitem__"):
        target = out(shape, origin)
    else:
        target = out  # type: ignore[assignment]
    if tuple(target.shape[:2]) != shape:
        raise ValueError(f"output has shape {tuple(target.shape)}, mosaic needs {shape}")
    weights = feather_weights(tile_shape)
    tiles_per_row = max(1, int(np.ceil(shape[1] / tile_shape[1])) + 1)
    cache = _TileCache(tiles, tile_shape, size=2 * tiles_per_row + 2)
    n_br = -(-shape[0] // block_px)
    n_bc = -(-shape[1] // block_px)
    done = 0
    for bi in range(n_br):
        r0, r1 = bi * block_px, min(shape[0], (bi + 1) * block_px)
        for bj in range(n_bc):
            c0, c1 = bj * block_px, min(shape[1], (bj + 1) * block_px)
            target[r0:r1, c0:c1] = _blend_block(
                (r0, r1, c0, c1), corners=corners, cache=cache, weights=weights, fill=fill
            )
            done += 1
            if progress is not None:
                progress(done, n_br * n_bc)
    return target, origin
