"""Diff: compare the Table 1 view read from a trace against a spec, and return every mismatch as data.

Each :class:`Mismatch` names the row (``conv1``, ``conv2_x`` ... ``fc``), the block where there is one
(``conv3_1``), the property, and the expected and found values.  :func:`compare_model` traces, reads and diffs;
:func:`best_matches` says which known table entries a model conforms to instead.
"""

from __future__ import annotations

import builtins
import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace

from torch import nn

from .counting import count
from .equivalence import Equivalence, check_equivalence
from .read import ConvUnit, FoundBlock, FoundNetwork, FoundPool, FoundShortcut, read_trace
from .spec import (
    Block,
    Conv,
    Layer,
    PlannedBlock,
    ResNetSpec,
    SpecError,
    as_spec,
    families,
    knob_options,
    layout_plan,
    list_specs,
    load_spec,
)
from .trace import TraceError, trace_model

__all__ = ["Comparison", "Mismatch", "RowView", "Value", "align_blocks", "best_matches", "compare_model", "diff"]


# A value in a mismatch: a number, a text, a flag, or a tuple of them (a kernel (3, 3)); JSON gets lists.
Value = str | int | float | bool | None | tuple["Value", ...]


@dataclass(frozen=True)
class Mismatch:
    """One way the model differs from the spec."""

    row: str  # the table row: conv1, conv2_x, ..., fc, or "model" for totals
    block: str | None  # the block, e.g. "conv3_1", where the difference is inside one
    property: str  # what differs, e.g. "stride placement", "conv2.kernel", "shortcut", "repeats"
    expected: Value
    found: Value
    blocks: tuple[str, ...] = ()  # where one cause recurs in a row (every block's conv has a bias): each place

    @builtins.property
    def where(self) -> str:
        """The block if there is one, else the row."""
        return self.block or self.row


@dataclass(frozen=True)
class RowView:
    """One line of the Table 1 style report."""

    row: str
    expected_output: str
    found_output: str
    expected: str
    found: str
    ok: bool


@dataclass(frozen=True)
class Comparison:
    """The result of comparing a model with a spec."""

    spec: ResNetSpec
    input_size: tuple[int, int]
    found: FoundNetwork
    mismatches: tuple[Mismatch, ...]
    rows: tuple[RowView, ...]
    expected_params: int
    expected_macs: int
    notes: tuple[str, ...] = field(default=())  # what the structure cannot decide (an operator not interpreted)
    equivalence: Equivalence | None = None  # the numerical check; None when only the structure was compared
    info: tuple[str, ...] = field(default=())  # how the model was read (the CPU fallback, which output)

    @property
    def verdict(self) -> str:
        """conformant (structurally and functionally), equivalent (functionally, written differently), not
        conformant, or undecided (the structure alone cannot decide and the numbers could not be computed)."""
        eq = self.equivalence
        if eq is None or eq.status == "skipped":
            if self.mismatches:
                return "not conformant"
            return "undecided" if eq is not None and self.notes else "conformant"
        if eq.status == "equal":
            return "equivalent" if self.mismatches else "conformant"
        if eq.status == "differs" or self.mismatches:
            return "not conformant"
        return "undecided"

    @property
    def conformant(self) -> bool:
        """A complete verdict "conforms": structurally and functionally, or functionally and written differently."""
        return self.verdict in ("conformant", "equivalent")

    @property
    def exit_status(self) -> int:
        """0 conforms, 1 does not, 2 undecided."""
        return {"conformant": 0, "equivalent": 0, "not conformant": 1}.get(self.verdict, 2)


def _pair(n: int) -> tuple[int, int]:
    return (n, n)


def _size(hw: Sequence[int]) -> str:
    return f"{hw[0]}x{hw[1]}"


def _cell(conv: Conv) -> str:
    text = f"{conv.kernel}x{conv.kernel}, {conv.out_channels}"
    return text if conv.stride == 1 else f"{text} /{conv.stride}"


def _bracket(cells: Iterable[str], repeats: int) -> str:
    return f"[{'; '.join(cells)}] x{repeats}"


def _stride_index(strides: Sequence[int]) -> int | None:
    over = [i for i, s in enumerate(strides) if s > 1]
    return over[0] if len(over) == 1 else None


@dataclass
class _Collector:
    mismatches: list[Mismatch] = field(default_factory=list)

    def check(self, row: str, block: str | None, prop: str, expected: Value, found: Value) -> bool:
        if expected != found:
            self.mismatches.append(Mismatch(row, block, prop, expected, found))
            return False
        return True


