"""The structural diff: the alignment read row by row against the table, every difference returned as data.

Each :class:`Mismatch` names the row (``conv1``, ``conv2_x`` ... ``fc``), the block where there is one (``conv3_1``),
the user's module there (``layer2.0``), the property, the expected and found values, and its kind: ``structure``
(what the network's layers are), ``parameters`` (its degrees of freedom: a bias the table has not, an affine
parameter missing, a tensor tied to another, a parameter never used, the counts) or ``computation`` (found by the
numbers, :mod:`resnet_spec.verify._functional`).  Nothing here re-derives where a found operator belongs: the
alignment (:mod:`resnet_spec.verify._alignment`) says it.
"""

from __future__ import annotations

import builtins
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace

from ..counts import count
from ..spec import Conv, Layer, PlannedBlock, Pool, ResNetSpec
from ._alignment import Alignment
from ._canonical import common_module
from ._read_trace import ConvUnit, FoundBlock, FoundNetwork, FoundPool, FoundShortcut, norm_label, pool_text

__all__ = ["KINDS", "Mismatch", "RowView", "Structure", "Value", "diff"]

# A value in a mismatch: a number, a text, a flag, or a tuple of them (a kernel (3, 3)); JSON gets lists.
Value = str | int | float | bool | None | tuple["Value", ...]

# What a finding is about.  Parameter findings make a model "not conformant" even where it computes the table's
# function (policy: resnet_spec.verify._verdict).
KINDS = ("structure", "parameters", "computation")
_PARAMETER_PROPERTIES = ("unused parameter", "params")


def _kind(prop: str) -> str:
    """The kind of a structural property: a bias, an affine parameter, a tie is a degree of freedom; the rest is
    structure."""
    if prop in _PARAMETER_PROPERTIES or prop.endswith((".bias", "bn.affine", "tied")) or prop in ("bias", "tied"):
        return "parameters"
    return "structure"


@dataclass(frozen=True)
class Mismatch:
    """One way the model differs from the table."""

    row: str  # the table row: conv1, conv2_x, ..., fc, or "model" for totals
    block: str | None  # the block, e.g. "conv3_1", where the difference is inside one
    property: str  # what differs, e.g. "stride placement", "conv2.kernel", "shortcut", "repeats"
    expected: Value
    found: Value
    blocks: tuple[str, ...] = ()  # where one cause recurs in a row (every block's conv has a bias): each place
    module: str = ""  # the user's module there ("layer2.0.conv1"), "" where none is known
    kind: str = "structure"  # structure, parameters or computation (KINDS)

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
class Structure:
    """What the structural diff returns: the findings, the Table 1 lines, the table's totals, the notes."""

    mismatches: tuple[Mismatch, ...]
    rows: tuple[RowView, ...]
    expected_params: int
    expected_macs: int
    notes: tuple[str, ...]  # what the structure cannot decide (an operator the reader does not interpret)
    complete: bool  # every operator between the input and the logits is one the reader understands


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
    module: str = ""  # the user's module the checks are about now
    holding: frozenset[int] = frozenset()  # the inference form: the convs (trace positions) a batch norm is folded into
    folded_norms: frozenset[str] = frozenset()  # the planned batch norms folded into a conv
    norm: str = "bn"  # the table's normalisation as the reader names one: "bn", "group_norm(32)"
    weight_standardization: float | None = None  # the table's convs: weight standardisation's epsilon, or None

    def folded(self, unit: ConvUnit) -> bool:
        """Whether the table's batch norm after this conv is folded into it (the alignment says: the inference form)."""
        return unit.index in self.holding

    def check(self, row: str, block: str | None, prop: str, expected: Value, found: Value) -> bool:
        if expected != found:
            self.mismatches.append(Mismatch(row, block, prop, expected, found, module=self.module, kind=_kind(prop)))
            return False
        return True

    @contextmanager
    def at(self, module: str) -> Iterator[None]:
        """Checks inside are about ``module`` (the user's name for the place)."""
        previous, self.module = self.module, module or self.module
        try:
            yield
        finally:
            self.module = previous


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
    with out.at(found.module):
        _check_conv_unit(out, row, block, prefix, expected, found, stride, bn_after)


