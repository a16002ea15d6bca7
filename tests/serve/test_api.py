"""The HTTP API against a real uvicorn server on 127.0.0.1: cases, uploads, the queue, downloads, tiles, reports."""

from __future__ import annotations

import hashlib
import io
import json
import xml.etree.ElementTree as ET
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest
import tifffile
from serve_support import Service, jpeg_bytes, png_bytes, sample_image, wait_status

from scopectl.cli.main import main


def _case(
    service: Service, user: str, ref: str, sample_type: str = "lung", **extra: object
) -> dict[str, object]:
    with service.client(user) as c:
        r = c.post("/api/cases", json={"ref": ref, "sample_type": sample_type, "note": "test case", **extra})
        assert r.status_code == 201, r.text
        return dict(r.json())


def test_health_and_the_openapi_schema_name_every_endpoint(service: Service) -> None:
    with service.client() as c:
        health = c.get("/api/health").json()
        schema = c.get("/openapi.json").json()
    assert health["status"] == "ok" and health["database"] == "sqlite" and health["schema_revision"] == "0001"
    assert health["workers_alive"] == 1
    paths = schema["paths"]
    for path, method in [
        ("/api/health", "get"),
        ("/api/auth/login", "post"),
        ("/api/auth/logout", "post"),
        ("/api/cases", "get"),
        ("/api/cases", "post"),
        ("/api/cases/{case_id}/captures", "post"),
        ("/api/captures/{capture_id}", "get"),
        ("/api/captures/{capture_id}/input", "get"),
        ("/api/captures/{capture_id}/enhanced", "get"),
        ("/api/captures/{capture_id}/dzi/{image}.dzi", "get"),
        ("/api/captures/{capture_id}/dzi/{image}_files/{level}/{tile}.jpeg", "get"),
        ("/api/cases/{case_id}/report", "put"),
    ]:
        assert method in paths.get(path, {}), f"{method.upper()} {path} is missing from /openapi.json"
    upload = paths["/api/cases/{case_id}/captures"]["post"]["requestBody"]["content"]
    assert "multipart/form-data" in upload


