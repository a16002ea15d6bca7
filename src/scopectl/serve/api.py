"""The HTTP API (``/api/...``), used by the viewer's pages, ``scopectl upload`` and scripts.

Authentication: the session cookie of a browser login (changes then need the ``X-CSRF-Token`` header), or an
API token (``Authorization: Bearer sct_...``).  Errors are JSON ``{"detail": "one line"}`` with the status:
400 malformed, 401 not logged in, 403 not allowed (role, CSRF, one-time password), 404 no such object *or
another clinic's*, 409 conflict, 413 too large, 415 wrong type, 422 refused content, 429 throttled.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, JSONResponse
from sqlalchemy import and_, delete, func, select
from sqlalchemy.exc import IntegrityError

from scopectl import __version__
from scopectl.errors import ConfigError
from scopectl.imageio import read_image
from scopectl.serve import accounts, queue
from scopectl.serve.accounts import Principal
from scopectl.serve.db import (
    audit,
    cases,
    clinics,
    db_epoch,
    jobs,
    model_assignments,
    reports,
    users,
    workers,
)
from scopectl.serve.deps import (
    CSRF_FIELD,
    SESSION_COOKIE,
    ApiError,
    ServiceState,
    check_csrf,
    client_ip,
    load_capture,
    load_case,
    require_role,
    require_user,
    state_of,
)
from scopectl.serve.models import card_summary, check_assignable, list_models, model_status
from scopectl.serve.multipart import UploadRejected, receive_multipart
from scopectl.serve.schemas import (
    AssignmentIn,
    CaptureOut,
    CaseDetailOut,
    CaseIn,
    CaseOut,
    HealthOut,
    LoginIn,
    MeOut,
    ModelOut,
    NewUserOut,
    PasswordIn,
    ReportIn,
    ReportOut,
    UploadOut,
    UserIn,
)
from scopectl.serve.security import new_id
from scopectl.serve.tiles import dzi_xml
from scopectl.serve.uploads import parse_pixel_size, store_capture, validate_upload
from scopectl.serve.views import capture_view, case_list, case_view, iso, latest_job, latest_report
from scopectl.writers import write_image

__all__ = ["router"]

router = APIRouter(prefix="/api")

User = Annotated[Principal, Depends(require_user)]


def _user_allowing_password_change(request: Request) -> Principal:
    return require_user(request, allow_password_change=True)


AnyUser = Annotated[Principal, Depends(_user_allowing_password_change)]
State = Annotated[ServiceState, Depends(state_of)]


def set_session_cookie(response: Response, request: Request, state: ServiceState, session_id: str) -> None:
    """The session cookie: HttpOnly, SameSite=Lax, Secure on HTTPS (or when told so)."""
    response.set_cookie(
        SESSION_COOKIE,
        session_id,
        max_age=int(state.settings.session_ttl_s),
        httponly=True,
        samesite="lax",
        secure=state.settings.secure_cookies or request.url.scheme == "https",
        path="/",
    )


# ------------------------------------------------------------------------------------------------ health
@router.get("/health", response_model=HealthOut, tags=["service"])
def health(state: State) -> dict[str, Any]:
    """Liveness and readiness: the database answers; the queue's depth; workers seen in the last minute."""
    with state.db.connect() as conn:
        depth = queue.queue_depth(conn)
        alive = conn.execute(
            select(func.count()).select_from(workers).where(workers.c.last_seen > db_epoch() - 60.0)
        ).scalar_one()
    return {
        "status": "ok",
        "version": __version__,
        "database": state.db.dialect,
        "schema_revision": state.db.revision(),
        "queue": depth,
        "workers_alive": int(alive),
    }


