"""Training sets: cut registered pairs into input/target patches, split by capture, hand them to the writer.

The file format (its writer, reader and checks) belongs to :mod:`scopectl.store.dataset`.  Splits are by
capture: all patches of one capture go to one split.  Input patch (i, j) — i, j multiples of the ratio's
denominator — covers exactly target patch (L i, L j).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np
from numpy.typing import NDArray
from pydantic import Field, model_validator

from scopectl import __version__
from scopectl.config.base import FrozenModel
from scopectl.errors import InputFileError, StoreError
from scopectl.registration.checks import CaptureLimits, judge
from scopectl.registration.pair import parse_ratio
from scopectl.registration.workflow import StoredPair, flagged_checks, load_pair
from scopectl.store import RegistrationRecord, SlideStore
from scopectl.store.dataset import SPLITS, DatasetProvenance, DatasetWriter, SplitName, refuse_existing

__all__ = [
    "DatasetParams",
    "DatasetSummary",
    "build_dataset",
    "cut_patches",
    "patch_positions",
]


class LimitOverrides(FrozenModel):
    """Capture-check limits for ``dataset build`` (see :class:`~scopectl.registration.checks.CaptureLimits`);
    ``None`` keeps the limit the capture was registered with."""

    min_coverage: float | None = Field(default=None, ge=0.0, le=1.0)
    max_residual_px: float | None = Field(default=None, gt=0.0)
    min_consistency: float | None = Field(default=None, ge=0.0, le=1.0)
    min_inlier_ratio: float | None = Field(default=None, ge=0.0, le=1.0)
    min_quality: float | None = Field(default=None, ge=0.0, le=1.0)

    def apply(self, limits: CaptureLimits) -> CaptureLimits:
        """``limits`` with the given overrides."""
        return limits.model_copy(update={k: v for k, v in self.model_dump().items() if v is not None})


#: Below these, ``dataset build`` warns that training gets too little data.
MIN_TRAIN_CAPTURES = 3
MIN_TRAIN_PATCHES = 500


class DatasetParams(FrozenModel):
    """How registered pairs become patches."""

    input_patch_px: int = Field(default=60, ge=8, le=2048)
    ratio: str = "5/2"
    overlap: float = Field(default=0.4, ge=0.0, lt=1.0)
    split: tuple[float, float, float] = (0.85, 0.15, 0.0)
    """train, val, test fractions by capture.  Test slides are normally kept apart (``scopectl evaluate``
    on other slides), so by default every capture goes to training or validation."""
    seed: int = 0
    jpeg_quality: int | None = Field(default=None, ge=1, le=100)
    """Also add JPEG-compressed copies of every input (the registered image is compressed whole)."""
    min_tissue_fraction: float = Field(default=0.05, ge=0.0, le=1.0)
    """Patches whose target has less than this fraction of stained pixels are dropped as background."""
    tissue_od: float = Field(default=0.1, gt=0.0)
    """A target pixel is stained when its largest optical density over the white level exceeds this."""
    min_patch_similarity: float = Field(default=0.5, ge=-1.0, le=1.0)
    """Patches whose registration-check blocks correlate below this on average are dropped."""
    limits: LimitOverrides = LimitOverrides()
    """Capture-check limits that replace the ones ``register`` used (None: keep them); a capture that
    ``register`` flagged is admitted when it meets the loosened limits."""
    compression: Literal["none", "lzf", "gzip"] = "none"

    @model_validator(mode="after")
    def _consistent(self) -> DatasetParams:
        r = parse_ratio(self.ratio)
        if (self.input_patch_px * r).denominator != 1:
            raise ValueError(
                f"input_patch_px × ratio must be an integer (got {self.input_patch_px} × {self.ratio})"
            )
        if any(f < 0 for f in self.split) or not math.isclose(sum(self.split), 1.0, abs_tol=1e-6):
            raise ValueError(f"split fractions must be ≥ 0 and sum to 1, got {self.split}")
        if self.split[0] <= 0:
            raise ValueError("the train fraction must be positive")
        return self

    @property
    def ratio_fraction(self) -> Fraction:
        return parse_ratio(self.ratio)

    @property
    def target_patch_px(self) -> int:
        return int(self.input_patch_px * self.ratio_fraction)

    @property
    def stride_px(self) -> int:
        """Input-patch stride: patch × (1 − overlap), rounded down to a multiple of the ratio's denominator."""
        den = self.ratio_fraction.denominator
        raw = max(1, math.floor(self.input_patch_px * (1 - self.overlap)))
        return max(den, raw // den * den)


def patch_positions(shape: tuple[int, int], *, params: DatasetParams) -> list[tuple[int, int]]:
    """Top-left (row, col) of the input patches inside a registered image of ``shape``."""
    p, s = params.input_patch_px, params.stride_px
    rows = range(0, shape[0] - p + 1, s)
    cols = range(0, shape[1] - p + 1, s)
    return [(r, c) for r in rows for c in cols]


def _tissue_fraction(target: NDArray[np.uint8], white: NDArray[np.float32], *, od: float) -> float:
    t = target.astype(np.float32)
    dens = -np.log10(np.clip((t + 1.0) / (white + 1.0), 1e-3, None))
    return float(np.mean(dens.max(axis=-1) > od))


def _patch_similarity(pair: StoredPair, r_t: int, c_t: int, size_t: int) -> float:
    """Mean check correlation of the blocks whose centres fall in a target patch (nearest if none)."""
    rows, cols = pair.check_centres_px
    ir = np.nonzero((rows >= r_t) & (rows < r_t + size_t))[0]
    ic = np.nonzero((cols >= c_t) & (cols < c_t + size_t))[0]
    if ir.size == 0:
        ir = np.array([int(np.argmin(np.abs(rows - (r_t + size_t / 2))))])
    if ic.size == 0:
        ic = np.array([int(np.argmin(np.abs(cols - (c_t + size_t / 2))))])
    sim = pair.similarity[np.ix_(ir, ic)]
    kept = pair.check_kept[np.ix_(ir, ic)]
    # blocks rejected by the check count as uncorrelated
    return float(np.mean(np.where(kept, sim, np.minimum(sim, 0.0))))


def cut_patches(
    pair: StoredPair, *, params: DatasetParams
) -> tuple[NDArray[np.uint8], NDArray[np.uint8], NDArray[np.int32], dict[str, int]]:
    """Input/target patches of one pair after the background and quality filters.

    Returns inputs (N, p, p, 3), targets (N, P, P, 3), positions (N, 2) (input row, col) and the
    counts of dropped patches by reason.
    """
    ratio = params.ratio_fraction
    if ratio != pair.geometry.ratio:
        raise InputFileError(
            f"capture {pair.capture_index} was registered at ratio {pair.geometry.ratio}, the dataset asks for {ratio}; "
            "register again with the same ratio."
        )
    p, big = params.input_patch_px, params.target_patch_px
    lf = float(ratio)
    white = np.percentile(pair.target.reshape(-1, 3), 99.5, axis=0).astype(np.float32)
    ins: list[NDArray[np.uint8]] = []
    tgs: list[NDArray[np.uint8]] = []
    pos: list[tuple[int, int]] = []
    dropped = {"background": 0, "low_similarity": 0}
    for r, c in patch_positions(pair.registered.shape[:2], params=params):
        rt, ct = round(r * lf), round(c * lf)
        tgt = pair.target[rt : rt + big, ct : ct + big]
        if tgt.shape[:2] != (big, big):
            continue
        if _tissue_fraction(tgt, white, od=params.tissue_od) < params.min_tissue_fraction:
            dropped["background"] += 1
            continue
        if _patch_similarity(pair, rt, ct, big) < params.min_patch_similarity:
            dropped["low_similarity"] += 1
            continue
        ins.append(pair.registered[r : r + p, c : c + p])
        tgs.append(tgt)
        pos.append((r, c))
    if not ins:
        return (
            np.zeros((0, p, p, 3), np.uint8),
            np.zeros((0, big, big, 3), np.uint8),
            np.zeros((0, 2), np.int32),
            dropped,
        )
    return np.stack(ins), np.stack(tgs), np.asarray(pos, np.int32), dropped


def _jpeg(rgb: NDArray[np.uint8], quality: int) -> NDArray[np.uint8]:
    ok, buf = cv2.imencode(
        ".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, int(quality)]
    )
    if not ok:
        raise InputFileError("JPEG encoding of a registered image failed.")
    decoded = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    if decoded is None:
        raise InputFileError("JPEG decoding of a registered image failed.")
    return np.asarray(cv2.cvtColor(decoded, cv2.COLOR_BGR2RGB), dtype=np.uint8)


def _assign_splits(keys: list[tuple[int, int]], *, params: DatasetParams) -> dict[tuple[int, int], SplitName]:
    n = len(keys)
    _f_train, f_val, f_test = params.split
    n_val = max(1, round(f_val * n)) if f_val > 0 else 0
    n_test = max(1, round(f_test * n)) if f_test > 0 else 0
    if n - n_val - n_test < 1:
        raise InputFileError(
            f"{n} registered capture(s) cannot be split by capture into train/val/test {params.split}: "
            f"each non-empty split needs a capture of its own. Register more captures or use --split 1,0,0."
        )
    order = np.random.default_rng(params.seed).permutation(n)
    out: dict[tuple[int, int], SplitName] = {}
    for rank, k in enumerate(order):
        name: SplitName = "val" if rank < n_val else "test" if rank < n_val + n_test else "train"
        out[keys[int(k)]] = name
    return out


@dataclass(frozen=True)
class DatasetSummary:
    """What :func:`build_dataset` wrote."""

    path: Path
    counts: dict[str, int]
    captures: dict[str, int]
    dropped: dict[str, int]
    skipped_captures: list[dict[str, Any]]
    seconds: float
    admitted_flagged: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    warnings: list[str] = dataclasses.field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "counts": self.counts,
            "captures": self.captures,
            "dropped": self.dropped,
            "skipped_captures": self.skipped_captures,
            "admitted_flagged": self.admitted_flagged,
            "warnings": self.warnings,
            "seconds": self.seconds,
        }


