"""The telepathology server under load, and its two speed targets (issue 20), on loopback.

Usage::

    python benchmarks/bench_serve.py [--clients 20] [--uploads 200] [--size 512] [--restart term|kill|none]
                                     [--target-repeats 5] [--skip-browser] [--out FILE]

1. **Upload to viewable, empty queue** (target ≤ 3 s on 2 CPU cores): one 1024×1024 JPEG at a time is
   uploaded; the clock starts when the upload's answer arrives and stops when the enhanced image's Deep Zoom
   descriptor and first tile have been fetched (status through ``?wait_s=`` long-polling).  Median of
   ``--target-repeats`` different images.
2. **First tile in the viewer** (target ≤ 300 ms): headless Chromium opens the capture page of an enhanced
   capture; the page records ``performance.now()`` (milliseconds since navigation started) when OpenSeadragon
   has loaded its first tile.  Median of the same number of page loads (a fresh browser profile, so the
   viewer's scripts are fetched the first time).
3. **Load test**: ``--clients`` threads upload ``--uploads`` JPEGs (``--size`` pixels square) at once, each
   client retrying on refused connections; the server is restarted once when half of the uploads have been
   answered (``term``: SIGTERM, a graceful stop; ``kill``: SIGKILL, a crash).  Every client polls its case;
   a capture is *viewable* when its status is ``done`` and its first enhanced tile has been fetched.  Reported:
   uploads lost (answered but missing afterwards), jobs not done, and p50/p95 of upload-to-viewable (which,
   with 200 uploads arriving together, is mostly time waiting in the queue).

The network is the paper's (229,197 parameters) with seeded random weights: its speed does not depend on the
weights.  Server, clients and browser share the machine's cores.  The result JSON goes to
``benchmarks/results/``.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import httpx
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import hardware, write_result

from scopectl.learn.modelio import ModelCard, QualityCheck, save_model
from scopectl.learn.network import build_network
from scopectl.serve.accounts import create_user
from scopectl.serve.db import Database, default_db_url

DEADLINE_S = 1800.0


def _jpeg(size: int, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    small = (rng.random((size // 8 + 2, size // 8 + 2, 3)) * 255).astype(np.uint8)
    img = cv2.resize(small, (size, size), interpolation=cv2.INTER_CUBIC)
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 90])
    assert ok
    return buf.tobytes()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    root: Path
    port: int
    log: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> float:
        """Start and wait until healthy; returns the seconds it took."""
        t0 = time.monotonic()
        handle = open(self.log, "ab")  # noqa: SIM115 - the child keeps it
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "scopectl.cli.main",
                "--root",
                str(self.root),
                "serve",
                "--port",
                str(self.port),
                "--max-megapixels",
                "10",
            ],
            stdout=handle,
            stderr=handle,
            stdin=subprocess.DEVNULL,
        )
        handle.close()
        while time.monotonic() - t0 < 120:
            try:
                if httpx.get(self.url + "/api/health", timeout=2).status_code == 200:
                    return time.monotonic() - t0
            except httpx.TransportError:
                pass
            if self.proc.poll() is not None:
                raise RuntimeError(self.log.read_text()[-2000:])
            time.sleep(0.05)
        raise RuntimeError("the server did not start within 120 s")

    def stop(self, how: str = "term") -> None:
        assert self.proc is not None
        if how == "kill":
            self.proc.kill()
        else:
            self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=120)


def _setup(root: Path) -> dict[str, str]:
    torch.manual_seed(0)
    card = ModelCard(
        name="bench",
        input_pixel_size_um=0.925,
        target_pixel_size_um=0.37,
        sample_type="lung",
        quality=QualityCheck(
            pairs=1,
            network_ssim=0.8,
            network_cie94=3.0,
            bicubic_ssim=0.7,
            bicubic_cie94=5.0,
            worse_than_bicubic=False,
        ),
        notes="benchmark: seeded random weights (speed does not depend on them)",
    )
    save_model(root / "models" / "bench", build_network((5, 2)), card)
    db = Database(default_db_url(root))
    db.migrate()
    with db.begin() as conn:
        admin = create_user(conn, "admin", role="admin", clinic=None)
        clinic = create_user(conn, "clinic", role="clinic", clinic="Bench")
        expert = create_user(conn, "expert", role="expert", clinic=None)
    db.dispose()
    return {
        "admin": admin.token,
        "clinic": clinic.token,
        "expert": expert.token,
        "expert_password": expert.password,
    }


def _viewable(client: httpx.Client, capture: dict[str, Any]) -> None:
    dzi = capture["links"]["enhanced_dzi"]
    assert client.get(dzi).status_code == 200
    assert client.get(dzi.replace(".dzi", "_files/0/0_0.jpeg")).status_code == 200


def target_upload_to_viewable(url: str, token: str, case_id: str, repeats: int) -> dict[str, Any]:
    times = []
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=120) as c:
        for i in range(repeats + 1):  # the first one loads the model: not counted
            data = _jpeg(1024, 10_000 + i)
            r = c.post(f"/api/cases/{case_id}/captures", files={"file": (f"t{i}.jpg", data, "image/jpeg")})
            t0 = time.perf_counter()
            capture_id = r.json()["captures"][0]["capture_id"]
            while True:
                cap = c.get(f"/api/captures/{capture_id}", params={"wait_s": 30}).json()
                if cap["status"] in ("done", "failed"):
                    break
            assert cap["status"] == "done", cap["error"]
            _viewable(c, cap)
            if i:
                times.append(time.perf_counter() - t0)
            last = capture_id
    return {
        "median_s": statistics.median(times),
        "min_s": min(times),
        "max_s": max(times),
        "repeats": repeats,
        "job_seconds_last": cap["job"]["seconds"],
        "capture": last,
    }


def target_first_tile(url: str, password: str, capture_id: str, repeats: int) -> dict[str, Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service as DriverService
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from scopectl.capabilities import CHROMIUM_FLAGS

    options = Options()
    options.binary_location = "/usr/bin/chromium"
    for flag in (*CHROMIUM_FLAGS, "--window-size=1280,900"):
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tempfile.mkdtemp(prefix='bench-chromium-')}")
    driver = webdriver.Chrome(service=DriverService("/usr/bin/chromedriver"), options=options)
    times, drawn = [], []
    try:
        driver.get(url + "/login")
        driver.find_element(By.ID, "username").send_keys("expert")
        driver.find_element(By.ID, "password").send_keys(password)
        driver.find_element(By.ID, "login").click()
        WebDriverWait(driver, 30).until(lambda d: d.current_url.endswith("/account/password"))
        for name, value in (
            ("current_password", password),
            ("new_password", "bench-password-1"),
            ("new_password_again", "bench-password-1"),
        ):
            driver.find_element(By.ID, name).send_keys(value)
        driver.find_element(By.ID, "save-password").click()
        WebDriverWait(driver, 30).until(lambda d: d.current_url.endswith("/cases"))
        for _ in range(repeats + 1):
            driver.get(f"{url}/captures/{capture_id}")
            WebDriverWait(driver, 30, poll_frequency=0.05).until(
                lambda d: d.execute_script(
                    "return window.scopectlTiming && window.scopectlTiming.firstTileDrawnMs"
                )
            )
            timing = driver.execute_script("return window.scopectlTiming")
            times.append(float(timing["firstTileMs"]))
            drawn.append(float(timing["firstTileDrawnMs"]))
    finally:
        driver.quit()
    return {
        "first_load_ms": times[0],
        "median_ms": statistics.median(times[1:]),
        "max_ms": max(times[1:]),
        "median_drawn_ms": statistics.median(drawn[1:]),
        "repeats": repeats,
        "note": "performance.now() at OpenSeadragon's first tile-loaded event (drawn: the next animation frame); "
        "first_load_ms is the first visit (scripts not yet cached), the median is over the visits after it",
    }


@dataclass
class Client:
    index: int
    url_holder: list[str]
    token: str
    case_id: str
    files: list[tuple[str, bytes]]
    uploaded: dict[str, float] = field(default_factory=dict)  # capture id -> when its upload was answered
    viewable: dict[str, float] = field(default_factory=dict)
    retries: int = 0
    errors: list[str] = field(default_factory=list)

    def _request(self, c: httpx.Client, method: str, path: str, **kw: Any) -> httpx.Response:
        deadline = time.monotonic() + 300
        while True:
            try:
                r = c.request(method, self.url_holder[0] + path, **kw)
                if r.status_code < 500:
                    return r
            except httpx.TransportError:
                pass
            self.retries += 1
            if time.monotonic() > deadline:
                raise RuntimeError(f"client {self.index}: {method} {path} failed for 300 s")
            time.sleep(0.2)

    def run(self, acknowledged: threading.Semaphore) -> None:
        with httpx.Client(headers={"Authorization": f"Bearer {self.token}"}, timeout=60) as c:
            for name, data in self.files:
                r = self._request(
                    c,
                    "POST",
                    f"/api/cases/{self.case_id}/captures",
                    files={"file": (name, data, "image/jpeg")},
                )
                if r.status_code not in (200, 201):
                    self.errors.append(f"{name}: {r.status_code} {r.text[:200]}")
                    continue
                self.uploaded.setdefault(r.json()["captures"][0]["capture_id"], time.perf_counter())
                acknowledged.release()
            deadline = time.monotonic() + DEADLINE_S
            while len(self.viewable) < len(self.uploaded) and time.monotonic() < deadline:
                case = self._request(c, "GET", f"/api/cases/{self.case_id}").json()
                for cap in case["captures"]:
                    if (
                        cap["id"] in self.uploaded
                        and cap["id"] not in self.viewable
                        and cap["status"] == "done"
                    ):
                        dzi = cap["links"]["enhanced_dzi"]
                        self._request(c, "GET", dzi)
                        self._request(c, "GET", dzi.replace(".dzi", "_files/0/0_0.jpeg"))
                        self.viewable[cap["id"]] = time.perf_counter()
                    elif cap["status"] == "failed":
                        self.errors.append(f"{cap['id']}: failed: {cap['error']}")
                        self.viewable[cap["id"]] = float("nan")
                time.sleep(0.5)


def load_test(
    server: Server, tokens: dict[str, str], *, clients: int, uploads: int, size: int, restart: str
) -> dict[str, Any]:
    url_holder = [server.url]
    case_ids = []
    with httpx.Client(
        base_url=server.url, headers={"Authorization": f"Bearer {tokens['clinic']}"}, timeout=60
    ) as c:
        for i in range(clients):
            case_ids.append(
                c.post("/api/cases", json={"ref": f"LOAD-{i}", "sample_type": "lung"}).json()["id"]
            )
    per = [uploads // clients + (1 if i < uploads % clients else 0) for i in range(clients)]
    seed = 0
    workers = []
    sent_hashes = set()
    for i in range(clients):
        files = []
        for _ in range(per[i]):
            data = _jpeg(size, seed)
            sent_hashes.add(hashlib.sha256(data).hexdigest())
            files.append((f"load-{seed}.jpg", data))
            seed += 1
        workers.append(Client(i, url_holder, tokens["clinic"], case_ids[i], files))
    acknowledged = threading.Semaphore(0)
    threads = [threading.Thread(target=w.run, args=(acknowledged,)) for w in workers]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    restart_info: dict[str, Any] = {"how": restart}
    if restart != "none":
        for _ in range(uploads // 2):
            acknowledged.acquire(timeout=DEADLINE_S)
        t_stop = time.perf_counter()
        restart_info["at_uploads_answered"] = uploads // 2
        restart_info["at_s"] = t_stop - t0
        server.stop(restart)
        restart_info["stop_s"] = time.perf_counter() - t_stop
        restart_info["start_s"] = server.start()
        restart_info["downtime_s"] = time.perf_counter() - t_stop
    for t in threads:
        t.join(timeout=DEADLINE_S)
    wall = time.perf_counter() - t0
    latencies = sorted(
        w.viewable[k] - w.uploaded[k] for w in workers for k in w.viewable if not np.isnan(w.viewable[k])
    )
    answered = {k for w in workers for k in w.uploaded}
    with httpx.Client(
        base_url=server.url, headers={"Authorization": f"Bearer {tokens['clinic']}"}, timeout=60
    ) as c:
        stored = {}
        for case_id in case_ids:
            for cap in c.get(f"/api/cases/{case_id}").json()["captures"]:
                stored[cap["id"]] = cap
        attempts = [cap["job"]["attempts"] for cap in stored.values() if cap["job"]]
    return {
        "clients": clients,
        "uploads": uploads,
        "image_size": size,
        "answered": len(answered),
        "lost": len(answered - set(stored)),
        "stored": len(stored),
        "stored_hashes_match": {cap["sha256"] for cap in stored.values()} == sent_hashes,
        "done": sum(cap["status"] == "done" for cap in stored.values()),
        "failed": sum(cap["status"] == "failed" for cap in stored.values()),
        "jobs_run_twice": sum(a > 1 for a in attempts),
        "client_retries": sum(w.retries for w in workers),
        "client_errors": [e for w in workers for e in w.errors][:10],
        "upload_to_viewable_s": {
            "p50": float(np.percentile(latencies, 50)) if latencies else None,
            "p95": float(np.percentile(latencies, 95)) if latencies else None,
            "max": max(latencies) if latencies else None,
            "n": len(latencies),
        },
        "wall_s": wall,
        "throughput_per_min": 60 * len(latencies) / wall,
        "restart": restart_info,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--uploads", type=int, default=200)
    parser.add_argument("--size", type=int, default=512, help="side of the load test's JPEGs in pixels")
    parser.add_argument("--restart", choices=("term", "kill", "none"), default="term")
    parser.add_argument("--target-repeats", type=int, default=5)
    parser.add_argument("--skip-browser", action="store_true")
    parser.add_argument("--skip-load", action="store_true")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    result: dict[str, Any] = {
        "benchmark": "serve",
        "hardware": hardware(),
        "args": vars(args) | {"out": str(args.out)},
    }
    with tempfile.TemporaryDirectory(prefix="bench-serve-") as tmp:
        root = Path(tmp) / "root"
        root.mkdir()
        tokens = _setup(root)
        server = Server(root, _free_port(), Path(tmp) / "server.log")
        result["server_start_s"] = server.start()
        try:
            with httpx.Client(
                base_url=server.url, headers={"Authorization": f"Bearer {tokens['admin']}"}
            ) as admin:
                admin.put("/api/admin/assignments/*", json={"model": "bench"}).raise_for_status()
            with httpx.Client(
                base_url=server.url, headers={"Authorization": f"Bearer {tokens['clinic']}"}
            ) as c:
                case_id = c.post("/api/cases", json={"ref": "TARGETS", "sample_type": "lung"}).json()["id"]
            upload = target_upload_to_viewable(server.url, tokens["clinic"], case_id, args.target_repeats)
            result["target_upload_to_viewable_1024"] = upload | {
                "target_s": 3.0,
                "met": upload["median_s"] <= 3.0,
            }
            print(f"1024² upload to viewable: median {upload['median_s']:.2f} s (target 3 s)", flush=True)
            if not args.skip_browser:
                tile = target_first_tile(
                    server.url, tokens["expert_password"], upload["capture"], args.target_repeats
                )
                result["target_first_tile"] = tile | {"target_ms": 300.0, "met": tile["median_ms"] <= 300.0}
                print(f"first tile: median {tile['median_ms']:.0f} ms (target 300 ms)", flush=True)
            if not args.skip_load:
                load = load_test(
                    server,
                    tokens,
                    clients=args.clients,
                    uploads=args.uploads,
                    size=args.size,
                    restart=args.restart,
                )
                result["load"] = load
                lat = load["upload_to_viewable_s"]
                print(
                    f"load: {load['answered']} answered, {load['lost']} lost, {load['done']} done, "
                    f"p50 {lat['p50']:.1f} s, p95 {lat['p95']:.1f} s, restart downtime "
                    f"{load['restart'].get('downtime_s', 0):.1f} s",
                    flush=True,
                )
        finally:
            server.stop("term")
            result["server_log_tail"] = server.log.read_text(errors="replace")[-2000:]
    path = write_result("serve", result, args.out)
    print(path)
    lost = result.get("load", {}).get("lost", 0)
    return 0 if not lost else 1


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
