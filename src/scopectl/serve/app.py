"""The ASGI application: routes, static files, security headers, error pages, and the in-process workers.

:func:`create_app` builds a FastAPI application around a migrated database.  Its lifespan starts
``settings.workers`` enhancement threads (woken by each upload) and, on shutdown, stops them: a job still
running after the grace period is given back to the queue, so a restart loses nothing.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from scopectl import __version__
from scopectl.errors import InputFileError, ModelError, ScopectlError, StoreError
from scopectl.serve import api, pages
from scopectl.serve.db import Database
from scopectl.serve.deps import ServiceState
from scopectl.serve.models import ModelCache
from scopectl.serve.settings import ServeSettings
from scopectl.serve.storage import ServeFiles
from scopectl.serve.worker import Worker

__all__ = ["SHUTDOWN_GRACE_S", "create_app"]

log = logging.getLogger(__name__)

#: How long shutdown waits for a running job before giving it back to the queue.
SHUTDOWN_GRACE_S = 20.0

STATIC = Path(__file__).with_name("static")

#: OpenSeadragon 6.1.1 adds one fixed <style> element (``@media (hover: none) {...}``); its hash is allowed.
_OSD_STYLE_HASH = "'sha256-9xTiqzfwFaL2SGb1rmr8gysEwVVjIvqWAgmZgqFqpEE='"
_CSP = (
    f"default-src 'self'; img-src 'self' data: blob:; style-src 'self' {_OSD_STYLE_HASH}; script-src 'self'; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)


def create_app(settings: ServeSettings, db: Database) -> FastAPI:
    """The application for a database already at the current schema (see :meth:`Database.migrate`)."""
    state = ServiceState(settings=settings, db=db, files=ServeFiles(settings.root))
    state.files.ensure()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state.notifier.bind(asyncio.get_running_loop())
        _start_workers(state)
        try:
            yield
        finally:
            await asyncio.to_thread(_stop_workers, state)

    app = FastAPI(
        title="scopectl serve",
        version=__version__,
        summary="Telepathology: clinics upload phone-microscope captures; experts view them enhanced.",
        docs_url=None,  # Swagger UI would load its scripts from a CDN; the schema is at /openapi.json
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.service = state
    app.include_router(api.router)
    app.include_router(pages.router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    _install_handlers(app)
    return app


def _install_handlers(app: FastAPI) -> None:
    """Add the security-headers middleware and the error handlers (JSON for the API, pages for browsers)."""
    app.middleware("http")(_security_headers)
    app.exception_handler(StarletteHTTPException)(_http_error)
    app.exception_handler(RequestValidationError)(_validation_error)
    app.exception_handler(pages.LoginRequired)(_login_required)
    app.exception_handler(pages.PasswordChangeRequired)(_password_required)
    app.exception_handler(ScopectlError)(_scopectl_error)


async def _security_headers(
    request: Request, call_next: Callable[[Request], Awaitable[Response]]
) -> Response:
    """Security headers on every response; static files may be cached for an hour, nothing else."""
    response = await call_next(request)
    headers = response.headers
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("X-Frame-Options", "DENY")
    headers.setdefault("Referrer-Policy", "same-origin")
    headers.setdefault("Content-Security-Policy", _CSP)
    if request.url.path.startswith("/static/"):
        headers.setdefault("Cache-Control", "public, max-age=3600")
    else:
        headers.setdefault("Cache-Control", "no-store")
    return response


async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
    if _wants_json(request):
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)
    if exc.status_code == 401:
        return pages.login_redirect(request.url.path)
    return pages.templates.TemplateResponse(
        request,
        "error.html",
        {
            "status": exc.status_code,
            "detail": exc.detail,
            "me": getattr(request.state, "principal", None),
            "csrf": getattr(getattr(request.state, "principal", None), "csrf_token", None),
        },
        status_code=exc.status_code,
        headers=exc.headers,
    )


async def _validation_error(request: Request, exc: RequestValidationError) -> Response:
    problems = "; ".join(
        f"{'.'.join(str(p) for p in err.get('loc', ()))}: {err.get('msg', '')}" for err in exc.errors()[:3]
    )
    return JSONResponse({"detail": problems or "invalid request."}, status_code=422)


async def _login_required(request: Request, exc: pages.LoginRequired) -> Response:
    return pages.login_redirect(exc.next_path)


async def _password_required(request: Request, exc: pages.PasswordChangeRequired) -> Response:
    return RedirectResponse("/account/password", status_code=303)


async def _scopectl_error(request: Request, exc: ScopectlError) -> Response:
    status = 422 if isinstance(exc, InputFileError | ModelError) else 500
    if isinstance(exc, StoreError):
        log.error("storage problem: %s", exc.one_line())
    return JSONResponse({"detail": exc.one_line()}, status_code=status)


def _wants_json(request: Request) -> bool:
    return request.url.path.startswith("/api/") or request.url.path == "/openapi.json"


def _start_workers(state: ServiceState) -> None:
    if state.settings.workers == 0:
        return
    models = ModelCache(
        state.settings.root / "models", device=state.settings.device, precision=state.settings.precision
    )
    state.stop_workers.clear()
    for index in range(state.settings.workers):
        worker = Worker(
            state.db,
            state.settings,
            index=index,
            wake=state.wake,
            models=models,
            on_change=state.notifier.notify,
        )
        state.workers.append(worker)
        thread = threading.Thread(
            target=_run_worker, args=(worker, state.stop_workers), name=f"enhance-{index}", daemon=True
        )
        thread.start()
        state.worker_threads.append(thread)


def _run_worker(worker: Worker, stop: threading.Event) -> None:
    try:
        worker.run(stop)
    except Exception:  # the database went away: the server's health check shows it; jobs wait in the queue
        log.exception("worker %s stopped", worker.name)


def _stop_workers(state: ServiceState) -> None:
    state.stop_workers.set()
    state.wake.set()
    for thread in state.worker_threads:
        thread.join(timeout=SHUTDOWN_GRACE_S)
    for worker in state.workers:
        worker.give_back_current()
    state.worker_threads.clear()
    state.workers.clear()
