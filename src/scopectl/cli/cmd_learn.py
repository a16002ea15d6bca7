"""``scopectl train``, ``scopectl enhance``, ``scopectl evaluate`` and ``scopectl export onnx``."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import typer

from scopectl.cli.common import JsonOpt, emit, get_state, progress, say
from scopectl.errors import ConfigError, InputFileError
from scopectl.imageio import check_pixel_size_um
from scopectl.writers import FORMATS

if TYPE_CHECKING:
    from rich.progress import Progress

    from scopectl.learn.train import TrainProgress, TrainResult

__all__ = ["enhance_cmd", "evaluate_cmd", "export_app", "register", "train_cmd"]

export_app = typer.Typer(help="Export models and slides to other formats.", no_args_is_help=True)

ModelOpt = Annotated[
    str, typer.Option("--model", help="Model name (<root>/models/<name>/) or a model directory.")
]
DeviceOpt = Annotated[str, typer.Option("--device", help="auto, cpu, cuda or cuda:N.")]
PrecisionOpt = Annotated[
    str, typer.Option("--precision", help="auto (bf16 on GPUs with bf16 support), fp32 or bf16.")
]


def _dataset_path(root_datasets: Path, name: str) -> Path:
    path = Path(name)
    if path.suffix.lower() in (".h5", ".hdf5") and (path.exists() or "/" in name):
        return path
    if "/" in name or name.startswith("."):
        raise ConfigError(f"dataset {name!r}: give a dataset name or a path to a .h5 file.")
    return root_datasets / f"{name}.h5"


def _is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def train_cmd(
    ctx: typer.Context,
    dataset: Annotated[
        str, typer.Option("--dataset", help="Dataset name (<root>/datasets/<name>.h5) or path.")
    ],
    model: ModelOpt,
    epochs: Annotated[
        int | None, typer.Option("--epochs", min=1, help="Train this many epochs in all.")
    ] = None,
    minutes: Annotated[
        float | None, typer.Option("--minutes", min=0.01, help="Train for this many minutes in all.")
    ] = None,
    device: DeviceOpt = "auto",
    recipe: Annotated[
        str,
        typer.Option(
            "--recipe",
            help="fast (residual network, warm-up + cosine schedule, colour augmentation: good in minutes) "
            "or paper (the paper's exact recipe: Adam 2e-4, batch 32, constant; needs hours on a GPU).",
        ),
    ] = "fast",
    batch_size: Annotated[
        int | None,
        typer.Option("--batch-size", min=1, help="Patches per step per process (fast 16, paper 32)."),
    ] = None,
    lr: Annotated[
        float | None,
        typer.Option(
            "--lr", help="Peak Adam learning rate (fast 1e-3 × √(batch/16); paper 2e-4 × √(batch/32))."
        ),
    ] = None,
    augment: Annotated[
        bool | None,
        typer.Option(
            "--augment/--no-augment", help="Colour/gain/flip augmentation (default: fast recipe only)."
        ),
    ] = None,
    precision: Annotated[
        str,
        typer.Option("--precision", help="auto (bf16 autocast on GPUs and on CPUs with AMX), fp32 or bf16."),
    ] = "auto",
    compile_model: Annotated[
        bool, typer.Option("--compile", help="Use torch.compile (GPU; slow start).")
    ] = False,
    seed: Annotated[int, typer.Option("--seed", min=0, help="Seed of initialisation and patch order.")] = 0,
    val_interval_s: Annotated[
        float, typer.Option("--val-interval-s", help="Also validate this often within long epochs.")
    ] = 600.0,
    checkpoint_interval_s: Annotated[
        float, typer.Option("--checkpoint-interval-s", help="Save a resumable checkpoint this often.")
    ] = 120.0,
    max_train_patches: Annotated[
        int | None,
        typer.Option("--max-train-patches", min=1, help="Use a seeded subset of the training set."),
    ] = None,
    max_val_patches: Annotated[
        int | None,
        typer.Option("--max-val-patches", min=1, help="Use a seeded subset of the validation set."),
    ] = None,
    patience: Annotated[
        int | None,
        typer.Option("--patience", min=1, help="Stop after this many validations without improvement."),
    ] = None,
    threads: Annotated[int | None, typer.Option("--threads", min=1, help="CPU threads for PyTorch.")] = None,
    start: Annotated[
        str,
        typer.Option(
            "--start",
            help="Starting weights: none (a seeded initialisation), twin (the model that ships with "
            "scopectl, pretrained on the twin; fast recipe, ratio 5/2), or a model name or folder to fine-tune.",
        ),
    ] = "none",
    force: Annotated[
        bool, typer.Option("--force", help="Discard an existing model/checkpoint of this name.")
    ] = False,
    json_out: JsonOpt = False,
) -> None:
    """Train the paper's network on a dataset; re-run the same command to resume after an interruption.

    Several GPUs or machines: run the same command under torchrun, e.g.
    ``torchrun --nproc_per_node=4 -m scopectl.cli.main train --dataset lung --model lung-v1 --minutes 10``.
    """
    from scopectl.learn.modelio import resolve_model_dir  # torch loads only when this runs
    from scopectl.learn.train import TrainConfig, train  # torch loads only when this runs

    state = get_state(ctx)
    precision_value = _precision(precision)
    if recipe not in ("fast", "paper"):
        raise ConfigError(f"--recipe {recipe!r} is not one of fast, paper.")
    config = TrainConfig(
        recipe=recipe,
        augment=augment,
        epochs=epochs,
        minutes=minutes,
        batch_size=batch_size,
        learning_rate=lr,
        seed=seed,
        device=device,
        precision=precision_value,
        compile=compile_model,
        val_interval_s=val_interval_s,
        checkpoint_interval_s=checkpoint_interval_s,
        max_train_patches=max_train_patches,
        max_val_patches=max_val_patches,
        patience=patience,
        threads=threads,
        start=start
        if start in ("twin", "none")
        else str(resolve_model_dir(start, models_dir=state.models_dir)),
    )
    dataset_path = _dataset_path(state.datasets_dir, dataset)
    model_dir = resolve_model_dir(model, models_dir=state.models_dir)
    main_process = _is_main_process()
    quiet = json_out or not main_process

    with progress(enabled=None if main_process else False) as bar:
        report = _TrainReporter(bar, quiet=quiet)
        result = train(dataset_path, model_dir, config, name=model_dir.name, force=force, on_progress=report)
    if not main_process:
        return
    out, human = _train_summary(result)
    warn_if_worse_than_bicubic(result.card)
    emit(out, as_json=json_out, human=human)


class _TrainReporter:
    """Shows training progress: a bar over steps (or time), and the start and validation messages unless quiet."""

    def __init__(self, bar: Progress, *, quiet: bool) -> None:
        self.bar = bar
        self.quiet = quiet
        self.task: Any = None

    def __call__(self, ev: TrainProgress) -> None:
        bar, quiet = self.bar, self.quiet
        if ev.kind == "start":
            if not quiet:
                say(ev.message)
            total = ev.steps_total if ev.steps_total is not None else ev.time_limit_s
            self.task = bar.add_task("training", total=total)
        elif ev.kind == "step" and self.task is not None:
            done = ev.steps_done if ev.steps_total is not None else min(ev.elapsed_s, ev.time_limit_s or 0.0)
            rate = f" {ev.patches_per_s:,.0f} patches/s" if ev.patches_per_s else ""
            bar.update(
                self.task,
                completed=done,
                description=f"epoch {ev.epoch:.2f} loss {ev.train_loss:.4g}{rate}",
            )
        elif ev.kind == "eval" and not quiet:
            say(
                f"epoch {ev.epoch:.2f}: train loss {ev.train_loss:.5g}, validation loss {ev.val_loss:.5g}"
                + (" (best, saved)" if ev.improved else f" (best {ev.best_val_loss:.5g})")
            )


def _train_summary(result: TrainResult) -> tuple[dict[str, Any], str]:
    """What ``scopectl train`` reports: the JSON object and the human-readable line."""
    card = result.card
    out = {
        "model": card.name,
        "model_dir": str(result.model_dir),
        "stopped": result.stopped,
        "resumed": result.resumed,
        "epochs_completed": result.epochs_completed,
        "steps": result.steps,
        "best_val_loss": result.best_val_loss,
        "patches_per_s": result.patches_per_s,
        "validation": card.validation,
        "training_curve": str(result.model_dir / "training-curve.png"),
        "device": card.training.device,
        "precision": card.training.precision,
        "start": card.training.start,
    }
    out["quality"] = card.quality.model_dump(mode="json") if card.quality is not None else None
    human = (
        f"model '{card.name}' in {result.model_dir}: stopped ({result.stopped}) after {result.epochs_completed:.2f} "
        f"epochs ({result.steps} steps, {result.patches_per_s:.1f} patches/s); best validation loss "
        f"{result.best_val_loss:.5g}"
        + (f"\nvalidation {card.quality.details}" if card.quality is not None else "")
    )
    return out, human


def warn_if_worse_than_bicubic(card: Any) -> None:
    """Say loudly on stderr when a model's card records that it is worse than bicubic interpolation."""
    q = card.quality
    if q is not None and q.worse_than_bicubic:
        say(
            f"WARNING: model '{card.name}' is WORSE than plain bicubic interpolation on its validation data "
            f"({q.details}). Its outputs may degrade your images: train longer, add captures, or check the "
            "registration; do not use it for diagnosis."
        )