def build_dataset(
    slide_paths: Sequence[Path],
    out_path: Path,
    *,
    params: DatasetParams | None = None,
    force: bool = False,
    on_capture: Callable[[str, int, int], None] | None = None,
) -> DatasetSummary:
    """Build a training set from the registered captures of some slides.

    Parameters
    ----------
    slide_paths
        Slide store files.
    out_path
        The dataset file to write (refused if it exists, unless ``force``).
    params
        Patch, split, filter and JPEG settings.
    force
        Replace an existing dataset.
    on_capture
        Called with (slide id, capture index, patches kept) after each capture.

    Raises
    ------
    StoreError
        A slide is missing, has no mosaic or no successfully registered capture.
    InputFileError
        Pixel sizes or ratios disagree between slides, or the captures cannot be split.
    StoreExistsError
        The dataset exists and ``force`` is false.
    """
    p = params or DatasetParams()
    t0 = time.perf_counter()
    if not slide_paths:
        raise InputFileError("no slides given; pass --slides A,B.")
    refuse_existing(out_path, force=force)
    chosen = _choose_captures(slide_paths, params=p)
    splits = _assign_splits([(k, i) for k, (_pth, _sid, i) in enumerate(chosen.plan)], params=p)
    input_um = chosen.target_um * float(p.ratio_fraction)
    with DatasetWriter(
        out_path,
        input_patch_px=p.input_patch_px,
        target_patch_px=p.target_patch_px,
        compression=p.compression,
        force=force,
    ) as writer:
        cut = _write_patches(writer, chosen, splits, input_um=input_um, params=p, on_capture=on_capture)
        counts = dict(writer.counts)
        if sum(counts.values()) == 0:
            raise InputFileError(
                "no patch survived the background and quality filters; check the registrations or lower "
                "--min-tissue / --min-similarity."
            )
        writer.finish(
            input_pixel_size_um=input_um,
            target_pixel_size_um=chosen.target_um,
            ratio=p.ratio_fraction,
            captures=cut.capture_list,
            provenance=_provenance(chosen, cut, params=p),
        )
    return DatasetSummary(
        path=out_path,
        counts=counts,
        captures=cut.n_caps,
        dropped=cut.dropped,
        skipped_captures=chosen.skipped,
        seconds=time.perf_counter() - t0,
        admitted_flagged=chosen.admitted,
        warnings=_little_data_warnings(cut.n_caps, counts, skipped=bool(chosen.skipped)),
    )


