"""Stitch tiles into a mosaic: register neighbours, solve positions globally, blend, write block-wise.

Entry points: :func:`stitch_tiles` (tiles + nominal positions in pixels) and :func:`stitch_store`
(a slide store's benchtop tiles into its mosaic dataset).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import numpy as np

from scopectl.errors import InputFileError, StoreError
from scopectl.store import TileMeta

from .mosaic import WritableArray, assemble_mosaic
from .pairwise import PairResult, candidate_pairs, null_threshold, register_pair, to_grey
from .solve import solve_positions

__all__ = [
    "StitchResult",
    "StitchSettings",
    "TileStore",
    "nominal_positions_from_stage",
    "stitch_store",
    "stitch_tiles",
]


@dataclass(frozen=True)
class StitchSettings:
    """Parameters of the stitcher (defaults suit 10 % overlap and stage errors of a few µm).

    Attributes
    ----------
    max_shift_px
        Largest plausible deviation of a pair from its nominal offset, per axis.
    min_overlap_px
        Pairs whose nominal overlap is narrower are not registered.
    min_correlation
        Floor of the acceptance threshold (the learnt threshold is used when higher).
    null_samples, null_percentile
        Unrelated-strip samples and percentile of the learnt threshold (ASHLAR uses the 99th).
    upsample
        Sub-pixel factor of the phase correlation (precision 1/upsample px).
    max_residual_px
        Outlier rejection threshold of the global solve (see :func:`scopectl.stitching.solve_positions`).
    prior_weight
        Pull of each tile towards its nominal position in the solve.
    block_px
        Mosaic block size.
    seed
        Seeds the null sampling.
    """

    max_shift_px: float = 40.0
    min_overlap_px: int = 16
    min_correlation: float = 0.25
    null_samples: int = 40
    null_percentile: float = 99.0
    upsample: int = 20
    max_residual_px: float = 0.75
    prior_weight: float = 1e-4
    block_px: int = 2048
    seed: int = 0


@dataclass
class StitchResult:
    """What :func:`stitch_tiles` did.

    Attributes
    ----------
    positions_px
        ``(N, 2)`` solved tile positions (rows, cols) in the nominal frame.
    nominal_positions_px
        The input positions.
    mosaic
        The written mosaic (NumPy array or the array the ``out`` factory returned), or ``None``.
    origin_px
        Nominal-frame position of mosaic pixel ``(0, 0)``.
    pairs
        Every registered pair, with acceptance and reason.
    threshold
        Correlation threshold used.
    rms_residual_px
        RMS residual of the pairs used in the final solve.
    """

    positions_px: np.ndarray
    nominal_positions_px: np.ndarray
    mosaic: WritableArray | None
    origin_px: tuple[int, int]
    pairs: list[PairResult]
    threshold: float
    rms_residual_px: float
    settings: StitchSettings = field(default_factory=StitchSettings)

    def report(self) -> dict[str, Any]:
        """Summary for logs and provenance (JSON-serialisable)."""
        acc = [p for p in self.pairs if p.accepted]
        moved = np.linalg.norm(self.positions_px - self.nominal_positions_px, axis=1)
        return {
            "tiles": len(self.positions_px),
            "pairs": len(self.pairs),
            "pairs_used": len(acc),
            "pairs_low_correlation": sum(p.reason == "low correlation" for p in self.pairs),
            "pairs_outlier": sum(p.reason == "outlier" for p in self.pairs),
            "threshold": self.threshold,
            "rms_residual_px": self.rms_residual_px,
            "max_correction_px": float(moved.max()) if len(moved) else 0.0,
            "settings": asdict(self.settings),
        }


#: One measured pair: tile i, tile j, nominal offset, measured offset, correlation, overlap strip shape.
_Measured = tuple[int, int, tuple[float, float], tuple[float, float], float, tuple[int, int]]


def _grey_tiles(tiles: Sequence[np.ndarray], nominal: np.ndarray) -> list[np.ndarray]:
    """The tiles in grey, checked: at least one, one nominal position each (finite), all of one shape."""
    n = len(tiles)
    if n == 0:
        raise InputFileError("stitching: no tiles given.")
    if len(nominal) != n:
        raise InputFileError(f"stitching: {n} tiles but {len(nominal)} nominal positions.")
    if not np.all(np.isfinite(nominal)):
        raise InputFileError("stitching: nominal positions must be finite.")
    grey: list[np.ndarray] = []
    shape: tuple[int, int] | None = None
    for k in range(n):
        g = to_grey(tiles[k])
        if shape is None:
            shape = (int(g.shape[0]), int(g.shape[1]))
        elif g.shape != shape:
            raise InputFileError(
                f"stitching: tile {k} is {g.shape}, the first tile is {shape}; tiles must match."
            )
        grey.append(g)
    return grey


def _pair_results(measured: list[_Measured], accepted: list[int], *, used: np.ndarray) -> list[PairResult]:
    """Each measured pair with whether the solve used it, or why not (low correlation, outlier)."""
    results: list[PairResult] = []
    acc_index = {k: a for a, k in enumerate(accepted)}
    for k, (i, j, nom, off, corr, ov) in enumerate(measured):
        if k not in acc_index:
            ok, reason = False, "low correlation"
        elif not used[acc_index[k]]:
            ok, reason = False, "outlier"
        else:
            ok, reason = True, ""
        results.append(PairResult(i, j, nom, off, float(corr), ok, reason, ov))
    return results


def _measure_pairs(
    grey: Sequence[np.ndarray],
    nominal: np.ndarray,
    cand: Sequence[tuple[int, int]],
    *,
    cfg: StitchSettings,
    progress: Callable[[str, int, int], None] | None,
) -> list[_Measured]:
    """Register every candidate pair (i, j): the nominal and measured offsets of j from i, the peak
    correlation and the overlap strip's shape."""
    measured: list[_Measured] = []
    for k, (i, j) in enumerate(cand):
        nom = (float(nominal[j, 0] - nominal[i, 0]), float(nominal[j, 1] - nominal[i, 1]))
        off, corr, ov = register_pair(
            grey[i], grey[j], nominal_offset_px=nom, max_shift_px=cfg.max_shift_px, upsample=cfg.upsample
        )
        measured.append((i, j, nom, off, corr, ov))
        if progress is not None:
            progress("register", k + 1, len(cand))
    return measured


