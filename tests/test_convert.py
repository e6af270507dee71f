"""Weight conversion: layouts from the spec, names of each release, round trips, oracles, and the errors.

Oracles: torchvision's own ResNet (an independent implementation: same outputs after conversion), and a forward
pass written here from the Caffe release's layer graph (prototxt/ResNet-*-deploy.prototxt of
KaimingHe/deep-residual-networks: conv -> BatchNorm -> Scale -> ReLU, stride on branch2a and branch1, pool1 3x3/2
without padding and rounding up), computed straight from a Caffe-side dict of blobs.
"""

from __future__ import annotations

import argparse
import functools
import math
import string
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision
from cases import case_params
from facts import (
    CIFAR_PARAMS_A,
    PARAMS_B,
    TABLE1_BASIC_WIDTHS,
    TABLE1_BLOCK,
    TABLE1_BOTTLENECK_WIDTHS,
    TABLE1_REPEATS,
)
from torch import Tensor, nn

from resnet_spec import build, load_spec
from resnet_spec.weights import (
    FORMATS,
    ConversionError,
    caffe_params_to_state_dict,
    convert_state_dict,
    load_checkpoint,
    state_dict_layout,
)

IMAGENET_DEPTHS = sorted(PARAMS_B)
IMAGENET_CONV1 = 64  # Table 1, conv1: "7x7, 64, stride 2"
BN_BUFFERS = ("running_mean", "running_var", "num_batches_tracked")

# Read in the released prototxts: ResNet-101 and -152 name the blocks after 'a' of conv3_x and conv4_x b1, b2, ...
# (res3b1 ... res3b3, res4b1 ... res4b22 in 101; res3b7, res4b35 in 152); ResNet-50 and every 3-block stage use
# letters.  Stages are numbered as in Table 1 (conv3_x -> res3...).
RELEASED_NUMBERED_STAGES = {18: (), 34: (), 50: (), 101: (3, 4), 152: (3, 4)}
RELEASED_NAMES = {
    50: ("res4f_branch2c", "bn3d_branch2b", "scale5c_branch2a", "res2a_branch1", "bn_conv1", "fc1000"),
    101: ("res4b22_branch2c", "res3b3_branch2a", "res2c_branch2c", "res5c_branch2c", "res5a_branch1"),
    152: ("res3b7_branch2c", "res4b35_branch2c", "res2c_branch2a", "res5c_branch2c"),
}


# ----------------------------------------------------------------------------------------------------------------
# Helpers written from the paper's figures and the release, not from resnet_spec


def _widths(depth: int) -> tuple[tuple[int, ...], ...]:
    return TABLE1_BASIC_WIDTHS if TABLE1_BLOCK[depth] == "basic" else TABLE1_BOTTLENECK_WIDTHS


def _expected_caffe_layers(depth: int) -> dict[str, int]:
    """Caffe layer name -> blob count, for option B as released: conv 1, BatchNorm 3, Scale 2, fc 2."""
    layers = {"conv1": 1, "bn_conv1": 3, "scale_conv1": 2}
    in_channels = IMAGENET_CONV1
    for stage_number, widths, repeats in zip((2, 3, 4, 5), _widths(depth), TABLE1_REPEATS[depth], strict=True):
        if stage_number in RELEASED_NUMBERED_STAGES[depth]:
            suffixes = ["a", *(f"b{i}" for i in range(1, repeats))]
        else:
            suffixes = list(string.ascii_lowercase[:repeats])
        for index, suffix in enumerate(suffixes):
            block = f"{stage_number}{suffix}"
            branches = [f"branch2{letter}" for letter in string.ascii_lowercase[: len(widths)]]
            # Option B: a projection where the shape changes: stride 2 (conv3_1..conv5_1) or more channels.
            if index == 0 and (stage_number > 2 or in_channels != widths[-1]):
                branches.append("branch1")
            for branch in branches:
                layers.update({f"res{block}_{branch}": 1, f"bn{block}_{branch}": 3, f"scale{block}_{branch}": 2})
            in_channels = widths[-1]
    layers["fc1000"] = 2
    return layers