def _precision(value: str) -> Literal["auto", "fp32", "bf16"]:
    if value not in ("auto", "fp32", "bf16"):
        raise ConfigError(f"--precision {value!r} is not one of auto, fp32, bf16.")
    return value  # type: ignore[return-value]


def enhance_cmd(
    ctx: typer.Context,
    inputs: Annotated[
        list[str],
        typer.Argument(help="DNG/JPEG/TIFF/PNG files, slide stores (PATH.h5) or store captures (PATH.h5:N)."),
    ],
    model: ModelOpt,
    out: Annotated[Path, typer.Option("--out", help="Output directory (one image file per input).")],
    device: DeviceOpt = "auto",
    precision: PrecisionOpt = "auto",
    tile: Annotated[
        int | None,
        typer.Option("--tile", min=64, help="Tile size in input pixels (default: whole image on GPU)."),
    ] = None,
    input_pixel_size_um: Annotated[
        float | None,
        typer.Option(
            "--input-pixel-size-um",
            help="Pixel size of the inputs at the sample, in µm (0.02–20); beats the files' metadata "
            "(default: a plausible size stated by the file, else the model's).",
        ),
    ] = None,
    compile_model: Annotated[
        bool, typer.Option("--compile", help="Use torch.compile (GPU; slow start).")
    ] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace existing output files.")] = False,
    fmt: Annotated[
        str,
        typer.Option(
            "--format",
            help="ome-tiff (tiled pyramid with OME-XML; QuPath, Fiji, napari), tiff (tiled pyramid for "
            "OpenSlide-based viewers) or png.",
        ),
    ] = "ome-tiff",
    json_out: JsonOpt = False,
) -> None:
    """Enhance phone images with a trained model; writes <out>/<input stem>.ome.tif (or .tif, .png) with the pixel size."""
    from scopectl.learn.device import pick_device, resolve_precision  # torch loads only when this runs

    # torch loads only when this runs
    from scopectl.learn.enhance import EnhanceOutcome, enhance_sources, parse_sources, prepare_model
    from scopectl.learn.modelio import load_model, resolve_model_dir  # torch loads only when this runs

    state = get_state(ctx)
    if fmt not in FORMATS:
        raise ConfigError(f"--format {fmt!r} is not one of {', '.join(FORMATS)}.")
    if not inputs:
        raise InputFileError("no inputs given.", hint="Name image files or slide stores to enhance.")
    if input_pixel_size_um is not None:
        input_pixel_size_um = check_pixel_size_um(input_pixel_size_um, what="--input-pixel-size-um")
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out}: is a file, not a directory.", hint="Name a directory.")
    sources = parse_sources(inputs)
    if not sources:
        raise InputFileError("the inputs contain no images (empty slide stores?).")
    dev = pick_device(device)
    prec = resolve_precision(_precision(precision), dev, inference=True)
    loaded, card = load_model(resolve_model_dir(model, models_dir=state.models_dir))
    warn_if_worse_than_bicubic(card)
    net = prepare_model(loaded, device=dev, compile=compile_model)
    t0 = time.perf_counter()
    with progress() as bar:
        task = bar.add_task("enhancing", total=len(sources))

        def done(outcome: EnhanceOutcome) -> None:
            bar.advance(task)
            for note in outcome.notes:
                if not json_out:
                    say(f"{outcome.source}: {note}")

        outcomes = enhance_sources(
            sources,
            net,
            card,
            out,
            device=dev,
            precision=prec,
            tile=tile,
            overwrite=overwrite,
            input_pixel_size_um=input_pixel_size_um,
            on_done=done,
            fmt=fmt,  # type: ignore[arg-type]
        )
    wall = time.perf_counter() - t0
    assumed = sum(o.pixel_size_assumed for o in outcomes)
    result = {
        "model": card.name,
        "device": str(dev),
        "precision": prec,
        "outputs": [
            {
                "source": o.source,
                "output": str(o.output),
                "input_shape": list(o.input_shape),
                "output_shape": list(o.output_shape),
                "input_pixel_size_um": o.input_pixel_size_um,
                "output_pixel_size_um": o.output_pixel_size_um,
                "pixel_size_assumed": o.pixel_size_assumed,
                "resampled": o.resampled,
                "seconds": o.seconds,
                "notes": o.notes,
            }
            for o in outcomes
        ],
        "wall_s": wall,
    }
    human = f"enhanced {len(outcomes)} image(s) into {out} in {wall:.1f} s on {dev} ({prec})" + (
        f"; {assumed} input(s) had no pixel size in their file: assumed the model's "
        f"{card.input_pixel_size_um:.4g} µm/px (use --input-pixel-size-um)"
        if assumed and input_pixel_size_um is None
        else ""
    )
    emit(result, as_json=json_out, human=human)


