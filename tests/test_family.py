"""The ResNet family as tables, each entry proved against the implementation people use (torchvision, timm,
pytorchcv).

For every pair (our entry, its peer):

* the entry's analytic params and MACs equal the peer's exact figures of FACTS.md (tests/support/facts.py);
* the peer, built on the meta device, compares conformant to the entry, and is not the 2015 ResNet-50 v1.5: its
  best match is the entry;
* the peer's state_dict (random init) converts into the entry's names (every key used once, shapes from the plan),
  and both networks compute the same outputs (float64, eval mode, 1e-5 of the output's scale).

Plus the squeeze-and-excitation widths (the peer's own, and its library's rule by hand: pytorchcv's exact C/r,
timm's rounding of it, ``se_divisor``) and the pre-activation CIFAR nets of He et al. 2016: parameters as the paper
prints them, gradients at the stem.  timm and pytorchcv models are random-init only (no weights are downloaded).
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import antialiased_cnns
import facts
import pytest
import timm
import torch
import torchvision
from cases import TABLE_HEADS
from facts import FAMILY_PEERS, PREACT_CIFAR_N, PREACT_CIFAR_PARAMS, RESNETV2_CLASS_LAYERS
from pytorchcv.model_provider import get_model as pytorchcv_model
from test_reader import _EcaAsTheAuthorsWriteIt
from timm.layers import BatchNormAct2d, create_conv2d
from timm.models.resnetv2 import ResNetV2
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from resnet_spec import SpecError, build, compare_model, convert_state_dict, count, layout_plan, load_spec
from resnet_spec.spec import load_table, tables_dir
from resnet_spec.verify import best_matches, structural_comparison
from resnet_spec.verify._functional import MAX_MACS, MAX_PARAMS

# entry -> (the peer's key in FAMILY_PEERS, the weight format its state_dict is in)
PAIRS: dict[str, tuple[str, str]] = {
    "wide_resnet50_2": ("wide_resnet50_2", "torchvision"),
    "wide_resnet101_2": ("wide_resnet101_2", "torchvision"),
    "resnext50_32x4d": ("resnext50_32x4d", "torchvision"),
    "resnext101_32x8d": ("resnext101_32x8d", "torchvision"),
    "resnext101_64x4d": ("resnext101_64x4d", "torchvision"),
    "resnet18d": ("resnet18d", "timm"),
    "resnet34d": ("resnet34d", "timm"),
    "resnet50c": ("resnet50c", "timm"),
    "resnet50d": ("resnet50d", "timm"),
    "resnet101d": ("resnet101d", "timm"),
    "resnet152d": ("resnet152d", "timm"),
    "seresnet50": ("seresnet50", "timm"),
    "preact_resnet50": ("resnetv2_50", "timm-resnetv2"),
    # timm's other ImageNet ResNets: depths beyond Table 1, its stems, ResNeXt-101 32x4d/32x16d, SE, pre-activation
    "resnet26": ("resnet26", "timm"),
    "resnet200": ("resnet200", "timm"),
    "resnet101c": ("resnet101c", "timm"),
    "resnet152c": ("resnet152c", "timm"),
    "resnet26d": ("resnet26d", "timm"),
    "resnet200d": ("resnet200d", "timm"),
    "resnext50d_32x4d": ("resnext50d_32x4d", "timm"),
    "resnet10t": ("resnet10t", "timm"),
    "resnet14t": ("resnet14t", "timm"),
    "resnet26t": ("resnet26t", "timm"),
    "resnet50t": ("resnet50t", "timm"),
    "resnet50s": ("resnet50s", "timm"),
    "resnet101s": ("resnet101s", "timm"),
    "resnet152s": ("resnet152s", "timm"),
    "resnext101_32x4d": ("resnext101_32x4d", "timm"),
    "resnext101_32x16d": ("resnext101_32x16d", "timm"),
    "seresnet18": ("seresnet18", "timm"),
    "seresnet34": ("seresnet34", "timm"),
    "seresnet101": ("seresnet101", "timm"),
    "seresnet152": ("seresnet152", "timm"),
    "seresnext50_32x4d": ("seresnext50_32x4d", "timm"),
    "seresnext101_32x4d": ("seresnext101_32x4d", "timm"),
    "preact_resnet18": ("resnetv2_18", "timm-resnetv2"),
    "preact_resnet34": ("resnetv2_34", "timm-resnetv2"),
    "preact_resnet200": ("resnetv2_200", "timm-resnetv2"),
    "resnetrs50": ("resnetrs50", "timm"),
    "resnetrs101": ("resnetrs101", "timm"),
    "resnetrs152": ("resnetrs152", "timm"),
    "resnetrs200": ("resnetrs200", "timm"),
    "ecaresnet50d": ("ecaresnet50d", "timm"),
    "ecaresnet101d": ("ecaresnet101d", "timm"),
    "ecaresnet200d": ("ecaresnet200d", "timm"),
    "ecaresnet50t": ("ecaresnet50t", "timm"),
    "ecaresnet26t": ("ecaresnet26t", "timm"),
    "resnet50_gn": ("resnet50_gn", "timm"),  # Wu and He 2018: GroupNorm (32 groups) in place of batch norm
    # BiT as timm ports it (GroupNorm, weight standardisation with epsilon 1e-8, the zero-padded stem pool)
    "resnetv2_50x1_bit": ("resnetv2_50x1_bit", "timm-resnetv2"),
    "resnetv2_50x3_bit": ("resnetv2_50x3_bit", "timm-resnetv2"),
    "resnetv2_101x1_bit": ("resnetv2_101x1_bit", "timm-resnetv2"),
    "resnetv2_101x3_bit": ("resnetv2_101x3_bit", "timm-resnetv2"),
    "resnetv2_152x2_bit": ("resnetv2_152x2_bit", "timm-resnetv2"),
    "resnetv2_152x4_bit": ("resnetv2_152x4_bit", "timm-resnetv2"),
    # anti-aliased (Zhang 2019) as timm builds them: BlurPool2d (resnetblur*) or AvgPool2d(2) (resnetaa*, se*aa*)
    "resnetblur18": ("resnetblur18", "timm"),
    "resnetblur50": ("resnetblur50", "timm"),
    "resnetblur50d": ("resnetblur50d", "timm"),
    "resnetblur101d": ("resnetblur101d", "timm"),
    "resnetaa34d": ("resnetaa34d", "timm"),
    "resnetaa50": ("resnetaa50", "timm"),
    "resnetaa50d": ("resnetaa50d", "timm"),
    "resnetaa101d": ("resnetaa101d", "timm"),
    "seresnetaa50d": ("seresnetaa50d", "timm"),
    "seresnextaa101d_32x8d": ("seresnextaa101d_32x8d", "timm"),
    "seresnextaa201d_32x8d": ("seresnextaa201d_32x8d", "timm"),
    # anti-aliased as Zhang's own release builds them (antialiased-cnns): 4-tap blurs, the projections blurred too
    "resnet18_lpf4": ("antialiased_resnet18", "antialiased-cnns"),
    "resnet34_lpf4": ("antialiased_resnet34", "antialiased-cnns"),
    "resnet50_lpf4": ("antialiased_resnet50", "antialiased-cnns"),
    "resnet101_lpf4": ("antialiased_resnet101", "antialiased-cnns"),
    "resnet152_lpf4": ("antialiased_resnet152", "antialiased-cnns"),
    "resnext50_32x4d_lpf4": ("antialiased_resnext50_32x4d", "antialiased-cnns"),
    # SK-ResNet (Li et al. 2019) as timm builds it: a selective-kernel unit in place of each block's (first) 3x3
    "skresnet18": ("skresnet18", "timm"),
    "skresnet34": ("skresnet34", "timm"),
    "skresnet50": ("skresnet50", "timm"),
    "skresnet50d": ("skresnet50d", "timm"),
    "skresnext50_32x4d": ("skresnext50_32x4d", "timm"),
    "sknet101": ("pytorchcv_sknet101", "pytorchcv-b"),  # SKNet-101 of Li et al.'s Table 2, as pytorchcv builds it
    "sknet152": ("pytorchcv_sknet152", "pytorchcv-b"),
    "resnext101_32x8d_lpf4": ("antialiased_resnext101_32x8d", "antialiased-cnns"),
    "wide_resnet50_2_lpf4": ("antialiased_wide_resnet50_2", "antialiased-cnns"),
    "wide_resnet101_2_lpf4": ("antialiased_wide_resnet101_2", "antialiased-cnns"),
    # Hu et al.'s exact SE widths C/16 (timm rounds them to multiples of 8: seresnet18, seresnet34 above)
    "seresnet18_r16": ("pytorchcv_seresnet18", "pytorchcv"),
    "seresnet34_r16": ("pytorchcv_seresnet34", "pytorchcv"),
}
BIG = 40_000_000  # peers with more parameters are checked in the slow set (deep traces, float64 copies)
# The input the converted weights are run on: 32x32, but 224x224 for pytorchcv, whose head pools with a fixed
# AvgPool2d(kernel_size=7, stride=1) (pytorchcv/models/resnet.py, final_pool): the global average pool only on the
# 7x7 map of a 224 input (a 32 input's 1x1 map is smaller than the kernel).
# And 64 for antialiased-cnns, whose 4-tap blurs pad 2 after the map by reflection, which needs a map of at least 3:
# at 32 the last one reads a 2x2 map (conv1 16, max 15, blurs to 8, 4, 2), at 64 a 4x4.
INPUT_SIZE = {"pytorchcv": 224, "antialiased-cnns": 64}


def _peer(key: str) -> Callable[[], nn.Module]:
    library, name, _, _ = FAMILY_PEERS[key]
    if library == "torchvision":
        return getattr(torchvision.models, name)  # type: ignore[no-any-return]
    if library == "timm-ResNetV2":  # no factory: the class with resnetv2_50's arguments (FACTS.md)
        return lambda: ResNetV2(layers=RESNETV2_CLASS_LAYERS[key], conv_layer=create_conv2d, norm_layer=BatchNormAct2d)
    if library == "pytorchcv":
        return lambda: pytorchcv_model(name, pretrained=False)
    if library == "antialiased-cnns":
        return getattr(antialiased_cnns, name)  # type: ignore[no-any-return]
    return lambda: timm.create_model(name, pretrained=False)


def _meta_peer(key: str) -> nn.Module:
    with torch.device("meta"):
        return _peer(key)()


def _pairs() -> list[Any]:
    out = []
    for entry_name, (key, fmt) in PAIRS.items():
        marks = [pytest.mark.slow] if FAMILY_PEERS[key][2] > BIG or entry_name not in TABLE_HEADS else []
        out.append(pytest.param(entry_name, key, fmt, id=f"{entry_name}-{key}", marks=marks))
    return out


@pytest.mark.parametrize(("entry", "key"), [(e, k) for e, (k, _) in PAIRS.items()])
def test_entry_counts_equal_the_peers_exact_figures(entry: str, key: str) -> None:
    counts = count(entry)
    _, _, params, macs = FAMILY_PEERS[key]
    assert (counts.params, counts.total) == (params, macs), f"{entry} vs {key} (FACTS.md)"


@pytest.mark.parametrize(("entry", "key", "fmt"), _pairs())
def test_the_peer_conforms_and_is_named_first_among_best_matches(entry: str, key: str, fmt: str) -> None:
    """``compare.py --arch ENTRY --impl PEER`` conforms; ``--depth 50 --variant v1.5 --impl PEER`` does not, and
    its best matches name ENTRY first."""
    spec = load_spec(entry)
    # the structure (the numbers: test_family_entries_are_functionally_their_peers)
    comparison = compare_model(_meta_peer(key), spec, functional=False)
    assert comparison.mismatches == (), [(m.where, m.property, m.expected, m.found) for m in comparison.mismatches]
    against_v15 = structural_comparison(comparison.found, load_spec("resnet50", variant="v1.5"))
    assert against_v15.mismatches
    best = best_matches(against_v15.found, "imagenet", against_v15.input_size)
    assert best and best[0].name == entry, [s.label for s in best]


def _randomise_batch_norms(model: nn.Module, seed: int) -> None:
    """Running statistics and affine parameters away from 0 and 1, so BN placement matters to the outputs (a
    GroupNorm's affine parameters too)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (nn.BatchNorm2d, nn.GroupNorm)):
                statistics = (
                    ((module.running_mean, -0.5, 0.5), (module.running_var, 0.5, 2.0))
                    if isinstance(module, nn.BatchNorm2d) else ()
                )  # fmt: skip
                for tensor, low, high in (*statistics, (module.weight, 0.5, 1.5), (module.bias, -0.5, 0.5)):
                    tensor.copy_(torch.rand(tensor.shape, generator=generator, dtype=tensor.dtype) * (high - low) + low)


@pytest.mark.parametrize(("entry", "key", "fmt"), _pairs())
def test_outputs_equal_after_converting_the_peers_weights(entry: str, key: str, fmt: str) -> None:
    torch.manual_seed(0)
    peer = _peer(key)().double().eval()
    _randomise_batch_norms(peer, seed=1)
    spec = load_spec(entry)
    converted = convert_state_dict(peer.state_dict(), spec, source=fmt)  # every key once, shapes from the plan
    ours = build(spec, device="meta")
    ours.load_state_dict(converted, assign=True)  # the peer's tensors, no copy
    ours.eval()
    size = INPUT_SIZE.get(FAMILY_PEERS[key][0], 32)
    x = torch.randn(1, 3, size, size, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        expected, found = peer(x), ours(x)
    scale = expected.abs().max().item()
    assert scale > 0
    assert (found - expected).abs().max().item() <= 1e-5 * scale


@pytest.mark.slow  # a 224x224 float64 pass of two 27M-parameter nets
def test_pytorchcvs_sknet50_is_skresnext50_32x4d_by_its_converted_weights() -> None:
    """pytorchcv's SKNet-50 (its own naming: branches.branch2/3, fc1, fc2) converted into skresnext50_32x4d, the net
    timm's skresnext50_32x4d is too: the same counts (FACTS.md) and the same outputs at 224x224 (its head's fixed
    7x7 pool)."""
    counts = count("skresnext50_32x4d")
    assert (counts.params, counts.total) == FAMILY_PEERS["pytorchcv_sknet50"][2:]
    torch.manual_seed(0)
    peer = _peer("pytorchcv_sknet50")().double().eval()
    _randomise_batch_norms(peer, seed=1)
    converted = convert_state_dict(peer.state_dict(), "skresnext50_32x4d", source="pytorchcv-b")
    ours = build("skresnext50_32x4d", device="meta")
    ours.load_state_dict(converted, assign=True)
    ours.eval()
    x = torch.randn(1, 3, 224, 224, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        expected, found = peer(x), ours(x)
    assert (found - expected).abs().max().item() <= 1e-5 * expected.abs().max().item()


def test_weights_convert_back_to_the_peers_names() -> None:
    """The timm resnetv2 naming written back: the peer's own keys and shapes (its fc a 1x1 conv)."""
    peer = _meta_peer("resnetv2_50")
    ours = build("preact_resnet50", device="meta").state_dict()
    theirs = convert_state_dict(ours, load_spec("preact_resnet50"), target="timm-resnetv2")
    assert {k: tuple(v.shape) for k, v in theirs.items()} == {k: tuple(v.shape) for k, v in peer.state_dict().items()}


# ----------------------------------------------------------------------------------------------------------------
# Squeeze-and-excitation widths: Hu et al. 2018's C/r (pytorchcv's), and timm's rounding of it (se_divisor)


def _timm_se_width(channels: int, reduction: int) -> int:
    """timm 1.0.31's SEModule: make_divisible(C / r, 8, round_limit=0), written out as timm/layers/helpers.py has it."""
    return max(8, int(channels / reduction + 8 / 2) // 8 * 8)


def _pytorchcv_se_width(channels: int, reduction: int) -> int:
    """pytorchcv 0.0.74's SEBlock (pytorchcv/models/common/att.py): mid_channels = channels // reduction."""
    return channels // reduction


# library -> (its SE module's squeeze, the 1x1 conv C -> C/r; its rule for the width C/r, written out here)
SE_RULES = {"timm": ("fc1", _timm_se_width), "pytorchcv": ("conv1", _pytorchcv_se_width)}


@pytest.mark.parametrize("entry", [e for e in PAIRS if load_spec(e).se_reduction is not None])
def test_se_widths_are_the_peers_and_its_librarys_rule_for_c_over_r(entry: str) -> None:
    spec = load_spec(entry)
    assert spec.se_reduction is not None
    key = PAIRS[entry][0]
    squeeze, rule = SE_RULES[FAMILY_PEERS[key][0]]
    peer = _meta_peer(key)
    theirs = [getattr(module, squeeze).out_channels for name, module in peer.named_modules() if name.endswith(".se")]
    ours = [block.se_channels for block in spec.blocks]
    by_hand = [rule(block.convs[-1].out_channels, spec.se_reduction) for block in spec.blocks]
    assert ours == theirs == by_hand


# ECA-Net's Eq. (12) by hand (FACTS.md, Wang et al. 2020): t = floor((log2 C + 1) / 2), k = t, or t + 1 where t is
# even.  The bottleneck outputs: C = 256: (8 + 1) / 2 = 4.5 -> 4 -> 5; 512: 10 / 2 = 5 -> 5; 1024: 11 / 2 = 5.5 ->
# 5; 2048: 12 / 2 = 6 -> 7.
ECA_KERNELS_BY_HAND = {256: 5, 512: 5, 1024: 5, 2048: 7}


@pytest.mark.parametrize("entry", [e for e in PAIRS if any(b.eca_kernel for b in load_spec(e).blocks)])
def test_eca_kernels_are_the_papers_rule_and_the_peers(entry: str) -> None:
    spec = load_spec(entry)
    peer = _meta_peer(PAIRS[entry][0])
    theirs = [module.conv.kernel_size[0] for name, module in peer.named_modules() if name.endswith(".se")]
    ours = [block.eca_kernel for block in spec.blocks]
    by_hand = [ECA_KERNELS_BY_HAND[block.convs[-1].out_channels] for block in spec.blocks]
    assert ours == theirs == by_hand
    assert all(b.se_channels is None for b in spec.blocks)  # one gate: ECA has no reduced width


# ---- ECA-Net as its authors' code builds it (BangguWu/ECANet, models/eca_resnet.py): torchvision's ResNet with an
# eca_layer after each block's last BN, kernel 3 in every stage (k_size=[3, 3, 3, 3], every factory's default).
ECA_NET = {18: "eca_resnet18", 34: "eca_resnet34", 50: "eca_resnet50", 101: "eca_resnet101", 152: "eca_resnet152"}
ECA_NET_KERNEL = 3


def _eca_net(depth: int) -> nn.Module:
    """torchvision's resnetN with the authors' eca_layer between each block's last BN and the addition."""
    model = getattr(torchvision.models, f"resnet{depth}")()
    for layer in (model.layer1, model.layer2, model.layer3, model.layer4):
        for block in layer:
            last = "bn3" if hasattr(block, "bn3") else "bn2"
            setattr(block, last, nn.Sequential(getattr(block, last), _EcaAsTheAuthorsWriteIt(ECA_NET_KERNEL)))
    return model


@pytest.mark.parametrize("depth", sorted(ECA_NET))
def test_eca_net_counts_by_hand_and_on_the_authors_network(depth: int) -> None:
    """Parameters: torchvision's resnetN's and one k-tap 1-D conv a block (no bias), by hand = count(entry) = the
    network's numel; conv + fc MACs: FlopCounterMode / 2 on the network = count(entry)."""
    with torch.device("meta"):
        torchvision_params = sum(p.numel() for p in getattr(torchvision.models, f"resnet{depth}")().parameters())
        peer = _eca_net(depth)
    with FlopCounterMode(display=False) as counter:
        peer(torch.empty(1, 3, 224, 224, device="meta"))
    by_hand = torchvision_params + ECA_NET_KERNEL * sum(facts.TABLE1_REPEATS[depth])
    counts = count(ECA_NET[depth])
    assert (by_hand, counts.params, counts.total) == (
        sum(p.numel() for p in peer.parameters()), by_hand, counter.get_total_flops() // 2)  # fmt: skip
    assert {block.eca_kernel for block in load_spec(ECA_NET[depth]).blocks} == {ECA_NET_KERNEL}


@pytest.mark.parametrize(
    "depth", [pytest.param(d, marks=[pytest.mark.slow] if d > 50 else []) for d in sorted(ECA_NET)]
)
def test_eca_net_as_its_authors_build_it_conforms_and_is_named_first(depth: int) -> None:
    """The authors' network conforms to its entry (by the numbers too for ResNet-18) and best matches name it
    first, before ecaresnet*, whose kernels follow Eq. (12)."""
    entry = load_spec(ECA_NET[depth])
    functional = depth == 18
    with torch.device("cpu" if functional else "meta"):
        peer = _eca_net(depth)
    comparison = compare_model(peer, entry, functional=functional)
    assert (comparison.verdict, comparison.mismatches) == ("conformant", ()), comparison.mismatches
    best = best_matches(comparison.found, "imagenet", comparison.input_size)
    assert best and best[0].name == ECA_NET[depth], [spec.label for spec in best]


# ---- BiT as its authors' code builds it (google-research/big_transfer, bit_pytorch/models.py; FACTS.md): written
# here from that description, so that the entries are proved against the network the paper's weights run in.


class _StdConvAsTheAuthorsWriteIt(nn.Conv2d):
    """Each output channel's weights standardised: biased variance, 1e-10 added under the square root."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        variance, mean = torch.var_mean(self.weight, dim=[1, 2, 3], keepdim=True, unbiased=False)
        weight = (self.weight - mean) / torch.sqrt(variance + 1e-10)
        return nn.functional.conv2d(x, weight, self.bias, self.stride, self.padding, self.dilation, self.groups)


class _BitUnit(nn.Module):
    """PreActBottleneck: gn-ReLU first; the projection reads the pre-activated input; the stride on the 3x3."""

    def __init__(self, cin: int, cout: int, cmid: int, stride: int) -> None:
        super().__init__()
        self.gn1, self.gn2, self.gn3 = nn.GroupNorm(32, cin), nn.GroupNorm(32, cmid), nn.GroupNorm(32, cmid)
        self.conv1 = _StdConvAsTheAuthorsWriteIt(cin, cmid, 1, bias=False)
        self.conv2 = _StdConvAsTheAuthorsWriteIt(cmid, cmid, 3, stride, 1, bias=False)
        self.conv3 = _StdConvAsTheAuthorsWriteIt(cmid, cout, 1, bias=False)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = (_StdConvAsTheAuthorsWriteIt(cin, cout, 1, stride, bias=False)
                           if stride != 1 or cin != cout else None)  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.gn1(x))
        residual = x if self.downsample is None else self.downsample(out)
        out = self.conv1(out)
        out = self.conv2(self.relu(self.gn2(out)))
        out = self.conv3(self.relu(self.gn3(out)))
        return out + residual


class _BitAsTheAuthorsWriteIt(nn.Module):
    """ResNetV2(block_units, width_factor, head_size): the root (StdConv 7x7/2, a zero pad of 1, a 3x3/2 max pool
    with no padding), four stages of units, GroupNorm-ReLU, the global average pool and a 1x1 conv head."""

    def __init__(self, block_units: tuple[int, ...], wf: int, head_size: int = 1000) -> None:
        super().__init__()
        self.root = nn.Sequential(_StdConvAsTheAuthorsWriteIt(3, 64 * wf, 7, 2, 3, bias=False), nn.ConstantPad2d(1, 0),
                                  nn.MaxPool2d(kernel_size=3, stride=2, padding=0))  # fmt: skip
        units: list[nn.Module] = []
        cin = 64 * wf
        for stage, n in enumerate(block_units):
            cmid = 64 * wf * 2**stage
            for i in range(n):
                units.append(_BitUnit(cin, 4 * cmid, cmid, 2 if stage > 0 and i == 0 else 1))
                cin = 4 * cmid
        self.body = nn.Sequential(*units)
        self.gn, self.relu = nn.GroupNorm(32, cin), nn.ReLU(inplace=True)
        self.head = nn.Conv2d(cin, head_size, kernel_size=1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = nn.functional.adaptive_avg_pool2d(self.relu(self.gn(self.body(self.root(x)))), 1)
        return self.head(x)[..., 0, 0]


# entry -> the authors' KNOWN_MODELS arguments (block_units, width_factor), FACTS.md
BIT = {"bit_resnet50x1": ((3, 4, 6, 3), 1), "bit_resnet101x1": ((3, 4, 23, 3), 1), "bit_resnet50x3": ((3, 4, 6, 3), 3),
       "bit_resnet101x3": ((3, 4, 23, 3), 3), "bit_resnet152x2": ((3, 8, 36, 3), 2),
       "bit_resnet152x4": ((3, 8, 36, 3), 4)}  # fmt: skip


@pytest.mark.parametrize("entry", sorted(BIT))
def test_bit_counts_are_the_authors_network_and_timms(entry: str) -> None:
    """Parameters: the authors' network's numel = count(entry) = timm's port's figure in FACTS.md (the same
    network but for the standardisation's epsilon); conv + fc MACs: FlopCounterMode / 2 on it = count(entry)."""
    with torch.device("meta"):
        peer = _BitAsTheAuthorsWriteIt(*BIT[entry])
    with FlopCounterMode(display=False) as counter:
        peer(torch.empty(1, 3, 224, 224, device="meta"))
    counts = count(entry)
    units, wf = BIT[entry]
    timm_key = f"resnetv2_{entry.removeprefix('bit_resnet')}_bit"
    assert (counts.params, counts.total) == (sum(p.numel() for p in peer.parameters()), counter.get_total_flops() // 2)
    assert (counts.params, counts.total) == FAMILY_PEERS[timm_key][2:], timm_key
    assert (units, wf) == (tuple(s.repeats for s in load_spec(entry).stages), load_spec(entry).stem.out_channels // 64)


@pytest.mark.parametrize(
    "entry", [pytest.param(e, marks=[pytest.mark.slow] if e != "bit_resnet50x1" else []) for e in sorted(BIT)]
)
def test_bit_as_its_authors_write_it_conforms_and_is_named_first(entry: str) -> None:
    """The authors' network conforms to its entry (by the numbers too for R50x1: GroupNorm, the standardised
    weights and the zero-padded pool computed by our reference on its weights) and best matches name it first,
    before timm's port (whose epsilon is 1e-8) and the batch-norm pre-activation nets."""
    functional = entry == "bit_resnet50x1"
    with torch.device("cpu" if functional else "meta"):
        peer = _BitAsTheAuthorsWriteIt(*BIT[entry])
    comparison = compare_model(peer, load_spec(entry), functional=functional)
    assert (comparison.verdict, comparison.mismatches) == ("conformant", ()), comparison.mismatches
    best = best_matches(comparison.found, "imagenet", comparison.input_size)
    assert best and best[0].name == entry, [spec.label for spec in best]


def test_bit_differs_from_timms_port_by_the_standardisations_epsilon_alone() -> None:
    """Against timm's resnetv2_50x1_bit entry, the authors' R50x1 differs in every conv's weight (eps 1e-10, not
    1e-8) and nowhere else; by the numbers too, at the first conv."""
    peer = _BitAsTheAuthorsWriteIt((3, 4, 6, 3), 1)
    comparison = compare_model(peer, load_spec("resnetv2_50x1_bit"))
    assert comparison.verdict == "not conformant"
    structural = [m for m in comparison.mismatches if m.kind != "computation"]
    assert {m.property.rpartition(".")[2] for m in structural} == {"weight"}, structural
    assert {(m.expected, m.found) for m in structural} == {("standardised (eps 1e-08)", "standardised (eps 1e-10)")}
    assert [m.row for m in comparison.mismatches if m.kind == "computation"][:1] == ["conv1"], comparison.mismatches


def test_se_divisor_rounds_the_basic_blocks_c_over_r_up_to_8() -> None:
    """seresnet18 without its se_divisor is Hu et al.'s exact C/16: 64 channels squeeze to 4 (timm: 8), so each of
    conv2_x's two blocks has 2 * 64 * (8 - 4) + (8 - 4) = 516 fewer SE parameters; the other rows' C/16 (8, 16, 32)
    are multiples of 8 and do not change."""
    doc = tomllib.loads((tables_dir() / "squeeze_excitation.toml").read_text(encoding="utf-8"))
    assert doc["seresnet18"].pop("se_divisor") == 8
    exact = load_table(doc, "squeeze_excitation.toml")["seresnet18"]
    timm_widths = [block.se_channels for block in load_spec("seresnet18").blocks]
    exact_widths = [block.se_channels for block in exact.blocks]
    assert exact_widths == [block.convs[-1].out_channels // 16 for block in exact.blocks]
    assert [w for w in exact_widths if w % 8] == [4, 4], exact_widths  # conv2_x's two blocks
    assert timm_widths == [8 if w == 4 else w for w in exact_widths], timm_widths
    assert count("seresnet18").params - count(exact).params == 2 * 516


def test_se_divisor_rounds_c_over_r_to_the_nearest_multiple_where_r_does_not_divide_c() -> None:
    """r = 3, d = 4: 16 / 3 = 5.33 -> 4 (at least d); 32 / 3 = 10.67 -> 12 (nearest multiple, as int(10.67 + 2)
    // 4 * 4); without the divisor r = 3 must divide C, and does not."""
    doc = tomllib.loads((tables_dir() / "squeeze_excitation.toml").read_text(encoding="utf-8"))
    doc = {key: doc[key] for key in ("table", "stem", "head")} | {
        "net": {
            "source": "test",
            "se_reduction": 3,
            "se_divisor": 4,
            "conv2_x": {"block": ["1x1, 4", "3x3, 4", "1x1, 16"], "repeats": 2, "stride": 1},
            "conv3_x": {"block": ["1x1, 8", "3x3, 8", "1x1, 32"], "repeats": 1, "stride": 2},
        }
    }
    assert [block.se_channels for block in load_table(doc, "se.toml")["net"].blocks] == [4, 4, 12]
    del doc["net"]["se_divisor"]
    with pytest.raises(SpecError, match=r"net.conv2_x.block\[2\]: expected output channels divisible by se_reduction"):
        load_table(doc, "se.toml")


# ----------------------------------------------------------------------------------------------------------------
# Pre-activation CIFAR-10 nets (He et al. 2016)


@pytest.mark.parametrize("depth", sorted(PREACT_CIFAR_PARAMS))
def test_preact_cifar_params_as_the_paper_prints_them(depth: int) -> None:
    """1.7M (ResNet-164, pre-activation ResNet-110) and 10.2M (ResNet-1001), rounded to 0.1M.

    The paper counts the weights of its conv and fc layers: ResNet-1001 has 10,178,490 of them (10.2M) and 149,216
    batch-norm parameters besides (10,327,706 in all, which would print as 10.3M); for the two 1.7M nets both
    counts round alike.
    """
    spec = load_spec(f"preact_resnet{depth}")
    assert spec.depth == depth
    assert all(stage.repeats == PREACT_CIFAR_N[depth] for stage in spec.stages)
    weights = sum(layer.param_count for layer in layout_plan(spec).layers if layer.kind in ("conv", "fc"))
    assert round(weights / 1e5) / 10 == PREACT_CIFAR_PARAMS[depth] / 1e6, f"{weights:,} conv and fc weights"
    assert spec.paper["params"] == PREACT_CIFAR_PARAMS[depth]
    assert count(spec).params > weights  # and the batch norms' on top


# pytorchcv's pre-activation CIFAR-10 nets (pytorchcv/models/preresnet_cifar.py): depth -> its model's name
PYTORCHCV_PREACT_CIFAR = {110: "preresnet110_cifar10", 164: "preresnet164bn_cifar10", 1001: "preresnet1001_cifar10"}


@pytest.mark.slow  # ResNet-1001: 3,000 operators traced, then float64 and float32 passes
@pytest.mark.parametrize("depth", sorted(PYTORCHCV_PREACT_CIFAR))
def test_pytorchcv_preact_cifar_nets_conform_to_the_papers(depth: int) -> None:
    """pytorchcv's pre-activation nets are the paper's, by structure and by computation.  With the drawn weights,
    ResNet-1001's float32 output overflows (its 333 units each add to the stream): inf and NaN, the same on every
    call, are no sign of a model that is not a function of its input."""
    comparison = compare_model(pytorchcv_model(PYTORCHCV_PREACT_CIFAR[depth], pretrained=False),
                               load_spec(f"preact_resnet{depth}"))  # fmt: skip
    assert (comparison.verdict, comparison.exit_status) == ("conformant", 0), comparison.mismatches


@pytest.mark.parametrize("depth", [164, pytest.param(1001, marks=pytest.mark.slow)])
def test_preact_cifar_gradients_reach_the_stem_at_initialisation(depth: int) -> None:
    torch.manual_seed(0)
    model = build(f"preact_resnet{depth}").train()
    loss = model(torch.randn(2, 3, 32, 32)).logsumexp(1).mean()
    loss.backward()
    grad = model.conv1.weight.grad
    assert grad is not None and bool(torch.isfinite(grad).all()) and grad.abs().sum().item() > 0


# A peer over the check's MAX_PARAMS (resnext101_32x16d), or a pytorchcv peer over its MAX_MACS at 224x224, the only
# input its head's fixed 7x7 pool runs at (sknet101, sknet152), is told "too large to run here" and left to its
# structure; its numbers are test_outputs_equal_after_converting_the_peers_weights's.
def _runnable(key: str) -> bool:
    library, _, params, macs = FAMILY_PEERS[key]
    return params <= MAX_PARAMS and (library != "pytorchcv" or macs <= MAX_MACS)


@pytest.mark.slow  # each pair in float64, both modes, both directions
@pytest.mark.parametrize(("entry", "key"), [(e, k) for e, (k, _) in PAIRS.items() if _runnable(k)])
def test_the_peer_is_the_entry_by_computation(entry: str, key: str) -> None:
    """``compare.py --arch ENTRY --impl PEER``: conformant, structurally and functionally (the peer built with its
    values: an anti-aliased net's fixed filters are part of what it computes)."""
    comparison = compare_model(_peer(key)(), load_spec(entry))
    assert comparison.equivalence is not None and comparison.equivalence.equal, comparison.equivalence
    assert (comparison.verdict, comparison.exit_status) == ("conformant", 0), comparison.mismatches


# ----------------------------------------------------------------------------------------------------------------
# CIFAR family: the Wide ResNets of Zagoruyko and Komodakis 2016, ResNeXt-29 of Xie et al. 2017 (Sec. 5.3), the
# original (post-activation) ResNet-164 of He et al. 2016, kuangliu/pytorch-cifar's ResNet18.  Each entry against a
# small implementation written here from the paper's text (generic over its widths and depths, not built by
# resnet_spec), and its parameters against arithmetic written here.

CIFAR_BIG = 10_000_000  # entries with more parameters are compared by computation (float64 copies) in the slow set
CifarBlock = Callable[[int, int, int, int], nn.Module]  # (stage, input channels, output channels, stride) -> block


def _conv(c_in: int, c_out: int, kernel: int, stride: int = 1, groups: int = 1) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2, groups=groups, bias=False)


def _stages(c: int, outputs: tuple[int, ...], repeats: tuple[int, ...], block: CifarBlock) -> nn.Sequential:
    """Stages of blocks; the first block of every stage but the first has stride 2 (32, 16, 8, ... maps)."""
    blocks = []
    for stage, (out, n) in enumerate(zip(outputs, repeats, strict=True)):
        for i in range(n):
            blocks.append(block(stage, c, out, 2 if stage and not i else 1))
            c = out
    return nn.Sequential(*blocks)


class _PreActBlock(nn.Module):
    """He et al. 2016, Fig. 4(e), as wide-resnet.lua: BN-ReLU-conv twice; where the shape changes a 1x1 conv
    without BN on the pre-activated input, else the input itself."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.bn1, self.conv1 = nn.BatchNorm2d(c_in), _conv(c_in, c_out, 3, stride)
        self.bn2, self.conv2 = nn.BatchNorm2d(c_out), _conv(c_out, c_out, 3)
        self.projection = _conv(c_in, c_out, 1, stride) if (c_in, stride) != (c_out, 1) else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = torch.relu(self.bn1(x))  # (N, C_in, H, W)
        out = self.conv2(torch.relu(self.bn2(self.conv1(pre))))  # (N, C_out, H/s, W/s)
        return out + (x if self.projection is None else self.projection(pre))


class _PreActNet(nn.Module):
    """A 3x3 conv (no BN), pre-activation basic blocks, a final BN-ReLU (WRN) or none (kuangliu's PreActResNet18),
    global average pool, fc 10."""

    def __init__(self, stem: int, outputs: tuple[int, ...], repeats: tuple[int, ...], final_bn: bool = True) -> None:
        super().__init__()
        self.conv = _conv(3, stem, 3)
        self.blocks = _stages(stem, outputs, repeats, lambda _, c_in, c_out, stride: _PreActBlock(c_in, c_out, stride))
        self.final = nn.Sequential(nn.BatchNorm2d(outputs[-1]), nn.ReLU()) if final_bn else nn.Identity()
        self.fc = nn.Linear(outputs[-1], 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.final(self.blocks(self.conv(x)))  # (N, C_last, H / 2^(stages-1), ...)
        return self.fc(nn.functional.adaptive_avg_pool2d(x, 1).flatten(1))  # (N, 10)


class _PostActBlock(nn.Module):
    """He et al. 2015: conv-BN-ReLU for each cell (kernel, width, groups), the last without ReLU; the stride on the
    first 3x3; a 1x1 conv + BN where the shape changes, else the input; ReLU after the addition."""

    def __init__(self, c_in: int, cells: tuple[tuple[int, int, int], ...], stride: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c, strided = c_in, False
        for kernel, width, groups in cells:
            layers += [_conv(c, width, kernel, 1 if strided or kernel == 1 else stride, groups), nn.BatchNorm2d(width)]
            layers.append(nn.ReLU())
            c, strided = width, strided or kernel > 1
        self.branch = nn.Sequential(*layers[:-1])
        changes = (c_in, stride) != (c, 1)
        self.shortcut = nn.Sequential(_conv(c_in, c, 1, stride), nn.BatchNorm2d(c)) if changes else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.branch(x) + self.shortcut(x))  # (N, C_out, H/s, W/s)


class _PostActNet(nn.Module):
    """He et al. 2015, Sec. 4.2's layout at any widths: 3x3 conv-BN-ReLU (stride 1, no pool), stages of blocks,
    global average pool, fc 10."""

    def __init__(self, stem: int, outputs: tuple[int, ...], repeats: tuple[int, ...], block: CifarBlock) -> None:
        super().__init__()
        self.stem = nn.Sequential(_conv(3, stem, 3), nn.BatchNorm2d(stem), nn.ReLU())
        self.blocks = _stages(stem, outputs, repeats, block)
        self.fc = nn.Linear(outputs[-1], 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.stem(x))  # (N, C_last, H / 2^(stages-1), ...)
        return self.fc(nn.functional.adaptive_avg_pool2d(x, 1).flatten(1))  # (N, 10)


def _wide_resnet(depth: int, k: int) -> nn.Module:
    """WRN-depth-k (Table 1): N = (depth - 4) / 6 blocks a group, 16k, 32k, 64k channels."""
    n = (depth - 4) // 6
    return _PreActNet(facts.WRN_STEM, tuple(k * w for w in facts.WRN_WIDTHS), (n, n, n))


def _resnext29(cardinality: int, width: int) -> nn.Module:
    """ResNeXt-29, C x d (Sec. 5.3): [1x1, Cd 2^s; 3x3, Cd 2^s, C groups; 1x1, output] x 3 per stage s."""

    def block(stage: int, c_in: int, c_out: int, stride: int) -> nn.Module:
        inner = cardinality * width * 2**stage
        return _PostActBlock(c_in, ((1, inner, 1), (3, inner, cardinality), (1, c_out, 1)), stride)

    repeats = (facts.RESNEXT29_REPEATS,) * len(facts.RESNEXT29_OUTPUTS)
    return _PostActNet(facts.RESNEXT29_STEM, facts.RESNEXT29_OUTPUTS, repeats, block)


def _cifar_bottleneck_resnet(n: int) -> nn.Module:
    """He et al. 2015's bottleneck units on the CIFAR stages of He et al. 2016 (inner 16, 32, 64; outputs x4)."""

    def block(stage: int, c_in: int, c_out: int, stride: int) -> nn.Module:
        inner = facts.CIFAR_BOTTLENECK_INNER[stage]
        return _PostActBlock(c_in, ((1, inner, 1), (3, inner, 1), (1, c_out, 1)), stride)

    return _PostActNet(facts.CIFAR_BOTTLENECK_STEM, facts.CIFAR_BOTTLENECK_OUTPUTS, (n, n, n), block)


def _kuangliu_resnet18() -> nn.Module:
    """kuangliu/pytorch-cifar ResNet18: Table 1's 18-layer stages after a 3x3, 64 stem (stride 1, no pool)."""

    def block(stage: int, c_in: int, c_out: int, stride: int) -> nn.Module:
        return _PostActBlock(c_in, ((3, c_out, 1), (3, c_out, 1)), stride)

    widths = tuple(w for w, _ in facts.TABLE1_BASIC_WIDTHS)
    return _PostActNet(facts.KUANGLIU_STEM, widths, facts.TABLE1_REPEATS[18], block)


def _wrn_by_hand(depth: int, k: int) -> tuple[int, int]:
    """WRN-depth-k's (conv and fc weights, batch-norm parameters), from Sec. 2 and Table 1.

    conv1 3 x 16 x 3 x 3.  A group of N = (depth - 4) / 6 blocks of width w on c channels: the first block
    9cw + 9w^2 and its 1x1 projection cw (c != w in every group: 16 -> 16k, 16k -> 32k, 32k -> 64k), BN on its c
    inputs and on w; each other block 2 x 9w^2, BN on w twice.  The final BN on 64k; the fc 64k x 10 + 10.
    """
    n = (depth - 4) // 6
    weights, bn, c = 3 * facts.WRN_STEM * 9, 0, facts.WRN_STEM
    for w in (k * width for width in facts.WRN_WIDTHS):
        weights += 9 * c * w + 9 * w * w + c * w + (n - 1) * 2 * 9 * w * w
        bn += 2 * c + 2 * w + (n - 1) * 2 * 2 * w
        c = w
    return weights + c * 10 + 10, bn + 2 * c


def _bottleneck_by_hand(
    stem: int, inner: tuple[int, ...], outputs: tuple[int, ...], n: int, groups: int
) -> tuple[int, int]:
    """A post-activation CIFAR bottleneck net's (conv and fc weights, batch-norm parameters).

    conv1 3 x stem x 3 x 3 and its BN.  A stage of n blocks of inner width m and output o on c channels: the first
    block cm + 9m^2 / groups + mo and its projection co (c != o in every stage), BN on m, m, o and the projection's
    o; each other block om + 9m^2 / groups + mo, BN on m, m, o.  The fc o x 10 + 10.
    """
    weights, bn, c = 3 * stem * 9, 2 * stem, stem
    for m, o in zip(inner, outputs, strict=True):
        grouped = 9 * m * m // groups
        weights += c * m + grouped + m * o + c * o + (n - 1) * (o * m + grouped + m * o)
        bn += n * 2 * (m + m + o) + 2 * o
        c = o
    return weights + c * 10 + 10, bn


def _resnext29_by_hand(cardinality: int, width: int) -> tuple[int, int]:
    inner = tuple(cardinality * width * 2**stage for stage in range(len(facts.RESNEXT29_OUTPUTS)))
    stem, outputs = facts.RESNEXT29_STEM, facts.RESNEXT29_OUTPUTS
    return _bottleneck_by_hand(stem, inner, outputs, facts.RESNEXT29_REPEATS, cardinality)


def _resnet164_by_hand() -> tuple[int, int]:
    stem, inner, outputs = facts.CIFAR_BOTTLENECK_STEM, facts.CIFAR_BOTTLENECK_INNER, facts.CIFAR_BOTTLENECK_OUTPUTS
    return _bottleneck_by_hand(stem, inner, outputs, facts.PREACT_CIFAR_N[164], 1)


def _kuangliu_by_hand() -> tuple[int, int]:
    """conv1 3 x 64 x 3 x 3 and its BN.  A stage of n basic blocks of width w on c channels: 9cw + 9w^2, then
    (n - 1) x 2 x 9w^2, BN on w twice a block; a projection cw and its BN where c != w (every stage but the first,
    whose 64 -> 64 at stride 1 is the identity).  The fc 512 x 10 + 10."""
    weights, bn, c = 3 * facts.KUANGLIU_STEM * 9, 2 * facts.KUANGLIU_STEM, facts.KUANGLIU_STEM
    for (w, _), n in zip(facts.TABLE1_BASIC_WIDTHS, facts.TABLE1_REPEATS[18], strict=True):
        projection = (c * w, 2 * w) if c != w else (0, 0)
        weights += 9 * c * w + 9 * w * w + (n - 1) * 2 * 9 * w * w + projection[0]
        bn += n * 2 * 2 * w + projection[1]
        c = w
    return weights + c * 10 + 10, bn


def _kuangliu_preact_resnet18() -> nn.Module:
    """kuangliu/pytorch-cifar PreActResNet18: the stem conv alone, pre-activation units, no BN-ReLU before the pool."""
    widths = tuple(w for w, _ in facts.TABLE1_BASIC_WIDTHS)
    return _PreActNet(facts.KUANGLIU_STEM, widths, facts.TABLE1_REPEATS[18], final_bn=False)


def _kuangliu_preact_by_hand() -> tuple[int, int]:
    """conv1 3 x 64 x 3 x 3, no BN.  A stage of n units of width w on c channels: 9cw + 9w^2, then (n - 1) x 2 x
    9w^2; each unit's BN on its input (c for the first, w after) and on w; a projection cw without BN where c != w.
    The fc 512 x 10 + 10; no BN after the last unit."""
    weights, bn, c = 3 * facts.KUANGLIU_STEM * 9, 0, facts.KUANGLIU_STEM
    for (w, _), n in zip(facts.TABLE1_BASIC_WIDTHS, facts.TABLE1_REPEATS[18], strict=True):
        weights += 9 * c * w + 9 * w * w + (n - 1) * 2 * 9 * w * w + (c * w if c != w else 0)
        bn += 2 * c + 2 * w + (n - 1) * 2 * 2 * w
        c = w
    return weights + c * 10 + 10, bn


# entry -> (its implementation written here, its (conv and fc weights, BN parameters) counted by hand, the name's
# depth as resnet_spec counts it: conv1, the branch convs, the fc)
CIFAR_FAMILY: dict[str, tuple[Callable[[], nn.Module], Callable[[], tuple[int, int]], int]] = {
    "wrn_28_10": (lambda: _wide_resnet(28, 10), lambda: _wrn_by_hand(28, 10), 28 - 2),
    "wrn_16_8": (lambda: _wide_resnet(16, 8), lambda: _wrn_by_hand(16, 8), 16 - 2),
    "wrn_40_4": (lambda: _wide_resnet(40, 4), lambda: _wrn_by_hand(40, 4), 40 - 2),
    "resnext29_8x64d": (lambda: _resnext29(8, 64), lambda: _resnext29_by_hand(8, 64), 29),
    "resnext29_16x64d": (lambda: _resnext29(16, 64), lambda: _resnext29_by_hand(16, 64), 29),
    "resnet164": (lambda: _cifar_bottleneck_resnet(facts.PREACT_CIFAR_N[164]), _resnet164_by_hand, 164),
    "resnet18_cifar": (_kuangliu_resnet18, _kuangliu_by_hand, 18),
    "preact_resnet18_cifar": (_kuangliu_preact_resnet18, _kuangliu_preact_by_hand, 18),
}
# entry -> the parameters its paper prints (kuangliu's ResNet18 has no paper)
CIFAR_PRINTED = {
    "wrn_28_10": facts.WRN_PARAMS[(28, 10)],
    "wrn_16_8": facts.WRN_PARAMS[(16, 8)],
    "wrn_40_4": facts.WRN_PARAMS[(40, 4)],
    "resnext29_8x64d": facts.RESNEXT29_PARAMS[(8, 64)],
    "resnext29_16x64d": facts.RESNEXT29_PARAMS[(16, 64)],
    "resnet164": facts.RESNET164_ORIGINAL["params"],
}
# The one printed figure that the count with batch norms would not give: Table 7 counts conv and fc weights.
CIFAR_PRINTED_WITH_BN = {"resnext29_16x64d": 68.2e6}


def _cifar_peer(entry: str) -> nn.Module:
    with torch.device("meta"):
        return CIFAR_FAMILY[entry][0]()


@pytest.mark.parametrize("entry", list(CIFAR_FAMILY))
def test_cifar_family_counts_by_hand_and_measured_on_the_peer(entry: str) -> None:
    """Parameters by the arithmetic above = count(entry) = the peer's numel = FACTS.md; conv+fc MACs at 32x32 =
    FlopCounterMode / 2 on the peer = FACTS.md."""
    weights, bn = CIFAR_FAMILY[entry][1]()
    params, fact_weights, fact_macs = facts.CIFAR_FAMILY_COUNTS[entry]
    peer = _cifar_peer(entry)
    with FlopCounterMode(display=False) as counter:
        peer(torch.empty(1, 3, 32, 32, device="meta"))
    counts = count(entry)
    found = {
        "by hand": (weights + bn, weights),
        "count(entry)": (counts.params, counts.total),
        "the peer": (sum(p.numel() for p in peer.parameters()), counter.get_total_flops() // 2),
    }
    expected = {"by hand": (params, fact_weights), "count(entry)": (params, fact_macs), "the peer": (params, fact_macs)}
    assert found == expected, f"{entry}: (params, weights or MACs) by hand, by resnet_spec, on the peer"


@pytest.mark.parametrize("entry", list(CIFAR_PRINTED))
def test_cifar_family_params_as_the_papers_print_them(entry: str) -> None:
    """Rounded to 0.1M, the conv and fc weights counted by hand give the printed figure (the convention of
    ResNet-1001's 10.2M above); with the batch norms too, every figure but ResNeXt-29 16x64d's (68,155,210: 68.2M)."""
    weights, bn = CIFAR_FAMILY[entry][1]()
    printed = CIFAR_PRINTED[entry]
    assert load_spec(entry).paper["params"] == printed
    assert round(weights / 1e5) == round(printed / 1e5), f"{entry}: {weights:,} conv and fc weights vs {printed:,}"
    with_bn = CIFAR_PRINTED_WITH_BN.get(entry, printed)
    assert round((weights + bn) / 1e5) == round(with_bn / 1e5), f"{entry}: {weights + bn:,} parameters"


@pytest.mark.parametrize("entry", list(CIFAR_FAMILY))
def test_cifar_family_projects_where_the_shape_changes(entry: str) -> None:
    """A 1x1 conv with the block's stride where the channels or the map change, the first block of the first stage
    included (WRN 16 -> 16k, ResNeXt 64 -> 256, ResNet-164 16 -> 64, all at stride 1): with BN in post-activation
    nets, without it in pre-activation ones; the identity elsewhere.  And the depth the name says."""
    spec = load_spec(entry)
    pre = isinstance(_cifar_peer(entry), _PreActNet)
    assert spec.order == ("pre" if pre else "post") and spec.depth == CIFAR_FAMILY[entry][2]
    for block in layout_plan(spec).blocks:
        first = block.layers[0]
        c_in, stride = first.in_shape[0], first.in_shape[1] // block.layers[-1].out_shape[1]
        c_out = block.layers[-1].out_shape[0]
        found = [(layer.kind, layer.kernel, layer.stride) for layer in block.role("shortcut")]
        projection = [("conv", 1, stride)] + ([] if pre else [("bn", 1, 1)])
        expected = projection if (c_in, stride) != (c_out, 1) else [("identity", 1, 1)]
        assert found == expected, f"{entry} {block.module}: {c_in} -> {c_out} channels, stride {stride}"
    first_stage = layout_plan(spec).blocks[0].role("shortcut")
    assert entry.endswith("resnet18_cifar") == (first_stage[0].kind == "identity"), first_stage


@pytest.mark.parametrize("entry", list(CIFAR_FAMILY))
def test_cifar_peer_conforms_and_is_named_first_among_best_matches(entry: str) -> None:
    """``compare.py --arch ENTRY --impl PEER`` conforms; ``--depth 20`` does not, and its best matches name ENTRY
    first."""
    comparison = compare_model(_cifar_peer(entry), load_spec(entry), functional=False)
    assert comparison.mismatches == (), [(m.where, m.property, m.expected, m.found) for m in comparison.mismatches]
    against_resnet20 = structural_comparison(comparison.found, load_spec("resnet20"))
    assert against_resnet20.mismatches
    best = best_matches(against_resnet20.found, "cifar10", against_resnet20.input_size)
    assert best and best[0].name == entry, [s.label for s in best]


@pytest.mark.parametrize(
    "entry",
    [
        pytest.param(e, marks=[pytest.mark.slow] if facts.CIFAR_FAMILY_COUNTS[e][0] > CIFAR_BIG else [])
        for e in CIFAR_FAMILY
    ],
)
def test_cifar_peer_is_the_entry_by_computation(entry: str) -> None:
    """The peer's weights in the entry's network (float64, both modes, both directions): the same logits."""
    comparison = compare_model(_cifar_peer(entry), load_spec(entry))
    assert comparison.equivalence is not None and comparison.equivalence.equal, comparison.equivalence
    assert (comparison.verdict, comparison.exit_status) == ("conformant", 0), comparison.mismatches


def test_kuangliu_preact_resnet18_is_not_resnet18_cifar_nor_with_a_final_bn_relu() -> None:
    """Without its final BN-ReLU, the pre-activation net differs from resnet18_cifar and from the same entry with
    one (He et al. 2016's head): a finding before the pool."""
    peer = _cifar_peer("preact_resnet18_cifar")
    comparison = compare_model(peer, load_spec("resnet18_cifar"), functional=False)
    assert comparison.mismatches
    entry = load_spec("preact_resnet18_cifar")
    with_bn = replace(entry, head=replace(entry.head, final_bn=True))
    findings = structural_comparison(comparison.found, with_bn).mismatches
    assert [(m.row, m.property) for m in findings] == [("fc", "before the pool"), ("model", "params")], findings