# -------------------------------------------------------------------------------------------------- auth
def login(state: ServiceState, request: Request, name: str, password: str) -> tuple[int, str, str]:
    """Check a login against the throttle and the password; returns ``(user id, session id, csrf)``.

    Raises
    ------
    ApiError
        429 with ``Retry-After`` while throttled, 401 for wrong credentials.
    """
    ip = client_ip(request)
    settings = state.settings
    name = name.strip().lower()
    with state.db.begin() as conn:
        wait = accounts.login_blocked(
            conn,
            name=name,
            ip=ip,
            window_s=settings.login_window_s,
            per_user=settings.login_failures_per_user,
            per_ip=settings.login_failures_per_ip,
        )
        if wait > 0:
            accounts.record_audit(
                conn, None, "login-throttled", object_type="user", object_id=name[:64], ip=ip, username=name
            )
            raise ApiError(
                429,
                f"too many failed logins; try again in {int(wait) + 1} s.",
                headers={"Retry-After": str(int(wait) + 1)},
            )
        user_id = accounts.check_credentials(conn, name, password)
        accounts.record_login(conn, name=name, ip=ip, ok=user_id is not None)
        if user_id is None:
            accounts.record_audit(
                conn, None, "login-failed", object_type="user", object_id=name[:64], ip=ip, username=name
            )
    if user_id is None:
        raise ApiError(401, "wrong user name or password.")
    with state.db.begin() as conn:
        session_id, csrf = accounts.start_session(conn, user_id, ttl_s=settings.session_ttl_s)
        accounts.record_audit(conn, None, "login", object_type="user", object_id=name, ip=ip, username=name)
    return user_id, session_id, csrf


@router.post("/auth/login", response_model=MeOut, tags=["auth"])
def api_login(body: LoginIn, request: Request, response: Response, state: State) -> dict[str, Any]:
    """Log in with a JSON body; sets the session cookie and returns the CSRF token for later changes.

    Only ``application/json`` is accepted, which a cross-site form cannot send: a login cannot be forged.
    """
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
        raise ApiError(415, "send the login as application/json.")
    _, session_id, csrf = login(state, request, body.username, body.password)
    set_session_cookie(response, request, state, session_id)
    with state.db.connect() as conn:
        principal = accounts.principal_from_session(conn, session_id, now=time.time())
    assert principal is not None
    return _me(principal) | {"csrf_token": csrf}


@router.post("/auth/logout", status_code=204, tags=["auth"])
def api_logout(request: Request, principal: AnyUser, state: State) -> Response:
    """End the browser session (CSRF token required)."""
    check_csrf(request, principal)
    if principal.session_hash:
        with state.db.begin() as conn:
            accounts.end_session(conn, principal.session_hash)
    response = Response(status_code=204)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@router.post("/auth/password", status_code=204, tags=["auth"])
def api_password(body: PasswordIn, request: Request, principal: AnyUser, state: State) -> Response:
    """Replace the (one-time) password; other sessions of the user end."""
    check_csrf(request, principal)
    try:
        with state.db.begin() as conn:
            accounts.change_password(conn, principal, old=body.current_password, new=body.new_password)
            accounts.record_audit(
                conn,
                principal,
                "password",
                object_type="user",
                object_id=principal.name,
                ip=client_ip(request),
            )
    except ConfigError as exc:
        raise ApiError(422, exc.one_line()) from None
    return Response(status_code=204)


def _me(principal: Principal) -> dict[str, Any]:
    return {
        "name": principal.name,
        "role": principal.role,
        "clinic": principal.clinic,
        "via": principal.via,
        "csrf_token": principal.csrf_token,
        "must_change_password": principal.must_change_password,
    }


@router.get("/me", response_model=MeOut, tags=["auth"])
def me(principal: AnyUser) -> dict[str, Any]:
    """Who you are, and the CSRF token of your session."""
    return _me(principal)


# ------------------------------------------------------------------------------------------------- cases
@router.get("/cases", response_model=list[CaseOut], tags=["cases"])
def list_cases(
    principal: User, state: State, ref: Annotated[str | None, Query(max_length=64)] = None
) -> list[dict[str, Any]]:
    """The cases you may see (your clinic's; every clinic's for experts and admins), newest first."""
    with state.db.connect() as conn:
        return case_list(conn, principal, ref=ref)


@router.post("/cases", response_model=CaseDetailOut, status_code=201, tags=["cases"])
def create_case(body: CaseIn, request: Request, principal: User, state: State) -> dict[str, Any]:
    """Create a case in your clinic (admins name the clinic)."""
    require_role(principal, "clinic", "admin")
    check_csrf(request, principal)
    return create_case_for(state, request, principal, body)


