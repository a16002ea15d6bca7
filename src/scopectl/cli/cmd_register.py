"""``scopectl register`` and ``scopectl dataset build``: registered pairs and training sets."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError

from scopectl.cli.common import JsonOpt, emit, get_state, progress, say
from scopectl.config.base import format_validation_error
from scopectl.errors import ConfigError, InputFileError
from scopectl.store import SlideStore, validate_slide_id

__all__ = ["register"]


dataset_app = typer.Typer(help="Build training sets from registered slides.", no_args_is_help=True)


def _fmt(value: float | None, spec: str) -> str:
    return "—" if value is None else format(value, spec)


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.0f}%"


def _table(rows: list[dict[str, Any]]) -> str:
    head = (
        f"{'capture':>7}  {'matched':<7}  {'inliers':>7}  {'inl. ratio':>10}  {'scale':>7}  {'residual px':>11}  "
        f"{'blocks ok':>9}  {'consistent':>10}  {'quality':>7}  note"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        admit = " ".join(_admit_option(f) for f in r.get("flags", []))
        lines.append(
            f"{r['index']:>7}  {'yes' if r['ok'] else 'NO':<7}  {r['inliers']:>7}  {_fmt(r.get('inlier_ratio'), '.2f'):>10}  "
            f"{_fmt(r['scale'], '.4f'):>7}  {_fmt(r['residual_px'], '.3f'):>11}  {_pct(r['coverage']):>9}  "
            f"{_pct(r.get('consistency')):>10}  {_fmt(r['quality'], '.3f'):>7}  {r['reason']}"
            + (f" (dataset build admits it with {admit})" if admit else "")
        )
    return "\n".join(lines)


def _admit_option(flag: dict[str, Any]) -> str:
    # SciPy loads only when this runs (keeps `scopectl --help` fast)
    from scopectl.registration.checks import Flag

    return Flag(**flag).admit_with()


def _register_params(**kw: Any) -> Any:
    # SciPy loads only when this runs (keeps `scopectl --help` fast)
    from scopectl.registration.checks import CaptureLimits
    from scopectl.registration.elastic import ElasticParams
    from scopectl.registration.fov import FovParams
    from scopectl.registration.pair import RegisterParams

    try:
        el = ElasticParams(threshold=kw.pop("threshold"), min_block_px=kw.pop("min_block_px"))
        fov = FovParams(min_inliers=kw.pop("min_inliers"), max_reprojection_px=kw.pop("max_reprojection_px"))
        limits = CaptureLimits(
            **{
                k: kw.pop(k)
                for k in (
                    "min_coverage",
                    "max_residual_px",
                    "min_consistency",
                    "min_inlier_ratio",
                    "min_quality",
                )
            }
        )
        return RegisterParams(elastic_params=el, fov=fov, limits=limits, **kw)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, "register options") + ".") from None


def register_cmd(
    ctx: typer.Context,
    slide: Annotated[str, typer.Option("--slide", help="Slide id (file <root>/slides/<id>.h5).")],
    captures: Annotated[
        str | None, typer.Option("--captures", help="Comma-separated capture indices (default: all).")
    ] = None,
    ratio: Annotated[
        str, typer.Option("--ratio", help="Registered phone pixel / benchtop pixel (L).")
    ] = "5/2",
    elastic: Annotated[
        bool, typer.Option("--elastic/--no-elastic", help="Run the pyramid elastic registration.")
    ] = True,
    threshold: Annotated[
        float,
        typer.Option("--threshold", help="Block correlation threshold (against the degraded benchtop)."),
    ] = 0.5,
    min_block_px: Annotated[
        int, typer.Option("--min-block", help="Smallest elastic block (benchtop px).")
    ] = 50,
    margin_px: Annotated[
        int, typer.Option("--margin", help="Target inset from the capture's edge (px).")
    ] = 32,
    min_inliers: Annotated[
        int, typer.Option("--min-inliers", min=6, help="Fewest RANSAC inliers of the FOV match.")
    ] = 20,
    max_reprojection_px: Annotated[
        float,
        typer.Option(
            "--max-reprojection-px", help="Largest RMS reprojection error of the FOV match (phone px)."
        ),
    ] = 2.0,
    min_coverage: Annotated[
        float, typer.Option("--min-coverage", help="Flag captures where fewer blocks pass the threshold.")
    ] = 0.3,
    max_residual_px: Annotated[
        float,
        typer.Option(
            "--max-residual-px", help="Flag captures whose blocks remain shifted more (RMS, benchtop px)."
        ),
    ] = 1.5,
    min_consistency: Annotated[
        float,
        typer.Option(
            "--min-consistency", help="Flag captures where fewer blocks agree with their median shift."
        ),
    ] = 0.6,
    min_inlier_ratio: Annotated[
        float,
        typer.Option("--min-inlier-ratio", help="Flag captures whose FOV match has fewer inliers per match."),
    ] = 0.1,
    min_quality: Annotated[
        float, typer.Option("--min-quality", help="Flag captures of lower mean block correlation (0: off).")
    ] = 0.0,
    correction: Annotated[
        Path | None,
        typer.Option("--correction", help="Apply this mean distortion map (fixed rig correction) first."),
    ] = None,
    mean_map: Annotated[
        Path | None,
        typer.Option(
            "--mean-map", help="Afterwards, write the mean shift map of the slide's captures to this file."
        ),
    ] = None,
    figures: Annotated[
        bool, typer.Option("--figures/--no-figures", help="Write PNG figures to reports/.")
    ] = True,
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing --mean-map file.")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Locate each phone capture in the benchtop mosaic, register it elastically and store the result.

    Each capture is judged by its alignment, measured against the benchtop image degraded to the phone's
    resolution: blocks passing the threshold (--min-coverage), their residual shift (--max-residual-px),
    their agreement (--min-consistency) and the FOV match's inlier ratio (--min-inlier-ratio).  A flagged
    capture keeps its measurements; `dataset build` admits it when the limit it missed is loosened.
    """
    # SciPy loads only when this runs (keeps `scopectl --help` fast)
    from scopectl.registration.distortion import load_distortion_map
    from scopectl.registration.figures import write_distortion_figure

    # SciPy loads only when this runs (keeps `scopectl --help` fast)
    from scopectl.registration.workflow import CaptureReport, accumulate_distortion, register_slide

    state = get_state(ctx)
    params = _register_params(
        ratio=ratio,
        elastic=elastic,
        margin_px=margin_px,
        threshold=threshold,
        min_block_px=min_block_px,
        min_inliers=min_inliers,
        max_reprojection_px=max_reprojection_px,
        min_coverage=min_coverage,
        max_residual_px=max_residual_px,
        min_consistency=min_consistency,
        min_inlier_ratio=min_inlier_ratio,
        min_quality=min_quality,
    )
    try:
        wanted = None if captures is None else [int(v) for v in captures.split(",") if v.strip()]
    except ValueError:
        raise ConfigError(
            f"--captures '{captures}': expected comma-separated integers such as 0,2,5."
        ) from None
    corr = load_distortion_map(correction) if correction is not None else None
    fig_dir = state.reports_dir / slide / "registration" if figures else None
    rows: list[dict[str, Any]] = []
    with SlideStore.open(state.slide_path(slide), mode="a") as store, progress() as bar:
        n = len(wanted) if wanted is not None else store.capture_count()
        task = bar.add_task(f"registering {slide}", total=n)

        def tick(rep: CaptureReport) -> None:
            bar.advance(task)
            if not json_out and not rep.ok:
                say(f"capture {rep.index}: flagged: {rep.reason}")

        reports = register_slide(
            store, params=params, captures=wanted, correction=corr, figures_dir=fig_dir, on_capture=tick
        )
        rows = [r.to_dict() for r in reports]
        result: dict[str, Any] = {
            "slide": slide,
            "captures": rows,
            "ok": sum(r.ok for r in reports),
            "failed": sum(not r.ok for r in reports),
            "figures_dir": str(fig_dir) if fig_dir is not None else None,
        }
        if mean_map is not None:
            dmap = accumulate_distortion([store])
            dmap.save(mean_map, force=force)
            png = write_distortion_figure(
                dmap, state.reports_dir / slide / "registration" / f"{slide}-mean-shift-map.png"
            )
            result["mean_map"] = {
                "path": str(mean_map),
                "figure": str(png),
                "captures": len(dmap.provenance["captures"]),
            }
    human = _table(rows) + f"\n{result['ok']} registered, {result['failed']} flagged or not located"
    if fig_dir is not None:
        human += f"; figures in {fig_dir}"
    if mean_map is not None:
        human += f"\nmean shift map of {result['mean_map']['captures']} captures written to {mean_map}"
    emit(result, as_json=json_out, human=human)


