"""The paper's Tables 2 and 3 on held-out captures, computed from arrays.

For every held-out capture four images are compared with the benchtop image ``target`` (the reference,
at the model's output pixel size):

* ``A`` — the raw phone image, projected onto the target's field of view by the registration's
  homography only (no elastic correction), at the model's input pixel size;
* ``B`` — the same image after pyramid elastic registration onto the target (warp-corrected);
* ``C``, ``D`` — the network outputs of ``A`` and ``B``.

Table 2 (SSIM): bicubic ×p/q upsampling of ``A`` against the network output ``C`` — the paper's test
images were not aberration-corrected.  SSIM is Wang et al. 2004 on the BT.601 luminance (Gaussian
window of 11 taps, σ 1.5, K = (0.01, 0.03), population covariances, data range 255, 5-pixel border
excluded); see :func:`scopectl.metrics.ssim`.  Bicubic uses the a = −0.5 kernel (MATLAB).

Table 3 (CIE-94, graphic-arts constants, sRGB → L*a*b* D65/2°, benchtop image as the reference): mean
and standard deviation over the pixels of each image, then averaged over images, for ``A`` and ``B``
(bicubic-upsampled to the target size) and for ``C`` and ``D``.  The standard deviation column is the
mean of the per-image standard deviations.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from scopectl.metrics import bicubic_resize, cie94_stats, ssim

__all__ = [
    "PAPER_TABLE2",
    "PAPER_TABLE3",
    "CaptureScores",
    "EvaluationTables",
    "aggregate",
    "finite_json",
    "score_capture",
    "tables_markdown",
    "write_tables",
]

#: Table 2 of the paper: (bicubic SSIM, network SSIM).
PAPER_TABLE2: dict[str, tuple[float, float]] = {
    "lung (TIFF)": (0.4956, 0.7020),
    "lung (JPEG)": (0.5420, 0.6830),
    "pap": (0.4601, 0.7775),
    "blood": (0.6605, 0.8525),
}
#: Table 3 of the paper: mean and std of ΔE94 for columns A, B, C, D.
PAPER_TABLE3: dict[str, dict[str, tuple[float, float]]] = {
    "lung (TIFF)": {"A": (15.976, 1.709), "B": (16.077, 1.683), "C": (4.369, 0.917), "D": (3.814, 0.797)},
    "lung (JPEG)": {"A": (15.914, 1.722), "B": (15.063, 1.820), "C": (4.372, 0.847), "D": (3.747, 0.908)},
    "pap": {"A": (26.230, 0.766), "B": (23.725, 0.969), "C": (2.127, 0.267), "D": (2.092, 0.317)},
    "blood": {"A": (17.310, 0.726), "B": (16.884, 0.664), "C": (2.143, 0.452), "D": (1.431, 0.099)},
}

METRIC_NOTES = (
    "SSIM: Wang et al. 2004 on BT.601 luminance, Gaussian window 11 taps σ 1.5, K=(0.01, 0.03), "
    "population covariance, data range 255, 5-px border excluded. Bicubic: Keys a=-0.5 (MATLAB imresize). "
    "CIE-94: graphic arts (kL=kC=kH=1, K1=0.045, K2=0.015), sRGB→L*a*b* D65 2°, benchtop image as reference."
)


@dataclass
class CaptureScores:
    """Metrics of one held-out capture."""

    slide: str
    capture: int
    shape: tuple[int, int]
    ssim_bicubic: float
    ssim_network: float
    ssim_bicubic_warped: float | None
    ssim_network_warped: float | None
    cie94: dict[str, tuple[float, float]] = field(default_factory=dict)


def paper_key(sample_type: str, input_kind: str) -> str | None:
    """The paper's table row for a sample type and input kind (``lung (JPEG)``, ``pap``...), or None."""
    sample = sample_type.lower()
    if sample.startswith("lung"):
        return "lung (JPEG)" if input_kind.lower() in ("jpeg", "jpg") else "lung (TIFF)"
    if sample.startswith("pap"):
        return "pap"
    if sample.startswith("blood"):
        return "blood"
    return None


