"""The ``scopectl`` command-line interface (Typer)."""
