"""Skip connections: exact where they should be exact, projections where the option puts them, gradients that reach
the stem of the deepest networks, and no addition at all in a plain network.

Shortcut options as the paper defines them (Sec. 3.3 and 4.1; FACTS.md), written here rather than read from
variants.toml: A = identity, zero-padded and subsampled where the shape changes (no parameters); B = a 1x1
projection (conv + BN, the block's stride) where the shape changes, identity elsewhere; C = a projection on every
block; none = no shortcut (the plain baselines).
"""

from __future__ import annotations

import functools
import tomllib
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from cases import CASES, case_marks
from hypothesis import given, settings
from hypothesis import strategies as st
from strategies import case_spec
from torch import Tensor, nn
from torch.utils._python_dispatch import TorchDispatchMode

from resnet_spec import ResNet, ResNetSpec, build, list_specs, load_spec
from resnet_spec.counts import materialize
from resnet_spec.models import BlurPool, PlainBlock, ResidualBlock, ZeroPadShortcut
from resnet_spec.spec import variants

Case = tuple[str, str, str]
aten = torch.ops.aten


def _spec(case: Case) -> ResNetSpec:
    return case_spec(case)


# ------------------------------------------------------------------------------------------------------------
# Identity, projection and zero-padding shortcuts are exactly what they say


# Small networks with every kind of block: identity and zero-padding (A), projections where the shape changes (B)
# and everywhere (C), the stride on the 1x1 (v1) or the 3x3 (v1.5) of a bottleneck.
EXACT_CASES: list[Case] = [
    ("resnet20", "v1", "A"),
    ("resnet20", "v1", "B"),
    ("resnet20", "v1", "C"),
    ("resnet18", "v1", "A"),
    ("resnet50", "v1", "B"),
    ("resnet50", "v1.5", "C"),
]


@functools.lru_cache(maxsize=1)
def _cpu_model(case: Case) -> ResNet:
    torch.manual_seed(0)
    return build(_spec(case)).eval()


def _blocks(model: nn.Module) -> list[ResidualBlock]:
    return [m for m in model.modules() if isinstance(m, ResidualBlock)]


def _randomise_bn(bn: nn.BatchNorm2d, generator: torch.Generator) -> None:
    """Running statistics and affine parameters far from the identity, so a BN that is skipped shows."""
    assert bn.running_mean is not None and bn.running_var is not None  # track_running_stats, as built
    with torch.no_grad():
        c = bn.num_features
        bn.running_mean.copy_(torch.randn(c, generator=generator))
        bn.running_var.copy_(torch.rand(c, generator=generator) + 0.5)
        bn.weight.copy_(torch.randn(c, generator=generator))
        bn.bias.copy_(torch.randn(c, generator=generator))


def _zero_branch(block: ResidualBlock) -> None:
    """The residual branch's last BN gives exactly 0: weight and bias 0 (eval mode)."""
    with torch.no_grad():
        block.last_bn.weight.zero_()
        block.last_bn.bias.zero_()


