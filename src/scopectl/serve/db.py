"""The service's database: its tables, engines for SQLite and PostgreSQL, migrations, and the time of the database.

SQLite (the default, ``<root>/serve/scopectl.sqlite3``) runs in WAL mode with ``synchronous=FULL`` and a busy
timeout, so the server, its worker threads and local ``scopectl worker`` processes share one file safely.
PostgreSQL (``--db postgresql://...``) serves several machines; workers claim jobs with
``SELECT ... FOR UPDATE SKIP LOCKED`` (:mod:`scopectl.serve.queue`).

Migrations are Alembic scripts in ``scopectl/serve/migrations/versions``; :func:`migrate` runs them under a
lock (a PostgreSQL advisory lock; SQLite's write lock), so two processes starting together do not race.  The
tables below are what the migrations build; a test compares the two.

Times are seconds since the epoch (floats).  Leases compare against the *database's* clock
(:class:`db_epoch`), so workers on machines whose clocks disagree still agree on whose lease has expired.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Boolean,
    Column,
    Engine,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    create_engine,
    event,
    inspect,
    select,
    text,
)
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import ArgumentError, OperationalError, SQLAlchemyError
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

from scopectl.errors import ConfigError

__all__ = [
    "SCHEMA_HEAD",
    "Database",
    "db_epoch",
    "default_db_url",
    "metadata",
    "normalise_url",
]

#: The Alembic revision this code expects (the newest migration).
SCHEMA_HEAD = "0001"

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

clinics = Table(
    "clinics",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(64), nullable=False, unique=True),
    Column("created_at", Float, nullable=False),
)

users = Table(
    "users",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(64), nullable=False, unique=True),
    Column("role", String(16), nullable=False),
    Column("clinic_id", Integer, ForeignKey("clinics.id"), nullable=True),
    Column("password_hash", String(255), nullable=False),
    Column("must_change_password", Boolean, nullable=False),
    Column("token_hash", String(64), nullable=True, unique=True),
    Column("disabled", Boolean, nullable=False),
    Column("created_at", Float, nullable=False),
)

sessions = Table(
    "sessions",
    metadata,
    Column("id_hash", String(64), primary_key=True),
    Column("user_id", Integer, ForeignKey("users.id"), nullable=False, index=True),
    Column("csrf_token", String(64), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("expires_at", Float, nullable=False),
)

login_attempts = Table(
    "login_attempts",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("username", String(64), nullable=False),
    Column("ip", String(64), nullable=False),
    Column("at", Float, nullable=False),
    Column("ok", Boolean, nullable=False),
    Index(None, "username", "at"),
    Index(None, "ip", "at"),
)

cases = Table(
    "cases",
    metadata,
    Column("id", String(16), primary_key=True),
    Column("clinic_id", Integer, ForeignKey("clinics.id"), nullable=False, index=True),
    Column("ref", String(64), nullable=False),
    Column("sample_type", String(32), nullable=False),
    Column("note", Text, nullable=False),
    Column("pixel_size_um", Float, nullable=True),
    Column("created_by", Integer, ForeignKey("users.id"), nullable=False),
    Column("created_at", Float, nullable=False),
    UniqueConstraint("clinic_id", "ref"),
)

captures = Table(
    "captures",
    metadata,
    Column("id", String(16), primary_key=True),
    Column("case_id", String(16), ForeignKey("cases.id"), nullable=False, index=True),
    Column("sha256", String(64), nullable=False),
    Column("bytes", Integer, nullable=False),
    Column("format", String(8), nullable=False),
    Column("rows", Integer, nullable=False),
    Column("cols", Integer, nullable=False),
    Column("pixel_size_um", Float, nullable=True),
    Column("pixel_size_source", String(16), nullable=False),
    Column("display_name", String(120), nullable=False),
    Column("uploaded_by", Integer, ForeignKey("users.id"), nullable=False),
    Column("uploaded_at", Float, nullable=False),
    UniqueConstraint("case_id", "sha256"),
)

jobs = Table(
    "jobs",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("capture_id", String(16), ForeignKey("captures.id"), nullable=False, index=True),
    Column("state", String(16), nullable=False, index=True),
    Column("attempts", Integer, nullable=False),
    Column("worker", String(128), nullable=True),
    Column("lease_until", Float, nullable=True),
    Column("created_at", Float, nullable=False),
    Column("started_at", Float, nullable=True),
    Column("finished_at", Float, nullable=True),
    Column("error", Text, nullable=True),
    Column("model_name", String(100), nullable=True),
    Column("model_sha256", String(64), nullable=True),
    Column("model_checked", Boolean, nullable=True),
    Column("device", String(32), nullable=True),
    Column("precision", String(8), nullable=True),
    Column("seconds", Float, nullable=True),
    Column("out_rows", Integer, nullable=True),
    Column("out_cols", Integer, nullable=True),
    Column("in_pixel_size_um", Float, nullable=True),
    Column("out_pixel_size_um", Float, nullable=True),
    Column("resampled", Boolean, nullable=True),
)

model_assignments = Table(
    "model_assignments",
    metadata,
    Column("sample_type", String(32), primary_key=True),
    Column("model_name", String(100), nullable=False),
    Column("assigned_by", Integer, ForeignKey("users.id"), nullable=True),
    Column("assigned_at", Float, nullable=False),
)

reports = Table(
    "reports",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("case_id", String(16), ForeignKey("cases.id"), nullable=False, index=True),
    Column("author_id", Integer, ForeignKey("users.id"), nullable=False),
    Column("text", Text, nullable=False),
    Column("created_at", Float, nullable=False),
)

audit = Table(
    "audit",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("at", Float, nullable=False, index=True),
    Column("user_id", Integer, ForeignKey("users.id"), nullable=True),
    Column("username", String(64), nullable=False),
    Column("action", String(32), nullable=False),
    Column("object_type", String(16), nullable=False),
    Column("object_id", String(64), nullable=False),
    Column("detail", Text, nullable=False),
    Column("ip", String(64), nullable=False),
)

workers = Table(
    "workers",
    metadata,
    Column("id", String(128), primary_key=True),
    Column("host", String(128), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("device", String(32), nullable=False),
    Column("started_at", Float, nullable=False),
    Column("last_seen", Float, nullable=False),
)


class db_epoch(FunctionElement[float]):  # noqa: N801 (a SQL function, named like one)
    """The database server's current time in seconds since the epoch (``SELECT db_epoch()``)."""

    type = Float()
    inherit_cache = True


