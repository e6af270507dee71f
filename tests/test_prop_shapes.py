"""Every row's output shape at any input size, for every network of the registry.

The prediction is the test's own: the spec's stem conv, pool and every block conv pushed through
``floor((n + 2p - k) / s) + 1`` (written below, not ``spec.row_output_sizes``), channels from the table's bracket.
Drawn inputs are small (odd, non-square, down to 1x1, batch 1-2) and run on the CPU with real tensors: at such
sizes that is several times faster than the meta device, whose batch norm is a Python decomposition.  The values
are irrelevant, so each model is built on meta and materialised on the CPU with zeros (``to_empty``) instead of
being initialised.  The paper's own sizes (224 -> 112 -> 56 ...) are pinned on meta in test_the_papers_output_column.

Each case's model is built once for all its examples, and deep networks get fewer drawn inputs (``_max_examples``):
every input size exercises the same blocks, and a forward of ResNet-1202 costs what sixty of ResNet-20 do.
"""

from __future__ import annotations

import functools
import re

import pytest
import torch
from cases import CASES, case_marks
from facts import CIFAR_OUTPUT, TABLE1_OUTPUT
from hypothesis import example, given, settings
from hypothesis import strategies as st
from strategies import InputDims, case_spec, input_dims

from resnet_spec import ResNet, ResNetSpec, build, list_specs, load_spec
from resnet_spec.counts import count, materialize
from resnet_spec.spec import Pool

Case = tuple[str, str, str]


# A network with this many weighted layers or fewer gets the profile's full number of examples; deeper ones fewer.
FULL_EXAMPLES_DEPTH = 10
MIN_EXAMPLES = 1


def _spec(case: Case) -> ResNetSpec:
    return case_spec(case)


def _distinct_networks() -> list[Case]:
    """CASES without the entries that resolve to the same network as an earlier one (plain20 with option A is
    resnet20 with option A: the tables give both names, the shapes cannot differ)."""
    seen: set[object] = set()
    distinct = []
    for case in CASES:
        spec = _spec(case)
        key = (*spec.network_key, spec.in_channels)
        if key not in seen:
            seen.add(key)
            distinct.append(case)
    return distinct


NETWORKS = _distinct_networks()


def _max_examples(spec: ResNetSpec) -> int:
    """The profile's examples for shallow nets, scaled down with depth for deep ones (at least MIN_EXAMPLES)."""
    full = settings().max_examples
    return max(MIN_EXAMPLES, min(full, round(full * FULL_EXAMPLES_DEPTH / spec.depth)))


@functools.lru_cache(maxsize=1)
def _cpu_model(case: Case) -> ResNet:
    """The case's network in eval mode on the CPU, built once for all of its examples."""
    return materialize(build(_spec(case), device="meta").eval())


def _out(n: int, kernel: int, stride: int, padding: int) -> int:
    """The padding formula, written here: floor((n + 2p - k) / s) + 1."""
    return (n + 2 * padding - kernel) // stride + 1


def _pooled(h: int, w: int, pool: Pool) -> tuple[int, int] | None:
    """A pool's output by the formula above; None where it leaves no map, or where a blur's reflected padding needs
    more than the map (it mirrors ``padding`` pixels beside the edge one)."""
    if pool.kind == "blur" and min(h, w) <= pool.padding:
        return None
    out = _out(h, pool.kernel, pool.stride, pool.padding), _out(w, pool.kernel, pool.stride, pool.padding)
    return out if min(out) >= 1 else None  # an unpadded window larger than the map: nothing left


