"""The napari plugin: manifest, reader (store, OME-Zarr folder, .ozx) and the enhancement widget, headless.

napari's ``make_napari_viewer`` needs OpenGL, which Qt's offscreen platform here does not provide; the widget
is a real QWidget in a real (offscreen) QApplication driving napari's ``ViewerModel`` (the viewer without its
canvas), and files are opened through napari's own plugin machinery (npe2, the ``napari.manifest`` entry point).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from interop_support import CAPTURE_PX_UM, MOSAIC_PX_UM

pytest.importorskip("napari")
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

MANIFEST = Path(__file__).resolve().parents[2] / "src" / "scopectl" / "interop" / "napari" / "napari.yaml"


def test_manifest_is_valid_and_registered_by_entry_point() -> None:
    import npe2

    manifest = npe2.PluginManifest.from_file(MANIFEST)
    assert manifest.name == "scopectl"
    pm = npe2.PluginManager()
    pm.discover(include_npe1=False)
    assert pm.get_manifest("scopectl").contributions.widgets[0].display_name == "Enhance capture"
    readers = [r.command for r in pm.iter_compatible_readers(["x/slide.h5"])]
    assert "scopectl.get_reader" in readers


@pytest.fixture(autouse=True)
def _plugins_discovered() -> None:
    """What napari does when it starts: find the plugins installed through the entry point."""
    import npe2

    npe2.PluginManager.instance().discover(include_npe1=False)


def _by_name(layers: Any) -> dict[str, Any]:
    return {layer.name: layer for layer in layers}


def test_viewer_opens_a_store_with_captures_placed_by_registration(slide_root: Path) -> None:
    from napari.components import ViewerModel

    viewer = ViewerModel()
    viewer.open(str(slide_root / "slides" / "s1.h5"), plugin="scopectl")
    layers = _by_name(viewer.layers)
    assert set(layers) == {"mosaic", "capture 00000", "capture 00001", "capture 00002"}
    mosaic = layers["mosaic"]
    assert mosaic.rgb and tuple(mosaic.scale) == (MOSAIC_PX_UM, MOSAIC_PX_UM)
    assert tuple(mosaic.translate) == (50.0, 100.0)
    cap = layers["capture 00001"]
    # capture pixel (row 0, col 0) sits at mosaic (30, 150) px, i.e. at (50 + 30·p, 100 + 150·p) µm
    world = cap.data_to_world((0, 0))
    np.testing.assert_allclose(world, [50.0 + 30 * MOSAIC_PX_UM, 100.0 + 150 * MOSAIC_PX_UM])
    assert cap.metadata["flags"] == ["blurred"] and cap.metadata["scopectl"]["placed"]
    unplaced = layers["capture 00002"]  # its registration failed
    assert not unplaced.visible and not unplaced.metadata["scopectl"]["placed"]
    assert tuple(unplaced.scale) == (CAPTURE_PX_UM, CAPTURE_PX_UM)
    assert mosaic.metadata["completeness"]["complete"] is False


@pytest.mark.parametrize("ozx", [False, True])
def test_reader_opens_the_ome_zarr_export(slide_root: Path, tmp_path: Path, ozx: bool) -> None:
    from napari.components import ViewerModel

    from scopectl.interop.ome_zarr import export_slide

    res = export_slide(slide_root / "slides" / "s1.h5", tmp_path / "e", ozx=ozx)
    path = res.ozx_path if ozx else res.zarr_path
    assert path is not None
    viewer = ViewerModel()
    viewer.open(str(path), plugin="scopectl")
    layers = _by_name(viewer.layers)
    assert set(layers) == {"mosaic", "capture-00000", "capture-00001", "capture-00002"}
    mosaic = layers["mosaic"]
    assert mosaic.multiscale and len(mosaic.data) == 3 and mosaic.data[0].shape == (700, 900, 3)
    assert tuple(mosaic.translate) == (50.0, 100.0)
    world = layers["capture-00001"].data_to_world((0, 0))
    np.testing.assert_allclose(world, [50.0 + 30 * MOSAIC_PX_UM, 100.0 + 150 * MOSAIC_PX_UM])


def test_widget_enhances_the_selected_capture_and_the_reader_finds_it(
    slide_root: Path, model_dir: Path
) -> None:
    from napari.components import ViewerModel
    from qtpy.QtWidgets import QApplication

    from scopectl.interop.napari.widget import EnhanceWidget
    from scopectl.learn.enhance import enhance_image
    from scopectl.learn.modelio import load_model

    app = QApplication.instance() or QApplication([])
    viewer = ViewerModel()
    store = slide_root / "slides" / "s1.h5"
    viewer.open(str(store), plugin="scopectl")
    widget = EnhanceWidget(viewer)
    items = [widget.layer_box.itemText(i) for i in range(widget.layer_box.count())]
    assert items == ["mosaic", "capture 00000", "capture 00001", "capture 00002"]
    assert widget.run() is None and "choose" in widget.status.text()
    widget.layer_box.setCurrentText("capture 00001")
    widget.model_edit.setText(str(model_dir))
    new = widget.run()
    app.processEvents()
    assert new is not None and new.name == "enhanced capture 00001", widget.status.text()
    net, _ = load_model(model_dir)
    np.testing.assert_array_equal(
        new.data, enhance_image(net, np.asarray(viewer.layers["capture 00001"].data))
    )
    # output pixel 0 lies at input coordinate (0.5/p - 0.5) = -0.4, here along both axes
    capture = viewer.layers["capture 00001"]
    np.testing.assert_allclose(new.data_to_world((0, 0)), capture.data_to_world((-0.4, -0.4)), atol=1e-9)
    written = sorted((slide_root / "slides" / "s1.enhanced").glob("*.ome.tif"))
    assert [p.name for p in written] == ["s1-capture0001-m1.ome.tif"]
    widget.model_edit.setText(str(model_dir / "missing"))
    assert widget.run() is None and widget.status.text().startswith("error:")

    again = ViewerModel()
    again.open(str(store), plugin="scopectl")
    enhanced = _by_name(again.layers)["enhanced 00001"]
    np.testing.assert_array_equal(enhanced.data, new.data)
    np.testing.assert_allclose(enhanced.data_to_world((5, 7)), new.data_to_world((5, 7)), atol=1e-9)
    widget.close()
