"""Enhancing phone images with a trained network: tiled inference, out-of-memory recovery, file pipeline.

Tiling
------
An output pixel depends on input pixels up to 12 away (:func:`~scopectl.learn.network.receptive_field_radius`),
so a tile is run with ``overlap`` (default 16, ≥ 13) extra input pixels on every side that has image
beyond it, and only its core is kept.  Tile origins are multiples of ``q`` (ratio ``p/q``), so the output
grid of every tile coincides with the whole image's; at the image border tiles see the same zero padding
as the whole image.  The tiled output therefore equals the whole-image output up to floating-point
rounding (tested).  On a CUDA out-of-memory error the tile size is halved and the image is done again.

Files
-----
:func:`enhance_sources` decodes the next input in a thread while the network runs on the current one
and writes the previous one's output in another thread.  Each output is named after the input's stem and
written by :func:`scopectl.writers.write_image`: a tiled pyramidal OME-TIFF (``<stem>.ome.tif``, the
default; QuPath, Fiji/Bio-Formats and napari open it), a plain tiled TIFF for OpenSlide-based viewers
(``<stem>.tif``) or a PNG, each with the output pixel size, and the model and source as annotations.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from scopectl.errors import ConfigError, InputFileError, ModelError, from_os_error
from scopectl.imageio import check_input_file, check_pixel_size_um, plausible_pixel_size_um, read_image
from scopectl.learn.device import autocast
from scopectl.learn.modelio import ModelCard
from scopectl.learn.network import receptive_field_radius
from scopectl.store import SlideStore
from scopectl.store.paths import sweep_stale_partials
from scopectl.writers import SUFFIXES, ImageFormat, write_image

__all__ = [
    "DEFAULT_OVERLAP",
    "EnhanceOutcome",
    "FileSource",
    "ImageSource",
    "LoadedImage",
    "StoreCaptureSource",
    "enhance_image",
    "enhance_sources",
    "enhance_tensor",
    "prepare_model",
    "run_network",
    "write_tiff",
]

log = logging.getLogger(__name__)

#: Default overlap of tiles in input pixels (must exceed the receptive-field radius of 12).
DEFAULT_OVERLAP = 16
#: Smallest tile tried after out-of-memory errors, in input pixels.
MIN_TILE = 64
#: Default tile size on the CPU: activations stay small and in cache; 256-pixel tiles were the fastest
#: setting for both float32 and bf16 in benchmarks/bench_enhance.py (docs/performance.md).
CPU_TILE = 256
#: Relative pixel-size mismatch above which inputs are resampled to the model's input pixel size.
PIXEL_SIZE_TOLERANCE = 0.03
#: Largest upsampling of an input to the model's pixel size: coarser inputs lack the detail the network
#: was trained to restore (and a wrong pixel size would blow the image up).
MAX_UPSAMPLING = 4.0
#: Largest output accepted, in pixels (the network's float32 output alone is 12 bytes per pixel).
MAX_OUTPUT_PIXELS = 250_000_000


def _ratio_of(model: nn.Module) -> tuple[int, int]:
    inner = getattr(model, "_orig_mod", model)
    ratio = getattr(inner, "ratio", None)
    if not (isinstance(ratio, tuple) and len(ratio) == 2):
        raise ModelError(f"{type(inner).__name__} is not a scopectl network (it has no upsampling ratio).")
    return int(ratio[0]), int(ratio[1])


def prepare_model(
    model: nn.Module, *, device: torch.device, channels_last: bool = True, compile: bool = False
) -> nn.Module:
    """Move a network to ``device`` in eval mode, channels-last, optionally compiled with ``torch.compile``."""
    model = model.to(device).eval()
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # batches of same-sized images reuse the tuned kernels
    if channels_last:
        model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    if compile:
        compiled: Any = torch.compile(model, dynamic=True)
        compiled.ratio = _ratio_of(model)
        return compiled  # type: ignore[no-any-return]
    return model


def _to_input(rgb: np.ndarray, device: torch.device, *, channels_last: bool) -> torch.Tensor:
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise InputFileError(
            f"expected an RGB uint8 image (rows × columns × 3), got {rgb.dtype} {rgb.shape}."
        )
    t = torch.from_numpy(np.ascontiguousarray(rgb))
    if device.type == "cuda":
        t = t.pin_memory().to(device, non_blocking=True)
    x = t.permute(2, 0, 1).unsqueeze(0).to(torch.float32).mul_(1.0 / 255.0)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x.contiguous()


def _to_uint8(y: torch.Tensor) -> np.ndarray:
    out = y[0].clamp(0.0, 1.0).mul(255.0).round_().to(torch.uint8).permute(1, 2, 0)
    return np.ascontiguousarray(out.cpu().numpy())


def enhance_tensor(
    model: nn.Module,
    x: torch.Tensor,
    *,
    tile: int | None,
    overlap: int = DEFAULT_OVERLAP,
    precision: str = "fp32",
) -> torch.Tensor:
    """Run the network on ``x`` (1×3×H×W float in [0, 1]) in overlapping tiles; float32 output.

    Parameters
    ----------
    model
        A scopectl network (has ``.ratio``), on ``x``'s device, in eval mode.
    tile
        Core tile size in input pixels (rounded down to a multiple of ``q``); ``None`` or a size
        covering the image runs it whole.
    overlap
        Extra context per side in input pixels (rounded up to a multiple of ``q``); must exceed 12.
    precision
        ``fp32`` or ``bf16`` (autocast).
    """
    if overlap <= receptive_field_radius():
        raise ConfigError(
            f"tile overlap {overlap} px does not exceed the receptive field ({receptive_field_radius()} px).",
            hint=f"Use at least {receptive_field_radius() + 1}.",
        )
    return _tiled_forward(model, x, tile=tile, overlap=overlap, precision=precision)


def _tiled_forward(
    model: nn.Module, x: torch.Tensor, *, tile: int | None, overlap: int, precision: str
) -> torch.Tensor:
    p, q = _ratio_of(model)
    overlap = -(-overlap // q) * q
    _, _, rows, cols = x.shape
    out_rows, out_cols = -(-rows * p // q), -(-cols * p // q)
    device = x.device
    with torch.inference_mode(), autocast(device, precision):
        if tile is None or tile >= max(rows, cols):
            whole: torch.Tensor = model(x).float()
            return whole
        tile = max(q, (tile // q) * q)
        out = torch.empty((1, 3, out_rows, out_cols), dtype=torch.float32, device=device)
        for r0 in range(0, rows, tile):
            r1 = min(rows, r0 + tile)
            e0, e1 = max(0, r0 - overlap), min(rows, r1 + overlap)
            j0, j1 = p * r0 // q, (p * r1 // q if r1 < rows else out_rows)
            for c0 in range(0, cols, tile):
                c1 = min(cols, c0 + tile)
                f0, f1 = max(0, c0 - overlap), min(cols, c1 + overlap)
                k0, k1 = p * c0 // q, (p * c1 // q if c1 < cols else out_cols)
                y = model(x[:, :, e0:e1, f0:f1])
                o_r, o_c = p * e0 // q, p * f0 // q
                out[:, :, j0:j1, k0:k1] = y[:, :, j0 - o_r : j1 - o_r, k0 - o_c : k1 - o_c]
        return out


def _is_oom(exc: BaseException) -> bool:
    if isinstance(exc, torch.OutOfMemoryError):
        return True
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()


def enhance_image(
    model: nn.Module,
    rgb: np.ndarray,
    *,
    tile: int | None = None,
    device: torch.device | str | None = None,
    precision: str = "fp32",
    overlap: int = DEFAULT_OVERLAP,
    channels_last: bool = True,
    on_shrink: Callable[[int], None] | None = None,
) -> np.ndarray:
    """Enhance one RGB uint8 image (rows × columns × 3) with a network; returns the uint8 output.

    The output has ``⌈rows·p/q⌉ × ⌈cols·p/q⌉`` pixels.  ``tile=None`` runs the whole image at once on a
    GPU and in 256-pixel tiles on the CPU.  On running out of GPU memory the tile size is halved (down
    to 64 px), ``on_shrink`` is told the new size, and enhancement goes on.

    Raises
    ------
    ModelError
        If even 64-pixel tiles do not fit in memory.
    """
    dev = torch.device(device) if device is not None else next(model.parameters()).device
    x = _to_input(rgb, dev, channels_last=channels_last)
    current = tile if tile is not None else (CPU_TILE if dev.type == "cpu" else None)
    while True:
        try:
            return _to_uint8(enhance_tensor(model, x, tile=current, overlap=overlap, precision=precision))
        except (torch.OutOfMemoryError, RuntimeError) as exc:
            if not _is_oom(exc):
                raise
            if dev.type == "cuda":
                torch.cuda.empty_cache()
            largest = max(rgb.shape[0], rgb.shape[1])
            current = (min(current, largest) if current is not None else largest) // 2
            if current < MIN_TILE:
                raise ModelError(
                    f"out of memory on {dev} even with {MIN_TILE}-pixel tiles.",
                    hint="Free the GPU (other processes?) or use --device cpu.",
                ) from None
            log.warning("out of memory on %s; retrying with %d-pixel tiles", dev, current)
            if on_shrink is not None:
                on_shrink(current)


def run_network(
    model: nn.Module, rgb: np.ndarray, *, device: torch.device | None = None, precision: str = "fp32"
) -> np.ndarray:
    """Whole-image inference without tiling (small images, patches); uint8 in, uint8 out."""
    dev = device if device is not None else next(model.parameters()).device
    x = _to_input(rgb, dev, channels_last=True)
    return _to_uint8(enhance_tensor(model, x, tile=None, precision=precision))


# ------------------------------------------------------------------------------------------- files
@dataclass
class LoadedImage:
    """A decoded input ready for the network."""

    rgb: np.ndarray
    pixel_size_um: float | None
    description: str


class ImageSource(Protocol):
    """Something :func:`enhance_sources` can enhance: a name for the output and a loader."""

    @property
    def name(self) -> str: ...

    def load(self) -> LoadedImage: ...


@dataclass(frozen=True)
class FileSource:
    """A DNG, JPEG, PNG or TIFF file (read with :func:`scopectl.imageio.read_image`)."""

    path: Path

    @property
    def name(self) -> str:
        return self.path.stem

    def load(self) -> LoadedImage:

        img = read_image(self.path)
        return LoadedImage(
            rgb=img.rgb, pixel_size_um=img.pixel_size_um, description=f"{self.path} ({img.format})"
        )


_STORE_LOCK = threading.Lock()


@dataclass(frozen=True)
class StoreCaptureSource:
    """Capture ``index`` of a slide store (decoded pixels and the capture's nominal pixel size)."""

    store_path: Path
    index: int

    @property
    def name(self) -> str:
        return f"{self.store_path.stem}-capture{self.index:04d}"

    def load(self) -> LoadedImage:

        with _STORE_LOCK, SlideStore.open(self.store_path, mode="r") as store:
            rgb, meta = store.read_capture(self.index)

        px = meta.pixel_size_um
        return LoadedImage(
            rgb=np.ascontiguousarray(rgb, dtype=np.uint8),
            pixel_size_um=px if plausible_pixel_size_um(px) else None,
            description=f"{self.store_path} capture {self.index}",
        )


@dataclass
class EnhanceOutcome:
    """One written output."""

    source: str
    output: Path
    input_shape: tuple[int, int]
    output_shape: tuple[int, int]
    input_pixel_size_um: float
    output_pixel_size_um: float
    pixel_size_assumed: bool
    resampled: bool
    seconds: float
    tile: int | None = None
    notes: list[str] = field(default_factory=list)


def write_tiff(path: Path, rgb: np.ndarray, *, pixel_size_um: float, info: str = "") -> None:
    """Write an RGB uint8 TIFF with its pixel size in µm (ImageJ metadata ``unit=um``, resolution tags).

    ImageJ/Fiji read ``XResolution`` (pixels per unit) with the unit from the ImageJ description; QuPath
    reads the same through its ImageJ/Bio-Formats readers.
    """

    import tifffile  # tifffile loads only for TIFF files (keeps `scopectl --help` fast)

    per_um = 1.0 / pixel_size_um
    metadata: dict[str, Any] = {"unit": "um", "axes": "YXS"}
    if info:
        metadata["Info"] = info
    tmp = path.with_name(f".{path.name}.partial-{os.getpid()}")  # swept when its process is gone
    try:
        tifffile.imwrite(
            tmp,
            rgb,
            imagej=True,
            photometric="rgb",
            resolution=(per_um, per_um),
            metadata=metadata,
        )
        tmp.replace(path)
    except OSError as exc:
        raise from_os_error(exc, path=path, action="write the enhanced image") from None
    finally:
        if tmp.exists():
            tmp.unlink()


def _resample(rgb: np.ndarray, *, factor: float) -> np.ndarray:
    """Resize by ``factor`` (area averaging when shrinking, bicubic when enlarging)."""
    import cv2  # OpenCV (heavy) loads only when this runs

    rows = max(1, round(rgb.shape[0] * factor))
    cols = max(1, round(rgb.shape[1] * factor))
    interp = cv2.INTER_AREA if factor < 1 else cv2.INTER_CUBIC
    return np.ascontiguousarray(cv2.resize(rgb, (cols, rows), interpolation=interp))


def enhance_sources(
    sources: Sequence[ImageSource],
    model: nn.Module,
    card: ModelCard,
    out_dir: Path,
    *,
    device: torch.device,
    precision: str = "fp32",
    tile: int | None = None,
    overwrite: bool = False,
    input_pixel_size_um: float | None = None,
    on_done: Callable[[EnhanceOutcome], None] | None = None,
    fmt: ImageFormat = "ome-tiff",
) -> list[EnhanceOutcome]:
    """Enhance many inputs, overlapping decoding, inference and writing; one image file per input.

    Parameters
    ----------
    sources
        Inputs (:class:`FileSource`, :class:`StoreCaptureSource`).
    model, card
        A prepared network (:func:`prepare_model`) and its card.
    out_dir
        Output directory (created).  ``<out_dir>/<stem><suffix>`` per input, the suffix being ``.ome.tif``,
        ``.tif`` or ``.png`` for ``fmt`` ``ome-tiff``, ``tiff`` or ``png``
        (:func:`scopectl.writers.write_image`).
    input_pixel_size_um
        Pixel size of inputs whose file does not state one (default: the model's input pixel size).
        Inputs whose pixel size differs from the model's by more than 3 % are resampled to it first.
    overwrite
        Replace existing outputs (default: refuse before starting).

    Raises
    ------
    ConfigError
        If two inputs have the same stem or an output exists (without ``overwrite``).
    """

    out_dir = Path(out_dir)
    if input_pixel_size_um is not None:
        input_pixel_size_um = check_pixel_size_um(input_pixel_size_um, what="--input-pixel-size-um")
    suffix = _prepare_out_dir(sources, out_dir, card, fmt=fmt, overwrite=overwrite)
    outcomes: list[EnhanceOutcome] = []
    with (
        ThreadPoolExecutor(max_workers=1, thread_name_prefix="decode") as reader,
        ThreadPoolExecutor(max_workers=1, thread_name_prefix="write") as writer,
    ):
        pending_reads: list[Future[LoadedImage]] = [reader.submit(s.load) for s in sources[:2]]
        pending_writes: list[Future[Path]] = []
        for i, src in enumerate(sources):
            loaded = pending_reads[i].result()
            if i + 2 < len(sources):
                pending_reads.append(reader.submit(sources[i + 2].load))
            dest = out_dir / f"{src.name}{suffix}"
            out, outcome = _enhance_one(
                model,
                loaded,
                card,
                dest,
                explicit_um=input_pixel_size_um,
                tile=tile,
                device=device,
                precision=precision,
            )
            tile = outcome.tile  # smaller after running out of GPU memory: kept for the following images
            px_out, annotations = outcome.output_pixel_size_um, _annotations(card, outcome)
            pending_writes.append(
                writer.submit(write_image, dest, out, fmt=fmt, pixel_size_um=px_out, annotations=annotations)
            )
            outcomes.append(outcome)
            while len(pending_writes) > 2:
                pending_writes.pop(0).result()
            if on_done is not None:
                on_done(outcome)
        for fut in pending_writes:
            fut.result()
    return outcomes


def _prepare_out_dir(
    sources: Sequence[ImageSource], out_dir: Path, card: ModelCard, *, fmt: ImageFormat, overwrite: bool
) -> str:
    """Check the outputs can be written (distinct stems, none existing unless ``overwrite``), create ``out_dir``.

    Returns the output suffix of ``fmt``.  Sweeps stale partial files from ``out_dir`` and checks the model's
    input pixel size is plausible.
    """
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"--out {out_dir}: is a file, not a directory.", hint="Name a directory.")
    if fmt not in SUFFIXES:
        raise ConfigError(f"output format {fmt!r} is not one of {', '.join(SUFFIXES)}.")
    suffix = SUFFIXES[fmt]
    targets: dict[str, str] = {}
    for src in sources:
        key = src.name.lower()
        if key in targets:
            raise ConfigError(
                f"inputs {targets[key]} and {src.name} would both be written to {src.name}{suffix}.",
                hint="Enhance them into different --out directories.",
            )
        targets[key] = src.name
        dest = out_dir / f"{src.name}{suffix}"
        if dest.exists() and not overwrite:
            raise ConfigError(f"{dest} exists.", hint="Choose another --out directory or pass --overwrite.")
    out_dir.mkdir(parents=True, exist_ok=True)
    sweep_stale_partials(out_dir)
    if not plausible_pixel_size_um(card.input_pixel_size_um):
        raise ModelError(
            f"model {card.name}: input pixel size {card.input_pixel_size_um} µm is implausible for a microscope."
        )
    return suffix


