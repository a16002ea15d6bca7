"""ONNX export: onnxruntime reproduces PyTorch's outputs for any image size and every ratio."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from scopectl.learn.modelio import ModelCard
from scopectl.learn.network import EnhanceNet, build_network
from scopectl.learn.onnx_export import build_onnx, check_onnx, export_onnx


def test_exported_model_matches_pytorch(tmp_path: Path, seeded_net: EnhanceNet) -> None:
    card = ModelCard(name="lung-v1", input_pixel_size_um=0.925, target_pixel_size_um=0.37, sample_type="lung")
    path = tmp_path / "m.onnx"
    diff = export_onnx(seeded_net, card, path)
    assert diff < 1e-5
    model = onnx.load(str(path))
    meta = {p.key: p.value for p in model.metadata_props}
    assert (
        meta["ratio"] == "5/2" and meta["name"] == "lung-v1" and float(meta["target_pixel_size_um"]) == 0.37
    )
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(1)
    for shape in [(2, 3, 31, 44), (1, 3, 60, 60)]:
        x = rng.random(shape, dtype=np.float32)
        got = session.run(["output"], {"input": x})[0]
        with torch.no_grad():
            want = seeded_net(torch.from_numpy(x)).numpy()
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=0, atol=2e-5)  # < 0.01 of an 8-bit level


@pytest.mark.parametrize("ratio", [(2, 1), (3, 1), (1, 1)])
def test_other_ratios_export(ratio: tuple[int, int]) -> None:
    torch.manual_seed(0)
    net = build_network(ratio).eval()
    assert check_onnx(net, build_onnx(net).SerializeToString(), shape=(21, 17)) < 1e-5
