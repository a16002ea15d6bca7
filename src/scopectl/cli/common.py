"""Shared CLI plumbing: the global state, JSON output, progress bars and error reporting.

Conventions every command follows:

* ``--json`` prints exactly one JSON object on stdout as the last line (:func:`emit`).
* Long work shows rich progress bars on a terminal and stays quiet otherwise (:func:`progress`).
* A :class:`scopectl.errors.ScopectlError` is printed as one line on stderr and the process exits
  with the error's ``exit_code``; a traceback is shown only with ``--debug`` (see ``main.py``).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from scopectl.store.paths import DataRoot

__all__ = ["CliState", "JsonOpt", "emit", "get_state", "progress", "say", "say_error", "stderr_console"]

stderr_console = Console(stderr=True)

#: The ``--json`` option every reporting command takes (see :func:`emit`).
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object as the last line.")]


@dataclass
class CliState:
    """Global options, stored on the Typer context.

    Every path under the data root comes from :attr:`data` (a :class:`~scopectl.store.paths.DataRoot`), which
    validates ids and names before they become paths.
    """

    root: Path
    debug: bool = False

    @property
    def data(self) -> DataRoot:
        return DataRoot(self.root)

    @property
    def slides_dir(self) -> Path:
        return self.data.slides_dir

    @property
    def datasets_dir(self) -> Path:
        return self.data.datasets_dir

    @property
    def models_dir(self) -> Path:
        return self.data.models_dir

    @property
    def reports_dir(self) -> Path:
        return self.data.reports_dir

    def slide_path(self, slide_id: str) -> Path:
        """``<root>/slides/<id>.h5``; the id is validated (never a path outside the root)."""
        return self.data.slide_path(slide_id)

    def prepare_writing(self, *folders: Path, quiet: bool = False) -> None:
        """Before a command writes under the root: check it can, and remove leftovers of killed processes."""
        self.data.ensure_writable(*folders)
        for item in self.data.sweep_stale():
            if not quiet:
                say(f"removed a leftover of an interrupted run: {item.describe()}")


def say(message: str) -> None:
    """A progress or status line on stderr (plain text: no markup, never wrapped)."""
    stderr_console.print(message, markup=False, highlight=False, soft_wrap=True)


def say_error(message: str, *, label: str = "error") -> None:
    """The one-line error report on stderr."""

    stderr_console.print(Text(f"{label}: ", style="red") + Text(message), highlight=False, soft_wrap=True)


def default_root() -> Path:
    """``$SCOPECTL_ROOT`` or ``./scopectl-data``."""
    return Path(os.environ.get("SCOPECTL_ROOT") or "scopectl-data")


def get_state(ctx: typer.Context) -> CliState:
    """The global state of this invocation (created by the root callback)."""
    obj = ctx.find_root().obj
    if not isinstance(obj, CliState):  # invoked without the root callback (tests calling commands directly)
        obj = CliState(root=default_root())
        ctx.find_root().obj = obj
    return obj


def _json_default(obj: Any) -> Any:
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if hasattr(obj, "item"):
        return obj.item()
    if hasattr(obj, "model_dump"):
        return obj.model_dump(mode="json")
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def emit(result: dict[str, Any], *, as_json: bool, human: str | None = None) -> None:
    """Report a command's result.

    With ``as_json`` the result is printed as exactly one JSON object on the last line of stdout;
    otherwise ``human`` (if given) is printed.
    """
    if as_json:
        sys.stdout.write(json.dumps(result, default=_json_default, sort_keys=True) + "\n")
        sys.stdout.flush()
    elif human is not None:
        typer.echo(human)


def is_interactive() -> bool:
    """True when stderr is a terminal (progress bars are shown only then)."""
    return stderr_console.is_terminal


@contextmanager
def progress(*, enabled: bool | None = None) -> Iterator[Progress]:
    """A rich progress display on stderr, disabled unless stderr is a terminal."""
    show = is_interactive() if enabled is None else enabled
    bar = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        console=stderr_console,
        disable=not show,
        transient=False,
    )
    with bar:
        yield bar
