"""Reader: rebuild the Table 1 view of a network (stem, stages of blocks, head) from its :class:`Trace`.

Nothing here looks at attribute names: blocks are found from the dataflow.  A residual block is an addition
whose two inputs share an ancestor (the block's input); the path with the convolutions is the residual branch,
the other is the shortcut, classified as identity (no operator), projection (a convolution) or zero-pad (no
parameters, more channels or a smaller map: option A).  A network without additions is read as a chain of
convolutions, which the diff cuts into blocks of the table's size.  Rows are named by position as in the paper:
conv1, conv2_x, conv3_x, ..., fc; blocks conv2_1, conv2_2, ...
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType

from ._canonical import canonicalise, keep_outputs
from ._trace import Const, Op, Trace

__all__ = [
    "ConvUnit", "FoundBlock", "FoundHead", "FoundNetwork", "FoundOp", "FoundPool", "FoundSelectiveKernel",
    "FoundShortcut", "norm_kind", "norm_label", "pool_text", "read_trace", "standardization_eps",
]  # fmt: skip

_PASS_THROUGH = frozenset({"view"})  # operators that neither compute nor end a unit
_NORMS = frozenset({"bn", "norm"})
_ACTIVATING = frozenset({"relu", "activation"})


@dataclass(frozen=True)
class ConvUnit:
    """A convolution with what directly follows it: ``conv -> norm? -> activation?``."""

    kernel: tuple[int, ...]
    stride: tuple[int, ...]
    padding: tuple[int, ...]
    dilation: tuple[int, ...]
    groups: int
    in_channels: int
    out_channels: int
    bias: bool
    output_size: tuple[int, int]
    bn_after: bool  # a batch norm reads the conv's output
    activation_after: str | None  # "relu", another function's name, or None: what reads the BN (or conv) output
    module: str  # the module that ran it, for messages
    end: int  # the value the unit ends with (after the activation, else the BN, else the conv)
    params: tuple[str, ...]  # the conv's and its BN's parameters
    norm_after: str | None = None  # "bn", "group_norm", "layer_norm" ...: the normalisation reading the conv
    norm_affine: bool = True  # the normalisation has a learned scale and shift (BN(affine=False) has not)
    # without a learned one, it reads a scale and shift held as buffers besides its statistics (a frozen batch norm)
    norm_fixed_affine: bool = False
    index: int = -1  # the conv's position in the trace
    members: tuple[int, ...] = ()  # positions of the unit's ops (conv, norm, activation)
    norm_params: tuple[str, ...] = ()  # the normalisation's parameters (a subset of params)
    # What computes the weight the conv applies from its parameter (views left out): () for the parameter itself;
    # ("var_mean", "sub", "add(1e-10)", "sqrt", "div") for weight standardisation written by hand.
    weight_transform: tuple[str, ...] = ()
    weight_sources: tuple[str, ...] = ()  # the parameters that weight is computed from (a gain besides the weight)
    # a pool right after the unit on a block's branch (anti-aliasing: the stride moved from the conv to a blur or an
    # average pool after its activation), and its position in the trace
    anti_alias: FoundPool | None = None
    anti_alias_op: int = -1

    @property
    def weight_standardization(self) -> float | None:
        """The epsilon of the weight standardisation the conv's weight transform computes (None: not one): the
        transform normalises by a variance (var, std, a batch norm over the weights) and adds this to it."""
        return standardization_eps(self.weight_transform)

    @property
    def norm(self) -> str | None:
        """The normalisation reading the conv ("bn", "group_norm", ...), None where none does."""
        return self.norm_after or ("bn" if self.bn_after else None)

    @property
    def cell(self) -> str:
        """The paper's notation, with the stride when it is not 1: '3x3, 64' or '1x1, 128 /2'."""
        text = f"{'x'.join(str(k) for k in self.kernel)}, {self.out_channels}"
        return text if max(self.stride) == 1 else f"{text} /{max(self.stride)}"


@dataclass(frozen=True)
class FoundPool:
    kind: str  # "max", "avg" or "blur" (a fixed filter on each channel: see the equivalence blur.fixed_filter)
    kernel: tuple[int, ...]
    stride: tuple[int, ...]
    padding: tuple[int, ...]
    ceil_mode: bool
    zero_fill: bool = False  # a max pool padded with zeros (an explicit zero pad before it) on a map that may be < 0
    fill: str = ""  # a blur's padding: "reflect" or "zeros"
    padding_end: tuple[int, ...] = ()  # the padding after the map (bottom, right) where it is not ``padding``

    @property
    def text(self) -> str:
        """'3x3 max pool /2 pad 1', with ', ceil mode' when the output size rounds up (', zeros' when the
        padding of a max pool is zeros, not -inf); a blur's padding 'reflected' or 'zeros'."""
        end = self.padding_end[0] if self.padding_end else self.padding[0]
        return pool_text(self.kind, self.kernel, self.stride[0], self.padding[0], self.ceil_mode,
                         self.zero_fill, self.fill, end)  # fmt: skip


def pool_text(kind: str, kernel: tuple[int, ...], stride: int, padding: int, ceil_mode: bool = False,
              zero_fill: bool = False, fill: str = "", padding_end: int | None = None) -> str:  # fmt: skip
    """How the reading and the diff name a pool: '3x3 max pool /2 pad 1', '3x3 blur pool /2 pad 1, reflected', '4x4
    blur pool /2 pad 1 before, 2 after, reflected' (``padding_end``: the padding after the map, where it differs)."""
    text = f"{kernel[0]}x{kernel[-1]} {kind} pool /{stride} pad {padding}"
    text += f" before, {padding_end} after" if padding_end is not None and padding_end != padding else ""
    text += (", ceil mode" if ceil_mode else "") + (", zeros" if zero_fill else "")
    return text + ({"reflect": ", reflected", "zeros": ", zero-padded"}.get(fill, "") if kind == "blur" else "")