def create_case_for(
    state: ServiceState, request: Request, principal: Principal, body: CaseIn
) -> dict[str, Any]:
    case_id = new_id()
    with state.db.connect() as conn:
        if principal.role == "admin":
            if not body.clinic:
                raise ApiError(422, "an admin creating a case names its clinic.")
            row = conn.execute(select(clinics.c.id).where(clinics.c.name == body.clinic)).first()
            if row is None:
                raise ApiError(422, f"no clinic {body.clinic!r}.")
            clinic_id = int(row.id)
        else:
            if body.clinic and body.clinic != principal.clinic:
                raise ApiError(403, "clinic users create cases in their own clinic only.")
            assert principal.clinic_id is not None
            clinic_id = principal.clinic_id
    try:
        with state.db.begin() as conn:
            conn.execute(
                cases.insert().values(
                    id=case_id,
                    clinic_id=clinic_id,
                    ref=body.ref,
                    sample_type=body.sample_type,
                    note=body.note,
                    pixel_size_um=body.pixel_size_um,
                    created_by=principal.user_id,
                    created_at=time.time(),
                )
            )
            accounts.record_audit(
                conn,
                principal,
                "create-case",
                object_type="case",
                object_id=case_id,
                detail=body.ref,
                ip=client_ip(request),
            )
    except IntegrityError:
        raise ApiError(409, f"the clinic already has a case {body.ref!r}.") from None
    with state.db.connect() as conn:
        return case_view(conn, load_case(conn, principal, case_id))


@router.get("/cases/{case_id}", response_model=CaseDetailOut, tags=["cases"])
def get_case(case_id: str, request: Request, principal: User, state: State) -> dict[str, Any]:
    """A case with its captures (and their status) and its latest report."""
    with state.db.begin() as conn:
        row = load_case(conn, principal, case_id)
        accounts.record_audit(
            conn, principal, "view", object_type="case", object_id=case_id, ip=client_ip(request)
        )
        return case_view(conn, row)


# ---------------------------------------------------------------------------------------------- uploads
async def receive_captures(
    request: Request, state: ServiceState, principal: Principal, case_id: str, *, csrf_from_form: bool
) -> list[Any]:
    """Receive, check and store the files of a multipart request; queue their jobs.  Returns ``Stored`` items."""
    settings = state.settings
    case = await run_in_threadpool(_load_case_for_upload, state, principal, case_id)
    length = request.headers.get("content-length")
    budget = settings.max_upload_bytes * settings.max_files_per_request + 1024**2
    if length is not None and length.isdigit() and int(length) > budget:
        raise ApiError(413, f"the request is larger than the limit of {budget:,} bytes.")
    try:
        received = await receive_multipart(
            request.headers.get("content-type", ""),
            request.stream(),
            incoming=state.files.incoming,
            max_file_bytes=settings.max_upload_bytes,
            max_files=settings.max_files_per_request,
        )
    except UploadRejected as exc:
        raise ApiError(exc.status, exc.message) from None
    try:
        if principal.via == "session":
            token = received.fields.get(CSRF_FIELD) if csrf_from_form else None
            if token is None:
                token = request.headers.get("x-csrf-token")
            check_csrf(request, principal, token)
        if not received.files:
            raise ApiError(400, "the request has no file; send one or more as multipart/form-data.")
        form_px = parse_pixel_size(received.fields.get("pixel_size_um"), what="pixel_size_um")
        stored = await run_in_threadpool(
            _validate_and_store, state, received.files, case, principal, form_px, client_ip(request)
        )
    except UploadRejected as exc:
        raise ApiError(exc.status, exc.message) from None
    finally:
        received.cleanup()
    state.wake.set()
    return stored


def _load_case_for_upload(state: ServiceState, principal: Principal, case_id: str) -> Any:
    require_role(principal, "clinic", "admin")
    with state.db.connect() as conn:
        return load_case(conn, principal, case_id)


def _validate_and_store(
    state: ServiceState, parts: list[Any], case: Any, principal: Principal, form_px: float | None, ip: str
) -> list[Any]:
    checked = [
        validate_upload(
            part,
            max_pixels=state.settings.max_pixels,
            form_pixel_size_um=form_px,
            case_pixel_size_um=case.pixel_size_um,
        )
        for part in parts
    ]
    stored = []
    for validated, image in checked:
        item = store_capture(
            state.db, state.files, validated, image, case_id=str(case.id), user_id=principal.user_id
        )
        stored.append(item)
        with state.db.begin() as conn:
            accounts.record_audit(
                conn,
                principal,
                "upload",
                object_type="capture",
                object_id=item.capture_id,
                detail=f"{item.display_name} sha256={item.sha256}{' (duplicate)' if item.duplicate else ''}",
                ip=ip,
            )
    return stored