def predicted_shapes(
    spec: ResNetSpec, batch: int, height: int, width: int, num_classes: int
) -> dict[str, tuple[int, ...]] | None:
    """Each row's output shape, from the spec's convs and pools and the formula above; None where the network is not
    defined: an anti-aliasing blur on a map too small to reflect, or a branch whose anti-aliasing pool rounds down
    where its shortcut, subsampling by the block's stride, keeps ceil(n / s)."""
    h, w = height, width
    for conv in spec.stem.convs:  # one conv, or a deep stem's several
        h, w = _out(h, conv.kernel, conv.stride, conv.padding), _out(w, conv.kernel, conv.stride, conv.padding)
    shapes: dict[str, tuple[int, ...]] = {"conv1": (batch, spec.stem.out_channels, h, w)}
    pool = spec.stem.pool
    for pool in (spec.stem.pool, spec.stem.anti_alias):
        if pool is not None:
            assert not pool.ceil_mode, "the formula above rounds down"
            pooled = _pooled(h, w, pool)
            if pooled is None:
                return None
            h, w = pooled
    for stage in spec.stages:
        for block in stage.blocks:
            shortcut = (-(-h // block.stride), -(-w // block.stride))  # 1x1 conv, 2x2 ceil pool, or every s-th
            for i, conv in enumerate(block.convs):
                h, w = _out(h, conv.kernel, conv.stride, conv.padding), _out(w, conv.kernel, conv.stride, conv.padding)
                if i == block.anti_alias_at and block.anti_alias is not None:
                    pooled = _pooled(h, w, block.anti_alias)
                    if pooled is None:
                        return None
                    h, w = pooled
            if block.shortcut != "none" and (h, w) != shortcut:
                return None
        shapes[stage.name] = (batch, stage.layers[-1][1], h, w)  # channels: the last conv of the table's bracket
    shapes["fc"] = (batch, num_classes)
    return shapes


def _rows(model: ResNet, x: torch.Tensor) -> dict[str, tuple[int, ...]]:
    with torch.inference_mode():
        return {row: tuple(t.shape) for row, t in model.forward_rows(x).items()}


@pytest.mark.parametrize("case", [pytest.param(c, id="-".join(c), marks=case_marks(c)) for c in NETWORKS])
def test_row_shapes_at_any_input_size(case: Case) -> None:
    spec = _spec(case)
    model = _cpu_model(case)

    @settings(max_examples=_max_examples(spec))
    @given(dims=input_dims())
    @example(dims=InputDims(1, 1, 1))  # the smallest image
    @example(dims=InputDims(2, 7, 12))  # odd and non-square
    def check(dims: InputDims) -> None:
        x = torch.zeros(dims.batch, spec.in_channels, dims.height, dims.width)
        expected = predicted_shapes(spec, dims.batch, dims.height, dims.width, spec.head.num_classes)
        if expected is None:  # not defined there: refused with a clear error
            with pytest.raises(ValueError, match=f"{spec.name}: .*(too small|expected equal shapes)"):
                _rows(model, x)
        else:
            assert _rows(model, x) == expected, f"{spec.label} at {tuple(x.shape)}"
        _check_wrong_channels_refused(model, spec.name, spec.in_channels, dims)

    check()


@pytest.mark.parametrize(
    ("name", "variant", "column"),
    [("resnet50", "v1", TABLE1_OUTPUT), ("resnet50", "v1.5", TABLE1_OUTPUT), ("resnet20", "v1", CIFAR_OUTPUT)],
)
def test_the_papers_output_column(name: str, variant: str, column: dict[str, int]) -> None:
    """The prediction at the table's input size is the paper's output column (224 -> 112 -> 56 -> 28 -> 14 -> 7;
    CIFAR 32 -> 32 -> 16 -> 8), and the model on meta has it.  (test_model.py checks every case at that size.)"""
    spec = load_spec(name, variant=variant)
    size = spec.input_size
    expected = predicted_shapes(spec, 1, size, size, spec.head.num_classes)
    assert {row: expected[row][-2:] for row in column} == {row: (n, n) for row, n in column.items()}
    model = build(spec, device="meta").eval()
    assert _rows(model, torch.empty(1, 3, size, size, device="meta")) == expected


def _one_per_stem_and_head() -> list[str]:
    """The smallest registry entry (fewest parameters) of each kind of stem (its convs' windows, its pool), head,
    normalisation, block kinds and shortcut option: in_channels and num_classes change only conv1 and the fc, so
    deeper or wider entries of the same kinds add a build of seconds (BiT-R152x4: 936M parameters) and nothing else."""
    chosen: dict[object, tuple[int, ResNetSpec]] = {}
    for name in list_specs():
        spec = load_spec(name)
        windows = tuple((conv.kernel, conv.stride, conv.padding, conv.groups > 1) for conv in spec.stem.convs)
        key = (windows, spec.stem.pool, spec.head.pool, spec.head.final_bn, spec.in_channels, spec.shortcut,
               spec.order, spec.group_norm is not None, spec.weight_standardization is not None,
               tuple(len(s.layers) for s in spec.stages))  # fmt: skip
        params = count(spec).params
        if key not in chosen or params < chosen[key][0]:
            chosen[key] = (params, spec)
    return [spec.name for _, spec in chosen.values()]


@pytest.mark.parametrize("name", _one_per_stem_and_head())
def test_in_channels_and_num_classes_at_any_input_size(name: str) -> None:
    """build(in_channels=, num_classes=) changes the stem's input and the fc's output, nothing else."""
    spec = load_spec(name)

    @settings(max_examples=max(MIN_EXAMPLES, settings().max_examples // 5))  # a build per example
    @given(in_channels=st.integers(1, 5), num_classes=st.integers(1, 20), dims=input_dims(max_size=17))
    @example(in_channels=1, num_classes=1, dims=InputDims(1, 5, 3))  # grey-scale input, one logit
    def check(in_channels: int, num_classes: int, dims: InputDims) -> None:
        model = materialize(build(spec, num_classes=num_classes, in_channels=in_channels, device="meta").eval())
        x = torch.zeros(dims.batch, in_channels, dims.height, dims.width)
        expected = predicted_shapes(spec, dims.batch, dims.height, dims.width, num_classes)
        if expected is None:  # not defined there (see predicted_shapes): refused with a clear error
            with pytest.raises(ValueError, match=f"{name}: .*(too small|expected equal shapes)"):
                _rows(model, x)
        else:
            assert _rows(model, x) == expected
        stem_conv = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))  # a deep stem's first, too
        assert stem_conv.in_channels == in_channels and model.fc.out_features == num_classes
        _check_wrong_channels_refused(model, name, in_channels, dims)

    check()


def _check_wrong_channels_refused(model: ResNet, name: str, in_channels: int, dims: InputDims) -> None:
    """An input with another channel count, or without a batch dimension, raises ValueError saying what was expected."""
    device = next(model.parameters()).device
    for channels in {1, in_channels + 1, max(1, in_channels - 1), 2 * in_channels} - {in_channels}:
        shape = (dims.batch, channels, dims.height, dims.width)
        message = re.escape(f"{name}: expected input of shape (N, {in_channels}, H, W), got {shape}")
        for method in (model.forward, model.forward_rows):
            with pytest.raises(ValueError, match=message):
                method(torch.empty(*shape, device=device))
    unbatched = (in_channels, dims.height, dims.width)
    with pytest.raises(
        ValueError, match=re.escape(f"expected input of shape (N, {in_channels}, H, W), got {unbatched}")
    ):
        model(torch.empty(*unbatched, device=device))


@pytest.mark.parametrize(("name", "height", "width"), [("resnet50", 0, 7), ("resnet20", 5, 0)])
def test_an_input_too_small_for_the_stem_raises_a_clear_error(name: str, height: int, width: int) -> None:
    spec = load_spec(name)
    conv1 = spec.stem.convs[0]
    sizes = [_out(n, conv1.kernel, conv1.stride, conv1.padding) for n in (height, width)]
    assert min(sizes) < 1, f"{height}x{width} is not too small for {name}'s conv1: {sizes}"
    model = build(spec, device="meta").eval()
    with pytest.raises(ValueError, match=rf"{name}: .*too small.*conv1"):
        model.forward_rows(torch.empty(1, spec.in_channels, height, width, device="meta"))
