"""Secrets: argon2 password hashes, API tokens, session ids and CSRF tokens.

* Passwords are hashed with argon2id (argon2-cffi's defaults, RFC 9106's second recommended setting).
* API tokens (``sct_`` + 43 URL-safe characters, 256 bits) and session ids are stored only as SHA-256
  digests: a leaked database gives no usable token.  They are looked up by digest, so no comparison of
  secrets depends on how much of them matches.
* CSRF tokens are compared in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

__all__ = [
    "TOKEN_PREFIX",
    "digest",
    "hash_password",
    "new_id",
    "new_password",
    "new_secret",
    "new_token",
    "password_problem",
    "same_secret",
    "verify_password",
]

TOKEN_PREFIX = "sct_"
#: Shortest password a user may choose.
MIN_PASSWORD_LENGTH = 10

_hasher = PasswordHasher()
# A hash of a random password: verifying against it costs what a real check costs, so a login attempt for a
# user that does not exist takes as long as one with a wrong password (no user enumeration by timing).
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


def hash_password(password: str) -> str:
    """The argon2id hash of ``password`` (salted; the parameters are in the string)."""
    return _hasher.hash(password)


def verify_password(stored_hash: str | None, password: str) -> bool:
    """Whether ``password`` matches ``stored_hash``; ``None`` (no such user) costs the same and is False."""
    try:
        return _hasher.verify(stored_hash or _DUMMY_HASH, password) and stored_hash is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def password_problem(password: str, *, username: str) -> str | None:
    """Why ``password`` is not acceptable, or None."""
    if len(password) < MIN_PASSWORD_LENGTH:
        return f"a password needs at least {MIN_PASSWORD_LENGTH} characters"
    if len(password) > 1024:
        return "a password may have at most 1024 characters"
    if password.lower() == username.lower():
        return "the password may not be the user name"
    return None


def new_password() -> str:
    """A one-time password (16 URL-safe characters, 96 bits)."""
    return secrets.token_urlsafe(12)


def new_token() -> str:
    """An API token: ``sct_`` and 256 random bits."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def new_secret() -> str:
    """A session id or CSRF token (256 random bits, URL-safe)."""
    return secrets.token_urlsafe(32)


def new_id() -> str:
    """A public identifier of a case or capture (16 hex digits; never derived from client input)."""
    return secrets.token_hex(8)


def digest(secret: str) -> str:
    """The SHA-256 hex digest under which a token or session id is stored."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def same_secret(a: str | None, b: str | None) -> bool:
    """Constant-time equality of two secrets (False when either is missing or empty)."""
    if not a or not b:
        return False
    return hmac.compare_digest(a.encode("utf-8"), b.encode("utf-8"))
