"""The CLI contract: --version, --json as the last stdout line, one-line errors with exit codes, --debug."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from scopectl import __version__
from scopectl.cli.main import main
from scopectl.cli.runner import expand_variadic


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"scopectl {__version__}"


def test_store_ls_json_is_the_last_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--root", str(tmp_path), "store", "ls", "--json"]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert json.loads(last) == {"root": str(tmp_path), "slides": []}


def test_root_defaults_to_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SCOPECTL_ROOT", str(tmp_path / "envroot"))
    assert main(["store", "ls", "--json"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["root"] == str(tmp_path / "envroot")


def test_error_is_one_line_with_exit_code_and_no_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--root", str(tmp_path), "store", "info", "--slide", "nope"]) == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert err[0].startswith("error: ") and "nope.h5: no such slide file" in err[0]


def test_debug_shows_traceback(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--debug", "--root", str(tmp_path), "store", "info", "--slide", "nope"]) == 3
    assert "Traceback" in capsys.readouterr().err


def test_usage_error_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["store", "info"]) == 2
    assert "--slide" in capsys.readouterr().err


def test_expand_variadic_options() -> None:
    args = [
        "import",
        "--slide",
        "s",
        "--phone",
        "a.jpg",
        "b.jpg",
        "--benchtop",
        "m.tif",
        "--phone-um-per-px",
        "1",
    ]
    assert expand_variadic(args) == [
        "import",
        "--slide",
        "s",
        "--phone",
        "a.jpg",
        "--phone",
        "b.jpg",
        "--benchtop",
        "m.tif",
        "--phone-um-per-px",
        "1",
    ]
    assert expand_variadic(["enhance", "a", "b"]) == ["enhance", "a", "b"]


def test_console_script_runs_as_a_process(tmp_path: Path) -> None:
    exe = Path(sys.executable).with_name("scopectl")
    proc = subprocess.run(
        [str(exe), "--root", str(tmp_path), "store", "info", "--slide", "x"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "40"},
        check=False,
    )
    assert proc.returncode == 3
    assert len(proc.stderr.strip().splitlines()) == 1  # not wrapped, even on a narrow terminal
