"""Exports to, and readers for, the tools microscopists and pathologists already use.

* :mod:`scopectl.interop.ome_zarr` — a slide store as OME-Zarr (NGFF 0.5), directory or ``.ozx``;
* :mod:`scopectl.interop.bioimageio` — a trained model as a BioImage Model Zoo package;
* :mod:`scopectl.interop.napari` — the napari plugin (reader and enhancement widget).

Layer: beside evaluation, below the CLI; it may import learning, registration, stitching, the store and the
low modules (the image writers ...), never evaluation, hardware, acquisition, the twin, the CLI or the web
service.  See ``docs/architecture.md``.  Its third-party libraries are optional extras; a missing
one is reported by :func:`require` as one line naming the extra to install.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from scopectl.errors import ConfigError

__all__ = ["require"]


def require(module: str, *, extra: str, purpose: str) -> ModuleType:
    """Import ``module`` or raise a :class:`~scopectl.errors.ConfigError` naming the extra that installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ConfigError(
            f"{purpose} needs the optional dependency '{module}' ({exc.msg}).",
            hint=f"Install it with: pip install 'scopectl[{extra}]'",
        ) from None
