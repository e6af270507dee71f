"""The CIFAR-10 family of Sec. 4.2 and Table 6, as built: exact counts, option A, options B and C, ResNet-1202, the
plain nets, and the training example (tools/train_cifar.py).

Every expected number comes from support/facts.py (FACTS.md) or from arithmetic written here from the text of Sec. 4.2.
Deep networks are built on the meta device (no memory, no values) and cached, since ResNet-1202 takes seconds to build.
"""

from __future__ import annotations

import functools
import importlib.util
import math
import sys
from pathlib import Path
from types import ModuleType

import pytest
import torch
from cases import HUGE_BLOCKS
from facts import CIFAR_MACS, CIFAR_N, CIFAR_OUTPUT, CIFAR_PARAMS_A, CIFAR_TABLE6_PARAMS, CIFAR_WIDTHS
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import resnet_spec
from resnet_spec import ResNet, build, list_specs, load_spec
from resnet_spec.models import PlainBlock, ResidualBlock, ZeroPadShortcut

DEPTHS = sorted(CIFAR_N)
# The same depths, those of more than HUGE_BLOCKS blocks (ResNet-1202: 3 stages of n = 200) with the slow tests.
DEPTHS_HUGE_SLOW = [
    pytest.param(depth, marks=[pytest.mark.slow] if 3 * CIFAR_N[depth] > HUGE_BLOCKS else []) for depth in DEPTHS
]
# The plain entries of the CIFAR table: Fig. 6 (left) plots plain-20/32/44/56; its caption names plain-110.
PLAIN_DEPTHS = (20, 32, 44, 56, 110)
NUM_CLASSES = 10  # "a 10-way fully-connected layer"
STEM_FILTERS = 16  # "The first layer is 3x3 convolutions", feeding the 16-filter stage
RGB = 3


# ----------------------------------------------------------------------------------------------------------------
# Helpers: cached meta builds, and the arithmetic of Sec. 4.2


@functools.cache
def _meta_model(name: str, shortcut: str | None = None) -> ResNet:
    """A meta-device build, shared between tests (they only read it); through the package's constructor where
    there is one (``resnet_spec.resnet1202``), so that the constructors are what the tests see."""
    overrides = {} if shortcut is None else {"shortcut": shortcut}
    constructor = getattr(resnet_spec, name, None)
    if constructor is None:
        return build(name, device="meta", **overrides).eval()
    return constructor(device="meta", **overrides).eval()


@functools.cache
def _meta_forward(depth: int) -> tuple[dict[str, tuple[int, ...]], dict[str, int]]:
    """One meta forward of resnet{depth} at 32x32, batch 1: each row's output shape and FlopCounterMode's counts."""
    model = _meta_model(f"resnet{depth}")
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        rows = model.forward_rows(torch.empty(1, RGB, 32, 32, device="meta"))
    flops = {str(op): int(n) for op, n in counter.get_flop_counts()["Global"].items()}
    return {row: tuple(t.shape) for row, t in rows.items()}, flops


def _num_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _conv_bn_params(kernel: int, c_in: int, c_out: int) -> int:
    """A conv without bias followed by BN (weight and bias): k*k*c_in*c_out + 2*c_out."""
    return kernel * kernel * c_in * c_out + 2 * c_out


def _params_by_arithmetic(depth: int, shortcut: str) -> int:
    """Sec. 4.2 in numbers: a 3x3 conv of 16 filters, then 3 stages of n blocks of two 3x3 convs with 16/32/64
    filters, then a 10-way fc with bias.  Option A and plain nets add nothing; B adds a 1x1 projection (+ BN) where
    the channels grow (the first block of stages 2 and 3, which is also where the stride is 2); C adds one to every
    block.
    """
    n = CIFAR_N[depth]
    total = _conv_bn_params(3, RGB, STEM_FILTERS)
    c_in = STEM_FILTERS
    for width in CIFAR_WIDTHS:
        for _ in range(n):
            total += _conv_bn_params(3, c_in, width) + _conv_bn_params(3, width, width)
            if shortcut == "C" or (shortcut == "B" and c_in != width):
                total += _conv_bn_params(1, c_in, width)
            c_in = width
    return total + CIFAR_WIDTHS[-1] * NUM_CLASSES + NUM_CLASSES