@dataclass
class _ChosenCaptures:
    """Pass 1 of :func:`build_dataset`: the usable captures of every slide, and why others were left out."""

    target_um: float
    plan: list[tuple[Path, str, int]] = dataclasses.field(default_factory=list)
    """(slide path, slide id, capture index) of every usable capture, slide by slide."""
    skipped: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    admitted: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    slides: list[dict[str, Any]] = dataclasses.field(default_factory=list)

    @property
    def slide_numbers(self) -> dict[str, int]:
        return {sid: n for n, sid in enumerate(dict.fromkeys(sid for _pth, sid, _i in self.plan))}


def _choose_captures(slide_paths: Sequence[Path], *, params: DatasetParams) -> _ChosenCaptures:
    """Open each slide, check its mosaic pixel against the others', and admit its registered captures."""
    chosen: _ChosenCaptures | None = None
    for path in slide_paths:
        with SlideStore.open(path) as store:
            info = store.mosaic_info()
            if info is None:
                raise StoreError(
                    f"{path}: slide '{store.slide_id}' has no benchtop mosaic.",
                    hint="Acquire or import and stitch its benchtop tiles, then register it.",
                )
            if chosen is None:
                chosen = _ChosenCaptures(target_um=info.pixel_size_um)
            elif not math.isclose(info.pixel_size_um, chosen.target_um, rel_tol=1e-3):
                raise InputFileError(
                    f"{path}: mosaic pixel {info.pixel_size_um:.4g} µm differs from the other slides' {chosen.target_um:.4g} µm; "
                    "build one dataset per benchtop magnification."
                )
            usable = _usable_captures(store, chosen, limits=params.limits)
            if not usable:
                why = "; ".join(
                    f"capture {e['capture']}: {e['reason']}"
                    + (f" (admit with {e['admit_with']})" if e.get("admit_with") else "")
                    for e in chosen.skipped
                    if e["slide"] == store.slide_id
                )
                raise StoreError(
                    f"{path}: slide '{store.slide_id}' has no successfully registered captures"
                    + (f" ({why})" if why else "")
                    + ".",
                    hint=f"Run `scopectl register --slide {store.slide_id}` first (and check its table for failures).",
                )
            chosen.plan.extend((Path(path), store.slide_id, i) for i in usable)
            chosen.slides.append(
                {
                    "slide_id": store.slide_id,
                    "path": str(path),
                    "simulated": store.simulated,
                    "sample": str(store.protocol().get("sample", "unknown")),
                    "phone_source": _phone_source(store, usable),
                    "captures": usable,
                }
            )
    assert chosen is not None  # slide_paths is not empty
    return chosen


