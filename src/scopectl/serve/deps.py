"""What every route needs: the service's state, who is asking, CSRF checks, and the visibility rule.

The visibility rule lives here only: a clinic user sees the cases of their own clinic, experts and admins see
every case, and a case or capture someone may not see is answered exactly like one that does not exist
(404), so its existence is not revealed.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import HTTPException, Request
from sqlalchemy import and_, select
from sqlalchemy.engine import Connection, Row

from scopectl.serve.accounts import Principal, principal_from_session, principal_from_token
from scopectl.serve.db import Database, captures, cases, clinics
from scopectl.serve.security import TOKEN_PREFIX, same_secret
from scopectl.serve.settings import ServeSettings
from scopectl.serve.storage import ServeFiles
from scopectl.serve.tiles import TilePack

__all__ = [
    "CSRF_FIELD",
    "CSRF_HEADER",
    "LOGIN_CSRF_COOKIE",
    "SESSION_COOKIE",
    "ApiError",
    "Notifier",
    "ServiceState",
    "check_csrf",
    "client_ip",
    "get_principal",
    "load_capture",
    "load_case",
    "require_role",
]

SESSION_COOKIE = "scopectl_session"
LOGIN_CSRF_COOKIE = "scopectl_login_csrf"
CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf_token"


class ApiError(HTTPException):
    """An answer other than success, with a one-line ``detail`` for the client."""

    def __init__(self, status: int, detail: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(status_code=status, detail=detail, headers=headers)


NOT_FOUND = "no such case or capture (or it belongs to another clinic)."


class Notifier:
    """Wakes status requests waiting for a capture when a worker in this process changes its job."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._waiters: dict[str, set[asyncio.Event]] = defaultdict(set)
        self._lock = threading.Lock()

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def subscribe(self, capture_id: str) -> asyncio.Event:
        event = asyncio.Event()
        with self._lock:
            self._waiters[capture_id].add(event)
        return event

    def unsubscribe(self, capture_id: str, event: asyncio.Event) -> None:
        with self._lock:
            waiters = self._waiters.get(capture_id)
            if waiters is not None:
                waiters.discard(event)
                if not waiters:
                    del self._waiters[capture_id]

    def notify(self, capture_id: str) -> None:
        """Called from any thread."""
        loop = self._loop
        with self._lock:
            events = list(self._waiters.get(capture_id, ()))
        if loop is None or not events:
            return
        for event in events:
            loop.call_soon_threadsafe(event.set)


@dataclass
class ServiceState:
    """Shared by every request of one server process."""

    settings: ServeSettings
    db: Database
    files: ServeFiles
    tiles: TilePack = field(default_factory=TilePack)
    wake: threading.Event = field(default_factory=threading.Event)
    notifier: Notifier = field(default_factory=Notifier)
    export_lock: threading.Lock = field(default_factory=threading.Lock)
    started_at: float = field(default_factory=time.time)
    worker_threads: list[threading.Thread] = field(default_factory=list)
    workers: list[Any] = field(default_factory=list)
    stop_workers: threading.Event = field(default_factory=threading.Event)

    @property
    def models_dir(self) -> Path:
        return self.settings.root / "models"


def state_of(request: Request) -> ServiceState:
    state = request.app.state.service
    assert isinstance(state, ServiceState)
    return state


def client_ip(request: Request) -> str:
    """The client's address (the proxy's X-Forwarded-For when uvicorn trusts the proxy)."""
    return request.client.host if request.client is not None else "-"


def get_principal(request: Request) -> Principal | None:
    """Who sent the request: an ``Authorization: Bearer sct_...`` token, else the session cookie."""
    state = state_of(request)
    auth = request.headers.get("authorization", "")
    with state.db.connect() as conn:
        if auth:
            scheme, _, token = auth.partition(" ")
            token = token.strip()
            if scheme.lower() != "bearer" or not token.startswith(TOKEN_PREFIX) or len(token) > 200:
                return None
            return principal_from_token(conn, token)
        session_id = request.cookies.get(SESSION_COOKIE)
        if not session_id or len(session_id) > 200:
            return None
        return principal_from_session(conn, session_id, now=time.time())


def require_user(request: Request, *, allow_password_change: bool = False) -> Principal:
    """The authenticated principal, or 401 (403 while a one-time password must still be changed)."""
    principal = get_principal(request)
    if principal is None:
        raise ApiError(
            401,
            "log in, or send an API token (Authorization: Bearer sct_...).",
            headers={"WWW-Authenticate": "Bearer"},
        )
    if principal.must_change_password and not allow_password_change:
        raise ApiError(
            403, "change your one-time password first (the account page, or POST /api/auth/password)."
        )
    request.state.principal = principal
    return principal


def require_role(principal: Principal, *roles: str) -> None:
    if principal.role not in roles:
        raise ApiError(403, f"this needs the role {' or '.join(roles)}; you are {principal.role}.")


def check_csrf(request: Request, principal: Principal, form_token: str | None = None) -> None:
    """Refuse a state-changing request made with the session cookie but without its CSRF token.

    Token-authenticated requests carry no ambient credential and need none.
    """
    if principal.via != "session":
        return
    sent = form_token if form_token is not None else request.headers.get(CSRF_HEADER)
    if not same_secret(sent, principal.csrf_token):
        raise ApiError(403, "missing or wrong CSRF token; reload the page and try again.")


def load_case(conn: Connection, principal: Principal, case_id: str) -> Row[Any]:
    """A case the principal may see (404 otherwise, the same as a missing one)."""
    query = (
        select(cases, clinics.c.name.label("clinic_name"))
        .select_from(cases.join(clinics, cases.c.clinic_id == clinics.c.id))
        .where(cases.c.id == case_id)
    )
    if not principal.sees_all_clinics():
        query = query.where(cases.c.clinic_id == principal.clinic_id)
    row = conn.execute(query).first()
    if row is None:
        raise ApiError(404, NOT_FOUND)
    return row


def load_capture(conn: Connection, principal: Principal, capture_id: str) -> Row[Any]:
    """A capture (with its case's clinic, reference and sample type) the principal may see, else 404."""
    query = (
        select(
            captures,
            cases.c.clinic_id,
            cases.c.ref.label("case_ref"),
            cases.c.sample_type,
        )
        .select_from(captures.join(cases, captures.c.case_id == cases.c.id))
        .where(captures.c.id == capture_id)
    )
    if not principal.sees_all_clinics():
        query = query.where(and_(cases.c.clinic_id == principal.clinic_id))
    row = conn.execute(query).first()
    if row is None:
        raise ApiError(404, NOT_FOUND)
    return row
