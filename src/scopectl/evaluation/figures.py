"""Figures like the paper's Fig. 3: phone input, network output and benchtop image, zoomed regions and a
line profile."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from scipy import ndimage

from scopectl.metrics import luma

__all__ = ["choose_regions", "comparison_figure"]


def choose_regions(target: np.ndarray, *, size: int, count: int = 2) -> list[tuple[int, int]]:
    """Top-left corners ``(row, col)`` of ``count`` non-overlapping ``size``² regions with the most detail.

    Detail is the local variance of the luminance; regions are picked greedily, best first.
    """
    rows, cols = target.shape[:2]
    size = min(size, rows, cols)
    y = luma(target) if target.ndim == 3 else target.astype(float)
    mean = ndimage.uniform_filter(y, size)
    var = ndimage.uniform_filter(y * y, size) - mean * mean
    half = size // 2
    valid = np.full(var.shape, -np.inf)
    valid[half : rows - (size - half) + 1, half : cols - (size - half) + 1] = var[
        half : rows - (size - half) + 1, half : cols - (size - half) + 1
    ]
    chosen: list[tuple[int, int]] = []
    for _ in range(count):
        idx = int(np.argmax(valid))
        r, c = divmod(idx, cols)
        if not np.isfinite(valid[r, c]):
            break
        r0, c0 = max(0, r - half), max(0, c - half)
        chosen.append((r0, c0))
        valid[max(0, r0 - half) : r0 + size + half, max(0, c0 - half) : c0 + size + half] = -np.inf
    return chosen


def comparison_figure(
    phone: np.ndarray,
    output: np.ndarray,
    target: np.ndarray,
    path: Path,
    *,
    title: str = "",
    pixel_size_um: float | None = None,
    zoom_px: int | None = None,
) -> Path:
    """Write a PNG like the paper's Fig. 3.

    Row 1: the phone input (bicubic-upsampled to the output size), the network output and the benchtop
    image, with the zoomed regions outlined.  Rows 2–3: the two regions in all three images.  Last row:
    the luminance profile along the middle row of the second region in all three images.

    All images are RGB uint8 of the same shape.
    """
    import matplotlib  # matplotlib loads only to draw figures

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure  # matplotlib loads only to draw figures
    from matplotlib.patches import Rectangle  # matplotlib loads only to draw figures

    if not (phone.shape == output.shape == target.shape):
        raise ValueError(f"images differ in shape: {phone.shape}, {output.shape}, {target.shape}")
    rows, cols = target.shape[:2]
    size = zoom_px or max(16, min(rows, cols) // 4)
    regions = choose_regions(target, size=size, count=2)
    while len(regions) < 2:
        regions.append((0, 0))
    names = ["phone input (bicubic)", "network output", "benchtop (reference)"]
    images = [phone, output, target]
    colours = ["#ffd000", "#00c8ff"]
    fig = Figure(figsize=(11, 14), dpi=100)
    grid = fig.add_gridspec(4, 3, height_ratios=[1, 1, 1, 0.7])
    for k, (name, img) in enumerate(zip(names, images, strict=True)):
        ax = fig.add_subplot(grid[0, k])
        ax.imshow(img)
        ax.set_title(name, fontsize=10)
        ax.set_axis_off()
        for (r0, c0), colour in zip(regions, colours, strict=True):
            ax.add_patch(Rectangle((c0 - 0.5, r0 - 0.5), size, size, fill=False, edgecolor=colour, lw=1.5))
        for j, ((r0, c0), colour) in enumerate(zip(regions, colours, strict=True)):
            axz = fig.add_subplot(grid[1 + j, k])
            axz.imshow(img[r0 : r0 + size, c0 : c0 + size], interpolation="nearest")
            axz.set_xticks([])
            axz.set_yticks([])
            for spine in axz.spines.values():
                spine.set_edgecolor(colour)
                spine.set_linewidth(2)
            if j == 1:
                axz.axhline(size // 2, color="white", lw=0.8, ls="--")
    r0, c0 = regions[1]
    line = r0 + size // 2
    ax = fig.add_subplot(grid[3, :])
    axis = np.arange(c0, c0 + size, dtype=float)
    xlabel = "column (pixels)"
    if pixel_size_um:
        axis = (axis - c0) * pixel_size_um
        xlabel = "position along the profile (µm)"
    for name, img, style in zip(names, images, ("-", "-", "-"), strict=True):
        lum = luma(img[line, c0 : c0 + size])
        ax.plot(axis, lum, style, label=name, lw=1.2)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("luminance (0–255)")
    ax.legend(fontsize=8)
    ax.grid(True, alpha=0.3)
    if title:
        fig.suptitle(title, fontsize=12)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    from scopectl.learn.modelio import atomic_write_bytes  # torch loads only when this runs

    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, buf.getvalue())
    return path
