"""The napari plugin (npe2): a reader for slide stores and OME-Zarr exports, and an enhancement widget.

Registered through the ``napari.manifest`` entry point (``napari.yaml`` in this package), so installing
scopectl makes it appear in napari.  Reading needs nothing beyond scopectl's own dependencies for ``.h5``
stores, and ``zarr`` and ``dask`` (the ``ome-zarr`` extra) for exports; the widget needs napari and Qt (the
``napari`` extra).
"""

from __future__ import annotations

from scopectl.interop.napari.reader import enhanced_dir, get_reader, read_export, read_store

__all__ = ["enhanced_dir", "get_reader", "read_export", "read_store"]
