"""Counts: the analytic counts of resnet_spec.counts._analytic against FACTS.md and against three
tools that measure a built model (torch's FlopCounterMode, fvcore, torchinfo), for every table entry.

Expected numbers come from tests/support/facts.py (FACTS.md) or from arithmetic written here; the measuring tools are
independent oracles (they see only the nn.Module).

What runs where, to keep this file fast:
* Every distinct network of support/cases.CASES is measured once (CASES keys on the entry name, so plain20 under
  shortcut A is the same network as resnet20 under A: such repeats are folded into the first, see DISTINCT).
* ImageNet entries are built on the meta device (no values needed) and FlopCounterMode + torchinfo run there; CIFAR
  entries are built on the CPU and measured with real tensors (32x32 maps are cheap, and on meta each batch norm runs
  a Python decomposition).  torchinfo's forward runs inside FlopCounterMode, so one pass serves both.
* fvcore traces real tensors: it runs once per entry at a small odd input size (33 ImageNet, 9 CIFAR), on the CPU
  (an ImageNet model is materialised from meta with zeros: fvcore counts shapes, not values).
* The shallowest entries of each block kind (support/cases.KNOB_CARRIERS: resnet18, resnet50, resnet20), under every
  option, are measured at every size of SIZES; every other entry at the table's size and the non-square odd size
  (plus fvcore's size): other columns repeat the same blocks, and the rounding at odd sizes happens in the stem and
  the stride-2 blocks, which every column shares.
* The 1202-layer entries, the options' cross-product beyond the shallowest entries (support/cases.py), and the
  shallowest entries under options other than their table's, are marked slow (``-m slow`` runs them; CI does).
"""

from __future__ import annotations

import copy
import importlib.util
import math
import sys
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
import torchvision
from cases import CASE_IDS, CASES, KNOB_CARRIERS, Case, at_table_options, representative
from facts import (
    CIFAR_MACS,
    CIFAR_PARAMS_A,
    CIFAR_TABLE6_PARAMS,
    MACS_V1,
    MACS_V15,
    PARAMS_B,
    TABLE1_FLOPS,
)
from torch import nn

from resnet_spec import ResNetSpec, build, load_spec
from resnet_spec.counts import CONVENTIONS, COUNTERS, OPS, count, materialize, measure, operators
from resnet_spec.models import ResidualBlock
from resnet_spec.spec import layout_plan, load_table, tables_dir

# Input sizes per table family: the table's own, even and odd ones (the padding arithmetic rounds), a non-square one.
SIZES: dict[str, tuple[int | tuple[int, int], ...]] = {
    "imagenet": (224, 160, 320, 97, 225, (225, 161)),
    "cifar10": (32, 33, 7, (17, 31)),
}
DEEP = 1000  # convs; entries deeper than this are marked slow
MEASURE_DEVICE = {"imagenet": "meta", "cifar10": "cpu"}  # where the model is built and FlopCounterMode runs
FVCORE_SIZE = {"imagenet": 33, "cifar10": 9}  # fvcore needs real tensors: a small odd size

IMAGENET_DEPTHS = sorted(MACS_V1)
CIFAR_DEPTHS = sorted(CIFAR_PARAMS_A)


def _num_convs(spec: ResNetSpec) -> int:
    return sum(op.kind == "conv" for op in operators(spec))


def _distinct_cases() -> tuple[list[Any], dict[str, list[str]]]:
    """pytest params for each distinct network of CASES, and which case ids each one also stands for.

    A network is marked slow when it is deep, or when none of the cases it stands for runs by default."""
    first: dict[object, Case] = {}
    folded: dict[Case, list[Case]] = {}
    for case in CASES:
        spec = load_spec(case[0], variant=case[1], shortcut=case[2])
        key = (spec.in_channels, *spec.network_key)
        if key in first:
            folded[first[key]].append(case)
            continue
        first[key] = case
        folded[case] = []
    params: list[Any] = []
    for case, repeats in folded.items():
        spec = load_spec(case[0], variant=case[1], shortcut=case[2])
        own = [c for c in (case, *repeats) if at_table_options(load_spec(c[0], variant=c[1], shortcut=c[2]))]
        default = any(representative(c) for c in own)
        marks = [pytest.mark.slow] if _num_convs(spec) > DEEP or not default else []
        params.append(pytest.param(*case, id="-".join(case), marks=marks))
    return params, {"-".join(case): ["-".join(c) for c in repeats] for case, repeats in folded.items()}


DISTINCT, FOLDED = _distinct_cases()