def score_capture(
    raw_input: np.ndarray,
    target: np.ndarray,
    *,
    enhance: Callable[[np.ndarray], np.ndarray],
    warped_input: np.ndarray | None = None,
    slide: str = "",
    capture: int = 0,
    outputs: dict[str, np.ndarray] | None = None,
) -> CaptureScores:
    """Score one capture (all images RGB uint8).

    Parameters
    ----------
    raw_input
        ``A``: phone image on the target's field of view, at the model's input pixel size.
    target
        The benchtop image, ``enhance(raw_input).shape``.
    enhance
        The network (uint8 image in, uint8 image out).
    warped_input
        ``B``: the warp-corrected phone image (same shape as ``raw_input``), if available.
    outputs
        If given, filled with the images compared (``bicubic_A``, ``C``, and ``bicubic_B``, ``D``).

    Raises
    ------
    ValueError
        If the network output and the target differ in shape.
    """
    rows, cols = target.shape[:2]
    out_a = enhance(raw_input)
    if out_a.shape != target.shape:
        raise ValueError(f"network output {out_a.shape} and target {target.shape} differ in shape")
    bic_a = bicubic_resize(raw_input, shape=(rows, cols))
    scores = CaptureScores(
        slide=slide,
        capture=capture,
        shape=(int(rows), int(cols)),
        ssim_bicubic=ssim(target, bic_a),
        ssim_network=ssim(target, out_a),
        ssim_bicubic_warped=None,
        ssim_network_warped=None,
    )
    scores.cie94["A"] = cie94_stats(target, bic_a)
    scores.cie94["C"] = cie94_stats(target, out_a)
    if outputs is not None:
        outputs.update({"bicubic_A": bic_a, "C": out_a})
    if warped_input is not None:
        if warped_input.shape != raw_input.shape:
            raise ValueError(
                f"warped input {warped_input.shape} and raw input {raw_input.shape} differ in shape"
            )
        out_b = enhance(warped_input)
        bic_b = bicubic_resize(warped_input, shape=(rows, cols))
        scores.ssim_bicubic_warped = ssim(target, bic_b)
        scores.ssim_network_warped = ssim(target, out_b)
        scores.cie94["B"] = cie94_stats(target, bic_b)
        scores.cie94["D"] = cie94_stats(target, out_b)
        if outputs is not None:
            outputs.update({"bicubic_B": bic_b, "D": out_b})
    return scores


def _mean(values: Sequence[float]) -> float:
    return float(np.mean(values)) if values else math.nan


def _std(values: Sequence[float]) -> float:
    return float(np.std(values)) if values else math.nan


@dataclass
class EvaluationTables:
    """Tables 2 and 3 for one model on a set of held-out captures."""

    model: str
    sample_type: str
    input_kind: str
    slides: list[str]
    captures: int
    ssim_bicubic: float
    ssim_network: float
    ssim_bicubic_sd: float
    ssim_network_sd: float
    ssim_bicubic_warped: float | None
    ssim_network_warped: float | None
    cie94: dict[str, dict[str, float]]
    paper_row: str | None
    per_capture: list[CaptureScores]
    notes: str = METRIC_NOTES
    skipped: list[str] = field(default_factory=list)

    @property
    def ssim_gain(self) -> float:
        """Network SSIM minus bicubic SSIM (Table 2)."""
        return self.ssim_network - self.ssim_bicubic

    @property
    def cie94_reduction(self) -> float:
        """Mean ΔE94 of A divided by that of C (the paper reports 4–11×)."""
        return self.cie94["A"]["mean"] / self.cie94["C"]["mean"] if self.cie94["C"]["mean"] > 0 else math.inf

    def to_json(self) -> dict[str, Any]:
        """A JSON-serialisable dictionary (with the paper's row for comparison)."""
        data = asdict(self)
        data["ssim_gain"] = self.ssim_gain
        data["cie94_reduction"] = self.cie94_reduction
        if self.paper_row is not None:
            bic, net = PAPER_TABLE2[self.paper_row]
            data["paper"] = {
                "row": self.paper_row,
                "ssim_bicubic": bic,
                "ssim_network": net,
                "ssim_gain": net - bic,
                "cie94": {k: {"mean": v[0], "std": v[1]} for k, v in PAPER_TABLE3[self.paper_row].items()},
                "cie94_reduction": PAPER_TABLE3[self.paper_row]["A"][0]
                / PAPER_TABLE3[self.paper_row]["C"][0],
            }
        return data


def aggregate(
    scores: Sequence[CaptureScores],
    *,
    model: str,
    sample_type: str,
    input_kind: str,
    skipped: Sequence[str] = (),
) -> EvaluationTables:
    """Average per-capture scores into the paper's tables.

    Raises
    ------
    ValueError
        If ``scores`` is empty.
    """
    if not scores:
        raise ValueError("no captures were scored")
    cie: dict[str, dict[str, float]] = {}
    for col in ("A", "B", "C", "D"):
        vals = [s.cie94[col] for s in scores if col in s.cie94]
        cie[col] = {
            "mean": _mean([v[0] for v in vals]),
            "std": _mean([v[1] for v in vals]),
            "images": float(len(vals)),
        }
    warped_b = [s.ssim_bicubic_warped for s in scores if s.ssim_bicubic_warped is not None]
    warped_n = [s.ssim_network_warped for s in scores if s.ssim_network_warped is not None]
    return EvaluationTables(
        model=model,
        sample_type=sample_type,
        input_kind=input_kind,
        slides=sorted({s.slide for s in scores}),
        captures=len(scores),
        ssim_bicubic=_mean([s.ssim_bicubic for s in scores]),
        ssim_network=_mean([s.ssim_network for s in scores]),
        ssim_bicubic_sd=_std([s.ssim_bicubic for s in scores]),
        ssim_network_sd=_std([s.ssim_network for s in scores]),
        ssim_bicubic_warped=_mean(warped_b) if warped_b else None,
        ssim_network_warped=_mean(warped_n) if warped_n else None,
        cie94=cie,
        paper_row=paper_key(sample_type, input_kind),
        per_capture=list(scores),
        skipped=list(skipped),
    )


