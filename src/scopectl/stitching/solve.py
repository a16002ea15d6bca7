"""Global least-squares placement of tiles from pairwise offsets, with outlier rejection.

Unknowns are the tile positions ``p_i`` (rows, cols; the two axes are independent problems with the same
design matrix).  Each accepted pair gives ``p_j - p_i = m_ij`` (weight = its correlation); every tile also
has a weak prior ``p_i = nominal_i`` (weight ``prior_weight``), which fixes the global translation and places
tiles or groups of tiles without reliable pairs by the stage positions.  After each solve the pair with the
largest residual is dropped if it exceeds a threshold (see :func:`solve_positions`), and the system is solved again (iteratively
reweighted pruning, as MIST and ASHLAR do with spanning trees).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

__all__ = ["SolveResult", "solve_positions"]


@dataclass(frozen=True)
class SolveResult:
    """Solved positions and which pairs were used.

    Attributes
    ----------
    positions_px
        ``(N, 2)`` rows/cols positions in the nominal frame.
    used
        Boolean mask over the input measurements: kept in the final solve.
    residuals_px
        Final residual length of every input measurement (also the dropped ones).
    rms_residual_px
        RMS residual of the kept measurements.
    dropped
        Indices of measurements dropped as outliers, in the order they were dropped.
    """

    positions_px: np.ndarray
    used: np.ndarray
    residuals_px: np.ndarray
    rms_residual_px: float
    dropped: tuple[int, ...]


def _solve(
    n: int,
    ij: np.ndarray,
    offsets: np.ndarray,
    weights: np.ndarray,
    nominal: np.ndarray,
    prior_weight: float,
) -> np.ndarray:
    m = len(ij)
    rows = np.concatenate([np.arange(m), np.arange(m), m + np.arange(n)])
    cols = np.concatenate([ij[:, 1], ij[:, 0], np.arange(n)])
    vals = np.concatenate([np.ones(m), -np.ones(m), np.ones(n)])
    a = sp.csr_matrix((vals, (rows, cols)), shape=(m + n, n))
    w = np.concatenate([weights, np.full(n, prior_weight)])
    aw = a.multiply(w[:, None]).tocsr()
    normal = (a.T @ aw).tocsc()
    out = np.empty((n, 2))
    for axis in range(2):
        rhs_vec = np.concatenate([offsets[:, axis], nominal[:, axis]])
        rhs = a.T @ (w * rhs_vec)
        out[:, axis] = spla.spsolve(normal, rhs)
    return out


def solve_positions(
    nominal_positions_px: np.ndarray,
    pairs: np.ndarray,
    offsets_px: np.ndarray,
    *,
    weights: np.ndarray | None = None,
    prior_weight: float = 1e-4,
    max_residual_px: float = 0.75,
) -> SolveResult:
    """Solve tile positions from pairwise offsets (see the module docstring).

    Parameters
    ----------
    nominal_positions_px
        ``(N, 2)`` stage-derived positions (rows, cols).
    pairs
        ``(M, 2)`` tile indices ``(i, j)`` of the accepted measurements.
    offsets_px
        ``(M, 2)`` measured ``p_j - p_i``.
    weights
        ``(M,)`` positive weights (default 1).
    prior_weight
        Weight of each tile's pull towards its nominal position (small: only breaks the gauge freedom).
    max_residual_px
        A measurement whose residual exceeds this is dropped (one at a time, worst first).  A wrong pair
        spreads its error over the loops it closes, so its own residual is only a part of its error: the
        threshold must sit well below the errors it should catch (good pairs register to ~0.1 px).
    """
    nominal = np.asarray(nominal_positions_px, dtype=np.float64).reshape(-1, 2)
    n = len(nominal)
    ij = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    offs = np.asarray(offsets_px, dtype=np.float64).reshape(-1, 2)
    m = len(ij)
    if len(offs) != m:
        raise ValueError(f"{m} pairs but {len(offs)} offsets")
    if m and (ij.min() < 0 or ij.max() >= n):
        raise ValueError("pair index out of range")
    w = (
        np.ones(m)
        if weights is None
        else np.clip(np.asarray(weights, dtype=np.float64).reshape(-1), 1e-6, None)
    )
    if len(w) != m:
        raise ValueError(f"{m} pairs but {len(w)} weights")
    if prior_weight <= 0:
        raise ValueError("prior_weight must be positive")
    used = np.ones(m, dtype=bool)
    dropped: list[int] = []
    while True:
        pos = _solve(n, ij[used], offs[used], w[used], nominal, prior_weight)
        resid = np.linalg.norm(pos[ij[:, 1]] - pos[ij[:, 0]] - offs, axis=1) if m else np.zeros(0)
        if not used.any():
            break
        masked = np.where(used, resid, -1.0)
        worst = int(np.argmax(masked))
        if masked[worst] <= max_residual_px:
            break
        used[worst] = False
        dropped.append(worst)
    rms = float(np.sqrt(np.mean(resid[used] ** 2))) if used.any() else 0.0
    return SolveResult(pos, used, resid, rms, tuple(dropped))
