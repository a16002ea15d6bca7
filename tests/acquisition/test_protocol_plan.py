"""Acquisition protocols (the shipped YAML files) and the frozen plan they expand into."""

from __future__ import annotations

from pathlib import Path

import pytest

from scopectl.acquisition.plan import AcquisitionPlan, CaptureField, FocusMap, ScanTiles, Stitch, build_plan
from scopectl.acquisition.protocol import AcquisitionProtocol, find_protocol, load_protocol
from scopectl.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("name", "sample"), [("lung-trichrome", "lung"), ("pap-smear", "pap"), ("blood-smear", "blood")]
)
def test_shipped_protocols_load_and_have_preparation_notes(name: str, sample: str) -> None:
    proto = load_protocol(name)
    assert proto.name == name and proto.sample == sample
    assert proto.phone.iso == 100 and proto.phone.white_balance == "cloudy" and proto.phone.exposure == "auto"
    assert set(proto.phone.formats) == {"dng", "jpeg"}
    assert (ROOT / "protocols" / proto.preparation).is_file()


def test_protocol_errors_name_the_file_and_key(tmp_path: Path) -> None:
    text = (ROOT / "protocols" / "lung-trichrome.yaml").read_text()
    bad = tmp_path / "bad.yaml"
    bad.write_text(text.replace("tile_overlap: 0.12", "tile_overlapp: 0.12"))
    with pytest.raises(ConfigError, match=r"bad.yaml: benchtop.tile_overlapp: unknown key"):
        load_protocol(str(bad))
    bad.write_text(text.replace("iso: 100", "iso: 100000"))
    with pytest.raises(ConfigError, match=r"phone.iso: Input should be less than or equal to 6400"):
        load_protocol(str(bad))
    with pytest.raises(ConfigError, match="unknown protocol 'nope'.*lung-trichrome"):
        find_protocol("nope")


def test_plan_is_frozen_serialisable_and_deterministic() -> None:
    proto = load_protocol("lung-trichrome")
    plan = build_plan(proto, slide_id="lung01", seed=3)
    again = AcquisitionPlan.model_validate_json(plan.model_dump_json())
    assert again == plan
    assert build_plan(proto, slide_id="lung01", seed=3) == plan
    with pytest.raises(ValueError, match="frozen"):
        plan.seed = 4  # type: ignore[misc]
    kinds = [type(e) for e in plan.events()]
    assert kinds[:3] == [FocusMap, ScanTiles, Stitch]
    assert kinds[-len(plan.fields) :] == [CaptureField] * len(plan.fields)


def test_scan_covers_the_region_and_fields_stay_inside() -> None:
    proto = load_protocol("lung-trichrome")
    plan = build_plan(proto, slide_id="s", seed=0)
    reg = proto.benchtop.region
    scan = plan.scan_event()
    assert (scan.left_um, scan.top_um) == (reg.x_um, reg.y_um)
    assert (scan.right_um, scan.bottom_um) == (reg.x_um + reg.width_um, reg.y_um + reg.height_um)
    assert scan.overlap == proto.benchtop.tile_overlap
    half = proto.phone.capture_shape_px[1] * proto.phone.pixel_size_um / 2
    for f in plan.fields:
        assert reg.x_um + half <= f.x_um <= reg.x_um + reg.width_um - half
        assert reg.y_um + half <= f.y_um <= reg.y_um + reg.height_um - half
    assert len(plan.fields) == proto.phone.fields.count


def test_random_fields_depend_on_seed_and_too_small_region_is_refused() -> None:
    data = load_protocol("lung-trichrome").model_dump()
    data["phone"]["fields"].update(pattern="random", count=6)
    proto = AcquisitionProtocol.model_validate(data)
    a, b = build_plan(proto, slide_id="s", seed=1), build_plan(proto, slide_id="s", seed=2)
    assert a.fields != b.fields
    data["benchtop"]["region"].update(width_um=300.0)
    with pytest.raises(ConfigError, match="does not fit in the scanned region"):
        build_plan(AcquisitionProtocol.model_validate(data), slide_id="s", seed=1)
