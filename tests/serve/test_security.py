"""Each security rule of the service, tested against the real server: credentials, clinics, CSRF, uploads, logins."""

from __future__ import annotations

import contextlib
import re
import sqlite3
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest
from serve_support import Service, jpeg_bytes, png_bytes, sample_image, wait_status

from scopectl.serve.settings import ServeSettings


@pytest.fixture(scope="module")
def alpha_capture(service: Service) -> tuple[str, str]:
    """A case of clinic Alpha with one enhanced capture: (case id, capture id)."""
    with service.client("clinic-a") as c:
        case = c.post("/api/cases", json={"ref": "SEC-1", "sample_type": "lung"}).json()
        r = c.post(
            f"/api/cases/{case['id']}/captures",
            files={"file": ("s.jpg", jpeg_bytes(sample_image(seed=11)), "image/jpeg")},
        )
        capture_id = r.json()["captures"][0]["capture_id"]
        done = wait_status(c, capture_id)
        assert done["status"] == "done"
    return case["id"], capture_id


def _protected(case_id: str, capture_id: str, job: str) -> list[tuple[str, str]]:
    return [
        ("GET", "/api/me"),
        ("GET", "/api/cases"),
        ("POST", "/api/cases"),
        ("GET", f"/api/cases/{case_id}"),
        ("POST", f"/api/cases/{case_id}/captures"),
        ("GET", f"/api/cases/{case_id}/report"),
        ("PUT", f"/api/cases/{case_id}/report"),
        ("GET", f"/api/captures/{capture_id}"),
        ("POST", f"/api/captures/{capture_id}/retry"),
        ("GET", f"/api/captures/{capture_id}/input"),
        ("GET", f"/api/captures/{capture_id}/input?format=original"),
        ("GET", f"/api/captures/{capture_id}/enhanced"),
        ("GET", f"/api/captures/{capture_id}/thumbnail.jpeg"),
        ("GET", f"/api/captures/{capture_id}/dzi/input.dzi"),
        ("GET", f"/api/captures/{capture_id}/dzi/{job}_files/0/0_0.jpeg"),
        ("GET", "/api/models/lung-identity"),
        ("GET", "/api/admin/users"),
        ("GET", "/api/admin/audit"),
    ]


def test_every_endpoint_but_health_needs_credentials(
    service: Service, alpha_capture: tuple[str, str]
) -> None:
    case_id, capture_id = alpha_capture
    with service.client("clinic-a") as c:
        job = f"job-{c.get(f'/api/captures/{capture_id}').json()['job']['id']}"
    with service.client() as anonymous:
        for method, path in _protected(case_id, capture_id, job):
            for headers in ({}, {"Authorization": "Bearer sct_not-a-token"}, {"Authorization": "Basic YTpi"}):
                r = anonymous.request(method, path, headers=headers)
                assert r.status_code == 401, f"{method} {path} with {headers}: {r.status_code}"
                assert r.json()["detail"]
        assert anonymous.get("/api/health").status_code == 200
        page = anonymous.get(f"/cases/{case_id}")
        assert page.status_code == 303 and page.headers["location"].startswith("/login?next=")


def test_another_clinic_gets_404_exactly_like_a_missing_case(
    service: Service, alpha_capture: tuple[str, str]
) -> None:
    case_id, capture_id = alpha_capture
    with service.client("clinic-a") as a:
        job = f"job-{a.get(f'/api/captures/{capture_id}').json()['job']['id']}"
    missing_case, missing_capture = "0123456789abcdef", "fedcba9876543210"
    with service.client("clinic-b") as b:
        for method, path in _protected(case_id, capture_id, job):
            if "admin" in path or path in ("/api/me", "/api/cases") or path.startswith("/api/models"):
                continue
            seen = b.request(method, path, json={"text": "x"} if method == "PUT" else None)
            ghost = b.request(
                method,
                path.replace(case_id, missing_case).replace(capture_id, missing_capture),
                json={"text": "x"} if method == "PUT" else None,
            )
            if method == "PUT" or path.endswith("/captures") or path.endswith("/retry"):
                # role checks come first for clinic users writing reports; uploads and retries answer 404
                assert seen.status_code in (403, 404), (method, path, seen.status_code)
                assert seen.status_code == ghost.status_code
                continue
            assert seen.status_code == 404, f"{method} {path}: {seen.status_code}"
            assert seen.json() == ghost.json()
        assert all(c["id"] != case_id for c in b.get("/api/cases").json())
    with service.client("expert") as expert:
        assert expert.get(f"/api/cases/{case_id}").status_code == 200  # experts see every clinic


@contextlib.contextmanager
def _session(service: Service, user: str) -> Iterator[tuple[httpx.Client, str]]:
    """A browser-like client logged in through the JSON login (cookie + CSRF token)."""
    account = service.users[user]
    with httpx.Client(base_url=service.url, timeout=60.0, follow_redirects=False) as client:
        r = client.post("/api/auth/login", json={"username": account.name, "password": account.password})
        assert r.status_code == 200, r.text
        yield client, r.json()["csrf_token"]