def _check_conv_unit(
    out: _Collector, row: str, block: str | None, prefix: str, expected: Conv, found: ConvUnit, stride: bool,
    bn_after: bool,
) -> None:  # fmt: skip
    out.check(row, block, f"{prefix}.kernel", _pair(expected.kernel), found.kernel)
    out.check(row, block, f"{prefix}.channels", expected.out_channels, found.out_channels)
    if stride:
        out.check(row, block, f"{prefix}.stride", _pair(expected.stride), found.stride)
    out.check(row, block, f"{prefix}.padding", _pair(expected.padding), found.padding)
    out.check(row, block, f"{prefix}.dilation", _pair(expected.dilation), found.dilation)
    out.check(row, block, f"{prefix}.groups", expected.groups, found.groups)
    norm = found.norm
    if out.folded(found):
        return  # the inference form: the batch norm is folded into this conv (its bias, or none where that is zero)
    out.check(
        row, block, f"{prefix}.bias", "no bias (BN follows)", "bias before BN" if found.bias else "no bias (BN follows)"
    )
    expected_norm = out.norm if bn_after else None
    out.check(row, block, f"{prefix}.bn", _norm_text(expected_norm, out.norm), _norm_text(norm, out.norm))
    if norm == expected_norm and bn_after:
        affine = _affine_text(found.norm_affine, found.norm_fixed_affine)
        out.check(row, block, f"{prefix}.bn.affine", "learned scale and shift", affine)
    out.check(row, block, f"{prefix}.weight", _weight_text(out.weight_standardization, ()),
              _weight_text(found.weight_standardization, found.weight_transform, found.weight_sources))  # fmt: skip


def _norm_text(norm: str | None, expected: str = "bn") -> str:
    """How a finding names the normalisation after a conv, against the table's (BN, or GroupNorm)."""
    name = _NORM_NAMES.get(expected, expected)
    if norm == expected:
        return f"{name} right after the conv"
    return f"no {name} after the conv" if norm is None else f"{norm} instead of {name}"


_NORM_NAMES = {"bn": "BN"}


def _weight_text(eps: float | None, transform: tuple[str, ...], sources: tuple[str, ...] = ()) -> str:
    """How a finding names the weight a conv applies: its parameter, standardised, or computed otherwise (and
    from which other parameters besides its own, such as a learned gain)."""
    others = f", with {len(sources) - 1} more parameter{'s' if len(sources) > 2 else ''}" if len(sources) > 1 else ""
    if eps is not None:
        return f"standardised (eps {eps:g}){others}"
    return "as learned" if not transform else "computed by " + " -> ".join(transform) + others


def _affine_text(affine: bool, fixed: bool = False) -> str:
    if affine:
        return "learned scale and shift"
    return "a fixed scale and shift (buffers, not learned)" if fixed else "no scale and shift (affine=False)"


def _planned_conv(layer: Layer) -> Conv:
    """A planned conv layer as the Conv the checks compare."""
    return Conv(layer.kernel, layer.in_shape[0], layer.out_shape[0], layer.stride, layer.padding, layer.groups)


def _followed_by(layers: tuple[Layer, ...], index: int, kind: str) -> bool:
    return index + 1 < len(layers) and layers[index + 1].kind == kind


def _shortcut_kind(shortcut: FoundShortcut | None) -> str:
    return "none" if shortcut is None else shortcut.kind


