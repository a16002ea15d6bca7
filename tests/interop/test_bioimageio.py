"""BioImage Model Zoo packages: `bioimageio test` passes, bioimageio.core predicts what `scopectl enhance`
does, and `scopectl enhance --model FILE.zip` loads only checksummed safetensors (never a pickle)."""

from __future__ import annotations

import io
import subprocess
import sys
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from interop_support import cli
from scopectl.errors import ModelError
from scopectl.learn.bioimageio_package import load_package
from scopectl.learn.modelio import load_model

pytest.importorskip("bioimageio.core")


@pytest.fixture
def package(model_dir: Path, tmp_path: Path) -> Path:
    from scopectl.interop.bioimageio import export_model

    # the full bioimageio test runs below through its own CLI, so the export skips its internal run
    out = export_model(model_dir, tmp_path / "m1.zip", authors=["A. Tester"], check=False)
    return out.path


@pytest.mark.slow
def test_package_passes_bioimageio_and_predicts_like_scopectl_enhance(
    package: Path, tmp_path: Path, model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bioimageio = Path(sys.executable).with_name("bioimageio")
    proc = subprocess.run(
        [str(bioimageio), "test", str(package)], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "passed" in proc.stdout

    with zipfile.ZipFile(package) as zf:
        rdf = yaml.safe_load(zf.read("rdf.yaml"))
        test_in = np.load(io.BytesIO(zf.read("test_input.npy")), allow_pickle=False)
        names = set(zf.namelist())
    assert {"weights.pt", "weights.torchscript.pt", "weights.onnx", "cover.png", "model.safetensors"} <= names
    assert set(rdf["weights"]) == {"pytorch_state_dict", "torchscript", "onnx"}
    (out_axes,) = [t["axes"] for t in rdf["outputs"]]
    (in_axes,) = [t["axes"] for t in rdf["inputs"]]
    assert in_axes[2]["scale"] / out_axes[2]["scale"] == 2.5  # the ×p/q output size through the scales
    assert out_axes[2]["halo"] * 2 / 5 > 12  # halo (input pixels) beyond the receptive-field radius
    assert rdf["config"]["scopectl"]["model_card"]["validation"]["ssim_network"] == 0.70

    # bioimageio.core prediction vs `scopectl enhance --model FILE.zip` on the test input
    from bioimageio.core import load_model_description, predict

    sample = predict(model=load_model_description(package), inputs={"input": test_in})
    theirs = np.moveaxis(sample.members["output"].data.values[0], 0, -1) * 255.0
    rgb = np.moveaxis(test_in[0], 0, -1)
    cv2.imwrite(str(tmp_path / "test.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    code, out = cli(
        [
            "enhance",
            str(tmp_path / "test.png"),
            "--model",
            str(package),
            "--out",
            str(tmp_path / "o"),
            "--precision",
            "fp32",
            "--json",
        ],
        capsys,
    )
    assert code == 0 and out["model"] == "m1"
    from scopectl.imageio import read_image

    ours = read_image(tmp_path / "o" / "test.ome.tif").rgb.astype(np.float64)
    halo = int(out_axes[2]["halo"])
    # bioimageio.core pads the image border by the halo (symmetric), scopectl pads zeros as in training: they
    # agree to 8-bit rounding everywhere but within the halo of the image edge
    inner = np.abs(ours - theirs)[halo:-halo, halo:-halo]
    assert inner.max() <= 0.5 + 1e-3
    direct, _ = load_model(model_dir)
    np.testing.assert_array_equal(ours, _enhance(direct, rgb))


def _enhance(net: object, rgb: np.ndarray) -> np.ndarray:
    from scopectl.learn.enhance import enhance_image

    return enhance_image(net, rgb).astype(np.float64)  # type: ignore[arg-type]


def _rewrite(
    src: Path, dest: Path, *, replace: dict[str, bytes] | None = None, drop: tuple[str, ...] = ()
) -> Path:
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dest, "w") as zout:
        for info in zin.infolist():
            if info.filename in drop:
                continue
            zout.writestr(info.filename, (replace or {}).get(info.filename, zin.read(info.filename)))
    return dest


def test_enhance_loads_the_package_and_refuses_tampered_or_foreign_ones(
    package: Path, tmp_path: Path
) -> None:
    net, card = load_model(package)
    assert card.name == "m1" and net.ratio == (5, 2)
    with zipfile.ZipFile(package) as zf:
        weights = bytearray(zf.read("model.safetensors"))
        rdf = yaml.safe_load(zf.read("rdf.yaml"))
    weights[-1] ^= 1
    with pytest.raises(ModelError, match="SHA-256"):
        load_package(_rewrite(package, tmp_path / "t.zip", replace={"model.safetensors": bytes(weights)}))
    # a package made by another tool: weights only as pickled state dict / TorchScript
    rdf.pop("attachments")
    foreign = _rewrite(
        package,
        tmp_path / "f.zip",
        replace={"rdf.yaml": yaml.safe_dump(rdf).encode()},
        drop=("model.safetensors", "model.json"),
    )
    with pytest.raises(ModelError, match="never pickled"):
        load_model(foreign)
    with zipfile.ZipFile(tmp_path / "evil.zip", "w") as zf:
        zf.writestr("rdf.yaml", "type: model\nformat_version: 0.5.4\n")
        zf.writestr("../outside.txt", "x")
    with pytest.raises(ModelError, match="plain relative path"):
        load_model(tmp_path / "evil.zip")
    with zipfile.ZipFile(tmp_path / "old.zip", "w") as zf:
        zf.writestr("rdf.yaml", "type: model\nformat_version: 0.4.10\n")
    with pytest.raises(ModelError, match="not 0.5"):
        load_model(tmp_path / "old.zip")


def test_export_refuses_without_author_or_over_an_existing_file(model_dir: Path, tmp_path: Path) -> None:
    from scopectl.errors import OutputError
    from scopectl.interop.bioimageio import export_model

    with pytest.raises(ModelError, match="author"):
        export_model(model_dir, tmp_path / "x.zip", authors=[" "])
    (tmp_path / "x.zip").write_bytes(b"keep")
    with pytest.raises(OutputError, match="exists"):
        export_model(model_dir, tmp_path / "x.zip", authors=["A"])
    assert (tmp_path / "x.zip").read_bytes() == b"keep"