def test_session_cookies_are_httponly_and_samesite_and_changes_need_the_csrf_token(service: Service) -> None:
    account = service.users["clinic-b"]
    with httpx.Client(base_url=service.url, timeout=60.0) as raw:
        r = raw.post("/api/auth/login", json={"username": account.name, "password": account.password})
        cookie = r.headers["set-cookie"]
        assert (
            "scopectl_session=" in cookie
            and "HttpOnly" in cookie
            and "SameSite=lax" in cookie
            and "Path=/" in cookie
        )
        # a login cannot be forged from another site's form: only JSON is accepted
        form = raw.post("/api/auth/login", data={"username": account.name, "password": account.password})
        assert form.status_code in (415, 422)

    with _session(service, "clinic-b") as (client, csrf):
        assert client.get("/api/me").json()["must_change_password"] is True
        # with the one-time password, nothing but the password change and log-out is allowed
        assert client.get("/api/cases").status_code == 403
        new = "clinic-b-own-password"
        bad = client.post(
            "/api/auth/password", json={"current_password": account.password, "new_password": new}
        )
        assert bad.status_code == 403  # no CSRF token
        ok = client.post(
            "/api/auth/password",
            json={"current_password": account.password, "new_password": new},
            headers={"X-CSRF-Token": csrf},
        )
        assert ok.status_code == 204
        account.password = new
        body = {"ref": "CSRF-1", "sample_type": "lung"}
        assert client.post("/api/cases", json=body).status_code == 403
        assert client.post("/api/cases", json=body, headers={"X-CSRF-Token": "forged"}).status_code == 403
        assert client.post("/api/cases", json=body, headers={"X-CSRF-Token": csrf}).status_code == 201
        # HTML forms carry the token in a hidden field
        page = client.get("/cases").text
        token = re.search(r'name="csrf_token" value="([^"]+)"', page)
        assert token and token.group(1) == csrf
        form = {"ref": "CSRF-2", "sample_type": "lung"}
        assert client.post("/cases", data=form).status_code == 403
        assert client.post("/cases", data={**form, "csrf_token": csrf}).status_code == 303
        upload = {"file": ("c.jpg", jpeg_bytes(sample_image(seed=12)), "image/jpeg")}
        case_id = client.get("/api/cases", params={"ref": "CSRF-2"}).json()[0]["id"]
        assert client.post(f"/api/cases/{case_id}/captures", files=upload).status_code == 403
        assert list((service.root / "serve" / "incoming").iterdir()) == []  # the refused upload left nothing
        assert (
            client.post(f"/api/cases/{case_id}/captures", files=upload, data={"csrf_token": csrf}).status_code
            == 201
        )
        # log out: the session is gone on the server, not only in the browser
        session_cookie = client.cookies["scopectl_session"]
        assert client.post("/api/auth/logout").status_code == 403
        assert client.post("/api/auth/logout", headers={"X-CSRF-Token": csrf}).status_code == 204
    with httpx.Client(base_url=service.url, cookies={"scopectl_session": session_cookie}) as replay:
        assert replay.get("/api/me").status_code == 401


def test_the_login_form_needs_its_own_csrf_cookie(service: Service) -> None:
    account = service.users["clinic-a"]
    with httpx.Client(base_url=service.url, timeout=60.0, follow_redirects=False) as c:
        data = {"username": account.name, "password": account.password, "csrf_token": "guess"}
        assert c.post("/login", data=data).status_code == 403
        page = c.get("/login")
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
        assert token is not None
        ok = c.post("/login", data={**data, "csrf_token": token.group(1), "next": "//evil.example/x"})
        assert ok.status_code == 303 and ok.headers["location"] == "/cases"  # never to another site


def test_logins_are_throttled_per_user(service: Service) -> None:
    account = service.users["throttled"]
    with httpx.Client(base_url=service.url, timeout=60.0) as c:
        for _ in range(5):
            assert (
                c.post(
                    "/api/auth/login", json={"username": "throttled", "password": "wrong-guess"}
                ).status_code
                == 401
            )
        blocked = c.post("/api/auth/login", json={"username": "throttled", "password": account.password})
        assert blocked.status_code == 429 and int(blocked.headers["retry-after"]) > 0
        # the throttle is per user name: another user still logs in
        other = service.users["clinic-a"]
        assert (
            c.post("/api/auth/login", json={"username": other.name, "password": other.password}).status_code
            == 200
        )


def _upload(service: Service, case_id: str, name: str, data: bytes, media: str) -> httpx.Response:
    with service.client("clinic-a") as c:
        return c.post(f"/api/cases/{case_id}/captures", files={"file": (name, data, media)})