def _check_block(
    out: _Collector, row: str, planned: PlannedBlock, found: FoundBlock, residual: bool,
    path_order: tuple[int, ...] | None = None,
) -> None:  # fmt: skip
    """A found block against its planned one (``path_order``: the alignment's found path in each planned path's
    place, where a selective-kernel unit's paths are stacked in another order)."""
    sk = found.selective_kernel
    if sk is not None and path_order is not None and 0 <= sk.at < len(found.convs):
        # the unit's paths in the plan's order (a symmetry): it stands in the conv sequence as the first of them
        sk = replace(sk, paths=tuple(sk.paths[i] for i in path_order))
        convs = (*found.convs[: sk.at], sk.stand_in(), *found.convs[sk.at + 1 :])
        found = replace(found, convs=convs, selective_kernel=sk)
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
    if len(expected.convs) == len(found.convs):
        _check_anti_alias(out, row, planned, found)
    _check_selective_kernel(out, row, planned, found)
    _check_preactivation(out, row, planned, found)
    _check_se(out, row, planned, found)
    _check_shortcut(out, row, planned, found)
    if residual and _shortcut_kind(found.shortcut) != "none":
        _check_addition(out, row, name, found, pre, se=bool(planned.role("se")))


def _unit_text(dilations: Sequence[int], split: bool, widths: Sequence[int]) -> str:
    """How a finding names a selective-kernel unit: its paths, whether they split the input, its attention."""
    paths = f"{len(dilations)} paths (dilation {', '.join(str(d) for d in dilations)})"
    return f"{paths}{', input split' if split else ''}, attention {' -> '.join(str(w) for w in widths)}"


def _check_selective_kernel(out: _Collector, row: str, planned: PlannedBlock, found: FoundBlock) -> None:
    """A selective-kernel unit (Li et al. 2019) as the plan has it: its paths (each conv-BN-ReLU), whether they split
    the input, the attention's widths (C -> d -> C x paths), its BN-ReLU, no biases, the softmax across the paths."""
    spec, name, sk = planned.spec, planned.spec.name, found.selective_kernel
    unit = spec.selective_kernel
    expected = "none"
    if unit is not None:
        c = spec.convs[spec.selective_at].out_channels
        expected = _unit_text(unit.dilations, unit.split_input, (c, unit.attn_channels, c * len(unit.dilations)))
    found_text = "none"
    if sk is not None:
        widths = (sk.attn[0].in_channels, *(conv.out_channels for conv in sk.attn))
        found_text = _unit_text([path.dilation[0] for path in sk.paths], sk.split, widths)
        if len(sk.attn) != 2:
            found_text += f" ({len(sk.attn)} convs)"
    if not out.check(row, name, "selective kernel", expected, found_text) or unit is None or sk is None:
        return
    prefix = f"conv{spec.selective_at + 1}"
    for p, (conv, path) in enumerate(zip(unit.paths(spec.convs[spec.selective_at]), sk.paths, strict=True)):
        _check_conv(out, row, name, f"{prefix}.paths.{p}", conv, path)
        out.check(row, name, f"{prefix}.paths.{p}.relu", "relu after BN", _activation(path.activation_after))
    reduce, select = sk.attn
    with out.at(reduce.module):
        if not out.folded(reduce):  # the inference form: the attention's BN is fc_reduce's bias
            out.check(row, name, f"{prefix}.attn.fc_reduce.bias", False, reduce.bias)
            expected_norm = _norm_text(out.norm, out.norm)
            out.check(row, name, f"{prefix}.attn.bn", expected_norm, _norm_text(reduce.norm, out.norm))
        out.check(row, name, f"{prefix}.attn.relu", "relu after BN", _activation(reduce.activation_after))
    with out.at(select.module):
        out.check(row, name, f"{prefix}.attn.fc_select.bias", False, select.bias)
    # a softmax across the paths: the dimension of (N, paths, C, ...) that has the paths
    found_selector = (
        f"a {sk.selector}"
        if sk.selector != "softmax"
        else "a softmax " + ("across the paths" if sk.softmax_dim == 1 else f"over dimension {sk.softmax_dim}")
    )
    out.check(row, name, f"{prefix}.softmax", "a softmax across the paths", found_selector)