def _floats(text: str, what: str, n: int) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise ConfigError(f"{what} '{text}': expected {n} comma-separated numbers.") from None
    if len(values) != n:
        raise ConfigError(f"{what} '{text}': expected {n} comma-separated numbers.")
    return values


@dataset_app.command("build")
def build_cmd(
    ctx: typer.Context,
    slides: Annotated[str, typer.Option("--slides", help="Comma-separated slide ids.")],
    name: Annotated[str, typer.Option("--name", help="Dataset name (file <root>/datasets/<name>.h5).")],
    patch_px: Annotated[int, typer.Option("--patch", help="Input (phone) patch side in px.")] = 60,
    ratio: Annotated[str, typer.Option("--ratio", help="Target patch / input patch (L).")] = "5/2",
    overlap: Annotated[float, typer.Option("--overlap", help="Patch overlap fraction.")] = 0.4,
    split: Annotated[
        str,
        typer.Option(
            "--split", help="train,val,test fractions by capture (keep test slides apart: evaluate on them)."
        ),
    ] = "0.85,0.15,0",
    seed: Annotated[int, typer.Option("--seed", help="Seed of the split.")] = 0,
    jpeg_quality: Annotated[
        int | None, typer.Option("--jpeg-quality", help="Also add JPEG-compressed inputs at this quality.")
    ] = None,
    min_tissue: Annotated[
        float, typer.Option("--min-tissue", help="Drop patches with less stained area.")
    ] = 0.05,
    min_similarity: Annotated[
        float, typer.Option("--min-similarity", help="Drop patches whose registration blocks correlate less.")
    ] = 0.5,
    min_coverage: Annotated[
        float | None,
        typer.Option("--min-coverage", help="Capture limit replacing register's (admits flagged)."),
    ] = None,
    max_residual_px: Annotated[
        float | None,
        typer.Option("--max-residual-px", help="Capture limit replacing register's (admits flagged)."),
    ] = None,
    min_consistency: Annotated[
        float | None,
        typer.Option("--min-consistency", help="Capture limit replacing register's (admits flagged)."),
    ] = None,
    min_inlier_ratio: Annotated[
        float | None,
        typer.Option("--min-inlier-ratio", help="Capture limit replacing register's (admits flagged)."),
    ] = None,
    min_quality: Annotated[
        float | None,
        typer.Option("--min-quality", help="Capture limit replacing register's (admits flagged)."),
    ] = None,
    compression: Annotated[str, typer.Option("--compression", help="none, lzf or gzip.")] = "none",
    force: Annotated[bool, typer.Option("--force", help="Replace an existing dataset.")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Cut the registered pairs of some slides into input/target patches split by capture.

    By default every capture goes to training or validation (evaluate on other slides).  The capture
    limits default to those `register` used; loosening one admits the captures it flagged.  Each skipped
    capture is listed with the reason and the option that would admit it.
    """
    # SciPy loads only when this runs (keeps `scopectl --help` fast)
    from scopectl.registration.dataset import DatasetParams, LimitOverrides, build_dataset

    state = get_state(ctx)
    ids = [s.strip() for s in slides.split(",") if s.strip()]
    if not ids:
        raise ConfigError("--slides: give at least one slide id, e.g. --slides A,B.")
    for sid in ids:
        validate_slide_id(sid)
    try:
        validate_slide_id(name)
    except InputFileError:
        raise ConfigError(
            f"invalid dataset name {name!r}: use 1–64 letters, digits, '-', '_' or '.', not starting with '.'."
        ) from None
    try:
        params = DatasetParams(
            input_patch_px=patch_px,
            ratio=ratio,
            overlap=overlap,
            split=_floats(split, "--split", 3),
            seed=seed,
            jpeg_quality=jpeg_quality,
            min_tissue_fraction=min_tissue,
            min_patch_similarity=min_similarity,
            limits=LimitOverrides(
                min_coverage=min_coverage,
                max_residual_px=max_residual_px,
                min_consistency=min_consistency,
                min_inlier_ratio=min_inlier_ratio,
                min_quality=min_quality,
            ),
            compression=compression,
        )
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, "dataset build options") + ".") from None
    paths = [state.slide_path(s) for s in ids]
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        raise InputFileError(
            f"no such slide file(s): {', '.join(missing)}.", hint="Check --slides and --root."
        )
    out = state.datasets_dir / f"{name}.h5"
    with progress() as bar:
        task = bar.add_task(f"building {name}", total=None)
        summary = build_dataset(
            paths, out, params=params, force=force, on_capture=lambda *_: bar.advance(task)
        )
    d = summary.to_dict()
    human = (
        f"dataset {name}: train {d['counts']['train']} / val {d['counts']['val']} / test {d['counts']['test']} patches "
        f"from {d['captures']['train']}/{d['captures']['val']}/{d['captures']['test']} captures; dropped "
        f"{d['dropped']['background']} background and {d['dropped']['low_similarity']} poorly registered patches"
        + (f"; admitted {len(d['admitted_flagged'])} flagged captures" if d["admitted_flagged"] else "")
        + f"\nwritten to {out}"
    )
    for entry in d["skipped_captures"]:
        say(
            f"skipped {entry['slide']} capture {entry['capture']}: {entry['reason']}"
            + (
                f"; admit it with {entry['admit_with']}"
                if entry.get("admit_with")
                else "; it cannot be admitted"
            )
        )
    for warning in d["warnings"]:
        say(f"WARNING: {warning}")
    emit(d, as_json=json_out, human=human)


def register(app: typer.Typer) -> None:
    """Add ``register`` and ``dataset build`` to ``app``."""
    app.command("register")(register_cmd)
    app.add_typer(dataset_app, name="dataset")