def _png_header_only(cols: int, rows: int) -> bytes:
    """A PNG whose header claims ``cols × rows`` pixels, with a tiny compressed zero stream."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return (
            struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))
        )

    ihdr = struct.pack(">IIBBBBB", cols, rows, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 1000))
        + chunk(b"IEND", b"")
    )


def test_uploads_are_checked_by_content_and_limits_before_decoding(service: Service) -> None:
    with service.client("clinic-a") as c:
        case_id = c.post("/api/cases", json={"ref": "SEC-UP", "sample_type": "lung"}).json()["id"]
    jpeg = jpeg_bytes(sample_image(seed=13))
    png = png_bytes(sample_image(seed=14))
    # type by content, and a declared type that contradicts it
    assert (
        _upload(
            service, case_id, "x.jpg", b"<html><script>alert(1)</script></html>", "image/jpeg"
        ).status_code
        == 415
    )
    assert (
        _upload(
            service, case_id, "x.jpg", b"MZ\x90\x00" + b"\x00" * 100, "application/octet-stream"
        ).status_code
        == 415
    )
    mismatch = _upload(service, case_id, "photo.jpg", png, "image/jpeg")
    assert mismatch.status_code == 415 and "content is PNG" in mismatch.json()["detail"]
    # the decoder policy of `scopectl import`: truncated, grayscale
    truncated = _upload(service, case_id, "cut.jpg", jpeg[: len(jpeg) // 2], "image/jpeg")
    assert truncated.status_code == 422 and "cut.jpg" in truncated.json()["detail"]
    gray = cv2.imencode(".png", np.full((40, 40), 128, np.uint8))[1].tobytes()
    assert _upload(service, case_id, "gray.png", gray, "image/png").status_code == 422
    # too many bytes (limit 2 MB here): refused while streaming
    big = _upload(
        service, case_id, "big.jpg", jpeg[:-2] + b"\x00" * (2 * 1024**2) + b"\xff\xd9", "image/jpeg"
    )
    assert big.status_code == 413
    # too many pixels (limit 4 MP here): refused from the header, before decoding
    assert (
        _upload(service, case_id, "claims.png", _png_header_only(30000, 30000), "image/png").status_code
        == 413
    )
    bomb = cv2.imencode(".png", np.zeros((2500, 2500, 3), np.uint8))[
        1
    ].tobytes()  # 6.25 MP of zeros in a few kB
    assert len(bomb) < 100_000
    r = _upload(service, case_id, "bomb.png", bomb, "image/png")
    assert r.status_code == 413 and "2500×2500" in r.json()["detail"]
    # not multipart at all
    with service.client("clinic-a") as c:
        assert (
            c.post(
                f"/api/cases/{case_id}/captures", content=jpeg, headers={"content-type": "image/jpeg"}
            ).status_code
            == 415
        )
        assert c.get(f"/api/cases/{case_id}").json()["captures"] == []
    assert list((service.root / "serve" / "incoming").iterdir()) == []


def test_no_path_is_built_from_a_client_file_name(service: Service) -> None:
    with service.client("clinic-a") as c:
        case_id = c.post("/api/cases", json={"ref": "SEC-PATH", "sample_type": "lung"}).json()["id"]
    names = [
        "../../../../etc/cron.d/evil.jpg",
        "..\\..\\windows\\evil.jpg",
        "/abs/evil.jpg",
        ".hidden.jpg",
        "re\u202eport.jpg",
    ]
    shown = []
    for seed, name in enumerate(names, start=20):
        r = _upload(service, case_id, name, jpeg_bytes(sample_image(seed=seed)), "image/jpeg")
        assert r.status_code == 201, r.text
        shown.append(r.json()["captures"][0]["display_name"])
    assert shown == ["evil.jpg", "evil.jpg", "evil.jpg", "hidden.jpg", "report.jpg"]
    stored = {p.name for p in service.root.rglob("*")}
    assert not stored & {"evil.jpg", "hidden.jpg", ".hidden.jpg", "cron.d"}
    for p in (service.root / "serve" / "objects").rglob("*"):
        assert re.fullmatch(r"[0-9a-f]{2}|[0-9a-f]{64}", p.name), p
    with service.client("clinic-a") as c:
        for path in (
            "/api/captures/..%2F..%2Fetc%2Fpasswd",
            "/api/captures/../../etc/passwd/input",
            "/static/../serve/db.py",
        ):
            assert c.get(path).status_code == 404, path
        assert c.get("/api/models/..%2F..%2Fserve").status_code == 404


def test_secrets_are_stored_hashed_and_the_service_binds_to_loopback(service: Service) -> None:
    db = sqlite3.connect(service.root / "serve" / "scopectl.sqlite3")
    try:
        hashes = [row[0] for row in db.execute("SELECT password_hash FROM users")]
    finally:
        db.close()
    assert hashes and all(h.startswith("$argon2id$") for h in hashes)
    raw = b"".join(p.read_bytes() for p in (service.root / "serve").glob("scopectl.sqlite3*"))
    for account in service.users.values():
        assert account.token.encode() not in raw and account.password.encode() not in raw
    assert (service.root / "serve" / "scopectl.sqlite3").stat().st_mode & 0o077 == 0
    assert ServeSettings(root=Path("."), db_url="sqlite:///x").host == "127.0.0.1"
    assert "listening on http://127.0.0.1:" in service.server.log_text()
    with service.client() as c:
        headers = c.get("/login").headers
    assert "frame-ancestors 'none'" in headers["content-security-policy"]
    assert "script-src 'self';" in headers["content-security-policy"]
    assert headers["x-content-type-options"] == "nosniff"