def test_upload_is_enhanced_and_downloads_carry_the_pixel_size(service: Service) -> None:
    case = _case(service, "clinic-a", "API-1")
    rgb = sample_image(96, 128, seed=1)
    data = jpeg_bytes(rgb)
    with service.client("clinic-a") as c:
        r = c.post(
            f"/api/cases/{case['id']}/captures",
            files={"file": ("field capture.jpg", data, "image/jpeg")},
            data={"pixel_size_um": "0.925"},
        )
        assert r.status_code == 201, r.text
        (item,) = r.json()["captures"]
        assert item["sha256"] == hashlib.sha256(data).hexdigest() and not item["duplicate"]
        first = c.get(item["status_url"]).json()
        assert first["status"] in ("queued", "running", "done")
        assert first["pixel_size_um"] == 0.925 and first["pixel_size_source"] == "form"
        done = wait_status(c, item["capture_id"])
        assert done["status"] == "done", done["error"]
        job = done["job"]
        assert job["model"] == "lung-identity" and job["model_checked"] is True and job["attempts"] == 1
        assert job["enhanced"] == {
            "rows": 240,
            "cols": 320,
            "pixel_size_um": pytest.approx(0.37),
            "resampled": False,
        }

        enhanced = c.get(done["links"]["enhanced_download"])
        assert enhanced.status_code == 200 and enhanced.headers["content-type"] == "image/tiff"
        assert "attachment" in enhanced.headers["content-disposition"]
        with tifffile.TiffFile(io.BytesIO(enhanced.content)) as tif:
            assert tif.is_ome
            out = tif.asarray()
            pixels = ET.fromstring(tif.ome_metadata).find(".//{*}Pixels")
        assert pixels is not None
        assert float(pixels.get("PhysicalSizeX", 0)) == pytest.approx(0.37)
        assert pixels.get("PhysicalSizeXUnit") == "µm"
        assert out.shape == (240, 320, 3)
        # the identity network: the enhanced image shrunk by 2.5 is the input (colours, rows, columns intact)
        decoded = cv2.cvtColor(
            cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB
        )
        back = cv2.resize(out, (128, 96), interpolation=cv2.INTER_AREA)
        assert np.abs(back.astype(int) - decoded.astype(int))[4:-4, 4:-4].mean() < 6

        tiff = c.get(f"/api/captures/{item['capture_id']}/enhanced", params={"format": "tiff"})
        with tifffile.TiffFile(io.BytesIO(tiff.content)) as tif:
            assert not tif.is_ome  # OpenSlide's generic tiled TIFF, resolution in pixels per centimetre
            assert tif.pages.first.tags["ResolutionUnit"].value == tifffile.RESUNIT.CENTIMETER
            num, den = tif.pages.first.tags["XResolution"].value
            assert 1e4 * den / num == pytest.approx(0.37, rel=1e-4)

        original = c.get(done["links"]["input_original"])
        assert original.content == data and original.headers["content-type"] == "image/jpeg"
        inp = c.get(done["links"]["input_download"])
        with tifffile.TiffFile(io.BytesIO(inp.content)) as tif:
            assert tif.asarray().shape == (96, 128, 3)
            assert 'PhysicalSizeX="0.925"' in tif.ome_metadata

        dzi = ET.fromstring(c.get(done["links"]["enhanced_dzi"]).content)
        assert dzi.get("TileSize") == "254" and dzi.get("Overlap") == "1"
        size = dzi.find("{*}Size")
        assert size is not None and (size.get("Width"), size.get("Height")) == ("320", "240")
        top = c.get(
            done["links"]["enhanced_dzi"].replace(".dzi", "_files/9/1_0.jpeg")
        )  # 320 wide: two columns
        assert top.status_code == 200 and top.headers["content-type"] == "image/jpeg"
        assert cv2.imdecode(np.frombuffer(top.content, np.uint8), cv2.IMREAD_COLOR).shape == (240, 67, 3)
        assert c.get(done["links"]["enhanced_dzi"].replace(".dzi", "_files/9/2_0.jpeg")).status_code == 404
        assert c.get(done["links"]["input_dzi"].replace(".dzi", "_files/0/0_0.jpeg")).status_code == 200

        # the same bytes again: the existing capture, not a second job (a safe retry)
        again = c.post(f"/api/cases/{case['id']}/captures", files={"file": ("again.jpg", data, "image/jpeg")})
        assert again.status_code == 200
        assert again.json()["captures"][0] == {**item, "display_name": "again.jpg", "duplicate": True}
        detail = c.get(f"/api/cases/{case['id']}").json()
        assert [cap["id"] for cap in detail["captures"]] == [item["capture_id"]]


def test_several_files_in_one_request_and_the_pixel_size_rules(service: Service) -> None:
    case = _case(service, "clinic-a", "API-2", pixel_size_um=1.85)  # twice the model's pixel: resampled
    with service.client("clinic-a") as c:
        files = [
            ("file", ("a.png", png_bytes(sample_image(64, 80, seed=2)), "image/png")),
            ("file", ("b.jpg", jpeg_bytes(sample_image(64, 80, seed=3)), "application/octet-stream")),
        ]
        r = c.post(f"/api/cases/{case['id']}/captures", files=files)
        assert r.status_code == 201, r.text
        items = r.json()["captures"]
        assert [i["display_name"] for i in items] == ["a.png", "b.jpg"]
        for item in items:
            done = wait_status(c, item["capture_id"])
            assert done["status"] == "done", done["error"]
            assert done["pixel_size_source"] == "case" and done["pixel_size_um"] == 1.85
            assert done["job"]["enhanced"]["resampled"] is True
            assert (done["job"]["enhanced"]["rows"], done["job"]["enhanced"]["cols"]) == (320, 400)