def _check_preactivation(out: _Collector, row: str, planned: PlannedBlock, found: FoundBlock) -> None:
    """A pre-activation block's own BN-ReLU before its first conv, and which value its shortcut reads."""
    pre = planned.spec.order == "pre"
    # a BN folded into the conv before the block (the inference form) leaves its ReLU
    first_conv = next((i for i, layer in enumerate(planned.layers) if layer.kind == "conv"), 0)
    folded = any(layer.kind == "bn" and layer.name in out.folded_norms for layer in planned.layers[:first_conv])
    expected = ("relu" if folded else f"{out.norm} -> relu") if pre else "none"
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
        kernel = (layer.kernel,) if layer.detail == "channels" else _pair(layer.kernel)  # ECA's 1-D conv: (k,)
        out.check(row, planned.spec.name, f"se.fc{i}.kernel", kernel, unit.kernel)
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
    conv_ok, folded = True, False
    if convs and found.shortcut.conv is not None:
        index = convs[0]
        conv = _planned_conv(shortcut[index])
        bn_after = _followed_by(shortcut, index, "bn")
        # a pool on one side only (the plan's or the model's) has the stride the other's conv has: one finding (the
        # pool), not two
        stride = (found_pool is None) == (not pools)
        _check_conv(out, row, name, "shortcut", conv, found.shortcut.conv, stride=stride, bn_after=bn_after)
        folded = out.folded(found.shortcut.conv)
        conv_ok = found.shortcut.conv.bn_after == bn_after or folded
    if e_kind in ("identity", "projection") and conv_ok:
        # what else the shortcut path computes (a ReLU on the projection's output) is a finding (Sec. 3.3)
        expected_ops = tuple(layer.kind for layer in shortcut if layer.kind in ("conv", "bn")
                             and not (layer.kind == "bn" and convs and folded))  # fmt: skip
        ops = tuple(kind for kind in found.shortcut.ops if kind not in ("avgpool", "maxpool", "blur"))
        out.check(row, name, "shortcut path", _ops_text(expected_ops), _ops_text(ops))


def _pool_text(layer: Layer | None) -> str:
    """A planned pool as the reading names a found one (a blur pads by reflection, as the builder's)."""
    if layer is None:
        return "none"
    return pool_text(layer.detail, (layer.kernel,), layer.stride, layer.padding, layer.ceil_mode, layer.zero_fill,
                     "reflect" if layer.detail == "blur" else "", layer.padding + layer.extra_end)  # fmt: skip


def _spec_pool_text(pool: Pool | None) -> str:
    """A table's pool (the stem's, its anti-aliasing layer) as the reading names a found one."""
    if pool is None:
        return "none"
    return pool_text(pool.kind, (pool.kernel,), pool.stride, pool.padding, pool.ceil_mode, pool.zero_fill, "reflect",
                     pool.padding + pool.extra_end)  # fmt: skip


def _found_pool_text(pool: FoundPool | None) -> str:
    return "none" if pool is None else pool.text


def _check_anti_alias(out: _Collector, row: str, planned: PlannedBlock, found: FoundBlock) -> None:
    """The pool after each branch conv's activation (anti-aliasing: the plan's ``aa`` layer), where either side has
    one: its kind, window, stride and padding."""
    branch = [layer for layer in planned.layers if layer.role == "branch" and layer.kind in ("conv", "pool")]
    expected = [branch[i + 1] if i + 1 < len(branch) and branch[i + 1].kind == "pool" else None
                for i, layer in enumerate(branch) if layer.kind == "conv"]  # fmt: skip
    for i, (layer, unit) in enumerate(zip(expected, found.convs, strict=False)):
        if layer is not None or unit.anti_alias is not None:
            with out.at(unit.module):
                out.check(row, planned.spec.name, f"conv{i + 1}.anti-aliasing", _pool_text(layer),
                          _found_pool_text(unit.anti_alias))  # fmt: skip


