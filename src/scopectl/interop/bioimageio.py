"""A trained model as a BioImage Model Zoo package (bioimageio.spec 0.5), tested before it is written.

The package (one ``.zip``, built by ``bioimageio.spec.save_bioimageio_package``) holds:

* ``rdf.yaml`` — the model description: one input ``input`` (``batch, channel, y, x``; RGB ``uint8``; the
  preprocessing casts to float32 and scales by 1/255) and one output ``output`` (float32 in [0, 1], clipped);
  the spatial axes carry their physical scale (in nm), the output's is the input's × q/p, so the ×p/q output
  size follows from ``size = reference size × reference scale / scale``.  Input sizes are ``min + n·q``.
  The output halo (cropped by tiling consumers; the input is padded by halo·q/p) is the tile overlap
  scopectl uses: 16 input pixels rounded up to a multiple of q, more than the network's receptive-field
  radius of 12 (:func:`scopectl.learn.network.receptive_field_radius`).
* weights in three formats: ``pytorch_state_dict`` (``weights.pt`` with the architecture ``network.py``,
  scopectl's own module, which needs only torch), and ``torchscript`` and ``onnx`` converted from it;
* test input and output tensors (``.npy``) and a 2:1 cover image (input, bicubic-enlarged, beside the output);
* ``README.md`` with the model card's provenance and validation metrics, which are also under
  ``config.scopectl``; the attachments ``model.safetensors`` and ``model.json`` (the scopectl model directory),
  which is what ``scopectl enhance --model FILE.zip`` loads — it never unpickles the ``.pt`` weights.

The package is written to a temporary file, checked with ``bioimageio.core.test_model`` (format validation
and test-tensor reproduction with every weight format), and renamed into place only when it passes.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import torch

from scopectl import __version__
from scopectl.errors import ModelError, OutputError
from scopectl.interop import require
from scopectl.learn import network as network_module
from scopectl.learn.enhance import DEFAULT_OVERLAP
from scopectl.learn.modelio import CARD_NAME, WEIGHTS_NAME, ModelCard, load_model
from scopectl.learn.network import EnhanceNet, receptive_field_radius
from scopectl.learn.onnx_export import OPSET, build_onnx

__all__ = ["ExportedPackage", "axis_scales_nm", "export_model", "halo_px", "input_size_rule"]

#: The paper this network comes from (Rivenson et al., ACS Photonics 5, 2354–2364, 2018).
PAPER_DOI = "10.1021/acsphotonics.8b00146"
#: Absolute tolerance of the test-output reproduction, on the [0, 1] output scale (0.1 of an 8-bit level).
TEST_TOLERANCE = 4e-4


@dataclass
class ExportedPackage:
    """What :func:`export_model` wrote."""

    name: str
    path: Path
    weight_formats: list[str]
    test_max_abs_diff: float


def halo_px(ratio: tuple[int, int]) -> tuple[int, int]:
    """``(input padding, output halo)`` in pixels: the tile overlap, a multiple of q, beyond the receptive field."""
    p, q = ratio
    pad = -(-max(DEFAULT_OVERLAP, receptive_field_radius() + 1) // q) * q
    return pad, pad * p // q


def axis_scales_nm(input_pixel_size_um: float, ratio: tuple[int, int]) -> tuple[float, float]:
    """Input and output pixel sizes in nm, ``p·u`` and ``q·u``, with ``u`` rounded to 24 significant bits.

    bioimageio.spec checks ``output size = input size × input scale / output scale`` with exact float
    arithmetic; with both scales multiples of the same short-mantissa ``u`` that product and quotient are
    exact, so every input size that is a multiple of q gives the integer output size.  (The rounding changes
    the pixel size by less than 1e-7 of itself; 925 nm stays 925 nm.)
    """
    p, q = ratio
    u = float(np.float32(input_pixel_size_um * 1000.0 / p))
    return p * u, q * u


def input_size_rule(ratio: tuple[int, int]) -> tuple[int, int]:
    """``(min, step)`` of the input's spatial sizes: steps of q, at least twice the padding plus 32."""
    _, q = ratio
    pad, _ = halo_px(ratio)
    minimum = -(-(2 * pad + 32) // q) * q
    return minimum, q


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _test_image(rows: int, cols: int, seed: int = 0) -> np.ndarray:
    """A smooth, stain-coloured test image (deterministic), uint8 rows × cols × 3."""
    import cv2  # OpenCV (heavy) loads only when this runs

    rng = np.random.default_rng(seed)
    noise = rng.random((rows // 4 + 2, cols // 4 + 2, 3)).astype(np.float32)
    field = cv2.resize(noise, (cols, rows), interpolation=cv2.INTER_CUBIC)
    pink = np.array([0.93, 0.62, 0.78], np.float32)
    purple = np.array([0.45, 0.25, 0.62], np.float32)
    t = np.clip(field[..., :1] * 1.4 - 0.2, 0, 1)
    img = (1 - t) * pink + t * purple + 0.05 * (field - 0.5)
    out: np.ndarray = np.clip(img * 255 + 0.5, 0, 255).astype(np.uint8)
    return out


def _readme(card: ModelCard, ratio: tuple[int, int], pad: int, halo: int) -> str:
    t = card.training
    lines = [
        f"# {card.name}",
        "",
        "Enhances smartphone-microscope images of stained slides towards a benchtop microscope's, with the",
        "network of Rivenson et al., *Deep learning enhanced mobile-phone microscopy*, ACS Photonics 2018",
        f"(doi:{PAPER_DOI}), trained with [scopectl](https://pypi.org/project/scopectl/).",
        "",
        "## Input and output",
        "",
        f"- Input: RGB, uint8, {card.input_pixel_size_um:g} µm per pixel at the sample ({card.input_kind}).",
        f"- Output: RGB in [0, 1] (×255 for 8-bit), {card.ratio} times larger "
        f"({card.input_pixel_size_um * ratio[1] / ratio[0]:g} µm per pixel).",
        f"- Sample type: {card.sample_type}.",
        f"- Tiling: pad the input by {pad} px per side (halo {halo} output px); the receptive-field radius is "
        f"{card.receptive_field_radius_px} input px.",
        "",
        "## Training (provenance)",
        "",
        f"- Dataset: {t.dataset or 'unknown'} (sha256 {t.dataset_sha256 or 'unknown'}); "
        f"{t.train_patches} training and {t.val_patches} validation patches.",
        f"- {t.epochs_completed:g} epochs ({t.steps} steps, batch {t.batch_size}, {t.optimizer} "
        f"lr {t.learning_rate:g}, Sobel weight {t.sobel_weight:g}), best at epoch {t.best_epoch:g}; "
        f"device {t.device or 'unknown'}, {t.precision}; stopped: {t.stopped or 'n/a'}.",
        f"- Weights sha256 (safetensors): {card.weights_sha256}.",
        f"- Software: {card.software.model_dump() if card.software else 'unknown'}; created {card.created}.",
        "",
        "## Validation metrics",
        "",
    ]
    if card.validation:
        lines += ["| metric | value |", "|---|---|"]
        lines += [f"| {k} | {v:.6g} |" for k, v in sorted(card.validation.items())]
    else:
        lines.append("None recorded.")
    if card.quality is not None:
        qc = card.quality
        lines += [
            "",
            f"Against bicubic interpolation on {qc.pairs} validation pairs: SSIM {qc.network_ssim:.4f} "
            f"(bicubic {qc.bicubic_ssim:.4f}), CIE-94 {qc.network_cie94:.3f} (bicubic {qc.bicubic_cie94:.3f})"
            + ("; **worse than bicubic**." if qc.worse_than_bicubic else "."),
        ]
    if card.notes:
        lines += ["", "## Notes", "", card.notes]
    return "\n".join(lines) + "\n"


def _cover(rgb_in: np.ndarray, rgb_out: np.ndarray, path: Path) -> None:
    import cv2  # OpenCV (heavy) loads only when this runs

    rows, cols = rgb_out.shape[:2]
    side = min(rows, cols)
    left = cv2.resize(rgb_in, (rgb_out.shape[1], rgb_out.shape[0]), interpolation=cv2.INTER_CUBIC)
    cover = np.concatenate([left[:side, :side], rgb_out[:side, :side]], axis=1)
    from PIL import Image  # Pillow loads only for PNG/JPEG files (keeps `scopectl --help` fast)

    Image.fromarray(np.ascontiguousarray(cover)).save(path, format="PNG")


def export_model(
    model_dir: Path,
    out: Path,
    *,
    authors: Sequence[str],
    license_id: str = "CC-BY-4.0",
    overwrite: bool = False,
    test_shape: tuple[int, int] = (96, 128),
    check: bool = True,
) -> ExportedPackage:
    """Package the model in ``model_dir`` as ``out`` (a ``.zip``), tested with bioimageio.core first.

    ``check=False`` skips ``bioimageio.core.test_model`` (about 20 s on 2 cores); the package is still
    validated as a description when it is built.  Use it only when the caller runs ``bioimageio test``.

    Raises
    ------
    ModelError
        If the model cannot be loaded, or the package fails bioimageio's checks (nothing is written).
    OutputError
        If ``out`` exists (without ``overwrite``) or cannot be written.
    ConfigError
        If the ``bioimageio`` extra is not installed.
    """
    spec = require("bioimageio.spec", extra="bioimageio", purpose="BioImage Model Zoo export")
    v05 = require("bioimageio.spec.model.v0_5", extra="bioimageio", purpose="BioImage Model Zoo export")
    core = require("bioimageio.core", extra="bioimageio", purpose="BioImage Model Zoo export")
    out = Path(out)
    if out.suffix.lower() != ".zip":
        raise OutputError(f"{out}: a BioImage Model Zoo package is a .zip file.", hint="Name it FILE.zip.")
    if out.exists() and not overwrite:
        raise OutputError(f"{out} exists.", hint="Pass --force to replace it or choose another --out.")
    if not authors or not all(a.strip() for a in authors):
        raise ModelError("the model zoo needs at least one author.", hint="Pass --author 'Your Name'.")
    net, card = load_model(model_dir)
    model_dir = Path(model_dir)
    ratio = net.ratio
    q = ratio[1]
    minimum, _ = input_size_rule(ratio)
    rows, cols = (-(-max(test_shape[0], minimum) // q) * q, -(-max(test_shape[1], minimum) // q) * q)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="scopectl-bioimageio-") as tmp_name:
        tmp = Path(tmp_name)
        _write_weights(net, card, tmp, example_size=minimum)
        test_in, test_out = _write_test_files(net, card, model_dir, tmp, rows=rows, cols=cols)
        description = _model_description(v05, card, ratio, tmp, authors=authors, license_id=license_id)
        staged = tmp / f"package-{uuid.uuid4().hex[:8]}.zip"
        spec.save_bioimageio_package(description, output_path=staged)
        if check:
            _require_passed(core.test_model(staged), model_dir)
        diff = _reproduction_error(net, test_in, test_out)
        _write_atomically(staged, out)
    return ExportedPackage(
        name=card.name,
        path=out,
        weight_formats=["pytorch_state_dict", "torchscript", "onnx"],
        test_max_abs_diff=diff,
    )


def _write_weights(net: EnhanceNet, card: ModelCard, tmp: Path, *, example_size: int) -> None:
    """Write the weights in three formats, all from the same state dict, and the architecture, into ``tmp``.

    ``weights.pt`` (state dict) with ``network.py``, ``weights.torchscript.pt`` (traced on an
    ``example_size`` square input) and ``weights.onnx``.
    """
    state = {k: v.detach().cpu().float().contiguous() for k, v in net.state_dict().items()}
    torch.save(state, tmp / "weights.pt")
    arch_src = Path(network_module.__file__)
    (tmp / "network.py").write_bytes(arch_src.read_bytes())
    example = torch.rand(1, 3, example_size, example_size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        traced = torch.jit.trace(net.eval(), example, check_trace=False)  # type: ignore[no-untyped-call]
    traced.save(str(tmp / "weights.torchscript.pt"))

    (tmp / "weights.onnx").write_bytes(build_onnx(net, card).SerializeToString())


def _write_test_files(
    net: EnhanceNet, card: ModelCard, model_dir: Path, tmp: Path, *, rows: int, cols: int
) -> tuple[np.ndarray, np.ndarray]:
    """Write the test tensors, cover, README and the model-directory attachments into ``tmp``.

    Returns the test input (1 × 3 × rows × cols uint8) and the network's output for it (float32).
    """
    pad, halo = halo_px(net.ratio)
    test_rgb = _test_image(rows, cols)
    test_in = np.ascontiguousarray(np.moveaxis(test_rgb, -1, 0)[None])  # 1 × 3 × rows × cols uint8
    with torch.inference_mode():
        y = net(torch.from_numpy(test_in).float().div(255.0))
    test_out = np.clip(y.numpy(), 0.0, 1.0).astype(np.float32)
    np.save(tmp / "test_input.npy", test_in, allow_pickle=False)
    np.save(tmp / "test_output.npy", test_out, allow_pickle=False)
    out_rgb = np.clip(np.moveaxis(test_out[0], 0, -1) * 255 + 0.5, 0, 255).astype(np.uint8)
    _cover(test_rgb, out_rgb, tmp / "cover.png")
    (tmp / "README.md").write_text(_readme(card, net.ratio, pad, halo), encoding="utf-8")
    (tmp / WEIGHTS_NAME).write_bytes((model_dir / WEIGHTS_NAME).read_bytes())
    (tmp / CARD_NAME).write_bytes((model_dir / CARD_NAME).read_bytes())
    return test_in, test_out


def _file_descr(v05: ModuleType, path: Path) -> Any:
    """A bioimageio ``FileDescr`` of ``path`` with its SHA-256."""
    return v05.FileDescr(source=path, sha256=v05.Sha256(_sha256(path)))


def _tensor_descriptions(
    v05: ModuleType, card: ModelCard, ratio: tuple[int, int], tmp: Path
) -> tuple[Any, Any]:
    """The input and output tensor descriptions (axes with physical scales, data types, pre/postprocessing)."""
    _, halo = halo_px(ratio)
    minimum, step = input_size_rule(ratio)
    in_id, out_id = v05.TensorId("input"), v05.TensorId("output")
    scale_in, scale_out = axis_scales_nm(card.input_pixel_size_um, ratio)
    channel = v05.ChannelAxis(channel_names=[v05.Identifier(c) for c in ("R", "G", "B")])
    inp = v05.InputTensorDescr(
        id=in_id,
        description="phone-microscope RGB image, uint8",
        axes=[
            v05.BatchAxis(),
            channel,
            *(
                v05.SpaceInputAxis(
                    id=v05.AxisId(a),
                    size=v05.ParameterizedSize(min=minimum, step=step),
                    scale=scale_in,
                    unit="nanometer",
                )
                for a in ("y", "x")
            ),
        ],
        test_tensor=_file_descr(v05, tmp / "test_input.npy"),
        data=v05.IntervalOrRatioDataDescr(type="uint8", range=(0, 255)),
        preprocessing=[
            v05.EnsureDtypeDescr(kwargs=v05.EnsureDtypeKwargs(dtype="float32")),
            v05.ScaleLinearDescr(kwargs=v05.ScaleLinearKwargs(gain=1.0 / 255.0, offset=0.0)),
            # the spec appends a cast back to the input's data type (uint8) unless the last step is a cast
            v05.EnsureDtypeDescr(kwargs=v05.EnsureDtypeKwargs(dtype="float32")),
        ],
    )
    outp = v05.OutputTensorDescr(
        id=out_id,
        description=f"enhanced RGB image in [0, 1], {card.ratio} times the input size",
        axes=[
            v05.BatchAxis(),
            channel,
            *(
                v05.SpaceOutputAxisWithHalo(
                    id=v05.AxisId(a),
                    size=v05.SizeReference(tensor_id=in_id, axis_id=v05.AxisId(a)),
                    scale=scale_out,
                    unit="nanometer",
                    halo=halo,
                )
                for a in ("y", "x")
            ),
        ],
        test_tensor=_file_descr(v05, tmp / "test_output.npy"),
        data=v05.IntervalOrRatioDataDescr(type="float32", range=(0.0, 1.0)),
        postprocessing=[
            v05.ClipDescr(kwargs=v05.ClipKwargs(min=0.0, max=1.0)),
            v05.EnsureDtypeDescr(kwargs=v05.EnsureDtypeKwargs(dtype="float32")),
        ],
    )
    return inp, outp


def _weights_description(v05: ModuleType, card: ModelCard, tmp: Path) -> Any:
    """The three weight formats written by :func:`_write_weights`, torchscript and onnx converted from the first."""
    torch_version = v05.Version(torch.__version__.split("+")[0])
    return v05.WeightsDescr(
        pytorch_state_dict=v05.PytorchStateDictWeightsDescr(
            source=tmp / "weights.pt",
            sha256=v05.Sha256(_sha256(tmp / "weights.pt")),
            architecture=v05.ArchitectureFromFileDescr(
                source=tmp / "network.py",
                sha256=v05.Sha256(_sha256(tmp / "network.py")),
                callable=v05.Identifier("EnhanceNet"),
                kwargs={"ratio": card.ratio},
            ),
            pytorch_version=torch_version,
        ),
        torchscript=v05.TorchscriptWeightsDescr(
            source=tmp / "weights.torchscript.pt",
            sha256=v05.Sha256(_sha256(tmp / "weights.torchscript.pt")),
            pytorch_version=torch_version,
            parent="pytorch_state_dict",
        ),
        onnx=v05.OnnxWeightsDescr(
            source=tmp / "weights.onnx",
            sha256=v05.Sha256(_sha256(tmp / "weights.onnx")),
            opset_version=OPSET,
            parent="pytorch_state_dict",
        ),
    )


def _model_description(
    v05: ModuleType,
    card: ModelCard,
    ratio: tuple[int, int],
    tmp: Path,
    *,
    authors: Sequence[str],
    license_id: str,
) -> Any:
    """The ``ModelDescr`` (``rdf.yaml``) of the files staged in ``tmp``."""
    pad, _ = halo_px(ratio)
    inp, outp = _tensor_descriptions(v05, card, ratio, tmp)
    weights = _weights_description(v05, card, tmp)
    return v05.ModelDescr(
        name=f"scopectl {card.name}"[:128],
        description=(
            f"Smartphone-microscope to benchtop enhancement ({card.sample_type}, ×{card.ratio}) with the "
            "network of Rivenson et al. 2018, trained with scopectl."
        ),
        authors=[v05.Author(name=a.strip()) for a in authors],
        cite=[
            v05.CiteEntry(
                text="Rivenson Y. et al., Deep learning enhanced mobile-phone microscopy, ACS Photonics 2018",
                doi=v05.Doi(PAPER_DOI),
            )
        ],
        license=v05.LicenseId(license_id),
        documentation=_file_descr(v05, tmp / "README.md"),
        covers=[_file_descr(v05, tmp / "cover.png")],
        tags=["super-resolution", "image-restoration", "mobile-microscopy", "pytorch", "scopectl"],
        inputs=[inp],
        outputs=[outp],
        weights=weights,
        attachments=[_file_descr(v05, tmp / WEIGHTS_NAME), _file_descr(v05, tmp / CARD_NAME)],
        version=v05.Version("0.1.0"),
        config=v05.Config(
            bioimageio=v05.BioimageioConfig(
                reproducibility_tolerance=[
                    v05.ReproducibilityTolerance(absolute_tolerance=TEST_TOLERANCE, relative_tolerance=0.0)
                ]
            ),
            scopectl={
                "format": "scopectl-bioimageio-export",
                "schema_version": 1,
                "exported_by": f"scopectl {__version__}",
                "model_card": card.model_dump(mode="json"),
                "input_padding_px": pad,
            },
        ),
    )


def _require_passed(summary: Any, model_dir: Path) -> None:
    """Raise :class:`ModelError` listing the failed checks unless bioimageio's test ``summary`` passed."""
    if summary.status != "passed":
        failures = [
            f"{d.name}: {d.errors[0].msg if d.errors else ''}"
            for d in summary.details
            if d.status != "passed"
        ]
        raise ModelError(
            f"{model_dir}: the BioImage Model Zoo package fails bioimageio's checks "
            f"({'; '.join(failures)[:400]}); nothing was written."
        )


def _write_atomically(staged: Path, out: Path) -> None:
    """Copy ``staged`` to ``out`` through a partial file renamed into place (nothing half-written is left)."""
    partial = out.with_name(f".{out.name}.partial-{os.getpid()}")
    try:
        partial.write_bytes(staged.read_bytes())
        os.replace(partial, out)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise OutputError(f"{out}: cannot write the package ({exc.strerror or exc}).") from None


def _reproduction_error(net: EnhanceNet, test_in: np.ndarray, test_out: np.ndarray) -> float:
    """Largest difference between the test output and a fresh run of the network (a sanity check)."""
    with torch.inference_mode():
        y = net(torch.from_numpy(test_in).float().div(255.0)).clamp(0.0, 1.0).numpy()
    return float(np.abs(y - test_out).max())