def stitch_tiles(
    tiles: Sequence[np.ndarray],
    *,
    nominal_positions_px: np.ndarray,
    out: WritableArray | Callable[[tuple[int, int], tuple[int, int]], WritableArray] | None = None,
    settings: StitchSettings | None = None,
    assemble: bool = True,
    progress: Callable[[str, int, int], None] | None = None,
) -> StitchResult:
    """Stitch overlapping tiles.

    Parameters
    ----------
    tiles
        ``(H, W, 3)`` uint8 tiles of one shape (may be a lazy sequence).
    nominal_positions_px
        ``(N, 2)`` top-left positions (rows, cols) from the stage, in pixels.
    out
        Mosaic destination: ``None`` (NumPy), an array, or a factory ``out(shape, origin_px)``.
    settings
        Stitcher parameters.
    assemble
        If False, only register and solve (``mosaic`` is ``None``).
    progress
        ``progress(stage, done, total)`` with stage ``"register"`` or ``"blend"``.

    Returns
    -------
    StitchResult
    """
    cfg = settings if settings is not None else StitchSettings()
    nominal = np.asarray(nominal_positions_px, dtype=np.float64).reshape(-1, 2)
    grey = _grey_tiles(tiles, nominal)
    shape = (int(grey[0].shape[0]), int(grey[0].shape[1]))
    cand = candidate_pairs(nominal, shape, min_overlap_px=cfg.min_overlap_px)
    measured = _measure_pairs(grey, nominal, cand, cfg=cfg, progress=progress)
    learnt = null_threshold(
        grey,
        pairs=cand,
        strip_shapes=[m[5] for m in measured if min(m[5]) >= 8],
        samples=cfg.null_samples,
        percentile=cfg.null_percentile,
        seed=cfg.seed,
    )
    threshold = max(cfg.min_correlation, learnt if learnt is not None else -math.inf)
    accepted = [k for k, m in enumerate(measured) if m[4] >= threshold]
    sol = solve_positions(
        nominal,
        np.array([[measured[k][0], measured[k][1]] for k in accepted], dtype=np.int64).reshape(-1, 2),
        np.array([measured[k][3] for k in accepted], dtype=np.float64).reshape(-1, 2),
        weights=np.array([measured[k][4] for k in accepted], dtype=np.float64),
        prior_weight=cfg.prior_weight,
        max_residual_px=cfg.max_residual_px,
    )
    pair_results = _pair_results(measured, accepted, used=sol.used)
    mosaic: WritableArray | None = None
    origin = (0, 0)
    if assemble:
        mosaic, origin = assemble_mosaic(
            tiles,
            positions_px=sol.positions_px,
            out=out,
            block_px=cfg.block_px,
            progress=(lambda d, t: progress("blend", d, t)) if progress is not None else None,
        )
    return StitchResult(
        positions_px=sol.positions_px,
        nominal_positions_px=nominal,
        mosaic=mosaic,
        origin_px=origin,
        pairs=pair_results,
        threshold=float(threshold),
        rms_residual_px=sol.rms_residual_px,
        settings=cfg,
    )


