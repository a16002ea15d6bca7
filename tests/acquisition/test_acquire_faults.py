"""Acquisition with faults injected into the simulated devices, the battery pause, the manual phone stage,
--recapture-flagged, and a full disk: each run completes with bounded retries or stops with one clear error
and a store that --resume continues."""

from __future__ import annotations

import copy
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from acq_support import small_protocol
from scopectl.acquisition.checks import locate_in_mosaic
from scopectl.acquisition.engine import AcquisitionEngine
from scopectl.acquisition.plan import build_plan
from scopectl.acquisition.protocol import load_protocol
from scopectl.cli.main import main
from scopectl.errors import DeviceError, DeviceTimeoutError
from scopectl.hardware.benchtop.sim import BenchtopFaults
from scopectl.hardware.ledring.sim import BoardFaults
from scopectl.hardware.phone.sim import PhoneFaults
from scopectl.hardware.rig import ManualPhoneStage, SimRigFaults, open_simulated_rig
from scopectl.stitching import stitch_store
from scopectl.store import SlideStore

pytestmark = pytest.mark.slow


class RecordingOperator:
    def __init__(self, *, on_pause: Any = None) -> None:
        self.notices: list[str] = []
        self.pauses: list[str] = []
        self.on_pause = on_pause

    def notice(self, message: str) -> None:
        self.notices.append(message)

    def pause(self, message: str) -> None:
        self.pauses.append(message)
        if self.on_pause is None:
            raise DeviceError(message)
        self.on_pause()


def _start(
    tmp_path: Path, faults: SimRigFaults | None, *, slide: str = "f1", seed: int = 2
) -> tuple[Any, SlideStore, Any]:
    proto = load_protocol(str(small_protocol(tmp_path)))
    plan = build_plan(proto, slide_id=slide, seed=seed)
    rig = open_simulated_rig(
        seed=seed,
        capture_shape=proto.phone.capture_shape_px,
        benchtop_sensor_shape=proto.benchtop.tile_shape_px,
        faults=faults,
    )
    root = tmp_path / "root" / "slides"
    store = SlideStore.create(
        root / f"{slide}.h5",
        slide_id=slide,
        rig=rig.description,
        simulated=True,
        protocol=proto.model_dump(mode="json"),
    )
    store.set_plan(plan.model_dump(mode="json"))
    return rig, store, plan


def _engine(rig: Any, store: SlideStore, plan: Any, operator: Any = None, **kw: Any) -> AcquisitionEngine:
    return AcquisitionEngine(
        rig,
        store,
        plan,
        operator=operator or RecordingOperator(),
        locator=locate_in_mosaic,
        stitcher=stitch_store,
        sleep=lambda s: None,
        **kw,
    )


def _resume(tmp_path: Path, slide: str, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["--root", str(tmp_path / "root"), "acquire", "--slide", slide, "--rig", "sim", "--resume"])
    out = capsys.readouterr()
    assert rc == 0, out.err
    with SlideStore.open(tmp_path / "root" / "slides" / f"{slide}.h5") as store:
        assert store.verify()["ok"] and store.capture_count() == 2 and store.mosaic_info() is not None


def test_serial_noise_and_adb_drop_are_recovered(tmp_path: Path) -> None:
    faults = SimRigFaults(
        led=BoardFaults(rx_corrupt=0.005, tx_corrupt=0.005, rx_drop=0.002, seed=4),
        phone=PhoneFaults(drop_transfers=1, drop_after_bytes=4096),
    )
    rig, store, plan = _start(tmp_path, faults)
    with rig, store:
        summary = _engine(rig, store, plan).run()
        assert summary["fields_captured"] == 2 and summary["verified"]


@pytest.mark.parametrize(
    ("faults", "error", "message"),
    [
        (
            SimRigFaults(benchtop=BenchtopFaults(stall_xy_after_moves=6), benchtop_timeout_s=1.0),
            DeviceTimeoutError,
            "timed out",
        ),
        (SimRigFaults(benchtop=BenchtopFaults(camera_fail_after_snaps=12)), DeviceError, "returned no image"),
        (SimRigFaults(phone=PhoneFaults(capture_produces_no_file=True)), DeviceTimeoutError, "phone"),
    ],
    ids=["stage-timeout", "camera-no-image", "capture-never-produces-a-file"],
)
def test_fatal_faults_stop_with_one_clear_error_and_resume_continues(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    faults: SimRigFaults,
    error: type[Exception],
    message: str,
) -> None:
    rig, store, plan = _start(tmp_path, faults)
    if faults.phone is not None:  # a short capture timeout and one retry keep the test quick
        rig.phone.timeouts = rig.phone.timeouts.model_copy(update={"capture_s": 1.0})
        data = copy.deepcopy(plan.protocol)
        data["checks"]["max_retries"] = 1
        plan = plan.model_copy(update={"protocol": data})
    with rig, store, pytest.raises(error, match=message) as info:
        _engine(rig, store, plan).run()
    assert "\n" not in str(info.value)
    _resume(tmp_path, "f1", capsys)


