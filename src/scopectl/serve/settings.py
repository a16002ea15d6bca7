"""The service's settings (one validated model; the CLI fills it from its options)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from scopectl.config.base import StrictModel

__all__ = ["ServeSettings"]


class ServeSettings(StrictModel):
    """Everything ``scopectl serve`` and ``scopectl worker`` are configured with.

    Sizes are in bytes and pixels, times in seconds.
    """

    root: Path
    db_url: str
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    #: Enhancement workers inside the server process (0: only separate ``scopectl worker`` processes).
    workers: int = Field(default=1, ge=0, le=16)
    device: str = "auto"
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    max_upload_bytes: int = Field(default=64 * 1024**2, ge=1024, le=4 * 1024**3)
    max_files_per_request: int = Field(default=20, ge=1, le=200)
    max_pixels: int = Field(default=50_000_000, ge=1024, le=1_000_000_000)
    #: A running job's lease; a worker renews it every third of it, and a job whose lease ran out is queued again.
    lease_s: float = Field(default=30.0, ge=2.0, le=3600.0)
    #: How often an idle worker looks for a job (the server's own workers are also woken by each upload).
    poll_s: float = Field(default=0.5, gt=0.0, le=60.0)
    #: Attempts before a job that keeps losing its worker is failed.
    max_attempts: int = Field(default=3, ge=1, le=20)
    session_ttl_s: float = Field(default=8 * 3600.0, ge=60.0, le=30 * 86400.0)
    #: Failed logins allowed per user name, and per client address, within ``login_window_s``.
    login_failures_per_user: int = Field(default=5, ge=1, le=1000)
    login_failures_per_ip: int = Field(default=20, ge=1, le=10000)
    login_window_s: float = Field(default=900.0, ge=1.0, le=86400.0)
    #: Mark cookies Secure even on plain HTTP requests (behind a TLS proxy that does not send X-Forwarded-Proto).
    secure_cookies: bool = False
    #: Addresses whose X-Forwarded-For/-Proto headers are believed (the reverse proxy's).
    forwarded_allow_ips: str = "127.0.0.1"
    #: The longest a status request may wait for a change (``?wait_s=``).
    max_wait_s: float = Field(default=30.0, ge=0.0, le=120.0)
