"""Diff: compare the Table 1 view read from a trace against a spec, and return every mismatch as data.

Each :class:`Mismatch` names the row (``conv1``, ``conv2_x`` ... ``fc``), the block where there is one
(``conv3_1``), the property, and the expected and found values.  :func:`compare_model` traces, reads and diffs;
:func:`best_matches` says which known table entries a model conforms to instead.
"""

from __future__ import annotations

import builtins
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace

from torch import nn

from .counting import count
from .equivalence import Equivalence, check_equivalence
from .read import ConvUnit, FoundBlock, FoundNetwork, FoundPool, FoundShortcut, read_trace
from .spec import Conv, Layer, PlannedBlock, ResNetSpec, as_spec, knob_options, layout_plan, list_specs, load_spec
from .trace import trace_model

__all__ = ["Comparison", "Mismatch", "RowView", "best_matches", "compare_model", "diff"]


@dataclass(frozen=True)
class Mismatch:
    """One way the model differs from the spec."""

    row: str  # the table row: conv1, conv2_x, ..., fc, or "model" for totals
    block: str | None  # the block, e.g. "conv3_1", where the difference is inside one
    property: str  # what differs, e.g. "stride placement", "conv2.kernel", "shortcut", "repeats"
    expected: str
    found: str

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
    notes: tuple[str, ...] = field(default=())
    equivalence: Equivalence | None = None  # the numerical check; None when only the structure was compared

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

    def check(self, row: str, block: str | None, prop: str, expected: object, found: object) -> bool:
        if expected != found:
            self.mismatches.append(Mismatch(row, block, prop, str(expected), str(found)))
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
    out.check(row, block, f"{prefix}.bn", _bn_text(bn_after), _bn_text(found.bn_after))


def _bn_text(bn_after: bool) -> str:
    return "BN right after the conv" if bn_after else "no BN after the conv"


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
        blocks.append(FoundBlock(convs, None, False, "plain", last.output_size, last.out_channels, params))
    return blocks


def _group_stages(blocks: list[FoundBlock]) -> list[list[FoundBlock]]:
    """Consecutive blocks with the same output channels and map size form one row."""
    stages: list[list[FoundBlock]] = []
    for block in blocks:
        if stages and (stages[-1][-1].out_channels, stages[-1][-1].output_size) == (
            block.out_channels,
            block.output_size,
        ):
            stages[-1].append(block)
        else:
            stages.append([block])
    return stages


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
    if not out.check(row, name, "shortcut", e_kind, f_kind) or not convs or found.shortcut is None:
        return
    pools = [layer for layer in shortcut if layer.kind == "pool"]
    found_pool = found.shortcut.pool
    out.check(row, name, "shortcut.pool", _pool_text(pools[0]) if pools else "none", _found_pool_text(found_pool))
    if found.shortcut.conv is not None:
        index = convs[0]
        conv = _planned_conv(shortcut[index])
        _check_conv(out, row, name, "shortcut", conv, found.shortcut.conv, bn_after=_followed_by(shortcut, index, "bn"))


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
    if pre:
        out.check(
            row, name, "branch end", f"{end_text[end]} feeds the addition", f"{found.branch_end} feeds the addition"
        )
        out.check(row, name, "relu after addition", "none", "relu" if found.relu_after_add else "none")
        return
    if found.branch_end == "relu":
        out.check(row, name, "relu placement", "after the addition", "before the addition")
    elif found.branch_end != end:
        out.check(
            row, name, "branch end", f"{end_text[end]} feeds the addition", f"{found.branch_end} feeds the addition"
        )
    if found.branch_end != "relu" or found.relu_after_add:
        out.check(row, name, "relu after addition", "relu", "relu" if found.relu_after_add else "missing")


def _activation(name: str | None) -> str:
    return "relu after BN" if name == "relu" else "missing" if name is None else name


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
    stem = replace(stem, bn_after=False, activation_after=None)
    first = replace(first, preactivation=("bn", "relu"), shortcut_reads_preactivation=True)
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


