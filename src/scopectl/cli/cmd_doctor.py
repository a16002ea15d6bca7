"""``scopectl doctor``: which optional capabilities work on this machine, and how to get the missing ones."""

from __future__ import annotations

from typing import Annotated

import typer

from scopectl.capabilities import CAPABILITIES, probe
from scopectl.cli.common import JsonOpt, emit

__all__ = ["register"]


def doctor_cmd(
    only: Annotated[
        list[str] | None,
        typer.Option("--only", help="Probe just this capability (repeatable).", show_default=False),
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Probe each optional capability by using it (compile, link, run), and say how to get the missing ones.

    Nothing here is needed to acquire, register, train or enhance; the capabilities serve the firmware,
    the printed parts, the official adb client, GPUs and bf16.  Exit code 0 whatever is missing.
    """
    names = only if only else list(CAPABILITIES)
    unknown = [n for n in names if n not in CAPABILITIES]
    if unknown:
        raise typer.BadParameter(
            f"unknown capability {', '.join(unknown)}; choose from {', '.join(CAPABILITIES)}",
            param_hint="--only",
        )
    results = [probe(n) for n in names]
    width = max(len(n) for n in names)
    lines: list[str] = []
    for r in results:
        lines.append(f"{r.name:<{width}}  {'ok     ' if r.ok else 'MISSING'}  {r.detail}")
        lines.append(f"{'':<{width}}           for {CAPABILITIES[r.name].used_for}")
        if not r.ok:
            lines.append(f"{'':<{width}}           {r.remedy}")
    emit(
        {
            "capabilities": [
                {
                    "name": r.name,
                    "ok": r.ok,
                    "detail": r.detail,
                    "remedy": r.remedy,
                    "used_for": CAPABILITIES[r.name].used_for,
                }
                for r in results
            ],
            "missing": [r.name for r in results if not r.ok],
        },
        as_json=json_out,
        human="\n".join(lines),
    )


def register(app: typer.Typer) -> None:
    """Add ``doctor`` to ``app``."""
    app.command("doctor")(doctor_cmd)
