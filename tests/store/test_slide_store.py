"""The per-slide HDF5 store: schema, round trips, overwrite protection, lock, crash safety, checksums."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from scopectl.errors import StoreCorruptError, StoreError, StoreExistsError, StoreLockedError
from scopectl.store import (
    FORMAT,
    SCHEMA_VERSION,
    CaptureRecord,
    ProvenanceEvent,
    RegistrationRecord,
    SlideStore,
    TileRecord,
)


def _tile(rng: np.random.Generator, row: int = 0, col: int = 0) -> TileRecord:
    return TileRecord(
        rgb=rng.integers(0, 256, (64, 80, 3), dtype=np.uint8),
        row=row,
        col=col,
        stage_x_um=100.0 + col,
        stage_y_um=200.0 + row,
        stage_z_um=-1.5,
        pixel_size_um=0.37,
        focus_score=12.5,
        timestamp=1_700_000_000.0,
        exposure_ms=8.0,
        extra={"note": "t"},
    )


def _capture(rng: np.random.Generator, field: int = 0) -> CaptureRecord:
    return CaptureRecord(
        rgb=rng.integers(0, 256, (40, 50, 3), dtype=np.uint8),
        field_index=field,
        pixel_size_um=0.4,
        dng=rng.bytes(1000),
        jpeg=rng.bytes(300),
        source=None,
        source_name=f"IMG_{field:04d}.dng",
        settings={"iso": 100, "white_balance": "cloudy"},
        led_state={"brightness": 128, "colors": [[255, 255, 255]] * 12},
        battery_mv=4012.0,
        stage_x_um=1.0,
        stage_y_um=2.0,
        timestamp=1_700_000_001.0,
        latencies_s={"shutter_to_file": 0.8},
    )


def test_create_writes_versioned_schema(tmp_path: Path) -> None:
    path = tmp_path / "slides" / "lung01.h5"
    with SlideStore.create(
        path, slide_id="lung01", rig={"name": "sim"}, simulated=True, protocol={"name": "p"}
    ):
        pass
    with h5py.File(path, "r") as h5:
        assert h5.attrs["format"] == FORMAT
        assert h5.attrs["schema_version"] == SCHEMA_VERSION
        assert h5.attrs["slide_id"] == "lung01"
        assert bool(h5.attrs["simulated"]) is True
        assert json.loads(h5.attrs["rig_json"]) == {"name": "sim"}
        assert str(h5.attrs["software_version"]).startswith("scopectl ")
        assert "benchtop/tiles" in h5 and "phone/captures" in h5 and "provenance/log" in h5


def test_round_trip_of_tiles_captures_mosaic_and_registration(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    path = tmp_path / "s.h5"
    tile, cap = _tile(rng), _capture(rng)
    mosaic = rng.integers(0, 256, (700, 600, 3), dtype=np.uint8)
    with SlideStore.create(path, slide_id="s", rig={}, simulated=False) as store:
        assert store.add_tile(tile) == 0
        assert store.add_capture(cap) == 0
        store.write_mosaic(mosaic, pixel_size_um=0.37, origin_x_um=-5.0, origin_y_um=7.0, method={"k": 1})
        shift = rng.normal(size=(2, 10, 12)).astype(np.float32)
        store.write_registration(
            0,
            RegistrationRecord(
                ok=True,
                reason="",
                homography=np.eye(3),
                scale=2.5,
                inliers=120,
                shift_map=shift,
                similarity_maps=[np.ones((5, 5)), np.ones((7, 7))],
                quality=0.8,
                pixel_size_um=0.925,
                residual_px=0.2,
            ),
        )
    with SlideStore.open(path) as store:
        rgb, meta = store.read_tile(0)
        np.testing.assert_array_equal(rgb, tile.rgb)
        assert meta.stage_z_um == -1.5 and meta.extra == {"note": "t"} and meta.shape == tile.rgb.shape
        crgb, cmeta = store.read_capture(0)
        np.testing.assert_array_equal(crgb, cap.rgb)
        assert cmeta.settings["white_balance"] == "cloudy"
        assert cmeta.battery_mv == 4012.0 and cmeta.raw == {"dng": 1000, "jpeg": 300}
        assert store.captures() == [cmeta]
        assert store.read_capture_raw(0, "dng") == cap.dng
        assert store.read_capture_raw(0, "source") is None
        np.testing.assert_array_equal(store.mosaic()[100:200, 50:60], mosaic[100:200, 50:60])
        info = store.mosaic_info()
        assert info is not None and (info.rows, info.cols, info.origin_x_um) == (700, 600, -5.0)
        reg = store.registration(0)
        assert isinstance(reg, RegistrationRecord) and reg.inliers == 120 and len(reg.similarity_maps) == 2
        np.testing.assert_array_equal(reg.shift_map, shift)
        assert store.registration(1) is None
        events = store.provenance()
        assert [e.event for e in events][:1] == ["created"]
        assert all(isinstance(e, ProvenanceEvent) and e.to_dict()["event"] == e.event for e in events)
        assert store.verify()["ok"]


def test_refuses_to_overwrite_without_force(tmp_path: Path) -> None:
    path = tmp_path / "s.h5"
    rng = np.random.default_rng(2)
    with SlideStore.create(path, slide_id="s", rig={}, simulated=True) as store:
        store.add_tile(_tile(rng))
    with pytest.raises(StoreExistsError, match="already exists.*--resume.*--force"):
        SlideStore.create(path, slide_id="s", rig={}, simulated=True)
    with SlideStore.open(path) as store:
        assert store.tile_count() == 1  # untouched
    with SlideStore.create(path, slide_id="s", rig={}, simulated=True, force=True) as store:
        assert store.tile_count() == 0


def test_read_only_store_refuses_writes(tmp_path: Path) -> None:
    path = tmp_path / "s.h5"
    SlideStore.create(path, slide_id="s", rig={}, simulated=True).close()
    with SlideStore.open(path) as store, pytest.raises(StoreError, match="read-only"):
        store.add_tile(_tile(np.random.default_rng(0)))


def test_rejects_bad_records(tmp_path: Path) -> None:
    with SlideStore.create(tmp_path / "s.h5", slide_id="s", rig={}, simulated=True) as store:
        bad = TileRecord(np.zeros((4, 4), np.uint8), 0, 0, 0, 0, 0, 0.37, 0, 0, 1)
        with pytest.raises(StoreError, match="RGB uint8"):
            store.add_tile(bad)
        with pytest.raises(StoreError, match="no complete capture 3"):
            store.read_capture(3)
        with pytest.raises(StoreError, match="no benchtop mosaic"):
            store.mosaic()


def test_not_a_slide_files_give_clear_errors(tmp_path: Path) -> None:
    junk = tmp_path / "junk.h5"
    junk.write_bytes(b"this is not hdf5")
    with pytest.raises(StoreCorruptError, match="junk.h5: not a readable HDF5"):
        SlideStore.open(junk)
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as h5:
        h5.attrs["format"] = "something-else"
    with pytest.raises(StoreCorruptError, match="not a scopectl slide"):
        SlideStore.open(other)
    newer = tmp_path / "newer.h5"
    SlideStore.create(newer, slide_id="n", rig={}, simulated=True).close()
    with h5py.File(newer, "r+") as h5:
        h5.attrs["schema_version"] = SCHEMA_VERSION + 1
    with pytest.raises(StoreError, match="Upgrade scopectl"):
        SlideStore.open(newer)
    with pytest.raises(StoreError, match="no such slide"):
        SlideStore.open(tmp_path / "missing.h5")


def test_verify_detects_tampered_raw_bytes(tmp_path: Path) -> None:
    path = tmp_path / "s.h5"
    with SlideStore.create(path, slide_id="s", rig={}, simulated=True) as store:
        store.add_capture(_capture(np.random.default_rng(3)))
    with h5py.File(path, "r+") as h5:
        ds = h5["phone/captures/00000/dng"]
        ds[10] = (int(ds[10]) + 1) % 256
    with SlideStore.open(path) as store:
        report = store.verify()
        assert not report["ok"] and "SHA-256 mismatch" in report["problems"][0]
        with pytest.raises(StoreCorruptError, match="SHA-256"):
            store.read_capture_raw(0, "dng")


_HOLDER = textwrap.dedent(
    """
    import sys, time
    from scopectl.store import SlideStore
    store = SlideStore.open(sys.argv[1], mode="a")
    print("locked", flush=True)
    time.sleep(60)
    """
)


def test_second_writer_is_refused_naming_the_holder_and_lock_dies_with_it(tmp_path: Path) -> None:
    path = tmp_path / "s.h5"
    SlideStore.create(path, slide_id="s", rig={}, simulated=True).close()
    with subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(path)], stdout=subprocess.PIPE, text=True
    ) as proc:
        try:
            assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
            with pytest.raises(
                StoreLockedError, match=rf"another process is writing this slide: pid {proc.pid}"
            ):
                SlideStore.open(path, mode="a")
            with pytest.raises(StoreLockedError):
                SlideStore.create(path, slide_id="s", rig={}, simulated=True, force=True)
            with SlideStore.open(path) as reader:  # readers are not blocked, and are told who writes
                assert reader.slide_id == "s"
                assert reader.writer is not None and reader.writer["pid"] == proc.pid
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)
    with SlideStore.open(path, mode="a") as store:  # the kernel released the dead holder's lock
        assert store.writable


_WRITER = textwrap.dedent(
    """
    import sys, time
    import numpy as np
    from pathlib import Path
    from scopectl.store import SlideStore, TileRecord, CaptureRecord
    path = Path(sys.argv[1])
    rng = np.random.default_rng(int(sys.argv[2]))
    store = SlideStore.open(path, mode="a") if path.exists() else SlideStore.create(
        path, slide_id="crash", rig={}, simulated=True)
    print("ready", flush=True)
    i = 0
    while True:
        rgb = rng.integers(0, 256, (384, 384, 3), dtype=np.uint8)
        store.add_tile(TileRecord(rgb, i, 0, 0.0, 0.0, 0.0, 0.37, 1.0, time.time(), 1.0))
        store.add_capture(CaptureRecord(rgb[:128, :128], i, 0.4, rng.bytes(200_000), rng.bytes(40_000), None,
                                        "x", {}, {}, 4000.0, None, None, time.time(), {}))
        i += 1
    """
)


def test_resume_after_kill_9_mid_write(tmp_path: Path) -> None:
    """Kill a writer at random moments; the file always reopens, verifies and keeps every complete item."""
    path = tmp_path / "crash.h5"
    rng = np.random.default_rng(7)
    counts = []
    for trial in range(6):
        with subprocess.Popen(
            [sys.executable, "-c", _WRITER, str(path), str(trial)], stdout=subprocess.PIPE
        ) as proc:
            assert proc.stdout is not None and proc.stdout.readline().strip() == b"ready"
            time.sleep(float(rng.uniform(0.05, 0.5)))
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        with SlideStore.open(path, mode="a") as store:
            report = store.verify()
            assert report["ok"], report
            assert report["incomplete"] == []  # discarded on reopen for append
            counts.append(store.tile_count())
            for i in range(store.capture_count()):
                assert store.read_capture_raw(i, "dng") is not None
    assert counts == sorted(counts) and counts[-1] > 0  # never loses committed items


def test_incomplete_item_is_invisible_then_discarded(tmp_path: Path) -> None:
    path = tmp_path / "s.h5"
    rng = np.random.default_rng(4)
    with SlideStore.create(path, slide_id="s", rig={}, simulated=True) as store:
        store.add_tile(_tile(rng))
    with h5py.File(path, "r+") as h5:  # what a killed writer leaves: data without the complete mark
        g = h5["benchtop/tiles"].create_group("00001")
        g.create_dataset("rgb", data=np.zeros((4, 4, 3), np.uint8))
    with SlideStore.open(path) as store:
        assert store.tile_count() == 1
        assert store.verify()["incomplete"] == ["benchtop/tiles/00001"]
    with SlideStore.open(path, mode="a") as store:
        assert store.discarded == ["benchtop/tiles/00001"]
        assert store.add_tile(_tile(rng)) == 1


def test_invalid_slide_ids_are_refused(tmp_path: Path) -> None:
    from scopectl.errors import InputFileError

    for bad in ["", "../x", "a/b", ".hidden", "x" * 65, "spa ce"]:
        with pytest.raises(InputFileError, match="invalid slide id"):
            SlideStore.create(tmp_path / "x.h5", slide_id=bad, rig={}, simulated=True)


def test_completeness_counts_planned_acquired_and_flagged_fields(tmp_path: Path) -> None:
    import dataclasses

    rng = np.random.default_rng(5)
    path = tmp_path / "c.h5"
    plan = {"fields": [{"index": i, "x_um": 10.0 * i, "y_um": 0.0} for i in range(3)]}
    with SlideStore.create(path, slide_id="c", rig={"kind": "test"}, simulated=True) as store:
        store.set_plan(plan)
        store.set_attr("scan_plan_json", json.dumps({"grid_shape": [1, 2]}))
        assert store.completeness() == {
            "complete": False,
            "source": "acquisition",
            "planned_fields": 3,
            "acquired_fields": 0,
            "flagged_fields": 0,
            "flagged_field_indices": [],
            "planned_tiles": 2,
            "acquired_tiles": 0,
            "mosaic": False,
        }
        store.add_tile(_tile(rng, 0, 0))
        store.write_mosaic(
            rng.integers(0, 256, (64, 80, 3), dtype=np.uint8),
            pixel_size_um=0.37,
            origin_x_um=0.0,
            origin_y_um=0.0,
            method={},
        )
        store.add_capture(dataclasses.replace(_capture(rng, 0), extra={"flags": ["blurred"]}))
        store.add_capture(_capture(rng, 1))
    with SlideStore.open(path) as store:  # killed here: two of three fields, one flagged
        c = store.completeness()
        assert not c["complete"] and (c["acquired_fields"], c["flagged_fields"]) == (2, 1)
        assert c["flagged_field_indices"] == [0] and c["acquired_tiles"] == 1
        assert store.info()["completeness"] == c
    with SlideStore.open(path, mode="a") as store:
        store.add_capture(_capture(rng, 2))
        store.add_capture(_capture(rng, 0))  # the flagged field, retaken without flags
        c = store.completeness()
    assert c["complete"] and (c["planned_fields"], c["acquired_fields"], c["flagged_fields"]) == (3, 3, 0)


def test_completeness_of_a_slide_without_a_plan_counts_what_it_holds(tmp_path: Path) -> None:
    rng = np.random.default_rng(6)
    with SlideStore.create(tmp_path / "i.h5", slide_id="i", rig={"kind": "import"}, simulated=False) as store:
        store.add_capture(_capture(rng, 0))
        assert not store.completeness()["complete"]  # no mosaic yet
        store.write_mosaic(
            rng.integers(0, 256, (30, 30, 3), dtype=np.uint8),
            pixel_size_um=0.37,
            origin_x_um=0.0,
            origin_y_um=0.0,
            method={},
        )
        c = store.completeness()
    assert c["complete"] and c["source"] == "import" and c["planned_fields"] == c["acquired_fields"] == 1
