"""The service on PostgreSQL: the API server without workers, and two ``scopectl worker`` processes sharing the
queue (``FOR UPDATE SKIP LOCKED``) and the data root, against a throwaway PostgreSQL server."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from serve_support import ServerProcess, add_users, jpeg_bytes, sample_image, save_identity_model, wait_status

from scopectl.pgcluster import ThrowawayPostgres
from scopectl.serve.db import Database, metadata

pytestmark = pytest.mark.external("postgresql")


@pytest.fixture(scope="module")
def postgres() -> Iterator[ThrowawayPostgres]:
    with ThrowawayPostgres() as pg:
        yield pg


def _worker(root: Path, url: str, log: Path) -> subprocess.Popen[bytes]:
    handle = open(log, "wb")  # noqa: SIM115 - the child keeps it
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "scopectl.cli.main",
            "--root",
            str(root),
            "worker",
            "--db",
            url,
            "--poll-s",
            "0.1",
            "--json",
        ],
        stdout=handle,
        stderr=handle,
        stdin=subprocess.DEVNULL,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    handle.close()
    return proc


def test_the_api_and_two_workers_share_a_postgresql_queue(
    postgres: ThrowawayPostgres, tmp_path: Path
) -> None:
    url = postgres.create_database("scopectl_serve")
    root = tmp_path / "root"
    root.mkdir()
    save_identity_model(root, "lung-identity")
    users = add_users(url, [("admin", "admin", None), ("clinic", "clinic", "Alpha")])  # migrates
    db = Database(url)
    with db.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), metadata) == []
    server = ServerProcess(root, ["--db", url, "--workers", "0"], log=tmp_path / "server.log").start()
    workers = [_worker(root, url, tmp_path / f"worker-{i}.log") for i in (1, 2)]
    try:
        with httpx.Client(base_url=server.url, headers=users["admin"].auth, timeout=60) as admin:
            assert admin.get("/api/health").json()["database"] == "postgresql"
            assert (
                admin.put("/api/admin/assignments/lung", json={"model": "lung-identity"}).status_code == 200
            )
            deadline = time.monotonic() + 90
            while len(admin.get("/api/admin/workers").json()) < 2:  # both workers are up and polling
                assert time.monotonic() < deadline, "the workers did not register"
                assert all(w.poll() is None for w in workers), (tmp_path / "worker-1.log").read_text()
                time.sleep(0.2)
        with httpx.Client(base_url=server.url, headers=users["clinic"].auth, timeout=60) as c:
            case_id = c.post("/api/cases", json={"ref": "PG-1", "sample_type": "lung"}).json()["id"]
            files = [
                ("file", (f"{s}.jpg", jpeg_bytes(sample_image(160, 200, seed=s)), "image/jpeg"))
                for s in range(10)
            ]
            r = c.post(f"/api/cases/{case_id}/captures", files=files)
            assert r.status_code == 201, r.text
            ids = [item["capture_id"] for item in r.json()["captures"]]
            results = [wait_status(c, i, timeout_s=120) for i in ids]
            tile = c.get(f"/api/captures/{ids[0]}/dzi/job-{results[0]['job']['id']}_files/0/0_0.jpeg")
            assert tile.status_code == 200
    finally:
        for w in workers:
            w.send_signal(signal.SIGTERM)
        codes = [w.wait(timeout=60) for w in workers]
        server.stop()
        db.dispose()
    assert [r["status"] for r in results] == ["done"] * 10, [r["error"] for r in results]
    assert all(r["job"]["attempts"] == 1 for r in results)  # no job was taken twice
    by_worker = {r["job"]["worker"] for r in results}
    assert len(by_worker) == 2, f"one worker did every job: {by_worker}"
    assert codes == [0, 0]
    done = [
        json.loads((tmp_path / f"worker-{i}.log").read_text().strip().splitlines()[-1])["jobs"]
        for i in (1, 2)
    ]
    assert sum(done) == 10 and min(done) >= 1
