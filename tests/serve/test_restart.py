"""Restarting the server loses no job: after a crash (SIGKILL) mid-job, and after a graceful stop (SIGTERM)."""

from __future__ import annotations

import hashlib
import sqlite3
import threading
import time
from pathlib import Path

import httpx
from serve_support import ServerProcess, add_users, jpeg_bytes, sample_image, save_identity_model, sqlite_url

from scopectl.serve.db import Database
from scopectl.serve.settings import ServeSettings
from scopectl.serve.worker import Worker


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


def _jobs(root: Path) -> list[tuple[str, str, int, str | None]]:
    db = sqlite3.connect(root / "serve" / "scopectl.sqlite3")
    try:
        return list(db.execute("SELECT capture_id, state, attempts, worker FROM jobs ORDER BY id"))
    finally:
        db.close()


def test_a_crash_and_a_graceful_stop_lose_no_upload_and_no_job(tmp_path: Path) -> None:
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
        cut = {capture for capture, state, _, _ in _jobs(root) if state == "running"}  # at most one

        server = ServerProcess(root, args, log=tmp_path / "server.log").start()
        with httpx.Client(base_url=server.url, headers=users["clinic"].auth, timeout=60) as c:
            sent |= _upload_all(c, case_id, range(3, 5))
            _wait_running(c, list(sent))
    finally:
        code = server.stop()  # a graceful stop while a job runs
    assert code == 0
    jobs = _jobs(root)
    assert {state for _, state, _, _ in jobs} <= {"queued", "done"}, (
        jobs
    )  # nothing left held by a stopped server
    assert {capture for capture, _, _, _ in jobs} == set(sent)  # every answered upload has its job

    # the queue goes on (a worker of the next start; here one in this process)
    settings = ServeSettings(root=root, db_url=sqlite_url(root), lease_s=2, poll_s=0.1)
    db = Database(settings.db_url)
    Worker(db, settings).run(threading.Event(), exit_when_idle=True)
    db.dispose()
    final = {capture: (state, attempts) for capture, state, attempts, _ in _jobs(root)}
    assert {state for state, _ in final.values()} == {"done"}, final
    assert all(attempts == (2 if capture in cut else 1) for capture, (_, attempts) in final.items()), (
        cut,
        final,
    )
    for sha in sent.values():
        stored = root / "serve" / "objects" / sha[:2] / sha
        assert hashlib.sha256(stored.read_bytes()).hexdigest() == sha
