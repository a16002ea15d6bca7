"""Fixtures for the phone tests: a capture source that writes real DNG and JPEG files, isolated keys."""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from pidng.core import RAW2DNG, DNGTags, Tag
from pidng.defs import CalibrationIlluminant, CFAPattern, DNGVersion, PhotometricInterpretation
from pidng.dng import Type
from PIL import Image

from scopectl.hardware.phone import PhoneTimeouts
from scopectl.hardware.phone.keys import default_key_path, ensure_key
from scopectl.hardware.phone.sim import PhoneFaults, SimulatedPhone

ISO_SPEED_RATINGS = (34855, Type.Short)  # not in pidng's tag list


class SyntheticCaptureSource:
    """Renders seeded, textured raw frames into a real DNG (pidng) and a real JPEG with EXIF (cv2 + Pillow).

    Each call gives a new frame (seed + call index); ``frames`` keeps the raw Bayer data for checks.
    """

    def __init__(
        self, *, seed: int, rows: int = 48, cols: int = 64, iso: int = 100, exposure_s: float = 1 / 125
    ):
        self.seed = seed
        self.rows, self.cols = rows, cols
        self.iso = iso
        self.exposure_s = exposure_s
        self.frames: list[np.ndarray] = []

    def render_capture(self) -> tuple[bytes, bytes, dict[str, Any]]:
        rng = np.random.default_rng(self.seed + len(self.frames))
        r, c = np.mgrid[0 : self.rows, 0 : self.cols]
        texture = 0.5 + 0.3 * np.sin(r / 3.0 + rng.uniform(0, 6)) * np.cos(c / 5.0 + rng.uniform(0, 6))
        raw = (64 + texture * 3000 + rng.normal(0, 20, texture.shape)).clip(64, 4095).astype(np.uint16)
        self.frames.append(raw)
        settings = {"iso": self.iso, "exposure_s": self.exposure_s, "white_balance": "cloudy"}
        return self._dng(raw), self._jpeg(raw), settings

    def _dng(self, raw: np.ndarray) -> bytes:
        t = DNGTags()
        rows, cols = raw.shape
        for tag, value in (
            (Tag.ImageWidth, cols),
            (Tag.ImageLength, rows),
            (Tag.TileWidth, cols),
            (Tag.TileLength, rows),
            (Tag.Orientation, 1),
            (Tag.PhotometricInterpretation, PhotometricInterpretation.Color_Filter_Array),
            (Tag.SamplesPerPixel, 1),
            (Tag.BitsPerSample, 16),
            (Tag.CFARepeatPatternDim, [2, 2]),
            (Tag.CFAPattern, CFAPattern.RGGB),
            (Tag.BlackLevel, 64),
            (Tag.WhiteLevel, 4095),
            (Tag.ColorMatrix1, [[1, 1], [0, 1], [0, 1], [0, 1], [1, 1], [0, 1], [0, 1], [0, 1], [1, 1]]),
            (Tag.CalibrationIlluminant1, CalibrationIlluminant.D65),
            (Tag.AsShotNeutral, [[1, 1], [1, 1], [1, 1]]),
            (Tag.Make, "scopectl"),
            (Tag.Model, "synthetic phone"),
            (Tag.ExposureTime, [[1, round(1 / self.exposure_s)]]),
            (ISO_SPEED_RATINGS, [self.iso]),
            (Tag.DNGVersion, DNGVersion.V1_4),
            (Tag.DNGBackwardVersion, DNGVersion.V1_2),
        ):
            t.set(tag, value)
        writer = RAW2DNG()
        writer.options(t, path="", compress=False)  # compress=True fails on Python 3.11
        return bytes(writer.convert(raw))

    def _jpeg(self, raw: np.ndarray) -> bytes:
        bgr = cv2.cvtColor(((raw - 64) / 16).clip(0, 255).astype(np.uint8), cv2.COLOR_GRAY2BGR)
        ok, encoded = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, 92])
        assert ok
        exif = Image.Exif()
        exif[271] = "scopectl"
        exif[272] = "synthetic phone"
        sub = exif.get_ifd(0x8769)
        sub[34855] = self.iso
        sub[41987] = 1  # manual white balance
        sub[37384] = 10  # cloudy
        payload = exif.tobytes()
        jpeg = encoded.tobytes()
        app1 = b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload
        return jpeg[:2] + app1 + jpeg[2:]


FAST = PhoneTimeouts(
    connect_s=5,
    auth_s=5,
    command_s=5,
    transfer_s=10,
    capture_s=3,
    pair_grace_s=0.2,
    poll_interval_s=0.03,
    stable_s=0.2,
    launch_wait_s=0,
    wake_wait_s=1,
)


@pytest.fixture
def fast_timeouts() -> PhoneTimeouts:
    return FAST


@pytest.fixture
def isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """HOME and XDG_CONFIG_HOME inside tmp_path, so no real key is read or written."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    monkeypatch.delenv("ANDROID_USER_HOME", raising=False)
    return home


@pytest.fixture
def scopectl_pubkey(isolated_home: Path) -> str:
    """scopectl's public key (created in the isolated config directory)."""
    path = ensure_key(default_key_path())
    return Path(f"{path}.pub").read_text()


@pytest.fixture
def source() -> SyntheticCaptureSource:
    return SyntheticCaptureSource(seed=1234)


@pytest.fixture
def sim_factory(source: SyntheticCaptureSource) -> Iterator[Any]:
    """Start simulated phones (stopped at teardown)."""
    started: list[SimulatedPhone] = []

    def make(**kwargs: Any) -> SimulatedPhone:
        kwargs.setdefault("faults", PhoneFaults())
        phone = SimulatedPhone(kwargs.pop("source", source), **kwargs)
        phone.start()
        started.append(phone)
        return phone

    yield make
    for phone in started:
        phone.stop()