@compiles(db_epoch, "postgresql")
def _epoch_pg(element: db_epoch, compiler: SQLCompiler, **kw: Any) -> str:
    return "EXTRACT(EPOCH FROM clock_timestamp())::float8"


@compiles(db_epoch, "sqlite")
def _epoch_sqlite(element: db_epoch, compiler: SQLCompiler, **kw: Any) -> str:
    return "((julianday('now') - 2440587.5) * 86400.0)"


def default_db_url(root: Path) -> str:
    """The embedded database of a data root: ``sqlite:///<root>/serve/scopectl.sqlite3``."""
    return f"sqlite:///{(Path(root) / 'serve' / 'scopectl.sqlite3').resolve()}"


def normalise_url(url: str) -> str:
    """Accept ``postgresql://`` and ``postgres://`` URLs (psycopg 3 driver) and ``sqlite:///`` paths.

    Raises
    ------
    ConfigError
        If the URL is not a SQLite or PostgreSQL URL.
    """
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ConfigError(
            f"--db {_redact(url)!r} is not a database URL.",
            hint="Use postgresql://USER@HOST/DB or sqlite:///PATH.",
        ) from None
    backend = parsed.get_backend_name()
    if backend in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    elif backend == "sqlite":
        if parsed.database in (None, "", ":memory:"):
            raise ConfigError("an in-memory SQLite database would lose every job.", hint="Name a file.")
        parsed = parsed.set(drivername="sqlite")
    else:
        raise ConfigError(
            f"--db {_redact(url)!r}: unsupported database {backend!r}.",
            hint="Use postgresql://... or sqlite:///...",
        )
    return parsed.render_as_string(hide_password=False)


