"""A throwaway PostgreSQL server in a temporary folder, for tests, benchmarks and trying ``--db postgresql://``.

The server listens only on a Unix socket in its own folder (no TCP port), trusts local connections, keeps
its data in that folder (``fsync=off``: nothing in it is meant to survive) and is stopped and removed on
leaving the ``with`` block.  PostgreSQL refuses to run as root: as root the folder is handed to the
``postgres`` system user (created by Debian's package) and the server runs as that user (``runuser``).

Every step has a deadline (:data:`STEP_TIMEOUT_S`); a failure raises :class:`PostgresUnavailable` naming the
step and its last line of output.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from types import TracebackType

__all__ = ["STEP_TIMEOUT_S", "PostgresUnavailable", "ThrowawayPostgres", "find_bindir"]

STEP_TIMEOUT_S = 60.0


class PostgresUnavailable(Exception):
    """PostgreSQL's programs are missing or a step (initdb, start, query, stop) failed."""


def find_bindir() -> Path:
    """The folder of ``initdb`` and ``pg_ctl``: on ``PATH``, else Debian's newest ``/usr/lib/postgresql/N/bin``.

    Raises
    ------
    PostgresUnavailable
        If neither has them.
    """
    found = shutil.which("initdb")
    if found and shutil.which("pg_ctl"):
        return Path(found).resolve().parent
    versions = []
    for candidate in Path("/usr/lib/postgresql").glob("*/bin"):
        match = re.fullmatch(r"\d+", candidate.parent.name)
        if match and (candidate / "initdb").is_file() and (candidate / "pg_ctl").is_file():
            versions.append((int(candidate.parent.name), candidate))
    if not versions:
        raise PostgresUnavailable("initdb and pg_ctl are not installed (no PostgreSQL server)")
    return max(versions)[1]


class ThrowawayPostgres:
    """Start a private PostgreSQL server; ``url`` is a ``postgresql://`` URL to its ``postgres`` database."""

    def __init__(self, *, prefix: str = "scopectl-pg-") -> None:
        self.prefix = prefix
        self.base: Path | None = None
        self.bindir: Path | None = None
        self._as: list[str] = []
        self._started = False

    @property
    def socket_dir(self) -> Path:
        assert self.base is not None, "start the server first"
        return self.base

    def url(self, database: str = "postgres") -> str:
        """A URL to one of this server's databases (over the Unix socket)."""
        return f"postgresql://postgres@/{database}?host={self.socket_dir}"

    def _run(self, argv: list[str], *, what: str) -> str:
        env = {**os.environ, "LC_ALL": "C.UTF-8", "LANG": "C.UTF-8"}
        try:
            proc = subprocess.run(
                [*self._as, *argv],
                capture_output=True,
                text=True,
                timeout=STEP_TIMEOUT_S,
                check=False,
                env=env,
                cwd=self.base,
            )
        except FileNotFoundError as exc:
            raise PostgresUnavailable(f"{what}: {exc.filename} is not installed") from None
        except subprocess.TimeoutExpired:
            raise PostgresUnavailable(f"{what} took longer than {STEP_TIMEOUT_S:.0f} s") from None
        output = (proc.stdout + proc.stderr).strip()
        if proc.returncode != 0:
            last = next(
                (ln for ln in reversed(output.splitlines()) if ln.strip()), f"exit code {proc.returncode}"
            )
            raise PostgresUnavailable(f"{what} failed: {last.strip()[:300]}")
        return output

    def start(self) -> ThrowawayPostgres:
        """Create the cluster and start the server.

        Raises
        ------
        PostgresUnavailable
            If PostgreSQL is missing, or as root without a ``postgres`` user, or a step fails.
        """
        self.bindir = find_bindir()
        self.base = Path(tempfile.mkdtemp(prefix=self.prefix))
        try:
            if os.geteuid() == 0:
                try:
                    user = pwd.getpwnam("postgres")
                except KeyError:
                    raise PostgresUnavailable(
                        "PostgreSQL refuses to run as root and there is no 'postgres' user to run it as"
                    ) from None
                os.chown(self.base, user.pw_uid, user.pw_gid)
                self._as = ["runuser", "-u", "postgres", "--"]
            data = self.base / "data"
            self._run(
                [
                    str(self.bindir / "initdb"),
                    "-D",
                    str(data),
                    "-U",
                    "postgres",
                    "--auth=trust",
                    "-E",
                    "UTF8",
                    "--locale=C",
                    "--no-sync",
                ],
                what="initdb",
            )
            options = f"-k {self.base} -c listen_addresses='' -c fsync=off -c full_page_writes=off"
            self._run(
                [
                    str(self.bindir / "pg_ctl"),
                    "-D",
                    str(data),
                    "-l",
                    str(self.base / "server.log"),
                    "-w",
                    "-t",
                    str(int(STEP_TIMEOUT_S)),
                    "-o",
                    options,
                    "start",
                ],
                what="pg_ctl start",
            )
            self._started = True
        except BaseException:
            self.stop()
            raise
        return self

    def create_database(self, name: str) -> str:
        """Create a database; returns its URL."""
        if not re.fullmatch(r"[a-z][a-z0-9_]{0,62}", name):
            raise ValueError(f"database name {name!r}: use lower-case letters, digits and _")
        assert self.bindir is not None
        self._run(
            [str(self.bindir / "createdb"), "-h", str(self.socket_dir), "-U", "postgres", name],
            what=f"createdb {name}",
        )
        return self.url(name)

    def query(self, sql: str, *, database: str = "postgres") -> str:
        """Run one SQL statement with ``psql``; returns its unaligned output."""
        psql = shutil.which("psql") or (str(self.bindir / "psql") if self.bindir else "psql")
        return self._run(
            [psql, "-h", str(self.socket_dir), "-U", "postgres", "-d", database, "-tAc", sql], what="psql"
        )

    def stop(self) -> None:
        """Stop the server (fast shutdown) and remove its folder."""
        try:
            if self._started and self.bindir is not None and self.base is not None:
                with contextlib.suppress(PostgresUnavailable):  # already gone; the folder goes below
                    self._run(
                        [
                            str(self.bindir / "pg_ctl"),
                            "-D",
                            str(self.base / "data"),
                            "-m",
                            "fast",
                            "-w",
                            "-t",
                            str(int(STEP_TIMEOUT_S)),
                            "stop",
                        ],
                        what="pg_ctl stop",
                    )
                self._started = False
        finally:
            if self.base is not None:
                shutil.rmtree(self.base, ignore_errors=True)
                self.base = None

    def __enter__(self) -> ThrowawayPostgres:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