@router.post(
    "/cases/{case_id}/captures",
    response_model=UploadOut,
    status_code=201,
    tags=["captures"],
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "properties": {
                            "file": {"type": "array", "items": {"type": "string", "format": "binary"}},
                            "pixel_size_um": {"type": "number", "minimum": 0.05, "maximum": 20},
                        },
                        "required": ["file"],
                    }
                }
            },
        }
    },
)
async def upload_captures(case_id: str, request: Request, principal: User, state: State) -> JSONResponse:
    """Upload one or more captures (multipart, any field name for the files; DNG, JPEG, PNG or TIFF).

    Each file is checked by content and by the decoder policy of ``scopectl import``, stored under its
    SHA-256 and queued for enhancement.  201 when something new was stored; 200 when every file was already a
    capture of this case (a safe retry).
    """
    stored = await receive_captures(request, state, principal, case_id, csrf_from_form=True)
    body = {
        "captures": [
            {
                "capture_id": s.capture_id,
                "display_name": s.display_name,
                "sha256": s.sha256,
                "duplicate": s.duplicate,
                "status_url": f"/api/captures/{s.capture_id}",
            }
            for s in stored
        ]
    }
    return JSONResponse(body, status_code=200 if all(s.duplicate for s in stored) else 201)


# --------------------------------------------------------------------------------------------- captures
@router.get("/captures/{capture_id}", response_model=CaptureOut, tags=["captures"])
async def get_capture(
    capture_id: str,
    principal: User,
    state: State,
    wait_s: Annotated[
        float, Query(ge=0, le=120, description="Wait up to this long until the job is done or failed.")
    ] = 0.0,
) -> dict[str, Any]:
    """A capture's status (``queued → running → done | failed``), its job and links; optionally waits."""
    deadline = time.monotonic() + min(wait_s, state.settings.max_wait_s)
    event = state.notifier.subscribe(capture_id) if wait_s > 0 else None
    try:
        while True:
            view = await run_in_threadpool(_capture_view, state, principal, capture_id)
            remaining = deadline - time.monotonic()
            if view["status"] in ("done", "failed") or remaining <= 0 or event is None:
                return view
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), timeout=min(0.25, remaining))
            event.clear()
    finally:
        if event is not None:
            state.notifier.unsubscribe(capture_id, event)


def _capture_view(state: ServiceState, principal: Principal, capture_id: str) -> dict[str, Any]:
    with state.db.connect() as conn:
        return capture_view(conn, load_capture(conn, principal, capture_id))


@router.post("/captures/{capture_id}/retry", response_model=CaptureOut, status_code=202, tags=["captures"])
def retry_capture(capture_id: str, request: Request, principal: User, state: State) -> dict[str, Any]:
    """Queue a failed capture again (after an admin fixed the model assignment, say)."""
    require_role(principal, "admin", "expert", "clinic")
    check_csrf(request, principal)
    with state.db.begin() as conn:
        row = load_capture(conn, principal, capture_id)
        job = latest_job(conn, capture_id)
        if job is not None and job.state != "failed":
            raise ApiError(409, f"the capture is {job.state}; only a failed capture is queued again.")
        queue.enqueue(conn, capture_id)
        accounts.record_audit(
            conn, principal, "retry", object_type="capture", object_id=capture_id, ip=client_ip(request)
        )
        view = capture_view(conn, row)
    state.wake.set()
    return view