def _check_conv(
    out: _Collector,
    row: str,
    block: str | None,
    prefix: str,
    expected: Conv,
    found: ConvUnit,
    stride: bool = True,
    bn_after: bool = True,
) -> None:
    """Kernel, channels, stride, padding, dilation, groups, bias and the BN after a conv (where the plan has one)."""
    out.check(row, block, f"{prefix}.kernel", _pair(expected.kernel), found.kernel)
    out.check(row, block, f"{prefix}.channels", expected.out_channels, found.out_channels)
    if stride:
        out.check(row, block, f"{prefix}.stride", _pair(expected.stride), found.stride)
    out.check(row, block, f"{prefix}.padding", _pair(expected.padding), found.padding)
    out.check(row, block, f"{prefix}.dilation", (1, 1), found.dilation)
    out.check(row, block, f"{prefix}.groups", expected.groups, found.groups)
    out.check(
        row, block, f"{prefix}.bias", "no bias (BN follows)", "bias before BN" if found.bias else "no bias (BN follows)"
    )
    norm = found.norm_after or ("bn" if found.bn_after else None)
    out.check(row, block, f"{prefix}.bn", _norm_text("bn" if bn_after else None), _norm_text(norm))
    if norm == "bn" and bn_after:
        out.check(row, block, f"{prefix}.bn.affine", "learned scale and shift", _affine_text(found.norm_affine))


def _norm_text(norm: str | None) -> str:
    if norm == "bn":
        return "BN right after the conv"
    return "no BN after the conv" if norm is None else f"{norm} instead of BN"


def _affine_text(affine: bool) -> str:
    return "learned scale and shift" if affine else "no scale and shift (affine=False)"


def _planned_conv(layer: Layer) -> Conv:
    """A planned conv layer as the Conv the checks compare."""
    return Conv(layer.kernel, layer.in_shape[0], layer.out_shape[0], layer.stride, layer.padding, layer.groups)


def _followed_by(layers: tuple[Layer, ...], index: int, kind: str) -> bool:
    return index + 1 < len(layers) and layers[index + 1].kind == kind


def _found_blocks(found: FoundNetwork, spec: ResNetSpec) -> list[FoundBlock]:
    """The found blocks; for a network without additions, its conv chain cut into blocks of the table's size."""
    if found.blocks:
        return list(found.blocks)
    sizes = [len(stage.layers) for stage in spec.stages for _ in range(stage.repeats)]
    blocks: list[FoundBlock] = []
    chain = list(found.chain)
    while chain:
        size = sizes[len(blocks)] if len(blocks) < len(sizes) else sizes[-1]
        convs, chain = tuple(chain[:size]), chain[size:]
        params = frozenset(name for conv in convs for name in conv.params)
        last = convs[-1]
        span = (convs[0].index, max(max(c.members, default=c.index) for c in convs))
        blocks.append(FoundBlock(convs, None, False, "plain", last.output_size, last.out_channels, params, span))
    return blocks


def align_blocks(expected: Sequence[object], found: Sequence[object]) -> list[tuple[int | None, int | None]]:
    """Align two sequences of block keys by the fewest edits: (expected index, found index) pairs, in order.

    A pair with a None is a block missing from ``found`` (or one ``found`` has in addition).  Equal keys match at
    no cost, a changed block (another width) costs 1, a missing or extra block costs 1.  Where several alignments
    cost the same, the missing or extra blocks are the last ones of their run (a stage of 23 found with 22 lacks
    its 23rd).  Stages of equal width and map size stay distinct, because the table's sequence is the reference.
    """
    n, m = len(expected), len(found)
    if n == m and all(e == f for e, f in zip(expected, found, strict=True)):
        return [(i, i) for i in range(n)]
    cost = [[0] * (m + 1) for _ in range(n + 1)]
    for i in range(n + 1):
        cost[i][0] = i
    for j in range(m + 1):
        cost[0][j] = j
    for i in range(1, n + 1):
        row, above, key = cost[i], cost[i - 1], expected[i - 1]
        for j in range(1, m + 1):
            row[j] = min(above[j - 1] + (key != found[j - 1]), above[j] + 1, row[j - 1] + 1)
    pairs: list[tuple[int | None, int | None]] = []
    i, j = n, m
    while i > 0 or j > 0:
        if i > 0 and cost[i][j] == cost[i - 1][j] + 1:
            pairs.append((i - 1, None))
            i -= 1
        elif j > 0 and cost[i][j] == cost[i][j - 1] + 1:
            pairs.append((None, j - 1))
            j -= 1
        else:
            pairs.append((i - 1, j - 1))
            i, j = i - 1, j - 1
    pairs.reverse()
    return pairs


def _shortcut_kind(shortcut: FoundShortcut | None) -> str:
    return "none" if shortcut is None else shortcut.kind