def _sizes(spec: ResNetSpec) -> tuple[int | tuple[int, int], ...]:
    """The input sizes an entry is measured at with FlopCounterMode (see the module docstring)."""
    sizes = SIZES.get(spec.family, (spec.input_size, spec.input_size + 1, (spec.input_size + 1, spec.input_size - 1)))
    # where the network is defined: a floor-rounded average pool on a branch meets a ceil-rounded shortcut only at
    # even sizes (timm's AvgPool2d(2) anti-aliasing); layout_plan refuses the others, as the built model does
    sizes = tuple(s for s in sizes if _defined(spec, s))
    if spec.name in KNOB_CARRIERS:
        return sizes
    others = ((spec.input_size + k, spec.input_size - k) for k in range(2, 9))
    non_square = next(s for s in (*(s for s in sizes if not isinstance(s, int)), *others) if _defined(spec, s))
    return (spec.input_size, non_square)


def _defined(spec: ResNetSpec, size: int | tuple[int, int]) -> bool:
    try:
        layout_plan(spec, size)
    except ValueError:
        return False
    return True


def _hw(size: int | tuple[int, int]) -> tuple[int, int]:
    return (size, size) if isinstance(size, int) else size


# ----------------------------------------------------------------------------------------------------------------
# Every table entry against the measuring tools


def test_every_case_is_measured() -> None:
    """The folding above loses no case: each case id is measured, or is the same network as one that is."""
    covered = [case_id for measured, repeats in FOLDED.items() for case_id in (measured, *repeats)]
    assert sorted(covered) == sorted(CASE_IDS)


@pytest.mark.parametrize(("name", "variant", "shortcut"), DISTINCT)
def test_analytic_counts_equal_the_measured_ones(name: str, variant: str, shortcut: str) -> None:
    """For one entry, every mismatch collected before failing:

    * FlopCounterMode / 2 == analytic conv+fc MACs, per row and in total, at each size of _sizes;
    * analytic params == sum of numel == torchinfo's total, per row; torchinfo mult-adds == the "torchinfo" convention;
    * on the shallowest entries of each block kind (tests/cases.KNOB_CARRIERS), fvcore's conv+linear == analytic MACs
      and fvcore's default total == the "fvcore" convention, per row, at one small odd size; what fvcore could not
      count is returned, and is only ops without multiply-adds.  The other entries' fvcore counts are slow (below).
    """
    spec = load_spec(name, variant=variant, shortcut=shortcut)
    problems = measured_problems(spec, fvcore=name in KNOB_CARRIERS)
    assert not problems, f"{spec.label}:\n  " + "\n  ".join(problems)


FVCORE_ELSEWHERE = [
    pytest.param(*p.values, id=p.id, marks=[pytest.mark.slow]) for p in DISTINCT if p.values[0] not in KNOB_CARRIERS
]


@pytest.mark.parametrize(("name", "variant", "shortcut"), FVCORE_ELSEWHERE)
def test_fvcore_counts_equal_the_analytic_ones(name: str, variant: str, shortcut: str) -> None:
    """fvcore against the analytic counts for the entries the test above measures without it (fvcore traces real
    tensors: seconds for the wide and deep entries)."""
    spec = load_spec(name, variant=variant, shortcut=shortcut)
    problems = measured_problems(spec, flop_counter=False)
    assert not problems, f"{spec.label}:\n  " + "\n  ".join(problems)