@dataclass(frozen=True)
class FoundShortcut:
    """What the other input of a block's addition is."""

    kind: str  # identity, projection, zero_pad, other
    conv: ConvUnit | None  # the projection's conv
    ops: tuple[str, ...]  # the operator kinds on the shortcut path, in order (for messages)
    pool: FoundPool | None = None  # a pooling on the shortcut path (ResNet-D: 2x2 average pool before the 1x1)


@dataclass(frozen=True)
class FoundSelectiveKernel:
    """A selective-kernel unit read from a branch (Li et al. 2019): paths whose outputs are stacked, weighed by a
    softmax across them that an attention computes from their sum, and summed."""

    paths: tuple[ConvUnit, ...]  # each path's conv with its norm and activation, in the order they are stacked
    attn: tuple[ConvUnit, ...]  # the attention's convs between the squeeze and the softmax (fc_reduce, fc_select)
    split: bool  # each path reads its own part of the unit's input (a split, chunk or slices), not all of it
    in_channels: int  # the unit's input channels
    at: int  # its place among the block's branch convs (FoundBlock.convs[at] stands for it)
    # positions in the trace: the split's parts, the squeeze (the stack, the paths' sum, the pool), the selection
    # (views, the softmax, the product and the sum across the paths)
    split_ops: tuple[int, ...] = ()
    squeeze_ops: tuple[int, ...] = ()
    select_ops: tuple[int, ...] = ()
    softmax_dim: int = -1  # the dimension the softmax normalises, of its input's shape
    selector: str = "softmax"  # what turns the attention into the paths' weights: a softmax, or another function
    input_value: int = -1  # the value the unit reads (that its split splits)
    output: int = -1  # the value it ends with

    def stand_in(self, path: int = 0) -> ConvUnit:
        """The unit in its block's conv sequence: one of its paths (the first), reading the unit's input and ending
        where the unit ends."""
        return replace(self.paths[path], in_channels=self.in_channels, end=self.output)

    @property
    def ops(self) -> tuple[int, ...]:
        """The positions of all its ops."""
        units = (*self.paths, *self.attn)
        return (*self.split_ops, *(i for unit in units for i in unit.members), *self.squeeze_ops, *self.select_ops)


@dataclass(frozen=True)
class FoundBlock:
    """A block read from the trace: its branch convs, its shortcut and what surrounds the addition."""

    convs: tuple[ConvUnit, ...]
    shortcut: FoundShortcut | None  # None: a plain block (no addition)
    relu_after_add: bool
    branch_end: str  # the operator kind that feeds the addition from the branch ("bn" in the paper)
    output_size: tuple[int, int]
    out_channels: int
    params: frozenset[str]
    span: tuple[int, int] = (-1, -1)  # positions of the block's first and last op in the trace
    # Pre-activation (He et al. 2016): the BN/ReLU kinds between the block's input and its first conv that belong
    # to no earlier unit, e.g. ("bn", "relu"); and whether the shortcut reads their output instead of the input.
    preactivation: tuple[str, ...] = ()
    shortcut_reads_preactivation: bool = False
    se: tuple[ConvUnit, ...] = ()  # squeeze-and-excitation's convs on the branch (Hu et al. 2018), in order
    # Where the block sits in the trace: the value it reads, the value it returns, its addition and the ReLU after
    # it (-1 where none), the ops of its pre-activation, of its shortcut path and of its squeeze-and-excitation.
    input_value: int = -1
    output_value: int = -1
    add_index: int = -1
    relu_index: int = -1
    preactivation_ops: tuple[int, ...] = ()
    shortcut_ops: tuple[int, ...] = ()
    se_ops: tuple[int, ...] = ()
    selective_kernel: FoundSelectiveKernel | None = None  # a unit in place of the conv ``convs[unit.at]``


@dataclass(frozen=True)
class FoundHead:
    pool: str | None  # "avg", "max" (global), or None
    fc: tuple[int, ...]  # out_features of each linear layer after the last block
    in_features: int | None
    present: bool = True  # False: the model returns feature maps (a backbone), not logits
    fc_bias: tuple[bool, ...] = ()  # whether each linear layer has a bias
    norm: tuple[str, ...] = ()  # BN/ReLU kinds between the last block and the global pool (pre-activation nets)
    norm_ops: tuple[int, ...] = ()  # their positions in the trace
    pool_op: int = -1  # the global pool's position, -1 where none
    fc_ops: tuple[int, ...] = ()  # the linear layers' positions
    logits: int = -1  # the value the classifier computes (-1: a backbone); the model may apply a softmax after it
    # what computes each linear layer's weight from its parameter (as ConvUnit.weight_transform): () as learned
    fc_transforms: tuple[tuple[str, ...], ...] = ()
    fc_sources: tuple[tuple[str, ...], ...] = ()  # the parameters each linear layer's weight is computed from


@dataclass(frozen=True)
class FoundOp:
    """An operator the Table 1 view does not explain, and where it sits."""

    index: int  # its position in the (canonical) trace
    what: str  # e.g. "dropout", "relu", "aten.mul.Tensor"
    place: str  # "input" (before conv1), "body" (between conv1 and the logits), "logits" (after the fc)


