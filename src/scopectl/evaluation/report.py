"""``scopectl evaluate``: a model on held-out slides → the paper's Tables 2 and 3 and Fig. 3-like figures."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from scopectl.errors import InputFileError
from scopectl.evaluation.figures import comparison_figure
from scopectl.evaluation.heldout import HeldOutPair, Source, iter_store_pairs
from scopectl.evaluation.tables import CaptureScores, EvaluationTables, aggregate, score_capture, write_tables
from scopectl.learn.enhance import enhance_image, prepare_model
from scopectl.learn.modelio import ModelCard, load_model

__all__ = ["EvaluationReport", "evaluate_pairs", "evaluate_slides"]


@dataclass
class EvaluationReport:
    """Where the tables and figures went, and the tables."""

    tables: EvaluationTables
    markdown: Path
    json: Path
    figures: list[Path]


def evaluate_pairs(
    pairs: Sequence[HeldOutPair],
    model: torch.nn.Module,
    card: ModelCard,
    out_dir: Path,
    *,
    device: torch.device,
    precision: str = "fp32",
    input_kind: str | None = None,
    figures: int = 1,
    skipped: Sequence[str] = (),
    on_capture: Callable[[CaptureScores], None] | None = None,
) -> EvaluationReport:
    """Score held-out pairs, write ``tables.md``/``tables.json`` and up to ``figures`` Fig. 3-like PNGs."""

    def enhance(rgb: np.ndarray) -> np.ndarray:
        return enhance_image(model, rgb, device=device, precision=precision)

    scores: list[CaptureScores] = []
    figure_paths: list[Path] = []
    for pair in pairs:
        outputs: dict[str, np.ndarray] = {}
        s = score_capture(
            pair.raw_input,
            pair.target,
            enhance=enhance,
            warped_input=pair.warped_input,
            slide=pair.slide,
            capture=pair.capture,
            outputs=outputs,
        )
        scores.append(s)
        if len(figure_paths) < figures:
            figure_paths.append(
                comparison_figure(
                    outputs["bicubic_A"],
                    outputs["C"],
                    pair.target,
                    out_dir / f"figure-{pair.slide}-capture{pair.capture:04d}.png",
                    title=(
                        f"{card.name} on {pair.slide} capture {pair.capture}: SSIM {s.ssim_bicubic:.3f} (bicubic) → "
                        f"{s.ssim_network:.3f} (network); ΔE94 {s.cie94['A'][0]:.2f} → {s.cie94['C'][0]:.2f}"
                    ),
                    pixel_size_um=card.target_pixel_size_um,
                )
            )
        if on_capture is not None:
            on_capture(s)
    tables = aggregate(
        scores,
        model=card.name,
        sample_type=card.sample_type,
        input_kind=input_kind or card.input_kind,
        skipped=skipped,
    )
    md, js = write_tables(tables, out_dir)
    return EvaluationReport(tables=tables, markdown=md, json=js, figures=figure_paths)


def evaluate_slides(
    model_dir: Path,
    slide_paths: Sequence[Path],
    out_dir: Path,
    *,
    device: torch.device,
    precision: str = "fp32",
    source: Source = "rgb",
    max_captures: int | None = None,
    max_input_px: int = 1024,
    figures: int = 1,
    on_capture: Callable[[CaptureScores], None] | None = None,
) -> EvaluationReport:
    """Evaluate a model directory on the registered captures of held-out slide stores.

    Raises
    ------
    InputFileError
        If no capture of the slides could be used.
    """
    model, card = load_model(model_dir)
    net = prepare_model(model, device=device)
    pairs: list[HeldOutPair] = []
    skipped: list[str] = []
    for path in slide_paths:
        if not path.is_file():
            raise InputFileError(
                f"{path}: slide store not found.", hint="Check the slide ids (scopectl store ls)."
            )
        remaining = None if max_captures is None else max(0, max_captures - len(pairs))
        if remaining == 0:
            break
        pairs.extend(
            iter_store_pairs(
                path,
                input_pixel_size_um=card.input_pixel_size_um,
                ratio=card.ratio_pq,
                source=source,
                max_captures=remaining,
                max_input_px=max_input_px,
                on_skip=skipped.append,
            )
        )
    if not pairs:
        raise InputFileError(
            f"no usable registered captures in {', '.join(p.stem for p in slide_paths)}"
            + (f" ({skipped[0]})" if skipped else "")
            + ".",
            hint="Register the slides first (scopectl register).",
        )
    kind = {"rgb": None, "jpeg": "jpeg", "dng": "dng"}[source]
    return evaluate_pairs(
        pairs,
        net,
        card,
        out_dir,
        device=device,
        precision=precision,
        input_kind=kind,
        figures=figures,
        skipped=skipped,
        on_capture=on_capture,
    )
