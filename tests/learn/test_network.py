"""The paper's network: architecture, sizes, initialisation, receptive field."""

from __future__ import annotations

import math

import pytest
import torch

from scopectl.learn.network import (
    INIT_STD,
    block_widths,
    build_network,
    parse_ratio,
    receptive_field_radius,
)


def test_block_widths_follow_equation_3() -> None:
    assert block_widths() == [32, 34, 38, 44, 52, 62]


def test_parameter_count_and_channel_sequence() -> None:
    net = build_network()
    assert sum(p.numel() for p in net.parameters()) == 229_197
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    sequence = [convs[0].in_channels] + [c.out_channels for c in convs]
    # 3 → 32 → (34 34) (38 38) (44 44) (52 52) (62 62) → 75 → [pixel shuffle: 3] → 3
    assert sequence == [3, 32, 34, 34, 38, 38, 44, 44, 52, 52, 62, 62, 75, 3]
    assert all(c.kernel_size == (3, 3) for c in convs)
    assert net.tail.stride == (2, 2) and net.tail.in_channels == 3


@pytest.mark.parametrize(
    ("ratio", "size", "expected"),
    [
        ((5, 2), (60, 60), (150, 150)),
        ((5, 2), (61, 33), (153, 83)),
        ((2, 1), (17, 20), (34, 40)),
        ((3, 1), (16, 15), (48, 45)),
        ((1, 1), (19, 21), (19, 21)),
    ],
)
def test_output_size_is_ceil_of_ratio(
    ratio: tuple[int, int], size: tuple[int, int], expected: tuple[int, int]
) -> None:
    net = build_network(ratio).eval()
    with torch.no_grad():
        out = net(torch.rand(2, 3, *size))
    assert tuple(out.shape) == (2, 3, *expected)
    assert net.output_shape(*size) == expected
    assert (math.ceil(size[0] * ratio[0] / ratio[1]), math.ceil(size[1] * ratio[0] / ratio[1])) == expected


def test_initialisation_is_truncated_normal_with_zero_bias() -> None:
    torch.manual_seed(0)
    net = build_network()
    weights = torch.cat(
        [m.weight.detach().flatten() for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    )
    biases = torch.cat([m.bias.detach().flatten() for m in net.modules() if isinstance(m, torch.nn.Conv2d)])
    assert torch.all(biases == 0)
    assert weights.abs().max() <= 2 * INIT_STD
    # std of N(0, σ²) truncated at ±2σ is 0.8796σ
    assert float(weights.std()) == pytest.approx(0.8796 * INIT_STD, rel=0.02)
    assert abs(float(weights.mean())) < 1e-3


def test_zero_padded_shortcut_matches_equation_2() -> None:
    torch.manual_seed(1)
    net = build_network()
    block = net.blocks[0]  # 32 → 34
    x = torch.rand(1, 32, 9, 9)
    y = torch.relu(block.conv2(torch.relu(block.conv1(x))))
    padded = torch.cat([x, torch.zeros(1, 2, 9, 9)], dim=1)
    with torch.no_grad():
        torch.testing.assert_close(block(x), padded + y)


def test_receptive_field_radius_is_twelve_input_pixels() -> None:
    torch.manual_seed(2)
    net = build_network().eval()
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.Conv2d):
                m.bias.fill_(0.05)  # keep ReLUs open so that every path carries the perturbation
                m.weight.abs_()
    x = 0.5 + torch.rand(1, 3, 60, 60) * 0.4  # above the centring offset: positive paths stay open
    x2 = x.clone()
    x2[0, :, 30, 30] += 0.1
    with torch.no_grad():
        changed = (net(x2) - net(x)).abs().amax(dim=(0, 1)) > 0
    rows = torch.nonzero(changed.any(dim=1)).flatten()
    # output row j is centred at input (2j + 0.5)/5 - 0.5; the change must stay within 12 (+1 for the tail) px
    centres = (2 * rows.float() + 0.5) / 5 - 0.5
    assert float((centres - 30).abs().max()) <= receptive_field_radius() + 1
    assert float((centres - 30).abs().max()) >= receptive_field_radius() - 1


@pytest.mark.parametrize(
    ("text", "expected"), [("5/2", (5, 2)), ("2.5", (5, 2)), ("2", (2, 1)), ((3, 1), (3, 1))]
)
def test_parse_ratio(text: str | tuple[int, int], expected: tuple[int, int]) -> None:
    assert parse_ratio(text) == expected


@pytest.mark.parametrize("bad", ["1/2", "0", "abc", "9", "7/4", (1, 0)])
def test_parse_ratio_rejects(bad: str | tuple[int, int]) -> None:
    with pytest.raises(ValueError, match="ratio"):
        parse_ratio(bad)
