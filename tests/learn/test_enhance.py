"""Enhancement: seamless tiles, out-of-memory recovery, TIFF output with the pixel size, file pipeline."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import tifffile
import torch

from scopectl.errors import ConfigError, ModelError
from scopectl.imageio import read_image
from scopectl.learn.enhance import (
    FileSource,
    _tiled_forward,
    _to_input,
    enhance_image,
    enhance_sources,
    enhance_tensor,
    parse_sources,
    prepare_model,
    write_tiff,
)
from scopectl.learn.modelio import ModelCard
from scopectl.learn.network import EnhanceNet, build_network


def _image(rows: int, cols: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = cv2.resize(rng.random((rows // 6 + 2, cols // 6 + 2, 3)).astype(np.float32), (cols, rows))
    return np.clip(255 * base + rng.normal(0, 8, (rows, cols, 3)), 0, 255).astype(np.uint8)


@pytest.mark.parametrize(("ratio", "tile"), [((5, 2), 40), ((3, 1), 30), ((2, 1), 33)])
def test_tiled_output_equals_whole_image_output(ratio: tuple[int, int], tile: int) -> None:
    torch.manual_seed(4)
    net = build_network(ratio).eval()
    rgb = _image(71, 93)
    x = _to_input(rgb, torch.device("cpu"), channels_last=True)
    whole = enhance_tensor(net, x, tile=None)
    tiled = enhance_tensor(net, x, tile=tile)
    assert whole.shape == tiled.shape == (1, 3, *net.output_shape(71, 93))
    torch.testing.assert_close(tiled, whole, rtol=0, atol=1e-5)


def test_overlap_must_exceed_the_receptive_field(seeded_net: EnhanceNet) -> None:
    rgb = _image(64, 64)
    x = _to_input(rgb, torch.device("cpu"), channels_last=True)
    whole = enhance_tensor(seeded_net, x, tile=None)
    with pytest.raises(ConfigError, match="receptive field"):
        enhance_tensor(seeded_net, x, tile=30, overlap=8)
    # the guard is not arbitrary: 8 px of context leave seams, 13 px (→ 14, a multiple of q) do not
    seams = _tiled_forward(seeded_net, x, tile=30, overlap=8, precision="fp32")
    assert float((seams - whole).abs().max()) > 1e-5  # 100× the rounding error of the exact tiling
    torch.testing.assert_close(enhance_tensor(seeded_net, x, tile=30, overlap=13), whole, rtol=0, atol=1e-5)


def test_uint8_enhancement_is_tile_independent(seeded_net: EnhanceNet) -> None:
    rgb = _image(45, 40, seed=1)
    a = enhance_image(seeded_net, rgb, tile=None, device="cpu")
    b = enhance_image(seeded_net, rgb, tile=20, device="cpu")
    assert a.shape == (113, 100, 3) and a.dtype == np.uint8
    assert np.abs(a.astype(int) - b.astype(int)).max() <= 1
    assert np.mean(a != b) < 1e-3


class _OomAbove(torch.nn.Module):
    """Wraps a network and raises CUDA's out-of-memory error for inputs larger than ``limit`` pixels."""

    def __init__(self, net: EnhanceNet, limit: int) -> None:
        super().__init__()
        self.net = net
        self.ratio = net.ratio
        self.limit = limit
        self.sizes: list[tuple[int, int]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.sizes.append((int(x.shape[2]), int(x.shape[3])))
        if x.shape[2] * x.shape[3] > self.limit:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        out: torch.Tensor = self.net(x)
        return out


def test_out_of_memory_shrinks_tiles_and_goes_on(seeded_net: EnhanceNet) -> None:
    rgb = _image(160, 160, seed=2)
    wrapped = _OomAbove(seeded_net, limit=115 * 115)
    shrunk: list[int] = []
    out = enhance_image(wrapped, rgb, tile=None, device="cpu", on_shrink=shrunk.append)
    assert shrunk == [80]  # the whole image fails; 80-px tiles with 16 px of context (112 px) fit
    assert wrapped.sizes[0] == (160, 160) and max(r * c for r, c in wrapped.sizes[1:]) <= 115 * 115
    whole = enhance_image(seeded_net, rgb, tile=None, device="cpu")
    assert np.abs(out.astype(int) - whole.astype(int)).max() <= 1
    with pytest.raises(ModelError, match="out of memory"):
        enhance_image(_OomAbove(seeded_net, limit=10), rgb, tile=None, device="cpu")


def test_bf16_on_cpu_stays_close_to_fp32(seeded_net: EnhanceNet) -> None:
    rgb = _image(64, 64, seed=3)
    a = enhance_image(seeded_net, rgb, device="cpu", precision="fp32").astype(int)
    b = enhance_image(seeded_net, rgb, device="cpu", precision="bf16").astype(int)
    assert np.abs(a - b).mean() < 0.5 and np.abs(a - b).max() <= 3  # 8-bit levels


def test_tiff_carries_pixel_size_for_imagej(tmp_path: Path) -> None:
    rgb = _image(40, 50)
    path = tmp_path / "out.tif"
    write_tiff(path, rgb, pixel_size_um=0.37, info="test")
    with tifffile.TiffFile(path) as tif:
        assert tif.is_imagej
        assert tif.imagej_metadata is not None and tif.imagej_metadata["unit"] == "um"
        num, den = tif.pages.first.tags["XResolution"].value
        assert den / num == pytest.approx(0.37, rel=1e-6)
        np.testing.assert_array_equal(tif.asarray(), rgb)
    img = read_image(path)
    assert img.pixel_size_um == pytest.approx(0.37, rel=1e-6)


def _card(net: EnhanceNet) -> ModelCard:
    return ModelCard(
        name="t", ratio=f"{net.ratio[0]}/{net.ratio[1]}", input_pixel_size_um=0.925, target_pixel_size_um=0.37
    )


def test_enhance_files_of_every_format(tmp_path: Path, seeded_net: EnhanceNet) -> None:
    rgb = _image(48, 56)
    cv2.imwrite(str(tmp_path / "a.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    cv2.imwrite(str(tmp_path / "b.jpg"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95])
    write_tiff(tmp_path / "c.tif", rgb, pixel_size_um=0.4625)  # half the model's pixel: resampled ×0.5
    sources = parse_sources([str(tmp_path / n) for n in ("a.png", "b.jpg", "c.tif")])
    net = prepare_model(seeded_net, device=torch.device("cpu"))
    out_dir = tmp_path / "out"
    done = enhance_sources(sources, net, _card(seeded_net), out_dir, device=torch.device("cpu"))
    assert [o.output.name for o in done] == ["a.ome.tif", "b.ome.tif", "c.ome.tif"]
    assert done[0].output_shape == (120, 140) and done[0].pixel_size_assumed and not done[0].resampled
    assert done[2].resampled and not done[2].pixel_size_assumed and done[2].output_shape == (60, 70)
    for o in done:
        back = read_image(o.output)
        assert back.rgb.shape[:2] == o.output_shape
        assert back.pixel_size_um == pytest.approx(0.37, rel=1e-6)
    direct = enhance_image(seeded_net, read_image(tmp_path / "a.png").rgb, device="cpu")
    np.testing.assert_array_equal(read_image(out_dir / "a.ome.tif").rgb, direct)
    with tifffile.TiffFile(out_dir / "a.ome.tif") as tif:
        assert tif.is_ome and tif.ome_metadata is not None
        assert '<M K="model">t</M>' in tif.ome_metadata and str(tmp_path / "a.png") in tif.ome_metadata
    with pytest.raises(ConfigError, match="exists"):
        enhance_sources(sources, net, _card(seeded_net), out_dir, device=torch.device("cpu"))
    cv2.imwrite(str(tmp_path / "a.jpg"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    dup = [FileSource(tmp_path / "a.png"), FileSource(tmp_path / "a.jpg")]
    with pytest.raises(ConfigError, match="both be written"):
        enhance_sources(dup, net, _card(seeded_net), tmp_path / "o2", device=torch.device("cpu"))


def test_enhance_captures_in_a_slide_store(tmp_path: Path, seeded_net: EnhanceNet) -> None:
    from scopectl.errors import InputFileError
    from scopectl.store import CaptureRecord, SlideStore

    store_path = tmp_path / "s1.h5"
    with SlideStore.create(store_path, slide_id="s1", rig={"kind": "test"}, simulated=True) as store:
        for k in range(2):
            store.add_capture(
                CaptureRecord(
                    rgb=_image(40, 36, seed=k),
                    field_index=k,
                    pixel_size_um=0.925,
                    dng=None,
                    jpeg=None,
                    source=None,
                    source_name=f"f{k}.jpg",
                    settings={},
                    led_state={},
                    battery_mv=None,
                    stage_x_um=None,
                    stage_y_um=None,
                    timestamp=0.0,
                    latencies_s={},
                )
            )
    assert [s.name for s in parse_sources([str(store_path)])] == ["s1-capture0000", "s1-capture0001"]
    one = parse_sources([f"{store_path}:1"])
    net = prepare_model(seeded_net, device=torch.device("cpu"))
    (done,) = enhance_sources(one, net, _card(seeded_net), tmp_path / "out", device=torch.device("cpu"))
    assert done.output.name == "s1-capture0001.ome.tif" and not done.pixel_size_assumed and not done.resampled
    np.testing.assert_array_equal(
        read_image(done.output).rgb, enhance_image(seeded_net, _image(40, 36, seed=1))
    )
    with pytest.raises(InputFileError, match="no capture 7"):
        parse_sources([f"{store_path}:7"])


@pytest.mark.parametrize(("fmt", "name"), [("tiff", "a.tif"), ("png", "a.png")])
def test_enhance_writes_the_chosen_format(
    tmp_path: Path, seeded_net: EnhanceNet, fmt: str, name: str
) -> None:
    rgb = _image(32, 40)
    cv2.imwrite(str(tmp_path / "a.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    net = prepare_model(seeded_net, device=torch.device("cpu"))
    (done,) = enhance_sources(
        [FileSource(tmp_path / "a.png")],
        net,
        _card(seeded_net),
        tmp_path / "o",
        device=torch.device("cpu"),
        fmt=fmt,  # type: ignore[arg-type]
    )
    assert done.output == tmp_path / "o" / name
    back = read_image(done.output)
    assert back.pixel_size_um == pytest.approx(0.37, rel=1e-6)
    np.testing.assert_array_equal(back.rgb, enhance_image(seeded_net, rgb))
    with pytest.raises(ConfigError, match="not one of"):
        enhance_sources([], net, _card(seeded_net), tmp_path / "o", device=torch.device("cpu"), fmt="jpeg")  # type: ignore[arg-type]