def _check_block(out: _Collector, row: str, planned: PlannedBlock, found: FoundBlock, residual: bool) -> None:
    expected = planned.spec
    name = expected.name
    expected_cells = [_cell(c) for c in expected.convs]
    found_cells = [c.cell for c in found.convs]
    pre = expected.order == "pre"
    if len(expected.convs) != len(found.convs):
        out.check(row, name, "convs", _bracket(expected_cells, 1), _bracket(found_cells, 1))
    else:
        e_index = _stride_index([c.stride for c in expected.convs])
        f_index = _stride_index([max(c.stride) for c in found.convs])
        placement_differs = False
        if e_index is not None and f_index is not None and e_index != f_index:
            placement_differs = True
            e, f = expected.convs[e_index], found.convs[f_index]
            out.check(
                row,
                name,
                "stride placement",
                f"stride {e.stride} on conv{e_index + 1} ({e.kernel}x{e.kernel})",
                f"stride {max(f.stride)} on conv{f_index + 1} ({'x'.join(map(str, f.kernel))})",
            )
        last = len(expected.convs) - 1
        for i, (e_conv, f_conv) in enumerate(zip(expected.convs, found.convs, strict=True)):
            # post-activation: BN after every conv, ReLU after all but the last; pre-activation: the next conv's
            # BN-ReLU after all but the last, nothing after the last (He et al. 2016)
            bn_after = not pre or i < last
            _check_conv(out, row, name, f"conv{i + 1}", e_conv, f_conv, stride=not placement_differs, bn_after=bn_after)
            if i < last or not residual:
                out.check(row, name, f"conv{i + 1}.relu", "relu after BN", _activation(f_conv.activation_after))
    _check_preactivation(out, row, planned, found)
    _check_se(out, row, planned, found)
    _check_shortcut(out, row, planned, found)
    if residual and _shortcut_kind(found.shortcut) != "none":
        _check_addition(out, row, name, found, pre, se=bool(planned.role("se")))


def _check_preactivation(out: _Collector, row: str, planned: PlannedBlock, found: FoundBlock) -> None:
    """A pre-activation block's own BN-ReLU before its first conv, and which value its shortcut reads."""
    pre = planned.spec.order == "pre"
    expected = "bn -> relu" if pre else "none"
    out.check(row, planned.spec.name, "pre-activation", expected, " -> ".join(found.preactivation) or "none")
    if pre and planned.spec.shortcut not in ("identity", "none") and found.preactivation:
        reads = "the pre-activated input" if found.shortcut_reads_preactivation else "the block's input"
        out.check(row, planned.spec.name, "shortcut input", "the pre-activated input", reads)


def _check_se(out: _Collector, row: str, planned: PlannedBlock, found: FoundBlock) -> None:
    """Squeeze-and-excitation's convs (Hu et al. 2018: C -> C/r -> C, with bias) as the plan has them."""
    expected = [layer for layer in planned.role("se") if layer.kind == "conv"]
    text = " -> ".join(f"{layer.in_shape[0]} -> {layer.out_shape[0]}" for layer in expected) or "none"
    found_text = " -> ".join(f"{unit.in_channels} -> {unit.out_channels}" for unit in found.se) or "none"
    out.check(row, planned.spec.name, "squeeze-excitation", text, found_text)
    for i, (layer, unit) in enumerate(zip(expected, found.se, strict=False), 1):
        out.check(row, planned.spec.name, f"se.fc{i}.kernel", _pair(layer.kernel), unit.kernel)
        out.check(row, planned.spec.name, f"se.fc{i}.bias", layer.bias, unit.bias)


def _check_shortcut(out: _Collector, row: str, planned: PlannedBlock, found: FoundBlock) -> None:
    """The shortcut's kind, and a projection's pool, conv and BN as the plan has them."""
    name = planned.spec.name
    shortcut = planned.role("shortcut")
    convs = [i for i, layer in enumerate(shortcut) if layer.kind == "conv"]
    e_kind = "projection" if convs else planned.spec.shortcut
    f_kind = _shortcut_kind(found.shortcut)
    if not out.check(row, name, "shortcut", e_kind, f_kind) or found.shortcut is None:
        return
    pools = [layer for layer in shortcut if layer.kind == "pool"]
    found_pool = found.shortcut.pool
    if pools or found_pool is not None:
        out.check(row, name, "shortcut.pool", _pool_text(pools[0]) if pools else "none", _found_pool_text(found_pool))
    conv_ok = True
    if convs and found.shortcut.conv is not None:
        index = convs[0]
        conv = _planned_conv(shortcut[index])
        bn_after = _followed_by(shortcut, index, "bn")
        # a pool the plan does not have takes the stride from the conv: one finding (the pool), not two
        stride = found_pool is None or bool(pools)
        _check_conv(out, row, name, "shortcut", conv, found.shortcut.conv, stride=stride, bn_after=bn_after)
        conv_ok = found.shortcut.conv.bn_after == bn_after
    if e_kind in ("identity", "projection") and conv_ok:
        # what else the shortcut path computes (a ReLU on the projection's output) is a finding (Sec. 3.3)
        expected_ops = tuple(layer.kind for layer in shortcut if layer.kind in ("conv", "bn"))
        ops = tuple(kind for kind in found.shortcut.ops if kind not in ("avgpool", "maxpool"))
        out.check(row, name, "shortcut path", _ops_text(expected_ops), _ops_text(ops))


