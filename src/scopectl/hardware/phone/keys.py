"""The ADB RSA key that authorises scopectl on a phone.

The key lives in ``$XDG_CONFIG_HOME/scopectl/adbkey`` (default ``~/.config/scopectl/adbkey``) with its
public half in ``adbkey.pub``, in exactly the format of the official client's ``~/.android/adbkey`` -- so a
key already authorised for ``adb`` works too, and is offered second.  The private key is created with mode
0600 in a 0700 directory and written atomically.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from pathlib import Path
from typing import Any

from adb_shell.auth.keygen import keygen, write_public_keyfile
from adb_shell.auth.sign_pythonrsa import PythonRSASigner

from scopectl.errors import ConfigError

__all__ = ["default_key_path", "ensure_key", "load_signers", "official_key_path"]


def default_key_path() -> Path:
    """``$XDG_CONFIG_HOME/scopectl/adbkey`` (``~/.config`` when the variable is unset or relative)."""
    base = os.environ.get("XDG_CONFIG_HOME", "")
    root = Path(base) if base and Path(base).is_absolute() else Path.home() / ".config"
    return root / "scopectl" / "adbkey"


def official_key_path() -> Path:
    """The official client's key, ``$ANDROID_USER_HOME/adbkey`` or ``~/.android/adbkey``."""
    base = os.environ.get("ANDROID_USER_HOME", "")
    return (Path(base) if base else Path.home() / ".android") / "adbkey"


def ensure_key(path: Path) -> Path:
    """Create the key pair at ``path`` (and ``path.pub``) unless it exists; tighten its permissions.

    Raises
    ------
    ConfigError
        When the key cannot be created or is unsafe (a symlink, not a regular file).
    """

    path = Path(path)
    if path.is_symlink() or (path.exists() and not path.is_file()):
        raise ConfigError(f"{path}: the ADB key must be a regular file, not a link or directory; remove it.")
    if path.exists():
        _tighten(path)
        if not Path(f"{path}.pub").is_file():
            _write_public_key(path)
        return path
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=".adbkey-", dir=path.parent) as tmp:
            os.chmod(tmp, 0o700)
            staged = Path(tmp) / "adbkey"
            keygen(str(staged))
            os.chmod(staged, 0o600)
            os.chmod(f"{staged}.pub", 0o644)
            os.replace(f"{staged}.pub", f"{path}.pub")
            os.replace(staged, path)
    except OSError as exc:
        raise ConfigError(
            f"{path}: cannot create the ADB key ({exc.strerror}); check the directory."
        ) from None
    return path


def _tighten(path: Path) -> None:
    """Make an existing private key owner-only (0600) when we own it."""
    try:
        info = path.stat()
        if info.st_uid == os.getuid() and stat.S_IMODE(info.st_mode) & 0o077:
            os.chmod(path, 0o600)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot check the ADB key's permissions ({exc.strerror}).") from None


def _write_public_key(path: Path) -> None:

    try:
        write_public_keyfile(str(path), f"{path}.pub")
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"{path}: not a usable ADB private key ({exc}); delete it to make a new one."
        ) from None


def _signer(path: Path) -> Any:

    try:
        return PythonRSASigner.FromRSAKeyPath(str(path))
    except (OSError, ValueError, TypeError, IndexError) as exc:
        raise ConfigError(
            f"{path}: not a usable ADB key pair ({exc}); delete it to make a new one."
        ) from None


def load_signers(key_path: Path | None = None, *, use_official: bool = True) -> list[Any]:
    """Signers to offer the phone: scopectl's key (created if needed), then the official client's key.

    Parameters
    ----------
    key_path
        scopectl's key; default :func:`default_key_path`.
    use_official
        Also offer ``~/.android/adbkey`` when it exists (a phone that already trusts ``adb`` then needs no
        new "Allow" tap).
    """
    own = ensure_key(Path(key_path) if key_path is not None else default_key_path())
    signers = [_signer(own)]
    official = official_key_path()
    if use_official and official.is_file() and Path(f"{official}.pub").is_file():
        with contextlib.suppress(ConfigError):
            if official.resolve() != own.resolve():
                signers.append(_signer(official))
    return signers
