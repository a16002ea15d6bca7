"""``scopectl acquire`` (paired acquisition) and ``scopectl rig check|sim``."""

from __future__ import annotations

import contextlib
import shutil
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from scopectl.cli.common import CliState, JsonOpt, emit, get_state, progress, say
from scopectl.errors import ConfigError, DeviceError, StoreExistsError

__all__ = ["register"]

RigOpt = Annotated[
    str | None,
    typer.Option(
        "--rig",
        help="'sim' for the simulated rig, or the path of a rig.yaml (never implied).",
        show_default=False,
    ),
]


class CliOperator:
    """Talks to the person at the bench through the terminal."""

    def __init__(self, *, quiet: bool) -> None:
        self.quiet = quiet

    def notice(self, message: str) -> None:
        if not self.quiet:
            say(message)

    def pause(self, message: str) -> None:
        if not sys.stdin.isatty():
            raise DeviceError(
                f"{message}.", hint="Then continue with `scopectl acquire --slide ID --resume`."
            )
        say(f"PAUSED: {message}, then press Enter (Ctrl-C stops; --resume continues later).")
        input()

    def prompt_move(self, message: str) -> None:
        # acquire_cmd refuses a hand-moved stage before starting when no terminal is attached
        say(message)
        input()


def _rig_spec(rig: str | None) -> str:
    if rig is None:
        raise ConfigError(
            "no rig given.",
            hint="Pass --rig PATH (a rig.yaml) for real hardware or --rig sim for the simulated rig.",
        )
    return rig


def _open_for(spec: str, proto: Any, *, seed: int, prompt: Any, workdir: Path | None) -> Any:
    """Open the rig for a protocol (the simulated cameras take the protocol's frame sizes)."""
    from scopectl.hardware.rig import open_rig

    return open_rig(
        spec,
        seed=seed,
        sample=proto.sample,
        prompt=prompt,
        capture_shape=proto.phone.capture_shape_px,
        benchtop_tile_shape=proto.benchtop.tile_shape_px,
        workdir=workdir,
    )


def _private_dir(scope: contextlib.ExitStack, state: CliState, kind: str) -> Path:
    """A private folder under the root (``.scopectl/<kind>-<pid>``, 0700), removed when ``scope`` closes."""
    path = state.data.private_dir(kind)
    scope.callback(shutil.rmtree, path, ignore_errors=True)
    return path


def _rig_default_protocol(spec: str) -> str:
    from pathlib import Path

    from scopectl.hardware.rig import load_rig_config

    return load_rig_config(Path(spec)).default_protocol