def _expected_caffe_keys(depth: int) -> set[str]:
    blob_names = {1: ("weight",), 2: ("weight", "bias"), 3: ("mean", "variance", "moving_average_factor")}
    return {f"{layer}.{blob}" for layer, count in _expected_caffe_layers(depth).items() for blob in blob_names[count]}


@functools.cache
def _random_state_dict(depth: int, entry: str = "resnet{depth}") -> dict[str, Tensor]:
    """A different value in every tensor of ResNet-<depth> (built on meta for the names and shapes), or of another
    entry of that depth.

    Each tensor is one constant expanded to its shape (no memory: ResNet-152 has 60M values): conversions move
    tensors and never mix values within one; the oracle tests below check real values.
    """
    out = {}
    for index, (key, tensor) in enumerate(build(entry.format(depth=depth), device="meta").state_dict().items()):
        if key.endswith("num_batches_tracked"):
            out[key] = torch.tensor(7, dtype=torch.long)
        else:
            out[key] = torch.tensor(float(index + 1)).expand(tensor.shape)
    return out


def _variant_for(fmt: str) -> str:
    stride_on = FORMATS[fmt].stride_on
    return "v1" if stride_on in (None, "first") else "v1.5"


def _assert_same(found: dict[str, Tensor], expected: dict[str, Tensor]) -> None:
    assert found.keys() == expected.keys()
    differing = [k for k in expected if found[k] is not expected[k] and not torch.equal(found[k], expected[k])]
    assert differing == [], f"{len(differing)} tensors differ, e.g. {differing[:5]}"


# ----------------------------------------------------------------------------------------------------------------
# Layout


@pytest.mark.parametrize(("name", "variant", "shortcut"), case_params())
def test_layout_from_the_spec_equals_the_built_models_state_dict(name: str, variant: str, shortcut: str) -> None:
    spec = load_spec(name, variant=variant, shortcut=shortcut)
    model_shapes = {k: tuple(v.shape) for k, v in build(spec, device="meta").state_dict().items()}
    assert state_dict_layout(spec) == model_shapes


@pytest.mark.parametrize("depth", IMAGENET_DEPTHS)
def test_layout_counts_the_papers_parameters(depth: int) -> None:
    layout = state_dict_layout(load_spec(f"resnet{depth}"))
    params = sum(math.prod(shape) for key, shape in layout.items() if not key.endswith(BN_BUFFERS))
    assert params == PARAMS_B[depth]


def test_layout_of_a_cifar_net_and_of_a_headless_model() -> None:
    layout = state_dict_layout(load_spec("resnet20"))
    assert sum(math.prod(s) for k, s in layout.items() if not k.endswith(BN_BUFFERS)) == CIFAR_PARAMS_A[20]
    assert not any("downsample" in key for key in layout)  # option A: zero-padding, no parameters
    headless = state_dict_layout(load_spec("resnet50"), num_classes=0, in_channels=1)
    assert not any(key.startswith("fc.") for key in headless)
    assert headless["conv1.weight"] == (IMAGENET_CONV1, 1, 7, 7)


# ----------------------------------------------------------------------------------------------------------------
# Names of each release


@pytest.mark.parametrize("depth", IMAGENET_DEPTHS)
def test_caffe_names_follow_the_released_prototxts(depth: int) -> None:
    caffe = convert_state_dict(_random_state_dict(depth), load_spec(f"resnet{depth}"), target="caffe")
    assert set(caffe) == _expected_caffe_keys(depth)
    layers = {key.rsplit(".", 1)[0] for key in caffe}
    missing = [name for name in RELEASED_NAMES.get(depth, ()) if name not in layers]
    assert missing == []


