"""The enhancement queue: jobs persisted in the database, claimed under a lease.

States::

    queued ──claim──▶ running ──▶ done
       ▲                 │  └───▶ failed (reason)
       └── lease ran out ┘        (also after ``max_attempts`` lost workers)

* :func:`enqueue` writes the job in the same transaction as its capture: an upload that was answered
  exists as a job.
* :func:`claim` takes the oldest queued job in one statement.  On PostgreSQL the candidate row is chosen
  with ``FOR UPDATE SKIP LOCKED``, so workers on several machines never take the same job and never wait on
  each other; on SQLite the statement holds the database's write lock.
* A running job carries a lease (database clock).  Its worker renews it (:func:`renew`); when a worker dies,
  :func:`requeue_expired` puts the job back, or fails it after ``max_attempts`` claims.
* :func:`finish` and :func:`fail` only change a job still leased to the calling worker, so a worker that lost
  its lease cannot overwrite the outcome of the one that took over.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, func, select, update
from sqlalchemy.engine import Connection

from scopectl.serve.db import captures, cases, db_epoch, jobs

__all__ = [
    "STATES",
    "Claimed",
    "claim",
    "enqueue",
    "fail",
    "finish",
    "queue_depth",
    "release",
    "renew",
    "requeue_expired",
]

STATES = ("queued", "running", "done", "failed")


@dataclass(frozen=True)
class Claimed:
    """A job this worker holds: which capture, of which case and sample type, and the attempt number."""

    job_id: int
    capture_id: str
    attempts: int
    sample_type: str
    case_pixel_size_um: float | None


def enqueue(conn: Connection, capture_id: str) -> int:
    """Queue an enhancement job for a capture; returns the job id."""
    result = conn.execute(
        jobs.insert().values(capture_id=capture_id, state="queued", attempts=0, created_at=time.time())
    )
    key = result.inserted_primary_key
    assert key is not None
    return int(key[0])


def claim(conn: Connection, *, worker: str, lease_s: float) -> Claimed | None:
    """Take the oldest queued job for ``worker`` (None when the queue is empty)."""
    pick = jobs.alias("pick")
    candidate = (
        select(pick.c.id)
        .where(pick.c.state == "queued")
        .order_by(pick.c.id)
        .limit(1)
        .with_for_update(skip_locked=True)
        .scalar_subquery()
    )
    row = conn.execute(
        update(jobs)
        .where(and_(jobs.c.id == candidate, jobs.c.state == "queued"))
        .values(
            state="running",
            worker=worker,
            attempts=jobs.c.attempts + 1,
            lease_until=db_epoch() + lease_s,
            started_at=time.time(),
            error=None,
        )
        .returning(jobs.c.id, jobs.c.capture_id, jobs.c.attempts)
    ).first()
    if row is None:
        return None
    info = conn.execute(
        select(cases.c.sample_type, cases.c.pixel_size_um)
        .select_from(captures.join(cases, captures.c.case_id == cases.c.id))
        .where(captures.c.id == row.capture_id)
    ).one()
    return Claimed(
        int(row.id), str(row.capture_id), int(row.attempts), str(info.sample_type), info.pixel_size_um
    )


def renew(conn: Connection, job_id: int, *, worker: str, lease_s: float) -> bool:
    """Extend the lease of a job this worker holds; False when it no longer holds it."""
    result = conn.execute(
        update(jobs)
        .where(and_(jobs.c.id == job_id, jobs.c.worker == worker, jobs.c.state == "running"))
        .values(lease_until=db_epoch() + lease_s)
    )
    return bool(result.rowcount)


def finish(conn: Connection, job_id: int, *, worker: str, outcome: dict[str, Any]) -> bool:
    """Mark a held job done with its outcome (model, device, sizes, seconds); False if the lease was lost."""
    result = conn.execute(
        update(jobs)
        .where(and_(jobs.c.id == job_id, jobs.c.worker == worker, jobs.c.state == "running"))
        .values(state="done", finished_at=time.time(), lease_until=None, error=None, **outcome)
    )
    return bool(result.rowcount)


def fail(
    conn: Connection, job_id: int, *, worker: str, reason: str, outcome: dict[str, Any] | None = None
) -> bool:
    """Mark a held job failed with a one-line reason; False if the lease was lost."""
    result = conn.execute(
        update(jobs)
        .where(and_(jobs.c.id == job_id, jobs.c.worker == worker, jobs.c.state == "running"))
        .values(
            state="failed", finished_at=time.time(), lease_until=None, error=reason[:2000], **(outcome or {})
        )
    )
    return bool(result.rowcount)


def release(conn: Connection, job_id: int, *, worker: str) -> bool:
    """Give a held job back to the queue unfinished (a worker shutting down); its attempt is not counted."""
    result = conn.execute(
        update(jobs)
        .where(and_(jobs.c.id == job_id, jobs.c.worker == worker, jobs.c.state == "running"))
        .values(state="queued", worker=None, lease_until=None, attempts=jobs.c.attempts - 1)
    )
    return bool(result.rowcount)


def requeue_expired(conn: Connection, *, max_attempts: int) -> tuple[int, int]:
    """Queue again the running jobs whose lease ran out; fail those that used ``max_attempts``.

    Returns ``(requeued, failed)``.
    """
    expired = and_(jobs.c.state == "running", jobs.c.lease_until < db_epoch())
    failed = conn.execute(
        update(jobs)
        .where(and_(expired, jobs.c.attempts >= max_attempts))
        .values(
            state="failed",
            finished_at=time.time(),
            lease_until=None,
            error=f"the worker stopped answering during each of {max_attempts} attempts (crash or out of memory?)",
        )
    ).rowcount
    requeued = conn.execute(
        update(jobs).where(expired).values(state="queued", worker=None, lease_until=None)
    ).rowcount
    return int(requeued or 0), int(failed or 0)


def queue_depth(conn: Connection) -> dict[str, int]:
    """How many jobs are in each state."""
    rows = conn.execute(select(jobs.c.state, func.count()).group_by(jobs.c.state)).all()
    counts = {state: 0 for state in STATES}
    counts.update({str(r[0]): int(r[1]) for r in rows})
    return counts
