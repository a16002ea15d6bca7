"""Users, clinics, sessions, login throttling and the audit log.

Roles: ``clinic`` users belong to one clinic and see only its cases; ``expert`` users see every clinic's
cases and write reports; ``admin`` users also manage users, clinics and models.  A new user gets a one-time
password (to be changed at the first login in the browser) and an API token for scripts; both are shown
once and stored only as an argon2 hash and a SHA-256 digest.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Literal

from sqlalchemy import and_, delete, func, select
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from scopectl.errors import ConfigError
from scopectl.serve.db import audit, clinics, login_attempts, sessions, users
from scopectl.serve.security import (
    digest,
    hash_password,
    new_password,
    new_secret,
    new_token,
    password_problem,
    verify_password,
)

__all__ = [
    "ROLES",
    "NewUser",
    "Principal",
    "check_clinic_name",
    "check_user_name",
    "create_user",
    "ensure_clinic",
    "login_blocked",
    "record_audit",
    "record_login",
    "reset_credentials",
    "set_disabled",
]

ROLES = ("clinic", "expert", "admin")
Role = Literal["clinic", "expert", "admin"]
_USER_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{1,63}$")
_CLINIC_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._'()-]{0,63}$")


@dataclass(frozen=True)
class Principal:
    """Who makes a request, and how they proved it (a browser session or an API token)."""

    user_id: int
    name: str
    role: Role
    clinic_id: int | None
    clinic: str | None
    via: Literal["session", "token"]
    csrf_token: str | None = None
    session_hash: str | None = None
    must_change_password: bool = False

    def sees_all_clinics(self) -> bool:
        return self.role in ("expert", "admin")


@dataclass(frozen=True)
class NewUser:
    """A created user and the secrets to hand over (shown once)."""

    user_id: int
    name: str
    role: Role
    clinic: str | None
    password: str
    token: str


def check_user_name(name: str) -> str:
    if not _USER_RE.match(name):
        raise ConfigError(
            f"user name {name!r} is not valid.",
            hint="Use 2-64 lower-case letters, digits, '.', '_' or '-', starting with a letter or digit.",
        )
    return name


def check_clinic_name(name: str) -> str:
    if not _CLINIC_RE.match(name):
        raise ConfigError(
            f"clinic name {name!r} is not valid.",
            hint="Use up to 64 letters, digits, spaces and . _ ' ( ) -, starting with a letter or digit.",
        )
    return name


def ensure_clinic(conn: Connection, name: str) -> int:
    """The id of a clinic, created if it does not exist."""
    check_clinic_name(name)
    row = conn.execute(select(clinics.c.id).where(clinics.c.name == name)).first()
    if row is not None:
        return int(row.id)
    result = conn.execute(clinics.insert().values(name=name, created_at=time.time()))
    key = result.inserted_primary_key
    assert key is not None
    return int(key[0])


def create_user(conn: Connection, name: str, *, role: str, clinic: str | None) -> NewUser:
    """Create a user with a one-time password and an API token.

    Raises
    ------
    ConfigError
        If the name or role is invalid, the name is taken, a clinic user has no clinic or another role has one.
    """
    check_user_name(name)
    if role not in ROLES:
        raise ConfigError(f"role {role!r} is not one of {', '.join(ROLES)}.")
    if role == "clinic" and not clinic:
        raise ConfigError(f"a clinic user needs a clinic (--clinic) ({name}).")
    if role != "clinic" and clinic:
        raise ConfigError(f"only clinic users belong to a clinic; {role} {name} sees every clinic's cases.")
    if conn.execute(select(users.c.id).where(users.c.name == name)).first() is not None:
        raise ConfigError(f"user {name!r} exists.", hint="Choose another name.")
    clinic_id = ensure_clinic(conn, clinic) if clinic else None
    password, token = new_password(), new_token()
    try:
        result = conn.execute(
            users.insert().values(
                name=name,
                role=role,
                clinic_id=clinic_id,
                password_hash=hash_password(password),
                must_change_password=True,
                token_hash=digest(token),
                disabled=False,
                created_at=time.time(),
            )
        )
    except IntegrityError:
        raise ConfigError(f"user {name!r} exists.", hint="Choose another name.") from None
    key = result.inserted_primary_key
    assert key is not None
    return NewUser(int(key[0]), name, role, clinic, password, token)  # type: ignore[arg-type]


def reset_credentials(conn: Connection, name: str) -> NewUser:
    """A new one-time password and API token for a user; the old ones and every session stop working.

    Raises
    ------
    ConfigError
        If there is no such user.
    """
    row = conn.execute(
        select(users.c.id, users.c.role, clinics.c.name.label("clinic"))
        .select_from(users.outerjoin(clinics, users.c.clinic_id == clinics.c.id))
        .where(users.c.name == name)
    ).first()
    if row is None:
        raise ConfigError(f"no user {name!r}.")
    password, token = new_password(), new_token()
    conn.execute(
        users.update()
        .where(users.c.id == row.id)
        .values(password_hash=hash_password(password), must_change_password=True, token_hash=digest(token))
    )
    conn.execute(delete(sessions).where(sessions.c.user_id == row.id))
    return NewUser(int(row.id), name, row.role, row.clinic, password, token)


def set_disabled(conn: Connection, name: str, *, disabled: bool) -> None:
    """Disable a user (their sessions end, their token stops working) or enable them again.

    Raises
    ------
    ConfigError
        If there is no such user.
    """
    row = conn.execute(select(users.c.id).where(users.c.name == name)).first()
    if row is None:
        raise ConfigError(f"no user {name!r}.")
    conn.execute(users.update().where(users.c.id == row.id).values(disabled=disabled))
    if disabled:
        conn.execute(delete(sessions).where(sessions.c.user_id == row.id))


def _principal(
    conn: Connection, user_id: int, *, via: Literal["session", "token"], **extra: object
) -> Principal | None:
    row = conn.execute(
        select(users, clinics.c.name.label("clinic_name"))
        .select_from(users.outerjoin(clinics, users.c.clinic_id == clinics.c.id))
        .where(users.c.id == user_id)
    ).first()
    if row is None or row.disabled:
        return None
    return Principal(
        user_id=int(row.id),
        name=str(row.name),
        role=row.role,
        clinic_id=row.clinic_id,
        clinic=row.clinic_name,
        via=via,
        must_change_password=bool(row.must_change_password) and via == "session",
        **extra,  # type: ignore[arg-type]
    )


def principal_from_token(conn: Connection, token: str) -> Principal | None:
    """The user whose API token this is (None for an unknown token or a disabled user)."""
    row = conn.execute(select(users.c.id).where(users.c.token_hash == digest(token))).first()
    return None if row is None else _principal(conn, int(row.id), via="token")


def principal_from_session(conn: Connection, session_id: str, *, now: float) -> Principal | None:
    """The user of a live browser session (None when unknown or expired)."""
    key = digest(session_id)
    row = conn.execute(select(sessions).where(sessions.c.id_hash == key)).first()
    if row is None or row.expires_at <= now:
        return None
    return _principal(conn, int(row.user_id), via="session", csrf_token=str(row.csrf_token), session_hash=key)


def check_credentials(conn: Connection, name: str, password: str) -> int | None:
    """The user id when the password is right and the user enabled (constant cost when the user is unknown)."""
    row = conn.execute(
        select(users.c.id, users.c.password_hash, users.c.disabled).where(users.c.name == name)
    ).first()
    ok = verify_password(None if row is None else str(row.password_hash), password)
    if not ok or row is None or row.disabled:
        return None
    return int(row.id)


def start_session(conn: Connection, user_id: int, *, ttl_s: float) -> tuple[str, str]:
    """A new session for a user; returns ``(session id, CSRF token)``.  Expired sessions are swept."""
    now = time.time()
    conn.execute(delete(sessions).where(sessions.c.expires_at <= now))
    session_id, csrf = new_secret(), new_secret()
    conn.execute(
        sessions.insert().values(
            id_hash=digest(session_id),
            user_id=user_id,
            csrf_token=csrf,
            created_at=now,
            expires_at=now + ttl_s,
        )
    )
    return session_id, csrf


def end_session(conn: Connection, session_hash: str) -> None:
    conn.execute(delete(sessions).where(sessions.c.id_hash == session_hash))


def change_password(conn: Connection, principal: Principal, *, old: str, new: str) -> None:
    """Set a new password after checking the old one; ends the user's other sessions.

    Raises
    ------
    ConfigError
        If the old password is wrong or the new one unacceptable.
    """
    if check_credentials(conn, principal.name, old) != principal.user_id:
        raise ConfigError("the current password is wrong.")
    problem = password_problem(new, username=principal.name)
    if problem:
        raise ConfigError(f"{problem}.")
    if new == old:
        raise ConfigError("the new password must differ from the one-time password.")
    conn.execute(
        users.update()
        .where(users.c.id == principal.user_id)
        .values(password_hash=hash_password(new), must_change_password=False)
    )
    keep = principal.session_hash or ""
    conn.execute(
        delete(sessions).where(and_(sessions.c.user_id == principal.user_id, sessions.c.id_hash != keep))
    )


def login_blocked(
    conn: Connection, *, name: str, ip: str, window_s: float, per_user: int, per_ip: int
) -> float:
    """Seconds until another login may be tried for this user name or from this address (0: allowed now)."""
    since = time.time() - window_s
    waits = [0.0]
    for column, value, limit in (
        (login_attempts.c.username, name, per_user),
        (login_attempts.c.ip, ip, per_ip),
    ):
        failures = conn.execute(
            select(login_attempts.c.at)
            .where(and_(column == value, login_attempts.c.at > since, login_attempts.c.ok.is_(False)))
            .order_by(login_attempts.c.at.desc())
            .limit(limit)
        ).all()
        if len(failures) >= limit:
            oldest = float(failures[-1].at)
            waits.append(max(1.0, oldest + window_s - time.time()))
    return max(waits)


def record_login(conn: Connection, *, name: str, ip: str, ok: bool) -> None:
    conn.execute(login_attempts.insert().values(username=name[:64], ip=ip[:64], at=time.time(), ok=ok))


def record_audit(
    conn: Connection,
    principal: Principal | None,
    action: str,
    *,
    object_type: str,
    object_id: str,
    detail: str = "",
    ip: str = "",
    username: str | None = None,
) -> None:
    """One line of the audit log: who did what to which object, from where."""
    conn.execute(
        audit.insert().values(
            at=time.time(),
            user_id=None if principal is None else principal.user_id,
            username=(username or (principal.name if principal else "-"))[:64],
            action=action[:32],
            object_type=object_type[:16],
            object_id=object_id[:64],
            detail=detail[:2000],
            ip=ip[:64],
        )
    )


def count_users(conn: Connection) -> int:
    return int(conn.execute(select(func.count()).select_from(users)).scalar_one())
