"""``scopectl demo``: the main job end to end on the simulated rig.

It runs the same commands a user types, printing each before running it: acquire a training slide and a
held-out slide on the simulated rig, register both, build a dataset, train the network, enhance the
held-out captures and evaluate them with the paper's metrics.  Re-running it continues where it stopped
(acquisitions resume, finished steps are redone quickly).
"""

from __future__ import annotations

import json
import shlex
import time
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml

from scopectl.acquisition.protocol import find_protocol, load_protocol
from scopectl.cli.common import CliState, emit, get_state, say
from scopectl.cli.runner import CommandGroup, run_command
from scopectl.errors import ScopectlError

__all__ = ["register"]


#: ``scopectl demo --quick``: a small region, small tiles and captures, two phone fields per slide.
QUICK_REGION_UM = 480.0
QUICK_TILE_PX = 512
QUICK_CAPTURE_PX = 384
QUICK_FIELDS = 2


def _protocol_file(dest: Path, *, sample_protocol: str, fields: int, quick: bool = False) -> Path:
    """Copy a shipped protocol with more phone fields (the way users make their own protocols).

    ``quick`` also shrinks the scanned region, the benchtop tiles and the phone captures
    (:data:`QUICK_REGION_UM` ...), so that the whole job runs in a minute or two on a CPU.
    """
    data = yaml.safe_load(find_protocol(sample_protocol).read_text(encoding="utf-8"))
    data["name"] = f"{data['name']}-demo"
    data["phone"]["fields"]["count"] = fields
    change = f"{fields} fields"
    if quick:
        region = data["benchtop"]["region"]
        region["width_um"] = region["height_um"] = QUICK_REGION_UM
        data["benchtop"]["tile_shape_px"] = [QUICK_TILE_PX, QUICK_TILE_PX]
        data["phone"]["capture_shape_px"] = [QUICK_CAPTURE_PX, QUICK_CAPTURE_PX]
        change += f", {QUICK_REGION_UM:g} µm region, {QUICK_TILE_PX} px tiles, {QUICK_CAPTURE_PX} px captures"
    data["description"] = f"{data['description']} (demo copy: {change})"
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(
        "# Written by `scopectl demo` from protocols/"
        + sample_protocol
        + f".yaml ({change}).\n"
        + yaml.safe_dump(data, sort_keys=False),
        encoding="utf-8",
    )
    load_protocol(str(dest))  # validate
    return dest


def demo_cmd(
    ctx: typer.Context,
    full: Annotated[
        bool,
        typer.Option(
            "--full", help="The bigger run that aims at the paper's quality (all three samples; long)."
        ),
    ] = False,
    quick: Annotated[
        bool,
        typer.Option(
            "--quick",
            help="A small run of the whole job (a small region, two phone fields per slide, one short epoch "
            "of training): a first look in a minute or two on a CPU.  The network will not be good.",
        ),
    ] = False,
    minutes: Annotated[
        float | None,
        typer.Option(
            "--minutes",
            min=0.1,
            help="Training time per model (default 5, or 20 with --full; --quick trains one short epoch).",
        ),
    ] = None,
    device: Annotated[
        str, typer.Option("--device", help="auto, cpu or cuda for training and enhancement.")
    ] = "auto",
    seed: Annotated[int, typer.Option("--seed", help="Seed of the simulated slides.")] = 0,
    json_out: Annotated[bool, typer.Option("--json", help="Print one JSON object as the last line.")] = False,
) -> None:
    """Run the main job end to end on the simulated rig: acquire, register, build a dataset, train, enhance, evaluate."""
    if quick and full:
        raise typer.BadParameter("--quick and --full exclude each other.", param_hint="--quick")
    state = get_state(ctx)
    cli_group = ctx.find_root().command  # the scopectl group this demo was started from
    root = state.root
    samples = (
        [("lung", "lung-trichrome"), ("pap", "pap-smear"), ("blood", "blood-smear")]
        if full
        else [("lung", "lung-trichrome")]
    )
    fields = 16 if full else QUICK_FIELDS if quick else 9
    train_minutes = minutes if minutes is not None else (20.0 if full else 5.0)
    # --quick without --minutes: one epoch on a seeded subset of the patches
    train_budget = (
        ["--epochs", "1", "--max-train-patches", "256", "--max-val-patches", "64"]
        if quick and minutes is None
        else ["--minutes", str(train_minutes)]
    )
    train_title = "one short epoch" if quick and minutes is None else f"{train_minutes:g} min"
    demo_dir = state.reports_dir / "demo"
    t_start = time.monotonic()
    results: dict[str, Any] = {"root": str(root), "simulated": True, "samples": {}}
    step = _Steps(cli_group, root, json_out=json_out)
    if not json_out:
        say(
            "scopectl demo — everything below runs on the SIMULATED rig (LED board on a pseudo-terminal, phone "
            "as an adbd on 127.0.0.1, benchtop as Micro-Manager Python devices, slides from the digital twin)."
        )
    for k, (sample, proto_name) in enumerate(samples):
        proto = _protocol_file(
            demo_dir / f"{proto_name}-demo.yaml", sample_protocol=proto_name, fields=fields, quick=quick
        )
        results["samples"][sample] = _run_sample(
            step,
            state,
            sample=sample,
            proto=proto,
            seed=seed + 2 * k,
            train_budget=train_budget,
            train_title=train_title,
            device=device,
            demo_dir=demo_dir,
        )
    results["elapsed_s"] = time.monotonic() - t_start
    lines = ["", f"demo finished in {results['elapsed_s'] / 60:.1f} min (simulated rig). Where things are:"]
    for sample, r in results["samples"].items():
        lines += [
            f"  {sample}: slides {', '.join(r['slides'])} under {state.slides_dir}",
            f"        model {r['model']}",
            f"        enhanced TIFFs {r['enhanced_dir']}",
            f"        tables and figures {r['report_dir']}",
        ]
    emit(results, as_json=json_out, human="\n".join(lines))