def acquire_cmd(
    ctx: typer.Context,
    slide: Annotated[str, typer.Option("--slide", help="Slide id (file <root>/slides/<id>.h5).")],
    rig: RigOpt = None,
    protocol: Annotated[
        str | None,
        typer.Option("--protocol", help="Protocol name (protocols/NAME.yaml) or path; default: the rig's."),
    ] = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue an interrupted acquisition of this slide.")
    ] = False,
    force: Annotated[
        bool, typer.Option("--force", help="Replace an existing slide (its data is lost).")
    ] = False,
    seed: Annotated[
        int, typer.Option("--seed", help="Seed of the plan's random choices and of the simulated rig.")
    ] = 0,
    recapture_flagged: Annotated[
        bool,
        typer.Option("--recapture-flagged", help="Retake fields whose capture was flagged by the checks."),
    ] = False,
    json_out: JsonOpt = False,
) -> None:
    """Acquire a paired dataset of one slide: benchtop mosaic plus phone captures, resumable."""
    from scopectl.acquisition.engine import AcquisitionEngine, Progress
    from scopectl.acquisition.plan import AcquisitionPlan, build_plan
    from scopectl.acquisition.protocol import load_protocol
    from scopectl.hardware.benchtop.logfile import pymmcore_log
    from scopectl.hardware.rig import ManualPhoneStage
    from scopectl.store import SlideStore, validate_slide_id

    state = get_state(ctx)
    validate_slide_id(slide)
    path = state.slide_path(slide)
    spec = _rig_spec(rig)
    operator = CliOperator(quiet=json_out)
    if resume and force:
        raise ConfigError("--resume and --force contradict each other.", hint="Pick one.")
    if (recapture_flagged or resume) and not path.exists():
        raise StoreExistsError(f"{path}: no slide '{slide}' to resume.", hint="Start it without --resume.")
    if path.exists() and not (resume or force or recapture_flagged):
        raise StoreExistsError(
            f"{path}: slide '{slide}' already exists.",
            hint="Use --resume to continue it, --recapture-flagged to retake flagged fields, or --force to replace it.",
        )

    # The root must take our files before the rig is powered; leftovers of killed runs are removed first.
    state.prepare_writing(state.slides_dir, quiet=json_out)
    with contextlib.ExitStack() as scope:
        sim_dir = _private_dir(scope, state, "sim") if spec == "sim" else None
        pull_dir = _private_dir(scope, state, "pull")
        log = scope.enter_context(pymmcore_log(state.data.logs_dir / "pymmcore-plus.log"))
        if path.exists() and not force:
            store = SlideStore.open(path, mode="a")
            try:
                saved = store.plan()
                if not saved:
                    raise StoreExistsError(
                        f"{path}: slide '{slide}' has no acquisition plan (was it imported?)."
                    )
                plan = AcquisitionPlan.model_validate(saved)
                if protocol is not None and load_protocol(protocol).name != plan.protocol["name"]:
                    raise ConfigError(
                        f"{path}: slide '{slide}' was started with protocol '{plan.protocol['name']}', not '{protocol}'.",
                        hint="A resumed slide keeps its protocol; drop --protocol.",
                    )
                if store.simulated != (spec == "sim"):
                    raise ConfigError(
                        f"{path}: slide '{slide}' was acquired on {'the simulated rig' if store.simulated else 'real hardware'}; "
                        f"--rig {spec} would mix the two.",
                        hint="Resume it on the same kind of rig.",
                    )
                if store.discarded and not json_out:
                    say(
                        f"resuming: discarded {len(store.discarded)} incomplete item(s) left by the interrupted run"
                    )
            except BaseException:
                store.close()
                raise
            seed = plan.seed
            proto_model = plan.protocol_model()
            try:
                opened = _open_for(spec, proto_model, seed=seed, prompt=operator.prompt_move, workdir=sim_dir)
            except BaseException:
                store.close()
                raise
        else:
            # A real rig file names the default protocol; the simulated rig's default is lung-trichrome.
            proto_name = protocol
            if proto_name is None:
                proto_name = "lung-trichrome" if spec == "sim" else _rig_default_protocol(spec)
            proto_model = load_protocol(proto_name)
            opened = _open_for(spec, proto_model, seed=seed, prompt=operator.prompt_move, workdir=sim_dir)
            plan = build_plan(proto_model, slide_id=slide, seed=seed)
            try:
                store = SlideStore.create(
                    path,
                    slide_id=slide,
                    rig=opened.description,
                    simulated=opened.simulated,
                    protocol=proto_model.model_dump(mode="json"),
                    force=force,
                )
            except BaseException:
                opened.close()
                raise
            store.set_plan(plan.model_dump(mode="json"))
        if isinstance(opened.phone_stage, ManualPhoneStage) and not sys.stdin.isatty():
            store.close()
            opened.close()
            raise DeviceError(
                f"rig {opened.name}: the phone stage is moved by hand and no operator is at a terminal.",
                hint="Run scopectl acquire interactively.",
            )

        with store, opened, progress(enabled=None if not json_out else False) as bars:
            tasks: dict[str, Any] = {}

            def start(name: str, total: int, done: int) -> None:
                tasks[name] = bars.add_task(name, total=total, completed=done)

            def advance(name: str) -> None:
                bars.advance(tasks[name])

            from scopectl.acquisition.checks import locate_in_mosaic
            from scopectl.stitching import stitch_store

            engine = AcquisitionEngine(
                opened,
                store,
                plan,
                operator=operator,
                locator=locate_in_mosaic,
                stitcher=stitch_store,
                progress=Progress(start=start, advance=advance),
                recapture_flagged=recapture_flagged,
                pull_dir=pull_dir,
            )
            summary = engine.run()
        if log is not None and log.failure and not json_out:
            say(f"note: pymmcore-plus's log could not be written ({log.failure}).")
        flagged = summary["flagged_fields"]
        human = "\n".join(
            [
                f"slide '{slide}' complete: {summary['path']} ({'SIMULATED rig' if summary['simulated'] else 'real hardware'}, "
                f"protocol {summary['protocol']})",
                f"  benchtop: {summary['tiles']} tiles, mosaic {summary['mosaic_shape'][1]}×{summary['mosaic_shape'][0]} px",
                f"  phone:    {summary['fields_captured']}/{summary['fields_planned']} fields, "
                f"{summary['located_fields']} located in the mosaic, {len(flagged)} flagged, "
                f"{summary['capture_retries']} retries",
                *(f"    field {k}: {'; '.join(v)}" for k, v in flagged.items()),
                f"  battery:  {summary['battery_mv_range']} mV"
                if summary["battery_mv_range"]
                else "  battery:  -",
                f"  time:     {summary['elapsed_s']:.0f} s"
                + (f"; {summary['time_per_tile_s']:.2f} s/tile" if summary["time_per_tile_s"] else "")
                + (
                    f"; {summary['time_per_capture_s']:.2f} s/capture"
                    if summary["time_per_capture_s"]
                    else ""
                ),
                f"  store:    {summary['store_bytes'] / 1e6:.1f} MB, verified {'OK' if summary['verified'] else 'with PROBLEMS'}",
            ]
            + (["  re-take the flagged fields with --recapture-flagged"] if flagged else [])
        )
        emit(summary, as_json=json_out, human=human)