def _usable_captures(store: SlideStore, chosen: _ChosenCaptures, *, limits: LimitOverrides) -> list[int]:
    """The registered captures of a slide that the (possibly loosened) limits admit; the others go to
    ``chosen.skipped``, admitted flagged ones also to ``chosen.admitted``."""
    usable = []
    for i in store.registered_indices():
        reg = store.registration(i)
        if reg is None:
            continue
        verdict = _admit(reg, limits)
        entry = {"slide": store.slide_id, "capture": i}
        if verdict is None:
            usable.append(i)
            if not reg.ok:
                chosen.admitted.append({**entry, "flagged": reg.reason})
        else:
            chosen.skipped.append({**entry, **verdict})
    return usable


@dataclass
class _CutPatches:
    """Pass 2 of :func:`build_dataset`: captures per split, the captures' patch counts, dropped patches."""

    n_caps: dict[str, int] = dataclasses.field(default_factory=lambda: dict.fromkeys(SPLITS, 0))
    capture_list: dict[str, list[dict[str, Any]]] = dataclasses.field(
        default_factory=lambda: {s: [] for s in SPLITS}
    )
    dropped: dict[str, int] = dataclasses.field(
        default_factory=lambda: {"background": 0, "low_similarity": 0}
    )


def _write_patches(
    writer: DatasetWriter,
    chosen: _ChosenCaptures,
    splits: dict[tuple[int, int], SplitName],
    *,
    input_um: float,
    params: DatasetParams,
    on_capture: Callable[[str, int, int], None] | None,
) -> _CutPatches:
    """Cut every chosen capture into patches and append them (and their JPEG copies) to its split."""
    p = params
    cut = _CutPatches()
    slide_number = chosen.slide_numbers
    with contextlib.ExitStack() as stores:
        current: tuple[Path, SlideStore] | None = None
        for k, (path, sid, i) in enumerate(chosen.plan):
            if current is None or current[0] != path:
                stores.close()
                current = (path, stores.enter_context(SlideStore.open(path)))
            pair = load_pair(current[1], i, allow_flagged=True)
            if not math.isclose(pair.input_pixel_size_um, input_um, rel_tol=1e-3):
                raise InputFileError(
                    f"{path}: capture {i} was registered at {pair.input_pixel_size_um:.4g} µm/px, the dataset "
                    f"needs {input_um:.4g} µm/px (ratio {p.ratio}); register again with --ratio {p.ratio}."
                )
            ins, tgs, pos, drop = cut_patches(pair, params=p)
            for reason, n in drop.items():
                cut.dropped[reason] += n
            split = splits[(k, i)]
            cut.n_caps[split] += 1
            cut.capture_list[split].append({"slide": sid, "capture": i, "patches": int(ins.shape[0])})
            if ins.shape[0]:
                src = np.zeros((ins.shape[0], 5), np.int32)
                src[:, 0] = slide_number[sid]
                src[:, 1] = i
                src[:, 2:4] = pos
                writer.append(split, ins, tgs, src)
                if p.jpeg_quality is not None:
                    jpg = _jpeg(pair.registered, p.jpeg_quality)
                    jins = np.stack([jpg[r : r + p.input_patch_px, c : c + p.input_patch_px] for r, c in pos])
                    src[:, 4] = 1
                    writer.append(split, jins, tgs, src)
            if on_capture is not None:
                on_capture(sid, i, int(ins.shape[0]))
    return cut