@router.get("/captures/{capture_id}/input", tags=["captures"], response_class=FileResponse)
def download_input(
    capture_id: str,
    request: Request,
    principal: User,
    state: State,
    format: Annotated[Literal["ome-tiff", "tiff", "original"], Query()] = "ome-tiff",
) -> FileResponse:
    """The phone input: as OME-TIFF or TIFF with its pixel size in µm, or the original bytes as uploaded."""
    with state.db.begin() as conn:
        row = load_capture(conn, principal, capture_id)
        job = latest_job(conn, capture_id)
        accounts.record_audit(
            conn,
            principal,
            "download",
            object_type="capture",
            object_id=capture_id,
            detail=f"input {format}",
            ip=client_ip(request),
        )
    if format == "original":
        path = state.files.verify_object(str(row.sha256))
        media = {"jpeg": "image/jpeg", "png": "image/png", "tiff": "image/tiff", "dng": "image/x-adobe-dng"}[
            str(row.format)
        ]
        suffix = {"jpeg": "jpg", "png": "png", "tiff": "tif", "dng": "dng"}[str(row.format)]
        return _file(path, media, f"scopectl-{capture_id}-input.{suffix}")
    px = row.pixel_size_um
    assumed = False
    if px is None:
        if job is None or job.in_pixel_size_um is None:
            raise ApiError(
                409, "the input's pixel size is unknown until it is enhanced (or give one when uploading)."
            )
        px, assumed = float(job.in_pixel_size_um), True
    dest = state.files.input_export(capture_id, format)
    with state.export_lock:
        if not dest.exists():
            rgb = read_image(state.files.verify_object(str(row.sha256))).rgb
            write_image(
                dest,
                rgb,
                fmt=format,
                pixel_size_um=float(px),
                annotations={
                    "name": f"{capture_id}-input",
                    "software": "scopectl serve",
                    "input_sha256": str(row.sha256),
                    "pixel_size_source": "assumed from the model" if assumed else str(row.pixel_size_source),
                },
            )
    suffix = ".ome.tif" if format == "ome-tiff" else ".tif"
    return _file(dest, "image/tiff", f"scopectl-{capture_id}-input{suffix}")


@router.get("/captures/{capture_id}/enhanced", tags=["captures"], response_class=FileResponse)
def download_enhanced(
    capture_id: str,
    request: Request,
    principal: User,
    state: State,
    format: Annotated[Literal["ome-tiff", "tiff"], Query()] = "ome-tiff",
) -> FileResponse:
    """The enhanced image as OME-TIFF (or TIFF) with its pixel size in µm (409 until the job is done)."""
    with state.db.begin() as conn:
        load_capture(conn, principal, capture_id)
        job = latest_job(conn, capture_id)
        if job is None or job.state != "done":
            raise ApiError(
                409, f"the capture is not enhanced yet ({'queued' if job is None else job.state})."
            )
        accounts.record_audit(
            conn,
            principal,
            "download",
            object_type="capture",
            object_id=capture_id,
            detail=f"enhanced {format} job {job.id}",
            ip=client_ip(request),
        )
    ome = state.files.job_export(capture_id, int(job.id), "ome-tiff")
    dest = ome
    if format == "tiff":
        dest = state.files.job_export(capture_id, int(job.id), "tiff")
        with state.export_lock:
            if not dest.exists():
                import tifffile  # tifffile loads only for TIFF files (keeps `scopectl --help` fast)

                write_image(
                    dest,
                    tifffile.imread(ome),
                    fmt="tiff",
                    pixel_size_um=float(job.out_pixel_size_um),
                    annotations={"name": f"{capture_id}-enhanced", "model": str(job.model_name)},
                )
    suffix = ".ome.tif" if format == "ome-tiff" else ".tif"
    return _file(dest, "image/tiff", f"scopectl-{capture_id}-enhanced{suffix}")


def _file(path: Path, media_type: str, filename: str) -> FileResponse:
    if not path.is_file():
        raise ApiError(404, "the file is missing from the data root; an admin restores serve/ from a backup.")
    return FileResponse(
        path, media_type=media_type, filename=filename, headers={"Cache-Control": "private, no-store"}
    )


# ------------------------------------------------------------------------------------------------ tiles
def _tiles_path(state: ServiceState, conn: Any, capture_id: str, image: str) -> Path:
    if image == "input":
        return state.files.input_tiles(capture_id)
    if image.startswith("job-") and image[4:].isdigit():
        job_id = int(image[4:])
        job = conn.execute(
            select(jobs.c.state).where(and_(jobs.c.id == job_id, jobs.c.capture_id == capture_id))
        ).first()
        if job is not None and job.state == "done":
            return state.files.job_tiles(capture_id, job_id)
    raise ApiError(404, "no such image of this capture.")


