"""Runs the ``scopectl`` command group and turns errors into one line and an exit code.

Kept apart from :mod:`scopectl.cli.main` (which wires the sub-commands) so that a sub-command that
runs other sub-commands (``scopectl demo``) does not import the module that imports it.
"""

from __future__ import annotations

import traceback
from collections.abc import Sequence
from typing import Any, Protocol

import typer

from scopectl.cli.common import say, say_error
from scopectl.errors import ScopectlError, from_os_error

__all__ = ["VARIADIC_OPTIONS", "CommandGroup", "expand_variadic", "run_command"]


class CommandGroup(Protocol):
    """The part of a click command (Typer's own copy of click or click itself) that runs it."""

    def main(
        self, args: Sequence[str] | None = ..., prog_name: str | None = ..., *, standalone_mode: bool = ...
    ) -> Any: ...


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


def run_command(command: CommandGroup, argv: list[str]) -> int:
    """Run the ``scopectl`` command group on ``argv`` (without the program name); return the exit code.

    The one boundary where errors become exit codes: a :class:`~scopectl.errors.ScopectlError` is one
    line on stderr and its own code, an operating-system refusal is translated, anything else is a bug
    (exit 70).  ``scopectl demo`` runs its steps through here with the group it was called from.
    """
    args = expand_variadic(list(argv))
    debug = "--debug" in args
    try:
        command.main(args=args, prog_name="scopectl", standalone_mode=False)
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