def _table6_rounding(count: int) -> int:
    """Table 6's rounding of a parameter count: two significant figures, but never coarser than 0.1M.

    That is the rule all six printed figures follow (0.27M, 0.46M, 0.66M, 0.85M, 1.7M, 19.4M).  Two significant
    figures alone would print ResNet-1202 as 19M, not 19.4M; one decimal of millions alone would print ResNet-20 as
    0.3M.  So: round to the nearest multiple of min(10**(digits - 2), 100,000), halves up.
    """
    step = min(10 ** (len(str(count)) - 2), 100_000)
    return (count + step // 2) // step * step


def _stage_blocks(model: ResNet) -> list[tuple[str, nn.Module]]:
    """(``layerK.i``, block) for every block, in order."""
    return [(f"{layer}.{i}", block) for layer in model.layer_names for i, block in enumerate(getattr(model, layer))]


def _transition_blocks() -> set[str]:
    """Where Sec. 4.2's subsampling happens (16 -> 32 and 32 -> 64 filters): the first block of stages 2 and 3."""
    return {f"layer{k}.0" for k in range(2, len(CIFAR_WIDTHS) + 1)}


# ----------------------------------------------------------------------------------------------------------------
# Parameter counts and MACs


@pytest.mark.parametrize("depth", DEPTHS)
def test_parameter_count_is_the_exact_figure(depth: int) -> None:
    found = _num_params(_meta_model(f"resnet{depth}"))
    assert found == CIFAR_PARAMS_A[depth], (
        f"resnet{depth}: expected {CIFAR_PARAMS_A[depth]:,} parameters, got {found:,}"
    )


@pytest.mark.parametrize("depth", DEPTHS)
def test_parameter_count_rounds_to_table6(depth: int) -> None:
    found = _num_params(_meta_model(f"resnet{depth}"))
    rounded = _table6_rounding(found)
    assert rounded == CIFAR_TABLE6_PARAMS[depth], (
        f"resnet{depth}: {found:,} parameters round to {rounded / 1e6:g}M; Table 6 prints "
        f"{CIFAR_TABLE6_PARAMS[depth] / 1e6:g}M"
    )


@pytest.mark.parametrize("shortcut", ["A", "B", "C", "none"])
@pytest.mark.parametrize("depth", DEPTHS_HUGE_SLOW)
def test_parameter_count_by_the_arithmetic_of_section_4_2(depth: int, shortcut: str) -> None:
    expected = _params_by_arithmetic(depth, shortcut)
    if shortcut == "A":
        assert expected == CIFAR_PARAMS_A[depth], "the arithmetic of this test disagrees with FACTS.md"
    found = _num_params(_meta_model(f"resnet{depth}", shortcut))
    assert found == expected, f"resnet{depth} shortcut {shortcut}: expected {expected:,} parameters, got {found:,}"


@pytest.mark.parametrize("depth", DEPTHS)
def test_6n_plus_2_weighted_layers(depth: int) -> None:
    """Option A adds no conv, so the built convs and fc are exactly the paper's 6n+2 weighted layers."""
    model = _meta_model(f"resnet{depth}")
    weighted = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    blocks = [m for m in model.modules() if isinstance(m, ResidualBlock)]
    assert len(weighted) == 6 * CIFAR_N[depth] + 2 == depth
    assert len(blocks) == len(CIFAR_WIDTHS) * CIFAR_N[depth]
    assert model.spec.depth == depth


@pytest.mark.parametrize("depth", DEPTHS_HUGE_SLOW)
def test_conv_and_fc_macs_at_32x32_are_the_exact_figures(depth: int) -> None:
    """FlopCounterMode counts 2 FLOPs per multiply-add, of convolutions and matrix products only."""
    _, flops = _meta_forward(depth)
    assert set(flops) == {"aten.convolution", "aten.addmm"}, f"unexpected counted ops: {flops}"
    assert flops["aten.addmm"] == 2 * CIFAR_WIDTHS[-1] * NUM_CLASSES  # the fc: 64 inputs x 10 outputs
    total = sum(flops.values())
    assert total % 2 == 0 and total // 2 == CIFAR_MACS[depth], (
        f"resnet{depth}: expected {CIFAR_MACS[depth]:,} MACs, counted {total:,} FLOPs = {total / 2:,} MACs"
    )


@pytest.mark.parametrize("depth", DEPTHS)
def test_row_shapes_are_32_16_8(depth: int) -> None:
    shapes, _ = _meta_forward(depth)
    expected = {"conv1": (1, STEM_FILTERS, CIFAR_OUTPUT["conv1"], CIFAR_OUTPUT["conv1"])}
    for k, width in enumerate(CIFAR_WIDTHS):
        row = f"conv{k + 2}_x"
        expected[row] = (1, width, CIFAR_OUTPUT[row], CIFAR_OUTPUT[row])
    expected["fc"] = (1, NUM_CLASSES)
    assert shapes == expected


