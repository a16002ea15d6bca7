"""Injected faults: each ends in a recovered capture or one clear error -- never a hang or a stray file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from scopectl.errors import DeviceError, DeviceProtocolError, DeviceTimeoutError
from scopectl.hardware.phone import PhoneCamera, PhoneProfile, PhoneTimeouts
from scopectl.hardware.phone.keys import official_key_path
from scopectl.hardware.phone.sim import PhoneFaults, SimulatedPhone


def _camera(phone: SimulatedPhone, timeouts: PhoneTimeouts, **kwargs: Any) -> PhoneCamera:
    kwargs.setdefault("profile", "sim")
    return PhoneCamera(phone.address, timeouts=timeouts, **kwargs)


def _all_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and "home" not in p.relative_to(root).parts)


def test_connection_drop_mid_transfer_is_recovered(
    sim_factory: Any, fast_timeouts: PhoneTimeouts, tmp_path: Path
) -> None:
    faults = PhoneFaults(drop_transfers=1, drop_after_bytes=2000)
    phone = sim_factory(faults=faults)
    with _camera(phone, fast_timeouts) as cam:
        files = cam.capture(tmp_path / "out")
        assert faults.drop_transfers == 0, "the fault must have fired"
        assert files.transfer_attempts == 3  # one of the two files needed a second attempt
        assert cam.reconnects >= 1
        assert files.dng is not None
        assert files.dng.read_bytes() == phone.phone.read_file(files.dng_remote or "")
        assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(
            [files.dng.name, files.jpeg.name if files.jpeg else ""]
        )


def test_persistent_drops_end_in_one_clear_error(
    sim_factory: Any, fast_timeouts: PhoneTimeouts, tmp_path: Path
) -> None:
    phone = sim_factory(faults=PhoneFaults(drop_transfers=100, drop_after_bytes=1000))
    dest = tmp_path / "out"
    cam = _camera(phone, fast_timeouts, transfer_retries=1)
    with cam, pytest.raises(DeviceError, match=r"failed after 2 attempts.*connection lost"):
        cam.capture(dest)
    assert list(dest.iterdir()) == [], "no partial file may remain"


def test_slow_phone_within_timeouts(sim_factory: Any, fast_timeouts: PhoneTimeouts, tmp_path: Path) -> None:
    phone = sim_factory(faults=PhoneFaults(latency_s=0.05, camera_delay_s=0.4))
    with _camera(phone, fast_timeouts) as cam:
        files = cam.capture(tmp_path)
    assert files.dng is not None
    assert files.jpeg is not None
    assert files.latencies_s["first_file_s"] >= 0.4  # the camera's delay is visible in the latency


def test_phone_slower_than_the_timeout_fails_cleanly(sim_factory: Any, fast_timeouts: PhoneTimeouts) -> None:
    phone = sim_factory()
    with _camera(phone, fast_timeouts.model_copy(update={"command_s": 0.3})) as cam:
        phone.faults.latency_s = 1.0
        with pytest.raises(DeviceTimeoutError, match=r"timed out after 0.3 s"):
            cam.info()
        phone.faults.latency_s = 0.0
        assert cam.info().model == phone.phone.model  # reconnects and works again


def test_full_storage_is_a_clear_error(
    sim_factory: Any, fast_timeouts: PhoneTimeouts, tmp_path: Path
) -> None:
    phone = sim_factory(faults=PhoneFaults(free_bytes=3 * 1024 * 1024))
    cam = _camera(phone, fast_timeouts)
    with cam, pytest.raises(DeviceError, match=r"only 3\.1 MB free.*delete old photos"):
        cam.capture(tmp_path)
    assert phone.phone.captures == [], "no shot may be taken on a full phone"


def test_storage_filling_up_during_the_shot(
    sim_factory: Any, fast_timeouts: PhoneTimeouts, tmp_path: Path
) -> None:
    phone = sim_factory(faults=PhoneFaults(free_bytes=1000))
    timeouts = fast_timeouts.model_copy(update={"capture_s": 0.4})
    with (
        _camera(phone, timeouts, min_free_bytes=0) as cam,
        pytest.raises(
            DeviceTimeoutError, match=r"no new photo appeared.*storage is not full \(0\.0 MB free\)"
        ),
    ):
        cam.capture(tmp_path)
    assert phone.phone.captures[-1].reason == "storage full"


def test_capture_that_never_produces_a_file(
    sim_factory: Any, fast_timeouts: PhoneTimeouts, tmp_path: Path
) -> None:
    phone = sim_factory(faults=PhoneFaults(capture_produces_no_file=True))
    timeouts = fast_timeouts.model_copy(update={"capture_s": 0.4})
    with (
        _camera(phone, timeouts) as cam,
        pytest.raises(DeviceTimeoutError, match=r"no new photo appeared .* within 0.4 s.*KEYCODE_CAMERA"),
    ):
        cam.capture(tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_escaping_file_name_is_rejected(
    sim_factory: Any, fast_timeouts: PhoneTimeouts, tmp_path: Path
) -> None:
    hostile = "../../escape.dng"
    phone = sim_factory(faults=PhoneFaults(hostile_name=hostile))
    box = tmp_path / "box"
    dest = box / "a" / "b"
    with _camera(phone, fast_timeouts) as cam:
        with pytest.raises(
            DeviceProtocolError, match=r"unsafe file name '\.\./\.\./escape\.dng'.*path separator"
        ):
            cam.capture(dest)
        assert _all_files(tmp_path) == [], "nothing may be written anywhere"
        # the hostile file is still on the phone: later captures skip it and work
        files = cam.capture(dest)
    assert files.dng is not None
    assert files.dng.parent == dest
    assert {p.parent for p in _all_files(tmp_path)} == {dest}


def test_oversized_file_is_refused(sim_factory: Any, fast_timeouts: PhoneTimeouts, tmp_path: Path) -> None:
    phone = sim_factory()
    cam = _camera(phone, fast_timeouts, max_file_bytes=2000)
    with cam, pytest.raises(DeviceProtocolError, match="above max_file_bytes"):
        cam.capture(tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_burst_from_the_key_sequence_is_ambiguous(
    sim_factory: Any, fast_timeouts: PhoneTimeouts, tmp_path: Path
) -> None:
    phone = sim_factory()
    double = PhoneProfile(name="double", capture_keys=("KEYCODE_CAMERA", "KEYCODE_CAMERA"))
    cam = _camera(phone, fast_timeouts, profile=double)
    with cam, pytest.raises(DeviceProtocolError, match="2 new photos appeared"):
        cam.capture(tmp_path)


def test_sleeping_and_swipe_locked_phone_is_woken(
    sim_factory: Any, fast_timeouts: PhoneTimeouts, tmp_path: Path
) -> None:
    phone = sim_factory()
    phone.phone.awake = False
    phone.phone.locked = True
    with _camera(phone, fast_timeouts) as cam:
        files = cam.capture(tmp_path)
    assert files.jpeg is not None
    assert phone.phone.awake
    assert not phone.phone.locked


def test_pin_locked_phone_is_a_clear_error(
    sim_factory: Any, fast_timeouts: PhoneTimeouts, tmp_path: Path
) -> None:
    phone = sim_factory()
    phone.phone.locked = True
    phone.phone.secure_lock = True
    cam = _camera(phone, fast_timeouts.model_copy(update={"wake_wait_s": 0.3}))
    with cam, pytest.raises(DeviceError, match="lock screen is showing"):
        cam.capture(tmp_path)


def test_first_connection_prompts_and_waits_for_allow(
    sim_factory: Any, fast_timeouts: PhoneTimeouts, isolated_home: Path
) -> None:
    phone = sim_factory(require_auth=True, user_allows_after_s=0.2)
    prompts: list[str] = []
    with _camera(phone, fast_timeouts, on_auth_prompt=prompts.append) as cam:
        assert cam.shell("echo ok").output == "ok\n"
    assert len(prompts) == 1
    assert "tap 'Allow'" in prompts[0]
    assert len(phone.prompts) == 1
    # the key is now authorised: no second prompt
    with _camera(phone, fast_timeouts, on_auth_prompt=prompts.append) as cam:
        cam.shell("true")
    assert len(prompts) == 1
    key = isolated_home / ".config" / "scopectl" / "adbkey"
    assert key.stat().st_mode & 0o777 == 0o600
    assert key.parent.stat().st_mode & 0o777 == 0o700


def test_user_never_allows(sim_factory: Any, fast_timeouts: PhoneTimeouts, isolated_home: Path) -> None:
    phone = sim_factory(require_auth=True, user_allows_after_s=None)
    cam = _camera(phone, fast_timeouts.model_copy(update={"auth_s": 0.3}), on_auth_prompt=lambda _m: None)
    with pytest.raises(DeviceTimeoutError, match="'Allow'"):
        cam.connect()
    cam.close()


def test_official_client_key_is_reused(
    sim_factory: Any, fast_timeouts: PhoneTimeouts, isolated_home: Path
) -> None:
    from adb_shell.auth.keygen import keygen

    official = official_key_path()
    official.parent.mkdir(parents=True)
    keygen(str(official))
    phone = sim_factory(
        require_auth=True, authorized_keys=[Path(f"{official}.pub").read_text()], user_allows_after_s=None
    )
    prompts: list[str] = []
    with _camera(phone, fast_timeouts, on_auth_prompt=prompts.append) as cam:
        assert cam.shell("echo ok").output == "ok\n"
    assert prompts == []
    # without the official key, scopectl's own key is not authorised on this phone
    alone = _camera(
        phone,
        fast_timeouts.model_copy(update={"auth_s": 0.3}),
        use_official_key=False,
        on_auth_prompt=prompts.append,
    )
    with pytest.raises(DeviceTimeoutError, match="'Allow'"):
        alone.connect()
    alone.close()
    assert len(prompts) == 1


def test_nothing_listens(fast_timeouts: PhoneTimeouts, isolated_home: Path) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    from scopectl.errors import DeviceNotFoundError

    with pytest.raises(DeviceNotFoundError, match="connection refused"):
        PhoneCamera(f"127.0.0.1:{port}", timeouts=fast_timeouts).connect()


def test_usb_without_libusb_is_a_clear_error(fast_timeouts: PhoneTimeouts, isolated_home: Path) -> None:
    try:
        import usb1  # noqa: F401
    except ImportError:
        with pytest.raises(DeviceError, match="libusb1"):
            PhoneCamera("0123456789ABCDEF", timeouts=fast_timeouts).connect()
    else:
        pytest.skip("libusb1 is installed: the USB path is taken instead")


def test_stop_joins_all_threads(sim_factory: Any, fast_timeouts: PhoneTimeouts, tmp_path: Path) -> None:
    import threading

    phone = sim_factory()
    with _camera(phone, fast_timeouts) as cam:
        cam.capture(tmp_path)
    phone.stop()
    leftovers = [t.name for t in threading.enumerate() if t.name.startswith("sim-")]
    assert leftovers == []


class _DroppingSource:
    """Cuts every connection while the camera renders: the driver is polling for the photo then."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.phone: SimulatedPhone | None = None

    def render_capture(self) -> tuple[bytes, bytes, dict[str, Any]]:
        assert self.phone is not None
        self.phone.drop_connections()
        result: tuple[bytes, bytes, dict[str, Any]] = self.inner.render_capture()
        return result