def measured_problems(spec: ResNetSpec, fvcore: bool = True, flop_counter: bool = True) -> list[str]:
    """Every disagreement between the analytic counts of ``spec`` and the three measuring tools (see above):
    FlopCounterMode with torchinfo when ``flop_counter``, fvcore when ``fvcore``."""
    problems: list[str] = []

    def check(what: str, expected: object, found: object) -> None:
        if expected != found:
            problems.append(f"{what}: expected {expected}, found {found}")

    device = MEASURE_DEVICE.get(spec.family, "meta")
    model = build(spec, device=device).eval()

    for size in _sizes(spec) if flop_counter else ():
        analytic = count(spec, size)
        with_info = size == spec.input_size
        measured = measure(model, size, counters=("flop_counter", "torchinfo") if with_info else ("flop_counter",))
        fcm = measured.flop_counter
        assert fcm is not None
        check(f"FlopCounterMode total at {size} (2 per MAC)", 2 * analytic.total, fcm.total)
        check(f"FlopCounterMode outside every row at {size}", 0, fcm.other)
        for row in spec.rows:
            check(f"FlopCounterMode row {row} at {size}", 2 * analytic.rows[row].ops, fcm.rows[row])
        if with_info:
            info = measured.torchinfo
            assert info is not None
            check("params: sum of numel", analytic.params, measured.params)
            check("params: torchinfo total", analytic.params, info.total_params)
            for row in spec.rows:
                check(f"params of row {row}", analytic.rows[row].params, measured.row_params[row])
            check("torchinfo total mult-adds", count(spec, ops="torchinfo").total, info.total_mult_adds)
            check("torchinfo mult-adds outside every row", 0, info.other)

    if not fvcore:
        return problems
    if device == "meta":  # fvcore needs real tensors: materialise with zeros (counts depend on shapes only)
        model = materialize(model)
    # the family's small size, or the smallest the entry runs at (Zhang's 4-tap blurs pad 2 after a map by reflection:
    # every map they read needs 3 pixels or more)
    fv_size = max(FVCORE_SIZE.get(spec.family, spec.input_size), spec.min_input_size())
    fv = measure(model, fv_size, counters=("fvcore",)).fvcore
    assert fv is not None
    paper = count(spec, fv_size)
    fvcore_rule = count(spec, fv_size, ops="fvcore")
    check(f"fvcore conv+linear at {fv_size}", paper.total, fv.conv_linear)
    check(f"fvcore default total at {fv_size}", fvcore_rule.total, fv.total)
    for row in spec.rows:
        check(f"fvcore conv+linear, row {row}", paper.rows[row].ops, fv.rows_conv_linear[row])
        check(f"fvcore total, row {row}", fvcore_rule.rows[row].ops, fv.rows[row])
    check("fvcore total outside every row", 0, fv.other)
    # The ops fvcore has no rule for carry no multiply-adds: the residual additions (one per residual block),
    # the stem's max pool, the zero-padding of option A shortcuts.
    # Squeeze-and-excitation adds a mean, a sigmoid and a product; ResNet-D's shortcut an average pool.  Weight
    # standardisation computes each conv's weight, once per forward pass: (w - mean) / sqrt(var + eps).  A
    # selective-kernel unit stacks (and splits), sums and weighs its paths by a softmax.
    residual_blocks = sum(block.shortcut != "none" for block in spec.blocks)
    standardised = sum(layer.weight_standardization is not None for layer in layout_plan(spec).layers)
    add_calls = fv.unsupported_ops.get("aten::add_", 0) + fv.unsupported_ops.get("aten::add", 0)
    check("fvcore unsupported aten::add_/add (one per residual block and standardised conv)",
          residual_blocks + standardised, add_calls)  # fmt: skip
    allowed = {"aten::add_", "aten::add", "aten::max_pool2d", "aten::pad", "aten::avg_pool2d", "aten::mean",
               "aten::sigmoid", "aten::mul"}  # fmt: skip
    if standardised:
        allowed |= {"aten::var_mean", "aten::sub", "aten::sqrt", "aten::div"}
    if any(block.selective_kernel is not None for block in spec.blocks):  # the paths' sums and the softmax
        allowed |= {"aten::sum", "aten::softmax", "aten::stack", "aten::chunk", "aten::split"}
    check("fvcore unsupported ops without multiply-adds", set(), set(fv.unsupported_ops) - allowed)
    return problems


# ----------------------------------------------------------------------------------------------------------------
# FACTS.md figures, exactly

SpecFor = Callable[[str, str], ResNetSpec]  # (name, variant) -> spec


def _shipped(name: str, variant: str) -> ResNetSpec:
    return load_spec(name, variant=variant)


def _imagenet_fact_mismatches(spec_for: SpecFor) -> list[str]:
    """Every difference from FACTS.md's exact ImageNet counts (option B, 224x224, conv+fc MACs)."""
    problems = []
    for depth in IMAGENET_DEPTHS:
        for variant, facts in (("v1", MACS_V1), ("v1.5", MACS_V15)):
            counts = count(spec_for(f"resnet{depth}", variant), 224)
            if counts.total != facts[depth]:
                problems.append(f"resnet{depth} {variant} MACs at 224: expected {facts[depth]:,}, got {counts.total:,}")
            if counts.params != PARAMS_B[depth]:
                problems.append(f"resnet{depth} {variant} params: expected {PARAMS_B[depth]:,}, got {counts.params:,}")
    return problems


