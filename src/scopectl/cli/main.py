"""Entry point of the ``scopectl`` command.

Sub-commands live in ``scopectl/cli/cmd_*.py`` modules, each exposing ``register(app)``.  This module
wires them and handles the global options; :mod:`scopectl.cli.runner` runs the command and turns
:class:`~scopectl.errors.ScopectlError` into one line on stderr and a non-zero exit code.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from scopectl import __version__
from scopectl.cli import (
    cmd_acquire,
    cmd_demo,
    cmd_doctor,
    cmd_interop,
    cmd_learn,
    cmd_register,
    cmd_serve,
    cmd_sim,
    cmd_store,
)
from scopectl.cli.common import CliState, default_root
from scopectl.cli.runner import run_command

app = typer.Typer(
    name="scopectl",
    help="Drive a smartphone microscope and a benchtop microscope, acquire paired datasets, "
    "and enhance phone images to benchtop quality.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"scopectl {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    ctx: typer.Context,
    root: Annotated[
        Path | None,
        typer.Option(
            "--root", help="Data root (default: $SCOPECTL_ROOT or ./scopectl-data).", show_default=False
        ),
    ] = None,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors.")] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    ctx.obj = CliState(root=root if root is not None else default_root(), debug=debug)


for _module in (
    cmd_store,
    cmd_acquire,
    cmd_sim,
    cmd_register,
    cmd_learn,
    cmd_interop,
    cmd_demo,
    cmd_doctor,
    cmd_serve,
):
    _module.register(app)


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; return the process exit code."""
    return run_command(typer.main.get_command(app), list(sys.argv[1:] if argv is None else argv))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
