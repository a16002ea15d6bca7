"""Optional capabilities are found by using them, and one mechanism (the ``external`` marker) acts on them."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from scopectl import capabilities
from scopectl.capabilities import CAPABILITIES, Capability, probe
from scopectl.cli.main import main

REPO = Path(__file__).resolve().parents[2]


def _root_conftest() -> ModuleType:
    """``tests/conftest.py`` itself (``import conftest`` could find another folder's conftest)."""
    spec = importlib.util.spec_from_file_location("scopectl_root_conftest", REPO / "tests" / "conftest.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _needs_a_missing_program(tmp: Path) -> str:
    return capabilities._run(["scopectl-no-such-program", "--version"], tmp, what="the version")


def _compiles_nothing(tmp: Path) -> str:
    # a program that exists but cannot do the job: the probe must look at what it did, not at PATH
    return capabilities._run(
        [sys.executable, "-c", "import sys; sys.exit('ld: cannot find libX.a')"], tmp, what="link"
    )


@pytest.fixture
def fake_capabilities(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setitem(
        CAPABILITIES,
        "fake-missing",
        Capability("fake-missing", "a test", "install with: apt-get install fake", _needs_a_missing_program),
    )
    monkeypatch.setitem(
        CAPABILITIES,
        "fake-broken",
        Capability("fake-broken", "a test", "install with: apt-get install broken", _compiles_nothing),
    )
    probe.cache_clear()
    yield
    probe.cache_clear()


@pytest.mark.usefixtures("fake_capabilities")
def test_a_missing_or_broken_program_is_reported_with_the_failing_step_and_the_package() -> None:
    missing = probe("fake-missing")
    assert not missing.ok
    assert "scopectl-no-such-program is not installed" in missing.detail
    broken = probe("fake-broken")
    assert not broken.ok
    assert broken.detail == "link failed: ld: cannot find libX.a"
    assert broken.reason().endswith("install with: apt-get install broken")


class _Item:
    def __init__(self, *names: str) -> None:
        self.marks = [pytest.mark.external(*names).mark]

    def iter_markers(self, name: str) -> Iterator[pytest.Mark]:
        return iter(m for m in self.marks if m.name == name)


@pytest.mark.usefixtures("fake_capabilities")
def test_the_marker_skips_without_the_capability_and_fails_when_it_is_required(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    root_conftest = _root_conftest()
    item = _Item("fake-missing")
    monkeypatch.delenv("SCOPECTL_REQUIRE_EXTERNAL", raising=False)
    with pytest.raises(pytest.skip.Exception, match=r"fake-missing.*apt-get install fake"):
        root_conftest.pytest_runtest_setup(item)  # type: ignore[arg-type]
    monkeypatch.setenv("SCOPECTL_REQUIRE_EXTERNAL", "1")
    with pytest.raises(pytest.fail.Exception, match=r"SCOPECTL_REQUIRE_EXTERNAL=1 but .*fake-missing"):
        root_conftest.pytest_runtest_setup(item)  # type: ignore[arg-type]
    with pytest.raises(pytest.fail.Exception, match="unknown capability"):
        root_conftest.pytest_runtest_setup(_Item("no-such-capability"))  # type: ignore[arg-type]


def test_every_test_needing_a_capability_says_so_with_the_marker_only() -> None:
    """No test looks a program up on PATH by itself; the marker is the one mechanism."""
    offenders = []
    for path in (REPO / "tests").rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        if re.search(r"shutil\.which\(|require_programs\(", text):
            offenders.append(str(path.relative_to(REPO)))
    assert offenders == []


def test_doctor_lists_every_capability(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["doctor", "--json", "--only", "adb", "--only", "bf16"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert [c["name"] for c in out["capabilities"]] == ["adb", "bf16"]
    assert all(isinstance(c["ok"], bool) and c["detail"] for c in out["capabilities"])
    assert set(out["missing"]) == {c["name"] for c in out["capabilities"] if not c["ok"]}
    assert main(["doctor", "--only", "warp-drive"]) == 2
    assert "unknown capability warp-drive" in capsys.readouterr().err


def _ci_packages() -> list[str]:
    text = (REPO / ".ci" / "run").read_text(encoding="utf-8")
    match = re.search(r"^APT_PACKAGES=\(([^)]*)\)", text, re.M)
    assert match is not None
    return match.group(1).split()


def test_readme_ci_and_doctor_name_the_same_debian_packages() -> None:
    packages = _ci_packages()
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    lines = [ln for ln in readme.splitlines() if ln.startswith("sudo apt-get install ")]
    assert len(lines) == 1, "README gives exactly one apt-get line"
    assert lines[0].split()[3:] == packages
    advised = set()
    for cap in CAPABILITIES.values():
        if cap.remedy.startswith("install with: sudo apt-get install "):
            advised |= set(cap.remedy.split()[5:])
    assert advised == set(packages)


def test_doctor_runs_as_a_command() -> None:
    exe = Path(sys.executable).with_name("scopectl")
    proc = subprocess.run(
        [str(exe), "doctor", "--only", "host-cxx"], capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("host-cxx")