@dataclass(frozen=True)
class FoundNetwork:
    """The Table 1 view of a traced model."""

    input_shape: tuple[int, ...]
    stem: ConvUnit | None  # the first conv of the stem
    stem_pool: FoundPool | None
    blocks: tuple[FoundBlock, ...]  # empty when the network has no additions (read `chain` instead)
    chain: tuple[ConvUnit, ...]  # main-path convs after the stem, in order (branch convs, no shortcut convs)
    head: FoundHead
    params: int  # all parameters the model owns
    unused_params: tuple[str, ...]
    macs: int  # multiply-adds of conv and linear operators, at the traced input, for one image
    stray_convs: tuple[ConvUnit, ...]  # convs that are neither stem, branch, shortcut nor head
    other_ops: tuple[str, ...]  # ATen operators the reader does not know, on any path
    fc_params: tuple[str, ...]  # parameters read by the head's linear layers
    unexplained: tuple[FoundOp, ...] = ()  # operators outside the Table 1 view, with where they sit
    param_sizes: Mapping[str, int] = field(default_factory=dict)  # parameter name -> numel
    notes: tuple[str, ...] = ()  # how the model was traced (the CPU fallback), which output was read
    stem_convs: tuple[ConvUnit, ...] = ()  # every conv before the first block and the stem pool (a deep stem's 3)
    stem_pool_op: int = -1  # the stem pool's position in the trace, -1 where none
    # a second pool reading the stem pool's map (anti-aliasing: a max pool at stride 1, then a blur), and its position
    stem_anti_alias: FoundPool | None = None
    stem_anti_alias_op: int = -1
    trace: Trace | None = None  # the canonical trace it was read from (positions and values refer to it)


def read_trace(trace: Trace) -> FoundNetwork:
    """Rebuild the Table 1 view (stem, blocks, head, totals) of a traced model.

    The trace is canonicalised first (:func:`resnet_spec.verify._canonical.canonicalise`).  When the forward returns
    several tensors, the logits are the one a linear layer computes (through activations or a softmax after it);
    when none does, the model is read as a headless backbone of all the feature maps it returns.
    """
    trace = canonicalise(trace)
    logits = _logits(trace)
    notes = list(trace.notes)
    if logits is not None and len(trace.outputs) > 1:
        trace = keep_outputs(trace, (logits,))
        notes.append("the forward returns several tensors: the logits read are the one the fc computes")
    ops = trace.ops
    convs = [op for op in ops if op.kind == "conv"]
    units = {op.index: _unit(trace, op) for op in convs}
    # a selective-kernel unit's own additions (its paths' sum, its weighted sum) close no block
    everywhere = {op.index for op in ops}
    inner = {i for op in ops if _selector(op) and (sk := _unit_at(trace, op, everywhere, units)) is not None
             for i in (*sk.squeeze_ops, *sk.select_ops)}  # fmt: skip
    adds = [op for op in ops if op.kind == "add" and op.index not in inner]

    reads: list[_BlockRead] = []
    in_blocks: set[int] = set()
    branch_convs: set[int] = set()
    explained: set[int] = set()
    for add in adds:
        found = _read_block(trace, add, units)
        if found is not None:
            reads.append(found)
            in_blocks |= found.members
            branch_convs |= found.branch_convs
            explained |= found.explained

    stem = units[convs[0].index] if convs else None
    last_block_end = max(in_blocks) if in_blocks else _unit_end_index(trace, units, convs)
    first_body = min(in_blocks) if in_blocks else (convs[1].index if len(convs) > 1 else len(ops))
    # a plain net (no additions) is one chain of convs: its stem ends at its pool, wherever that pool is
    pool_end = first_body if in_blocks else (convs[-1].index if convs else len(ops))
    stem_pool, pool_index = _stem_pool(ops, convs[0].index if convs else len(ops), pool_end)
    if stem_pool is not None:
        explained.add(pool_index)
    stem_alias = _pool_after(trace, ops[pool_index].output) if stem_pool is not None else None
    if stem_alias is not None:
        explained.add(stem_alias.index)
    stem_end = pool_index if not in_blocks and stem_pool is not None else min(first_body, pool_index)
    stem_indices = {op.index for op in convs if op.index < stem_end}
    stem_convs = tuple(units[i] for i in sorted(stem_indices))
    chain: list[ConvUnit] = []
    stray: list[ConvUnit] = []
    for op in convs:
        if op.index in stem_indices:
            continue
        if not reads or op.index in branch_convs:
            chain.append(units[op.index])
        elif op.index not in in_blocks:
            stray.append(units[op.index])
    for unit in units.values():
        explained.update(unit.members)
    blocks, pre_ops = _with_preactivation(trace, reads, stem_convs)
    explained |= pre_ops

    head, head_ops, logits_index = _read_head(trace, last_block_end, logits is not None)
    explained |= head_ops
    stray = [unit for unit in stray if unit.index not in head.fc_ops]
    stem_index = convs[0].index if convs else len(ops)
    unexplained = []
    for op in ops:
        if op.index in explained:
            continue
        place = "input" if op.index < stem_index else "logits" if op.index > logits_index else "body"
        unexplained.append(FoundOp(op.index, _what(op), place))
    known = {"conv", "bn", "norm", "relu", "activation", "add", "maxpool", "avgpool", "global_pool", "mean",
             "adaptive_avgpool", "adaptive_maxpool", "linear", "pad", "edge_pad", "cat", "view", "dropout",
             "softmax", "blur"}  # fmt: skip
    recognised = {i for read in reads for i in read.recognised}
    other = tuple(sorted({_what(op) if op.aten.startswith("resnet_spec.") else op.aten for op in ops
                          if op.kind not in known and op.inputs and op.index not in recognised}))  # fmt: skip
    macs = sum(int(op.attrs.get("macs", 0)) for op in ops if op.kind in ("conv", "linear", "blur"))
    return FoundNetwork(
        input_shape=trace.input_shape,
        stem=stem,
        stem_pool=stem_pool,
        blocks=tuple(blocks),
        chain=tuple(chain),
        head=head,
        params=sum(trace.params.values()),
        unused_params=trace.unused_params,
        macs=macs,
        stray_convs=tuple(stray),
        other_ops=other,
        fc_params=tuple(
            name
            for op in trace.ops[last_block_end + 1 :]
            if op.kind == "linear" or op.index in head_ops
            for name in op.params
        ),
        unexplained=tuple(unexplained),
        param_sizes=MappingProxyType(dict(trace.params)),
        notes=tuple(notes),
        stem_convs=stem_convs,
        stem_pool_op=pool_index if stem_pool is not None else -1,
        stem_anti_alias=_pool(stem_alias) if stem_alias is not None else None,
        stem_anti_alias_op=stem_alias.index if stem_alias is not None else -1,
        trace=trace,
    )