def evaluate_cmd(
    ctx: typer.Context,
    model: ModelOpt,
    slides: Annotated[str, typer.Option("--slides", help="Held-out slide ids, comma-separated (A,B).")],
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Report directory (default <root>/reports/<model>/evaluation)."),
    ] = None,
    source: Annotated[
        str, typer.Option("--source", help="Phone pixels to use: rgb (as stored), jpeg or dng (re-decoded).")
    ] = "rgb",
    max_captures: Annotated[
        int | None, typer.Option("--max-captures", min=1, help="Use at most this many captures.")
    ] = None,
    max_input_px: Annotated[
        int, typer.Option("--max-input-px", min=64, help="Largest evaluated region side, in input pixels.")
    ] = 1024,
    figures: Annotated[int, typer.Option("--figures", min=0, help="Fig. 3-like figures to write.")] = 1,
    device: DeviceOpt = "auto",
    precision: PrecisionOpt = "fp32",
    json_out: JsonOpt = False,
) -> None:
    """Reproduce the paper's Tables 2 (SSIM) and 3 (CIE-94) and Fig. 3 on held-out slides."""
    from scopectl.evaluation.report import evaluate_slides  # torch loads only when this runs

    # SciPy loads only when this runs (keeps `scopectl --help` fast)
    from scopectl.evaluation.tables import finite_json, tables_markdown
    from scopectl.learn.device import pick_device, resolve_precision  # torch loads only when this runs
    from scopectl.learn.modelio import resolve_model_dir  # torch loads only when this runs

    state = get_state(ctx)
    if source not in ("rgb", "jpeg", "dng"):
        raise ConfigError(f"--source {source!r} is not one of rgb, jpeg, dng.")
    ids = [s.strip() for s in slides.split(",") if s.strip()]
    if not ids:
        raise ConfigError("--slides is empty.", hint="Name held-out slides, e.g. --slides lung-07,lung-08.")
    model_dir = resolve_model_dir(model, models_dir=state.models_dir)
    out_dir = out if out is not None else state.reports_dir / model_dir.name / "evaluation"
    from scopectl.learn.modelio import check_model_dir, read_card  # torch loads only when this runs

    warn_if_worse_than_bicubic(read_card(check_model_dir(model_dir)))
    dev = pick_device(device)
    prec = resolve_precision(_precision(precision), dev, inference=True)
    report = evaluate_slides(
        model_dir,
        [state.slide_path(i) for i in ids],
        out_dir,
        device=dev,
        precision=prec,
        source=source,  # type: ignore[arg-type]
        max_captures=max_captures,
        max_input_px=max_input_px,
        figures=figures,
    )
    data = finite_json(report.tables.to_json())
    data.pop("per_capture", None)
    data.update(
        {
            "markdown": str(report.markdown),
            "json": str(report.json),
            "figures": [str(p) for p in report.figures],
        }
    )
    emit(data, as_json=json_out, human=tables_markdown(report.tables) + f"\nwritten to {out_dir}")


