"""``scopectl serve``, ``scopectl user add``, ``scopectl upload`` and ``scopectl worker``: the telepathology service."""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path
from typing import Annotated

import typer

from scopectl.cli.common import JsonOpt, emit, get_state, say
from scopectl.errors import ConfigError
from scopectl.serve.settings import ServeSettings

__all__ = ["register"]

user_app = typer.Typer(help="Manage the users of scopectl serve.", no_args_is_help=True)

DbOpt = Annotated[
    str | None,
    typer.Option(
        "--db",
        help="Database URL: postgresql://USER@HOST/DB (several machines) or sqlite:///PATH "
        "(default: <root>/serve/scopectl.sqlite3).",
        show_default=False,
    ),
]


def _db_url(root: Path, db: str | None) -> str:
    # the web service's stack (SQLAlchemy, argon2, httpx ...) loads only for its commands
    from scopectl.serve.db import default_db_url

    return db or os.environ.get("SCOPECTL_DB") or default_db_url(root)


def serve_cmd(
    ctx: typer.Context,
    host: Annotated[
        str, typer.Option("--host", help="Address to listen on (loopback unless told otherwise).")
    ] = "127.0.0.1",
    port: Annotated[
        int, typer.Option("--port", min=0, max=65535, help="TCP port (0: any free port).")
    ] = 8000,
    db: DbOpt = None,
    workers: Annotated[
        int,
        typer.Option(
            "--workers", min=0, max=16, help="Enhancement threads in the server (0: only separate workers)."
        ),
    ] = 1,
    device: Annotated[
        str, typer.Option("--device", help="auto, cpu, cuda or cuda:N for the server's workers.")
    ] = "auto",
    precision: Annotated[str, typer.Option("--precision", help="auto, fp32 or bf16.")] = "auto",
    max_upload_mb: Annotated[
        float, typer.Option("--max-upload-mb", min=0.01, max=4096, help="Largest file accepted.")
    ] = 64.0,
    max_megapixels: Annotated[
        float, typer.Option("--max-megapixels", min=0.01, max=1000, help="Largest image accepted.")
    ] = 50.0,
    lease_s: Annotated[
        float, typer.Option("--lease-s", min=2, max=3600, help="Lease of a running job.")
    ] = 30.0,
    secure_cookies: Annotated[
        bool,
        typer.Option(
            "--secure-cookies", help="Mark cookies Secure (behind a TLS proxy without X-Forwarded-Proto)."
        ),
    ] = False,
    forwarded_allow_ips: Annotated[
        str,
        typer.Option(
            "--forwarded-allow-ips", help="Proxy addresses whose X-Forwarded-* headers are trusted."
        ),
    ] = "127.0.0.1",
    log_level: Annotated[
        str, typer.Option("--log-level", help="critical, error, warning, info or debug.")
    ] = "warning",
) -> None:
    """Run the telepathology web service: clinics upload phone captures, experts view them enhanced.

    Open http://HOST:PORT/ in a browser; the API's schema is at /openapi.json.  The database (SQLite in the
    data root unless --db names PostgreSQL) is migrated on start.  Stop with Ctrl-C or SIGTERM: running
    jobs finish or go back to the queue, nothing is lost.
    """
    # the web service's stack (SQLAlchemy, argon2, httpx ...) loads only for its commands
    from scopectl.serve.server import run_server

    state = get_state(ctx)
    if precision not in ("auto", "fp32", "bf16"):
        raise ConfigError(f"--precision {precision!r} is not one of auto, fp32, bf16.")
    if log_level not in ("critical", "error", "warning", "info", "debug"):
        raise ConfigError(f"--log-level {log_level!r} is not one of critical, error, warning, info, debug.")
    settings = ServeSettings(
        root=state.root.resolve(),
        db_url=_db_url(state.root, db),
        host=host,
        port=port,
        workers=workers,
        device=device,
        precision=precision,
        max_upload_bytes=int(max_upload_mb * 1024**2),
        max_pixels=int(max_megapixels * 1e6),
        lease_s=lease_s,
        secure_cookies=secure_cookies,
        forwarded_allow_ips=forwarded_allow_ips,
    )
    run_server(settings, log_level=log_level, announce=say)