def _input_pixel_size_um(
    loaded: LoadedImage, card: ModelCard, *, explicit_um: float | None
) -> tuple[float, bool]:
    """The input's pixel size (µm) and whether it was assumed (neither given nor stated by the file).

    An explicit --input-pixel-size-um beats the file; a file's value is used only when plausible
    (FileSource / StoreCaptureSource drop print resolutions); else the model's is assumed.
    """
    stated = loaded.pixel_size_um if plausible_pixel_size_um(loaded.pixel_size_um) else None
    assumed = explicit_um is None and stated is None
    return explicit_um or stated or card.input_pixel_size_um, assumed


def _enhance_one(
    model: nn.Module,
    loaded: LoadedImage,
    card: ModelCard,
    dest: Path,
    *,
    explicit_um: float | None,
    tile: int | None,
    device: torch.device,
    precision: str,
) -> tuple[np.ndarray, EnhanceOutcome]:
    """Enhance one input, resampled to the model's pixel size first when it differs by more than 3 %.

    Returns the enhanced image and its outcome (to be written to ``dest``), whose ``tile`` is the tile size
    to use from now on (smaller after running out of GPU memory).
    """
    start = time.perf_counter()
    px_in, assumed = _input_pixel_size_um(loaded, card, explicit_um=explicit_um)
    p, q = card.ratio_pq
    _check_scale(loaded, px_in, card, p=p, q=q)
    rgb = loaded.rgb
    resampled = abs(px_in / card.input_pixel_size_um - 1.0) > PIXEL_SIZE_TOLERANCE
    notes: list[str] = []
    if resampled:
        rgb = _resample(rgb, factor=px_in / card.input_pixel_size_um)
        notes.append(
            f"resampled from {px_in:.4g} to the model's {card.input_pixel_size_um:.4g} µm/px before enhancing"
        )
    shrunk: list[int] = []
    out = enhance_image(model, rgb, tile=tile, device=device, precision=precision, on_shrink=shrunk.append)
    if shrunk:
        tile = shrunk[-1]  # keep the smaller tile for the following images
        notes.append(f"ran out of GPU memory; used {tile}-pixel tiles")
    px_out = card.input_pixel_size_um * q / p
    return out, EnhanceOutcome(
        source=loaded.description,
        output=dest,
        input_shape=(int(loaded.rgb.shape[0]), int(loaded.rgb.shape[1])),
        output_shape=(int(out.shape[0]), int(out.shape[1])),
        input_pixel_size_um=px_in,
        output_pixel_size_um=px_out,
        pixel_size_assumed=assumed,
        resampled=resampled,
        seconds=time.perf_counter() - start,
        tile=tile,
        notes=notes,
    )