def test_connection_drop_while_waiting_for_the_photo(
    sim_factory: Any, source: Any, fast_timeouts: PhoneTimeouts, tmp_path: Path
) -> None:
    dropping = _DroppingSource(source)
    phone = sim_factory(source=dropping)
    dropping.phone = phone
    with _camera(phone, fast_timeouts) as cam:
        files = cam.capture(tmp_path)
        assert cam.reconnects >= 1
    assert files.dng is not None
    assert files.jpeg is not None


def test_phone_without_sha256sum(sim_factory: Any, fast_timeouts: PhoneTimeouts, tmp_path: Path) -> None:
    phone = sim_factory()
    phone.shell.remove_command("sha256sum")
    with _camera(phone, fast_timeouts, profile="generic-android") as cam:
        files = cam.capture(tmp_path / "a")
    assert files.dng is not None
    assert not files.hash_verified_on_phone  # sizes only
    cam = _camera(phone, fast_timeouts, profile="sim")  # this profile demands the check
    with cam, pytest.raises(DeviceError, match=r"sha256sum .* exit code 127.*has_sha256sum: false"):
        cam.capture(tmp_path / "b")
    assert list((tmp_path / "b").iterdir()) == []


def test_raw_switched_off_in_the_camera_app(
    sim_factory: Any, fast_timeouts: PhoneTimeouts, tmp_path: Path
) -> None:
    phone = sim_factory(faults=PhoneFaults(raw_disabled=True))
    timeouts = fast_timeouts.model_copy(update={"capture_s": 0.6})
    cam = _camera(phone, timeouts)  # the sim profile requires DNG + JPEG
    with cam, pytest.raises(DeviceTimeoutError, match=r"only IMG_\S+\.jpg appeared \(no DNG\).*RAW\+JPEG"):
        cam.capture(tmp_path / "strict")
    with _camera(phone, timeouts, profile="generic-android-jpeg") as cam:
        files = cam.capture(tmp_path / "lenient")
    assert files.dng is None
    assert files.jpeg is not None
    assert files.settings["settings_source"]["iso"] == "jpeg"


