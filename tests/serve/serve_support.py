"""Helpers of the service's tests: real server processes, small models, images and users.

Servers run as ``python -m scopectl.cli.main serve --port 0`` in their own process; the helper waits (with a
deadline) for the line that names the port, and stops them with SIGTERM (or kills them, to test crashes).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import httpx
import numpy as np
import torch

from scopectl.learn.modelio import ModelCard, QualityCheck, save_model
from scopectl.learn.network import build_network
from scopectl.serve.accounts import create_user
from scopectl.serve.db import Database, default_db_url

START_DEADLINE_S = 90.0
STOP_DEADLINE_S = 40.0


def identity_network(*, invert: bool = False) -> torch.nn.Module:
    """A 5/2 network whose output is the input sampled at the output grid (nearest neighbour).

    The head passes the colour channels on (``relu(x - 0.5 + 0.5) = x``), the residual blocks add nothing,
    ``expand`` copies each colour to its 25 sub-pixels, the pixel shuffle upsamples by 5 and the stride-2 tail
    samples the centre.  So an enhanced image shrunk by 2.5 must match its input: a check that colours, rows
    and columns survive the whole service.  With ``invert`` the output is ``1 - input`` (unmistakable on screen).
    """
    net = build_network((5, 2))
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, torch.nn.Conv2d):
                module.weight.zero_()
                assert module.bias is not None
                module.bias.zero_()
        for c in range(3):
            net.head.weight[c, c, 1, 1] = 1.0
            net.head.bias[c] = 0.5
            for s in range(25):
                net.expand.weight[c * 25 + s, c, 1, 1] = -1.0 if invert else 1.0
                net.expand.bias[c * 25 + s] = 1.0 if invert else 0.0
            net.tail.weight[c, c, 1, 1] = 1.0
            net.tail.bias[c] = -0.5
    return net.eval()


def save_identity_model(root: Path, name: str, *, quality: str = "checked", invert: bool = False) -> Path:
    """Write ``<root>/models/<name>`` with the identity network; ``quality``: checked, unchecked or worse."""
    record = None
    if quality != "unchecked":
        worse = quality == "worse"
        record = QualityCheck(
            pairs=12,
            network_ssim=0.62 if worse else 0.81,
            network_cie94=6.5 if worse else 3.9,
            bicubic_ssim=0.70,
            bicubic_cie94=6.0,
            worse_than_bicubic=worse,
        )
    card = ModelCard(
        name=name,
        input_pixel_size_um=0.925,
        target_pixel_size_um=0.37,
        sample_type="lung",
        input_kind="jpeg",
        quality=record,
        validation={"ssim_network": 0.81, "ssim_bicubic": 0.70},
        notes="test model: nearest-neighbour upsampling written as the paper's network",
    )
    directory = root / "models" / name
    save_model(directory, identity_network(invert=invert), card)
    return directory


def sample_image(rows: int = 96, cols: int = 128, *, seed: int = 0) -> np.ndarray:
    """A smooth colour RGB uint8 image (distinct channels, so a channel swap shows)."""
    rng = np.random.default_rng(seed)
    small = rng.random((rows // 8 + 2, cols // 8 + 2, 3)).astype(np.float32)
    big = cv2.resize(small, (cols, rows), interpolation=cv2.INTER_CUBIC)
    big *= np.array([0.9, 0.6, 0.3], np.float32)
    big += np.array([0.05, 0.3, 0.6], np.float32)
    return np.clip(big * 255, 0, 255).astype(np.uint8)


def jpeg_bytes(rgb: np.ndarray, *, quality: int = 95) -> bytes:
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return buf.tobytes()


def png_bytes(rgb: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    assert ok
    return buf.tobytes()


@dataclass
class Account:
    name: str
    role: str
    clinic: str | None
    password: str
    token: str

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


def add_users(db_url: str, specs: list[tuple[str, str, str | None]]) -> dict[str, Account]:
    """Create users directly in the database (``scopectl user add`` is tested on its own)."""
    db = Database(db_url)
    db.migrate()
    accounts = {}
    try:
        with db.begin() as conn:
            for name, role, clinic in specs:
                new = create_user(conn, name, role=role, clinic=clinic)
                accounts[name] = Account(name, role, clinic, new.password, new.token)
    finally:
        db.dispose()
    return accounts


@dataclass
class ServerProcess:
    """``scopectl serve`` in a child process (stderr in ``log``)."""

    root: Path
    args: list[str] = field(default_factory=list)
    log: Path | None = None
    proc: subprocess.Popen[bytes] | None = None
    url: str = ""

    def start(self) -> ServerProcess:
        self.log = self.log or self.root.parent / f"{self.root.name}-server.log"
        handle = open(self.log, "ab")  # noqa: SIM115 - the child keeps it; closed by the OS at exit
        start = self.log.stat().st_size
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "scopectl.cli.main",
                "--root",
                str(self.root),
                "serve",
                "--port",
                "0",
                *self.args,
            ],
            stdout=handle,
            stderr=handle,
            stdin=subprocess.DEVNULL,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        handle.close()
        deadline = time.monotonic() + START_DEADLINE_S
        while time.monotonic() < deadline:
            text = self.log.read_bytes()[start:].decode("utf-8", "replace")
            match = re.search(r"listening on (http://127\.0\.0\.1:\d+)", text)
            if match:
                self.url = match.group(1)
                self._wait_healthy(deadline)
                return self
            if self.proc.poll() is not None:
                raise RuntimeError(f"scopectl serve exited with {self.proc.returncode}:\n{text[-3000:]}")
            time.sleep(0.1)
        self.kill()
        raise RuntimeError(f"scopectl serve did not start within {START_DEADLINE_S} s")

    def _wait_healthy(self, deadline: float) -> None:
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.url + "/api/health", timeout=5).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise RuntimeError("scopectl serve never answered /api/health")

    def stop(self) -> int:
        """SIGTERM and wait (a graceful stop); returns the exit code."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=STOP_DEADLINE_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        return int(self.proc.returncode)

    def kill(self) -> None:
        """SIGKILL: a crash, as far as the service can tell."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log and self.log.exists() else ""


def wait_status(
    client: httpx.Client, capture_id: str, *, timeout_s: float = 60.0, **kw: Any
) -> dict[str, Any]:
    """Long-poll a capture until it is done or failed (with a deadline)."""
    deadline = time.monotonic() + timeout_s
    while True:
        r = client.get(f"/api/captures/{capture_id}", params={"wait_s": 10}, **kw)
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        if body["status"] in ("done", "failed"):
            return body
        assert time.monotonic() < deadline, f"capture {capture_id} still {body['status']} after {timeout_s} s"


def sqlite_url(root: Path) -> str:
    return default_db_url(root)


@dataclass
class Service:
    root: Path
    server: ServerProcess
    users: dict[str, Account]

    @property
    def url(self) -> str:
        return self.server.url

    def client(self, user: str | None = None) -> httpx.Client:
        headers = self.users[user].auth if user else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=60.0, follow_redirects=False)
