"""Receiving ``multipart/form-data`` uploads as a stream, within limits, into the data root.

Files are written straight into ``<root>/serve/incoming/`` while they arrive (hashing them on the way),
never into the system's temporary folder, and the request is refused as soon as a limit is passed: the
bytes of a file, the number of files, the number and size of plain fields.  The client's file name is kept
only as display text (:func:`display_name`); no path is ever built from it.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import unicodedata
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from python_multipart.multipart import MultipartParser, parse_options_header

__all__ = ["FilePart", "Received", "UploadRejected", "display_name", "receive_multipart"]

MAX_FIELD_BYTES = 8 * 1024
MAX_FIELDS = 16


class UploadRejected(Exception):
    """The upload broke a rule; ``status`` is the HTTP status to answer (400, 413, 415)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class FilePart:
    """One received file: where it lies in ``incoming/``, its size, SHA-256 and what the client said."""

    field_name: str
    display_name: str
    declared_type: str
    path: Path
    size: int = 0
    sha256: str = ""


@dataclass
class Received:
    """The files and plain fields of one request; :meth:`cleanup` removes files not moved elsewhere."""

    files: list[FilePart] = field(default_factory=list)
    fields: dict[str, str] = field(default_factory=dict)

    def cleanup(self) -> None:
        for part in self.files:
            part.path.unlink(missing_ok=True)


def display_name(raw: str) -> str:
    """A client's file name reduced to safe display text: its last component, printable, ≤ 120 characters."""
    name = raw.replace("\\", "/").rsplit("/", 1)[-1]
    name = unicodedata.normalize("NFC", name)
    name = "".join(ch for ch in name if unicodedata.category(ch)[0] not in ("C", "Z") or ch == " ")
    name = re.sub(r"\s+", " ", name).strip().lstrip(".")
    return name[:120] or "capture"


class _State:
    def __init__(self, incoming: Path, *, max_file_bytes: int, max_files: int) -> None:
        self.incoming = incoming
        self.max_file_bytes = max_file_bytes
        self.max_files = max_files
        self.result = Received()
        self.headers: dict[str, bytes] = {}
        self.header_field = b""
        self.header_value = b""
        self.current: FilePart | None = None
        self.handle: IO[bytes] | None = None
        self.hasher = hashlib.sha256()
        self.field_name = ""
        self.field_value = bytearray()

    # header callbacks
    def on_part_begin(self) -> None:
        self.headers = {}

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self.header_field += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self.header_value += data[start:end]

    def on_header_end(self) -> None:
        self.headers[self.header_field.decode("latin-1").strip().lower()] = self.header_value.strip()
        self.header_field, self.header_value = b"", b""

    def on_headers_finished(self) -> None:
        disposition, params = parse_options_header(self.headers.get("content-disposition", b""))
        if disposition != b"form-data" or b"name" not in params:
            raise UploadRejected(400, "a part of the form has no Content-Disposition: form-data name.")
        name = params[b"name"].decode("utf-8", "replace")
        if b"filename" in params:
            if len(self.result.files) >= self.max_files:
                raise UploadRejected(413, f"at most {self.max_files} files per request.")
            path = self.incoming / f"{secrets.token_hex(12)}.part"
            self.current = FilePart(
                field_name=name,
                display_name=display_name(params[b"filename"].decode("utf-8", "replace")),
                declared_type=self.headers.get("content-type", b"application/octet-stream")
                .decode("latin-1")
                .lower(),
                path=path,
            )
            self.result.files.append(self.current)
            self.handle = open(path, "xb")  # noqa: SIM115 - closed in on_part_end or close()
            self.hasher = hashlib.sha256()
        else:
            if len(self.result.fields) >= MAX_FIELDS:
                raise UploadRejected(413, f"at most {MAX_FIELDS} form fields per request.")
            self.current = None
            self.field_name = name
            self.field_value = bytearray()

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        chunk = data[start:end]
        if self.current is not None and self.handle is not None:
            self.current.size += len(chunk)
            if self.current.size > self.max_file_bytes:
                raise UploadRejected(
                    413,
                    f"{self.current.display_name}: larger than the limit of {self.max_file_bytes:,} bytes.",
                )
            self.hasher.update(chunk)
            self.handle.write(chunk)
        else:
            self.field_value += chunk
            if len(self.field_value) > MAX_FIELD_BYTES:
                raise UploadRejected(
                    413, f"form field {self.field_name!r} is longer than {MAX_FIELD_BYTES} bytes."
                )

    def on_part_end(self) -> None:
        if self.current is not None and self.handle is not None:
            self.handle.flush()
            os.fsync(self.handle.fileno())
            self.handle.close()
            self.handle = None
            self.current.sha256 = self.hasher.hexdigest()
            if self.current.size == 0:  # an empty file input of a browser form: no capture
                self.current.path.unlink(missing_ok=True)
                self.result.files.remove(self.current)
            self.current = None
        else:
            self.result.fields[self.field_name] = self.field_value.decode("utf-8", "replace")

    def close(self) -> None:
        if self.handle is not None:
            self.handle.close()
            self.handle = None


async def receive_multipart(
    content_type: str,
    body: AsyncIterator[bytes],
    *,
    incoming: Path,
    max_file_bytes: int,
    max_files: int,
) -> Received:
    """Parse a ``multipart/form-data`` body as it streams in; files go to ``incoming/``.

    Raises
    ------
    UploadRejected
        415 if the body is not multipart/form-data, 413 when a limit is passed, 400 if it is malformed or
        cut short.  Files already written are removed before it is raised.
    """
    kind, params = parse_options_header(content_type)
    if kind != b"multipart/form-data" or not params.get(b"boundary"):
        raise UploadRejected(415, "send the files as multipart/form-data.")
    incoming.mkdir(parents=True, exist_ok=True, mode=0o700)
    state = _State(incoming, max_file_bytes=max_file_bytes, max_files=max_files)
    callbacks = {
        "on_part_begin": state.on_part_begin,
        "on_header_field": state.on_header_field,
        "on_header_value": state.on_header_value,
        "on_header_end": state.on_header_end,
        "on_headers_finished": state.on_headers_finished,
        "on_part_data": state.on_part_data,
        "on_part_end": state.on_part_end,
    }
    parser = MultipartParser(params[b"boundary"], callbacks)  # type: ignore[arg-type]
    try:
        async for chunk in body:
            parser.write(chunk)
        parser.finalize()
        if state.handle is not None or any(not f.sha256 for f in state.result.files):
            raise UploadRejected(400, "the upload was cut short (a file part has no end).")
    except UploadRejected:
        state.close()
        state.result.cleanup()
        raise
    except Exception as exc:  # python-multipart raises its own errors (and ValueError) on malformed bodies
        state.close()
        state.result.cleanup()
        if isinstance(exc, OSError):
            raise
        raise UploadRejected(400, f"malformed multipart body ({type(exc).__name__}).") from None
    return state.result
