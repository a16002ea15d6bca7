"""ONNX export of the paper's network, so that a phone (ONNX Runtime Mobile) or a browser (onnxruntime-web)
can run it.

The graph is written directly with :mod:`onnx.helper` from the network's weights rather than traced: the
network is a fixed sequence of ``Sub`` (centring), ``Conv``, ``Relu``, ``Pad`` (the zero-padded shortcuts),
``Add``, ``DepthToSpace`` (``CRD`` mode = ``torch.nn.PixelShuffle``), a strided ``Conv`` and ``Add``
(un-centring), so the graph is small,
readable, has dynamic batch and image sizes, and does not depend on PyTorch's exporters (the TorchScript
one is deprecated; the ``torch.export`` one needs ``onnxscript``).

Input ``input``: float32 ``N×3×H×W`` with RGB values in [0, 1] (uint8 / 255).  Output ``output``: float32
``N×3×⌈H·p/q⌉×⌈W·p/q⌉`` on the same scale, to be clamped to [0, 1] and multiplied by 255.  The model card's
fields are stored as ONNX metadata properties.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from scopectl.errors import ModelError
from scopectl.learn.modelio import ModelCard, atomic_write_bytes
from scopectl.learn.network import CENTRE, EnhanceNet

__all__ = ["OPSET", "build_onnx", "check_onnx", "export_onnx"]

OPSET = 17


def _require(module: str) -> None:

    if importlib.util.find_spec(module) is None:
        raise ModelError(
            f"ONNX export needs the '{module}' package, which is not installed.",
            hint="Install it with: pip install 'scopectl[onnx]' (onnx and onnxruntime).",
        )


@dataclass
class _Graph:
    """The ONNX nodes and initialisers being built, in order, with the state dict the weights come from."""

    state: dict[str, np.ndarray]
    nodes: list[Any] = field(default_factory=list)
    inits: list[Any] = field(default_factory=list)

    def const(self, value: np.ndarray, name: str) -> None:
        """Add the initialiser ``name`` holding ``value``."""
        from onnx import numpy_helper  # optional: the ONNX libraries load only to export or check ONNX

        self.inits.append(numpy_helper.from_array(value, name))

    def node(self, op: str, inputs: list[str], outputs: list[str], *, name: str, **attrs: Any) -> None:
        """Add the node ``name`` computing ``op`` on ``inputs``."""
        from onnx import helper  # optional: the ONNX libraries load only to export or check ONNX

        self.nodes.append(helper.make_node(op, inputs, outputs, name=name, **attrs))

    def conv(self, name: str, src: str, dst: str, *, stride: int = 1) -> None:
        """Add the 3 × 3 convolution ``name`` (padding 1) with the weights and bias of that module."""
        self.const(self.state[f"{name}.weight"], f"{name}.weight")
        self.const(self.state[f"{name}.bias"], f"{name}.bias")
        self.node(
            "Conv",
            [src, f"{name}.weight", f"{name}.bias"],
            [dst],
            name=name,
            kernel_shape=[3, 3],
            pads=[1, 1, 1, 1],
            strides=[stride, stride],
        )

    def relu(self, src: str, dst: str) -> None:
        """Add a ReLU from ``src`` to ``dst``."""
        self.node("Relu", [src], [dst], name=f"{dst}.relu")


def build_onnx(model: EnhanceNet, card: ModelCard | None = None) -> Any:
    """An ``onnx.ModelProto`` computing the same function as ``model``."""
    _require("onnx")
    import onnx  # optional: the ONNX libraries load only to export or check ONNX

    # optional: the ONNX libraries load only to export or check ONNX
    from onnx import TensorProto, helper

    g = _Graph({k: v.detach().cpu().float().numpy() for k, v in model.state_dict().items()})
    p, q = model.ratio
    g.const(np.array(CENTRE, dtype=np.float32), "centre")
    g.node("Sub", ["input", "centre"], ["centred"], name="centre_input")
    g.conv("head", "centred", "head.out")
    g.relu("head.out", "x0")
    current = _add_blocks(g, model, "x0")
    g.conv("expand", current, "expand.out")
    g.relu("expand.out", "expand.relu")
    g.node("DepthToSpace", ["expand.relu"], ["shuffled"], name="shuffle", blocksize=p, mode="CRD")
    g.conv("tail", "shuffled", "tail.out", stride=q)
    if getattr(model, "residual", False):
        _add_bicubic_residual(g, p, q)
    else:
        g.node("Add", ["tail.out", "centre"], ["output"], name="uncentre_output")

    graph = helper.make_graph(
        g.nodes,
        "scopectl_enhance",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, "H", "W"])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["N", 3, "H_out", "W_out"])],
        initializer=g.inits,
    )
    proto = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="scopectl",
        doc_string="Rivenson et al. 2018 mobile-microscopy enhancement network; input RGB/255, NCHW float32.",
    )
    proto.ir_version = 8
    for key, value in _metadata(p, q, card).items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(proto)
    return proto


def _add_blocks(g: _Graph, model: EnhanceNet, current: str) -> str:
    """Add the residual blocks after ``current`` (zero-padding the shortcut where a block widens); their output."""
    for k, block in enumerate(model.blocks):
        prefix = f"blocks.{k}"
        g.conv(f"{prefix}.conv1", current, f"{prefix}.c1")
        g.relu(f"{prefix}.c1", f"{prefix}.r1")
        g.conv(f"{prefix}.conv2", f"{prefix}.r1", f"{prefix}.c2")
        g.relu(f"{prefix}.c2", f"{prefix}.r2")
        shortcut = current
        if block.extra:
            g.const(np.array([0, 0, 0, 0, 0, block.extra, 0, 0], dtype=np.int64), f"{prefix}.pads")
            g.node("Pad", [current, f"{prefix}.pads"], [f"{prefix}.shortcut"], name=f"{prefix}.pad")
            shortcut = f"{prefix}.shortcut"
        g.node("Add", [shortcut, f"{prefix}.r2"], [f"x{k + 1}"], name=f"{prefix}.add")
        current = f"x{k + 1}"
    return current


def _add_bicubic_residual(g: _Graph, p: int, q: int) -> None:
    """Add the global residual: ``output`` = ``tail.out`` + the input enlarged bicubically ×p/q.

    PyTorch's bicubic (a = −0.75, half-pixel centres), edge-padded by one pixel and cropped to the network's
    ⌈S·p/q⌉.
    """
    g.const(np.array([1.0, 1.0, p / q, p / q], dtype=np.float32), "up.scales")
    g.const(np.array([0, 0, 0, 0, 0, 0, 1, 1], dtype=np.int64), "up.pads")
    g.const(np.array([0, 0], dtype=np.int64), "up.starts")
    g.const(np.array([2, 3], dtype=np.int64), "up.axes")
    g.node(
        "Resize",
        ["input", "", "up.scales"],
        ["up.resized"],
        name="bicubic",
        mode="cubic",
        cubic_coeff_a=-0.75,
        coordinate_transformation_mode="half_pixel",
    )
    g.node("Pad", ["up.resized", "up.pads"], ["up.padded"], name="up.pad", mode="edge")
    g.node("Shape", ["tail.out"], ["up.shape"], name="up.shape", start=2)
    g.node("Slice", ["up.padded", "up.starts", "up.shape", "up.axes"], ["up.out"], name="up.crop")
    g.node("Add", ["tail.out", "up.out"], ["output"], name="add_bicubic")


def _metadata(p: int, q: int, card: ModelCard | None) -> dict[str, str]:
    """The ONNX model's metadata properties: the ratio and value range, and the model card's provenance."""
    meta = {"ratio": f"{p}/{q}", "value_range": "input uint8/255; output ×255 then clamp to 0..255"}
    if card is not None:
        meta.update(
            {
                "name": card.name,
                "input_pixel_size_um": repr(card.input_pixel_size_um),
                "target_pixel_size_um": repr(card.target_pixel_size_um),
                "sample_type": card.sample_type,
                "weights_sha256": card.weights_sha256,
                "model_card": card.model_dump_json(),
            }
        )
    return meta


def check_onnx(
    model: EnhanceNet, onnx_bytes: bytes, *, shape: tuple[int, int] = (37, 50), seed: int = 0
) -> float:
    """Run the ONNX model with onnxruntime on a random input; return the largest difference to PyTorch.

    Differences are in units of the [0, 1] output scale (multiply by 255 for 8-bit levels).
    """
    _require("onnxruntime")
    import onnxruntime as ort  # optional: the ONNX libraries load only to export or check ONNX

    session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(seed)
    x = rng.random((1, 3, *shape), dtype=np.float32)
    got = session.run(["output"], {"input": x})[0]
    with torch.inference_mode():
        want = model.cpu().eval()(torch.from_numpy(x)).numpy()
    if got.shape != want.shape:
        raise ModelError(f"ONNX output shape {got.shape} differs from PyTorch's {want.shape}.")
    return float(np.abs(got - want).max())


def export_onnx(model: EnhanceNet, card: ModelCard, path: Path, *, tolerance: float = 1e-4) -> float:
    """Write the ONNX model to ``path`` after checking it against PyTorch with onnxruntime.

    Returns
    -------
    float
        The largest output difference found (on the [0, 1] scale).

    Raises
    ------
    ModelError
        If onnxruntime's output differs by more than ``tolerance``.
    """
    blob = build_onnx(model, card).SerializeToString()
    diff = check_onnx(model, blob)
    if diff > tolerance:
        raise ModelError(
            f"ONNX model differs from PyTorch by {diff:.3g} (tolerance {tolerance:.1g}); not written."
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, blob)
    return diff