def _check_addition(out: _Collector, row: str, name: str, found: FoundBlock, pre: bool, se: bool = False) -> None:
    """Post-activation: the branch's BN feeds the addition and a ReLU follows it; pre-activation: the branch's last
    conv feeds it and nothing follows (He et al. 2016, Fig. 4(e)).  With SE, its channel-wise scale feeds it.  In the
    inference form the last conv holds its BN."""
    folded = not pre and not se and bool(found.convs) and out.folded(found.convs[-1])
    end = "se" if se else "conv" if pre or folded else "bn"
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


def diff(alignment: Alignment) -> Structure:
    """Every difference between the aligned model and its table, at the alignment's input size.

    One cause that recurs through a row is one finding, with every place it occurs in ``blocks``.
    """
    spec, plan, found, size = alignment.spec, alignment.plan, alignment.found, alignment.input_size
    headless = alignment.headless
    holders = set(alignment.holders.values())
    holding = frozenset(index for index, place in alignment.places.items() if place.layer in holders)
    norm = "bn" if spec.group_norm is None else norm_label("group_norm", spec.group_norm)
    standardized = None if alignment.standardization_folded else spec.weight_standardization  # computed once: as is
    out = _Collector(holding=holding, folded_norms=frozenset(alignment.folded), norm=norm,
                     weight_standardization=standardized)  # fmt: skip
    expected_sizes = spec.row_output_sizes(*size)
    rows: list[RowView] = []
    param_rows: dict[str, str] = {}

    with out.at(alignment.where("conv1")):
        rows.append(_check_stem(out, plan.stem, found, _size(expected_sizes["conv1"]), param_rows))

    # conv2_x .. : the pool, then the stages, in the alignment's block order
    residual = spec.shortcut.residual
    for index, stage in enumerate(spec.stages):
        before = len(out.mismatches)
        pool_text = ("", "")
        group = [m for m in alignment.blocks if m.row == stage.name and m.found is not None]
        with out.at(alignment.where(stage.name)):
            if index == 0:
                pool_text = _check_pool(out, stage.name, spec, found)
            out.check(stage.name, None, "repeats", stage.repeats, len(group))
        for match in group:
            found_block = match.found
            if found_block is None:  # filtered above
                continue
            with out.at(match.module):
                if match.planned is not None:
                    order = alignment.path_orders.get(match.planned.spec.name)
                    _check_block(out, stage.name, match.planned, found_block, residual, order)
            param_rows.update({name: match.name or stage.name for name in found_block.params})
        last = group[-1].found if group else None
        found_output = _size(last.output_size) if last is not None else "-"
        with out.at(alignment.where(stage.name)):
            if last is not None:
                out.check(stage.name, None, "output", _size(expected_sizes[stage.name]), found_output)
                out.check(stage.name, None, "channels", stage.out_channels, last.out_channels)
        expected_text = _bracket([_cell(c) for c in stage.blocks[0].convs], stage.repeats)
        first = group[0].found if group else None
        found_text = _bracket([c.cell for c in first.convs], len(group)) if first is not None else "-"
        rows.append(RowView(stage.name, _size(expected_sizes[stage.name]), found_output, pool_text[0] + expected_text,
                            pool_text[1] + found_text, len(out.mismatches) == before))  # fmt: skip
    for conv in found.stray_convs:
        with out.at(conv.module):
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
    with out.at(alignment.where("fc")):
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
            if found.head.fc_transforms:
                out.check("fc", None, "fc.weight", _weight_text(None, ()),
                          _weight_text(None, found.head.fc_transforms[-1], found.head.fc_sources[-1]))  # fmt: skip
            _check_head_norm(out, plan.head, found, out.norm)
    param_rows.update({name: "fc" for name in found.fc_params})

    # operators outside the Table 1 view: findings between conv1 and the logits, notes outside
    notes: list[str] = []
    outside: dict[str, list[str]] = {}
    trace = found.trace
    for op in found.unexplained:
        if op.place == "body":
            row, block = _locate(op.index, alignment)
            with out.at(trace.ops[op.index].module if trace is not None else ""):
                out.check(row, block, "extra operator", "none", op.what)
        elif op.place == "logits" and op.what not in ("softmax", "view", "other") and not op.what.startswith("aten."):
            with out.at(trace.ops[op.index].module if trace is not None else ""):
                out.check("fc", None, "after the fc", "logits (a softmax at most)", op.what)
        else:
            outside.setdefault(op.place, []).append(op.what)
    if "input" in outside:
        notes.append("operators on the input before conv1 (input normalisation?), not part of Table 1: "
                     + ", ".join(dict.fromkeys(outside["input"])))  # fmt: skip
    if "logits" in outside:
        notes.append("operators after the fc, on the logits (Table 1 ends in softmax): "
                     + ", ".join(dict.fromkeys(outside["logits"])))  # fmt: skip
    rows.append(RowView("fc", "-" if headless else "1x1", "1x1" if found.head.pool else "-", expected_head, found_head,
                        len(out.mismatches) == before))  # fmt: skip

    # parameters: never used; one tensor in two places; per row where nothing else explains; the totals
    for name in found.unused_params:
        row = _row_of_unused(name, param_rows)
        block_name = row if row not in spec.rows and row != "model" else None
        stage_row = _stage_of(block_name, spec) if block_name else row
        with out.at(name.rpartition(".")[0]):
            out.check(stage_row, block_name, "unused parameter", "every parameter used in forward", name)
    _check_tied(out, alignment)
    counts = count(spec, size, num_classes=0 if headless else None, in_channels=alignment.plan.in_channels)
    expected_rows = {row: row_count.params for row, row_count in counts.rows.items()}
    for norm, bias in alignment.folded.items():  # the inference form: a BN's scale and shift are its conv's bias
        layer, holder = alignment.layer(norm), alignment.layer(alignment.holders[norm])
        expected_rows[layer.row] -= 2 * layer.out_shape[0]
        expected_rows[holder.row] += layer.out_shape[0] if bias else 0
    expected_params = sum(expected_rows.values())
    found_rows: dict[str, int] = dict.fromkeys(spec.rows, 0)
    for name, where in param_rows.items():
        stage_row = where if where in found_rows else _stage_of(where, spec)
        if stage_row in found_rows:
            found_rows[stage_row] += found.param_sizes.get(name, 0)
    explained_rows = {m.row for m in out.mismatches}
    if found.param_sizes:
        for row, row_params in expected_rows.items():
            if row not in explained_rows and row_params != found_rows[row]:
                with out.at(alignment.where(row)):
                    out.check(row, None, "params", row_params, found_rows[row])
    out.check("model", None, "params", expected_params, found.params)
    out.check("model", None, "MACs (conv+fc)", counts.total, found.macs)
    if found.other_ops:
        notes.append("operators the reader does not interpret: " + ", ".join(found.other_ops))
    complete = _complete(found)
    return Structure(tuple(_one_per_cause(out.mismatches)), tuple(rows), expected_params, counts.total, tuple(notes),
                     complete)  # fmt: skip