def test_scopectl_upload_uses_the_api_with_a_token(
    service: Service, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    case = _case(service, "clinic-a", "LAB 7/2026")
    files = []
    for seed in (4, 5):
        path = tmp_path / f"capture-{seed}.jpg"
        path.write_bytes(jpeg_bytes(sample_image(48, 64, seed=seed)))
        files.append(str(path))
    token = service.users["clinic-a"].token
    argv = [
        "upload",
        "--server",
        service.url,
        "--token",
        token,
        "--case",
        "LAB 7/2026",
        *files,
        "--wait",
        "--json",
    ]
    assert main(argv) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["case"] == case["id"] and [c["status"] for c in out["captures"]] == ["done", "done"]
    # a wrong token, an unknown case: one-line errors, non-zero exit codes
    assert (
        main(["upload", "--server", service.url, "--token", "sct_wrong", "--case", "LAB 7/2026", files[0]])
        == 8
    )
    assert "401" in capsys.readouterr().err
    assert main(["upload", "--server", service.url, "--token", token, "--case", "NO-SUCH", files[0]]) == 8
    assert "no case 'NO-SUCH'" in capsys.readouterr().err


def test_reports_are_written_by_experts_and_read_by_the_clinic(service: Service) -> None:
    case = _case(service, "clinic-a", "API-3")
    with service.client("clinic-a") as clinic, service.client("expert") as expert:
        assert clinic.get(f"/api/cases/{case['id']}/report").json() is None
        assert clinic.put(f"/api/cases/{case['id']}/report", json={"text": "mine"}).status_code == 403
        r = expert.put(
            f"/api/cases/{case['id']}/report", json={"text": "Adenocarcinoma, moderately differentiated."}
        )
        assert r.status_code == 200 and r.json()["author"] == "expert"
        expert.put(f"/api/cases/{case['id']}/report", json={"text": "Revised: adenocarcinoma."})
        report = clinic.get(f"/api/cases/{case['id']}/report").json()
        assert report["text"] == "Revised: adenocarcinoma." and report["versions"] == 2
        assert expert.post("/api/cases", json={"ref": "X", "sample_type": "lung"}).status_code == 403


def test_models_worse_than_bicubic_are_refused_and_unchecked_ones_warned_about(service: Service) -> None:
    with service.client("admin") as admin, service.client("expert") as expert:
        refused = admin.put("/api/admin/assignments/pap", json={"model": "worse-than-bicubic"})
        assert refused.status_code == 422 and "worse than bicubic" in refused.json()["detail"]
        models = {m["name"]: m for m in admin.get("/api/admin/models").json()}
        assert models["worse-than-bicubic"]["state"] == "refused"
        assert models["lung-identity"]["state"] == "checked" and models["lung-identity"]["warning"] is None
        unchecked = models["no-quality-record"]
        assert unchecked["state"] == "unchecked" and "no quality record" in unchecked["warning"]
        assert (
            admin.put("/api/admin/assignments/blood", json={"model": "no-quality-record"}).status_code == 200
        )
        card = expert.get("/api/models/no-quality-record").json()
        assert card["state"] == "unchecked" and card["warning"]
        assert expert.get("/api/admin/models").status_code == 403

    case = _case(service, "clinic-a", "API-4", sample_type="blood")
    with service.client("clinic-a") as c:
        r = c.post(
            f"/api/cases/{case['id']}/captures",
            files={"file": ("x.jpg", jpeg_bytes(sample_image(seed=6)), "image/jpeg")},
        )
        done = wait_status(c, r.json()["captures"][0]["capture_id"])
    assert done["status"] == "done" and done["job"]["model"] == "no-quality-record"
    assert done["job"]["model_checked"] is False


def test_a_sample_type_without_a_model_fails_with_a_reason_and_can_be_retried(service: Service) -> None:
    case = _case(service, "clinic-a", "API-5", sample_type="urine")
    with service.client("clinic-a") as c, service.client("admin") as admin:
        r = c.post(
            f"/api/cases/{case['id']}/captures",
            files={"file": ("u.jpg", jpeg_bytes(sample_image(seed=7)), "image/jpeg")},
        )
        capture_id = r.json()["captures"][0]["capture_id"]
        failed = wait_status(c, capture_id)
        assert failed["status"] == "failed"
        assert "no model is assigned to sample type 'urine'" in failed["error"]
        assert c.get(f"/api/captures/{capture_id}/enhanced").status_code == 409
        assert admin.put("/api/admin/assignments/*", json={"model": "lung-identity"}).status_code == 200
        retried = c.post(f"/api/captures/{capture_id}/retry")
        assert retried.status_code == 202
        assert c.post(f"/api/captures/{capture_id}/retry").status_code == 409  # queued, not failed
        done = wait_status(c, capture_id)
        assert (
            done["status"] == "done"
            and done["job"]["attempts"] == 1
            and done["job"]["model"] == "lung-identity"
        )
        admin.put("/api/admin/assignments/*", json={"model": "lung-identity"})


def test_the_audit_log_records_who_viewed_and_downloaded_what(service: Service) -> None:
    case = _case(service, "clinic-a", "API-6")
    with (
        service.client("clinic-a") as c,
        service.client("expert") as expert,
        service.client("admin") as admin,
    ):
        r = c.post(
            f"/api/cases/{case['id']}/captures",
            files={"file": ("v.jpg", jpeg_bytes(sample_image(seed=8)), "image/jpeg")},
        )
        capture_id = r.json()["captures"][0]["capture_id"]
        wait_status(c, capture_id)
        expert.get(f"/api/cases/{case['id']}")
        expert.get(f"/api/captures/{capture_id}/dzi/input.dzi")
        expert.get(f"/api/captures/{capture_id}/enhanced")
        log = admin.get("/api/admin/audit", params={"limit": 100}).json()
    mine = [(e["user"], e["action"], e["object_id"]) for e in log]
    assert ("clinic-a", "upload", capture_id) in mine
    assert ("expert", "view", case["id"]) in mine
    assert ("expert", "view", capture_id) in mine
    assert ("expert", "download", capture_id) in mine
    assert all(e["ip"] == "127.0.0.1" for e in log if e["user"] == "expert")


def test_admins_create_disable_and_reset_users(service: Service) -> None:
    with service.client("admin") as admin, service.client("clinic-a") as clinic:
        r = admin.post("/api/admin/users", json={"name": "newcomer", "role": "clinic", "clinic": "Gamma"})
        assert r.status_code == 201 and r.json()["clinic"] == "Gamma"
        token = r.json()["api_token"]
        assert (
            admin.post(
                "/api/admin/users", json={"name": "newcomer", "role": "clinic", "clinic": "Gamma"}
            ).status_code
            == 422
        )
        assert clinic.post("/api/admin/users", json={"name": "x1", "role": "admin"}).status_code == 403
        with httpx.Client(base_url=service.url, headers={"Authorization": f"Bearer {token}"}) as newcomer:
            assert newcomer.get("/api/me").json()["clinic"] == "Gamma"
            assert admin.post("/api/admin/users/newcomer/disable").status_code == 204
            assert newcomer.get("/api/me").status_code == 401
            assert admin.post("/api/admin/users/newcomer/enable").status_code == 204
            assert newcomer.get("/api/me").status_code == 200
            fresh = admin.post("/api/admin/users/newcomer/reset").json()
            assert newcomer.get("/api/me").status_code == 401  # the old token is gone
        with httpx.Client(
            base_url=service.url, headers={"Authorization": f"Bearer {fresh['api_token']}"}
        ) as again:
            assert again.get("/api/me").json()["name"] == "newcomer"
        assert admin.post("/api/admin/users/admin/disable").status_code == 409
        assert admin.post("/api/admin/users/nobody/disable").status_code == 404
        names = {u["name"]: u for u in admin.get("/api/admin/users").json()}
        assert names["newcomer"]["must_change_password"] is True and "password_hash" not in names["newcomer"]
