"""Models as files: safetensors + model card round trip; pickles and tampered files are refused."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
import torch

from scopectl.errors import ModelError
from scopectl.learn.modelio import ModelCard, load_model, read_card, resolve_model_dir, save_model
from scopectl.learn.network import EnhanceNet, build_network


def _card(**kw: object) -> ModelCard:
    return ModelCard(name="m", input_pixel_size_um=0.925, target_pixel_size_um=0.37, sample_type="lung", **kw)  # type: ignore[arg-type]


def test_round_trip_gives_identical_outputs(tmp_path: Path, seeded_net: EnhanceNet) -> None:
    card = save_model(tmp_path / "m", seeded_net, _card())
    assert (tmp_path / "m" / "model.safetensors").is_file()
    assert card.parameters == 229_197 and len(card.weights_sha256) == 64 and card.software is not None
    loaded, card2 = load_model(tmp_path / "m")
    assert card2 == card
    x = torch.rand(1, 3, 23, 31)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), seeded_net(x), rtol=0, atol=0)
    on_disk = json.loads((tmp_path / "m" / "model.json").read_text())
    assert on_disk["architecture"] == "rivenson2018-pyramidal-resnet" and on_disk["ratio"] == "5/2"
    assert on_disk["input_pixel_size_um"] == 0.925 and on_disk["sample_type"] == "lung"


def test_other_ratio_round_trip(tmp_path: Path) -> None:
    net = build_network((3, 1))
    save_model(tmp_path / "r3", net, _card(ratio="3"))
    loaded, card = load_model(tmp_path / "r3")
    assert card.ratio == "3/1" and loaded.ratio == (3, 1)
    with pytest.raises(ModelError, match="ratio"):
        save_model(tmp_path / "bad", net, _card(ratio="5/2"))


def test_pickle_checkpoint_is_refused(tmp_path: Path, seeded_net: EnhanceNet) -> None:
    pt = tmp_path / "model.pt"
    torch.save(seeded_net.state_dict(), pt)
    with pytest.raises(ModelError, match="pickle"):
        load_model(pt)
    # a pickle disguised under the safetensors name is refused by content, and never unpickled
    disguised = tmp_path / "d"
    save_model(disguised, seeded_net, _card())
    (disguised / "model.safetensors").write_bytes(pickle.dumps({"x": 1}))
    with pytest.raises(ModelError, match="pickle"):
        load_model(disguised)
    # a stray pickle inside a model directory is refused too
    ok = tmp_path / "ok"
    save_model(ok, seeded_net, _card())
    torch.save({"a": torch.zeros(1)}, ok / "extra.pth")
    with pytest.raises(ModelError, match=r"extra\.pth.*never unpickles"):
        load_model(ok)


def test_tampered_or_mismatched_weights_are_refused(tmp_path: Path, seeded_net: EnhanceNet) -> None:
    from safetensors.torch import save_file

    save_model(tmp_path / "m", seeded_net, _card())
    weights = tmp_path / "m" / "model.safetensors"
    blob = bytearray(weights.read_bytes())
    blob[-5] ^= 0xFF
    weights.write_bytes(bytes(blob))
    with pytest.raises(ModelError, match="checksum"):
        load_model(tmp_path / "m")
    # right checksum field cleared, wrong tensors: refused by name/shape
    card = read_card(tmp_path / "m").model_copy(update={"weights_sha256": ""})
    (tmp_path / "m" / "model.json").write_text(card.model_dump_json())
    save_file({"head.weight": torch.zeros(32, 3, 3, 3)}, str(weights))
    with pytest.raises(ModelError, match="do not match"):
        load_model(tmp_path / "m")


def test_missing_and_invalid_cards(tmp_path: Path, seeded_net: EnhanceNet) -> None:
    with pytest.raises(ModelError, match="no such model"):
        load_model(tmp_path / "nope")
    save_model(tmp_path / "m", seeded_net, _card())
    data = json.loads((tmp_path / "m" / "model.json").read_text())
    data["surprise"] = 1
    (tmp_path / "m" / "model.json").write_text(json.dumps(data))
    with pytest.raises(ModelError, match="surprise: unknown key"):
        load_model(tmp_path / "m")


def test_resolve_model_dir(tmp_path: Path) -> None:
    assert resolve_model_dir("lung-v1", models_dir=tmp_path) == tmp_path / "lung-v1"
    assert resolve_model_dir(str(tmp_path / "x" / "y"), models_dir=tmp_path) == tmp_path / "x" / "y"
    with pytest.raises(ModelError, match="not valid"):
        resolve_model_dir("bad name!", models_dir=tmp_path)


def test_safetensors_header_is_not_mistaken_for_a_pickle(tmp_path: Path) -> None:
    from safetensors.torch import save

    from scopectl.learn.modelio import check_not_pickle

    # a header length whose low byte is 0x80 (the pickle protocol marker) must still be accepted
    blob = next(
        b for pad in range(400) if (b := save({"t": torch.zeros(1)}, metadata={"p": "x" * pad}))[0] == 0x80
    )
    path = tmp_path / "model.safetensors"
    path.write_bytes(blob)
    check_not_pickle(path)
    path.write_bytes(pickle.dumps([1, 2, 3]))
    with pytest.raises(ModelError, match="is a Python pickle"):
        check_not_pickle(path)
