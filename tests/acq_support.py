"""Helpers of the acquisition tests: a small protocol, and slide content comparison."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import yaml

from scopectl.store import SlideStore

ROOT = Path(__file__).resolve().parents[1]


def small_protocol(tmp_path: Path, **phone: Any) -> Path:
    """The lung protocol shrunk so that a whole acquisition takes seconds."""
    data = yaml.safe_load((ROOT / "protocols" / "lung-trichrome.yaml").read_text())
    data["name"] = "lung-small"
    data["benchtop"]["tile_shape_px"] = [320, 320]
    data["benchtop"]["tile_overlap"] = 0.15
    data["benchtop"]["region"] = {"x_um": 1800.0, "y_um": 1800.0, "width_um": 230.0, "height_um": 230.0}
    data["benchtop"]["autofocus"].update(map_points=1, range_um=8.0, coarse_step_um=2.0, fine_step_um=0.5)
    data["phone"]["capture_shape_px"] = [256, 256]
    data["phone"]["fields"] = {"count": 2, "pattern": "grid", "margin_um": 5.0}
    data["phone"].update(phone)
    data["led"]["settle_ms"] = 10
    path = tmp_path / "lung-small.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def content(path: Path) -> dict[str, Any]:
    """What must be identical between an interrupted-and-resumed run and an uninterrupted one."""
    with SlideStore.open(path) as store:
        tiles = {(m.row, m.col): store.read_tile(m.index)[0] for m in store.tiles_meta()}
        caps = {}
        for m in store.captures():
            caps[m.field_index] = (
                store.read_capture(m.index)[0],
                store.read_capture_raw(m.index, "dng"),
                m.battery_mv,
                m.extra["flags"],
            )
        return {"tiles": tiles, "mosaic": store.mosaic()[()], "captures": caps, "plan": store.plan()}


def assert_same(a: dict[str, Any], b: dict[str, Any]) -> None:
    assert a["plan"] == b["plan"]
    assert a["tiles"].keys() == b["tiles"].keys()
    for k in a["tiles"]:
        np.testing.assert_array_equal(a["tiles"][k], b["tiles"][k])
    np.testing.assert_array_equal(a["mosaic"], b["mosaic"])
    assert a["captures"].keys() == b["captures"].keys()
    for k in a["captures"]:
        np.testing.assert_array_equal(a["captures"][k][0], b["captures"][k][0])
        assert a["captures"][k][1] == b["captures"][k][1]
        assert a["captures"][k][2:] == b["captures"][k][2:]