def _annotations(card: ModelCard, outcome: EnhanceOutcome) -> dict[str, str]:
    """The provenance written into an enhanced image: software, model, source and pixel sizes."""
    software = (
        f"scopectl enhance; model {card.name} ({card.architecture}, ratio {card.ratio}, sha256 "
        f"{card.weights_sha256[:16]})"
    )
    return {
        "software": software,
        "model": card.name,
        "model_architecture": card.architecture,
        "model_ratio": card.ratio,
        "model_weights_sha256": card.weights_sha256,
        "source": outcome.source,
        "source_pixel_size_um": f"{outcome.input_pixel_size_um:.6g}",
        "output_pixel_size_um": f"{outcome.output_pixel_size_um:.6g}",
    }


def _check_scale(loaded: LoadedImage, px_in: float, card: ModelCard, *, p: int, q: int) -> None:
    """Refuse an input that would be upsampled implausibly or give an absurdly large output."""
    factor = px_in / card.input_pixel_size_um
    if factor > MAX_UPSAMPLING:
        raise InputFileError(
            f"{loaded.description}: at {px_in:.4g} µm/px it would be enlarged {factor:.3g}× to the model's "
            f"{card.input_pixel_size_um:.4g} µm/px (at most {MAX_UPSAMPLING:g}×); the network cannot add that detail.",
            hint="Use a model trained for this pixel size, or give the right --input-pixel-size-um.",
        )
    rows, cols = int(loaded.rgb.shape[0]), int(loaded.rgb.shape[1])
    out_pixels = (rows * factor * p / q) * (cols * factor * p / q)
    if out_pixels > MAX_OUTPUT_PIXELS:
        raise InputFileError(
            f"{loaded.description}: the output would have {out_pixels:,.0f} pixels (limit {MAX_OUTPUT_PIXELS:,}).",
            hint="Split the image into tiles and enhance those.",
        )