def _unit_end_index(trace: Trace, units: dict[int, ConvUnit], convs: list[Op]) -> int:
    """Where the last conv unit (conv, BN, activation) ends: the head comes after it."""
    if not convs:
        return -1
    return trace.producers.get(units[convs[-1].index].end, convs[-1].index)


def _stem_pool(ops: tuple[Op, ...], start: int, end: int) -> tuple[FoundPool | None, int]:
    """The first pool between the stem's first conv and the body, and its index (``end`` when there is none)."""
    for op in ops[start:end]:
        if op.kind in ("maxpool", "avgpool") or (op.kind == "global_pool" and "kernel" in op.attrs):
            return _pool(op), op.index  # a windowed pool, even where the map it pools is already 1x1
    return None, end


def _what(op: Op) -> str:
    """How a finding names an operator: its kind when the reader knows it, else its ATen overload."""
    if op.kind == "activation":
        return str(op.attrs.get("function", op.name))
    if op.aten.startswith("resnet_spec.onnx_operator") and len(op.operands) > 2:
        return f"ONNX {op.operands[1][1]} (node {op.operands[2][1]!r})"  # a graph's operator the interpreter lacks
    if op.kind in ("other", "affine"):
        return op.aten
    if op.kind == "edge_pad":  # reflect or replicate: another function at the borders than a zero padding
        return f"{op.attrs.get('mode')} pad {tuple(op.attrs.get('pad', ()))}"
    return op.kind


def _pool(op: Op) -> FoundPool:
    maximum = op.kind == "maxpool" or op.attrs.get("function") == "max"
    kind = "blur" if op.kind == "blur" else "max" if maximum else "avg"
    return FoundPool(
        kind,
        op.attrs["kernel"],
        op.attrs["stride"],
        op.attrs["padding"],
        op.attrs["ceil_mode"],
        bool(op.attrs.get("zero_fill", False)),
        str(op.attrs.get("fill", "")),
        tuple(op.attrs.get("padding_end", op.attrs["padding"])),
    )


_WINDOWED = ("maxpool", "avgpool", "blur")


def _pool_after(trace: Trace, value: int) -> Op | None:
    """The windowed pool (max, average, blur) that alone reads ``value``, or None."""
    op = _only_reader(trace, value)
    return op if op is not None and op.kind in _WINDOWED and "kernel" in op.attrs else None


def _logits(trace: Trace) -> int | None:
    """The output a linear layer computes (looking back through single-input ops after it), or a 1x1 conv right
    before a global pool (the classifier applied before pooling: the same function), or None."""
    for value in trace.outputs:
        op = trace.producer(value)
        for _ in range(8):
            if op is not None and op.kind == "global_pool" and op.inputs:
                source = trace.producer(op.inputs[0])
                return value if source is not None and _classifier_before_pool(trace, source) else None
            if op is None or op.kind in ("conv", "add"):
                break
            if op.kind == "linear":
                return value
            op = trace.producer(op.inputs[0]) if len(op.inputs) == 1 else None
    return None


def _classifier_before_pool(trace: Trace, op: Op) -> bool:
    """A 1x1 conv whose only reader is a global pool: a classifier applied to every position, then averaged."""
    reader = _only_reader(trace, op.output)
    return (op.kind == "conv" and op.attrs.get("kernel") == (1, 1) and op.attrs.get("groups") == 1
            and reader is not None and reader.kind == "global_pool")  # fmt: skip


def _only_reader(trace: Trace, value: int) -> Op | None:
    """The op that reads ``value``, looking through views; None when zero or several ops read it."""
    while True:
        readers = list(trace.readers(value))
        if len(readers) != 1:
            return None
        op = readers[0]
        if op.kind not in _PASS_THROUGH:
            return op
        value = op.output


_VARIANCES = ("var", "std", "batch_norm")  # reductions a standardisation divides by (var_mean, std_mean, ...)


def standardization_eps(transform: tuple[str, ...]) -> float | None:
    """The epsilon of a weight standardisation from the steps that compute a conv's weight (see
    :attr:`ConvUnit.weight_transform`), or None where they compute no standardisation.  A batch norm over the
    weights carries its epsilon last; a standardisation written by hand adds it to the variance (or the deviation).
    The reading names what differs; the functional check decides whether it is the same function."""
    names = [step.partition("(")[0] for step in transform]
    # a variance spelled out, as exporters write it: the mean of the squared deviations, then its square root
    spelled = "mean" in names and any(n in names for n in ("pow", "mul", "square")) and \
        any(n in names for n in ("sqrt", "rsqrt")) and any(n in names for n in ("sub", "rsub"))  # fmt: skip
    eps: float | None = None
    varied = False
    for step in transform:
        name, _, numbers = step.partition("(")
        values = [float(v) for v in numbers.rstrip(")").split(",") if v.strip()] if numbers else []
        if any(word in name for word in _VARIANCES) or (spelled and name == "mean"):
            varied = True
            if "batch_norm" in name and values:
                eps = values[-1]
        elif varied and eps is None and name in ("add", "add_") and values:
            eps = values[0]
    return (eps if eps is not None else 0.0) if varied else None


def norm_kind(op: Op) -> str:
    """How a normalisation operator reads: "bn", "group_norm(32)" (with its groups), "layer_norm" ...; an
    activation's kind for a ReLU or another activation."""
    if op.kind != "norm":
        return op.kind
    groups = op.attrs.get("groups")
    return norm_label(str(op.attrs.get("function", op.name)), None if groups is None else int(groups))


def norm_label(function: str, groups: int | None = None) -> str:
    """A normalisation as the reading and the diff name it: "group_norm(32)" with its groups, else the function."""
    return function if groups is None else f"{function}({groups})"