@router.get("/captures/{capture_id}/dzi/{image}.dzi", tags=["viewer"], response_class=Response)
def dzi(capture_id: str, image: str, request: Request, principal: User, state: State) -> Response:
    """The Deep Zoom descriptor of the input (``input``) or an enhanced result (``job-<n>``)."""

    with state.db.begin() as conn:
        load_capture(conn, principal, capture_id)
        path = _tiles_path(state, conn, capture_id, image)
        accounts.record_audit(
            conn,
            principal,
            "view",
            object_type="capture",
            object_id=capture_id,
            detail=image,
            ip=client_ip(request),
        )
    try:
        header = state.tiles.header(path)
    except FileNotFoundError:
        raise ApiError(404, "the tiles of this image are missing from the data root.") from None
    return Response(
        dzi_xml(header), media_type="application/xml", headers={"Cache-Control": "private, max-age=3600"}
    )


@router.get(
    "/captures/{capture_id}/dzi/{image}_files/{level}/{tile}.jpeg", tags=["viewer"], response_class=Response
)
def tile(capture_id: str, image: str, level: int, tile: str, principal: User, state: State) -> Response:
    """One JPEG tile (``<col>_<row>``) of a deep-zoom level."""
    col_text, _, row_text = tile.partition("_")
    if not (col_text.isdigit() and row_text.isdigit()) or level < 0 or level > 40:
        raise ApiError(404, "no such tile.")
    with state.db.connect() as conn:
        load_capture(conn, principal, capture_id)
        path = _tiles_path(state, conn, capture_id, image)
    try:
        data = state.tiles.tile(path, level, int(col_text), int(row_text))
    except FileNotFoundError:
        data = None
    if data is None:
        raise ApiError(404, "no such tile.")
    return Response(
        data, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=86400, immutable"}
    )