@pytest.mark.parametrize("depth", IMAGENET_DEPTHS)
def test_caffe_key_count_by_arithmetic(depth: int) -> None:
    """Per conv: 1 weight + 3 BatchNorm blobs + 2 Scale blobs; convs = conv1 + every branch conv + 4 projections
    (Option B: conv2_1 of the bottleneck nets grows 64 -> 256, conv3_1..conv5_1 stride; basic nets: 3)."""
    blocks = sum(TABLE1_REPEATS[depth])
    convs_per_block = len(_widths(depth)[0])
    projections = 4 if TABLE1_BLOCK[depth] == "bottleneck" else 3
    convs = 1 + blocks * convs_per_block + projections
    caffe = convert_state_dict(_random_state_dict(depth), load_spec(f"resnet{depth}"), target="caffe")
    assert len(caffe) == convs * (1 + 3 + 2) + 2


def test_mmpretrain_names() -> None:
    mm = convert_state_dict(_random_state_dict(50), load_spec("resnet50", variant="v1.5"), target="mmpretrain")
    for key in (
        "backbone.conv1.weight",
        "backbone.bn1.running_var",
        "backbone.layer1.0.downsample.0.weight",
        "backbone.layer1.0.downsample.1.bias",
        "backbone.layer3.5.conv3.weight",
        "backbone.layer4.2.bn3.num_batches_tracked",
        "head.fc.weight",
        "head.fc.bias",
    ):
        assert key in mm
    assert [k for k in mm if not k.startswith(("backbone.", "head.fc."))] == []
    assert len(mm) == len(_random_state_dict(50))


def test_timm_and_torchvision_names_are_ours() -> None:
    ours = _random_state_dict(50)
    spec = load_spec("resnet50", variant="v1.5")
    for fmt in ("timm", "torchvision"):
        _assert_same(convert_state_dict(ours, spec, source=fmt), ours)
        _assert_same(convert_state_dict(ours, spec, target=fmt), ours)


# ----------------------------------------------------------------------------------------------------------------
# Round trips


@pytest.mark.parametrize("fmt", [f for f in FORMATS if f != "ours"])
@pytest.mark.parametrize("depth", IMAGENET_DEPTHS)
def test_round_trip_through_every_format(depth: int, fmt: str) -> None:
    entry = "resnet{depth}_lpf4" if fmt == "antialiased-cnns" else "resnet{depth}"  # its names are for blurred nets
    ours = _random_state_dict(depth, entry)
    spec = load_spec(entry.format(depth=depth), variant=_variant_for(fmt))
    theirs = convert_state_dict(ours, spec, target=fmt)
    back = convert_state_dict(theirs, spec, source=fmt)
    if fmt == "caffe":  # Caffe keeps no batch counter: it comes back as 0
        assert all(back[k].item() == 0 for k in back if k.endswith("num_batches_tracked"))
        ours = {k: (torch.tensor(0) if k.endswith("num_batches_tracked") else v) for k, v in ours.items()}
    _assert_same(back, ours)
    _assert_same(convert_state_dict(back, spec, target=fmt), theirs)


# ----------------------------------------------------------------------------------------------------------------
# Oracles


def _randomize_bn_statistics(model: nn.Module, seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.copy_(torch.randn(module.num_features, generator=generator) * 0.1)
            module.running_var.copy_(torch.rand(module.num_features, generator=generator) + 0.5)
            module.weight.data.copy_(torch.rand(module.num_features, generator=generator) + 0.5)
            module.bias.data.copy_(torch.randn(module.num_features, generator=generator) * 0.1)


@pytest.mark.parametrize("depth", [50])  # bottlenecks and projections; tests/test_model.py covers every depth
def test_torchvision_weights_through_the_converter_give_torchvisions_outputs(depth: int) -> None:
    torch.manual_seed(depth)
    reference = getattr(torchvision.models, f"resnet{depth}")().eval()
    _randomize_bn_statistics(reference, depth)
    model = build(f"resnet{depth}", variant="v1.5").eval()
    model.load_state_dict(convert_state_dict(reference.state_dict(), model.spec, source="torchvision"))
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference(x), rtol=1e-5, atol=1e-5)


