"""The ResNet family as tables, each entry proved against the implementation people use (torchvision, timm).

For every pair (our entry, its peer):

* the entry's analytic params and MACs equal the peer's exact figures of FACTS.md (tests/facts.py);
* the peer, built on the meta device, compares conformant to the entry, and is not the 2015 ResNet-50 v1.5: its
  best match is the entry;
* the peer's state_dict (random init) converts into the entry's names (every key used once, shapes from the plan),
  and both networks compute the same outputs (float64, eval mode, 1e-5 of the output's scale).

Plus the pre-activation CIFAR nets of He et al. 2016: parameters as the paper prints them, gradients at the stem.
timm models are random-init only (no weights are downloaded).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import timm
import torch
import torchvision
from facts import FAMILY_PEERS, PREACT_CIFAR_N, PREACT_CIFAR_PARAMS
from torch import nn

from resnet_spec import build, compare_model, convert_state_dict, count, layout_plan, load_spec
from resnet_spec.verify import best_matches, structural_comparison

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
}
BIG = 40_000_000  # peers with more parameters are checked in the slow set (deep traces, float64 copies)


def _peer(key: str) -> Callable[[], nn.Module]:
    library, name, _, _ = FAMILY_PEERS[key]
    if library == "torchvision":
        return getattr(torchvision.models, name)  # type: ignore[no-any-return]
    return lambda: timm.create_model(name, pretrained=False)


def _meta_peer(key: str) -> nn.Module:
    with torch.device("meta"):
        return _peer(key)()


def _pairs() -> list[Any]:
    out = []
    for entry_name, (key, fmt) in PAIRS.items():
        marks = [pytest.mark.slow] if FAMILY_PEERS[key][2] > BIG else []
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
    """Running statistics and affine parameters away from 0 and 1, so BN placement matters to the outputs."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                for tensor, low, high in (
                    (module.running_mean, -0.5, 0.5),
                    (module.running_var, 0.5, 2.0),
                    (module.weight, 0.5, 1.5),
                    (module.bias, -0.5, 0.5),
                ):
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
    x = torch.randn(1, 3, 32, 32, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        expected, found = peer(x), ours(x)
    scale = expected.abs().max().item()
    assert scale > 0
    assert (found - expected).abs().max().item() <= 1e-5 * scale


def test_weights_convert_back_to_the_peers_names() -> None:
    """The timm resnetv2 naming written back: the peer's own keys and shapes (its fc a 1x1 conv)."""
    peer = _meta_peer("resnetv2_50")
    ours = build("preact_resnet50", device="meta").state_dict()
    theirs = convert_state_dict(ours, load_spec("preact_resnet50"), target="timm-resnetv2")
    assert {k: tuple(v.shape) for k, v in theirs.items()} == {k: tuple(v.shape) for k, v in peer.state_dict().items()}


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


@pytest.mark.parametrize("depth", [164, pytest.param(1001, marks=pytest.mark.slow)])
def test_preact_cifar_gradients_reach_the_stem_at_initialisation(depth: int) -> None:
    torch.manual_seed(0)
    model = build(f"preact_resnet{depth}").train()
    loss = model(torch.randn(2, 3, 32, 32)).logsumexp(1).mean()
    loss.backward()
    grad = model.conv1.weight.grad
    assert grad is not None and bool(torch.isfinite(grad).all()) and grad.abs().sum().item() > 0


@pytest.mark.slow  # each pair in float64, both modes, both directions
@pytest.mark.parametrize(("entry", "key"), [(e, k) for e, (k, _) in PAIRS.items()])
def test_the_peer_is_the_entry_by_computation(entry: str, key: str) -> None:
    """``compare.py --arch ENTRY --impl PEER``: conformant, structurally and functionally."""
    comparison = compare_model(_meta_peer(key), load_spec(entry))
    assert comparison.equivalence is not None and comparison.equivalence.equal, comparison.equivalence
    assert (comparison.verdict, comparison.exit_status) == ("conformant", 0), comparison.mismatches