@pytest.mark.parametrize("case", EXACT_CASES, ids=[f"{n}-{v}-{s}" for n, v, s in EXACT_CASES])
def test_shortcuts_are_exact_with_the_residual_branch_zeroed(case: Case) -> None:
    model = _cpu_model(case)
    blocks = _blocks(model)

    @settings(max_examples=max(5, settings().max_examples // 2))
    @given(
        index=st.integers(0, len(blocks) - 1),
        batch=st.integers(1, 2),
        height=st.integers(1, 9),
        width=st.integers(1, 9),
        seed=st.integers(0, 2**16),
    )
    def check(index: int, batch: int, height: int, width: int, seed: int) -> None:
        block = blocks[index]
        generator = torch.Generator().manual_seed(seed)
        for bn in block.modules():
            if isinstance(bn, nn.BatchNorm2d):
                _randomise_bn(bn, generator)
        _zero_branch(block)
        c_in = block.conv1.in_channels
        x = torch.randn(batch, c_in, height, width, generator=generator)
        x_before = x.clone()
        with torch.no_grad():
            out = block(x)
        assert torch.equal(x, x_before), "the block changed its input in place"

        shortcut = block.downsample
        if isinstance(shortcut, nn.Identity):
            assert torch.equal(out, F.relu(x)), "identity shortcut with a zero branch is not relu(x)"
        elif isinstance(shortcut, ZeroPadShortcut):
            stride = shortcut.stride
            rows, cols = torch.arange(0, height, stride), torch.arange(0, width, stride)
            subsampled = x.index_select(2, rows).index_select(3, cols)  # positions 0, s, 2s ...: the strided conv's
            assert out.shape == (batch, block.last_bn.num_features, len(rows), len(cols))
            assert torch.equal(out[:, :c_in], F.relu(subsampled)), "option A: kept channels are not relu(x[::s, ::s])"
            assert torch.equal(out[:, c_in:], torch.zeros_like(out[:, c_in:])), "option A: padded channels not 0"
        else:
            conv, bn = shortcut[0], shortcut[1]
            projected = F.conv2d(x, conv.weight, stride=conv.stride)
            expected = F.relu(
                F.batch_norm(projected, bn.running_mean, bn.running_var, bn.weight, bn.bias, training=False, eps=bn.eps)
            )
            torch.testing.assert_close(out, expected, rtol=0, atol=0)

    check()


def test_the_exact_cases_cover_every_kind_of_shortcut() -> None:
    """So that the test above checks identity, zero-padding and projections with stride 1 and 2."""
    kinds = set()
    for case in EXACT_CASES:
        for block in _blocks(build(_spec(case), device="meta")):
            shortcut = block.downsample
            if isinstance(shortcut, nn.Identity):
                kinds.add(("identity", 1))
            elif isinstance(shortcut, ZeroPadShortcut):
                kinds.add(("zero_pad", shortcut.stride))
            else:
                kinds.add(("projection", shortcut[0].stride[0]))
    assert kinds == {("identity", 1), ("zero_pad", 2), ("projection", 1), ("projection", 2)}


# ------------------------------------------------------------------------------------------------------------
# Projections sit exactly where the option says


def _table_word(spec: ResNetSpec, word: str, default: Any) -> Any:
    """A word of the entry's table file as written: the entry's own, else its base entry's (and so on), else its
    [table] section's."""
    doc = tomllib.loads(Path(spec.table_file).read_text(encoding="utf-8"))
    name: str | None = spec.name
    while name is not None and name in doc:
        if word in doc[name]:
            return doc[name][word]
        name = doc[name].get("base")
    return doc["table"].get(word, default)


def _expected_shortcuts(spec: ResNetSpec, option: str) -> list[tuple[Any, ...]]:
    """Each block's shortcut, derived from the table's stage rows (bracket, repeats, stride), the option and its
    anti-aliasing words (anti_alias_shortcut: a strided projection blurs first, with anti_alias_filter's taps)."""
    blurred = _table_word(spec, "anti_alias_shortcut", False)
    taps = _table_word(spec, "anti_alias_filter", 3)
    expected: list[tuple[Any, ...]] = []
    channels = spec.stem.out_channels  # the conv1 cell's channels
    for stage in spec.stages:
        out = stage.layers[-1][1]  # the last conv of the bracket
        for repeat in range(stage.repeats):
            c_in, stride = (channels, stage.stride) if repeat == 0 else (out, 1)
            changes = stride != 1 or c_in != out
            # what the option is (variants.toml), then what each kind of shortcut is (Sec. 3.3; ResNet-D)
            kind = variants().shortcuts[option].on_change if changes else variants().shortcuts[option].otherwise
            if kind == "none":
                expected.append(("plain",))
            elif kind == "projection" and blurred and stride > 1:  # the blur with the stride, a stride-1 1x1 conv
                expected.append(("blur_projection", taps, stride, c_in, out))
            elif kind == "projection":
                expected.append(("projection", c_in, out, 1, stride, 0))
            elif kind == "avg_projection":  # 2x2 average pool with the stride (none at stride 1), stride-1 1x1 conv
                expected.append(("avg_projection", 2 if stride > 1 else None, stride, c_in, out))
            elif kind == "zero_pad":
                expected.append(("zero_pad", stride, out - c_in))
            else:
                expected.append(("identity",))
        channels = out
    return expected


def _built_shortcuts(model: ResNet) -> list[tuple[Any, ...]]:
    """Each block's shortcut as built, read from the modules."""
    found: list[tuple[Any, ...]] = []
    for layer_name in model.layer_names:
        for block in getattr(model, layer_name):
            if isinstance(block, PlainBlock):
                found.append(("plain",) if not hasattr(block, "downsample") else ("plain with a shortcut?",))
                continue
            shortcut = block.downsample
            if isinstance(shortcut, nn.Identity):
                found.append(("identity",))
            elif isinstance(shortcut, ZeroPadShortcut):
                found.append(("zero_pad", shortcut.stride, shortcut.extra_channels))
            elif (isinstance(shortcut, nn.Sequential) and [type(m) for m in shortcut][:1] == [nn.Conv2d]
                  and [type(m) for m in shortcut][1:] in ([nn.BatchNorm2d], [nn.GroupNorm])):  # fmt: skip
                conv, norm = shortcut  # the projection and its normalisation (a GroupNorm where the table says so)
                channels = norm.num_features if isinstance(norm, nn.BatchNorm2d) else norm.num_channels
                assert conv.bias is None and conv.out_channels == channels
                assert conv.kernel_size[0] == conv.kernel_size[1] and conv.stride[0] == conv.stride[1]
                kernel, stride, padding = conv.kernel_size[0], conv.stride[0], conv.padding[0]
                found.append(("projection", conv.in_channels, conv.out_channels, kernel, stride, padding))
            elif isinstance(shortcut, nn.Sequential) and len(shortcut) == 1 and isinstance(shortcut[0], nn.Conv2d):
                # a pre-activation projection: it reads the BN-ReLU'd input, no BN of its own (BiT's standardises
                # its weight: a subclass of nn.Conv2d)
                (conv,) = shortcut
                kernel, stride, padding = conv.kernel_size[0], conv.stride[0], conv.padding[0]
                found.append(("projection", conv.in_channels, conv.out_channels, kernel, stride, padding))
            elif isinstance(shortcut, nn.Sequential) and [type(m) for m in shortcut][1:] == [nn.Conv2d, nn.BatchNorm2d]:
                pool, conv, _ = shortcut
                assert conv.stride == (1, 1) and conv.kernel_size == (1, 1)
                if isinstance(pool, BlurPool):
                    found.append(("blur_projection", pool.taps, pool.stride, conv.in_channels, conv.out_channels))
                elif isinstance(pool, nn.AvgPool2d):
                    assert pool.ceil_mode and not pool.count_include_pad
                    found.append(("avg_projection", pool.kernel_size, pool.stride, conv.in_channels, conv.out_channels))
                else:
                    found.append(("avg_projection", None, 1, conv.in_channels, conv.out_channels))
            else:
                found.append(("unknown", repr(shortcut)))
    return found


def _distinct(cases: list[Case]) -> list[Case]:
    seen: set[object] = set()
    distinct = []
    for case in cases:
        spec = _spec(case)
        key = spec.network_key
        if key not in seen:
            seen.add(key)
            distinct.append(case)
    return distinct


PLACEMENT_CASES = _distinct(CASES)


@pytest.mark.parametrize("case", [pytest.param(c, id="-".join(c), marks=case_marks(c)) for c in PLACEMENT_CASES])
def test_projections_sit_where_the_option_says(case: Case) -> None:
    spec = _spec(case)
    model = build(spec, device="meta")
    expected, found = _expected_shortcuts(spec, case[2]), _built_shortcuts(model)
    mismatches = [(i, e, f) for i, (e, f) in enumerate(zip(expected, found, strict=True)) if e != f]
    assert len(found) == sum(stage.repeats for stage in spec.stages)
    assert not mismatches, f"{spec.label}: (block, expected, built): {mismatches[:5]}"


# ------------------------------------------------------------------------------------------------------------
# Gradients reach the stem of the deepest networks


@pytest.mark.slow
@pytest.mark.parametrize(("name", "size"), [("resnet152", 64), ("resnet1202", 16)])
def test_gradient_reaches_the_stem_at_initialisation(name: str, size: int) -> None:
    torch.manual_seed(0)
    model = build(name).train()
    x = torch.randn(1, 3, size, size)
    loss = F.cross_entropy(model(x), torch.tensor([1]))
    loss.backward()
    stem_norm = model.conv1.weight.grad.norm().item() if model.conv1.weight.grad is not None else float("nan")
    assert torch.isfinite(torch.tensor(stem_norm)) and stem_norm > 0, f"{name}: conv1 gradient norm {stem_norm}"
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    not_finite = [n for n, p in model.named_parameters() if p.grad is not None and not torch.isfinite(p.grad).all()]
    assert not missing, f"{name}: no gradient for {missing[:5]} ({len(missing)} parameters)"
    assert not not_finite, f"{name}: non-finite gradient in {not_finite[:5]}"


# ------------------------------------------------------------------------------------------------------------
# Plain networks have no addition; residual ones have one per block


class _OpRecorder(TorchDispatchMode):
    """Counts every aten operator that runs."""

    def __init__(self) -> None:
        super().__init__()
        self.counts: Counter[Any] = Counter()

    def __torch_dispatch__(
        self, func: Any, types: Any, args: tuple[Any, ...] = (), kwargs: dict[str, Any] | None = None
    ) -> Any:
        self.counts[func.overloadpacket] += 1
        return func(*args, **(kwargs or {}))


def _additions(model: nn.Module, in_channels: int) -> int:
    """How many tensor additions a forward of ``model`` (eval mode, a small input on the CPU) runs."""
    with torch.no_grad(), _OpRecorder() as recorder:
        model.eval()(torch.zeros(1, in_channels, 8, 8))
    return recorder.counts[aten.add] + recorder.counts[aten.add_]


PLAIN = [name for name in list_specs() if load_spec(name).shortcut.name == "none"]


@pytest.mark.parametrize("name", PLAIN)
@pytest.mark.parametrize("option", ["A", "B", "C"])
def test_plain_networks_add_nothing_and_residual_ones_add_once_per_block(name: str, option: str) -> None:
    plain = load_spec(name)
    blocks = sum(stage.repeats for stage in plain.stages)  # the table's "x N"
    residual = load_spec(name, shortcut=option)
    make: Callable[[ResNetSpec], ResNet] = lambda spec: materialize(build(spec, device="meta"))  # noqa: E731
    assert _additions(make(plain), plain.in_channels) == 0, f"{name}: the plain network adds"
    assert _additions(make(residual), residual.in_channels) == blocks, f"{name} with option {option}"


def test_the_recorder_sees_additions() -> None:
    """The recorder itself: an addition written with + or += is seen."""
    x = torch.ones(2)
    with _OpRecorder() as recorder:
        y = x + x
        y += x
    assert recorder.counts[aten.add] + recorder.counts[aten.add_] == 2
    assert isinstance(y, Tensor)