CAFFE_EPS = 1e-5  # Caffe's BatchNorm default eps, as PyTorch's
CAFFE_FACTOR = 999.98  # a moving_average_factor blob of the kind Caffe stores: the statistics are blob / factor


def _random_caffe_blobs(depth: int, conv1_bias: bool) -> dict[str, Tensor]:
    """A Caffe-side dict for ResNet-<depth> from the names above, with He-scaled convs and sane BN statistics."""
    generator = torch.Generator().manual_seed(depth)
    shapes: dict[str, tuple[int, ...]] = {}
    in_channels = IMAGENET_CONV1
    shapes["conv1"] = (IMAGENET_CONV1, 3, 7, 7)
    for stage_number, widths in zip((2, 3, 4, 5), _widths(depth), strict=True):
        for layer in (n for n, c in _expected_caffe_layers(depth).items() if c == 1 and n.startswith("res")):
            if layer[3] != str(stage_number):
                continue
            first = layer.split("_")[0] in (f"res{stage_number}a",)
            block_in = in_channels if first else widths[-1]
            if layer.endswith("branch1"):
                shapes[layer] = (widths[-1], block_in, 1, 1)
            else:
                k = ord(layer[-1]) - ord("a")
                kernel = 3 if len(widths) == 2 or k == 1 else 1  # basic: two 3x3; bottleneck: 1x1, 3x3, 1x1
                shapes[layer] = (widths[k], block_in if k == 0 else widths[k - 1], kernel, kernel)
        in_channels = widths[-1]
    blobs: dict[str, Tensor] = {}
    for layer, shape in shapes.items():
        fan_in = math.prod(shape[1:])
        blobs[f"{layer}.weight"] = torch.randn(shape, generator=generator, dtype=torch.float64) * math.sqrt(1 / fan_in)
        channels = shape[0]
        bn, scale = ("bn_conv1", "scale_conv1") if layer == "conv1" else ("bn" + layer[3:], "scale" + layer[3:])
        blobs[f"{bn}.mean"] = torch.randn(channels, generator=generator, dtype=torch.float64) * 0.1 * CAFFE_FACTOR
        variance = torch.rand(channels, generator=generator, dtype=torch.float64) + 0.5
        blobs[f"{bn}.variance"] = variance * CAFFE_FACTOR
        blobs[f"{bn}.moving_average_factor"] = torch.tensor([CAFFE_FACTOR], dtype=torch.float64)
        blobs[f"{scale}.weight"] = torch.rand(channels, generator=generator, dtype=torch.float64) + 0.5
        blobs[f"{scale}.bias"] = torch.randn(channels, generator=generator, dtype=torch.float64) * 0.1
    if conv1_bias:  # the released ResNet-50's conv1 has a bias (Caffe's default bias_term)
        blobs["conv1.bias"] = torch.randn(IMAGENET_CONV1, generator=generator, dtype=torch.float64)
    features = _widths(depth)[-1][-1]
    blobs["fc1000.weight"] = torch.randn(1000, features, generator=generator, dtype=torch.float64) * 0.01
    blobs["fc1000.bias"] = torch.randn(1000, generator=generator, dtype=torch.float64) * 0.01
    return blobs


