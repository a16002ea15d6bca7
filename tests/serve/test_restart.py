"""Restarting the server loses no job: after a crash (SIGKILL) mid-job, and after a graceful stop (SIGTERM)."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import httpx
from serve_support import (
    ServerProcess,
    add_users,
    jpeg_bytes,
    sample_image,
    save_identity_model,
    sqlite_url,
    wait_status,
)


def _wait_running(client: httpx.Client, ids: list[str], *, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if any(client.get(f"/api/captures/{i}").json()["status"] == "running" for i in ids):
            return
        time.sleep(0.05)
    raise AssertionError("no job started running")


def _upload_all(client: httpx.Client, case_id: str, seeds: range) -> dict[str, str]:
    sent = {}
    for seed in seeds:
        data = jpeg_bytes(sample_image(240, 320, seed=seed))
        r = client.post(f"/api/cases/{case_id}/captures", files={"file": (f"{seed}.jpg", data, "image/jpeg")})
        assert r.status_code == 201, r.text
        sent[r.json()["captures"][0]["capture_id"]] = hashlib.sha256(data).hexdigest()
    return sent


def test_a_crash_and_a_graceful_restart_lose_no_upload_and_no_job(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    save_identity_model(root, "lung-identity")
    users = add_users(sqlite_url(root), [("admin", "admin", None), ("clinic", "clinic", "Alpha")])
    args = ["--lease-s", "2", "--workers", "1"]
    server = ServerProcess(root, args, log=tmp_path / "server.log").start()
    try:
        with httpx.Client(base_url=server.url, headers=users["admin"].auth, timeout=60) as admin:
            assert (
                admin.put("/api/admin/assignments/lung", json={"model": "lung-identity"}).status_code == 200
            )
        with httpx.Client(base_url=server.url, headers=users["clinic"].auth, timeout=60) as c:
            case_id = c.post("/api/cases", json={"ref": "R-1", "sample_type": "lung"}).json()["id"]
            sent = _upload_all(c, case_id, range(3))
            _wait_running(c, list(sent))
        server.kill()  # a crash in the middle of a job

        server = ServerProcess(root, args, log=tmp_path / "server.log").start()
        with httpx.Client(base_url=server.url, headers=users["clinic"].auth, timeout=60) as c:
            sent |= _upload_all(c, case_id, range(3, 5))
            _wait_running(c, list(sent))
            assert server.stop() == 0  # a graceful stop while a job runs
            server = ServerProcess(root, args, log=tmp_path / "server.log").start()
        with httpx.Client(base_url=server.url, headers=users["clinic"].auth, timeout=60) as c:
            results = {i: wait_status(c, i, timeout_s=120) for i in sent}
            listed = {cap["id"] for cap in c.get(f"/api/cases/{case_id}").json()["captures"]}
    finally:
        server.stop()
    assert listed == set(sent)
    assert {r["status"] for r in results.values()} == {"done"}, {i: r["error"] for i, r in results.items()}
    attempts = sorted(r["job"]["attempts"] for r in results.values())
    assert attempts[-1] == 2 and attempts.count(2) == 1, attempts  # only the job cut by the crash ran twice
    for capture_id, sha in sent.items():
        assert results[capture_id]["sha256"] == sha
        stored = root / "serve" / "objects" / sha[:2] / sha
        assert hashlib.sha256(stored.read_bytes()).hexdigest() == sha
    assert "given back to the queue" in server.log_text() or attempts.count(1) == len(sent) - 1
