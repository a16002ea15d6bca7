"""``scopectl store info|verify|ls`` and ``scopectl import``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from scopectl.cli.common import JsonOpt, emit, get_state, say
from scopectl.errors import ScopectlError, StoreCorruptError
from scopectl.store import SlideStore
from scopectl.store.importer import TileGrid, import_slide

__all__ = ["register"]

store_app = typer.Typer(help="Inspect and check slide stores.", no_args_is_help=True)

SlideOpt = Annotated[str, typer.Option("--slide", help="Slide id (file <root>/slides/<id>.h5).")]


def _fmt_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.1f} GiB"


def _origin(info: dict[str, Any]) -> str:
    if info["simulated"]:
        return "SIMULATED rig"
    if info["rig"].get("kind") == "import":
        return "imported from files"
    return "real hardware"


@store_app.command("info")
def info_cmd(ctx: typer.Context, slide: SlideOpt, json_out: JsonOpt = False) -> None:
    """Summarise a slide: schema, rig, counts, mosaic, size."""
    state = get_state(ctx)
    with SlideStore.open(state.slide_path(slide)) as store:
        info = store.info()
    mosaic = info["mosaic"]
    human = "\n".join(
        [
            f"slide      {info['slide_id']}  ({info['path']})",
            f"schema     {info['format']} v{info['schema_version']}, created {info['created']} by "
            f"{info['software_version']}",
            f"hardware   {_origin(info)}"
            f"{'' if not info['protocol'] else ', protocol ' + str(info['protocol'])}",
            f"benchtop   {info['tiles']} tiles; mosaic "
            + (
                "none"
                if mosaic is None
                else f"{mosaic['cols']}×{mosaic['rows']} px at {mosaic['pixel_size_um']:.4g} µm/px"
            ),
            f"phone      {info['captures']} captures; registered {info['registered_ok']} ok, "
            f"{info['registered_failed']} failed",
            f"status     {'complete' if info['completeness']['complete'] else 'INCOMPLETE'}: "
            f"{info['completeness']['acquired_fields']} of {info['completeness']['planned_fields']} planned "
            f"fields acquired, {info['completeness']['flagged_fields']} flagged",
            f"size       {_fmt_bytes(info['size_bytes'])}",
        ]
    )
    emit(info, as_json=json_out, human=human)


#: ``store verify`` reads every image (``--deep``) by default when the slide holds at most this much image
#: data: deep reads about 100 MB/s on one core (benchmarks/bench_verify.py), so this costs about 5 s.
DEEP_VERIFY_DEFAULT_MAX_BYTES = 512 * 1024**2


@store_app.command("verify")
def verify_cmd(
    ctx: typer.Context,
    slide: SlideOpt,
    deep: Annotated[
        bool | None,
        typer.Option(
            "--deep/--quick",
            help="--deep decodes every image chunk (default when the slide holds up to 512 MiB of image data); "
            "--quick checks structure, metadata and the raw files' SHA-256 only.",
            show_default=False,
        ),
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Check a slide: structure, metadata, every raw file's SHA-256 and (deep) every image; non-zero exit on a problem."""
    state = get_state(ctx)
    path = state.slide_path(slide)
    with SlideStore.open(path) as store:
        data_bytes = store.data_bytes()
        if deep is None:
            deep = data_bytes <= DEEP_VERIFY_DEFAULT_MAX_BYTES
        report = store.verify(deep=deep)
    report["path"] = str(path)
    report["data_bytes"] = data_bytes
    lines = [f"{path}: {'OK' if report['ok'] else 'PROBLEMS FOUND'} ({'deep' if deep else 'quick'} check)"]
    lines.append(
        f"  {report['tiles']} tiles, {report['captures']} captures, mosaic {'yes' if report['mosaic'] else 'no'}, "
        f"{report['raw_files_checked']} raw files checked"
        + (f", {report['bytes_read'] / 1e6:.0f} MB of images decoded" if deep else "")
    )
    if not deep:
        lines.append(
            f"  image chunks were not decoded ({_fmt_bytes(data_bytes)} of image data): run with --deep to read them"
        )
    if report["incomplete"]:
        lines.append(
            f"  {len(report['incomplete'])} incomplete item(s) left by an interrupted writer "
            "(ignored by readers; removed on --resume)"
        )
    lines.extend(f"  problem: {p}" for p in report["problems"])
    emit(report, as_json=json_out, human="\n".join(lines))
    if not report["ok"]:
        raise StoreCorruptError(
            f"{path}: {len(report['problems'])} problem(s) found: {report['problems'][0].rstrip('.')}."
        )


