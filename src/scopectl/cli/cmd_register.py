"""``scopectl register`` and ``scopectl dataset build``: registered pairs and training sets."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError

from scopectl.cli.common import JsonOpt, emit, get_state, progress, say
from scopectl.config.base import format_validation_error
from scopectl.errors import ConfigError, InputFileError
from scopectl.store import SlideStore

__all__ = ["register"]


dataset_app = typer.Typer(help="Build training sets from registered slides.", no_args_is_help=True)


def _fmt(value: float | None, spec: str) -> str:
    return "—" if value is None else format(value, spec)


def _table(rows: list[dict[str, Any]]) -> str:
    head = f"{'capture':>7}  {'matched':<7}  {'inliers':>7}  {'scale':>7}  {'residual px':>11}  {'quality':>7}  {'blocks ok':>9}  note"
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(
            f"{r['index']:>7}  {'yes' if r['ok'] else 'NO':<7}  {r['inliers']:>7}  {_fmt(r['scale'], '.4f'):>7}  "
            f"{_fmt(r['residual_px'], '.3f'):>11}  {_fmt(r['quality'], '.3f'):>7}  "
            f"{_fmt(None if r['coverage'] is None else 100 * r['coverage'], '.0f') + ('%' if r['coverage'] is not None else ''):>9}  "
            f"{r['reason']}"
        )
    return "\n".join(lines)


def _register_params(**kw: Any) -> Any:
    from scopectl.registration.elastic import ElasticParams
    from scopectl.registration.pair import RegisterParams

    try:
        el = ElasticParams(threshold=kw.pop("threshold"), min_block_px=kw.pop("min_block_px"))
        return RegisterParams(elastic_params=el, **kw)
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
    threshold: Annotated[float, typer.Option("--threshold", help="Block correlation threshold.")] = 0.5,
    min_block_px: Annotated[
        int, typer.Option("--min-block", help="Smallest elastic block (benchtop px).")
    ] = 50,
    margin_px: Annotated[
        int, typer.Option("--margin", help="Target inset from the capture's edge (px).")
    ] = 32,
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
    """Locate each phone capture in the benchtop mosaic, register it elastically and store the result."""
    from scopectl.registration.distortion import load_distortion_map
    from scopectl.registration.figures import write_distortion_figure
    from scopectl.registration.workflow import CaptureReport, accumulate_distortion, register_slide

    state = get_state(ctx)
    params = _register_params(
        ratio=ratio, elastic=elastic, margin_px=margin_px, threshold=threshold, min_block_px=min_block_px
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
                say(f"capture {rep.index}: not registered: {rep.reason}")

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
    human = _table(rows) + f"\n{result['ok']} registered, {result['failed']} failed"
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
        str, typer.Option("--split", help="train,val,test fractions (by capture).")
    ] = "0.7,0.15,0.15",
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
    min_quality: Annotated[
        float, typer.Option("--min-quality", help="Skip captures of lower quality.")
    ] = 0.5,
    compression: Annotated[str, typer.Option("--compression", help="none, lzf or gzip.")] = "none",
    force: Annotated[bool, typer.Option("--force", help="Replace an existing dataset.")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Cut the registered pairs of some slides into input/target patches split by capture."""
    from scopectl.registration.dataset import DatasetParams, build_dataset
    from scopectl.store import validate_slide_id

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
            split=_floats(split, "--split", 3),  # type: ignore[arg-type]
            seed=seed,
            jpeg_quality=jpeg_quality,
            min_tissue_fraction=min_tissue,
            min_patch_similarity=min_similarity,
            min_capture_quality=min_quality,
            compression=compression,  # type: ignore[arg-type]
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
        + (f"; skipped {len(d['skipped_captures'])} captures" if d["skipped_captures"] else "")
        + f"\nwritten to {out}"
    )
    emit(d, as_json=json_out, human=human)


def register(app: typer.Typer) -> None:
    """Add ``register`` and ``dataset build`` to ``app``."""
    app.command("register")(register_cmd)
    app.add_typer(dataset_app, name="dataset")