def _redact(url: str) -> str:
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<unparseable>"


class Database:
    """An engine for the service's database, and its migrations.

    Thread-safety: one :class:`Database` is shared by the server's request threads and worker threads; each
    use takes its own connection from the pool (:meth:`begin`, :meth:`connect`).
    """

    def __init__(self, url: str) -> None:
        self.url = normalise_url(url)
        self.dialect = make_url(self.url).get_backend_name()
        if self.dialect == "sqlite":
            path = make_url(self.url).database
            assert path is not None
            Path(path).parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))  # password hashes: owner only
            self.engine: Engine = create_engine(
                self.url, connect_args={"timeout": 30.0, "check_same_thread": False}
            )
            event.listen(self.engine, "connect", _sqlite_pragmas)
        else:
            self.engine = create_engine(
                self.url,
                pool_pre_ping=True,
                pool_size=10,
                max_overflow=20,
                connect_args={"connect_timeout": 10, "application_name": "scopectl"},
            )

    @property
    def display_url(self) -> str:
        """The URL without its password (for messages and logs)."""
        return _redact(self.url)

    @contextlib.contextmanager
    def begin(self) -> Iterator[Connection]:
        """A connection inside a transaction, committed on leaving (rolled back on an exception)."""
        with self.engine.begin() as conn:
            yield conn

    @contextlib.contextmanager
    def connect(self) -> Iterator[Connection]:
        """A connection for reads (autobegin; rolled back on leaving)."""
        with self.engine.connect() as conn:
            yield conn

    def revision(self) -> str | None:
        """The schema's Alembic revision (None for an empty database)."""
        try:
            with self.engine.connect() as conn:
                if not inspect(conn).has_table("alembic_version"):
                    return None
                row = conn.execute(text("SELECT version_num FROM alembic_version")).first()
        except OperationalError as exc:
            raise ConfigError(
                f"cannot open the database {self.display_url} ({_first_line(exc)}).",
                hint="Check the --db URL, that the server runs and that this user may connect.",
            ) from None
        return None if row is None else str(row[0])

    def migrate(self) -> str:
        """Bring the schema to :data:`SCHEMA_HEAD` (creating it in an empty database); return the revision."""
        # the web service's stack (SQLAlchemy, argon2, httpx ...) loads only for its commands
        from alembic import command
        from alembic.config import Config

        cfg = Config()
        cfg.set_main_option("script_location", str(Path(__file__).with_name("migrations")))
        try:
            with self.engine.begin() as conn:
                if self.dialect == "postgresql":
                    conn.execute(text("SELECT pg_advisory_xact_lock(7324011)"))  # serialise concurrent starts
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, "head")
        except OperationalError as exc:
            raise ConfigError(
                f"cannot migrate the database {self.display_url} ({_first_line(exc)}).",
                hint="Check the --db URL and that this user may create tables.",
            ) from None
        rev = self.revision()
        assert rev is not None
        return rev

    def require_current(self) -> None:
        """Refuse to run against a database whose schema is not the one this code expects.

        Raises
        ------
        ConfigError
            If the schema is missing (never served) or at another revision.
        """
        rev = self.revision()
        if rev != SCHEMA_HEAD:
            raise ConfigError(
                f"the database {self.display_url} is at schema revision {rev or 'none'}, this scopectl needs "
                f"{SCHEMA_HEAD}.",
                hint="Start `scopectl serve` with the same --db once (it migrates), and use the same "
                "scopectl version on every machine.",
            )

    def now(self) -> float:
        """The database server's clock, in seconds since the epoch."""

        with self.engine.connect() as conn:
            return float(conn.execute(select(db_epoch())).scalar_one())

    def dispose(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()


def _first_line(exc: SQLAlchemyError) -> str:
    orig = getattr(exc, "orig", None)
    text_ = str(orig if orig is not None else exc).strip()
    return text_.splitlines()[0] if text_ else type(exc).__name__


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=FULL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()