def parse_sources(items: Iterable[str]) -> list[ImageSource]:
    """Turn command-line inputs into sources.

    ``PATH.h5`` is every capture of a slide store, ``PATH.h5:N`` (or ``PATH.h5#N``) its capture ``N``;
    anything else is an image file.  Directories are refused (name the files).

    Raises
    ------
    InputFileError
        If a path does not exist or a capture index is not a non-negative integer.
    """
    sources: list[ImageSource] = []
    for item in items:
        text = str(item)
        store_part, sep, index_part = text, "", ""
        for marker in (".h5:", ".h5#"):
            if marker in text:
                head, _, index_part = text.rpartition(marker[3])
                store_part, sep = head, marker[3]
        path = Path(store_part)
        if path.suffix.lower() in (".h5", ".hdf5"):
            captures = _store_captures(path)
            if not captures:
                raise InputFileError(f"{path}: the slide store holds no complete phone capture.")
            if sep:
                if not index_part.isdigit():
                    raise InputFileError(f"{text}: capture index {index_part!r} is not a number.")
                wanted = int(index_part)
                match = [c for c in captures if c == wanted]
                if not match:
                    raise InputFileError(f"{path}: no capture {wanted} (the store has {len(captures)}).")
                captures = match
            sources.extend(StoreCaptureSource(path, idx) for idx in captures)
            continue

        check_input_file(path)  # missing, a directory, a FIFO or device: said as such
        sources.append(FileSource(path))
    return sources


def _store_captures(path: Path) -> list[int]:

    with SlideStore.open(path, mode="r") as store:
        return [meta.index for meta in store.captures()]


def throughput_mpx_per_s(outcomes: Sequence[EnhanceOutcome]) -> float:
    """Input megapixels enhanced per second of network time."""
    mpx = sum(o.input_shape[0] * o.input_shape[1] for o in outcomes) / 1e6
    secs = sum(o.seconds for o in outcomes)
    return mpx / secs if secs > 0 else math.nan
