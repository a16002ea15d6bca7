"""napari widget: enhance the selected phone capture with a chosen model.

Pick a capture layer (opened by the scopectl reader, or any RGB ``uint8`` image layer), give a model (a model
directory or a BioImage Model Zoo package exported by scopectl) and press *Enhance*.  The result is added
as a layer placed over the capture (through the capture's affine and the network's output geometry); for a
capture read from a slide store it is also written as an OME-TIFF into :func:`~.reader.enhanced_dir`, where
the reader finds it next time.  Enhancement runs on the CPU in 256-pixel tiles, in the GUI thread.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from scopectl.errors import ScopectlError
from scopectl.interop.napari.reader import _enhanced_affine, enhanced_dir
from scopectl.writers import SUFFIXES, write_image

__all__ = ["EnhanceWidget", "enhance_layer"]


def enhance_layer(viewer: Any, layer: Any, model_path: Path, *, write: bool = True) -> Any:
    """Enhance one RGB layer of ``viewer`` with the model at ``model_path``; returns the new layer.

    Raises
    ------
    ScopectlError
        If the layer is not an RGB uint8 image, or the model cannot be loaded.
    """
    from scopectl.learn.enhance import enhance_image  # torch loads only when this runs
    from scopectl.learn.modelio import load_model  # torch loads only when this runs

    data = layer.data[0] if getattr(layer, "multiscale", False) else layer.data
    rgb = np.asarray(data)
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ScopectlError(f"layer {layer.name!r} is not an RGB uint8 image ({rgb.dtype} {rgb.shape}).")
    net, card = load_model(model_path)
    out = enhance_image(net, np.ascontiguousarray(rgb), device="cpu")
    meta = dict(layer.metadata.get("scopectl", {}))
    affine = np.asarray(layer.affine.affine_matrix, np.float64) @ np.diag([*layer.scale, 1.0])
    affine[:2, 2] += np.asarray(layer.translate, np.float64)
    new_meta = {
        "scopectl": {
            "kind": "enhanced",
            "slide": meta.get("slide"),
            "capture_index": meta.get("capture_index"),
            "model": card.name,
        }
    }
    px_out = card.input_pixel_size_um * card.ratio_pq[1] / card.ratio_pq[0]
    store = meta.get("store")
    index = meta.get("capture_index")
    if write and store and index is not None:
        folder = enhanced_dir(Path(store))
        folder.mkdir(parents=True, exist_ok=True)
        dest = folder / f"{Path(store).stem}-capture{int(index):04d}-{card.name}{SUFFIXES['ome-tiff']}"
        write_image(
            dest,
            out,
            fmt="ome-tiff",
            pixel_size_um=px_out,
            annotations={
                "software": "scopectl napari widget",
                "model": card.name,
                "model_ratio": card.ratio,
                "model_weights_sha256": card.weights_sha256,
                "source": f"{store} capture {int(index)}",
                "output_pixel_size_um": f"{px_out:.6g}",
            },
        )
        new_meta["scopectl"]["file"] = str(dest)
    return viewer.add_image(
        out,
        name=f"enhanced {layer.name}",
        rgb=True,
        affine=_enhanced_affine(affine, card.ratio_pq),
        metadata=new_meta,
    )


def _make_widget_class() -> type:
    # optional extra: loads only in napari / for OME-Zarr
    from qtpy.QtWidgets import (
        QComboBox,
        QFileDialog,
        QHBoxLayout,
        QLabel,
        QLineEdit,
        QPushButton,
        QVBoxLayout,
        QWidget,
    )

    class _EnhanceWidget(QWidget):
        """Layer chooser, model path and an *Enhance* button; errors are shown in the status line."""

        def __init__(self, napari_viewer: Any) -> None:
            super().__init__()
            self.viewer = napari_viewer
            self.layer_box = QComboBox()
            self.model_edit = QLineEdit()
            self.model_edit.setPlaceholderText("model directory or FILE.zip")
            browse = QPushButton("…")
            browse.clicked.connect(self._browse)
            self.button = QPushButton("Enhance")
            self.button.clicked.connect(self.run)
            self.status = QLabel("")
            self.status.setWordWrap(True)
            row = QHBoxLayout()
            row.addWidget(self.model_edit)
            row.addWidget(browse)
            layout = QVBoxLayout()
            layout.addWidget(QLabel("Capture layer"))
            layout.addWidget(self.layer_box)
            layout.addWidget(QLabel("Model"))
            layout.addLayout(row)
            layout.addWidget(self.button)
            layout.addWidget(self.status)
            self.setLayout(layout)
            self.viewer.layers.events.inserted.connect(self.refresh)
            self.viewer.layers.events.removed.connect(self.refresh)
            self.refresh()

        def refresh(self, *_: Any) -> None:
            current = self.layer_box.currentText()
            self.layer_box.clear()
            names = [
                layer.name
                for layer in self.viewer.layers
                if getattr(layer, "rgb", False)
                and layer.metadata.get("scopectl", {}).get("kind") != "enhanced"
            ]
            self.layer_box.addItems(names)
            if current in names:
                self.layer_box.setCurrentText(current)

        def _browse(self) -> None:
            chosen, _ = QFileDialog.getOpenFileName(self, "Model", "", "Models (*.zip *.json *.safetensors)")
            if chosen:
                self.model_edit.setText(str(Path(chosen).parent if not chosen.endswith(".zip") else chosen))

        def run(self) -> Any:
            name = self.layer_box.currentText()
            model = self.model_edit.text().strip()
            if not name or not model:
                self.status.setText("choose a capture layer and a model first.")
                return None
            try:
                layer = enhance_layer(self.viewer, self.viewer.layers[name], Path(model))
            except ScopectlError as exc:
                self.status.setText(f"error: {exc.one_line()}")
                return None
            self.status.setText(f"added {layer.name}")
            return layer

    return _EnhanceWidget


def EnhanceWidget(napari_viewer: Any) -> Any:  # noqa: N802 (npe2 widget factory, named like the class)
    """Create the widget (a QWidget) for ``napari_viewer``; npe2 calls this with the viewer."""
    return _make_widget_class()(napari_viewer)
