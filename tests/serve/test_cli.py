"""``scopectl user add``, and the one-line errors of ``serve``, ``worker`` and ``upload`` (real CLI, in process)."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from scopectl.cli.main import main
from scopectl.serve.accounts import check_credentials
from scopectl.serve.db import Database, default_db_url


def test_user_add_prints_a_one_time_password_and_a_token_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "root"
    assert (
        main(
            [
                "--root",
                str(root),
                "user",
                "add",
                "field3",
                "--role",
                "clinic",
                "--clinic",
                "Field 3",
                "--json",
            ]
        )
        == 0
    )
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["name"] == "field3" and out["clinic"] == "Field 3" and out["api_token"].startswith("sct_")
    db = Database(default_db_url(root))
    with db.connect() as conn:
        assert check_credentials(conn, "field3", out["one_time_password"]) is not None
        assert check_credentials(conn, "field3", "wrong") is None
    db.dispose()
    assert main(["--root", str(root), "user", "add", "dr-x", "--role", "expert"]) == 0
    human = capsys.readouterr().out
    assert "one-time password:" in human and "API token:" in human and "Neither is shown again" in human
    for argv, message in [
        (["user", "add", "field3", "--role", "clinic", "--clinic", "Field 3"], "user 'field3' exists"),
        (["user", "add", "lonely", "--role", "clinic"], "needs a clinic"),
        (
            ["user", "add", "boss", "--role", "expert", "--clinic", "Field 3"],
            "only clinic users belong to a clinic",
        ),
        (["user", "add", "x", "--role", "god"], "not valid"),
        (["user", "add", "someone", "--role", "god"], "role 'god' is not one of clinic, expert, admin"),
    ]:
        assert main(["--root", str(root), *argv]) == 2, argv
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err


def test_serve_worker_and_upload_fail_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "root"
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        assert main(["--root", str(root), "serve", "--port", str(port)]) == 2
    assert f"cannot listen on 127.0.0.1:{port}" in capsys.readouterr().err
    assert main(["--root", str(root), "serve", "--db", "mysql://x@y/z"]) == 2
    assert "unsupported database 'mysql'" in capsys.readouterr().err
    assert main(["--root", str(tmp_path / "elsewhere"), "worker"]) == 2
    assert "not the data root of a scopectl server" in capsys.readouterr().err
    empty = tmp_path / "empty"
    (empty / "serve").mkdir(parents=True)
    assert main(["--root", str(empty), "worker", "--db", f"sqlite:///{tmp_path / 'new.sqlite3'}"]) == 2
    assert "schema revision none" in capsys.readouterr().err
    picture = tmp_path / "a.jpg"
    picture.write_bytes(b"\xff\xd8\xff")
    assert main(["upload", "--server", "ftp://x", "--token", "sct_x", "--case", "C", str(picture)]) == 2
    assert "not an http:// or https:// URL" in capsys.readouterr().err
    argv = ["upload", "--server", f"http://127.0.0.1:{port}", "--token", "sct_x", "--case", "C", str(picture)]
    assert main([*argv, "--timeout-s", "1"]) == 8  # nobody listens there any more
    assert "cannot reach http://127.0.0.1" in capsys.readouterr().err