rig_app = typer.Typer(help="Check the rig's devices, or run the simulated rig.", no_args_is_help=True)


@rig_app.command("check")
def rig_check_cmd(ctx: typer.Context, rig: RigOpt = None, json_out: JsonOpt = False) -> None:
    """Probe each device: found, model or firmware, battery, round-trip latency; non-zero exit if one is missing."""
    from scopectl.hardware.rig import check_rig, open_rig

    spec = _rig_spec(rig)
    with open_rig(spec) as opened:
        rows = check_rig(opened)
    lines = [f"rig {'sim (SIMULATED devices)' if spec == 'sim' else spec}"]
    lines.append(f"  {'device':<10} {'found':<6} {'model / firmware':<40} {'battery':<10} {'latency':>9}")
    for r in rows:
        if r["found"]:
            lines.append(
                f"  {r['device']:<10} {'yes':<6} {r['model'][:40]:<40} {r['battery']:<10} {r['latency_ms']:>7.1f} ms"
            )
        else:
            lines.append(f"  {r['device']:<10} {'NO':<6} {r['error']}")
    ok = all(r["found"] for r in rows)
    emit({"rig": spec, "ok": ok, "devices": rows}, as_json=json_out, human="\n".join(lines))
    if not ok:
        missing = [r["device"] for r in rows if not r["found"]]
        raise DeviceError(f"rig {spec}: {', '.join(missing)} not found.", hint="See the table above.")


@rig_app.command("sim")
def rig_sim_cmd(
    seed: Annotated[int, typer.Option("--seed", help="Seed of the simulated slide and devices.")] = 0,
    sample: Annotated[str, typer.Option("--sample", help="lung, pap or blood.")] = "lung",
    duration_s: Annotated[
        float | None,
        typer.Option("--duration-s", help="Stop after this many seconds (default: until Ctrl-C)."),
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Start every simulated device and keep it running, printing how to reach each from outside."""
    from scopectl.hardware.rig import open_simulated_rig

    if sample not in ("lung", "pap", "blood"):
        raise ConfigError(f"--sample {sample!r}: expected lung, pap or blood.")
    stop = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        with open_simulated_rig(seed=seed, sample=sample) as opened:
            info = {
                "led_ring": opened.addresses["led_ring"],
                "phone": opened.addresses["phone"],
                "benchtop": "in-process Micro-Manager core (pymmcore-plus UniMMCore); drive it with "
                "scopectl acquire --rig sim",
                "seed": seed,
                "sample": sample,
            }
            emit(
                info,
                as_json=json_out,
                human="\n".join(
                    [
                        "simulated rig running (SIMULATED devices) — Ctrl-C to stop",
                        f"  LED ring (scopectl firmware protocol 1): serial device {info['led_ring']}",
                        f"       e.g. python -m serial.tools.miniterm {info['led_ring']} 115200",
                        f"  phone (adbd, RSA auth with the rig's key): {info['phone']}",
                        f"  benchtop: {info['benchtop']}",
                    ]
                ),
            )
            sys.stdout.flush()
            deadline = None if duration_s is None else time.monotonic() + duration_s
            try:
                while not stop.is_set() and (deadline is None or time.monotonic() < deadline):
                    stop.wait(0.2)
            except KeyboardInterrupt:
                pass
    finally:
        signal.signal(signal.SIGTERM, previous)


def register(app: typer.Typer) -> None:
    """Add ``acquire`` and ``rig`` to the CLI."""
    app.command("acquire")(acquire_cmd)
    app.add_typer(rig_app, name="rig")
