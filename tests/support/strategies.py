"""Hypothesis strategies for the property tests: conv/pool arguments, input sizes, and whole table documents.

Everything here is built valid by construction (``st.composite`` where a draw depends on an earlier one), so no
test filters its inputs away.  The size arithmetic the strategies need (to declare a generated table's ``output``
column, or to find the smallest input a stem accepts) is written out here, independently of ``resnet_spec``:

    out = floor((n + 2p - d(k-1) - 1) / s) + 1            (PyTorch's Conv2d / MaxPool2d documentation)

A generated document has the shape of ``spec_tables/*.toml`` parsed by ``tomllib``: ``[table]``, ``[stem]``,
``[head]`` and an architecture ``[net]`` (optionally a second, ``[net2]``, that takes ``net`` as its ``base``).
"""

from __future__ import annotations

import copy
import functools
import math
import re
import tomllib
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st

from resnet_spec.spec import ResNetSpec, knob_options, load_spec, load_table, variants
from resnet_spec.spec._types import BLOCK_ORDERS

# ------------------------------------------------------------------------------------------------------------
# Arithmetic of the tests (not resnet_spec's)


def out_size(n: int, kernel: int, stride: int = 1, padding: int = 0, dilation: int = 1) -> int:
    """floor((n + 2p - d(k-1) - 1) / s) + 1, or 0 where the window does not fit."""
    span = n + 2 * padding - dilation * (kernel - 1) - 1
    return span // stride + 1 if span >= 0 else 0


_CELL = re.compile(r"^(\d+)x(\d+), (\d+)(?:, C=(\d+))?$")


def parse_cell(cell: str) -> tuple[int, int]:
    """'3x3, 64' -> (3, 64), for the cells this module writes."""
    match = _CELL.match(cell)
    if match is None:
        raise ValueError(f"not a cell written by tests/support/strategies.py: {cell!r}")
    return int(match.group(1)), int(match.group(3))


def cell_groups(cell: str) -> int:
    """'3x3, 128, C=32' -> 32 (ResNeXt's cardinality); 1 for a plain cell."""
    match = _CELL.match(cell)
    if match is None:
        raise ValueError(f"not a cell written by tests/support/strategies.py: {cell!r}")
    return int(match.group(4) or 1)


def cell(kernel: int, channels: int, groups: int = 1) -> str:
    """(3, 64) -> '3x3, 64', the paper's notation; with groups, '3x3, 128, C=32'."""
    return f"{kernel}x{kernel}, {channels}" + (f", C={groups}" if groups > 1 else "")


def stem_convs(stem: dict[str, Any]) -> list[dict[str, Any]]:
    """The stem's conv tables: ``conv1`` is one, or a deep stem's list."""
    conv1 = stem["conv1"]
    return list(conv1) if isinstance(conv1, list) else [conv1]


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


# ------------------------------------------------------------------------------------------------------------
# Registry cases


@functools.cache
def _resolved_table(table_file: str, variant: str, shortcut: str) -> dict[str, ResNetSpec]:
    """A whole table file under one variant and shortcut option.  load_spec(name, variant=, shortcut=) resolves
    the whole file for each name; resolving each file once per option keeps collection over CASES fast."""
    with open(table_file, "rb") as f:
        return load_table(tomllib.load(f), table_file, variant=variant, shortcut=shortcut)


def case_spec(case: tuple[str, str, str]) -> ResNetSpec:
    """The spec of a (name, variant, shortcut) case of tests/support/cases.py: load_spec(name, variant=, shortcut=)."""
    name, variant, shortcut = case
    return _resolved_table(load_spec(name).table_file, variant, shortcut)[name]


# ------------------------------------------------------------------------------------------------------------
# Conv and pool arguments


@dataclass(frozen=True)
class ConvArgs:
    """One conv along two dimensions: input (h, w) and the window."""

    height: int
    width: int
    kernel: int
    stride: int
    padding: int
    dilation: int


@dataclass(frozen=True)
class PoolArgs:
    """One pooling window; ``padding <= kernel // 2`` as torch requires."""

    height: int
    width: int
    kernel: int
    stride: int
    padding: int
    dilation: int
    ceil_mode: bool