def _cifar_fact_mismatches(spec_for: SpecFor) -> list[str]:
    """Every difference from FACTS.md's exact CIFAR-10 counts (option A, 32x32)."""
    problems = []
    for depth in CIFAR_DEPTHS:
        counts = count(spec_for(f"resnet{depth}", "v1"), 32)
        if counts.params != CIFAR_PARAMS_A[depth]:
            problems.append(f"resnet{depth} params: expected {CIFAR_PARAMS_A[depth]:,}, got {counts.params:,}")
        if counts.total != CIFAR_MACS[depth]:
            problems.append(f"resnet{depth} MACs at 32: expected {CIFAR_MACS[depth]:,}, got {counts.total:,}")
    return problems


def test_imagenet_exact_counts_match_facts() -> None:
    """v1 MACs (1,814,073,344 ... 11,282,415,616), v1.5 MACs (= torchvision `_ops`), option B params."""
    problems = _imagenet_fact_mismatches(_shipped)
    assert not problems, "\n".join(problems)


def test_cifar_exact_counts_match_facts() -> None:
    """Option A params (269,722 ... 19,421,274) and conv+fc MACs at 32x32 (40,551,040 ... 2,829,238,912)."""
    problems = _cifar_fact_mismatches(_shipped)
    assert not problems, "\n".join(problems)


# Table 6 prints 0.27M, 0.46M, 0.66M, 0.85M (unit 0.01M) and 1.7M, 19.4M (unit 0.1M).
TABLE6_PRINTED_UNIT = {20: 10_000, 32: 10_000, 44: 10_000, 56: 10_000, 110: 100_000, 1202: 100_000}