def diff(found: FoundNetwork, spec: ResNetSpec, input_size: tuple[int, int] | None = None) -> Comparison:
    """Compare a read network with a spec at ``input_size`` (the table's when None); every mismatch is returned."""
    size = input_size or _pair(spec.input_size)
    out = _Collector()
    expected_sizes = spec.row_output_sizes(*size)
    rows: list[RowView] = []
    param_rows: dict[str, str] = {}

    plan = layout_plan(spec, size)
    found = _first_preactivation(found, spec)
    rows.append(_check_stem(out, plan.stem, found, _size(expected_sizes["conv1"]), param_rows))

    # conv2_x .. : the pool, then the stages
    residual = spec.shortcut.residual
    blocks = _found_blocks(found, spec)
    found_stages = _group_stages(blocks)
    if len(found_stages) != len(spec.stages):
        out.check(
            "model",
            None,
            "rows",
            f"{len(spec.stages)} rows ({', '.join(s.name for s in spec.stages)})",
            f"{len(found_stages)} rows of blocks (grouped by output channels and map size)",
        )
    for index, stage in enumerate(spec.stages):
        before = len(out.mismatches)
        pool_text = ("", "")
        if index == 0:
            pool_text = _check_pool(out, stage.name, spec, found)
        group = found_stages[index] if index < len(found_stages) else []
        out.check(stage.name, None, "repeats", stage.repeats, len(group))
        planned_blocks = [b for b in plan.blocks if b.row == stage.name]
        for planned, found_block in zip(planned_blocks, group, strict=False):
            _check_block(out, stage.name, planned, found_block, residual)
            param_rows.update({name: planned.spec.name for name in found_block.params})
        found_output = _size(group[-1].output_size) if group else "-"
        if group:
            out.check(stage.name, None, "output", _size(expected_sizes[stage.name]), found_output)
            out.check(stage.name, None, "channels", stage.out_channels, group[-1].out_channels)
        expected_text = _bracket([_cell(c) for c in stage.blocks[0].convs], stage.repeats)
        found_text = _bracket([c.cell for c in group[0].convs], len(group)) if group else "-"
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
    for extra in found_stages[len(spec.stages) :]:
        for block in extra:
            param_rows.update({name: "model" for name in block.params})
    for conv in found.stray_convs:
        out.check("model", None, "extra conv", "none", f"{conv.cell} in {conv.module or 'the model'}")

    # fc
    before = len(out.mismatches)
    head = spec.head
    out.check(
        "fc", None, "pool", f"global {head.pool} pool", f"global {found.head.pool} pool" if found.head.pool else "none"
    )
    out.check("fc", None, "fc", f"{head.num_classes}-d fc", " -> ".join(f"{n}-d fc" for n in found.head.fc) or "none")
    if found.head.in_features is not None:
        out.check("fc", None, "fc.in_features", spec.out_channels, found.head.in_features)
    _check_head_norm(out, plan.head, found)
    param_rows.update({name: "fc" for name in found.fc_params})
    rows.append(
        RowView(
            "fc",
            "1x1",
            "1x1" if found.head.pool else "-",
            f"{head.pool} pool, {head.num_classes}-d fc",
            f"{found.head.pool or 'no'} pool, " + (", ".join(f"{n}-d fc" for n in found.head.fc) or "no fc"),
            len(out.mismatches) == before,
        )
    )

    # parameters that never take part in the forward pass
    for name in found.unused_params:
        row = _row_of_unused(name, param_rows)
        block_name = row if row not in spec.rows and row != "model" else None
        stage_row = _stage_of(block_name, spec) if block_name else row
        out.check(stage_row, block_name, "unused parameter", "every parameter used in forward", name)

    # totals
    counts = count(spec, size)
    out.check("model", None, "params", f"{counts.params:,}", f"{found.params:,}")
    out.check("model", None, "MACs (conv+fc)", f"{counts.total:,}", f"{found.macs:,}")
    notes = []
    if found.other_ops:
        notes.append("operators the reader does not interpret: " + ", ".join(found.other_ops))
    return Comparison(spec, size, found, tuple(out.mismatches), tuple(rows), counts.params, counts.total, tuple(notes))


def _check_head_norm(out: _Collector, planned: tuple[Layer, ...], found: FoundNetwork) -> None:
    """A pre-activation net's final BN-ReLU before the global pool (He et al. 2016); nothing there otherwise."""
    expected = " -> ".join(layer.kind for layer in planned if layer.kind in ("bn", "relu")) or "none"
    found_text = " -> ".join("relu" if k == "relu" else k for k in found.head.norm) or "none"
    out.check("fc", None, "before the pool", expected, found_text)


def _check_pool(out: _Collector, row: str, spec: ResNetSpec, found: FoundNetwork) -> tuple[str, str]:
    """The stem pool, which Table 1 prints in the conv2_x row.  Returns its (expected, found) text."""
    pool, found_pool = spec.stem.pool, found.stem_pool
    expected = (
        "none" if pool is None else f"{pool.kernel}x{pool.kernel} {pool.kind} pool /{pool.stride} pad {pool.padding}"
    )
    found_text = (
        "none"
        if found_pool is None
        else f"{found_pool.kernel[0]}x{found_pool.kernel[1]} {found_pool.kind} pool /{found_pool.stride[0]} "
        f"pad {found_pool.padding[0]}"
    )
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
    batch: int = 1,
    functional: bool = True,
) -> Comparison:
    """Trace ``model`` on the meta device at ``input_size`` (the table's when None) and diff it against ``spec``.

    ``functional`` adds the numerical check (:func:`~resnet_spec.equivalence.check_equivalence`): the model's
    weights in the reference network, every row's output compared in eval and train mode.
    """
    spec = as_spec(spec, "compare_model")
    size = input_size or _pair(spec.input_size)
    found = read_trace(trace_model(model, (batch, spec.in_channels, *size)))
    comparison = diff(found, spec, size)
    return replace(comparison, equivalence=check_equivalence(model, spec)) if functional else comparison


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


def best_matches(found: FoundNetwork, family: str, input_size: tuple[int, int]) -> list[ResNetSpec]:
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
    candidates += [load_spec(name, **combination) for name in names for combination in combinations]
    matches: list[ResNetSpec] = []
    seen: set[object] = set()
    for spec in candidates:
        key = (spec.stem, spec.stages, spec.head, spec.order)
        if key in seen:
            continue
        seen.add(key)
        if diff(found, spec, input_size).conformant:
            matches.append(spec)
    return matches