def _pool_text(layer: Layer) -> str:
    rounding = ", ceil" if layer.ceil_mode else ""
    return f"{layer.kernel}x{layer.kernel} {layer.detail} pool /{layer.stride} pad {layer.padding}{rounding}"


def _found_pool_text(pool: FoundPool | None) -> str:
    if pool is None:
        return "none"
    rounding = ", ceil" if pool.ceil_mode else ""
    return f"{pool.kernel[0]}x{pool.kernel[1]} {pool.kind} pool /{pool.stride[0]} pad {pool.padding[0]}{rounding}"


def _check_addition(out: _Collector, row: str, name: str, found: FoundBlock, pre: bool, se: bool = False) -> None:
    """Post-activation: the branch's BN feeds the addition and a ReLU follows it; pre-activation: the branch's last
    conv feeds it and nothing follows (He et al. 2016, Fig. 4(e)).  With SE, its channel-wise scale feeds it."""
    end = "se" if se else "conv" if pre else "bn"
    end_text = {"se": "SE scale", "conv": "conv", "bn": "BN"}
    found_end = end_text.get(found.branch_end, found.branch_end)
    if pre:
        out.check(row, name, "branch end", f"{end_text[end]} feeds the addition", f"{found_end} feeds the addition")
        out.check(row, name, "relu after addition", "none", "relu" if found.relu_after_add else "none")
        return
    if found.branch_end == "relu":
        out.check(row, name, "relu placement", "after the addition", "before the addition")
    elif found.branch_end != end and not (end == "bn" and found.branch_end == "norm"):  # norm: found at its conv
        out.check(row, name, "branch end", f"{end_text[end]} feeds the addition", f"{found_end} feeds the addition")
    if found.branch_end != "relu" or found.relu_after_add:
        out.check(row, name, "relu after addition", "relu", "relu" if found.relu_after_add else "missing")


def _ops_text(ops: Sequence[str]) -> str:
    return " -> ".join(ops) if ops else "nothing (identity)"


def _activation(name: str | None) -> str:
    return "relu after BN" if name == "relu" else "missing" if name is None else name


def _plain_deep_stem(found: FoundNetwork, spec: ResNetSpec) -> FoundNetwork:
    """A network without additions is one chain of convs: its first ones are the stem's, as many as the table has."""
    need = len(spec.stem.convs) - len(found.stem_convs)
    if found.blocks or not found.stem_convs or need <= 0 or len(found.chain) < need:
        return found
    return replace(found, stem_convs=(*found.stem_convs, *found.chain[:need]), chain=found.chain[need:])


def _first_preactivation(found: FoundNetwork, spec: ResNetSpec) -> FoundNetwork:
    """In a pre-activation net without a stem pool, "stem conv, then the first block's BN-ReLU read by its conv and
    its projection" computes what "stem conv-BN-ReLU, then a block whose projection reads the stem's output" does:
    the reader sees the second.  Read against a pre-activation spec, the BN-ReLU is the first block's."""
    if spec.order != "pre" or spec.stem.pool is not None or not found.blocks or not found.stem_convs:
        return found
    stem, first = found.stem_convs[-1], found.blocks[0]
    kind = first.shortcut.kind if first.shortcut is not None else "none"
    if not stem.bn_after or stem.activation_after != "relu" or first.preactivation or kind in ("identity", "none"):
        return found
    moved = frozenset(stem.norm_params)
    stem = replace(
        stem,
        bn_after=False,
        activation_after=None,
        norm_after=None,
        params=tuple(name for name in stem.params if name not in moved),
        norm_params=(),
    )
    first = replace(first, preactivation=("bn", "relu"), shortcut_reads_preactivation=True, params=first.params | moved)
    stem_convs = (*found.stem_convs[:-1], stem)
    return replace(found, stem=stem_convs[0], stem_convs=stem_convs, blocks=(first, *found.blocks[1:]))