def _provenance(chosen: _ChosenCaptures, cut: _CutPatches, *, params: DatasetParams) -> DatasetProvenance:
    return DatasetProvenance(
        created=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        software_version=f"scopectl {__version__}",
        slides=chosen.slides,
        sample_type=_common_sample(chosen.slides),
        input_kind=_common(chosen.slides, "phone_source"),
        slide_numbers=chosen.slide_numbers,
        splits=cut.capture_list,
        skipped_captures=chosen.skipped,
        admitted_flagged=chosen.admitted,
        dropped_patches=cut.dropped,
        params=params.model_dump(mode="json"),
    )


def _little_data_warnings(n_caps: dict[str, int], counts: dict[str, int], *, skipped: bool) -> list[str]:
    """A warning when training gets too few captures or patches to learn more than one capture's cast."""
    if n_caps["train"] >= MIN_TRAIN_CAPTURES and counts["train"] >= MIN_TRAIN_PATCHES:
        return []
    return [
        f"training gets only {n_caps['train']} capture(s) and {counts['train']} patches (a network needs about "
        f"{MIN_TRAIN_CAPTURES}+ captures and {MIN_TRAIN_PATCHES}+ patches to learn more than one capture's "
        "colour cast); register more captures, or admit flagged ones by loosening a limit"
        + (" (see the skipped captures)" if skipped else "")
        + "."
    ]


def _admit(reg: RegistrationRecord, overrides: LimitOverrides) -> dict[str, Any] | None:
    """None when a registered capture is usable under the (possibly loosened) limits, else why not.

    A capture that could not be located has no geometry and cannot be admitted; one that a capture check
    flagged is judged again with the limits it was registered with, replaced by ``overrides``.
    """
    checks = flagged_checks(reg)
    if checks is None:
        if reg.ok:
            return None
        return {"reason": reg.reason, "admit_with": None}
    try:
        limits = CaptureLimits.model_validate((reg.extra or {}).get("limits") or {})
    except ValueError:
        limits = CaptureLimits()
    flags = judge(checks, overrides.apply(limits))
    if not flags:
        return None
    return {
        "reason": "; ".join(f.describe() for f in flags),
        "admit_with": " ".join(f.admit_with() for f in flags),
    }


def _common(slides: list[dict[str, Any]], key: str) -> str:
    """The value of ``key`` shared by all slides, else ``mixed`` (or ``unknown`` when none says)."""
    kinds = {str(s.get(key, "unknown")) for s in slides}
    if len(kinds) == 1:
        return kinds.pop()
    return "mixed" if kinds - {"unknown"} else "unknown"


def _common_sample(slides: list[dict[str, Any]]) -> str:
    """The slides' sample type (from their acquisition protocols)."""
    return _common(slides, "sample")


def _phone_source(store: SlideStore, captures: list[int]) -> str:
    """What the captures' pixels were decoded from: ``dng`` (raw, as the paper's TIFF inputs), ``jpeg``, ..."""
    kinds = set()
    for m in store.captures():
        if m.index in captures:
            kinds.add(
                "dng" if "dng" in m.raw else "jpeg" if "jpeg" in m.raw else str(m.settings.get("format", "?"))
            )
    return kinds.pop() if len(kinds) == 1 else "mixed"