@st.composite
def conv_args(draw: st.DrawFn, max_size: int = 40) -> ConvArgs:
    """Any conv, including windows larger than the padded input (torch must refuse those)."""
    return ConvArgs(
        height=draw(st.integers(1, max_size)),
        width=draw(st.integers(1, max_size)),
        kernel=draw(st.integers(1, 7)),
        stride=draw(st.integers(1, 4)),
        padding=draw(st.integers(0, 4)),
        dilation=draw(st.integers(1, 3)),
    )


@st.composite
def pool_args(draw: st.DrawFn, max_size: int = 40, dilation: bool = True) -> PoolArgs:
    """A pooling window torch accepts as arguments: padding at most half the kernel (the input may be too small)."""
    kernel = draw(st.integers(1, 7))
    return PoolArgs(
        height=draw(st.integers(1, max_size)),
        width=draw(st.integers(1, max_size)),
        kernel=kernel,
        stride=draw(st.integers(1, 4)),
        padding=draw(st.integers(0, kernel // 2)),
        dilation=draw(st.integers(1, 3)) if dilation else 1,
        ceil_mode=draw(st.booleans()),
    )


# ------------------------------------------------------------------------------------------------------------
# Inputs of a network


@dataclass(frozen=True)
class InputDims:
    """The input tensor's (batch, height, width)."""

    batch: int
    height: int
    width: int


@st.composite
def input_dims(draw: st.DrawFn, max_size: int = 29, max_batch: int = 2) -> InputDims:
    """Small inputs, odd and non-square included, down to 1x1."""
    return InputDims(
        batch=draw(st.integers(1, max_batch)),
        height=draw(st.integers(1, max_size)),
        width=draw(st.integers(1, max_size)),
    )


# ------------------------------------------------------------------------------------------------------------
# Valid table documents


# The options come from the tables' variants.toml, so a new one is drawn without a change here.
SHORTCUTS = knob_options()["shortcut"]
VARIANTS = knob_options()["variant"]


def stride_index(kernels: list[int], variant: str) -> int:
    """Which conv of a block carries its stride: variants.toml's rule for the variant, "first" (the first conv) or
    "first_spatial" (the first larger than 1x1)."""
    if variants().strides[variant].stride_on == "first":
        return 0
    return next(i for i, k in enumerate(kernels) if k > 1)


@st.composite
def table_documents(
    draw: st.DrawFn, max_width: int = 32, max_input: int = 40, vocabulary: bool = True
) -> dict[str, Any]:
    """A valid table document: 1-4 stages, basic or bottleneck blocks, any stride placement and shortcut option.

    With ``vocabulary`` also the family's words: a deep stem (2-3 convs), pre-activation blocks, grouped 3x3s in
    bottlenecks, squeeze-and-excitation (average-pool projections come with the shortcut options).  Widths stay
    <= ``max_width`` (a bottleneck's outer width may round up past it for option A) and inputs small, so a model of
    it builds and runs on the CPU in milliseconds.  Every ``output`` declared is computed here.
    """
    shortcut = draw(st.sampled_from(SHORTCUTS))
    variant = draw(st.sampled_from(VARIANTS))
    in_channels = draw(st.integers(1, 4))
    # A plain net has no pre-activation form (the loader refuses it: it is the post-activation net).
    order = draw(st.sampled_from(BLOCK_ORDERS)) if vocabulary and shortcut != "none" else "post"

    stem_kernel = draw(st.sampled_from((3, 5, 7)))
    stem_stride = draw(st.sampled_from((1, 2)))
    stem_padding = draw(st.integers(0, stem_kernel // 2))
    stem_width = draw(st.integers(2, 16))
    # A deep stem (ResNet-C): more "same" 3x3 convs after the first; the last sets the stem's width.
    deep = []
    if vocabulary and draw(st.booleans()):
        deep = [draw(st.integers(2, 16)) for _ in range(draw(st.integers(1, 2)))]
    pool: dict[str, Any] | None = None
    if draw(st.booleans()):
        pool_kernel = draw(st.integers(1, 3))
        pool = {
            "kind": draw(st.sampled_from(("max", "avg"))),
            "kernel": pool_kernel,
            "stride": draw(st.sampled_from((1, 2))),
            "padding": draw(st.integers(0, pool_kernel // 2)),
        }

    stages: list[dict[str, Any]] = []
    channels = deep[-1] if deep else stem_width
    for _ in range(draw(st.integers(1, 4))):
        # Option A zero-pads the shortcut: a block can add channels but never drop them.
        least = channels if shortcut == "A" else 1
        if draw(st.sampled_from(("basic", "bottleneck"))) == "basic":
            width = draw(st.integers(max(least, 2), max(least, 2, max_width)))
            block = [cell(3, width), cell(3, width)]
            channels = width
        else:
            expansion = draw(st.integers(1, 4))
            lowest = max(1, math.ceil(least / expansion))
            width = draw(st.integers(lowest, max(lowest, max_width // expansion)))
            groups = draw(st.sampled_from(_divisors(width))) if vocabulary else 1
            block = [cell(1, width), cell(3, width, groups), cell(1, width * expansion)]
            channels = width * expansion
        stages.append({"block": block, "repeats": draw(st.integers(1, 3)), "stride": draw(st.sampled_from((1, 2)))})

    # The smallest input whose stem (conv, then pool) still has an output; every later conv is "same"-padded.
    def stem_out(n: int) -> int:
        size = out_size(n, stem_kernel, stem_stride, stem_padding)  # the deep stem's 3x3s keep the size
        if pool is not None and size >= 1:
            size = out_size(size, pool["kernel"], pool["stride"], pool["padding"])
        return size

    smallest = next(n for n in range(1, 64) if stem_out(n) >= 1)
    input_size = draw(st.integers(smallest, max(smallest, max_input)))

    conv1: dict[str, Any] = {"conv": cell(stem_kernel, stem_width), "stride": stem_stride, "padding": stem_padding}
    size = out_size(input_size, stem_kernel, stem_stride, stem_padding)
    if draw(st.booleans()):
        conv1["output"] = size
    if pool is not None:
        size = out_size(size, pool["kernel"], pool["stride"], pool["padding"])
    for stage in stages:
        kernels = [parse_cell(c)[0] for c in stage["block"]]
        carrier = stride_index(kernels, variant)
        k = kernels[carrier]
        size = out_size(size, k, stage["stride"], (k - 1) // 2)  # the other convs keep the size
        if draw(st.booleans()):
            stage["output"] = size

    stem: dict[str, Any] = {"conv1": conv1}
    if deep:
        conv1.pop("output", None)
        more = [{"conv": cell(3, width), "stride": 1, "padding": 1} for width in deep]
        if draw(st.booleans()):
            more[-1]["output"] = out_size(input_size, stem_kernel, stem_stride, stem_padding)
        stem["conv1"] = [conv1, *more]
    if pool is not None:
        stem["pool"] = pool
    head: dict[str, Any] = {"pool": draw(st.sampled_from(("avg", "max"))), "fc": draw(st.integers(1, 10))}
    if draw(st.booleans()):
        head["output"] = 1

    net: dict[str, Any] = {"source": "generated by tests/support/strategies.py"}
    if order != "post":
        net["order"] = order
    if vocabulary and draw(st.booleans()):  # SE's reduction must divide every block's output channels
        outputs = math.gcd(*(parse_cell(stage["block"][-1])[1] for stage in stages))
        net["se_reduction"] = draw(st.sampled_from(_divisors(outputs)))
    doc: dict[str, Any] = {
        "table": {
            "family": "generated",
            "source": "tests/support/strategies.py",
            "input_size": input_size,
            "in_channels": in_channels,
            "variant": variant,
            "shortcut": shortcut,
        }
    }
    if draw(st.booleans()):  # the shared rows at the top ...
        doc["stem"], doc["head"] = stem, head
    else:  # ... or the architecture's own
        net["stem"], net["head"] = stem, head
    for index, stage in enumerate(stages):
        net[f"conv{index + 2}_x"] = stage
    doc["net"] = net
    if draw(st.booleans()):  # a second column that inherits net's rows and names another shortcut option
        others = [s for s in SHORTCUTS if s != shortcut and (s != "A" or channels_never_drop(doc))]
        others = [s for s in others if s != "none" or order == "post"]  # a plain net is post-activation
        doc["net2"] = {
            "source": "generated: net, another shortcut",
            "base": "net",
            "shortcut": draw(st.sampled_from(others)),
        }
    return doc


# ------------------------------------------------------------------------------------------------------------
# Reading a generated document (for the tests' own predictions)


def arch_rows(doc: dict[str, Any], arch: str = "net") -> tuple[dict[str, Any], dict[str, Any], list[dict[str, Any]]]:
    """(stem, head, stage rows) of an architecture of a generated document, its base resolved."""
    section = doc[arch]
    if "base" in section:
        section = {**doc[section["base"]], **section}
    stem = section.get("stem", doc.get("stem"))
    head = section.get("head", doc.get("head"))
    stages = [section[f"conv{i}_x"] for i in range(2, 2 + sum(k.startswith("conv") for k in section))]
    assert stem is not None and head is not None  # generated documents always have them
    return stem, head, stages


def channels_never_drop(doc: dict[str, Any], arch: str = "net") -> bool:
    """Whether every block's output has at least its input's channels (what option A needs)."""
    stem, _, stages = arch_rows(doc, arch)
    channels = parse_cell(stem_convs(stem)[-1]["conv"])[1]
    for stage in stages:
        out = parse_cell(stage["block"][-1])[1]
        if out < channels:
            return False
        channels = out
    return True


# ------------------------------------------------------------------------------------------------------------
# Invalid documents: one valid document broken in one place


@dataclass(frozen=True)
class Mutation:
    """A broken document and the key path the loader's SpecError must name."""

    doc: dict[str, Any]
    key_path: str
    what: str  # e.g. "drop", "wrong type", for the failure report


_DROP = object()
KeyPath = tuple[str | int, ...]  # ("net", "conv2_x", "block", 1) is net.conv2_x.block[1]


def _path_text(path: KeyPath) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text


def _apply(doc: dict[str, Any], path: KeyPath, value: object) -> dict[str, Any]:
    broken = copy.deepcopy(doc)
    node: Any = broken
    for part in path[:-1]:
        node = node[part]
    if value is _DROP:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return broken


def _candidates(doc: dict[str, Any]) -> list[tuple[str, KeyPath, object]]:
    """(what, path, new value) for every single-place break of ``doc`` whose error must name ``path``."""
    net = doc["net"]
    stem_at: KeyPath = ("net", "stem") if "stem" in net else ("stem",)
    head_at: KeyPath = ("net", "head") if "head" in net else ("head",)
    stem = net["stem"] if "stem" in net else doc["stem"]
    head = net["head"] if "head" in net else doc["head"]
    stage_names = [k for k in net if k.startswith("conv")]

    positive: list[KeyPath] = [("table", k) for k in ("input_size", "in_channels")]
    positive += [(*stem_at, "conv1", "stride")]
    positive += [(*stem_at, "pool", k) for k in ("kernel", "stride") if "pool" in stem]
    positive += [(*head_at, "fc")]
    positive += [("net", s, k) for s in stage_names for k in ("repeats", "stride")]
    declared: list[KeyPath] = [(*stem_at, "conv1", "output")] if "output" in stem["conv1"] else []
    declared += [("net", s, "output") for s in stage_names if "output" in net[s]]
    non_negative: list[KeyPath] = [(*stem_at, "conv1", "padding")] + (
        [(*stem_at, "pool", "padding")] if "pool" in stem else []
    )
    strings: list[KeyPath] = [("table", "family"), ("net", "source")]
    choices: dict[KeyPath, str] = {
        ("table", "variant"): "v2",
        ("table", "shortcut"): "E",
        (*head_at, "pool"): "sum",
        **({(*stem_at, "pool", "kind"): "median"} if "pool" in stem else {}),
        **({("net2", "shortcut"): "E"} if "net2" in doc else {}),
    }
    cells: list[KeyPath] = [(*stem_at, "conv1", "conv")] + [
        ("net", s, "block", i) for s in stage_names for i in range(len(net[s]["block"]))
    ]
    tables: list[KeyPath] = [("table",), stem_at, head_at, (*stem_at, "conv1")] + [("net", s) for s in stage_names]
    tables += [(*stem_at, "pool")] if "pool" in stem else []
    # Keys whose absence is an error.  Not net.stem or net.head: without them the shared [stem]/[head] is looked
    # up, and its absence is named as such.  Not table.source: the loader does not read it (see the report of
    # test_prop_specs.test_table_source_is_validated).
    required: list[KeyPath] = [p for p in positive + non_negative + strings + list(choices) if p[0] != "net2"]
    required += [("table",), (*stem_at, "conv1"), (*stem_at, "conv1", "conv")]
    required += [p for p in (stem_at, head_at) if len(p) == 1]
    required += [("net", s, "block") for s in stage_names]

    out: list[tuple[str, KeyPath, object]] = []
    out += [("drop", p, _DROP) for p in required]
    for p in positive:
        out += [("zero", p, 0), ("negative", p, -2), ("string", p, "2"), ("float", p, 2.0), ("bool", p, True)]
    for p in non_negative:
        out += [("negative", p, -1), ("string", p, "1"), ("float", p, 1.0)]
    for p in declared:
        out += [("zero", p, 0), ("wrong output", p, _get(doc, p) + 1), ("string", p, "7")]
    if "output" in head:
        out += [("head output not 1", (*head_at, "output"), 2), ("string", (*head_at, "output"), "1")]
    for p in strings:
        out += [("empty", p, ""), ("number", p, 3)]
    for p, bad in choices.items():
        out += [("unknown choice", p, bad), ("number", p, 1.5)]
    for p in cells:
        kernel, channels = parse_cell(_get(doc, p))
        out += [("number", p, 3), ("garbled cell", p, f"{kernel} by {kernel}, {channels}")]
        out += [("zero channels", p, cell(kernel, 0)), ("non-square", p, f"{kernel}x{kernel + 2}, {channels}")]
        if "block" in p:  # the stem may have an even kernel; a block may not
            out += [("even kernel", p, cell(kernel + 1, channels))]
    for p in tables:
        out += [("not a table", p, 3), ("unknown key", (*p, "colour"), "red")]
    for s in stage_names:
        out += [("empty block", ("net", s, "block"), []), ("block not a list", ("net", s, "block"), "3x3, 8")]
    out += [("unknown key", ("net", "colour"), "red")]
    out += [("stage out of order", ("net", f"conv{len(stage_names) + 3}_x"), copy.deepcopy(net[stage_names[0]]))]
    return out


def _get(doc: dict[str, Any], path: KeyPath) -> Any:
    node: Any = doc
    for part in path:
        node = node[part]
    return node


def _shrinking_under_a(doc: dict[str, Any]) -> list[Mutation]:
    """Option A with a stage whose block drops channels: the error names the stage's last cell."""
    if not channels_never_drop(doc):
        return []
    stem, _, stages = arch_rows(doc)
    channels = parse_cell(stem["conv1"]["conv"])[1]
    mutations = []
    for index, stage in enumerate(stages):
        last = len(stage["block"]) - 1
        kernel, out = parse_cell(stage["block"][last])
        if channels >= 2:
            broken = _apply(doc, ("net", f"conv{index + 2}_x", "block", last), cell(kernel, channels - 1))
            broken["table"]["shortcut"] = "A"
            broken.pop("net2", None)
            path = f"net.conv{index + 2}_x.block[{last}]"
            mutations.append(Mutation(broken, path, "option A with shrinking channels"))
        channels = out
    return mutations


@st.composite
def invalid_documents(draw: st.DrawFn) -> Mutation:
    """A valid generated document broken in exactly one place, with the key path the error must name."""
    doc = draw(table_documents(max_width=16, max_input=24, vocabulary=False))
    candidates = _candidates(doc)
    shrinking = _shrinking_under_a(doc)
    # The kind of break first, then where: every kind is drawn as often, however many places it has.
    kinds = sorted({what for what, _, _ in candidates} | {m.what for m in shrinking})
    kind = draw(st.sampled_from(kinds))
    if shrinking and kind == shrinking[0].what:
        return draw(st.sampled_from(shrinking))
    what, path, value = draw(st.sampled_from([c for c in candidates if c[0] == kind]))
    return Mutation(_apply(doc, path, value), _path_text(path), what)
