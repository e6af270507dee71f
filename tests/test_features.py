"""Backbone use: every row's channels and reduction from the spec, row outputs, FeatureExtractor, headless models.

Expected channels come from Table 1 / Sec. 4.2 (tests/support/facts.py); expected reductions are the table's input size
divided by the row's output size (Table 1: 224 / 112 = 2 for conv1 ... 224 / 7 = 32 for conv5_x).
"""

from __future__ import annotations

import math
import re

import pytest
import torch
from cases import CASE_IDS, CASES, TABLE_HEADS, huge
from facts import (
    CIFAR_N,
    CIFAR_OUTPUT,
    CIFAR_PARAMS_A,
    CIFAR_WIDTHS,
    PARAMS_B,
    TABLE1_BASIC_WIDTHS,
    TABLE1_BLOCK,
    TABLE1_BOTTLENECK_WIDTHS,
    TABLE1_OUTPUT,
)
from torch import nn

from resnet_spec import build, list_specs, load_spec
from resnet_spec.models import FeatureExtractor
from resnet_spec.spec import FeatureInfo, feature_info

IMAGENET_CONV1 = 64  # Table 1, conv1: "7x7, 64, stride 2"
IMAGENET_INPUT = 224  # Table 1's input size
CIFAR_INPUT = 32  # Sec. 4.2: 32x32 images
IMAGENET_CLASSES = 1000  # Table 1: "1000-d fc"
CIFAR_CLASSES = 10  # Sec. 4.2: "10-way fully-connected layer"


def _depth(name: str) -> int:
    match = re.fullmatch(r"(?:resnet|plain)(\d+)", name)
    assert match is not None, f"registry name {name!r} does not end in a depth"
    return int(match.group(1))


