"""Running the service: migrate the database, bind the socket, serve with uvicorn until told to stop."""

from __future__ import annotations

import ipaddress
import logging
import signal
import socket
import sys
from collections.abc import Callable

from scopectl.errors import ConfigError
from scopectl.serve.db import Database
from scopectl.serve.settings import ServeSettings

__all__ = ["bind", "is_loopback", "run_server"]


def is_loopback(host: str) -> bool:
    """Whether ``host`` is a loopback address (127.0.0.0/8, ::1, localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (port 0: any free port).

    Raises
    ------
    ConfigError
        If the address cannot be bound (in use, not this machine's, no permission).
    """
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ConfigError(f"--host {host!r}: cannot resolve it ({exc.strerror}).") from None
    family, _, _, _, address = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        raise ConfigError(
            f"cannot listen on {host}:{port} ({exc.strerror}).",
            hint="Choose another --port, or stop the program that uses it.",
        ) from None
    sock.set_inheritable(True)
    return sock


def run_server(
    settings: ServeSettings,
    *,
    log_level: str = "warning",
    announce: Callable[[str], None] | None = None,
) -> None:
    """Migrate the database and serve until SIGINT or SIGTERM (a graceful stop; running jobs are kept)."""
    import uvicorn  # the web service's stack (SQLAlchemy, argon2, httpx ...) loads only for its commands

    from scopectl.serve.app import create_app  # torch loads only when this runs

    say = announce or (lambda line: print(line, file=sys.stderr, flush=True))
    db = Database(settings.db_url)
    revision = db.migrate()
    app = create_app(settings, db)
    sock = bind(settings.host, settings.port)
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    say(
        f"scopectl serve: listening on http://{shown}:{port} (database {db.display_url}, schema {revision}, "
        f"data root {settings.root}, {settings.workers} worker thread(s))"
    )
    if not is_loopback(settings.host):
        say(
            f"scopectl serve: warning: {settings.host} is reachable from other machines over plain HTTP; "
            "put a TLS reverse proxy in front (docs/server.md)."
        )
    logging.getLogger("scopectl").setLevel(log_level.upper())
    config = uvicorn.Config(
        app,
        log_level=log_level,
        proxy_headers=True,
        forwarded_allow_ips=settings.forwarded_allow_ips,
        timeout_graceful_shutdown=30,
        server_header=False,
        access_log=log_level in ("info", "debug"),
    )
    server = uvicorn.Server(config)
    received: list[int] = []

    def remember(signum: int, _frame: object) -> None:
        received.append(signum)

    # uvicorn handles SIGINT/SIGTERM itself (a graceful shutdown), then raises the signal again for the
    # handler that was installed before it: this one notes it, so a requested stop ends with exit code 0.
    previous = {sig: signal.signal(sig, remember) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        server.run(sockets=[sock])
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        sock.close()
        db.dispose()
    if received:
        say(f"scopectl serve: stopped ({signal.Signals(received[0]).name}).")