def _unit(trace: Trace, conv: Op) -> ConvUnit:
    norm = None
    affine = True
    fixed_affine = False
    norm_params: tuple[str, ...] = ()
    activation = None
    end = conv.output
    params = list(conv.params)
    members = [conv.index]
    after = _only_reader(trace, conv.output)
    if after is not None and after.kind in _NORMS:
        norm = norm_kind(after)
        affine = bool(after.params)
        fixed_affine = not after.params and len(after.buffers) > 2  # weight and bias besides mean and variance
        norm_params = after.params
        end = after.output
        params.extend(after.params)
        members.append(after.index)
        after = _only_reader(trace, after.output)
    if after is not None and after.kind in _ACTIVATING:
        activation = "relu" if after.kind == "relu" else str(after.attrs.get("function", after.aten))
        end = after.output
        members.append(after.index)
    a = conv.attrs
    return ConvUnit(
        kernel=a["kernel"],
        stride=a["stride"],
        padding=a["padding"],
        dilation=a["dilation"],
        groups=a["groups"],
        in_channels=a["in_channels"],
        out_channels=a["out_channels"],
        bias=a["bias"],
        output_size=(conv.shape[-2], conv.shape[-1]),
        bn_after=norm == "bn",
        activation_after=activation,
        module=conv.module,
        end=end,
        params=tuple(params),
        norm_after=norm,
        norm_affine=affine,
        norm_fixed_affine=fixed_affine,
        index=conv.index,
        members=tuple(members),
        norm_params=tuple(norm_params),
        weight_transform=_weight(conv).transform,
        weight_sources=_weight(conv).params,
    )


def _weight(conv: Op) -> Const:
    """What a conv's weight operand is (the steps that compute it, the parameters it comes from); an empty Const
    where the weight is an activation (a weight computed from the input)."""
    if len(conv.operands) < 2 or conv.operands[1][0] != "const":
        return Const(())
    return conv.operands[1][1]


def _matrix(linear: Op) -> Const:
    """What a linear layer's weight operand is (its first operand of two or more dimensions, whichever argument the
    operator takes it as); an empty Const where there is none."""
    return next((c for kind, c in linear.operands if kind == "const" and len(c.shape) >= 2), Const(()))


def _common_ancestor(trace: Trace, a: int, b: int) -> int | None:
    """The latest value both ``a`` and ``b`` are computed from (searching backwards in execution order)."""
    position = {v: (trace.producers.get(v, -1)) for v in (a, b)}
    heap = [(-position[a], a, 0), (-position[b], b, 1)]
    seen: tuple[set[int], set[int]] = (set(), set())
    while heap:
        _, value, side = heapq.heappop(heap)
        if value in seen[side]:
            continue
        seen[side].add(value)
        if value in seen[1 - side]:
            return value
        producer = trace.producer(value)
        if producer is None:
            continue
        for source in producer.inputs:
            heapq.heappush(heap, (-trace.producers.get(source, -1), source, side))
    return None


def _path_ops(trace: Trace, end: int, start: int) -> list[Op]:
    """Ops computing ``end`` from ``start`` (exclusive), in execution order; constants feeding them included."""
    start_index = trace.producers.get(start, -1)
    found: dict[int, Op] = {}
    stack = [end]
    while stack:
        value = stack.pop()
        if value == start:
            continue
        op = trace.producer(value)
        if op is None or op.index <= start_index or op.index in found:
            continue
        found[op.index] = op
        stack.extend(op.inputs)
    return [found[i] for i in sorted(found)]


@dataclass(frozen=True)
class _BlockRead:
    """What reading one addition gives, before the blocks are put in context."""

    block: FoundBlock
    members: set[int]  # indices of all its ops
    branch_convs: set[int]  # indices of its branch convs
    explained: set[int]  # indices of the ops the block view explains (addition, ReLU after it, shortcut, SE)
    start: int  # the value both paths are computed from
    first_input: int | None  # the value the first branch conv reads
    output: int  # the block's output value (after the ReLU that follows the addition, if any)
    recognised: set[int]  # ops of the block the reader interprets beyond the known kinds (SE's gate and product)


_NORM_KINDS = ("bn", "norm", "relu", "activation")


def _norm_before(trace: Trace, value: int, owned: set[int]) -> tuple[list[str], set[int]]:
    """BN/activation kinds computing ``value`` back to a value in ``owned`` or to any other op, and their indices."""
    kinds: list[str] = []
    indices: set[int] = set()
    while value not in owned:
        op = trace.producer(value)
        if op is None or op.kind not in _NORM_KINDS or not op.inputs:
            break
        kinds.append(norm_kind(op))
        indices.add(op.index)
        value = op.inputs[0]
    return kinds[::-1], indices


def _with_preactivation(
    trace: Trace, reads: list[_BlockRead], stem_convs: tuple[ConvUnit, ...]
) -> tuple[list[FoundBlock], set[int]]:
    """Each block with its pre-activation: the BN-ReLU before its first conv that the stem's unit or an earlier
    block's output does not already own (He et al. 2016's BN-ReLU-conv units), and what its shortcut reads.
    Returns the blocks and the indices of the pre-activation ops."""
    owned = {read.output for read in reads} | ({stem_convs[-1].end} if stem_convs else set())
    blocks = []
    indices: set[int] = set()
    for read in reads:
        kinds: list[str] = []
        found: set[int] = set()
        if read.first_input is not None:
            kinds, found = _norm_before(trace, read.first_input, owned)
            indices |= found
        shortcut = read.block.shortcut
        reads_pre = (
            bool(kinds) and shortcut is not None and shortcut.kind != "identity" and read.start == read.first_input
        )
        params = (
            read.block.params | {name for i in found for name in trace.ops[i].params} if kinds else read.block.params
        )
        blocks.append(
            replace(
                read.block, preactivation=tuple(kinds), shortcut_reads_preactivation=reads_pre,
                params=frozenset(params), preactivation_ops=tuple(sorted(found)),
            )
        )  # fmt: skip
    return blocks, indices