def _check_stem(
    out: _Collector, planned: tuple[Layer, ...], found: FoundNetwork, expected_size: str, param_rows: dict[str, str]
) -> RowView:
    """Table 1's conv1 row: each stem conv as the plan has it (one, or a deep stem's several), its BN and ReLU."""
    before = len(out.mismatches)
    layers = tuple(layer for layer in planned if layer.row == "conv1")
    convs = [i for i, layer in enumerate(layers) if layer.kind == "conv"]
    expected_text = " -> ".join(_cell(_planned_conv(layers[i])) for i in convs)
    found_convs = found.stem_convs or ((found.stem,) if found.stem is not None else ())
    if len(found_convs) != len(convs):
        out.check("conv1", None, "convs", expected_text, " -> ".join(c.cell for c in found_convs) or "none")
    for n, (index, unit) in enumerate(zip(convs, found_convs, strict=False)):
        prefix = "conv" if len(convs) == 1 else f"conv[{n}]"
        bn_after = _followed_by(layers, index, "bn")
        _check_conv(out, "conv1", None, prefix, _planned_conv(layers[index]), unit, bn_after=bn_after)
        if bn_after:
            out.check("conv1", None, f"{prefix}.relu", "relu after BN", _activation(unit.activation_after))
        param_rows.update({name: "conv1" for name in unit.params})
    last = found_convs[-1] if found_convs else None
    if last is not None:
        out.check("conv1", None, "output", expected_size, _size(last.output_size))
    found_text = " -> ".join(c.cell for c in found_convs) or "none"
    found_size = _size(last.output_size) if last is not None else "-"
    return RowView("conv1", expected_size, found_size, expected_text, found_text, len(out.mismatches) == before)