@export_app.command("onnx")
def export_onnx_cmd(
    ctx: typer.Context,
    model: ModelOpt,
    out: Annotated[
        Path | None, typer.Option("--out", help="ONNX file (default <model dir>/model.onnx).")
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing file.")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Write an ONNX model (checked against PyTorch with onnxruntime) for phones and browsers."""
    from scopectl.learn.modelio import load_model, resolve_model_dir  # torch loads only when this runs
    from scopectl.learn.onnx_export import OPSET, export_onnx  # torch loads only when this runs

    state = get_state(ctx)
    model_dir = resolve_model_dir(model, models_dir=state.models_dir)
    net, card = load_model(model_dir)
    path = out if out is not None else model_dir / "model.onnx"
    if path.exists() and not force:
        raise ConfigError(f"{path} exists.", hint="Pass --force to replace it or choose another --out.")
    diff = export_onnx(net, card, path)
    emit(
        {
            "model": card.name,
            "onnx": str(path),
            "opset": OPSET,
            "max_abs_diff": diff,
            "bytes": path.stat().st_size,
        },
        as_json=json_out,
        human=f"wrote {path} (opset {OPSET}); onnxruntime matches PyTorch within {diff * 255:.2g} of an 8-bit level",
    )


def register(app: typer.Typer) -> None:
    """Add ``train``, ``enhance``, ``evaluate`` and ``export onnx`` to the CLI."""
    app.command("train")(train_cmd)
    app.command("enhance")(enhance_cmd)
    app.command("evaluate")(evaluate_cmd)
    app.add_typer(export_app, name="export")