def _read_block(trace: Trace, add: Op, units: dict[int, ConvUnit]) -> _BlockRead | None:
    """The block an addition closes, with the indices of its ops, of its branch convs and of what it explains."""
    left, right = add.inputs
    start = _common_ancestor(trace, left, right)
    if start is None:
        return None
    paths = (_path_ops(trace, left, start), _path_ops(trace, right, start))
    conv_counts = [sum(op.kind == "conv" for op in path) for path in paths]
    branch_side = 0 if conv_counts[0] >= conv_counts[1] else 1
    branch, shortcut_path = paths[branch_side], paths[1 - branch_side]
    branch_value = add.inputs[branch_side]
    sk = _selective_kernel(trace, branch, units)
    sk_members = set(sk.ops) if sk is not None else set()
    se_members, se_convs, scale = _squeeze_excitation(trace, [op for op in branch if op.index not in sk_members])
    on_branch = {op.index for op in branch}
    branch_convs = tuple(_with_anti_alias(trace, units[op.index], on_branch) for op in branch
                         if op.kind == "conv" and op.index not in se_members | sk_members)  # fmt: skip
    if sk is not None:  # the unit stands in the branch's conv sequence as its first path, ending where it ends
        at = sum(unit.index < sk.paths[0].index for unit in branch_convs)
        sk = replace(sk, at=at)
        branch_convs = (*branch_convs[:at], sk.stand_in(), *branch_convs[at:])
    alias_ops = {unit.anti_alias_op for unit in branch_convs if unit.anti_alias is not None}

    shortcut_convs = [op for op in shortcut_path if op.kind == "conv"]
    computing = tuple(op.kind for op in shortcut_path if op.kind != "view")
    start_op = trace.producer(start)
    start_shape = start_op.shape if start_op is not None else trace.input_shape
    pools = [op for op in shortcut_path if op.kind in _WINDOWED]
    pool = _pool(pools[0]) if pools else None
    if shortcut_convs:
        shortcut = FoundShortcut("projection", units[shortcut_convs[0].index], computing, pool)
    elif not computing and add.shape == tuple(start_shape):
        shortcut = FoundShortcut("identity", None, ())
    elif not any(op.params for op in shortcut_path) and (
        add.shape != tuple(start_shape) or set(computing) <= {"pad", "cat"}  # option A on a 1x1 map: a no-op pad
    ):
        shortcut = FoundShortcut("zero_pad" if {"pad", "cat"} & set(computing) else "other", None, computing, pool)
    else:
        shortcut = FoundShortcut("other", None, computing, pool)

    end_op = trace.producer(branch_value)
    while end_op is not None and end_op.kind == "view":
        end_op = trace.producer(end_op.inputs[0]) if end_op.inputs else None
    after = _only_reader(trace, add.output)
    relu_after = after is not None and after.kind == "relu"
    output = after if relu_after and after is not None else add
    members = {op.index for op in (*branch, *shortcut_path, add)} | ({output.index} if relu_after else set())
    params = frozenset(name for i in members for name in trace.ops[i].params)
    explained = {add.index, output.index} | {op.index for op in shortcut_path} | se_members | alias_ops | sk_members
    first = next((op for op in branch if op.kind == "conv" and op.index not in se_members), None)
    branch_end = end_op.kind if end_op is not None else "input"
    block = FoundBlock(
        convs=branch_convs,
        shortcut=shortcut,
        relu_after_add=relu_after,
        branch_end="se" if scale is not None and end_op is not None and end_op.index == scale else branch_end,
        output_size=(add.shape[-2], add.shape[-1]),
        out_channels=add.shape[1],
        params=params,
        span=(min(members), max(members)),
        se=tuple(units[i] for i in se_convs),
        input_value=start,
        output_value=output.output,
        add_index=add.index,
        relu_index=output.index if relu_after else -1,
        shortcut_ops=tuple(op.index for op in shortcut_path),
        se_ops=tuple(sorted(se_members)),
        selective_kernel=sk,
    )
    first_input = first.inputs[0] if first is not None and first.inputs else None
    if sk is not None and first is not None and first.index in sk_members:  # the unit reads the block's input
        first_input = sk.input_value
    return _BlockRead(
        block,
        members,
        {op.index for op in branch if op.kind == "conv" and op.index not in se_members | sk_members},
        explained,
        start,
        first_input,
        output.output,
        se_members | sk_members,
    )


def _with_anti_alias(trace: Trace, unit: ConvUnit, on_branch: set[int]) -> ConvUnit:
    """A branch unit with the pool right after it on the branch, where one is (anti-aliased downsampling)."""
    pool = _pool_after(trace, unit.end)
    if pool is None or pool.index not in on_branch:
        return unit
    return replace(unit, anti_alias=_pool(pool), anti_alias_op=pool.index, members=(*unit.members, pool.index))


_SQUEEZES = ("global_pool", "mean", "adaptive_avgpool")


def _through_views(trace: Trace, value: int, on: set[int]) -> tuple[int, list[int]]:
    """The value ``value`` is a view of (its producer's input, while that producer is a view among ``on``), and the
    views' positions."""
    views: list[int] = []
    while (producer := trace.producer(value)) is not None and producer.kind == "view" and producer.inputs \
            and producer.index in on:  # fmt: skip
        views.append(producer.index)
        value = producer.inputs[0]
    return value, views


