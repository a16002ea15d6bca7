"""The persisted queue and the migrations, on a real SQLite database (PostgreSQL: test_postgres.py)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import select, update

from scopectl.errors import ConfigError
from scopectl.serve import queue
from scopectl.serve.accounts import create_user
from scopectl.serve.db import Database, captures, cases, jobs, metadata


def _db_with_jobs(tmp_path: Path, n: int) -> tuple[Database, list[int]]:
    db = Database(f"sqlite:///{tmp_path / 'q.sqlite3'}")
    db.migrate()
    ids = []
    with db.begin() as conn:
        user = create_user(conn, "clinic-q", role="clinic", clinic="Q")
        conn.execute(
            cases.insert().values(
                id="c" * 16,
                clinic_id=1,
                ref="Q-1",
                sample_type="lung",
                note="",
                created_by=user.user_id,
                created_at=0.0,
            )
        )
        for i in range(n):
            capture_id = f"{i:016x}"
            conn.execute(
                captures.insert().values(
                    id=capture_id,
                    case_id="c" * 16,
                    sha256=f"{i:064x}",
                    bytes=1,
                    format="jpeg",
                    rows=1,
                    cols=1,
                    pixel_size_um=None,
                    pixel_size_source="unknown",
                    display_name="x",
                    uploaded_by=user.user_id,
                    uploaded_at=0.0,
                )
            )
            ids.append(queue.enqueue(conn, capture_id))
    return db, ids


def test_the_migrations_build_exactly_the_tables_the_code_uses(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'm.sqlite3'}")
    with pytest.raises(ConfigError, match="schema revision none"):
        db.require_current()
    assert db.migrate() == "0001"
    assert db.migrate() == "0001"  # idempotent
    db.require_current()
    with db.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), metadata) == []
    db.dispose()


def test_jobs_move_queued_running_done_or_failed_and_only_their_worker_may_finish_them(
    tmp_path: Path,
) -> None:
    db, ids = _db_with_jobs(tmp_path, 3)
    with db.begin() as conn:
        a = queue.claim(conn, worker="w1", lease_s=30)
        b = queue.claim(conn, worker="w2", lease_s=30)
    assert a is not None and b is not None and (a.job_id, b.job_id) == (ids[0], ids[1])
    assert a.sample_type == "lung" and a.attempts == 1
    with db.begin() as conn:
        assert not queue.finish(conn, a.job_id, worker="w2", outcome={})  # not w2's job
        assert queue.finish(conn, a.job_id, worker="w1", outcome={"model_name": "m", "seconds": 1.5})
        assert queue.fail(conn, b.job_id, worker="w2", reason="bad input")
        assert queue.queue_depth(conn) == {"queued": 1, "running": 0, "done": 1, "failed": 1}
        rows = {r.id: r for r in conn.execute(select(jobs))}
    assert (
        rows[a.job_id].state == "done"
        and rows[a.job_id].model_name == "m"
        and rows[a.job_id].lease_until is None
    )
    assert rows[b.job_id].state == "failed" and rows[b.job_id].error == "bad input"
    with db.begin() as conn:
        c = queue.claim(conn, worker="w1", lease_s=30)
        assert c is not None and queue.release(conn, c.job_id, worker="w1")  # a worker shutting down
        again = queue.claim(conn, worker="w3", lease_s=30)
        assert again is not None and again.job_id == c.job_id and again.attempts == 1
        assert queue.claim(conn, worker="w1", lease_s=30) is None
    db.dispose()


def test_a_job_whose_worker_died_is_queued_again_then_failed_after_the_last_attempt(tmp_path: Path) -> None:
    db, ids = _db_with_jobs(tmp_path, 1)
    for attempt in (1, 2, 3):
        with db.begin() as conn:
            held = queue.claim(conn, worker=f"dead-{attempt}", lease_s=30)
            assert held is not None and held.attempts == attempt
            assert queue.requeue_expired(conn, max_attempts=3) == (0, 0)  # lease still valid
            assert queue.renew(conn, held.job_id, worker=f"dead-{attempt}", lease_s=30)
            conn.execute(update(jobs).values(lease_until=0.0))  # the worker stopped renewing long ago
            assert not queue.renew(conn, held.job_id, worker="someone-else", lease_s=30)
            expected = (1, 0) if attempt < 3 else (0, 1)
            assert queue.requeue_expired(conn, max_attempts=3) == expected
            # the dead worker cannot report a result for a job it lost
            assert not queue.finish(conn, held.job_id, worker=f"dead-{attempt}", outcome={})
    with db.connect() as conn:
        row = conn.execute(select(jobs).where(jobs.c.id == ids[0])).one()
    assert row.state == "failed" and "each of 3 attempts" in row.error
    db.dispose()


def test_concurrent_workers_never_take_the_same_job(tmp_path: Path) -> None:
    db, ids = _db_with_jobs(tmp_path, 40)
    taken: list[int] = []
    lock = threading.Lock()

    def work(name: str) -> None:
        while True:
            with db.begin() as conn:
                job = queue.claim(conn, worker=name, lease_s=30)
            if job is None:
                return
            with lock:
                taken.append(job.job_id)
            time.sleep(0.001)

    threads = [threading.Thread(target=work, args=(f"w{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sorted(taken) == ids
    db.dispose()
