"""The browser's pages: log in, cases, a case (upload, report), a capture (the viewer), the admin page.

Pages are rendered on the server (Jinja2, autoescaped); every form that changes something carries the
session's CSRF token in a hidden field, and the login form a double-submit token of its own.  The viewer
(``static/viewer.js``) talks to the JSON API with the same session and its CSRF header.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Form, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from pydantic import ValidationError
from sqlalchemy import func, select

from scopectl.errors import ConfigError
from scopectl.serve import accounts, queue
from scopectl.serve.accounts import Principal
from scopectl.serve.api import (
    add_user,
    assign_model,
    create_case_for,
    login,
    receive_captures,
    reset_user,
    set_session_cookie,
    write_report,
)
from scopectl.serve.db import audit, clinics, db_epoch, model_assignments, users, workers
from scopectl.serve.deps import (
    LOGIN_CSRF_COOKIE,
    SESSION_COOKIE,
    ApiError,
    ServiceState,
    check_csrf,
    client_ip,
    get_principal,
    load_capture,
    load_case,
    require_role,
    state_of,
)
from scopectl.serve.models import list_models
from scopectl.serve.schemas import CaseIn
from scopectl.serve.security import new_secret, same_secret
from scopectl.serve.views import capture_view, case_list, case_view, iso, latest_report

__all__ = ["LoginRequired", "PasswordChangeRequired", "login_redirect", "router", "templates"]

router = APIRouter(include_in_schema=False)
templates = Jinja2Templates(directory=str(Path(__file__).with_name("templates")))
State = Annotated[ServiceState, Depends(state_of)]


class LoginRequired(Exception):
    """Raised by page routes when nobody is logged in (answered with a redirect to the login page)."""

    def __init__(self, next_path: str) -> None:
        super().__init__(next_path)
        self.next_path = next_path


class PasswordChangeRequired(Exception):
    """Raised by page routes while the user still has the one-time password."""


def page_user(request: Request) -> Principal:
    principal = get_principal(request)
    if principal is None or principal.via != "session":
        raise LoginRequired(request.url.path)
    if principal.must_change_password:
        raise PasswordChangeRequired()
    request.state.principal = principal
    return principal


PageUser = Annotated[Principal, Depends(page_user)]


def _render(request: Request, name: str, context: dict[str, Any], *, status: int = 200) -> HTMLResponse:
    principal = getattr(request.state, "principal", None)
    context = {"me": principal, "csrf": principal.csrf_token if principal else None, **context}
    return templates.TemplateResponse(request, name, context, status_code=status)


def _safe_next(value: str | None) -> str:
    """A local path to go to after logging in (never another site)."""
    if (
        value
        and value.startswith("/")
        and not value.startswith("//")
        and re.match(r"^/[A-Za-z0-9/_.-]*$", value)
    ):
        return value
    return "/cases"


def _see_other(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


# -------------------------------------------------------------------------------------------------- login
@router.get("/", response_class=HTMLResponse)
def home(request: Request) -> Response:
    return _see_other("/cases" if get_principal(request) is not None else "/login")


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request, next: str | None = None) -> Response:
    token = new_secret()
    response = _render(request, "login.html", {"login_csrf": token, "next": _safe_next(next), "error": None})
    response.set_cookie(
        LOGIN_CSRF_COOKIE, token, httponly=True, samesite="strict", path="/login", max_age=3600
    )
    return response


@router.post("/login", response_class=HTMLResponse)
def login_submit(
    request: Request,
    state: State,
    username: Annotated[str, Form(max_length=64)],
    password: Annotated[str, Form(max_length=1024)],
    csrf_token: Annotated[str, Form(max_length=200)] = "",
    next: Annotated[str, Form(max_length=500)] = "/cases",
) -> Response:
    if not same_secret(csrf_token, request.cookies.get(LOGIN_CSRF_COOKIE)):
        return _login_again(request, next, "The login form expired; please try again.", status=403)
    try:
        _user_id, session_id, _ = login(state, request, username, password)
    except ApiError as exc:
        return _login_again(request, next, str(exc.detail), status=exc.status_code, headers=exc.headers)
    response = _see_other(_safe_next(next))
    set_session_cookie(response, request, state, session_id)
    response.delete_cookie(LOGIN_CSRF_COOKIE, path="/login")
    return response


def _login_again(
    request: Request, next_path: str, error: str, *, status: int, headers: Mapping[str, str] | None = None
) -> Response:
    token = new_secret()
    response = _render(
        request,
        "login.html",
        {"login_csrf": token, "next": _safe_next(next_path), "error": error},
        status=status,
    )
    response.set_cookie(
        LOGIN_CSRF_COOKIE, token, httponly=True, samesite="strict", path="/login", max_age=3600
    )
    for key, value in (headers or {}).items():
        response.headers[key] = value
    return response


@router.post("/logout")
def logout_submit(
    request: Request, state: State, csrf_token: Annotated[str, Form(max_length=200)] = ""
) -> Response:
    principal = get_principal(request)
    if principal is not None and principal.via == "session":
        check_csrf(request, principal, csrf_token)
        if principal.session_hash:
            with state.db.begin() as conn:
                accounts.end_session(conn, principal.session_hash)
    response = _see_other("/login")
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@router.get("/account/password", response_class=HTMLResponse)
def password_page(request: Request) -> Response:
    principal = get_principal(request)
    if principal is None or principal.via != "session":
        raise LoginRequired(request.url.path)
    request.state.principal = principal
    return _render(request, "password.html", {"error": None, "forced": principal.must_change_password})


@router.post("/account/password", response_class=HTMLResponse)
def password_submit(
    request: Request,
    state: State,
    current_password: Annotated[str, Form(max_length=1024)],
    new_password: Annotated[str, Form(max_length=1024)],
    new_password_again: Annotated[str, Form(max_length=1024)],
    csrf_token: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    principal = get_principal(request)
    if principal is None or principal.via != "session":
        raise LoginRequired("/account/password")
    request.state.principal = principal
    check_csrf(request, principal, csrf_token)
    error = None
    if new_password != new_password_again:
        error = "The two new passwords differ."
    else:
        try:
            with state.db.begin() as conn:
                accounts.change_password(conn, principal, old=current_password, new=new_password)
                accounts.record_audit(
                    conn,
                    principal,
                    "password",
                    object_type="user",
                    object_id=principal.name,
                    ip=client_ip(request),
                )
        except ConfigError as exc:
            error = exc.one_line()
    if error:
        return _render(
            request, "password.html", {"error": error, "forced": principal.must_change_password}, status=422
        )
    return _see_other("/cases")


# -------------------------------------------------------------------------------------------------- cases
@router.get("/cases", response_class=HTMLResponse)
def cases_page(request: Request, principal: PageUser, state: State) -> Response:
    with state.db.connect() as conn:
        items = case_list(conn, principal)
    return _render(request, "cases.html", {"cases": items, "error": None, "form": {}})


@router.post("/cases", response_class=HTMLResponse)
def cases_submit(
    request: Request,
    principal: PageUser,
    state: State,
    ref: Annotated[str, Form(max_length=64)],
    sample_type: Annotated[str, Form(max_length=32)],
    note: Annotated[str, Form(max_length=4000)] = "",
    pixel_size_um: Annotated[str, Form(max_length=32)] = "",
    clinic: Annotated[str, Form(max_length=64)] = "",
    csrf_token: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    check_csrf(request, principal, csrf_token)
    form = {
        "ref": ref,
        "sample_type": sample_type,
        "note": note,
        "pixel_size_um": pixel_size_um,
        "clinic": clinic,
    }
    error = None
    try:
        require_role(principal, "clinic", "admin")
        body = CaseIn(
            ref=ref,
            sample_type=sample_type.strip().lower(),
            note=note,
            pixel_size_um=float(pixel_size_um) if pixel_size_um.strip() else None,
            clinic=clinic or None,
        )
        created = create_case_for(state, request, principal, body)
    except ValidationError as exc:
        error = "; ".join(f"{'.'.join(str(x) for x in e['loc'])}: {e['msg']}" for e in exc.errors())
    except ValueError:
        error = "The pixel size must be a number (µm per pixel)."
    except ApiError as exc:
        error = str(exc.detail)
    if error is not None:
        with state.db.connect() as conn:
            items = case_list(conn, principal)
        return _render(request, "cases.html", {"cases": items, "error": error, "form": form}, status=422)
    return _see_other(f"/cases/{created['id']}")


@router.get("/cases/{case_id}", response_class=HTMLResponse)
def case_page(case_id: str, request: Request, principal: PageUser, state: State) -> Response:
    with state.db.begin() as conn:
        row = load_case(conn, principal, case_id)
        accounts.record_audit(
            conn, principal, "view", object_type="case", object_id=case_id, ip=client_ip(request)
        )
        case = case_view(conn, row)
    return _render(request, "case.html", {"case": case, "report": case["report"], "error": None})


@router.post("/cases/{case_id}/captures", response_class=HTMLResponse)
async def case_upload(case_id: str, request: Request, principal: PageUser, state: State) -> Response:
    try:
        stored = await receive_captures(request, state, principal, case_id, csrf_from_form=True)
    except ApiError as exc:
        if exc.status_code in (401, 404):
            raise
        case = await run_in_threadpool(_case_for_page, state, principal, case_id)
        return _render(
            request,
            "case.html",
            {"case": case, "report": case["report"], "error": str(exc.detail)},
            status=exc.status_code,
        )
    if len(stored) == 1:
        return _see_other(f"/captures/{stored[0].capture_id}")
    return _see_other(f"/cases/{case_id}")


def _case_for_page(state: ServiceState, principal: Principal, case_id: str) -> dict[str, Any]:
    with state.db.connect() as conn:
        return case_view(conn, load_case(conn, principal, case_id))


@router.post("/cases/{case_id}/report", response_class=HTMLResponse)
def report_submit(
    case_id: str,
    request: Request,
    principal: PageUser,
    state: State,
    text: Annotated[str, Form(max_length=20000)],
    csrf_token: Annotated[str, Form(max_length=200)] = "",
    back: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    check_csrf(request, principal, csrf_token)
    require_role(principal, "expert", "admin")
    if not text.strip():
        raise ApiError(422, "the report is empty.")
    write_report(state, request, principal, case_id, text.strip())
    target = back if re.match(r"^/captures/[0-9a-f]{16}$", back) else f"/cases/{case_id}"
    return _see_other(target + "#report")


# ------------------------------------------------------------------------------------------------ capture
@router.get("/captures/{capture_id}", response_class=HTMLResponse)
def capture_page(capture_id: str, request: Request, principal: PageUser, state: State) -> Response:
    with state.db.begin() as conn:
        row = load_capture(conn, principal, capture_id)
        accounts.record_audit(
            conn, principal, "view", object_type="capture", object_id=capture_id, ip=client_ip(request)
        )
        capture = capture_view(conn, row)
        case = case_view(conn, load_case(conn, principal, str(row.case_id)), with_captures=False)

        report = latest_report(conn, str(row.case_id))
    return _render(request, "capture.html", {"capture": capture, "case": case, "report": report})


# -------------------------------------------------------------------------------------------------- admin
@router.get("/admin", response_class=HTMLResponse)
def admin_page(request: Request, principal: PageUser, state: State) -> Response:
    require_role(principal, "admin")
    return _render(request, "admin.html", {**_admin_data(state), "new_user": None, "error": None})


def _admin_data(state: ServiceState) -> dict[str, Any]:

    with state.db.connect() as conn:
        assignments = {str(r.sample_type): str(r.model_name) for r in conn.execute(select(model_assignments))}
        depth = queue.queue_depth(conn)
        log = conn.execute(select(audit).order_by(audit.c.id.desc()).limit(50)).all()
        user_rows = conn.execute(
            select(
                users.c.name,
                users.c.role,
                users.c.must_change_password,
                users.c.disabled,
                clinics.c.name.label("clinic"),
            )
            .select_from(users.outerjoin(clinics, users.c.clinic_id == clinics.c.id))
            .order_by(users.c.name)
        ).all()
        now = float(conn.execute(select(db_epoch())).scalar_one())
        worker_rows = conn.execute(select(workers).order_by(workers.c.id)).all()
        n_clinics = conn.execute(select(func.count()).select_from(clinics)).scalar_one()
    return {
        "models": list_models(state.models_dir),
        "assignments": assignments,
        "queue": depth,
        "audit": [
            {
                "at": iso(r.at),
                "user": r.username,
                "action": r.action,
                "object": f"{r.object_type} {r.object_id}",
                "detail": r.detail,
                "ip": r.ip,
            }
            for r in log
        ],
        "users": user_rows,
        "workers": [
            {"id": w.id, "device": w.device, "seen": round(now - w.last_seen, 1)} for w in worker_rows
        ],
        "n_clinics": int(n_clinics),
    }


@router.post("/admin/users", response_class=HTMLResponse)
def admin_user_submit(
    request: Request,
    principal: PageUser,
    state: State,
    name: Annotated[str, Form(max_length=64)],
    role: Annotated[str, Form(max_length=16)],
    clinic: Annotated[str, Form(max_length=64)] = "",
    csrf_token: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    require_role(principal, "admin")
    check_csrf(request, principal, csrf_token)
    new_user, error = None, None
    try:
        new_user = add_user(state, request, principal, name.strip().lower(), role, clinic.strip() or None)
    except ApiError as exc:
        error = str(exc.detail)
    response = _render(
        request,
        "admin.html",
        {**_admin_data(state), "new_user": new_user, "error": error},
        status=201 if new_user else 422,
    )
    response.headers["Cache-Control"] = "no-store"
    return response


@router.post("/admin/users/{name}/{action}", response_class=HTMLResponse)
def admin_user_action(
    name: str,
    action: str,
    request: Request,
    principal: PageUser,
    state: State,
    csrf_token: Annotated[str, Form(max_length=200)] = "",
) -> Response:

    require_role(principal, "admin")
    check_csrf(request, principal, csrf_token)
    new_user, error = None, None
    try:
        if action == "reset":
            new_user = reset_user(state, request, principal, name)
        elif action in ("disable", "enable"):
            if name == principal.name:
                raise ApiError(409, "an admin cannot disable themselves.")
            with state.db.begin() as conn:
                accounts.set_disabled(conn, name, disabled=action == "disable")
                accounts.record_audit(
                    conn,
                    principal,
                    f"{action}-user",
                    object_type="user",
                    object_id=name,
                    ip=client_ip(request),
                )
        else:
            raise ApiError(404, f"no action {action!r}.")
    except ApiError as exc:
        error = str(exc.detail)
    except ConfigError as exc:
        error = exc.one_line()
    if new_user is None and error is None:
        return _see_other("/admin")
    response = _render(request, "admin.html", {**_admin_data(state), "new_user": new_user, "error": error})
    response.headers["Cache-Control"] = "no-store"
    return response


@router.post("/admin/assignments", response_class=HTMLResponse)
def admin_assign_submit(
    request: Request,
    principal: PageUser,
    state: State,
    sample_type: Annotated[str, Form(max_length=32)],
    model: Annotated[str, Form(max_length=100)],
    csrf_token: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    require_role(principal, "admin")
    check_csrf(request, principal, csrf_token)
    try:
        assign_model(state, request, principal, sample_type.strip().lower(), model.strip())
    except ApiError as exc:
        return _render(
            request,
            "admin.html",
            {**_admin_data(state), "new_user": None, "error": str(exc.detail)},
            status=exc.status_code,
        )
    return _see_other("/admin")


def login_redirect(next_path: str) -> RedirectResponse:
    return _see_other(f"/login?next={quote(_safe_next(next_path))}")
