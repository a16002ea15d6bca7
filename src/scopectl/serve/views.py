"""The JSON shapes of cases, captures and reports, shared by the API and the pages."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import and_, func, select
from sqlalchemy.engine import Connection, Row

from scopectl.serve.accounts import Principal
from scopectl.serve.db import captures, cases, clinics, jobs, reports, users

__all__ = ["capture_view", "case_list", "case_view", "iso", "latest_job", "latest_report"]


def iso(t: float | None) -> str | None:
    """Seconds since the epoch as an ISO 8601 UTC time."""
    return None if t is None else datetime.fromtimestamp(t, UTC).isoformat(timespec="seconds")


def latest_job(conn: Connection, capture_id: str) -> Row[Any] | None:
    return conn.execute(
        select(jobs).where(jobs.c.capture_id == capture_id).order_by(jobs.c.id.desc()).limit(1)
    ).first()


def capture_view(conn: Connection, row: Row[Any], *, job: Row[Any] | None = None) -> dict[str, Any]:
    """A capture, its latest job and the links to view and download it."""
    job = job if job is not None else latest_job(conn, str(row.id))
    base = f"/api/captures/{row.id}"
    status = "queued" if job is None else str(job.state)
    out: dict[str, Any] = {
        "id": row.id,
        "case_id": row.case_id,
        "display_name": row.display_name,
        "sha256": row.sha256,
        "bytes": row.bytes,
        "format": row.format,
        "rows": row.rows,
        "cols": row.cols,
        "pixel_size_um": row.pixel_size_um,
        "pixel_size_source": row.pixel_size_source,
        "uploaded_at": iso(row.uploaded_at),
        "status": status,
        "error": None if job is None else job.error,
        "job": None,
        "links": {
            "self": base,
            "page": f"/captures/{row.id}",
            "input_dzi": f"{base}/dzi/input.dzi",
            "input_download": f"{base}/input?format=ome-tiff",
            "input_original": f"{base}/input?format=original",
            "enhanced_dzi": None,
            "enhanced_download": None,
        },
    }
    if job is not None:
        out["job"] = {
            "id": job.id,
            "state": job.state,
            "attempts": job.attempts,
            "worker": job.worker,
            "created_at": iso(job.created_at),
            "started_at": iso(job.started_at),
            "finished_at": iso(job.finished_at),
            "model": job.model_name,
            "model_sha256": job.model_sha256,
            "model_checked": job.model_checked,
            "device": job.device,
            "precision": job.precision,
            "seconds": job.seconds,
            "input_pixel_size_um": job.in_pixel_size_um,
            "enhanced": None
            if job.state != "done"
            else {
                "rows": job.out_rows,
                "cols": job.out_cols,
                "pixel_size_um": job.out_pixel_size_um,
                "resampled": job.resampled,
            },
        }
        if job.state == "done":
            out["links"]["enhanced_dzi"] = f"{base}/dzi/job-{job.id}.dzi"
            out["links"]["enhanced_download"] = f"{base}/enhanced?format=ome-tiff"
    return out


def latest_report(conn: Connection, case_id: str) -> dict[str, Any] | None:
    row = conn.execute(
        select(reports, users.c.name.label("author"))
        .select_from(reports.join(users, reports.c.author_id == users.c.id))
        .where(reports.c.case_id == case_id)
        .order_by(reports.c.id.desc())
        .limit(1)
    ).first()
    if row is None:
        return None
    versions = conn.execute(
        select(func.count()).select_from(reports).where(reports.c.case_id == case_id)
    ).scalar_one()
    return {
        "text": row.text,
        "author": row.author,
        "written_at": iso(row.created_at),
        "versions": int(versions),
    }


def case_view(conn: Connection, row: Row[Any], *, with_captures: bool = True) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": row.id,
        "ref": row.ref,
        "clinic": row.clinic_name,
        "sample_type": row.sample_type,
        "note": row.note,
        "pixel_size_um": row.pixel_size_um,
        "created_at": iso(row.created_at),
        "links": {"self": f"/api/cases/{row.id}", "page": f"/cases/{row.id}"},
    }
    if with_captures:
        rows = conn.execute(
            select(captures)
            .where(captures.c.case_id == row.id)
            .order_by(captures.c.uploaded_at, captures.c.id)
        ).all()
        out["captures"] = [capture_view(conn, c) for c in rows]
        out["report"] = latest_report(conn, str(row.id))
    return out


def case_list(conn: Connection, principal: Principal, *, ref: str | None = None) -> list[dict[str, Any]]:
    """The cases a principal may see, newest first, with capture counts."""
    counts = select(captures.c.case_id, func.count().label("n")).group_by(captures.c.case_id).subquery()
    query = (
        select(cases, clinics.c.name.label("clinic_name"), func.coalesce(counts.c.n, 0).label("n_captures"))
        .select_from(
            cases.join(clinics, cases.c.clinic_id == clinics.c.id).outerjoin(
                counts, counts.c.case_id == cases.c.id
            )
        )
        .order_by(cases.c.created_at.desc())
    )
    if not principal.sees_all_clinics():
        query = query.where(cases.c.clinic_id == principal.clinic_id)
    if ref is not None:
        query = query.where(and_(cases.c.ref == ref))
    out = []
    for row in conn.execute(query).all():
        item = case_view(conn, row, with_captures=False)
        item["captures"] = int(row.n_captures)
        item["reported"] = latest_report(conn, str(row.id)) is not None
        out.append(item)
    return out