def diff(
    found: FoundNetwork,
    spec: ResNetSpec,
    input_size: tuple[int, int] | None = None,
    *,
    headless: bool = False,
    in_channels: int | None = None,
) -> Comparison:
    """Compare a read network with a spec at ``input_size`` (the table's when None); every mismatch is returned.

    ``headless=True`` expects a backbone: the stem and the stages of the table, no pool-and-fc head (a model that
    returns feature maps).  ``in_channels`` replaces the table's input channels (a model for 1-channel images).
    Blocks are aligned to the table's block sequence (:func:`align_blocks`), so each finding names the table's
    row and block; one cause that recurs through a row is one finding, with every place it occurs in ``blocks``.
    """
    size = input_size or _pair(spec.input_size)
    out = _Collector()
    expected_sizes = spec.row_output_sizes(*size)
    rows: list[RowView] = []
    param_rows: dict[str, str] = {}
    row_mismatches: dict[str, int] = {}

    plan = layout_plan(spec, size)
    found = _first_preactivation(_plain_deep_stem(found, spec), spec)
    rows.append(_check_stem(out, plan.stem, found, _size(expected_sizes["conv1"]), param_rows))

    # conv2_x .. : the pool, then the stages, aligned to the table's block sequence
    residual = spec.shortcut.residual
    blocks = _found_blocks(found, spec)
    expected_blocks = [(stage, block) for stage in spec.stages for block in stage.blocks]
    keys = [(stage.out_channels, expected_sizes[stage.name]) for stage, _ in expected_blocks]
    pairs = align_blocks(keys, [(b.out_channels, b.output_size) for b in blocks])
    assigned: dict[str, list[tuple[Block | None, FoundBlock]]] = {stage.name: [] for stage in spec.stages}
    block_names: dict[int, tuple[str, str | None]] = {}  # found block index -> (row, block name)
    planned_blocks = {planned.spec.name: planned for planned in plan.blocks}
    current = spec.stages[0].name
    for e_index, f_index in pairs:
        if e_index is not None:
            current = expected_blocks[e_index][0].name
        if f_index is None:
            continue
        expected_block = expected_blocks[e_index][1] if e_index is not None else None
        assigned[current].append((expected_block, blocks[f_index]))
        block_names[f_index] = (current, expected_block.name if expected_block is not None else None)
    for index, stage in enumerate(spec.stages):
        before = len(out.mismatches)
        pool_text = ("", "")
        if index == 0:
            pool_text = _check_pool(out, stage.name, spec, found)
        group = assigned[stage.name]
        out.check(stage.name, None, "repeats", stage.repeats, len(group))
        for expected_block, found_block in group:
            if expected_block is not None:
                _check_block(out, stage.name, planned_blocks[expected_block.name], found_block, residual)
            param_rows.update({name: expected_block.name if expected_block else stage.name
                               for name in found_block.params})  # fmt: skip
        last = group[-1][1] if group else None
        found_output = _size(last.output_size) if last else "-"
        if last is not None:
            out.check(stage.name, None, "output", _size(expected_sizes[stage.name]), found_output)
            out.check(stage.name, None, "channels", stage.out_channels, last.out_channels)
        expected_text = _bracket([_cell(c) for c in stage.blocks[0].convs], stage.repeats)
        found_text = _bracket([c.cell for c in group[0][1].convs], len(group)) if group else "-"
        rows.append(
            RowView(
                stage.name,
                _size(expected_sizes[stage.name]),
                found_output,
                pool_text[0] + expected_text,
                pool_text[1] + found_text,
                len(out.mismatches) == before,
            )
        )
        row_mismatches[stage.name] = len(out.mismatches) - before
    for conv in found.stray_convs:
        out.check("model", None, "extra conv", "none", f"{conv.cell} in {conv.module or 'the model'}")

    # fc
    before = len(out.mismatches)
    head = spec.head
    expected_head = "absent (a backbone)" if headless else f"{head.pool} pool, {head.num_classes}-d fc"
    found_head = (
        f"{found.head.pool or 'no'} pool, " + (", ".join(f"{n}-d fc" for n in found.head.fc) or "no fc")
        if found.head.present
        else "absent (the model returns feature maps)"
    )
    if headless:
        out.check("fc", None, "head", "absent (a backbone)", "fc layers" if found.head.present else expected_head)
    elif not found.head.present:
        out.check("fc", None, "head", expected_head, found_head)
    else:
        out.check("fc", None, "pool", f"global {head.pool} pool",
                  f"global {found.head.pool} pool" if found.head.pool else "none")  # fmt: skip
        out.check(
            "fc", None, "fc", f"{head.num_classes}-d fc", " -> ".join(f"{n}-d fc" for n in found.head.fc) or "none"
        )
        if found.head.in_features is not None:
            out.check("fc", None, "fc.in_features", spec.out_channels, found.head.in_features)
        if found.head.fc_bias:
            out.check("fc", None, "fc.bias", "bias", "bias" if found.head.fc_bias[-1] else "no bias")
        _check_head_norm(out, plan.head, found)
    param_rows.update({name: "fc" for name in found.fc_params})

    # operators outside the Table 1 view: findings between conv1 and the logits, notes outside
    notes: list[str] = []
    outside: dict[str, list[str]] = {}
    for op in found.unexplained:
        if op.place == "body":
            row, block = _locate(op.index, blocks, block_names, spec)
            out.check(row, block, "extra operator", "none", op.what)
        elif op.place == "logits" and op.what not in ("softmax", "view", "other") and not op.what.startswith("aten."):
            out.check("fc", None, "after the fc", "logits (a softmax at most)", op.what)
        else:
            outside.setdefault(op.place, []).append(op.what)
    if "input" in outside:
        notes.append("operators on the input before conv1 (input normalisation?), not part of Table 1: "
                     + ", ".join(dict.fromkeys(outside["input"])))  # fmt: skip
    if "logits" in outside:
        notes.append("operators after the fc, on the logits (Table 1 ends in softmax): "
                     + ", ".join(dict.fromkeys(outside["logits"])))  # fmt: skip
    rows.append(
        RowView(
            "fc",
            "-" if headless else "1x1",
            "1x1" if found.head.pool else "-",
            expected_head,
            found_head,
            len(out.mismatches) == before,
        )
    )

    # parameters that never take part in the forward pass
    for name in found.unused_params:
        row = _row_of_unused(name, param_rows)
        block_name = row if row not in spec.rows and row != "model" else None
        stage_row = _stage_of(block_name, spec) if block_name else row
        out.check(stage_row, block_name, "unused parameter", "every parameter used in forward", name)

    # parameters per row, where nothing else in the row explains a difference; then the totals
    counts = count(spec, size, num_classes=0 if headless else None, in_channels=in_channels)
    found_rows: dict[str, int] = dict.fromkeys(spec.rows, 0)
    for name, where in param_rows.items():
        stage_row = where if where in found_rows else _stage_of(where, spec)
        if stage_row in found_rows:
            found_rows[stage_row] += found.param_sizes.get(name, 0)
    explained_rows = {m.row for m in out.mismatches}
    if found.param_sizes:
        for row, row_count in counts.rows.items():
            if row not in explained_rows and row_count.params != found_rows[row]:
                out.check(row, None, "params", row_count.params, found_rows[row])
    out.check("model", None, "params", counts.params, found.params)
    out.check("model", None, "MACs (conv+fc)", counts.total, found.macs)
    if found.other_ops:
        notes.append("operators the reader does not interpret: " + ", ".join(found.other_ops))
    mismatches = _one_per_cause(out.mismatches)
    return Comparison(spec, size, found, tuple(mismatches), tuple(rows), counts.params, counts.total, tuple(notes),
                      info=found.notes)  # fmt: skip


