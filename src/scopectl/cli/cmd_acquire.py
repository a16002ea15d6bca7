"""``scopectl acquire`` (paired acquisition) and ``scopectl rig check|sim``."""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
import time
from collections.abc import Iterator
from typing import Annotated, Any

import typer

from scopectl.cli.common import JsonOpt, emit, get_state, progress, say
from scopectl.errors import ConfigError, DeviceError

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
    # imported here: the rig pulls in pymmcore-plus, OpenCV and the device stacks, which `scopectl --help` and
    # the other commands do not need
    from scopectl.acquisition.engine import Progress
    from scopectl.acquisition.session import AcquireRequest, SlideAcquisition
    from scopectl.store import validate_slide_id

    state = get_state(ctx)
    validate_slide_id(slide)  # a bad id is reported before a missing --rig
    request = AcquireRequest(
        slide_id=slide,
        rig=_rig_spec(rig),
        protocol=protocol,
        resume=resume,
        force=force,
        seed=seed,
        recapture_flagged=recapture_flagged,
    )
    acquisition = SlideAcquisition(
        request,
        data=state.data,
        operator=CliOperator(quiet=json_out),
        operator_at_terminal=sys.stdin.isatty(),
    )
    acquisition.check()
    # The root must take our files before the rig is powered; leftovers of killed runs are removed first.
    state.prepare_writing(state.slides_dir, quiet=json_out)

    @contextlib.contextmanager
    def progress_bars() -> Iterator[Progress]:
        with progress(enabled=None if not json_out else False) as bars:
            tasks: dict[str, Any] = {}

            def start(name: str, total: int, done: int) -> None:
                tasks[name] = bars.add_task(name, total=total, completed=done)

            def advance(name: str) -> None:
                bars.advance(tasks[name])

            yield Progress(start=start, advance=advance)

    outcome = acquisition.run(progress=progress_bars)
    if outcome.log_failure and not json_out:
        say(f"note: pymmcore-plus's log could not be written ({outcome.log_failure}).")
    summary = outcome.summary
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
            + (f"; {summary['time_per_capture_s']:.2f} s/capture" if summary["time_per_capture_s"] else ""),
            f"  store:    {summary['store_bytes'] / 1e6:.1f} MB, verified {'OK' if summary['verified'] else 'with PROBLEMS'}",
        ]
        + (["  re-take the flagged fields with --recapture-flagged"] if flagged else [])
    )
    emit(summary, as_json=json_out, human=human)


rig_app = typer.Typer(help="Check the rig's devices, or run the simulated rig.", no_args_is_help=True)


@rig_app.command("check")
def rig_check_cmd(ctx: typer.Context, rig: RigOpt = None, json_out: JsonOpt = False) -> None:
    """Probe each device: found, model or firmware, battery, round-trip latency; non-zero exit if one is missing."""
    from scopectl.hardware.rig import check_rig, open_rig  # the device stacks load only when this runs

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
    from scopectl.hardware.rig import open_simulated_rig  # the device stacks load only when this runs

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
