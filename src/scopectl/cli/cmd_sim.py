"""``scopectl sim``: quick sources of simulated data from the digital twin.

* ``scopectl sim pairs --sample lung --count 8 --out DIR`` writes aligned phone/benchtop pairs.
* ``scopectl sim calibrate --sample lung --count 4`` measures the twin against the paper's starting
  SSIM and CIE-94 ranges (Tables 2 and 3).
"""

from __future__ import annotations

import statistics
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import cv2
import numpy as np
import typer

from scopectl.cli.common import emit, progress
from scopectl.errors import InputFileError

__all__ = ["register"]


class SampleType(StrEnum):
    lung = "lung"
    pap = "pap"
    blood = "blood"


def _size(value: int) -> int:
    if value < 64 or value > 4096 or value % 2:
        raise typer.BadParameter("must be an even number of pixels between 64 and 4096")
    return value


def pairs(
    sample: Annotated[SampleType, typer.Option("--sample", help="Sample type of the virtual slide.")],
    count: Annotated[int, typer.Option("--count", min=1, max=100000, help="Number of pairs.")],
    out: Annotated[
        Path, typer.Option("--out", help="Output directory (pair-NNNN/ folders are created in it).")
    ],
    seed: Annotated[
        int, typer.Option("--seed", min=0, help="Seed of the slide, the fields and the noise.")
    ] = 0,
    size: Annotated[
        int, typer.Option("--size", callback=_size, help="Phone capture size in pixels (square, even).")
    ] = 1024,
    jpeg_quality: Annotated[
        int, typer.Option("--jpeg-quality", min=1, max=100, help="Phone JPEG quality.")
    ] = 92,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace existing pair folders.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object as the last line.")] = False,
) -> None:
    """Write N phone/benchtop pairs aligned by ground truth: phone.dng, phone.jpg, benchtop.tif, truth.json."""
    # SciPy loads only when this runs (keeps `scopectl --help` fast)
    from scopectl.twin.pairs import write_pairs

    dirs: list[Path] = []
    with progress() as bar:
        task = bar.add_task(f"{sample.value} pairs", total=count)
        for k in range(count):
            dirs += write_pairs(
                out,
                sample=sample.value,
                count=1,
                seed=seed,
                phone_shape=(size, size),
                jpeg_quality=jpeg_quality,
                overwrite=overwrite,
                start_index=k,
            )
            bar.advance(task)
    emit(
        {"sample": sample.value, "count": len(dirs), "out": str(out), "pairs": [str(d) for d in dirs]},
        as_json=as_json,
        human=f"wrote {len(dirs)} {sample.value} pairs to {out}",
    )


def calibrate(
    sample: Annotated[SampleType, typer.Option("--sample", help="Sample type of the virtual slide.")],
    count: Annotated[int, typer.Option("--count", min=1, max=1000, help="Number of fields to average.")] = 4,
    seed: Annotated[
        int, typer.Option("--seed", min=0, help="Seed of the slide, the fields and the noise.")
    ] = 0,
    size: Annotated[int, typer.Option("--size", callback=_size, help="Phone capture size in pixels.")] = 1024,
    figure: Annotated[
        Path | None,
        typer.Option("--figure", help="Write a PNG of the first field: benchtop | phone | bicubic x2.5."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object as the last line.")] = False,
) -> None:
    """Measure bicubic-×2.5 SSIM and mean CIE-94 of phone vs benchtop, as in the paper's Tables 2-3."""
    # SciPy loads only when this runs (keeps `scopectl --help` fast)
    from scopectl.twin.pairs import (
        PAPER_CIE94_RANGE,
        PAPER_SSIM_RANGE,
        PAPER_VALUES,
        comparison_figure,
        iter_pairs,
        measure_pair,
    )

    rows = []
    with progress() as bar:
        task = bar.add_task(f"{sample.value} fields", total=count)
        for k, pair in enumerate(
            iter_pairs(sample=sample.value, count=count, seed=seed, phone_shape=(size, size))
        ):
            rows.append(measure_pair(pair))
            if k == 0 and figure is not None:
                _write_png(figure, comparison_figure(pair, label=sample.value))
            bar.advance(task)
    ssims = [r["ssim"] for r in rows]
    des = [r["cie94_mean"] for r in rows]
    result = {
        "sample": sample.value,
        "count": count,
        "seed": seed,
        "size": size,
        "ssim_mean": statistics.fmean(ssims),
        "ssim_values": ssims,
        "cie94_mean": statistics.fmean(des),
        "cie94_values": des,
        "paper": PAPER_VALUES[sample.value],
        "paper_ssim_range": list(PAPER_SSIM_RANGE),
        "paper_cie94_range": list(PAPER_CIE94_RANGE),
        "figure": str(figure) if figure is not None else None,
        "method": "phone JPEG resampled through ground truth to 0.925 µm/px, bicubic a=-0.5 x2.5; "
        "SSIM luminance BT.601, Gaussian 11 taps sigma 1.5; CIE-94 graphic arts, benchtop reference",
    }
    human = (
        f"{sample.value}: SSIM {result['ssim_mean']:.3f} (paper range {PAPER_SSIM_RANGE[0]}-{PAPER_SSIM_RANGE[1]}), "
        f"mean CIE-94 {result['cie94_mean']:.2f} (paper range {PAPER_CIE94_RANGE[0]:g}-{PAPER_CIE94_RANGE[1]:g}) "
        f"over {count} fields"
    )
    emit(result, as_json=as_json, human=human)


def _write_png(path: Path, rgb: np.ndarray) -> None:
    ok, buf = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise InputFileError(f"{path}: could not encode the figure as PNG.")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(buf.tobytes())
    except OSError as exc:
        raise InputFileError(
            f"{path}: cannot write the figure ({exc.strerror}); choose a writable path."
        ) from None


def register(app: typer.Typer) -> None:
    """Add the ``sim`` command group to ``app``."""
    sim = typer.Typer(help="Simulated data from the digital twin.", no_args_is_help=True)
    sim.command("pairs")(pairs)
    sim.command("calibrate")(calibrate)
    app.add_typer(sim, name="sim")