def _check_head_norm(out: _Collector, planned: tuple[Layer, ...], found: FoundNetwork) -> None:
    """A pre-activation net's final BN-ReLU before the global pool (He et al. 2016); nothing there otherwise."""
    expected = " -> ".join(layer.kind for layer in planned if layer.kind in ("bn", "relu")) or "none"
    found_text = " -> ".join("relu" if k == "relu" else k for k in found.head.norm) or "none"
    out.check("fc", None, "before the pool", expected, found_text)


def _locate(
    index: int, blocks: Sequence[FoundBlock], names: dict[int, tuple[str, str | None]], spec: ResNetSpec
) -> tuple[str, str | None]:
    """The row and block an operator at ``index`` of the trace sits in (or just before)."""
    for position, block in enumerate(blocks):
        if index <= block.span[1]:
            row, name = names.get(position, (spec.stages[-1].name, None))
            if index < block.span[0] and position == 0:
                return (row, None)
            return (row, name)
    return ("fc", None)


def _generic(prop: str) -> str:
    """A property without the conv it is about: conv2.bn -> bn, shortcut.bias -> bias."""
    head, _, rest = prop.partition(".")
    return rest if rest and (head.startswith("conv") or head == "shortcut") else prop


def _one_per_cause(mismatches: Sequence[Mismatch]) -> list[Mismatch]:
    """Mismatches of one row that say the same thing about several blocks or convs become one, listing them."""
    groups: dict[tuple[str, str, str, str], list[Mismatch]] = {}
    for m in mismatches:
        groups.setdefault((m.row, _generic(m.property), repr(m.expected), repr(m.found)), []).append(m)
    merged: list[Mismatch] = []
    seen: set[tuple[str, str, str, str]] = set()
    for m in mismatches:
        key = (m.row, _generic(m.property), repr(m.expected), repr(m.found))
        group = groups[key]
        if len(group) == 1:
            merged.append(m)
        elif key not in seen:
            seen.add(key)
            places = tuple(dict.fromkeys(
                f"{g.block}.{g.property.partition('.')[0]}" if g.block and g.property != key[1] else g.where
                for g in group))  # fmt: skip
            merged.append(Mismatch(m.row, None, key[1], m.expected, m.found, places))
    return merged


def _check_pool(out: _Collector, row: str, spec: ResNetSpec, found: FoundNetwork) -> tuple[str, str]:
    """The stem pool, which Table 1 prints in the conv2_x row.  Returns its (expected, found) text."""
    pool, found_pool = spec.stem.pool, found.stem_pool
    expected = (
        "none"
        if pool is None
        else f"{pool.kernel}x{pool.kernel} {pool.kind} pool /{pool.stride} pad {pool.padding}"
        + (", ceil mode" if pool.ceil_mode else "")
    )
    found_text = "none" if found_pool is None else found_pool.text
    if pool is None or found_pool is None:
        out.check(row, None, "pool", expected, found_text)
    else:
        out.check(row, None, "pool.kind", pool.kind, found_pool.kind)
        out.check(row, None, "pool.kernel", _pair(pool.kernel), found_pool.kernel)
        out.check(row, None, "pool.stride", _pair(pool.stride), found_pool.stride)
        out.check(row, None, "pool.padding", _pair(pool.padding), found_pool.padding)
        out.check(row, None, "pool.ceil_mode", pool.ceil_mode, found_pool.ceil_mode)
    if pool is None and found_pool is None:
        return ("", "")
    return (f"{expected}; ", f"{found_text}; ")


def _row_of_unused(name: str, param_rows: dict[str, str]) -> str:
    """The row or block of the used parameters that share the longest module prefix with ``name``."""
    parts = name.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        prefix = ".".join(parts[:cut]) + "."
        rows = {row for used, row in param_rows.items() if used.startswith(prefix)}
        if len(rows) == 1:
            return rows.pop()
        if rows:
            stages = {row.rsplit("_", 1)[0] for row in rows}
            if len(stages) == 1:
                return f"{stages.pop()}_x"
            return "model"
    return "model"


def _stage_of(block: str, spec: ResNetSpec) -> str:
    for stage in spec.stages:
        if any(b.name == block for b in stage.blocks):
            return stage.name
    return "model"