def test_camera_from_config(sim_factory: Any, fast_timeouts: PhoneTimeouts, tmp_path: Path) -> None:
    from scopectl.hardware.phone import PhoneConfig

    phone = sim_factory()
    cfg = PhoneConfig(
        address=phone.address,
        profile="sim",
        camera_dir="/sdcard/DCIM/Camera/",
        timeouts=fast_timeouts,
        delete_after=True,
        min_free_bytes=0,
    )
    cam = PhoneCamera.from_config(cfg)
    assert cam.profile.camera_dir == "/sdcard/DCIM/Camera"
    with cam:
        files = cam.capture(tmp_path)
    assert files.jpeg is not None
    assert phone.phone.listdir("/sdcard/DCIM/Camera") is not None
    assert [n for n, *_ in phone.phone.listdir("/sdcard/DCIM/Camera") or [] if not n.startswith(".")] == []
    with pytest.raises(ValueError, match="camera_dir"):
        PhoneConfig(address=phone.address, camera_dir="/sdcard/../data")


def test_corrupt_dng_from_the_phone(sim_factory: Any, fast_timeouts: PhoneTimeouts, tmp_path: Path) -> None:
    from scopectl.errors import InputFileError

    phone = sim_factory(source=lambda: (b"II*\0" + bytes(5000), b"\xff\xd8" + bytes(3000)))
    cam = _camera(phone, fast_timeouts)
    with cam, pytest.raises(InputFileError, match=r"IMG_\S+\.dng: the phone's DNG is not a readable"):
        cam.capture(tmp_path, delete_after=True)
    assert list(tmp_path.iterdir()) == [], "all or nothing: no half capture stays in the destination"
    names = [n for n, *_ in phone.phone.listdir("/sdcard/DCIM/Camera") or [] if n.startswith("IMG_")]
    assert len(names) == 2, "the files stay on the phone"


