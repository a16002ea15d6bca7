"""One real ``scopectl serve`` (uvicorn on 127.0.0.1, SQLite, one worker thread) shared by the service's tests.

It starts with small limits (2 MB files, 4 megapixels) so the limit tests send small bodies.  Users: an admin,
two clinic users of two clinics (Alpha, Beta), an expert, and spare users for the login throttle.  Models: an
identity network that serves ``lung`` (quality checked), one without a quality record and one worse than
bicubic, and an inverting network that serves ``pap`` (the browser tests see it).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from serve_support import ServerProcess, Service, add_users, save_identity_model, sqlite_url


@pytest.fixture(scope="session")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    base = tmp_path_factory.mktemp("serve")
    root = base / "root"
    root.mkdir()
    save_identity_model(root, "lung-identity")
    save_identity_model(root, "no-quality-record", quality="unchecked")
    save_identity_model(root, "worse-than-bicubic", quality="worse")
    save_identity_model(root, "pap-inverted", invert=True)
    users = add_users(
        sqlite_url(root),
        [
            ("admin", "admin", None),
            ("clinic-a", "clinic", "Alpha"),
            ("clinic-b", "clinic", "Beta"),
            ("expert", "expert", None),
            ("browser-a", "clinic", "Alpha"),
            ("browser-expert", "expert", None),
            ("browser-b", "clinic", "Beta"),
            ("throttled", "clinic", "Alpha"),
        ],
    )
    server = ServerProcess(root, ["--max-upload-mb", "2", "--max-megapixels", "4", "--workers", "1"]).start()
    svc = Service(root, server, users)
    with svc.client("admin") as admin:
        for sample_type, model in (("lung", "lung-identity"), ("pap", "pap-inverted")):
            r = admin.put(f"/api/admin/assignments/{sample_type}", json={"model": model})
            assert r.status_code == 200, r.text
    try:
        yield svc
    finally:
        code = server.stop()
        assert code == 0, f"the server did not stop cleanly ({code}):\n{server.log_text()[-3000:]}"
