"""Layering (import-linter contract) and configuration loading errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import grimp
import pytest
from pydantic import Field

from scopectl.config.base import StrictModel, load_model
from scopectl.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]


def test_import_contracts_are_kept() -> None:
    """The layers contract and the forbidden contracts in pyproject.toml (lint-imports)."""
    exe = Path(sys.executable).with_name("lint-imports")
    assert exe.is_file(), "import-linter is part of the test extras"
    proc = subprocess.run([str(exe)], cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "KEPT" in proc.stdout


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def test_cycle_finder_finds_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles_between_packages() -> None:
    """No cycle among scopectl's packages and top-level modules (``scopectl.learn``, ``scopectl.metrics``),
    imports inside functions included."""
    depth = 2
    graph = grimp.build_graph("scopectl")
    edges: dict[str, set[str]] = {}
    for module in graph.modules:
        source = ".".join(module.split(".")[:depth])
        for imported in graph.find_modules_directly_imported_by(module):
            target = ".".join(imported.split(".")[:depth])
            if source != target and len(source.split(".")) == depth and len(target.split(".")) == depth:
                edges.setdefault(source, set()).add(target)
    assert _cycles(edges) == []


class _Exposure(StrictModel):
    exposure_ms: float = Field(gt=0, le=10_000)
    mode: str = "auto"


def test_config_errors_name_file_and_key(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text("exposure_ms: 12.5\n")
    assert load_model(_Exposure, good).exposure_ms == 12.5
    typo = tmp_path / "typo.yaml"
    typo.write_text("exposure_ms: 12\nexposre_ms: 3\n")
    with pytest.raises(ConfigError, match=r"typo.yaml: exposre_ms: unknown key"):
        load_model(_Exposure, typo)
    bound = tmp_path / "bound.json"
    bound.write_text('{"exposure_ms": -1}')
    with pytest.raises(ConfigError, match=r"bound.json: exposure_ms: Input should be greater than 0"):
        load_model(_Exposure, bound)
    broken = tmp_path / "broken.yaml"
    broken.write_text("exposure_ms: [1, 2\n")
    with pytest.raises(ConfigError, match="broken.yaml: not valid YAML"):
        load_model(_Exposure, broken)
    with pytest.raises(ConfigError, match="missing.yaml: file not found"):
        load_model(_Exposure, tmp_path / "missing.yaml")
    listy = tmp_path / "list.yaml"
    listy.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_model(_Exposure, listy)
