"""The ``scopectl`` command-line interface (Typer).

Owns argument parsing, printing and the one boundary where errors become exit codes
(:mod:`scopectl.cli.runner`); the work is done by the packages below.  Layer: the top, beside the
telepathology service it starts (:mod:`scopectl.serve`); it may import every other package, and nothing
imports it.  See ``docs/architecture.md``.
"""
