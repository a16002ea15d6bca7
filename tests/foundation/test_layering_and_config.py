"""Layering (import-linter contract) and configuration loading errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import Field

from scopectl.config.base import StrictModel, load_model
from scopectl.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]


def test_image_code_never_imports_hardware() -> None:
    exe = Path(sys.executable).with_name("lint-imports")
    assert exe.is_file(), "import-linter is part of the test extras"
    proc = subprocess.run([str(exe)], cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "KEPT" in proc.stdout


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
