"""Entry point of the ``scopectl`` command.

Sub-commands live in ``scopectl/cli/cmd_*.py`` modules, each exposing ``register(app)``.  This module
wires them, handles the global options and turns :class:`~scopectl.errors.ScopectlError` into one
line on stderr and a non-zero exit code.
"""

from __future__ import annotations

import sys
import traceback
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
from scopectl.cli.common import CliState, default_root, say, say_error
from scopectl.errors import ScopectlError, from_os_error

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


#: Options that take several values (``--phone a.dng b.dng``, so shell globs work); expanded to repeats.
VARIADIC_OPTIONS = {"import": ("--phone", "--benchtop")}


def expand_variadic(args: list[str]) -> list[str]:
    """Rewrite ``--opt a b c`` as ``--opt a --opt b --opt c`` for the options in :data:`VARIADIC_OPTIONS`."""
    command = next((a for a in args if a in VARIADIC_OPTIONS), None)
    if command is None:
        return args
    names = VARIADIC_OPTIONS[command]
    out: list[str] = []
    current: str | None = None
    for token in args:
        if token in names:
            current = token
            out.append(token)
            continue
        if token.startswith("-"):
            current = None
        elif current is not None and out and out[-1] != current:
            out.append(current)
        out.append(token)
    return out


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; return the process exit code."""
    args = expand_variadic(list(sys.argv[1:] if argv is None else argv))
    debug = "--debug" in args
    try:
        app(args=args, prog_name="scopectl", standalone_mode=False)
    except ScopectlError as exc:
        if debug:
            traceback.print_exc()
        say_error(exc.one_line())
        return exc.exit_code
    except typer.Exit as exc:
        return int(exc.exit_code or 0)
    except typer.Abort:
        say("aborted.")
        return 130
    except KeyboardInterrupt:
        say("interrupted.")
        return 130
    except OSError as exc:
        if exc.errno is None:  # a library's error without an errno was not translated where it arose: a bug
            return _internal(exc, debug=debug)
        # the operating system refused (read-only, permissions, full disk ...): not a bug
        if debug:
            traceback.print_exc()
        err = from_os_error(exc)
        say_error(err.one_line())
        return err.exit_code
    except Exception as exc:  # usage errors (click's, vendored or not) and unexpected failures
        show = getattr(exc, "show", None)
        code = getattr(exc, "exit_code", None)
        if callable(show) and isinstance(code, int):  # a click.ClickException (UsageError, BadParameter...)
            show()
            return code
        return _internal(exc, debug=debug)
    return 0


def _internal(exc: BaseException, *, debug: bool) -> int:
    """Report an unexpected failure (a bug): one line, exit 70; ``--debug`` re-raises it."""
    if debug:
        raise exc
    text = " ".join(str(exc).split())[:300]
    say_error(
        f"{type(exc).__name__}: {text} (run again with --debug for a traceback, and report it)",
        label="internal error",
    )
    return 70


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