class _Steps:
    """Runs the demo's steps as ``scopectl`` commands on one data root, printing each unless JSON is asked for."""

    def __init__(self, cli_group: CommandGroup, root: Path, *, json_out: bool) -> None:
        self.cli_group = cli_group
        self.root = root
        self.json_out = json_out

    def __call__(self, title: str, args: list[str], *, ok_codes: tuple[int, ...] = (0,)) -> int:
        """Run ``scopectl --root ROOT ARGS``; its exit code, or :class:`ScopectlError` if not in ``ok_codes``."""
        root = self.root
        line = "scopectl --root " + shlex.quote(str(root)) + " " + " ".join(shlex.quote(a) for a in args)
        if not self.json_out:
            say("")
            say(f"== {title}")
            say(f"$ {line}")
        t0 = time.monotonic()
        code = run_command(self.cli_group, ["--root", str(root), *args])
        if code not in ok_codes:
            raise ScopectlError(
                f"demo step '{title}' failed (exit {code}): {line}", hint="See the error above."
            )
        if not self.json_out:
            say(f"   ({time.monotonic() - t0:.0f} s)")
        return code


def _run_sample(
    step: _Steps,
    state: CliState,
    *,
    sample: str,
    proto: Path,
    seed: int,
    train_budget: list[str],
    train_title: str,
    device: str,
    demo_dir: Path,
) -> dict[str, Any]:
    """The whole job for one sample: acquire and register a training and a held-out slide (seeds ``seed`` and
    ``seed + 1``), build the dataset, train, enhance the held-out captures and evaluate; where things are."""
    train_slide, test_slide = f"demo-{sample}-a", f"demo-{sample}-b"
    for slide, s in ((train_slide, seed), (test_slide, seed + 1)):
        args = ["acquire", "--slide", slide, "--rig", "sim", "--protocol", str(proto), "--seed", str(s)]
        if state.slide_path(slide).exists():
            args = ["acquire", "--slide", slide, "--rig", "sim", "--resume"]
        step(f"acquire slide {slide} ({'training' if slide == train_slide else 'held out'})", args)
        step(f"register slide {slide}", ["register", "--slide", slide])
    dataset = f"demo-{sample}"
    step(
        "build the training set",
        ["dataset", "build", "--slides", train_slide, "--name", dataset, "--force"],
    )
    model = f"demo-{sample}"
    step(
        f"train the network for {train_title}",
        [
            "train",
            "--dataset",
            dataset,
            "--model",
            model,
            *train_budget,
            "--device",
            device,
            "--force",
        ],
    )
    enhanced = demo_dir / f"enhanced-{sample}"
    step(
        "enhance the held-out captures",
        [
            "enhance",
            str(state.slide_path(test_slide)),
            "--model",
            model,
            "--out",
            str(enhanced),
            "--device",
            device,
            "--overwrite",
        ],
    )
    report_dir = demo_dir / f"evaluation-{sample}"
    step(
        "evaluate on the held-out slide (the paper's Tables 2 and 3)",
        [
            "evaluate",
            "--model",
            model,
            "--slides",
            test_slide,
            "--out",
            str(report_dir),
            "--device",
            device,
        ],
    )
    return {
        "slides": [train_slide, test_slide],
        "dataset": dataset,
        "model": str(state.models_dir / model),
        "enhanced_dir": str(enhanced),
        "report_dir": str(report_dir),
        "tables": _read_tables(report_dir),
    }


def _read_tables(report_dir: Path) -> Any:
    """The tables `scopectl evaluate` wrote (``tables.json``), or None."""
    try:
        return json.loads((report_dir / "tables.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def register(app: typer.Typer) -> None:
    """Add ``demo`` to the CLI."""
    app.command("demo")(demo_cmd)