def _caffe_forward(blobs: dict[str, Tensor], depth: int, x: Tensor) -> Tensor:
    """The prototxt's graph, straight from the blobs (Caffe semantics, stride on branch2a and branch1)."""

    def bn_scale(y: Tensor, bn: str, scale: str) -> Tensor:
        factor = blobs[f"{bn}.moving_average_factor"]
        mean, var = blobs[f"{bn}.mean"] / factor, blobs[f"{bn}.variance"] / factor
        y = (y - mean[:, None, None]) / torch.sqrt(var[:, None, None] + CAFFE_EPS)
        return y * blobs[f"{scale}.weight"][:, None, None] + blobs[f"{scale}.bias"][:, None, None]

    def conv(y: Tensor, layer: str, stride: int) -> Tensor:
        weight = blobs[f"{layer}.weight"]
        return F.conv2d(y, weight, blobs.get(f"{layer}.bias"), stride=stride, padding=weight.shape[-1] // 2)

    y = F.relu(bn_scale(conv(x, "conv1", 2), "bn_conv1", "scale_conv1"))
    y = F.max_pool2d(y, 3, 2, padding=0, ceil_mode=True)  # pool1: no padding, Caffe rounds up
    layers = list(_expected_caffe_layers(depth))
    blocks = list(dict.fromkeys(n.split("_")[0][3:] for n in layers if n.startswith("res")))
    for block in blocks:
        stride = 2 if block.endswith("a") and not block.startswith("2") else 1
        branches = sorted(n for n in layers if n.startswith(f"res{block}_branch2"))
        out = y
        for i, layer in enumerate(branches):
            out = bn_scale(conv(out, layer, stride if i == 0 else 1), "bn" + layer[3:], "scale" + layer[3:])
            out = F.relu(out) if i < len(branches) - 1 else out
        shortcut = y
        if f"res{block}_branch1" in layers:
            shortcut = bn_scale(conv(y, f"res{block}_branch1", stride), f"bn{block}_branch1", f"scale{block}_branch1")
        y = F.relu(out + shortcut)
    y = y.mean(dim=(2, 3))
    return y @ blobs["fc1000.weight"].T + blobs["fc1000.bias"]


@pytest.mark.parametrize(("depth", "conv1_bias"), [(18, False), (50, True)])
def test_caffe_weights_give_the_caffe_graphs_outputs(depth: int, conv1_bias: bool) -> None:
    blobs = _random_caffe_blobs(depth, conv1_bias)
    model = build(f"resnet{depth}").double().eval()  # the paper's v1: stride on the first 1x1, as released
    model.load_state_dict(convert_state_dict(blobs, model.spec, source="caffe"))
    # Caffe's pool1 has no padding and rounds up; Table 1's pool (padding 1, rounding down) gives the same size with
    # windows one pixel earlier.  To compare the weights' mapping exactly, use Caffe's pool here.
    model.maxpool = nn.MaxPool2d(3, 2, padding=0, ceil_mode=True)
    x = torch.randn(2, 3, 32, 32, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        found, expected = model(x), _caffe_forward(blobs, depth, x)
    assert expected.abs().max() > 1e-3  # a real signal reaches the classifier
    torch.testing.assert_close(found, expected, rtol=1e-9, atol=1e-9)


def test_caffe_params_from_pycaffe_blob_lists() -> None:
    params = {
        "conv1": [np.ones((64, 3, 7, 7), dtype=np.float32), np.zeros(64, dtype=np.float32)],
        "bn_conv1": [np.zeros(64), np.ones(64), np.array([1.0])],
        "scale_conv1": [np.ones(64), np.zeros(64)],
    }
    flat = caffe_params_to_state_dict(params)
    assert sorted(flat) == sorted(
        [
            "conv1.weight",
            "conv1.bias",
            "bn_conv1.mean",
            "bn_conv1.variance",
            "bn_conv1.moving_average_factor",
            "scale_conv1.weight",
            "scale_conv1.bias",
        ]
    )
    assert all(isinstance(v, Tensor) for v in flat.values())
    with pytest.raises(ValueError, match=r"caffe layer 'odd': expected 1 to 3 blobs, got 4"):
        caffe_params_to_state_dict({"odd": [np.zeros(1)] * 4})


# ----------------------------------------------------------------------------------------------------------------
# Errors


def test_every_problem_is_listed_at_once() -> None:
    spec = load_spec("resnet50")
    bad = dict(_random_state_dict(50))
    del bad["fc.bias"], bad["layer3.4.bn2.running_var"]
    bad["layer1.0.conv2.weight"] = torch.zeros(64, 64, 1, 1)
    bad["layer5.0.conv1.weight"] = torch.zeros(1)
    with pytest.raises(ConversionError) as info:
        convert_state_dict(bad, spec)
    message = str(info.value)
    assert "4 problem(s)" in message
    assert "missing key 'fc.bias' (expected shape (1000,))" in message
    assert "missing key 'layer3.4.bn2.running_var' (expected shape (256,))" in message
    assert "key 'layer1.0.conv2.weight': expected shape (64, 64, 3, 3), found (64, 64, 1, 1)" in message
    assert "unexpected key 'layer5.0.conv1.weight' (shape (1,))" in message


def test_long_problem_lists_are_cut_with_a_count() -> None:
    with pytest.raises(ConversionError, match=r"(?s)problem\(s\):.*\.\.\. and \d+ more$") as info:
        convert_state_dict({}, load_spec("resnet50"))
    batch_norms = 1 + sum(TABLE1_REPEATS[50]) * 3 + 4  # conv1, three per bottleneck, four projections (option B)
    assert len(info.value.problems) == len(state_dict_layout(load_spec("resnet50"))) - batch_norms  # counters optional


def test_missing_caffe_scale_blob_is_named() -> None:
    blobs = convert_state_dict(_random_state_dict(18), load_spec("resnet18"), target="caffe")
    del blobs["scale3a_branch2b.bias"]
    with pytest.raises(ConversionError, match=r"missing key 'scale3a_branch2b.bias' \(expected shape \(128,\)\)"):
        convert_state_dict(blobs, load_spec("resnet18"), source="caffe")


def test_zhangs_names_and_saved_filters() -> None:
    """antialiased-cnns (antialiased_cnns/resnet.py): the conv after a block's blur is ``convK.1``, and every blur
    saves its filter as ``filt``, the 4-tap binomial [1 3 3 1] / 8 in each direction (outer product: 1, 3, 3, 1,
    3, 9, 9, 3, ... over 64), which must be what the file holds; a net without blurs has no such names."""
    spec = load_spec("resnet50_lpf4")
    theirs = convert_state_dict(_random_state_dict(50, "resnet{depth}_lpf4"), spec, target="antialiased-cnns")
    filters = sorted(k for k in theirs if k.endswith(".filt"))
    assert filters == ["layer2.0.conv3.0.filt", "layer2.0.downsample.0.filt", "layer3.0.conv3.0.filt",
                       "layer3.0.downsample.0.filt", "layer4.0.conv3.0.filt", "layer4.0.downsample.0.filt",
                       "maxpool.1.filt"]  # fmt: skip
    assert "layer2.0.conv3.1.weight" in theirs and "layer2.0.conv3.weight" not in theirs
    assert "layer1.0.conv3.weight" in theirs  # a block that does not subsample has no blur
    row = torch.tensor([1.0, 3.0, 3.0, 1.0])
    assert tuple(theirs["layer2.0.conv3.0.filt"].shape) == (128, 1, 4, 4)
    assert torch.equal(theirs["layer2.0.conv3.0.filt"][0, 0], torch.outer(row, row) / 64)
    theirs["layer3.0.downsample.0.filt"] = torch.full((512, 1, 4, 4), 1 / 16)  # a box filter
    with pytest.raises(ConversionError, match=r"layer3.0.downsample.0.filt': expected the fixed 4-tap binomial"):
        convert_state_dict(theirs, spec, source="antialiased-cnns")
    with pytest.raises(ConversionError, match=r"a network with anti-aliasing blurs"):
        convert_state_dict(_random_state_dict(50), load_spec("resnet50", variant="v1.5"), source="antialiased-cnns")


def test_weights_trained_with_the_stride_elsewhere_are_refused() -> None:
    ours = _random_state_dict(50)
    with pytest.raises(ConversionError, match=r"caffe weights .* build with variant='v1'(?s:.*)block conv3_1"):
        convert_state_dict(ours, load_spec("resnet50", variant="v1.5"), source="caffe")
    with pytest.raises(ConversionError, match=r"timm weights .* build with variant='v1.5'(?s:.*)block conv5_1"):
        convert_state_dict(ours, load_spec("resnet50", variant="v1"), source="timm")
    # Basic blocks stride their first 3x3 in both variants: nothing to refuse.
    basic = convert_state_dict(_random_state_dict(18), load_spec("resnet18"), target="caffe")
    timm = convert_state_dict(basic, load_spec("resnet18", variant="v1.5"), source="caffe", target="timm")
    assert timm.keys() == _random_state_dict(18).keys()


def test_missing_batch_counters_are_zero_and_other_keys_are_not_optional() -> None:
    ours = {k: v for k, v in _random_state_dict(18).items() if not k.endswith("num_batches_tracked")}
    converted = convert_state_dict(ours, load_spec("resnet18"))
    assert all(converted[k].item() == 0 for k in converted if k.endswith("num_batches_tracked"))


def test_a_classifier_in_the_source_of_a_headless_model_is_unexpected() -> None:
    with pytest.raises(ConversionError, match=r"unexpected key 'fc.weight' \(shape \(1000, 512\)\)"):
        convert_state_dict(_random_state_dict(18), load_spec("resnet18"), num_classes=0)


@pytest.mark.parametrize(
    ("kwargs", "error", "pattern"),
    [
        ({"source": "keras"}, ValueError, r"expected a weight format among ours, torchvision, timm, .* got 'keras'"),
        ({"num_classes": -1}, ValueError, r"expected num_classes an integer >= 0, got -1"),
    ],
)
def test_bad_arguments_raise_clear_errors(kwargs: dict[str, object], error: type[Exception], pattern: str) -> None:
    with pytest.raises(error, match=pattern):
        convert_state_dict(_random_state_dict(18), load_spec("resnet18"), **kwargs)  # type: ignore[arg-type]


def test_a_non_mapping_is_refused() -> None:
    with pytest.raises(TypeError, match=r"expected a state_dict \(a mapping of names to tensors\), got list"):
        convert_state_dict([1, 2], load_spec("resnet18"))  # type: ignore[arg-type]


# ----------------------------------------------------------------------------------------------------------------
# load_checkpoint


def test_load_checkpoint_unwraps_mmengine_checkpoints(tmp_path: Path) -> None:
    spec = load_spec("resnet18")
    ours = _random_state_dict(18)
    path = tmp_path / "mm.pth"
    torch.save({"meta": {"epoch": 3}, "state_dict": convert_state_dict(ours, spec, target="mmpretrain")}, path)
    model = load_checkpoint(path, build("resnet18"), source="mmpretrain")
    _assert_same({k: v for k, v in model.state_dict().items()}, ours)


def test_load_checkpoint_refuses_pickled_objects_and_odd_contents(tmp_path: Path) -> None:
    pickled = tmp_path / "objects.pth"
    torch.save({"model": _random_state_dict(18), "args": argparse.Namespace(lr=0.1)}, pickled)
    with pytest.raises(ValueError, match=r"torch.load\(weights_only=True\) refused it"):
        load_checkpoint(pickled, build("resnet18", device="meta"))
    odd = tmp_path / "odd.pth"
    torch.save({"epoch": 3, "weights": [torch.zeros(1)]}, odd)
    with pytest.raises(ValueError, match=r"expected a state_dict .* found keys 'epoch', 'weights'"):
        load_checkpoint(odd, build("resnet18", device="meta"))