def _f(value: float | None, digits: int = 4) -> str:
    if value is None or not math.isfinite(value):
        return "–"
    return f"{value:.{digits}f}"


def tables_markdown(t: EvaluationTables) -> str:
    """Tables 2 and 3 as Markdown, with the paper's row under ours."""
    label = f"{t.sample_type} ({t.input_kind})"
    lines = [
        f"# Evaluation of model `{t.model}`",
        "",
        f"Held-out slides: {', '.join(t.slides)}; {t.captures} captures"
        + (f"; {len(t.skipped)} skipped" if t.skipped else "")
        + ".",
        "",
        "## Table 2 — mean SSIM against the benchtop image",
        "",
        "| | test images | bicubic ×2.5 SSIM | network SSIM | gain |",
        "|---|---|---|---|---|",
        f"| {label} (scopectl) | {t.captures} | {_f(t.ssim_bicubic)} ± {_f(t.ssim_bicubic_sd)} | "
        f"{_f(t.ssim_network)} ± {_f(t.ssim_network_sd)} | {t.ssim_gain:+.4f} |",
    ]
    if t.ssim_bicubic_warped is not None and t.ssim_network_warped is not None:
        lines.append(
            f"| {label}, warp-corrected inputs | {t.captures} | {_f(t.ssim_bicubic_warped)} | "
            f"{_f(t.ssim_network_warped)} | {t.ssim_network_warped - t.ssim_bicubic_warped:+.4f} |"
        )
    if t.paper_row is not None:
        bic, net = PAPER_TABLE2[t.paper_row]
        lines.append(f"| {t.paper_row} (paper) | | {bic:.4f} | {net:.4f} | {net - bic:+.4f} |")
    lines += [
        "",
        "## Table 3 — CIE-94 colour distance to the benchtop image (mean, std)",
        "",
        "| | (A) raw | (B) warp-corrected | (C) network of A | (D) network of B | A/C |",
        "|---|---|---|---|---|---|",
    ]
    cells = " | ".join(f"{_f(t.cie94[c]['mean'], 3)}, {_f(t.cie94[c]['std'], 3)}" for c in "ABCD")
    lines.append(f"| {label} (scopectl) | {cells} | {t.cie94_reduction:.1f}× |")
    if t.paper_row is not None:
        row = PAPER_TABLE3[t.paper_row]
        cells = " | ".join(f"{row[c][0]:.3f}, {row[c][1]:.3f}" for c in "ABCD")
        lines.append(f"| {t.paper_row} (paper) | {cells} | {row['A'][0] / row['C'][0]:.1f}× |")
    lines += ["", f"Metrics: {t.notes}", ""]
    lines += [
        "## Per capture",
        "",
        "| slide | capture | SSIM bicubic | SSIM network | ΔE94 A | ΔE94 C |",
        "|---|---|---|---|---|---|",
    ]
    for s in t.per_capture:
        lines.append(
            f"| {s.slide} | {s.capture} | {_f(s.ssim_bicubic)} | {_f(s.ssim_network)} | "
            f"{_f(s.cie94['A'][0], 3)} | {_f(s.cie94['C'][0], 3)} |"
        )
    if t.skipped:
        lines += ["", "Skipped: " + "; ".join(t.skipped)]
    return "\n".join(lines) + "\n"


def finite_json(value: Any) -> Any:
    """``value`` with NaN and infinities replaced by ``None`` (strict JSON), tuples as lists."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): finite_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite_json(v) for v in value]
    return value


def write_tables(t: EvaluationTables, out_dir: Path) -> tuple[Path, Path]:
    """Write ``tables.md`` and ``tables.json`` into ``out_dir``; return their paths."""
    from scopectl.learn.modelio import atomic_write_bytes  # torch loads only when this runs

    out_dir.mkdir(parents=True, exist_ok=True)
    md, js = out_dir / "tables.md", out_dir / "tables.json"
    atomic_write_bytes(md, tables_markdown(t).encode())
    atomic_write_bytes(js, (json.dumps(finite_json(t.to_json()), indent=2, allow_nan=False) + "\n").encode())
    return md, js