def user_add_cmd(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Login name (lower-case letters, digits, . _ -).")],
    role: Annotated[str, typer.Option("--role", help="clinic, expert or admin.")],
    clinic: Annotated[
        str | None, typer.Option("--clinic", help="The clinic of a clinic user (created if new).")
    ] = None,
    db: DbOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Create a user; prints a one-time password (changed at the first login) and an API token, once."""
    # the web service's stack (SQLAlchemy, argon2, httpx ...) loads only for its commands
    from scopectl.serve.accounts import create_user, record_audit
    from scopectl.serve.db import Database

    state = get_state(ctx)
    database = Database(_db_url(state.root, db))
    database.migrate()
    try:
        with database.begin() as conn:
            new = create_user(conn, name, role=role, clinic=clinic)
            record_audit(
                conn,
                None,
                "create-user",
                object_type="user",
                object_id=name,
                detail=f"{role} (command line)",
                username="scopectl-cli",
            )
    finally:
        database.dispose()
    emit(
        {
            "name": new.name,
            "role": new.role,
            "clinic": new.clinic,
            "one_time_password": new.password,
            "api_token": new.token,
        },
        as_json=json_out,
        human=(
            f"created {new.role} {new.name}" + (f" of clinic {new.clinic}" if new.clinic else "") + "\n"
            f"one-time password: {new.password}   (to be changed at the first login)\n"
            f"API token:         {new.token}   (for scripts: Authorization: Bearer ...)\n"
            "Neither is shown again."
        ),
    )


def upload_cmd(
    files: Annotated[
        list[Path], typer.Argument(help="Images to upload (DNG, JPEG, PNG, TIFF).", show_default=False)
    ],
    server: Annotated[
        str, typer.Option("--server", help="The service's URL, e.g. https://telepath.example.org.")
    ],
    case: Annotated[str, typer.Option("--case", help="The case: its id, or the clinic's case reference.")],
    token: Annotated[
        str | None, typer.Option("--token", help="API token (default: $SCOPECTL_TOKEN).", show_default=False)
    ] = None,
    pixel_size_um: Annotated[
        float | None,
        typer.Option("--pixel-size-um", min=0.05, max=20, help="µm per pixel of these captures."),
    ] = None,
    wait: Annotated[
        bool, typer.Option("--wait", help="Wait until each capture is enhanced (or failed).")
    ] = False,
    timeout_s: Annotated[
        float, typer.Option("--timeout-s", min=1, help="Deadline of each request and of --wait.")
    ] = 300.0,
    json_out: JsonOpt = False,
) -> None:
    """Upload captures to a case of a scopectl server, with an API token (as a lab's acquisition script would)."""
    # the web service's stack (SQLAlchemy, argon2, httpx ...) loads only for its commands
    from scopectl.serve.client import ApiClient, ServerError

    secret = token or os.environ.get("SCOPECTL_TOKEN")
    if not secret:
        raise ConfigError(
            "no API token.", hint="Pass --token or set SCOPECTL_TOKEN (scopectl user add prints one)."
        )
    for path in files:
        if not path.is_file():
            raise ConfigError(f"{path}: file not found.", hint="Check the path.")
    results = []
    with ApiClient(server, secret, timeout_s=timeout_s) as client:
        found = client.resolve_case(case)
        for path in files:
            item = client.upload(str(found["id"]), path, pixel_size_um=pixel_size_um)
            say(f"{path}: capture {item['capture_id']}{' (already uploaded)' if item['duplicate'] else ''}")
            results.append({"file": str(path), **item})
        failed = 0
        if wait:
            for item in results:
                view = client.wait_done(item["capture_id"], timeout_s=timeout_s)
                item["status"] = view["status"]
                item["error"] = view["error"]
                failed += view["status"] == "failed"
                say(f"{item['file']}: {view['status']}" + (f" ({view['error']})" if view["error"] else ""))
    emit(
        {"server": server, "case": found["id"], "case_ref": found["ref"], "captures": results},
        as_json=json_out,
        human=f"uploaded {len(results)} file(s) to case {found['ref']} ({found['id']}) at {server}",
    )
    if failed:
        raise ServerError(f"{failed} of {len(results)} capture(s) failed to enhance (see above).")


def worker_cmd(
    ctx: typer.Context,
    db: DbOpt = None,
    device: Annotated[str, typer.Option("--device", help="auto, cpu, cuda or cuda:N.")] = "auto",
    precision: Annotated[str, typer.Option("--precision", help="auto, fp32 or bf16.")] = "auto",
    poll_s: Annotated[
        float, typer.Option("--poll-s", min=0.05, max=60, help="Idle time between looks at the queue.")
    ] = 0.5,
    lease_s: Annotated[
        float, typer.Option("--lease-s", min=2, max=3600, help="Lease of a running job.")
    ] = 30.0,
    max_jobs: Annotated[
        int | None, typer.Option("--max-jobs", min=1, help="Stop after this many jobs.")
    ] = None,
    exit_when_idle: Annotated[
        bool, typer.Option("--exit-when-idle", help="Stop when the queue is empty.")
    ] = False,
    json_out: JsonOpt = False,
) -> None:
    """Run enhancement jobs from the service's queue (on a GPU box: --db postgresql://..., same --root).

    The data root must be the server's (a shared filesystem mounted at the same path).  Stop with Ctrl-C or
    SIGTERM: the running job finishes, or goes back to the queue if stopped again.
    """
    # the web service's stack (SQLAlchemy, argon2, httpx ...) loads only for its commands
    from scopectl.serve.db import Database
    from scopectl.serve.worker import Worker  # torch loads only when this runs

    state = get_state(ctx)
    if precision not in ("auto", "fp32", "bf16"):
        raise ConfigError(f"--precision {precision!r} is not one of auto, fp32, bf16.")
    root = state.root.resolve()
    if not (root / "serve").is_dir():
        raise ConfigError(
            f"{root}: no serve/ folder; this is not the data root of a scopectl server.",
            hint="Mount the server's data root here and pass it with --root.",
        )
    settings = ServeSettings(
        root=root,
        db_url=_db_url(state.root, db),
        device=device,
        precision=precision,
        poll_s=poll_s,
        lease_s=lease_s,
    )
    database = Database(settings.db_url)
    database.require_current()
    worker = Worker(database, settings)
    stop = threading.Event()
    stops = 0

    def on_signal(signum: int, _frame: object) -> None:
        nonlocal stops
        stops += 1
        stop.set()
        worker.wake.set()
        if stops > 1:
            worker.give_back_current()
            raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    say(
        f"scopectl worker {worker.name}: {database.display_url}, data root {root}, device {worker.models.device}"
    )
    try:
        done = worker.run(stop, max_jobs=max_jobs, exit_when_idle=exit_when_idle)
    finally:
        database.dispose()
    emit(
        {"worker": worker.name, "jobs": done},
        as_json=json_out,
        human=f"worker {worker.name}: {done} job(s) done",
    )


def register(app: typer.Typer) -> None:
    app.command("serve")(serve_cmd)
    app.command("upload")(upload_cmd)
    app.command("worker")(worker_cmd)
    user_app.command("add")(user_add_cmd)
    app.add_typer(user_app, name="user")
