"""``scopectl export ome-zarr`` and ``scopectl export bioimageio`` (the ``export`` group is in cmd_learn)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from scopectl.cli.cmd_learn import export_app
from scopectl.cli.common import JsonOpt, emit, get_state, say
from scopectl.interop.ome_zarr import export_slide

__all__ = ["export_bioimageio_cmd", "export_ome_zarr_cmd", "register"]


def export_ome_zarr_cmd(
    ctx: typer.Context,
    slide: Annotated[str, typer.Option("--slide", help="Slide id (file <root>/slides/<id>.h5).")],
    out: Annotated[Path, typer.Option("--out", help="Output folder; receives <slide-id>.ome.zarr.")],
    ozx: Annotated[
        bool, typer.Option("--ozx", help="Also write the single-file zipped form <slide-id>.ozx.")
    ] = False,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing export.")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Export a slide as OME-Zarr (NGFF 0.5): the mosaic and every capture as multiscale images."""

    state = get_state(ctx)
    result = export_slide(
        state.slide_path(slide),
        out,
        ozx=ozx,
        overwrite=force,
        on_image=None if json_out else (lambda name: say(f"wrote {name}")),
    )
    c = result.completeness
    emit(
        {
            "slide": slide,
            "ome_zarr": str(result.zarr_path),
            "ozx": None if result.ozx_path is None else str(result.ozx_path),
            "images": result.images,
            "pixel_bytes": result.pixel_bytes,
            "seconds": result.seconds,
            "completeness": c,
        },
        as_json=json_out,
        human=f"wrote {result.zarr_path}"
        + (f" and {result.ozx_path}" if result.ozx_path is not None else "")
        + f": {len(result.images)} images in {result.seconds:.1f} s; acquisition "
        + ("complete" if c["complete"] else "INCOMPLETE")
        + f" ({c['acquired_fields']} of {c['planned_fields']} fields, {c['flagged_fields']} flagged)",
    )


def export_bioimageio_cmd(
    ctx: typer.Context,
    model: Annotated[
        str, typer.Option("--model", help="Model name (<root>/models/<name>/) or a model directory.")
    ],
    out: Annotated[Path, typer.Option("--out", help="The package to write (FILE.zip).")],
    author: Annotated[
        list[str],
        typer.Option("--author", help="An author of the model (repeat for several); the zoo requires one."),
    ],
    license_id: Annotated[
        str, typer.Option("--license", help="SPDX licence of the model weights.")
    ] = "CC-BY-4.0",
    force: Annotated[bool, typer.Option("--force", help="Replace an existing file.")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Package a trained model for the BioImage Model Zoo (bioimageio.spec 0.5), checked before it is written."""
    from scopectl.interop.bioimageio import export_model  # torch loads only when this runs
    from scopectl.learn.modelio import resolve_model_dir  # torch loads only when this runs

    state = get_state(ctx)
    model_dir = resolve_model_dir(model, models_dir=state.models_dir)
    result = export_model(model_dir, out, authors=author, license_id=license_id, overwrite=force)
    emit(
        {
            "model": result.name,
            "package": str(result.path),
            "bytes": result.path.stat().st_size,
            "weights": result.weight_formats,
            "test_max_abs_diff": result.test_max_abs_diff,
        },
        as_json=json_out,
        human=f"wrote {result.path} ({', '.join(result.weight_formats)}); it passes bioimageio's checks",
    )


def register(app: typer.Typer) -> None:
    """Add ``export ome-zarr`` and ``export bioimageio`` to the ``export`` group."""
    del app  # the group is cmd_learn's export_app, already added to the application
    export_app.command("ome-zarr")(export_ome_zarr_cmd)
    export_app.command("bioimageio")(export_bioimageio_cmd)