@router.get("/captures/{capture_id}/thumbnail.jpeg", tags=["viewer"], response_class=Response)
def thumbnail(capture_id: str, principal: User, state: State) -> Response:
    """A small JPEG of the input (at most 128 pixels on its longer side), for case pages."""
    with state.db.connect() as conn:
        load_capture(conn, principal, capture_id)
    path = state.files.input_tiles(capture_id)
    try:
        header = state.tiles.header(path)
        data = state.tiles.tile(path, min(int(header["max_level"]), 7), 0, 0)
    except FileNotFoundError:
        data = None
    if data is None:
        raise ApiError(404, "no thumbnail.")
    return Response(data, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=86400"})


# ------------------------------------------------------------------------------------------------ reports
@router.get("/cases/{case_id}/report", response_model=ReportOut | None, tags=["reports"])
def get_report(case_id: str, principal: User, state: State) -> dict[str, Any] | None:
    """The expert's latest report on a case (null when none yet)."""
    with state.db.connect() as conn:
        load_case(conn, principal, case_id)
        return latest_report(conn, case_id)


@router.put("/cases/{case_id}/report", response_model=ReportOut, tags=["reports"])
def put_report(
    case_id: str, body: ReportIn, request: Request, principal: User, state: State
) -> dict[str, Any]:
    """Write the report of a case (experts and admins); earlier versions are kept."""
    require_role(principal, "expert", "admin")
    check_csrf(request, principal)
    return write_report(state, request, principal, case_id, body.text)


def write_report(
    state: ServiceState, request: Request, principal: Principal, case_id: str, text: str
) -> dict[str, Any]:
    with state.db.begin() as conn:
        load_case(conn, principal, case_id)
        conn.execute(
            reports.insert().values(
                case_id=case_id, author_id=principal.user_id, text=text, created_at=time.time()
            )
        )
        accounts.record_audit(
            conn,
            principal,
            "report",
            object_type="case",
            object_id=case_id,
            detail=f"{len(text)} characters",
            ip=client_ip(request),
        )
        report = latest_report(conn, case_id)
    assert report is not None
    return report


# ------------------------------------------------------------------------------------------------- models
@router.get("/models/{name}", response_model=ModelOut, tags=["models"])
def get_model(name: str, principal: User, state: State) -> dict[str, Any]:
    """A model's card, quality record and serving status (the viewer shows it beside the images)."""
    status = model_status(state.models_dir, name)
    if status.state == "broken" and status.card is None and not (state.models_dir / name).is_dir():
        raise ApiError(404, f"no model {name!r}.")
    summary = card_summary(status)
    return {"name": status.name, "state": status.state, "warning": summary.pop("warning"), "card": summary}


@router.get("/models/{name}/training-curve.png", tags=["models"], response_class=FileResponse)
def model_curve(name: str, principal: User, state: State) -> FileResponse:
    """The model's training and validation curve, as saved by ``scopectl train``."""
    status = model_status(state.models_dir, name)
    if status.card is None:
        raise ApiError(404, f"no model {name!r}.")
    path = state.models_dir / status.name / "training-curve.png"
    if not path.is_file():
        raise ApiError(404, f"model {name!r} has no training curve.")
    return FileResponse(path, media_type="image/png", headers={"Cache-Control": "private, max-age=600"})


# -------------------------------------------------------------------------------------------------- admin
@router.get("/admin/users", tags=["admin"])
def admin_users(principal: User, state: State) -> list[dict[str, Any]]:
    """Every user, with role and clinic (never secrets)."""
    require_role(principal, "admin")
    with state.db.connect() as conn:
        rows = conn.execute(
            select(
                users.c.name,
                users.c.role,
                users.c.disabled,
                users.c.must_change_password,
                users.c.created_at,
                clinics.c.name.label("clinic"),
            )
            .select_from(users.outerjoin(clinics, users.c.clinic_id == clinics.c.id))
            .order_by(users.c.name)
        ).all()
    return [
        {
            "name": r.name,
            "role": r.role,
            "clinic": r.clinic,
            "disabled": bool(r.disabled),
            "must_change_password": bool(r.must_change_password),
            "created_at": iso(r.created_at),
        }
        for r in rows
    ]


@router.post("/admin/users", response_model=NewUserOut, status_code=201, tags=["admin"])
def admin_add_user(body: UserIn, request: Request, principal: User, state: State) -> dict[str, Any]:
    """Create a user; the answer holds the one-time password and API token (shown this once only)."""
    require_role(principal, "admin")
    check_csrf(request, principal)
    return add_user(state, request, principal, body.name, body.role, body.clinic)


def add_user(
    state: ServiceState, request: Request, principal: Principal, name: str, role: str, clinic: str | None
) -> dict[str, Any]:
    try:
        with state.db.begin() as conn:
            new = accounts.create_user(conn, name, role=role, clinic=clinic or None)
            accounts.record_audit(
                conn,
                principal,
                "create-user",
                object_type="user",
                object_id=name,
                detail=f"{role} {clinic or ''}".strip(),
                ip=client_ip(request),
            )
    except ConfigError as exc:
        raise ApiError(422, exc.one_line()) from None
    return {
        "name": new.name,
        "role": new.role,
        "clinic": new.clinic,
        "one_time_password": new.password,
        "api_token": new.token,
    }


@router.post("/admin/users/{name}/reset", response_model=NewUserOut, tags=["admin"])
def admin_reset_user(name: str, request: Request, principal: User, state: State) -> dict[str, Any]:
    """A new one-time password and API token for a user (a lost password, a leaked token); old ones stop working."""
    require_role(principal, "admin")
    check_csrf(request, principal)
    return reset_user(state, request, principal, name)


def reset_user(state: ServiceState, request: Request, principal: Principal, name: str) -> dict[str, Any]:
    try:
        with state.db.begin() as conn:
            new = accounts.reset_credentials(conn, name)
            accounts.record_audit(
                conn, principal, "reset-user", object_type="user", object_id=name, ip=client_ip(request)
            )
    except ConfigError as exc:
        raise ApiError(404, exc.one_line()) from None
    return {
        "name": new.name,
        "role": new.role,
        "clinic": new.clinic,
        "one_time_password": new.password,
        "api_token": new.token,
    }


@router.post("/admin/users/{name}/disable", status_code=204, tags=["admin"])
def admin_disable_user(name: str, request: Request, principal: User, state: State) -> Response:
    """Disable a user: their sessions end and their token stops working (``/enable`` undoes it)."""
    return _set_disabled(name, request, principal, state, disabled=True)


@router.post("/admin/users/{name}/enable", status_code=204, tags=["admin"])
def admin_enable_user(name: str, request: Request, principal: User, state: State) -> Response:
    """Enable a disabled user again."""
    return _set_disabled(name, request, principal, state, disabled=False)


def _set_disabled(
    name: str, request: Request, principal: Principal, state: ServiceState, *, disabled: bool
) -> Response:
    require_role(principal, "admin")
    check_csrf(request, principal)
    if name == principal.name:
        raise ApiError(409, "an admin cannot disable themselves.")
    try:
        with state.db.begin() as conn:
            accounts.set_disabled(conn, name, disabled=disabled)
            accounts.record_audit(
                conn,
                principal,
                "disable-user" if disabled else "enable-user",
                object_type="user",
                object_id=name,
                ip=client_ip(request),
            )
    except ConfigError as exc:
        raise ApiError(404, exc.one_line()) from None
    return Response(status_code=204)


@router.get("/admin/models", response_model=list[ModelOut], tags=["admin"])
def admin_models(principal: User, state: State) -> list[dict[str, Any]]:
    """Every model under ``<root>/models`` with its serving status."""
    require_role(principal, "admin")
    out = []
    for status in list_models(state.models_dir):
        summary = card_summary(status)
        out.append(
            {"name": status.name, "state": status.state, "warning": summary.pop("warning"), "card": summary}
        )
    return out


@router.get("/admin/assignments", tags=["admin"])
def admin_assignments(principal: User, state: State) -> dict[str, str]:
    """Which model serves each sample type (``*``: every other sample type)."""
    require_role(principal, "admin")
    with state.db.connect() as conn:
        return {str(r.sample_type): str(r.model_name) for r in conn.execute(select(model_assignments))}


@router.put("/admin/assignments/{sample_type}", tags=["admin"])
def admin_assign(
    sample_type: str, body: AssignmentIn, request: Request, principal: User, state: State
) -> dict[str, str]:
    """Let a model serve a sample type (``*`` for all others).  A model worse than bicubic is refused (422)."""
    require_role(principal, "admin")
    check_csrf(request, principal)
    return assign_model(state, request, principal, sample_type, body.model)


def assign_model(
    state: ServiceState, request: Request, principal: Principal, sample_type: str, model: str
) -> dict[str, str]:

    if sample_type != "*" and not re.match(r"^[a-z0-9][a-z0-9_-]{0,31}$", sample_type):
        raise ApiError(
            422, f"sample type {sample_type!r} is not valid (lower-case letters, digits, _ and -; or *)."
        )
    try:
        status = check_assignable(state.models_dir, model)
    except ConfigError as exc:
        raise ApiError(422, exc.one_line()) from None
    with state.db.begin() as conn:
        conn.execute(delete(model_assignments).where(model_assignments.c.sample_type == sample_type))
        conn.execute(
            model_assignments.insert().values(
                sample_type=sample_type,
                model_name=status.name,
                assigned_by=principal.user_id,
                assigned_at=time.time(),
            )
        )
        accounts.record_audit(
            conn,
            principal,
            "assign-model",
            object_type="model",
            object_id=status.name,
            detail=f"sample type {sample_type} ({status.state})",
            ip=client_ip(request),
        )
        return {str(r.sample_type): str(r.model_name) for r in conn.execute(select(model_assignments))}


@router.get("/admin/audit", tags=["admin"])
def admin_audit(
    principal: User, state: State, limit: Annotated[int, Query(ge=1, le=5000)] = 200
) -> list[dict[str, Any]]:
    """The newest lines of the audit log: who viewed, downloaded, uploaded, reported or changed what."""
    require_role(principal, "admin")
    with state.db.connect() as conn:
        rows = conn.execute(select(audit).order_by(audit.c.id.desc()).limit(limit)).all()
    return [
        {
            "at": iso(r.at),
            "user": r.username,
            "action": r.action,
            "object_type": r.object_type,
            "object_id": r.object_id,
            "detail": r.detail,
            "ip": r.ip,
        }
        for r in rows
    ]


@router.get("/admin/workers", tags=["admin"])
def admin_workers(principal: User, state: State) -> list[dict[str, Any]]:
    """Workers that announced themselves, with the seconds since each was last seen."""
    require_role(principal, "admin")
    with state.db.connect() as conn:
        now = float(conn.execute(select(db_epoch())).scalar_one())
        rows = conn.execute(select(workers).order_by(workers.c.id)).all()
    return [
        {
            "id": r.id,
            "host": r.host,
            "pid": r.pid,
            "device": r.device,
            "started_at": iso(r.started_at),
            "seen_s_ago": round(now - r.last_seen, 1),
        }
        for r in rows
    ]