def _weights_of(trace: Trace, softmax: Op, on: set[int]) -> dict[int, int]:
    """The values a softmax's output becomes through views and parts (a chunk, split, unbind or select of it) ->
    the part each is (-1: all of it), among ``on``."""
    weights = {softmax.output: -1}
    stack = [softmax.output]
    while stack:
        value = stack.pop()
        for reader in trace.readers(value):
            if reader.index not in on or reader.output in weights:
                continue
            if "part" in reader.attrs:  # one result of a split, chunk or unbind (the tracer's numbering)
                weights[reader.output] = int(reader.attrs["part"])
            elif reader.kind == "view":
                index = reader.operands[2][1] if reader.name == "select" and len(reader.operands) > 2 else None
                weights[reader.output] = int(index) if isinstance(index, int) else weights[value]
            else:
                continue
            stack.append(reader.output)
    return weights


def _summed(trace: Trace, values: list[int], on: set[int]) -> tuple[int, list[int]] | None:
    """The value that sums ``values`` (a chain of additions, or one addition of them all: a stack summed), and the
    additions' positions; None where they are not summed together."""
    pending, ops = set(values), []
    while len(pending) > 1:
        readers = {r.index: r for v in pending for r in trace.readers(v) if r.index in on}
        adds = [r for r in readers.values() if r.kind == "add" and set(r.inputs) <= pending]
        if not adds:
            return None
        add = min(adds, key=lambda op: op.index)
        pending = (pending - set(add.inputs)) | {add.output}
        ops.append(add.index)
    return next(iter(pending)), ops


def _stacked(trace: Trace, op: Op | None, on: set[int]) -> tuple[list[int], list[int]] | None:
    """The values ``op`` stacks (a stack, or a concatenation of each unsqueezed: an exported stack) and its position;
    None where it stacks nothing."""
    if op is None or op.index not in on:
        return None
    if op.name == "stack":
        return list(op.inputs), [op.index]
    if op.name != "cat" or len(op.inputs) < 2:
        return None
    # the canonical trace reads through views: each part is the unsqueezed value itself, one dimension fewer
    producers = [trace.producer(value) for value in op.inputs]
    if any(p is None or len(p.shape) + 1 != len(op.shape) for p in producers):
        return None
    return list(op.inputs), [op.index]


def _summands(trace: Trace, value: int, on: set[int]) -> tuple[list[int], list[int]]:
    """The values a chain of additions (or a stack summed across it) computes ``value`` from, and the ops' positions."""
    producer = trace.producer(value)
    if producer is None or producer.index not in on:
        return [value], []
    if producer.kind == "add":
        values, ops = [], [producer.index]
        for source in producer.inputs:
            inner, inner_ops = _summands(trace, source, on)
            values += inner
            ops += inner_ops
        return values, ops
    if producer.name == "sum" and producer.inputs:
        stacked = _stacked(trace, trace.producer(producer.inputs[0]), on)
        if stacked is not None:
            return stacked[0], [*stacked[1], producer.index]
    return [value], []


def _selective_kernel(trace: Trace, branch: list[Op], units: dict[int, ConvUnit]) -> FoundSelectiveKernel | None:
    """The selective-kernel unit on a branch (Li et al. 2019, Fig. 1), None where it has none: conv units (the
    paths) whose sum a global mean squeezes, convs (the attention) to a softmax, and the paths weighed by it and
    summed.  Written as timm does (the paths stacked, one product with the stack, a sum across it) or path by path
    (the softmax's parts, a product with each path, additions)."""
    units_on = {op.index for op in branch}
    for softmax in branch:
        if not _selector(softmax):
            continue
        sk = _unit_at(trace, softmax, units_on, units)
        if sk is not None:
            return sk
    return None


def _selector(op: Op) -> bool:
    """Whether ``op`` may turn a selective-kernel unit's attention into its paths' weights: a softmax (the paper's),
    or an elementwise function in its place (a sigmoid: read, then named as the difference it is)."""
    return bool(op.inputs) and (op.kind == "activation" or (op.kind == "softmax" and "log" not in op.name))


