"""Request and response bodies of the HTTP API (they make the OpenAPI schema at ``/openapi.json``)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "AssignmentIn",
    "CaptureOut",
    "CaseDetailOut",
    "CaseIn",
    "CaseOut",
    "HealthOut",
    "LoginIn",
    "MeOut",
    "NewUserOut",
    "PasswordIn",
    "ReportIn",
    "ReportOut",
    "UploadOut",
    "UserIn",
]

_REF = r"^[A-Za-z0-9][A-Za-z0-9 ._/-]{0,63}$"
_SAMPLE = r"^[a-z0-9][a-z0-9_-]{0,31}$"


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class LoginIn(_In):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1024)


class PasswordIn(_In):
    current_password: str = Field(min_length=1, max_length=1024)
    new_password: str = Field(min_length=1, max_length=1024)


class CaseIn(_In):
    ref: str = Field(pattern=_REF, description="The clinic's own case identifier (unique within the clinic).")
    sample_type: str = Field(pattern=_SAMPLE, description="e.g. lung, pap, blood: picks the model.")
    note: str = Field(default="", max_length=4000)
    pixel_size_um: float | None = Field(
        default=None, ge=0.05, le=20.0, description="Pixel size of this clinic's phone microscope (µm/px)."
    )
    clinic: str | None = Field(
        default=None, max_length=64, description="Admins only: the clinic of the case."
    )


class ReportIn(_In):
    text: str = Field(min_length=1, max_length=20000)


class UserIn(_In):
    name: str = Field(min_length=2, max_length=64)
    role: Literal["clinic", "expert", "admin"]
    clinic: str | None = Field(default=None, max_length=64)


class AssignmentIn(_In):
    model: str = Field(min_length=1, max_length=100)


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


class HealthOut(_Out):
    status: Literal["ok"]
    version: str
    database: str
    schema_revision: str | None
    queue: dict[str, int]
    workers_alive: int


class MeOut(_Out):
    name: str
    role: str
    clinic: str | None
    via: Literal["session", "token"]
    csrf_token: str | None = Field(
        description="Send it as X-CSRF-Token with changes made through the session."
    )
    must_change_password: bool


class LinksOut(_Out):
    self: str
    page: str
    input_dzi: str | None = None
    input_download: str | None = None
    input_original: str | None = None
    enhanced_dzi: str | None = None
    enhanced_download: str | None = None


class EnhancedOut(_Out):
    rows: int | None
    cols: int | None
    pixel_size_um: float | None
    resampled: bool | None


class JobOut(_Out):
    id: int
    state: Literal["queued", "running", "done", "failed"]
    attempts: int
    worker: str | None
    created_at: str | None
    started_at: str | None
    finished_at: str | None
    model: str | None
    model_sha256: str | None
    model_checked: bool | None
    device: str | None
    precision: str | None
    seconds: float | None
    input_pixel_size_um: float | None
    enhanced: EnhancedOut | None


class CaptureOut(_Out):
    id: str
    case_id: str
    display_name: str
    sha256: str
    bytes: int
    format: str
    rows: int
    cols: int
    pixel_size_um: float | None
    pixel_size_source: Literal["form", "case", "file", "unknown"]
    uploaded_at: str | None
    status: Literal["queued", "running", "done", "failed"]
    error: str | None
    job: JobOut | None
    links: LinksOut


class ReportOut(_Out):
    text: str
    author: str
    written_at: str | None
    versions: int


class CaseOut(_Out):
    id: str
    ref: str
    clinic: str
    sample_type: str
    note: str
    pixel_size_um: float | None
    created_at: str | None
    links: LinksOut
    captures: int
    reported: bool


class CaseDetailOut(_Out):
    id: str
    ref: str
    clinic: str
    sample_type: str
    note: str
    pixel_size_um: float | None
    created_at: str | None
    links: LinksOut
    captures: list[CaptureOut]
    report: ReportOut | None


class UploadItem(_Out):
    capture_id: str
    display_name: str
    sha256: str
    duplicate: bool = Field(description="The same bytes were already a capture of this case.")
    status_url: str


class UploadOut(_Out):
    captures: list[UploadItem]


class NewUserOut(_Out):
    name: str
    role: str
    clinic: str | None
    one_time_password: str
    api_token: str


class ModelOut(_Out):
    name: str
    state: Literal["checked", "unchecked", "refused", "broken"]
    warning: str | None
    card: dict[str, Any] | None