def test_low_battery_pauses_with_a_message(tmp_path: Path) -> None:
    rig, store, plan = _start(tmp_path, None)
    data = copy.deepcopy(plan.protocol)
    data["checks"]["min_battery_mv"] = 5000.0  # above anything a Li-ion cell gives: always "low"
    plan = plan.model_copy(update={"protocol": data})
    with rig, store:
        engine = _engine(rig, store, plan, operator=RecordingOperator())
        engine.run_benchtop()
        with pytest.raises(DeviceError, match=r"LED battery at \d+ mV, below the protocol's 5000 mV"):
            engine.run_phone()
        assert store.capture_count() == 0


def test_manual_phone_stage_asks_the_operator(tmp_path: Path) -> None:
    rig, store, plan = _start(tmp_path, None)
    prompts: list[str] = []
    world = rig.world

    def operator_moves(message: str) -> None:  # the "operator" reads the prompt and moves the stage
        prompts.append(message)
        x_mm = float(message.split("x = ")[1].split(" mm")[0])
        y_mm = float(message.split("y = ")[1].split(" mm")[0])
        world.move_phone(x_mm * 1000, y_mm * 1000)

    rig.phone_stage = ManualPhoneStage(operator_moves)
    with rig, store:
        _engine(rig, store, plan).run()
        assert [p.split(":")[0] for p in prompts] == [
            "Move the phone stage to field 1 of 2",
            "Move the phone stage to field 2 of 2",
        ]
        metas = store.captures()
        assert all(m.stage_x_um is None and m.extra["phone_stage"] == "manual" for m in metas)
        assert all(m.extra["checks"]["located"] for m in metas)


def test_flagged_fields_are_recaptured(tmp_path: Path) -> None:
    rig, store, plan = _start(tmp_path, None)
    data = copy.deepcopy(plan.protocol)
    data["checks"]["min_sharpness"] = 1e9  # every capture is "blurred"
    flagged_plan = plan.model_copy(update={"protocol": data})
    with rig, store:
        summary = _engine(rig, store, flagged_plan).run()
        assert len(summary["flagged_fields"]) == 2 and "blurred" in summary["flagged_fields"]["0"][0]
        assert store.capture_count() == 2
        summary = _engine(rig, store, plan, recapture_flagged=True).run()
        assert store.capture_count() == 4 and summary["flagged_fields"] == {}
        assert summary["fields_captured"] == 2


_DISK_FULL = textwrap.dedent(
    """
    import resource, signal, sys, time
    import numpy as np
    from scopectl.store import SlideStore, TileRecord
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    store = SlideStore.open(sys.argv[1], mode="a")
    resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[2]), int(sys.argv[2])))
    rng = np.random.default_rng(0)
    for i in range(100):
        store.add_tile(TileRecord(rng.integers(0, 256, (256, 256, 3), dtype=np.uint8), i, 0, 0, 0, 0, 0.37, 1, time.time(), 1))
    """
)


def test_disk_full_does_not_corrupt_what_was_stored(tmp_path: Path) -> None:
    path = tmp_path / "full.h5"
    rng = np.random.default_rng(1)
    from scopectl.store import TileRecord

    with SlideStore.create(path, slide_id="full", rig={}, simulated=True) as store:
        for i in range(3):
            store.add_tile(
                TileRecord(rng.integers(0, 256, (256, 256, 3), dtype=np.uint8), i, 0, 0, 0, 0, 0.37, 1, 0, 1)
            )
        before = [store.read_tile(i)[0] for i in range(3)]
    limit = path.stat().st_size + 400_000  # room for about two more tiles, then "disk full"
    proc = subprocess.run(
        [sys.executable, "-c", _DISK_FULL, str(path), str(limit)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode != 0
    with SlideStore.open(path, mode="a") as store:
        assert store.verify()["ok"]
        assert 3 <= store.tile_count() < 100
        for i in range(3):
            np.testing.assert_array_equal(store.read_tile(i)[0], before[i])