def test_resnet1202_builds_and_runs_on_the_meta_device() -> None:
    """Correctness only: ResNet-1202 (n = 200) builds without memory and a forward gives each row's shape."""
    model = _meta_model("resnet1202")
    assert all(p.device.type == "meta" for p in model.parameters())
    assert [len(getattr(model, layer)) for layer in model.layer_names] == [CIFAR_N[1202]] * len(CIFAR_WIDTHS)
    shapes, _ = _meta_forward(1202)
    assert shapes == {
        "conv1": (1, 16, 32, 32),
        "conv2_x": (1, 16, 32, 32),
        "conv3_x": (1, 32, 16, 16),
        "conv4_x": (1, 64, 8, 8),
        "fc": (1, NUM_CLASSES),
    }


# ----------------------------------------------------------------------------------------------------------------
# Shortcut options


@pytest.mark.parametrize("depth", DEPTHS)
def test_option_a_is_the_default_and_zero_pads_only_at_the_transitions(depth: int) -> None:
    model = _meta_model(f"resnet{depth}")  # the constructor with its defaults
    assert model.spec.shortcut.name == "A"
    kinds = {where: type(block.downsample) for where, block in _stage_blocks(model)}
    zero_pad = {where for where, kind in kinds.items() if kind is ZeroPadShortcut}
    assert zero_pad == _transition_blocks()
    assert all(kind is nn.Identity for where, kind in kinds.items() if where not in zero_pad), kinds
    for _, block in _stage_blocks(model):
        assert list(block.downsample.parameters()) == [] and list(block.downsample.buffers()) == []


@pytest.mark.parametrize(("layer", "size"), [("layer2", 32), ("layer3", 16), ("layer2", 9)])
def test_option_a_block_with_a_zeroed_branch_is_relu_of_the_padded_subsample(layer: str, size: int) -> None:
    """On real values: zero the residual branch (last BN weight and bias 0) of a block whose shape changes; what is
    left is the shortcut, relu(x[:, :, ::2, ::2] with zero channels appended), and the appended channels are 0.
    ``size`` 32 and 16 are the real inputs of stages 2 and 3; 9 is odd (ceil(9/2) = 5, as the stride-2 conv gives).
    """
    torch.manual_seed(0)
    block = getattr(build("resnet20"), layer)[0].eval()
    c_in, c_out = block.conv1.in_channels, block.last_bn.num_features
    assert (c_in * 2, block.conv1.stride) == (c_out, (2, 2))
    x = torch.randn(2, c_in, size, size)
    half = (size + 1) // 2
    shortcut = block.downsample(x)
    assert torch.equal(shortcut[:, :c_in], x[:, :, ::2, ::2])  # negative values too: no ReLU inside the shortcut
    assert shortcut.shape == (2, c_out, half, half) and torch.count_nonzero(shortcut[:, c_in:]) == 0

    with torch.no_grad():
        nn.init.zeros_(block.last_bn.weight)
        nn.init.zeros_(block.last_bn.bias)
        out = block(x.clone())
    expected = torch.zeros(2, c_out, half, half)
    expected[:, :c_in] = torch.relu(x[:, :, ::2, ::2])
    assert torch.equal(out, expected)
    assert torch.count_nonzero(out[:, c_in:]) == 0, "the padded channels must be exactly zero"
    assert torch.count_nonzero(out[:, :c_in]) > 0  # a real input: the check above is not vacuous


@pytest.mark.parametrize("depth", DEPTHS)
def test_option_b_projects_at_the_two_transitions_and_c_everywhere(depth: int) -> None:
    for shortcut, where in (("B", _transition_blocks()), ("C", None)):
        model = _meta_model(f"resnet{depth}", shortcut)
        blocks = _stage_blocks(model)
        projections = {name for name, block in blocks if isinstance(block.downsample, nn.Sequential)}
        expected = {name for name, _ in blocks} if where is None else where
        assert projections == expected, f"shortcut {shortcut}"
        assert all(isinstance(block.downsample, nn.Identity) for name, block in blocks if name not in projections)
    assert len(expected) == len(CIFAR_WIDTHS) * CIFAR_N[depth]


# ----------------------------------------------------------------------------------------------------------------
# Plain nets


@pytest.mark.parametrize("depth", PLAIN_DEPTHS)
def test_plain_net_is_its_resnet_without_shortcuts(depth: int) -> None:
    name = f"plain{depth}"
    assert name in list_specs("cifar10")
    plain, resnet = load_spec(name), load_spec(f"resnet{depth}")
    assert plain.shortcut.name == "none" and all(block.shortcut == "none" for block in plain.blocks)
    assert [(s.layers, s.repeats, s.stride) for s in plain.stages] == [
        (s.layers, s.repeats, s.stride) for s in resnet.stages
    ]
    model = _meta_model(name)
    assert _num_params(model) == CIFAR_PARAMS_A[depth], "option A has no parameters, so plain and ResNet agree"
    assert not any(isinstance(m, (ResidualBlock, ZeroPadShortcut)) for m in model.modules())
    assert sum(isinstance(m, PlainBlock) for m in model.modules()) == len(CIFAR_WIDTHS) * CIFAR_N[depth]