def _unit_at(trace: Trace, softmax: Op, on: set[int], units: dict[int, ConvUnit]) -> FoundSelectiveKernel | None:
    """The selective-kernel unit whose paths ``softmax`` weighs, among the ops ``on`` (None where it weighs none):
    its weights' products with the paths, the paths' conv units, the attention between them and the softmax, the
    squeeze of the paths' sum, and how the paths read the unit's input."""
    weights = _weights_of(trace, softmax, on)
    products = [r for value in weights for r in trace.readers(value)
                if r.index in on and "mul" in r.aten and len(r.inputs) == 2]  # fmt: skip
    ends: list[tuple[int, int]] = []  # (part, path end value)
    select: list[int] = [softmax.index, *(trace.producers[v] for v in weights if v != softmax.output)]
    if len(products) == 1:  # the stacked paths times the weights, summed across the paths
        product = products[0]
        other = next((v for v in product.inputs if v not in weights), None)
        if other is None:
            return None
        stacked, views = _through_views(trace, other, on)
        stacking = _stacked(trace, trace.producer(stacked), on)
        total = _only_reader(trace, product.output)
        if stacking is None or total is None or total.name != "sum":
            return None
        ends = list(enumerate(stacking[0]))
        output, select = total.output, [*select, *views, product.index, total.index]
    elif len(products) > 1:  # each path times its part of the weights, the products summed
        for product in products:
            weight = next(v for v in product.inputs if v in weights)
            other = next((v for v in product.inputs if v != weight), None)
            if other is None:
                return None
            end, views = _through_views(trace, other, on)
            ends.append((weights[weight], end))
            select += [*views, product.index]
        summed = _summed(trace, [product.output for product in products], on)
        if summed is None:
            return None
        output, adds = summed
        select += adds
        ends.sort()
    else:
        return None
    paths = [next((u for u in units.values() if u.end == end and u.index in on), None) for _, end in ends]
    if len(paths) < 2 or any(unit is None for unit in paths):
        return None
    path_units = tuple(unit for unit in paths if unit is not None)
    if len({unit.index for unit in path_units}) != len(path_units):
        return None  # one conv weighed twice: no unit of paths
    # the attention: the convs between the last path and the softmax, from a global mean of the paths' sum
    last_path = max(i for unit in path_units for i in unit.members)
    attn = tuple(units[i] for i in sorted(units) if last_path < i < softmax.index and i in on)
    if not attn:
        return None
    pool = trace.producer(trace.ops[attn[0].index].inputs[0]) if trace.ops[attn[0].index].inputs else None
    if pool is None or pool.kind not in _SQUEEZES or not pool.inputs:
        return None
    summands, squeeze = _summands(trace, pool.inputs[0], on)
    if sorted(summands) != sorted(unit.end for unit in path_units):
        return None
    attn_ops = {i for unit in attn for i in unit.members}
    between = [
        op.index for op in trace.ops[attn[0].index : softmax.index] if op.index in on and op.index not in attn_ops
    ]
    # the paths' inputs: one value, or parts of one (a split)
    parts = [trace.producer(trace.ops[unit.index].inputs[0]) for unit in path_units]
    split_ops = tuple(op.index for op in parts if op is not None and "part" in op.attrs)
    split = len(split_ops) == len(parts) and len({trace.ops[i].inputs[0] for i in split_ops}) == 1
    inputs = {trace.ops[unit.index].inputs[0] for unit in path_units}
    if not split and len(inputs) != 1:
        return None
    unit_in = trace.ops[split_ops[0]].inputs[0] if split else next(iter(inputs))
    producer = trace.producer(unit_in)
    shape = producer.shape if producer is not None else trace.input_shape
    if not split and sum(unit.in_channels for unit in path_units) == shape[1]:
        split = True  # each path reads a slice of the input (slices are views, read through: their convs say it)
    dim = softmax.operands[1][1] if len(softmax.operands) > 1 and softmax.kind == "softmax" else -1
    source = trace.producer(softmax.inputs[0])
    if isinstance(dim, int) and source is not None and source.shape:
        dim %= len(source.shape)  # (N, paths, C, ...): 1 is across the paths, however it is written
    selector = "softmax" if softmax.kind == "softmax" else str(softmax.attrs.get("function", softmax.name))
    return FoundSelectiveKernel(
        path_units, attn, split, int(shape[1]), -1, split_ops if split else (), (*squeeze, pool.index),
        tuple(sorted({*select, *between})), softmax_dim=int(dim) if isinstance(dim, int) else -1, selector=selector,
        input_value=unit_in, output=output,
    )  # fmt: skip


def _squeeze_excitation(trace: Trace, branch: list[Op]) -> tuple[set[int], list[int], int | None]:
    """Squeeze-and-excitation on a branch (Hu et al. 2018): a global mean, convs (or fcs), a sigmoid gate and the
    product with the branch.  Returns (indices of its ops, indices of its convs, index of the product)."""
    on_branch = {op.index for op in branch}
    for gate in branch:
        if gate.kind != "activation" or "sigmoid" not in gate.aten or not gate.inputs:
            continue
        scale = next((r for r in trace.readers(gate.output) if r.index in on_branch and "mul" in r.aten), None)
        if scale is None:
            continue
        path: list[Op] = []
        value = gate.inputs[0]
        while (producer := trace.producer(value)) is not None and producer.index in on_branch:
            path.append(producer)
            if producer.kind in _SQUEEZES or not producer.inputs:
                break
            value = producer.inputs[0]
        if path and path[-1].kind in _SQUEEZES:
            members = {op.index for op in path} | {gate.index, scale.index}
            return members, [op.index for op in reversed(path) if op.kind == "conv"], scale.index
    return set(), [], None


def _read_head(trace: Trace, after_index: int, has_logits: bool) -> tuple[FoundHead, set[int], int]:
    """The head after the last block: (the head, the ops it explains, the position of the logits' fc)."""
    pool = None
    fc: list[int] = []
    bias: list[bool] = []
    in_features = None
    explained: set[int] = set()
    last_fc = len(trace.ops)
    norm: list[str] = []
    norm_ops: list[int] = []
    pool_op = -1
    fc_ops: list[int] = []
    weights: list[Const] = []
    fc_before_pool = False
    for op in trace.ops[after_index + 1 :]:
        if pool is None and not fc and op.kind in _NORM_KINDS:
            norm.append(norm_kind(op))  # a pre-activation network's final BN-ReLU
            norm_ops.append(op.index)
            explained.add(op.index)
        elif op.kind == "global_pool" and pool is None and (not fc or fc_before_pool):
            pool = str(op.attrs.get("function", "avg"))
            pool_op = op.index
            explained.add(op.index)
        elif op.kind == "conv" and pool is None and not fc and has_logits and _classifier_before_pool(trace, op):
            fc.append(int(op.attrs["out_channels"]))  # the classifier before the pool (see _logits)
            bias.append(bool(op.attrs.get("bias")))
            fc_ops.append(op.index)
            weights.append(_weight(op))
            explained.add(op.index)
            last_fc = op.index
            in_features = int(op.attrs["in_channels"])
            fc_before_pool = True
        elif op.kind == "linear":
            fc.append(int(op.attrs["out_features"]))
            bias.append(bool(op.attrs.get("bias")))
            fc_ops.append(op.index)
            weights.append(_matrix(op))
            explained.add(op.index)
            last_fc = op.index
            if in_features is None:
                in_features = int(op.attrs["in_features"])
    if not has_logits:
        last_fc = len(trace.ops)
    logits = -1
    if has_logits and fc_ops:  # the classifier's output (a softmax may follow: the model's output is then its)
        logits = trace.ops[pool_op if fc_before_pool and pool_op >= 0 else fc_ops[-1]].output
    head = FoundHead(pool, tuple(fc), in_features, has_logits, tuple(bias), tuple(norm), tuple(norm_ops), pool_op,
                     tuple(fc_ops), logits,
                     tuple(w.transform for w in weights), tuple(w.params for w in weights))  # fmt: skip
    return head, explained, last_fc