def compare_model(
    model: nn.Module,
    spec: ResNetSpec | str,
    input_size: tuple[int, int] | None = None,
    batch: int = 2,
    functional: bool = True,
    *,
    headless: bool = False,
    in_channels: int | None = None,
) -> Comparison:
    """Trace ``model`` at ``input_size`` (the table's when None) and diff it against ``spec``.

    The model is traced on the meta device (no memory, no time).  One that cannot run there (a data-dependent
    check, a scripted or lazy module) is run on the CPU instead, at the smallest input every row of the table
    still has an output for (then at the table's own), and the comparison's notes say so.  The forward pass
    runs in training mode, on a batch of ``batch`` (two: a batch norm in training mode needs more than one value
    per channel).  ``headless`` and ``in_channels``: as :func:`diff`.

    ``functional`` adds the numerical check (:func:`~resnet_spec.equivalence.check_equivalence`): the model's
    weights in the reference network, every row's output compared in eval and train mode (not for a headless
    backbone or other input channels, which the reference network does not have).

    Raises :class:`~resnet_spec.trace.TraceError` with one line saying what the model expects when it cannot be
    traced (its rank, its input channels, an input size it takes).
    """
    spec = as_spec(spec, "compare_model")
    size = input_size or _pair(spec.input_size)
    channels = spec.in_channels if in_channels is None else in_channels
    if not isinstance(batch, int) or batch < 1:
        raise ValueError(f"compare_model: batch must be a positive integer, got {batch!r}")
    try:
        trace = trace_model(model, (batch, channels, *size), cpu_sizes=_cpu_sizes(spec, size))
    except TraceError as e:
        raise TraceError(_input_hint(model, spec, size, channels, batch) or str(e)) from e
    traced = (trace.input_shape[2], trace.input_shape[3])
    comparison = diff(read_trace(trace), spec, traced, headless=headless, in_channels=in_channels)
    if not functional or headless or channels != spec.in_channels:
        return comparison
    return replace(comparison, equivalence=check_equivalence(model, spec))


def _cpu_sizes(spec: ResNetSpec, size: tuple[int, int]) -> list[tuple[int, int]]:
    """Input sizes for a CPU trace: the table's total downsampling (its last row then has a 1x1 map), then ``size``.

    Smaller inputs would shrink rows to 1x1 early, where a stem pool reads like a global one.
    """
    last = spec.row_output_sizes(*size)[spec.stages[-1].name]
    factor = (size[0] // last[0], size[1] // last[1]) if min(last) >= 1 else size
    small = (max(1, factor[0]), max(1, factor[1]))
    return [small, size] if small != size and small < size else [size]


def _input_hint(model: nn.Module, spec: ResNetSpec, size: tuple[int, int], channels: int, batch: int) -> str | None:
    """When the model fails at ``size`` but runs at the input size of another table family, one line saying so."""
    others: dict[int, str] = {}
    for family in families():
        names = list_specs(family)
        if names:
            other = load_spec(names[0]).input_size
            if (other, other) != size:
                others.setdefault(other, family)
    for other, family in sorted(others.items()):
        try:
            trace_model(model, (batch, channels, other, other))
        except (TraceError, ValueError):
            continue
        return (
            f"the model cannot take the table's {size[0]}x{size[1]} input, but runs on {other}x{other}: compare it "
            f"at that size (--input-size {other}) or against a table of that input size (--family {family})"
        )
    return None


def _may_conform(found: FoundNetwork, spec: ResNetSpec) -> bool:
    """False where a fact no named deviation changes already differs (blocks and their convs, SE, block order,
    stem convs): the entry cannot conform under any option, and diff would say so at greater cost."""
    if found.stem_convs and len(found.stem_convs) != len(spec.stem.convs):
        return False
    if not found.blocks:
        return True
    expected = list(spec.blocks)
    if [len(b.convs) for b in found.blocks] != [len(b.convs) for b in expected]:
        return False
    pre = spec.order == "pre"
    return all(
        bool(f.se) == (e.se_channels is not None) and bool(f.preactivation) == pre
        for f, e in zip(found.blocks, expected, strict=True)
    )


def best_matches(
    found: FoundNetwork, family: str, input_size: tuple[int, int], *, headless: bool = False
) -> list[ResNetSpec]:
    """Every known table entry of ``family``, under any option of every named deviation (``variants.toml``'s
    knobs: stride variant, shortcut option, stem pool), that ``found`` conforms to.

    Entries as their table defines them come first, so a plain network is named ``plain34`` rather than
    ``resnet34`` with ``shortcut="none"``; each distinct network is listed once.
    """
    names = [name for name in list_specs(family) if _may_conform(found, load_spec(name))]
    knobs = knob_options()
    combinations: list[dict[str, str]] = [{}]
    for knob, options in knobs.items():
        combinations = [{**c, knob: option} for c in combinations for option in options]
    candidates = [load_spec(name) for name in names]
    for name, combination in itertools.product(names, combinations):
        try:
            candidates.append(load_spec(name, **combination))
        except SpecError:  # options that form no network (a pre-activation table with no shortcuts)
            continue
    matches: list[ResNetSpec] = []
    seen: set[object] = set()
    for spec in candidates:
        key = (spec.stem, spec.stages, spec.head, spec.order)
        if key in seen:
            continue
        seen.add(key)
        if diff(found, spec, input_size, headless=headless).conformant:
            matches.append(spec)
    return matches