@store_app.command("ls")
def ls_cmd(ctx: typer.Context, json_out: JsonOpt = False) -> None:
    """List the slides under the data root."""
    state = get_state(ctx)
    rows: list[dict[str, Any]] = []
    stale = state.data.stale_items()
    if state.slides_dir.is_dir():
        for path in sorted(state.slides_dir.glob("*.h5")):
            try:
                with SlideStore.open(path) as store:
                    i = store.info()
                rows.append(
                    {
                        "slide_id": i["slide_id"],
                        "simulated": i["simulated"],
                        "tiles": i["tiles"],
                        "captures": i["captures"],
                        "mosaic": i["mosaic"] is not None,
                        "size_bytes": i["size_bytes"],
                        "path": str(path),
                    }
                )
            except ScopectlError as exc:  # a damaged or unreadable slide is one row, not the end
                rows.append({"slide_id": path.stem, "error": exc.one_line(), "path": str(path)})
    if not rows:
        human = f"no slides under {state.slides_dir}"
    else:
        human = "\n".join(
            f"{r['slide_id']:<20} ERROR {r['error']}"
            if "error" in r
            else f"{r['slide_id']:<20} {'sim ' if r['simulated'] else 'real'} {r['tiles']:>5} tiles "
            f"{r['captures']:>5} captures  mosaic {'yes' if r['mosaic'] else 'no '}  {_fmt_bytes(r['size_bytes'])}"
            for r in rows
        )
    if stale:
        human += "\n" + "\n".join(
            f"leftover of an interrupted run (removed by the next writing command): {item.describe()}"
            for item in stale
        )
    result: dict[str, Any] = {"root": str(state.root), "slides": rows}
    if stale:
        result["leftovers"] = [
            {"path": str(i.path), "kind": i.kind, "pid": i.pid, "size_bytes": i.size_bytes} for i in stale
        ]
    emit(result, as_json=json_out, human=human)


def import_cmd(
    ctx: typer.Context,
    slide: SlideOpt,
    phone: Annotated[
        list[Path],
        typer.Option("--phone", help="Phone image(s): DNG, JPEG, TIFF or PNG (repeat, or list several)."),
    ],
    benchtop: Annotated[
        list[Path], typer.Option("--benchtop", help="Benchtop mosaic, or several tiles with --benchtop-grid.")
    ],
    phone_um_per_px: Annotated[
        float | None, typer.Option("--phone-um-per-px", help="Phone pixel size at the sample (µm).")
    ] = None,
    benchtop_um_per_px: Annotated[
        float | None, typer.Option("--benchtop-um-per-px", help="Benchtop pixel size at the sample (µm).")
    ] = None,
    benchtop_grid: Annotated[
        str | None,
        typer.Option("--benchtop-grid", help="Layout ROWSxCOLS of several benchtop tiles (row-major)."),
    ] = None,
    benchtop_overlap: Annotated[
        float, typer.Option("--benchtop-overlap", help="Overlap fraction between neighbouring tiles.")
    ] = 0.1,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing slide of this id.")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Build a slide store from phone and benchtop image files collected by other means."""
    state = get_state(ctx)
    target = state.slide_path(slide)
    grid = TileGrid.parse(benchtop_grid, benchtop_overlap) if benchtop_grid else None
    quiet = json_out
    state.prepare_writing(state.slides_dir, quiet=quiet)

    def report(msg: str) -> None:
        if not quiet:
            say(msg)

    result = import_slide(
        target,
        slide_id=slide,
        phone_files=phone,
        benchtop_files=benchtop,
        phone_um_per_px=phone_um_per_px,
        benchtop_um_per_px=benchtop_um_per_px,
        grid=grid,
        force=force,
        stitcher=_stitch,
        on_progress=report,
    )
    r = result.to_dict()
    emit(
        r,
        as_json=json_out,
        human=f"imported slide '{slide}' into {r['path']}: {r['captures']} phone captures at "
        f"{r['phone_pixel_size_um']:.4g} µm/px, benchtop mosaic {r['mosaic_shape'][1]}×{r['mosaic_shape'][0]} px at "
        f"{r['benchtop_pixel_size_um']:.4g} µm/px",
    )


def _stitch(store: SlideStore) -> None:
    # SciPy loads only when this runs (keeps `scopectl --help` fast)
    from scopectl.stitching import stitch_store

    stitch_store(store)


def register(app: typer.Typer) -> None:
    """Add ``store`` and ``import`` to the CLI."""
    app.add_typer(store_app, name="store")
    app.command("import")(import_cmd)


__all__ += ["import_cmd", "store_app"]