def nominal_positions_from_stage(
    stage_xy_um: np.ndarray, *, pixel_size_um: float, tile_shape: tuple[int, int]
) -> np.ndarray:
    """Top-left tile positions (rows, cols) in pixels from tile-centre stage positions ``(x, y)`` µm.

    Camera rows follow +y and columns +x; the centre of pixel ``(r, c)`` of a tile centred at stage
    ``(x, y)`` is at ``x + (c - (W - 1) / 2) · px``, ``y + (r - (H - 1) / 2) · px``, so pixel ``(r, c)`` of a tile
    at position ``P`` is at ``(P + (r, c)) · px`` µm — the convention of the store's ``MosaicInfo``.
    """
    xy = np.asarray(stage_xy_um, dtype=np.float64).reshape(-1, 2)
    rows, cols = tile_shape
    return np.column_stack(
        [xy[:, 1] / pixel_size_um - (rows - 1) / 2.0, xy[:, 0] / pixel_size_um - (cols - 1) / 2.0]
    )


class TileStore(Protocol):
    """The part of :class:`scopectl.store.SlideStore` that :func:`stitch_store` uses."""

    def tiles_meta(self) -> list[TileMeta]: ...

    def read_tile(self, index: int) -> tuple[np.ndarray, TileMeta]: ...

    def write_mosaic(
        self,
        rgb: np.ndarray | None,
        *,
        shape: tuple[int, int] | None = None,
        pixel_size_um: float,
        origin_x_um: float,
        origin_y_um: float,
        method: dict[str, Any],
    ) -> Any: ...

    def finish_mosaic(self) -> None: ...

    def log(self, event: str, **details: Any) -> None: ...


class _LazyTiles(Sequence[np.ndarray]):
    """Tiles of a store, read on access."""

    def __init__(self, store: TileStore, indices: list[int]) -> None:
        self._store = store
        self._indices = indices

    def __len__(self) -> int:
        return len(self._indices)

    def __getitem__(self, k: int) -> np.ndarray:  # type: ignore[override]
        return self._store.read_tile(self._indices[k])[0]


def stitch_store(
    store: TileStore,
    *,
    settings: StitchSettings | None = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> StitchResult:
    """Stitch a slide store's benchtop tiles and write its mosaic (chunked, block by block).

    When a tile position was acquired more than once (a resumed scan), the last tile is used.

    Raises
    ------
    StoreError
        No tiles, or tiles with different pixel sizes or shapes.
    """
    meta = store.tiles_meta()
    if not meta:
        raise StoreError("stitching: the store has no benchtop tiles.", hint="Run a tile scan first.")
    latest: dict[tuple[int, int], TileMeta] = {}
    for m in meta:
        latest[(m.row, m.col)] = m
    chosen = sorted(latest.values(), key=lambda m: m.index)
    sizes = {round(m.pixel_size_um, 9) for m in chosen}
    if len(sizes) != 1:
        raise StoreError(
            f"stitching: tiles have different pixel sizes {sorted(sizes)}; cannot stitch them together."
        )
    shapes = {m.shape[:2] for m in chosen}
    if len(shapes) > 1:
        raise StoreError(
            f"stitching: tiles have different shapes {sorted(shapes)}; cannot stitch them together."
        )
    px = chosen[0].pixel_size_um
    tiles = _LazyTiles(store, [m.index for m in chosen])
    tile_shape = next(iter(shapes)) if shapes else tuple(int(v) for v in np.asarray(tiles[0]).shape[:2])
    nominal = nominal_positions_from_stage(
        np.array([[m.stage_x_um, m.stage_y_um] for m in chosen], dtype=np.float64),
        pixel_size_um=px,
        tile_shape=(int(tile_shape[0]), int(tile_shape[1])),
    )
    cfg = settings if settings is not None else StitchSettings()
    method = {"stitcher": "scopectl.stitching", "blend": "linear feather", "settings": asdict(cfg)}

    def factory(shape: tuple[int, int], origin: tuple[int, int]) -> WritableArray:
        ds: WritableArray = store.write_mosaic(
            None,
            shape=shape,
            pixel_size_um=px,
            origin_x_um=origin[1] * px,
            origin_y_um=origin[0] * px,
            method=method,
        )
        return ds

    result = stitch_tiles(tiles, nominal_positions_px=nominal, out=factory, settings=cfg, progress=progress)
    store.finish_mosaic()
    store.log("stitched", **{k: v for k, v in result.report().items() if k != "settings"})
    return result