def _complete(found: FoundNetwork) -> bool:
    """Whether the reader understands every operator from the stem conv to the logits: what it does not know there
    (a matrix product it cannot read as a conv, an unknown elementwise op) leaves the structure unable to decide."""
    trace = found.trace
    if trace is None or found.stem is None:
        return not found.other_ops
    end = found.head.fc_ops[-1] if found.head.fc_ops else len(trace.ops) - 1
    # squeeze-and-excitation's gate and scale; a selective-kernel unit's split, stack, sums and product
    interpreted = {i for block in found.blocks for i in block.se_ops}
    interpreted |= {i for block in found.blocks if block.selective_kernel for i in block.selective_kernel.ops}
    body = trace.ops[found.stem.index : end + 1]
    return not any(op.kind in ("other", "affine") and op.index not in interpreted for op in body)


def _check_tied(out: _Collector, alignment: Alignment) -> None:
    """Tensors that fill the planned tensors of two layers: one degree of freedom where the table has two.  One
    finding per pair of layers, at the later one, naming the earlier one (in the same block: by its name there)."""
    pairs: dict[tuple[str, str], list[str]] = {}
    for name, slots in alignment.tensors.items():
        layers = list(dict.fromkeys(slot.layer for slot in slots))
        for other in layers[1:]:
            pairs.setdefault((layers[0], other), []).append(name)
    for (first, other), names in pairs.items():
        layer, earlier = alignment.layer(other), alignment.layer(first)
        shown = _relative(earlier) if earlier.block == layer.block and layer.block else first
        with out.at(names[0].rpartition(".")[0]):
            out.check(layer.row, layer.block, f"{_relative(layer)}.tied", f"its own {layer.kind} parameters",
                      f"the tensors of {shown}")  # fmt: skip