def _expected_rows(name: str) -> list[tuple[str, int, int]]:
    """(row, channels, reduction) per row, from the paper's figures; for the family's entries, from the table's own
    cells and output column (the last cell's channels, input size / declared output)."""
    if re.fullmatch(r"(?:resnet|plain)(\d+)", name) is None or (not load_spec(name).canonical and "plain" not in name):
        spec = load_spec(name)
        declared = [("conv1", spec.stem.out_channels, spec.stem.output)]
        declared += [(stage.name, stage.layers[-1][1], stage.output) for stage in spec.stages]
        assert all(out is not None for _, _, out in declared), f"{name}: the table declares every output"
        return [(row, c, spec.input_size // out) for row, c, out in declared]  # type: ignore[operator]
    depth = _depth(name)
    if depth in TABLE1_BLOCK and name in (f"resnet{depth}", f"plain{depth}") and load_spec(name).family == "imagenet":
        widths = TABLE1_BASIC_WIDTHS if TABLE1_BLOCK[depth] == "basic" else TABLE1_BOTTLENECK_WIDTHS
        channels = [IMAGENET_CONV1, *(w[-1] for w in widths)]
        outputs, input_size = TABLE1_OUTPUT, IMAGENET_INPUT
    else:
        assert depth in CIFAR_N, f"{name}: no figures for depth {depth} in facts.py"
        channels = [CIFAR_WIDTHS[0], *CIFAR_WIDTHS]  # "first layer 3x3 conv, 16 filters", then 16, 32, 64
        outputs, input_size = CIFAR_OUTPUT, CIFAR_INPUT
    for row, out in outputs.items():
        assert input_size % out == 0, f"{row}: {input_size} is not a multiple of {out}"
    return [(row, c, input_size // out) for (row, out), c in zip(outputs.items(), channels, strict=True)]


@pytest.mark.parametrize(("name", "variant", "shortcut"), CASES, ids=CASE_IDS)
def test_feature_info_matches_the_paper_without_running(name: str, variant: str, shortcut: str) -> None:
    spec = load_spec(name, variant=variant, shortcut=shortcut)
    found = [(i.row, i.channels, i.reduction) for i in feature_info(spec)]
    assert found == _expected_rows(name)


def _registry_params(prefix: str = "", canonical: bool = False) -> list[object]:
    """Every registry name (or the canonical ones: the paper's, whose figures FACTS.md gives); networks of more than
    100 blocks (ResNet-1202: 600) are slow even on meta, and entries beyond :data:`cases.TABLE_HEADS` run with the
    slow tests: both marked slow."""
    return [
        pytest.param(name, marks=pytest.mark.slow) if huge(load_spec(name)) or name not in TABLE_HEADS else name
        for name in list_specs()
        if name.startswith(prefix) and (load_spec(name).canonical or not canonical)
    ]


@pytest.mark.parametrize("name", _registry_params())
def test_forward_rows_shapes_follow_feature_info_at_an_odd_input(name: str) -> None:
    """At 100x60 (not a multiple of 32) every row is ceil(size / reduction): "same" padding at every stride.  An
    anti-aliasing average pool (timm's AvgPool2d(2)) rounds down where the shortcut rounds up: a block that takes a
    stride so from an odd map has two shapes to add, and the network refuses that input, naming the block."""
    height, width, batch = 100, 60, 2
    model = build(name, device="meta")
    expected = {
        row: (batch, channels, math.ceil(height / reduction), math.ceil(width / reduction))
        for row, channels, reduction in _expected_rows(name)
    }
    entering = dict(zip([stage.name for stage in model.spec.stages], expected.values(), strict=False))
    undefined = [
        block.name
        for stage in model.spec.stages
        for block in stage.blocks
        if block.anti_alias is not None and block.anti_alias.kind == "avg" and block.stride == 2
        and block is stage.blocks[0] and any(n % 2 for n in entering[stage.name][2:])
    ]  # fmt: skip
    if undefined:
        with pytest.raises(ValueError, match=f"block {undefined[0]} at input {height}x{width}.*expected equal shapes"):
            model.forward_rows(torch.empty(batch, 3, height, width, device="meta"))
        return
    with torch.no_grad():
        rows = model.forward_rows(torch.empty(batch, 3, height, width, device="meta"))
    found = {row: tuple(t.shape) for row, t in rows.items() if row != "fc"}
    assert found == expected


def test_feature_info_names_real_modules_and_timm_keys() -> None:
    model = build("resnet50", device="meta")
    modules = dict(model.named_modules())
    assert model.feature_info == feature_info(model.spec)
    for info in model.feature_info:
        assert info.module in modules, f"{info.row}: no module named {info.module!r}"
    assert model.feature_info[-1].as_timm() == {"num_chs": 2048, "reduction": 32, "module": "layer4"}


def test_feature_extractor_returns_chosen_rows_equal_to_forward_rows() -> None:
    torch.manual_seed(0)
    model = build("resnet20").eval()
    extractor = FeatureExtractor(model, rows=["conv4_x", "conv2_x"])
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        features, rows = extractor(x), model.forward_rows(x)
    assert list(features) == ["conv2_x", "conv4_x"]  # network order, whatever order was asked
    for row, tensor in features.items():
        torch.testing.assert_close(tensor, rows[row], rtol=0, atol=0)
    assert [i.channels for i in extractor.info] == [CIFAR_WIDTHS[0], CIFAR_WIDTHS[2]]
    assert list(FeatureExtractor(model)(x)) == ["conv1", "conv2_x", "conv3_x", "conv4_x"]


@pytest.mark.parametrize("rows", [["conv5_x"], ["fc"], [], ["conv2_x", "conv2_x"]])
def test_feature_extractor_rejects_rows_the_network_lacks(rows: list[str]) -> None:
    model = build("resnet20", device="meta")
    with pytest.raises(ValueError, match=r"expected distinct rows of resnet20 among conv1, conv2_x, conv3_x, conv4_x"):
        FeatureExtractor(model, rows=rows)


def _classifier_params(name: str) -> tuple[int, int]:
    """(features into fc, fc parameters) from the paper: C_last x classes weights + classes biases."""
    _, channels, _ = _expected_rows(name)[-1]
    classes = IMAGENET_CLASSES if _depth(name) in PARAMS_B and load_spec(name).family == "imagenet" else CIFAR_CLASSES
    return channels, channels * classes + classes


@pytest.mark.parametrize("name", _registry_params("resnet", canonical=True))
def test_headless_model_returns_pooled_features(name: str) -> None:
    depth = _depth(name)
    full_params = PARAMS_B[depth] if load_spec(name).family == "imagenet" else CIFAR_PARAMS_A[depth]
    channels, fc_params = _classifier_params(name)
    model = build(name, num_classes=0, device="meta")
    assert isinstance(model.fc, nn.Identity)
    assert sum(p.numel() for p in model.parameters()) == full_params - fc_params
    assert model(torch.empty(3, 3, 64, 64, device="meta")).shape == (3, channels)


def test_headless_features_are_the_global_average_of_the_last_row_and_feed_the_classifier() -> None:
    torch.manual_seed(0)
    full = build("resnet20").eval()
    headless = build("resnet20", num_classes=0).eval()
    missing, unexpected = headless.load_state_dict(full.state_dict(), strict=False)
    assert (missing, unexpected) == ([], ["fc.weight", "fc.bias"])
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        features = headless(x)
        last = full.forward_rows(x)["conv4_x"]
        logits = full(x)
    torch.testing.assert_close(features, last.mean(dim=(2, 3)))
    torch.testing.assert_close(logits, features @ full.fc.weight.T + full.fc.bias)


@pytest.mark.parametrize("value", [-1, True, 2.0])
def test_build_rejects_bad_num_classes_naming_the_allowed_values(value: object) -> None:
    with pytest.raises(
        ValueError, match=r"expected num_classes an integer >= 0 \(0: headless.*got " + re.escape(repr(value))
    ):
        build("resnet18", num_classes=value, device="meta")  # type: ignore[arg-type]


def test_feature_info_is_a_frozen_dataclass() -> None:
    info = feature_info(load_spec("resnet18"))[0]
    assert isinstance(info, FeatureInfo)
    with pytest.raises(AttributeError):
        info.channels = 1  # type: ignore[misc]
