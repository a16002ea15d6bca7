"""PNG figures of a registered pair: overlays before/after the elastic step, shift field, correlation."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from numpy.typing import NDArray

from scopectl.registration.distortion import DistortionMap
from scopectl.registration.fov import to_gray
from scopectl.registration.pair import RegisteredPair

__all__ = ["colour_overlay", "write_distortion_figure", "write_pair_figures"]


def _normalise(gray: NDArray[np.floating] | NDArray[np.uint8]) -> NDArray[np.float32]:
    g = np.asarray(gray, np.float32)
    lo, hi = np.percentile(g, [1, 99])
    return np.asarray(np.clip((g - lo) / max(float(hi - lo), 1e-6), 0, 1), dtype=np.float32)


def colour_overlay(phone_rgb: NDArray[np.uint8], benchtop_rgb: NDArray[np.uint8]) -> NDArray[np.uint8]:
    """Magenta = phone, green = benchtop (both as contrast-stretched grey); aligned structures look grey.

    The phone image is resized to the benchtop's shape first.
    """
    b = to_gray(benchtop_rgb)
    p = np.asarray(
        cv2.resize(to_gray(phone_rgb), (b.shape[1], b.shape[0]), interpolation=cv2.INTER_CUBIC), np.uint8
    )
    pn, bn = _normalise(p), _normalise(b)
    out = np.stack([pn, bn, pn], axis=-1)
    return (255 * out + 0.5).astype(np.uint8)


def write_pair_figures(
    pair: RegisteredPair, *, directory: Path, stem: str, max_side: int = 700
) -> list[Path]:
    """Write ``<stem>-overlay.png`` (before/after) and ``<stem>-field.png`` (shift field, correlation).

    Returns the written paths.
    """
    import matplotlib  # matplotlib loads only to draw figures

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # matplotlib loads only to draw figures

    directory.mkdir(parents=True, exist_ok=True)
    target = pair.target
    step = max(1, int(np.ceil(max(target.shape[:2]) / max_side)))
    tgt = target[::step, ::step]
    before = colour_overlay(pair.unregistered, tgt)
    after = colour_overlay(pair.registered, tgt)
    paths: list[Path] = []
    fig, axes = plt.subplots(1, 2, figsize=(12, 6.4), constrained_layout=True)
    for ax, img, title in (
        (axes[0], before, "homography only"),
        (axes[1], after, "after pyramid elastic registration"),
    ):
        ax.imshow(img, interpolation="nearest")
        ax.set_title(f"{title}\nmagenta = phone, green = benchtop")
        ax.set_axis_off()
    fig.suptitle(f"{stem}: FOV match {pair.match.inliers} inliers, scale {pair.match.scale:.4f}")
    path = directory / f"{stem}-overlay.png"
    fig.savefig(path, dpi=90)
    plt.close(fig)
    paths.append(path)
    el = pair.elastic
    if pair.shift_map is None or not el.levels:
        return paths
    lf = float(pair.geometry.ratio)
    shift = pair.shift_map * lf  # benchtop pixels
    mag = np.hypot(shift[0], shift[1])
    fig, axes = plt.subplots(1, 3, figsize=(17, 5.6), constrained_layout=True)
    im = axes[0].imshow(mag, cmap="viridis")
    stride = max(1, max(mag.shape) // 24)
    rr, cc = np.mgrid[0 : mag.shape[0] : stride, 0 : mag.shape[1] : stride]
    axes[0].quiver(
        cc, rr, shift[1][::stride, ::stride], -shift[0][::stride, ::stride], color="white", angles="xy"
    )
    axes[0].set_title("elastic shift field (benchtop px)")
    fig.colorbar(im, ax=axes[0], shrink=0.8)
    first = el.levels[0].match
    im = axes[1].imshow(first.similarity, cmap="magma", vmin=0, vmax=1)
    axes[1].set_title(f"block correlation, first level ({first.n_blocks[0]}×{first.n_blocks[1]})")
    fig.colorbar(im, ax=axes[1], shrink=0.8)
    chk = el.check
    im = axes[2].imshow(chk.similarity, cmap="magma", vmin=0, vmax=1)
    rej = np.argwhere(~chk.kept)
    if rej.size:
        axes[2].scatter(rej[:, 1], rej[:, 0], marker="x", color="cyan", s=12, label="rejected")
        axes[2].legend(loc="lower right", fontsize=8)
    res = el.residual_px
    axes[2].set_title(
        f"after registration ({chk.n_blocks[0]}×{chk.n_blocks[1]}): quality {el.quality:.3f}"
        + (f", residual {res:.2f} px" if res is not None else "")
    )
    fig.colorbar(im, ax=axes[2], shrink=0.8)
    path = directory / f"{stem}-field.png"
    fig.savefig(path, dpi=80)
    plt.close(fig)
    paths.append(path)
    return paths


def write_distortion_figure(dmap: DistortionMap, path: Path) -> Path:
    """The mean shift map (the paper's Supplementary Fig. 3) as a PNG."""
    import matplotlib  # matplotlib loads only to draw figures

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # matplotlib loads only to draw figures

    path.parent.mkdir(parents=True, exist_ok=True)
    v = dmap.values
    mag = np.hypot(v[0], v[1])
    extent = (0, dmap.phone_shape[1], dmap.phone_shape[0], 0)
    fig, ax = plt.subplots(figsize=(7, 6), constrained_layout=True)
    im = ax.imshow(mag, cmap="viridis", extent=extent)
    stride = max(1, max(mag.shape) // 20)
    rr, cc = np.mgrid[0 : mag.shape[0] : stride, 0 : mag.shape[1] : stride]
    ax.quiver(
        cc * dmap.spacing_px,
        rr * dmap.spacing_px,
        v[1][::stride, ::stride],
        -v[0][::stride, ::stride],
        color="white",
        angles="xy",
    )
    ax.set_title(f"mean phone distortion over {len(dmap.provenance.get('captures', []))} captures (phone px)")
    fig.colorbar(im, ax=ax, shrink=0.8)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
