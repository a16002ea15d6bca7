"""A client of the HTTP API, for ``scopectl upload`` and scripts.

Every request has a timeout and every wait a total deadline.  Connection failures and 502/503/504 answers are
retried with a growing pause until the deadline; an upload retried after a lost answer is safe, because the
server recognises the same bytes in the same case (it answers with the existing capture).
"""

from __future__ import annotations

import mimetypes
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from scopectl import __version__
from scopectl.errors import ConfigError, InputFileError, ServerError

__all__ = ["ApiClient", "ServerError"]

_RETRY_STATUS = (502, 503, 504)
_CASE_ID = re.compile(r"^[0-9a-f]{16}$")


@dataclass
class ApiClient:
    """Talks to ``scopectl serve`` at ``server`` with an API token.

    Parameters
    ----------
    server
        Base URL, e.g. ``https://telepath.example.org`` or ``http://127.0.0.1:8000``.
    token
        An API token (``sct_...``), from ``scopectl user add`` or the admin page.
    timeout_s
        Total time allowed for one call, retries included.
    """

    server: str
    token: str
    timeout_s: float = 120.0
    sleep: Callable[[float], None] = time.sleep

    def __post_init__(self) -> None:
        if not re.match(r"^https?://[^/\s]+", self.server):
            raise ConfigError(f"--server {self.server!r} is not an http:// or https:// URL.")
        if not self.token.startswith("sct_"):
            raise ConfigError("the API token should start with sct_ (see scopectl user add).")
        self.server = self.server.rstrip("/")
        self._http = httpx.Client(
            base_url=self.server,
            headers={"Authorization": f"Bearer {self.token}", "User-Agent": f"scopectl/{__version__}"},
            timeout=httpx.Timeout(min(60.0, self.timeout_s), connect=10.0),
            follow_redirects=False,
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -------------------------------------------------------------------------------------------- plumbing
    def _call(
        self,
        method: str,
        path: str,
        *,
        files: Callable[[], dict[str, tuple[str, bytes, str]]] | None = None,
        **kwargs: Any,
    ) -> httpx.Response:
        deadline = time.monotonic() + self.timeout_s
        pause = 0.25
        while True:
            try:
                if files is not None:
                    kwargs["files"] = files()  # read again for each try
                response = self._http.request(method, path, **kwargs)
            except httpx.TransportError as exc:
                problem = f"cannot reach {self.server} ({type(exc).__name__}: {exc})"
            else:
                if response.status_code not in _RETRY_STATUS:
                    return response
                problem = f"{self.server} answered {response.status_code}"
            if time.monotonic() + pause > deadline:
                raise ServerError(
                    f"{problem}; gave up after {self.timeout_s:.0f} s.", hint="Is the server running?"
                )
            self.sleep(pause)
            pause = min(pause * 2, 5.0)

    @staticmethod
    def _check(response: httpx.Response, what: str) -> Any:
        if response.status_code >= 400:
            try:
                detail = response.json().get("detail", response.text)
            except ValueError:
                detail = response.text[:200]
            raise ServerError(f"{what}: the server answered {response.status_code}: {detail}")
        return response.json() if response.content else None

    # ----------------------------------------------------------------------------------------------- calls
    def health(self) -> dict[str, Any]:
        result: dict[str, Any] = self._check(self._call("GET", "/api/health"), "health")
        return result

    def resolve_case(self, case: str) -> dict[str, Any]:
        """A case by its server id or by the clinic's reference.

        Raises
        ------
        ServerError
            If no case (or more than one, for an expert's token) has that reference.
        """
        if _CASE_ID.match(case):
            response = self._call("GET", f"/api/cases/{case}")
            if response.status_code != 404:
                found: dict[str, Any] = self._check(response, f"case {case}")
                return found
        matches = self._check(self._call("GET", "/api/cases", params={"ref": case}), f"case {case}")
        if not matches:
            raise ServerError(
                f"no case {case!r} that this token may see.", hint="Create it first (the Cases page)."
            )
        if len(matches) > 1:
            clinics = ", ".join(sorted(m["clinic"] for m in matches))
            raise ServerError(
                f"case reference {case!r} exists in several clinics ({clinics}); use the case id."
            )
        result: dict[str, Any] = matches[0]
        return result

    def upload(self, case_id: str, path: Path, *, pixel_size_um: float | None = None) -> dict[str, Any]:
        """Upload one file to a case; returns the server's item (capture id, duplicate flag, status URL)."""
        path = Path(path)
        if not path.is_file():
            raise InputFileError(f"{path}: file not found.", hint="Check the path.")
        media = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        if not media.startswith("image/"):
            media = "application/octet-stream"

        def files() -> dict[str, tuple[str, bytes, str]]:
            return {"file": (path.name, path.read_bytes(), media)}

        data = {"pixel_size_um": f"{pixel_size_um}"} if pixel_size_um is not None else None
        response = self._call("POST", f"/api/cases/{case_id}/captures", files=files, data=data)
        body = self._check(response, str(path))
        item: dict[str, Any] = body["captures"][0]
        return item

    def capture(self, capture_id: str, *, wait_s: float = 0.0) -> dict[str, Any]:
        result: dict[str, Any] = self._check(
            self._call("GET", f"/api/captures/{capture_id}", params={"wait_s": wait_s}),
            f"capture {capture_id}",
        )
        return result

    def wait_done(self, capture_id: str, *, timeout_s: float) -> dict[str, Any]:
        """Wait until a capture is done or failed (long-polling), at most ``timeout_s``.

        Raises
        ------
        ServerError
            If it is still queued or running at the deadline.
        """
        deadline = time.monotonic() + timeout_s
        while True:
            remaining = deadline - time.monotonic()
            view = self.capture(capture_id, wait_s=max(0.0, min(25.0, remaining)))
            if view["status"] in ("done", "failed"):
                return view
            if time.monotonic() >= deadline:
                raise ServerError(
                    f"capture {capture_id} is still {view['status']} after {timeout_s:.0f} s.",
                    hint="Its status page shows when it is done; a worker may be missing (scopectl worker).",
                )
