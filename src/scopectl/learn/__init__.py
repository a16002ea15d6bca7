"""Learning: the network of Rivenson et al. 2018, its training, enhancement, model files and ONNX export.

Public API (see ``docs/network.md``)::

    build_network(ratio=(5, 2)) -> EnhanceNet
    save_model(dir, model, card) ; load_model(dir) -> (model, card)      # safetensors + model.json
    enhance_image(model, rgb, *, tile, device) -> np.ndarray              # tiled, seamless
    train(dataset, model_dir, TrainConfig(...)) -> TrainResult
    export_onnx(model, card, path)

Layer: below evaluation, above registration; it may import registration, stitching, the store and the
low modules (imageio, writers, config, metrics, errors), never evaluation, the exports, hardware,
acquisition, the twin, the service or the CLI.  See ``docs/architecture.md``.
"""

from __future__ import annotations

from scopectl.learn.enhance import enhance_image
from scopectl.learn.loss import enhancement_loss, sobel_energy
from scopectl.learn.modelio import ModelCard, load_model, save_model
from scopectl.learn.network import EnhanceNet, build_network, receptive_field_radius
from scopectl.learn.onnx_export import export_onnx
from scopectl.learn.train import TrainConfig, TrainResult, train

__all__ = [
    "EnhanceNet",
    "ModelCard",
    "TrainConfig",
    "TrainResult",
    "build_network",
    "enhance_image",
    "enhancement_loss",
    "export_onnx",
    "load_model",
    "receptive_field_radius",
    "save_model",
    "sobel_energy",
    "train",
]