@pytest.mark.parametrize("depth", CIFAR_DEPTHS)
def test_cifar_params_round_to_table6(depth: int) -> None:
    unit = TABLE6_PRINTED_UNIT[depth]
    params = count(f"resnet{depth}").params
    rounded = (params + unit // 2) // unit * unit  # round half up to the printed unit
    assert rounded == round(CIFAR_TABLE6_PARAMS[depth]), (
        f"resnet{depth}: {params:,} params round to {rounded / 1e6}M, "
        f"Table 6 prints {CIFAR_TABLE6_PARAMS[depth] / 1e6}M"
    )


# ----------------------------------------------------------------------------------------------------------------
# The paper's FLOPs row

FLOPS_ROW_UNIT = 10**8  # Table 1 prints one decimal of 1e9


def _within_one_printed_unit(exact: int, printed: float) -> bool:
    return abs(exact - round(printed)) < FLOPS_ROW_UNIT


def _flops_row_mismatches(spec_for: SpecFor) -> list[str]:
    problems = []
    for depth in IMAGENET_DEPTHS:
        exact = count(spec_for(f"resnet{depth}", "v1"), 224).total
        if not _within_one_printed_unit(exact, TABLE1_FLOPS[depth]):
            problems.append(
                f"resnet{depth} v1: {exact / 1e9:.3f}e9 multiply-adds is not within 0.1e9 of Table 1's "
                f"{TABLE1_FLOPS[depth] / 1e9}e9"
            )
    return problems


def test_v1_reproduces_the_paper_flops_row() -> None:
    """Table 1's FLOPs row (1.8, 3.6, 3.8, 7.6, 11.3 x 1e9) from the v1 conv+fc multiply-adds at 224x224.

    The rule: the printed figure has one decimal (unit 0.1e9) and our exact count lies strictly within one unit of
    it, |exact - printed| < 0.1e9: the paper's figure is the rounded or the truncated value, and neither rule alone
    explains the row.  Per depth: 18: 1.814 -> 1.8 (rounded and truncated agree); 34: 3.664 -> 3.6 (truncated; it
    rounds to 3.7); 50: 3.858 -> 3.8 (truncated; it rounds to 3.9); 101: 7.570 -> 7.6 (rounded; truncated is 7.5);
    152: 11.282 -> 11.3 (rounded; truncated is 11.2).
    """
    problems = _flops_row_mismatches(_shipped)
    assert not problems, "\n".join(problems)
    for depth in IMAGENET_DEPTHS:  # and each printed figure is exactly the rounded or the truncated value
        exact = count(f"resnet{depth}", 224).total
        candidates = {exact // FLOPS_ROW_UNIT, (exact + FLOPS_ROW_UNIT // 2) // FLOPS_ROW_UNIT}
        assert round(TABLE1_FLOPS[depth] / FLOPS_ROW_UNIT) in candidates, (depth, exact, candidates)


def test_plain34_has_the_flops_of_resnet34() -> None:
    """FACTS: "plain-34 also 3.6e9".  Plain-34 is ResNet-34 without its three option-B projections (1x1 convs
    64->128 at 28x28, 128->256 at 14x14, 256->512 at 7x7); identity shortcuts carry no multiply-adds."""
    projections = 64 * 128 * 28 * 28 + 128 * 256 * 14 * 14 + 256 * 512 * 7 * 7
    plain = count("plain34", 224).total
    assert plain == MACS_V1[34] - projections
    assert _within_one_printed_unit(plain, 3.6e9)


@pytest.mark.parametrize("depth", [d for d in IMAGENET_DEPTHS if MACS_V15[d] != MACS_V1[d]])
def test_v15_does_not_reproduce_the_paper_flops_row(depth: int) -> None:
    """The negative: where v1.5 differs from v1 (the bottleneck nets), it misses Table 1's figure by more than 0.1e9."""
    exact = count(load_spec(f"resnet{depth}", variant="v1.5"), 224).total
    assert exact == MACS_V15[depth]
    assert not _within_one_printed_unit(exact, TABLE1_FLOPS[depth]), (
        f"resnet{depth} v1.5 ({exact / 1e9:.3f}e9) should be more than 0.1e9 from Table 1's "
        f"{TABLE1_FLOPS[depth] / 1e9}e9: with the stride on the 3x3, the 3x3 conv of conv3_1/conv4_1/conv5_1 runs at "
        "the block's input resolution (4x the positions), so v1.5 is not the paper's network"
    )


# ----------------------------------------------------------------------------------------------------------------
# A changed kernel in a table makes the FACTS tests fail


def _table_doc(file: str) -> dict[str, Any]:
    with (tables_dir() / file).open("rb") as f:
        return tomllib.load(f)


def _spec_for(doc: dict[str, Any], file: str) -> SpecFor:
    resolved: dict[str, dict[str, ResNetSpec]] = {}

    def spec_for(name: str, variant: str) -> ResNetSpec:
        if variant not in resolved:
            resolved[variant] = load_table(doc, file, variant=variant)
        return resolved[variant][name]

    return spec_for


def test_a_changed_kernel_in_the_imagenet_table_fails_the_facts_checks() -> None:
    doc = _table_doc("imagenet.toml")
    assert not _imagenet_fact_mismatches(_spec_for(doc, "imagenet.toml"))  # the unmodified copy passes
    mutated = copy.deepcopy(doc)
    assert mutated["resnet50"]["conv4_x"]["block"][0] == "1x1, 256"
    mutated["resnet50"]["conv4_x"]["block"][0] = "3x3, 256"
    mismatches = _imagenet_fact_mismatches(_spec_for(mutated, "imagenet-mutated.toml"))
    assert any("resnet50 v1 MACs" in m for m in mismatches), mismatches
    assert any("resnet50 v1.5 MACs" in m for m in mismatches), mismatches
    assert any("resnet50 v1 params" in m for m in mismatches), mismatches
    assert any("resnet50" in m for m in _flops_row_mismatches(_spec_for(mutated, "imagenet-mutated.toml")))


def test_a_changed_kernel_in_the_cifar_table_fails_the_facts_checks() -> None:
    doc = _table_doc("cifar10.toml")
    assert not _cifar_fact_mismatches(_spec_for(doc, "cifar10.toml"))
    mutated = copy.deepcopy(doc)
    mutated["resnet110"]["conv3_x"]["block"][1] = "5x5, 32"
    mismatches = _cifar_fact_mismatches(_spec_for(mutated, "cifar10-mutated.toml"))
    assert mismatches and all("resnet110" in m for m in mismatches), mismatches


# ----------------------------------------------------------------------------------------------------------------
# The tools' own conventions, from FACTS.md


def test_fvcore_default_total_of_resnet50_v15_at_224() -> None:
    """FACTS: fvcore counts conv, linear, batch norm and adaptive average pool: about 4.11e9 for ResNet-50 v1.5."""
    spec = load_spec("resnet50", variant="v1.5")
    fv = measure(build(spec), 224, counters=("fvcore",)).fvcore
    assert fv is not None
    assert round(fv.total / 1e7) == 411, f"fvcore total {fv.total:,}, FACTS says about 4.11e9"
    assert fv.conv_linear == MACS_V15[50]
    assert fv.total == count(spec, 224, ops="fvcore").total


def test_flop_counter_mode_counts_two_per_multiply_add() -> None:
    """FACTS: FlopCounterMode gives about 8.18e9 for ResNet-50 v1.5 (two per multiply-add); unit="flops" agrees."""
    spec = load_spec("resnet50", variant="v1.5")
    fcm = measure(build(spec, device="meta"), 224, counters=("flop_counter",)).flop_counter
    assert fcm is not None
    assert round(fcm.total / 1e7) == 818
    assert fcm.total == 2 * MACS_V15[50] == count(spec, 224, unit="flops").total


def test_all_ops_convention_lands_on_the_ptflops_figure() -> None:
    """FACTS: ptflops ~4.12 GMac for ResNet-50 v1.5 (BN, activations, pooling included); "all" is near it."""
    total = count(load_spec("resnet50", variant="v1.5"), 224, ops="all").total
    assert round(total / 1e7) == 412, f"{total:,}"


def _hook_counts(model: nn.Module, x: torch.Tensor) -> dict[str, int]:
    """bn, relu, add, pool per our rules, counted from module hooks on a run (an oracle independent of the spec)."""
    found = dict.fromkeys(("bn", "relu", "add", "pool"), 0)

    def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        if isinstance(module, nn.BatchNorm2d):
            found["bn"] += output.numel()
        elif isinstance(module, nn.ReLU):
            found["relu"] += output.numel()
        elif isinstance(module, nn.MaxPool2d):
            k = module.kernel_size
            found["pool"] += (k * k if isinstance(k, int) else math.prod(k)) * output.numel()
        elif isinstance(module, nn.AdaptiveAvgPool2d):
            found["pool"] += inputs[0].numel()  # the window is the whole map: one per input element
        elif isinstance(module, ResidualBlock):
            found["add"] += output.numel()

    handles = [m.register_forward_hook(hook) for m in model.modules()]
    with torch.no_grad():
        model(x)
    for h in handles:
        h.remove()
    return found


@pytest.mark.parametrize(
    ("name", "variant", "shortcut", "size"),
    [
        ("resnet18", "v1", "B", 97),
        ("resnet50", "v1.5", "C", (65, 47)),
        ("resnet20", "v1", "A", 33),
        ("plain34", "v1", "none", 65),
    ],
)
def test_bn_relu_add_pool_rules_match_module_hooks(name: str, variant: str, shortcut: str, size: Any) -> None:
    spec = load_spec(name, variant=variant, shortcut=shortcut)
    h, w = _hw(size)
    found = _hook_counts(build(spec, device="meta").eval(), torch.empty(1, 3, h, w, device="meta"))
    counts = count(spec, size, ops=("bn", "relu", "add", "pool"))
    assert dict(counts.by_op) == found
    assert counts.convention == "custom" and counts.ops == ("bn", "relu", "add", "pool")


def test_torchvision_resnet50_matches_the_v15_counts_per_row() -> None:
    """An implementation we did not write: torchvision's resnet50 is v1.5 (stride on the 3x3)."""
    with torch.device("meta"):
        model = torchvision.models.resnet50()
    measured = measure(model, 225, counters=("flop_counter", "torchinfo"))
    analytic = count(load_spec("resnet50", variant="v1.5"), 225)
    assert measured.flop_counter is not None
    assert measured.rows == tuple(analytic.rows)
    assert {r: v // 2 for r, v in measured.flop_counter.rows.items()} == {r: c.ops for r, c in analytic.rows.items()}
    assert measured.params == analytic.params == PARAMS_B[50]


# ----------------------------------------------------------------------------------------------------------------
# Units, operator selections, overrides


def test_flops_unit_doubles_every_figure() -> None:
    spec = load_spec("resnet34")
    macs, flops = count(spec, 160, ops="all"), count(spec, 160, ops="all", unit="flops")
    assert flops.total == 2 * macs.total
    assert {r: c.ops for r, c in flops.rows.items()} == {r: 2 * c.ops for r, c in macs.rows.items()}
    assert flops.params == macs.params and flops.unit == "flops"


def test_rows_are_the_tables_rows_and_sum_to_the_total() -> None:
    spec = load_spec("resnet101")
    counts = count(spec, ops="all")
    assert tuple(counts.rows) == ("conv1", "conv2_x", "conv3_x", "conv4_x", "conv5_x", "fc")
    assert sum(c.ops for c in counts.rows.values()) == counts.total
    assert sum(c.params for c in counts.rows.values()) == counts.params
    # conv1 is the 7x7 conv + BN + ReLU at 112x112; the stem pool is in conv2_x; the global pool in fc.
    assert counts.rows["conv1"].by_op["conv"] == 7 * 7 * 3 * 64 * 112 * 112
    assert counts.rows["conv1"].by_op["pool"] == 0
    assert counts.rows["conv2_x"].by_op["pool"] == 3 * 3 * 64 * 56 * 56
    assert counts.rows["fc"].by_op["pool"] == 2048 * 7 * 7
    assert counts.rows["fc"].params == 2048 * 1000 + 1000


def test_num_classes_and_in_channels_change_the_counts_by_the_arithmetic() -> None:
    base = count("resnet50", 224)
    other = count("resnet50", 224, num_classes=10, in_channels=1)
    fc_change = (2048 * 10 + 10) - (2048 * 1000 + 1000)
    conv1_change = 7 * 7 * 64 * (1 - 3)
    assert other.params == base.params + fc_change + conv1_change
    assert other.total == base.total + 2048 * (10 - 1000) + conv1_change * 112 * 112
    headless = count("resnet50", 224, num_classes=0)
    assert headless.rows["fc"].params == 0 and headless.total == MACS_V1[50] - 2048 * 1000


@pytest.mark.parametrize(("num_classes", "in_channels"), [(10, 1), (0, 3)])
def test_overrides_match_a_model_built_with_them(num_classes: int, in_channels: int) -> None:
    model = build("resnet18", num_classes=num_classes, in_channels=in_channels, device="meta")
    measured = measure(model, 97, counters=("flop_counter", "torchinfo"))
    analytic = count("resnet18", 97, num_classes=num_classes, in_channels=in_channels)
    assert measured.flop_counter is not None and measured.torchinfo is not None
    assert measured.flop_counter.total == 2 * analytic.total
    assert measured.params == measured.torchinfo.total_params == analytic.params
    assert measured.in_channels == in_channels


def test_square_and_pair_input_sizes_agree() -> None:
    assert count("resnet18", 97) == count("resnet18", (97, 97)) == count("resnet18", [97, 97])
    assert count("resnet18") == count("resnet18", 224)


def test_operators_name_the_builders_modules() -> None:
    """Operator names are the model's module names (the "add" of a block is named by the block)."""
    spec = load_spec("resnet18", shortcut="C")
    model = build(spec, device="meta")
    modules = dict(model.named_modules())
    for op in operators(spec):
        assert op.name in modules, op


# ----------------------------------------------------------------------------------------------------------------
# Errors


@pytest.mark.parametrize(
    ("kwargs", "error", "words"),
    [
        ({"ops": ("conv", "gelu")}, ValueError, ["gelu", "conv", "pool"]),
        ({"ops": "ptflops"}, ValueError, ["ptflops", "fvcore", "torchinfo"]),
        ({"ops": ()}, ValueError, ["at least one"]),
        ({"unit": "gflops"}, ValueError, ["gflops", "macs", "flops"]),
        ({"input_size": 0}, ValueError, ["input_size", "positive"]),
        ({"input_size": (224, -1)}, ValueError, ["width", "positive"]),
        ({"input_size": "224"}, TypeError, ["input_size", "'224'"]),
        ({"input_size": (224,)}, TypeError, ["(height, width)"]),
        ({"input_size": True}, TypeError, ["input_size"]),
        ({"input_size": 2.5}, TypeError, ["input_size"]),
        ({"num_classes": -1}, ValueError, ["num_classes"]),
        ({"in_channels": 0}, ValueError, ["in_channels"]),
    ],
)
def test_bad_arguments_raise_clear_errors(kwargs: dict[str, Any], error: type[Exception], words: list[str]) -> None:
    with pytest.raises(error) as info:
        count("resnet18", **kwargs)
    for word in words:
        assert word in str(info.value), (word, str(info.value))


def _unpadded_stem_table() -> dict[str, Any]:
    """A table whose stem conv and pool have no padding, so that small inputs do not fit."""
    return {
        "table": {
            "family": "toy",
            "source": "test",
            "input_size": 64,
            "in_channels": 3,
            "variant": "v1",
            "shortcut": "B",
        },
        "stem": {
            "conv1": {"conv": "7x7, 8", "stride": 2, "padding": 0},
            "pool": {"kind": "max", "kernel": 3, "stride": 2, "padding": 0},
        },
        "head": {"pool": "avg", "fc": 10},
        "toy": {"source": "test", "conv2_x": {"block": ["3x3, 8", "3x3, 8"], "repeats": 1, "stride": 1}},
    }


@pytest.mark.parametrize(("size", "row", "layer"), [(5, "conv1", "conv1"), (8, "conv2_x", "maxpool")])
def test_an_input_too_small_names_the_row(size: int, row: str, layer: str) -> None:
    spec = load_table(_unpadded_stem_table())["toy"]
    with pytest.raises(ValueError, match=rf"input {size}x{size} is too small: row {row} \({layer}") as info:
        count(spec, size)
    assert "0x0" in str(info.value) and "at least 1x1" in str(info.value)
    # conv1 gives (n-7)//2+1 for n >= 7; the pool needs that to be >= 3, so n >= 11 is the smallest that fits
    with pytest.raises(ValueError, match="row conv2_x"):
        count(spec, 10)
    assert count(spec, 11).rows["conv2_x"].ops == 8 * 8 * 9 * 2 * 1 * 1  # two 3x3 convs, 8 -> 8, on a 1x1 map


def test_measure_rejects_what_it_cannot_do() -> None:
    meta_model = build("resnet18", device="meta")
    with pytest.raises(ValueError, match="fvcore needs real tensors"):
        measure(meta_model, 224, counters=("fvcore",))
    with pytest.raises(ValueError, match="unknown counter"):
        measure(meta_model, 224, counters=("ptflops",))
    with pytest.raises(ValueError, match="batch"):
        measure(meta_model, 224, batch=0)
    with pytest.raises(TypeError, match=r"nn\.Module"):
        measure("resnet18", 224)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="layer1"):
        measure(nn.Linear(4, 4), 4, in_channels=4)
    toy = build(load_table(_unpadded_stem_table())["toy"])
    with pytest.raises(ValueError, match=r"flop_counter could not run the model on an input of shape \(1, 3, 5, 5\)"):
        measure(toy, 5, counters=("flop_counter",))


def test_measure_defaults_skip_fvcore_on_meta_with_a_reason_and_scale_with_batch() -> None:
    model = build("resnet18", device="meta")
    one, two = measure(model, 97), measure(model, 97, batch=2)
    assert one.fvcore is None and "meta" in one.skipped["fvcore"]
    assert one.flop_counter is not None and two.flop_counter is not None and two.torchinfo is not None
    assert two.flop_counter.total == 2 * one.flop_counter.total
    assert set(COUNTERS) == {"fvcore", "flop_counter", "torchinfo"}
    assert model.training  # measure restores the train/eval mode


def test_conventions_are_documented_and_complete() -> None:
    assert set(CONVENTIONS) == {"paper", "all", "fvcore", "torchinfo"}
    for convention in CONVENTIONS.values():
        assert convention.summary and set(convention.ops) <= set(OPS)
    assert CONVENTIONS["paper"].ops == ("conv", "fc") and CONVENTIONS["all"].ops == OPS
    assert count("resnet18").convention == "paper" and count("resnet18").ops == ("conv", "fc")


# ----------------------------------------------------------------------------------------------------------------
# tools/conventions.py


def _conventions_cli() -> Any:
    path = Path(__file__).resolve().parent.parent / "tools" / "conventions.py"
    module_spec = importlib.util.spec_from_file_location("conventions_cli", path)
    assert module_spec is not None and module_spec.loader is not None
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[module_spec.name] = module  # dataclasses look their module up there
    module_spec.loader.exec_module(module)
    return module


def test_conventions_tool_prints_every_convention(capsys: pytest.CaptureFixture[str]) -> None:
    cli = _conventions_cli()
    assert cli.main(["--depth", "18", "--variant", "v1", "--format", "markdown"]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("| ResNet-18 v1 |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    macs = MACS_V1[18]
    bn_and_pool = 2 * count("resnet18", ops="bn").total + 512 * 7 * 7  # fvcore: BN 2 per element, avg pool input
    assert cells[1] == f"{TABLE1_FLOPS[18] / 1e9:.1f}"
    assert cells[2] == f"{macs / 1e9:.3f}" and cells[5] == f"{2 * macs / 1e9:.3f}" == cells[7]
    assert cells[3] == f"{(macs + bn_and_pool) / 1e9:.3f}" == cells[6]
    assert cells[9] == "yes"
    assert cli.main(["--depth", "19", "--no-measure"]) == 2
    assert "unknown depth" in capsys.readouterr().err


def test_the_gate_class_counts_each_element_a_gate_scales() -> None:
    """A selective-kernel unit weighs each of its paths (support/sk_table.toml's sk_toy: two paths of 16x32x32 in
    conv2_1, of 32x16x16 in conv3_1 at stride 2); squeeze-and-excitation scales each block's output (seresnet50's
    conv2_x: three blocks of 256x56x56)."""
    from pathlib import Path

    from resnet_spec import count, load_spec

    toy = load_spec(f"{Path(__file__).parent / 'support' / 'sk_table.toml'}:sk_toy")
    assert count(toy, ops=("gate",)).total == 2 * 16 * 32 * 32 + 2 * 32 * 16 * 16
    assert count("seresnet50", ops=("gate",)).rows["conv2_x"].ops == 3 * 256 * 56 * 56