def test_plain_block_with_a_zeroed_branch_outputs_zero() -> None:
    """No shortcut adds the input back: with its last BN zeroed, a plain block outputs exactly 0."""
    torch.manual_seed(0)
    model = build("plain20").eval()
    for layer in model.layer_names:
        block = getattr(model, layer)[0]
        with torch.no_grad():
            nn.init.zeros_(block.last_bn.weight)
            nn.init.zeros_(block.last_bn.bias)
            out = block(torch.randn(2, block.conv1.in_channels, 8, 8))
        assert torch.count_nonzero(out) == 0, f"{layer}.0"


# ----------------------------------------------------------------------------------------------------------------
# The training example


@functools.cache
def _train_cifar() -> ModuleType:
    path = Path(__file__).resolve().parent.parent / "tools" / "train_cifar.py"
    spec = importlib.util.spec_from_file_location("train_cifar", path)
    assert spec is not None and spec.loader is not None, f"cannot load {path}"
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up here
    spec.loader.exec_module(module)
    return module


def test_training_lowers_the_loss_on_a_fixed_batch() -> None:
    losses = _train_cifar().train(depth=20, steps=4, batch=8, seed=0, log=None)
    assert len(losses) == 4 and all(math.isfinite(v) for v in losses), losses
    assert losses[-1] < losses[0], f"the loss did not decrease: {losses}"


def test_training_cli_exits_1_when_the_loss_does_not_decrease(capsys: pytest.CaptureFixture[str]) -> None:
    """With lr 0 nothing moves: the loss of the fixed batch stays the same, and the script says so."""
    status = _train_cifar().main(["--lr", "0", "--steps", "2", "--batch", "4"])
    captured = capsys.readouterr()
    assert status == 1
    assert "the loss did not decrease over 2 steps" in captured.err
    assert "step    2/2" in captured.out


def test_training_cli_offers_the_registry_depths(capsys: pytest.CaptureFixture[str]) -> None:
    status = _train_cifar().main(["--depth", "19"])
    choices = ", ".join(map(str, DEPTHS))
    err = capsys.readouterr().err
    assert status == 2 and f"invalid choice: 19 (choose from {choices})" in err and err.count("\n") == 1, err


def test_the_papers_recipe_and_learning_rate_schedule() -> None:
    """Sec. 4.2: lr 0.1, /10 at 32k and 48k, stop at 64k, batch 128, wd 1e-4, momentum 0.9; ResNet-110 warms up at
    0.01 for about 400 iterations."""
    module = _train_cifar()
    paper = module.PAPER
    assert (paper.lr, paper.momentum, paper.weight_decay, paper.batch, paper.iterations) == (
        0.1,
        0.9,
        1e-4,
        128,
        64_000,
    )
    lr = module.learning_rate
    schedule = {0: 0.1, 31_999: 0.1, 32_000: 0.01, 47_999: 0.01, 48_000: 0.001, 63_999: 0.001}
    assert {i: lr(i, 20) for i in schedule} == pytest.approx(schedule, rel=1e-12)
    assert (lr(0, 110), lr(399, 110), lr(400, 110), lr(32_000, 110)) == pytest.approx((0.01, 0.01, 0.1, 0.01))
    assert lr(0, 56) == pytest.approx(0.1)


def test_augmentation_is_a_crop_of_the_4_padded_image_or_its_flip() -> None:
    """Every augmented image equals one 32x32 window of the image padded by 4 zeros (or of its mirror image), and the
    windows reach both ends of the 9 offsets 0..8 that 4 pixels of padding allow (3 would allow 1..7 only)."""
    module = _train_cifar()
    count, pad, size = 64, 4, 32
    images = torch.randn(count, RGB, size, size, generator=torch.Generator().manual_seed(1))
    out = module.augment(images, torch.Generator().manual_seed(2))
    assert out.shape == images.shape
    padded = torch.zeros(count, RGB, size + 2 * pad, size + 2 * pad)
    padded[:, :, pad : pad + size, pad : pad + size] = images
    offsets = range(2 * pad + 1)
    seen = []
    for image, result in zip(padded, out, strict=True):
        matches = [
            (top, left, flip)
            for top in offsets
            for left in offsets
            for flip in (False, True)
            if torch.equal(result, (image.flip(-1) if flip else image)[:, top : top + size, left : left + size])
        ]
        assert len(matches) == 1, f"expected exactly one window of the padded image, found {matches}"
        seen.append(matches[0])
    tops, lefts, flips = (set(column) for column in zip(*seen, strict=True))
    assert (min(tops), max(tops), min(lefts), max(lefts)) == (0, 2 * pad, 0, 2 * pad), (sorted(tops), sorted(lefts))
    assert flips == {False, True}