def _relative(layer: Layer) -> str:
    """A planned layer's name inside its block ("bn2" for "layer1.0.bn2"); its full name outside blocks."""
    return layer.name.split(".", 2)[-1] if layer.block is not None else layer.name


def _check_head_norm(out: _Collector, planned: tuple[Layer, ...], found: FoundNetwork, norm: str) -> None:
    """A pre-activation net's final BN-ReLU before the global pool (He et al. 2016); nothing there otherwise."""
    kinds = (norm if layer.kind == "bn" else layer.kind for layer in planned if layer.kind in ("bn", "relu"))
    expected = " -> ".join(kinds) or "none"
    found_text = " -> ".join("relu" if k == "relu" else k for k in found.head.norm) or "none"
    out.check("fc", None, "before the pool", expected, found_text)


def _locate(index: int, alignment: Alignment) -> tuple[str, str | None]:
    """The row and block an operator at ``index`` of the trace sits in (or just before)."""
    matches = [(m, m.found) for m in alignment.blocks if m.found is not None]
    for position, (match, found) in enumerate(matches):
        if index <= found.span[1]:
            if index < found.span[0] and position == 0:
                return (match.row, None)
            return (match.row, match.name)
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
            module = common_module(g.module for g in group)
            merged.append(Mismatch(m.row, None, key[1], m.expected, m.found, places, module, m.kind))
    return merged


def _fill_text(zero_fill: bool) -> str:
    return "padding zeros" if zero_fill else "padding -inf (never the maximum)"


def _check_pool(out: _Collector, row: str, spec: ResNetSpec, found: FoundNetwork) -> tuple[str, str]:
    """The stem pool, which Table 1 prints in the conv2_x row.  Returns its (expected, found) text."""
    pool, found_pool = spec.stem.pool, found.stem_pool
    expected = _spec_pool_text(pool)
    found_text = _found_pool_text(found_pool)
    if pool is None or found_pool is None:
        out.check(row, None, "pool", expected, found_text)
    else:
        out.check(row, None, "pool.kind", pool.kind, found_pool.kind)
        out.check(row, None, "pool.kernel", _pair(pool.kernel), found_pool.kernel)
        out.check(row, None, "pool.stride", _pair(pool.stride), found_pool.stride)
        out.check(row, None, "pool.padding", _pair(pool.padding), found_pool.padding)
        out.check(row, None, "pool.ceil_mode", pool.ceil_mode, found_pool.ceil_mode)
        if pool.kind == "max" and found_pool.kind == "max" and (pool.padding or any(found_pool.padding)):
            out.check(row, None, "pool.fill", _fill_text(pool.zero_fill), _fill_text(found_pool.zero_fill))
    alias, found_alias = spec.stem.anti_alias, found.stem_anti_alias
    if alias is not None or found_alias is not None:  # anti-aliasing: the stride moved to a blur after the pool
        expected_alias = _spec_pool_text(alias)
        out.check(row, None, "pool.anti-aliasing", expected_alias, _found_pool_text(found_alias))
        expected = f"{expected}, then {expected_alias}"
        found_text = f"{found_text}, then {_found_pool_text(found_alias)}"
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