def test_a_trickling_listing_is_bounded_by_a_total_deadline(
    sim_factory: Any, fast_timeouts: PhoneTimeouts, tmp_path: Path
) -> None:
    import time

    phone = sim_factory()
    timeouts = fast_timeouts.model_copy(update={"command_s": 0.6, "capture_s": 1.5})
    with _camera(phone, timeouts) as cam:
        cam.info()
        phone.faults.list_entry_delay_s = 0.15  # every entry well within the per-read timeout
        phone.faults.extra_list_entries = 30  # ... but the whole listing would take 4.5 s
        t0 = time.monotonic()
        with pytest.raises(DeviceTimeoutError, match=r"listing /sdcard/DCIM/Camera"):
            cam.capture(tmp_path / "out")
        assert time.monotonic() - t0 < 3 * timeouts.capture_s  # not 30 × 0.15 s per listing, repeated


def test_a_flood_of_entries_is_refused(
    sim_factory: Any, fast_timeouts: PhoneTimeouts, tmp_path: Path
) -> None:
    from scopectl.hardware.phone.link import MAX_LIST_ENTRIES

    phone = sim_factory(faults=PhoneFaults(extra_list_entries=MAX_LIST_ENTRIES + 1))
    with (
        _camera(phone, fast_timeouts) as cam,
        pytest.raises(DeviceProtocolError, match=r"entries \(more than 20,000\)"),
    ):
        cam.capture(tmp_path / "out")
    assert not (tmp_path / "out").exists() or list((tmp_path / "out").iterdir()) == []
