"""The wheel carries what an installed scopectl needs at run time, not only the Python modules."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from scopectl.acquisition.protocol import find_protocol

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_wheel_ships_the_named_protocols_and_type_information(tmp_path: Path) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        check=True,
        timeout=300,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("scopectl-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for stem in ("lung-trichrome", "pap-smear", "blood-smear"):
        assert f"scopectl/data/protocols/{stem}.yaml" in names
    assert "scopectl/py.typed" in names
    # the web service: templates, its script, the vendored viewer with its licence, the migrations
    for name in (
        "scopectl/serve/templates/capture.html",
        "scopectl/serve/static/viewer.js",
        "scopectl/serve/static/app.css",
        "scopectl/serve/static/vendor/openseadragon/openseadragon.min.js",
        "scopectl/serve/static/vendor/openseadragon/LICENSE.txt",
        "scopectl/serve/static/vendor/openseadragon/VENDORED.json",
        "scopectl/serve/static/vendor/openseadragon/images/zoomin_rest.png",
        "scopectl/serve/migrations/env.py",
        "scopectl/serve/migrations/versions/0001_initial.py",
    ):
        assert name in names, name


def test_named_protocols_resolve_through_the_package_data() -> None:
    path = find_protocol("pap-smear")
    assert path.parent.name == "protocols" and path.parent.parent.name == "data"
    assert path.resolve() == (ROOT / "protocols" / "pap-smear.yaml").resolve()
