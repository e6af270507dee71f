"""Canonical reading of a trace: what a model computes, whatever way its code spells it.

:func:`canonicalise` rewrites a :class:`~resnet_spec.verify.Trace` with the one table of operator equivalences,
:data:`EQUIVALENCES`: each entry names a form people write (``x.clamp(min=0)``, ``sum([out, identity])``, a batch
norm written by hand from its buffers, ``x.mean(3).mean(2)``, a 1x1 convolution on the pooled map, an explicit
zero pad before a convolution ...) and the plain operator it computes.  Operators that only reshape, alias or copy
are dropped (their readers read their input), and so is every operator whose result the forward's output does not
depend on: a forward hook's ``.clone()``, a logged statistic, an ``assert torch.isfinite(x).all()``.  The reader
(:mod:`resnet_spec.verify._read_trace`) then sees one spelling of each computation.

Each equivalence holds exactly, on real values (``tests/test_canonical.py`` checks every entry against the plain
form); a form that is equivalent only in some cases (``clamp(min=0.1)``, ``add(x, y, alpha=0)``) is left alone and
reaches the reader as the operator it is.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from ._trace import Const, Op, Trace

__all__ = ["EQUIVALENCES", "Equivalence", "canonicalise", "common_module", "keep_outputs"]


@dataclass(frozen=True)
class Equivalence:
    """One entry of the table: a spelling and the operator it computes."""

    name: str  # a short key, e.g. "relu.clamp"
    kind: str  # the canonical kind it is read as: relu, add, bn, global_pool, linear, conv, identity, dropout
    forms: str  # the spellings it covers, in words


EQUIVALENCES: tuple[Equivalence, ...] = (
    Equivalence("relu.clamp", "relu", "clamp(x, min=0) / clamp_min(x, 0) with no upper bound"),
    Equivalence("relu.maximum", "relu", "maximum(x, 0) / fmax(x, 0) / max(x, 0) against a tensor of zeros"),
    Equivalence("relu.threshold", "relu", "threshold(x, 0, 0)"),
    Equivalence("relu.leaky", "relu", "leaky_relu(x, negative_slope=0)"),
    Equivalence("relu.hardtanh", "relu", "hardtanh(x, 0, inf)"),
    Equivalence("add.tensor", "add", "a + b, a.add(b), a += b, torch.add(a, b, out=c), with alpha 1"),
    Equivalence("add.stack_sum", "add", "torch.stack([a, b]).sum(0)"),
    Equivalence("identity.neutral", "identity", "x + 0, x - 0, x * 1, x / 1 (sum([a, b]) starts with 0 + a)"),
    Equivalence("identity.view", "identity", "views, reshapes, copies: view, flatten, clone, contiguous, detach, to"),
    Equivalence("bn.affine", "bn", "a per-channel affine chain: (x - mean) / sqrt(var + eps) * w + b, x * s + t"),
    Equivalence("norm.group_affine", "norm", "a GroupNorm as exporters write it: a reshape to (N, G, -1), a norm of "
                "each group without scale and shift, the reshape back, then a per-channel scale and shift"),
    Equivalence("dropout.mask", "dropout", "x * mask with a random mask (dropout, dropout2d, drop path)"),
    Equivalence("global_pool.mean", "global_pool", "mean over H and W in any steps: x.mean((2, 3)), "
                "x.mean(3).mean(2), x.flatten(2).mean(-1); avg_pool2d / adaptive_avg_pool2d to 1x1"),
    Equivalence("global_pool.max", "global_pool", "max over H and W: amax((2, 3)), flatten(2).max(2); "
                "max_pool2d / adaptive_max_pool2d to 1x1"),
    Equivalence("linear.conv1x1", "linear", "a 1x1 convolution on the globally pooled 1x1 map"),
    Equivalence("linear.bias_add", "linear", "x @ w.t() + b: a matrix product, then a bias vector added"),
    Equivalence("conv.zero_pad", "conv", "an explicit zero pad (F.pad, ZeroPad2d) right before a convolution"),
    Equivalence("maxpool.zero_pad", "maxpool", "a zero pad before a max pool whose input is a ReLU's (>= 0)"),
    Equivalence("maxpool.zero_fill", "maxpool", "a zero pad before an unpadded max pool of a map that may be "
                "negative: a max pool whose padding is zeros, not -inf (BiT's stem)"),
    Equivalence("conv.matrix", "conv", "a 1x1 convolution as a matrix product over channels: einsum('nchw,oc->nohw'), "
                "w @ x.flatten(2), nn.Linear on channels-last, with or without a bias vector"),
    Equivalence("conv.im2col", "conv", "a convolution as F.unfold (im2col) and a matrix product with the weight"),
    Equivalence("conv.split", "conv", "convolutions of one input with the same window, concatenated along channels"),
    Equivalence("blur.fixed_filter", "blur", "a fixed filter on each channel alone: a depthwise convolution whose "
                "weight is no parameter (a buffer, or computed from constants), after a reflected pad or its own zero "
                "padding (BlurPool, anti-aliased downsampling)"),
)  # fmt: skip

_BY_NAME: Mapping[str, Equivalence] = MappingProxyType({e.name: e for e in EQUIVALENCES})


# ---- reading operands ------------------------------------------------------------------------------------------


def _scalar(operand: tuple[str, Any] | None) -> float | None:
    """A number an operand is known to be: a Python number, or a constant tensor with one value throughout."""
    if operand is None:
        return None
    kind, value = operand
    if kind == "scalar" and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if kind == "const" and isinstance(value, Const) and value.value is not None:
        return value.value
    return None


def _arg(op: Op, position: int, keyword: str | None = None) -> tuple[str, Any] | None:
    if position < len(op.operands):
        return op.operands[position]
    kwargs = op.attrs.get("kwargs", {})
    return kwargs.get(keyword) if keyword else None


def _alpha(op: Op) -> float:
    alpha = _scalar(op.attrs.get("kwargs", {}).get("alpha"))
    return 1.0 if alpha is None else alpha


def _values(op: Op) -> list[tuple[int, tuple[str, Any]]]:
    return [(i, o) for i, o in enumerate(op.operands) if o[0] == "value"]


def _other_const(op: Op) -> tuple[str, Any] | None:
    """The one non-activation operand of a binary elementwise op with one activation operand."""
    if len(op.operands) < 2 or len(_values(op)) != 1:
        return None
    return op.operands[1] if op.operands[0][0] == "value" else op.operands[0]


def _per_channel(const: Const, shape: tuple[int, ...]) -> bool:
    """A constant that broadcasts over an (N, C, H, W) activation as one number per channel."""
    if len(shape) != 4 or math.prod(const.shape) != shape[1] or shape[1] == 1:
        return False
    padded = (1,) * (4 - len(const.shape)) + const.shape if len(const.shape) <= 4 else const.shape
    return len(padded) == 4 and padded[1] == shape[1] and padded[0] == padded[2] == padded[3] == 1


# ---- per-operator rules: the kind an op is read as ----------------------------------------------------------


def _relu_rule(op: Op) -> str | None:
    name = op.name
    if name in ("clamp", "clamp_"):
        low, high = _scalar(_arg(op, 1, "min")), _arg(op, 2, "max")
        unbounded = high is None or (high[0] == "scalar" and high[1] is None)
        return "relu.clamp" if low == 0.0 and unbounded else None
    if name in ("clamp_min", "clamp_min_"):
        return "relu.clamp" if _scalar(_arg(op, 1)) == 0.0 else None
    if name in ("maximum", "fmax", "max") and len(op.operands) == 2:
        other = _other_const(op)
        return "relu.maximum" if other is not None and other[0] == "const" and _scalar(other) == 0.0 else None
    if name in ("threshold", "threshold_"):
        return "relu.threshold" if _scalar(_arg(op, 1)) == 0.0 and _scalar(_arg(op, 2)) == 0.0 else None
    if name in ("leaky_relu", "leaky_relu_"):
        slope = _scalar(_arg(op, 1, "negative_slope"))
        return "relu.leaky" if slope == 0.0 else None
    if name in ("hardtanh", "hardtanh_"):
        floor, ceiling = _scalar(_arg(op, 1)), _scalar(_arg(op, 2))
        return "relu.hardtanh" if floor == 0.0 and ceiling == math.inf else None
    return None


_ELEMENTWISE = frozenset({"add", "add_", "sub", "sub_", "mul", "mul_", "div", "div_"})
_COMMUTATIVE = frozenset({"add", "add_", "mul", "mul_"})


def _arith_rule(op: Op) -> str | None:
    name = op.name
    if name not in _ELEMENTWISE:
        return None
    values = _values(op)
    if len(values) == 2 and name in ("add", "add_"):
        return "add.tensor" if _alpha(op) == 1.0 else None
    if len(values) != 1 or (op.operands[0][0] != "value" and name not in _COMMUTATIVE):
        return None
    other = _other_const(op)
    number = _scalar(other)
    neutral = 0.0 if name.startswith(("add", "sub")) else 1.0
    if number == neutral and (_alpha(op) == 1.0 or number == 0.0):
        return "identity.neutral"
    if other is not None and other[0] == "const":
        const: Const = other[1]
        if const.random and name.startswith(("mul", "div")):
            return "dropout.mask"
        if _per_channel(const, op.shape) and _alpha(op) == 1.0:
            return "bn.affine"
    return None


def _rule(op: Op) -> str | None:
    """The equivalence that reads ``op`` as another kind, or None."""
    if op.kind == "view":
        return "identity.view"
    return _relu_rule(op) or _arith_rule(op)


_KIND_OF_RULE: Mapping[str, str] = MappingProxyType(
    {"relu.clamp": "relu", "relu.maximum": "relu", "relu.threshold": "relu", "relu.leaky": "relu",
     "relu.hardtanh": "relu", "add.tensor": "add", "dropout.mask": "dropout", "bn.affine": "affine"}
)  # fmt: skip


# ---- the passes -------------------------------------------------------------------------------------------


def canonicalise(trace: Trace) -> Trace:
    """The trace with every equivalent form rewritten to its plain operator and dead reads dropped (idempotent)."""
    if trace.canonical:
        return trace
    trace = _live(trace)
    trace = _matrix_convs(trace)  # before views are dropped: the chain of views around a product says its layout
    trace = _split_convs(trace)
    trace = _per_op(trace)
    trace = _live(trace)
    for rewrite in (_stack_sum, _group_norms, _affine_chains, _global_pools, _bias_adds, _conv1x1_fc, _zero_pads,
                    _blur_pools):  # fmt: skip
        trace = rewrite(trace)
    trace = _live(trace)
    return dataclasses.replace(trace, canonical=True)


def _tag(op: Op, rule: str, **attrs: Any) -> Op:
    kind = _KIND_OF_RULE.get(rule, _BY_NAME[rule].kind)
    merged = dict(op.attrs)
    merged.update(attrs)
    merged["equivalence"] = rule
    if kind == "relu":
        merged.pop("function", None)  # what it was spelled as is in "equivalence"
    return dataclasses.replace(op, kind=kind, attrs=MappingProxyType(merged))


def _per_op(trace: Trace) -> Trace:
    """Re-kind single operators; drop identities (their readers read their input)."""
    alias: dict[int, int] = {}
    ops: list[Op] = []
    for op in trace.ops:
        if alias:
            op = _renamed(op, alias)
        rule = _rule(op)
        if rule is not None and _BY_NAME[rule].kind == "identity":
            alias[op.output] = op.inputs[0]
            continue
        if rule is not None and rule != "add.tensor":
            op = _tag(op, rule)
        elif op.kind == "add" and rule is None:
            op = dataclasses.replace(op, kind="other")  # x + 1, or an addition scaled by alpha
        ops.append(op)
    outputs = [_resolve(alias, v) for v in trace.outputs]
    return trace.replace_ops(ops, outputs)


def _renamed(op: Op, alias: Mapping[int, int]) -> Op:
    inputs = tuple(_resolve(alias, v) for v in op.inputs)
    if inputs == op.inputs:
        return op
    operands = tuple(("value", _resolve(alias, v)) if k == "value" else (k, v) for k, v in op.operands)
    return dataclasses.replace(op, inputs=inputs, operands=operands)


def _resolve(alias: Mapping[int, int], value: int) -> int:
    while value in alias:
        value = alias[value]
    return value


def _live(trace: Trace) -> Trace:
    """Only the operators the outputs depend on: reads that feed nothing (hooks, logging, checks) go."""
    needed = set(trace.outputs)
    keep: list[Op] = []
    for op in reversed(trace.ops):
        if op.output in needed:
            keep.append(op)
            needed.update(op.inputs)
    keep.reverse()
    return trace if len(keep) == len(trace.ops) else trace.replace_ops(keep)


def keep_outputs(trace: Trace, outputs: tuple[int, ...]) -> Trace:
    """The trace with only ``outputs`` as its outputs, and only what they are computed from."""
    return _live(trace.replace_ops(list(trace.ops), outputs))


def _only_reader(trace: Trace, value: int) -> Op | None:
    readers = trace.consumers.get(value, ())
    return trace.ops[readers[0]] if len(readers) == 1 and value not in trace.outputs else None


def _merge(trace: Trace, groups: list[tuple[list[Op], Op]]) -> Trace:
    """Replace each group of ops by one op (placed where the group's last op was); outputs renamed."""
    if not groups:
        return trace
    drop = {op.index for members, _ in groups for op in members}
    placed = {members[-1].index: merged for members, merged in groups}
    alias = {members[-1].output: merged.output for members, merged in groups if merged.output != members[-1].output}
    ops: list[Op] = []
    for op in trace.ops:
        if op.index in placed:
            ops.append(placed[op.index])
        elif op.index not in drop:
            ops.append(_renamed(op, alias) if alias else op)
    return trace.replace_ops(ops, [alias.get(v, v) for v in trace.outputs])


def _stack_sum(trace: Trace) -> Trace:
    groups = []
    for op in trace.ops:
        if op.name != "stack" or len(op.inputs) < 2:
            continue
        summed = _only_reader(trace, op.output)
        dims = summed.operands[1] if summed is not None and len(summed.operands) > 1 else None
        stacked_dim = _scalar(op.operands[1]) if len(op.operands) > 1 else 0.0
        summed_dims = dims[1] if dims is not None and isinstance(dims[1], tuple) else (dims[1] if dims else None,)
        if summed is not None and summed.name == "sum" and summed_dims == (int(stacked_dim or 0),):
            merged = dataclasses.replace(summed, kind="add", inputs=op.inputs, params=op.params + summed.params,
                                         attrs=MappingProxyType({"equivalence": "add.stack_sum"}),
                                         operands=tuple(("value", v) for v in op.inputs))  # fmt: skip
            groups.append(([op, summed], merged))
    return _merge(trace, groups)


def _unit_const(operand: tuple[str, Any] | None, value: float) -> bool:
    """An operand that is absent or a constant (not a parameter) with ``value`` throughout."""
    if operand is None or (operand[0] == "scalar" and operand[1] is None):
        return True
    return operand[0] == "const" and not operand[1].params and operand[1].value == value


def _group_norms(trace: Trace) -> Trace:
    """A norm of each group of a map viewed as (N, G, -1), with no scale and shift of its own, read back as the map
    and scaled and shifted per channel (x * s, then + t, each a tensor of the model): a GroupNorm of G groups with
    that scale and shift, its tensors in the norm's weight and bias places."""
    groups = []
    for op in trace.ops:
        in_shape = tuple(op.attrs.get("in_shape", ()))
        if op.name != "native_group_norm" or len(in_shape) != 3 or not op.inputs:
            continue
        if not (_unit_const(_arg(op, 1), 1.0) and _unit_const(_arg(op, 2), 0.0)):
            continue  # a norm with its own scale and shift: another computation
        scale = _only_reader(trace, op.output)
        shift = _only_reader(trace, scale.output) if scale is not None else None
        source = _shape_of(trace, op.inputs[0])
        if scale is None or shift is None or len(source) != 4 or scale.shape != source or shift.shape != source:
            continue
        if scale.kind != "affine" or shift.kind != "affine" or not scale.name.startswith("mul") \
                or not shift.name.startswith("add"):  # fmt: skip
            continue
        weight, bias = _other_const(scale), _other_const(shift)
        if weight is None or bias is None or weight[0] != "const" or bias[0] != "const":
            continue
        if len(weight[1].params) != 1 or len(bias[1].params) != 1:
            continue
        attrs = dict(op.attrs, in_shape=source, function="group_norm", affine=True, groups=in_shape[1],
                     equivalence="norm.group_affine")  # fmt: skip
        merged = dataclasses.replace(
            shift, kind="norm", aten=op.aten, inputs=op.inputs, params=(*weight[1].params, *bias[1].params),
            attrs=MappingProxyType(attrs), operands=(("value", op.inputs[0]), weight, bias, *op.operands[3:]),
            arg_names=("", weight[1].params[0], bias[1].params[0]), buffers=(),
        )  # fmt: skip
        groups.append(([op, scale, shift], merged))
    return _merge(trace, groups)


def _affine_chains(trace: Trace) -> Trace:
    """A maximal chain of per-channel affine ops (one reader each) is a batch norm in inference form."""
    groups = []
    taken: set[int] = set()
    for op in trace.ops:
        if op.kind != "affine" or op.index in taken:
            continue
        chain = [op]
        while True:
            after = _only_reader(trace, chain[-1].output)
            if after is None or after.kind != "affine":
                break
            chain.append(after)
        taken.update(o.index for o in chain)
        params = tuple(dict.fromkeys(p for o in chain for p in o.params))
        buffers = tuple(dict.fromkeys(b for o in chain for b in o.buffers))
        last = chain[-1]
        merged = dataclasses.replace(
            last,
            kind="bn",
            inputs=op.inputs,
            params=params,
            buffers=buffers,
            attrs=MappingProxyType({"equivalence": "bn.affine", "by_hand": True}),
            operands=(("value", op.inputs[0]),),
        )
        groups.append((chain, merged))
    return _merge(trace, groups)


def _global_pools(trace: Trace) -> Trace:
    """Reductions over H and W, in one step or several, to one number per channel: a global pool."""
    groups = []
    taken: set[int] = set()
    for op in trace.ops:
        if op.index in taken or len(op.shape) < 2:
            continue
        function = _pool_function(trace, op)
        if function is None:
            continue
        source_shape = _shape_of(trace, op.inputs[0])
        if len(source_shape) != 4:
            continue
        chain = [op]
        # Follow single-reader reductions of the same function until one number per channel is left.
        while math.prod(chain[-1].shape) != source_shape[0] * source_shape[1]:
            after = _only_reader(trace, chain[-1].output)
            if after is None or _pool_function(trace, after) != function:
                break
            chain.append(after)
        last = chain[-1]
        if math.prod(last.shape) != source_shape[0] * source_shape[1] or last.shape[:2] != source_shape[:2]:
            continue
        taken.update(o.index for o in chain)
        # A windowed pool keeps its window: on a map already 1x1 it may be a stem pool (the reader decides by place).
        window = {k: last.attrs[k] for k in ("kernel", "stride", "padding", "ceil_mode")
                  if len(chain) == 1 and last.kind in ("maxpool", "avgpool") and k in last.attrs}  # fmt: skip
        merged = dataclasses.replace(
            last, kind="global_pool", inputs=op.inputs, operands=(("value", op.inputs[0]),),
            attrs=MappingProxyType({"equivalence": f"global_pool.{function}", "function": function, **window}),
        )  # fmt: skip
        groups.append((chain, merged))
    return _merge(trace, groups)


def _pool_function(trace: Trace, op: Op) -> str | None:
    """'avg' or 'max' for a reduction over spatial positions only (batch and channels kept), else None."""
    if not op.inputs:
        return None
    shape = _shape_of(trace, op.inputs[0])
    if len(shape) < 3 or len(op.shape) < 2 or op.shape[:2] != shape[:2]:
        return None
    name = op.name
    if name == "mean":
        dims = op.attrs.get("dims") or ()
        return "avg" if dims and min(dims) >= 2 else None
    if name in ("amax", "max") and len(op.operands) > 1 and op.operands[1][0] == "scalar":
        dims = op.operands[1][1]
        dims = dims if isinstance(dims, tuple) else (dims,)
        rank = len(op.attrs.get("in_shape", shape))
        return "max" if dims and all(isinstance(d, int) and d % rank >= 2 for d in dims) else None
    if op.kind in ("adaptive_avgpool", "avgpool") and tuple(op.shape[2:]) == (1, 1):
        return "avg"
    if op.kind in ("adaptive_maxpool", "maxpool") and tuple(op.shape[2:]) == (1, 1):
        return "max"
    return None


def _bias_adds(trace: Trace) -> Trace:
    """``x @ w.t() + b``: a linear layer without bias followed by a parameter vector added is one with bias."""
    groups = []
    for op in trace.ops:
        if op.kind != "linear" or op.attrs.get("bias"):
            continue
        after = _only_reader(trace, op.output)
        if after is None or after.name not in ("add", "add_") or len(after.inputs) != 1 or not after.params:
            continue
        other = _other_const(after)
        if other is None or other[0] != "const" or other[1].shape[-1:] != op.shape[-1:] or _alpha(after) != 1.0:
            continue
        # which tensors are the weight and which the bias: the merged operator's arguments no longer say
        attrs = dict(op.attrs, bias=True, equivalence="linear.bias_add", weights=op.attrs.get("weights", op.params),
                     biases=after.params)  # fmt: skip
        merged = dataclasses.replace(after, kind="linear", inputs=op.inputs, params=op.params + after.params,
                                     attrs=MappingProxyType(attrs), operands=op.operands)  # fmt: skip
        groups.append(([op, after], merged))
    return _merge(trace, groups)


def _conv1x1_fc(trace: Trace) -> Trace:
    """A 1x1 convolution of a globally pooled (N, C, 1, 1) map is the fully connected layer."""
    ops = []
    changed = False
    for op in trace.ops:
        source = trace.producer(op.inputs[0]) if op.inputs else None
        if (op.kind == "conv" and op.attrs.get("kernel") == (1, 1) and op.attrs.get("input_size") == (1, 1)
                and op.attrs.get("groups") == 1 and source is not None and source.kind == "global_pool"
                and not _squeezes(trace, source)):  # fmt: skip
            a = op.attrs
            attrs = {"in_features": a["in_channels"], "out_features": a["out_channels"], "bias": a["bias"],
                     "macs": a["macs"], "equivalence": "linear.conv1x1"}  # fmt: skip
            op = dataclasses.replace(op, kind="linear", attrs=MappingProxyType(attrs))
            changed = True
        ops.append(op)
    return trace.replace_ops(ops) if changed else trace


def _squeezes(trace: Trace, pool: Op) -> bool:
    """Whether a global pool is squeeze-and-excitation's squeeze: the map it pools is also multiplied (by the gate),
    so the 1x1 convs after it are the excitation's, not a classifier.  A selective-kernel unit's squeeze pools the
    sum of the paths (a sum across their stack, or additions), and the paths are what is multiplied (by the
    softmax's weights)."""
    values = list(pool.inputs)
    for value in values:  # the paths' sum: a sum across their stack, or additions of them
        producer = trace.producer(value)
        if producer is not None and (producer.name == "sum" or producer.kind == "add"):
            values.extend(producer.inputs)
    return any("mul" in reader.aten for value in values for reader in trace.readers(value))


def _zero_pads(trace: Trace) -> Trace:
    """A zero pad read only by a convolution (or by a max pool of non-negative values) is that op's padding; before
    an unpadded max pool of values that may be negative, the pool's padding filled with zeros (``zero_fill``)."""
    groups = []
    for op in trace.ops:
        if op.kind != "pad" or op.attrs.get("value", 0.0) != 0.0:
            continue
        pad = tuple(op.attrs.get("pad", ()))
        if len(pad) != 4 or pad[0] != pad[1] or pad[2] != pad[3] or min(pad) < 0:
            continue  # only (left, right, top, bottom) pads symmetric in each direction fold into a padding
        after = _only_reader(trace, op.output)
        if after is None or after.inputs[:1] != (op.output,):
            continue
        source = trace.producer(op.inputs[0])
        padding = tuple(after.attrs.get("padding", (0, 0)))
        extra: dict[str, Any] = {}
        if after.kind == "conv":
            rule = "conv.zero_pad"
        elif after.kind == "maxpool" and source is not None and source.kind == "relu":
            rule = "maxpool.zero_pad"
        elif after.kind == "maxpool" and not any(padding):
            rule, extra = "maxpool.zero_fill", {"zero_fill": True}
        else:
            continue
        folded = (padding[0] + pad[2], padding[-1] + pad[0])
        attrs = dict(after.attrs, padding=folded, equivalence=rule, **extra)
        if "input_size" in attrs:
            attrs["input_size"] = _shape_of(trace, op.inputs[0])[2:]
        operands = (("value", op.inputs[0]), *after.operands[1:])
        merged = dataclasses.replace(after, inputs=(op.inputs[0], *after.inputs[1:]), attrs=MappingProxyType(attrs),
                                     operands=operands)  # fmt: skip
        groups.append(([op, after], merged))
    return _merge(trace, groups)


def _blur_pools(trace: Trace) -> Trace:
    """A depthwise convolution of a fixed filter (its weight a buffer or computed from constants, no parameter, no
    bias), with the reflected pad before it, is an anti-aliasing pool: kind ``blur`` with its window, stride and
    padding (``padding`` before the map, ``padding_end`` after it: more after for an even filter, as Zhang's
    BlurPool pads), ``fill`` "reflect" or "zeros".  Which filter it applies, only the numbers say."""
    groups = []
    for op in trace.ops:
        if op.kind != "conv" or op.params or op.attrs.get("bias") or len(op.operands) < 2:
            continue
        kind, weight = op.operands[1]
        a = op.attrs
        depthwise = a.get("groups") == a.get("in_channels") == a.get("out_channels")
        if kind != "const" or not isinstance(weight, Const) or weight.params or weight.random or not depthwise:
            continue
        if tuple(a.get("dilation", (1, 1))) != (1, 1):
            continue
        members, source, padding, fill = [op], op.inputs[0], tuple(a.get("padding", (0, 0))), "zeros"
        end = padding
        before = trace.producer(source)
        pad = tuple(before.attrs.get("pad", ())) if before is not None and before.kind == "edge_pad" else ()  # l r t b
        if before is not None and len(pad) == 4 and not any(padding) and before.attrs.get("mode") == "reflect" and \
                _only_reader(trace, before.output) is op:  # fmt: skip
            members, source, padding, end, fill = [before, op], before.inputs[0], (pad[2], pad[0]), (pad[3], pad[1]), \
                "reflect"  # fmt: skip
        attrs = {
            "kernel": a["kernel"],
            "stride": a["stride"],
            "padding": padding,
            "padding_end": end,
            "ceil_mode": False,
            "fill": fill,
            "macs": a.get("macs", 0),
            "channels": a["in_channels"],
            "equivalence": "blur.fixed_filter",
        }
        merged = dataclasses.replace(op, kind="blur", inputs=(source,), attrs=MappingProxyType(attrs),
                                     operands=(("value", source), *op.operands[1:]))  # fmt: skip
        groups.append((members, merged))
    return _merge(trace, groups)


def _shape_of(trace: Trace, value: int) -> tuple[int, ...]:
    producer = trace.producer(value)
    return tuple(producer.shape) if producer is not None else tuple(trace.input_shape)


# ---- linear maps written otherwise: one convolution ------------------------------------------------------------

_PRODUCTS = frozenset({"mm", "bmm", "addmm", "matmul", "baddbmm"})


def _single_reader(trace: Trace, value: int) -> Op | None:
    """The one op reading ``value`` (not looking through views), None when zero or several do or it is an output."""
    return _only_reader(trace, value)


def _conv_attrs(
    source: tuple[int, ...], out: tuple[int, ...], window: dict[str, tuple[int, int]] | None, bias: bool
) -> dict[str, Any] | None:
    """A convolution's attributes from its input and output shapes (N, C, H, W) and, for im2col, its window."""
    if len(source) != 4 or len(out) != 4 or source[0] != out[0]:
        return None
    if window is None:  # a 1x1 convolution; a stride is a subsampling (x[:, :, ::s, ::s]) before the product
        strides = []
        for n, m in zip(source[2:], out[2:], strict=True):
            stride = next((s for s in range(1, n + 1) if -(-n // s) == m), None)
            if stride is None:
                return None
            strides.append(stride)
        window = {"kernel": (1, 1), "stride": tuple(strides), "padding": (0, 0), "dilation": (1, 1)}  # type: ignore[dict-item]
    kernel = window["kernel"]
    return {
        "in_shape": source,
        "kernel": kernel,
        "stride": window["stride"],
        "padding": window["padding"],
        "dilation": window["dilation"],
        "groups": 1,
        "in_channels": source[1],
        "out_channels": out[1],
        "bias": bias,
        "macs": math.prod(out[1:]) * source[1] * math.prod(kernel),
        "input_size": source[2:],
    }


def _matrix_convs(trace: Trace) -> Trace:
    """A matrix product of an activation with a parameter, reached from a 4-d map and brought back to one through
    views only (an im2col at most before it, a bias vector at most after it), is a convolution: 1x1 (einsum, matmul,
    a Linear on channels-last) or the im2col's window.  Only the shapes are read here; the weight's layout is found
    by the numbers (resnet_spec.verify reproduces the product's output with the table's convolution)."""
    groups = []
    taken: set[int] = set()
    for op in trace.ops:
        if op.name not in _PRODUCTS or not op.params or len(op.inputs) != 1 or op.index in taken:
            continue
        members = [op]
        value, window = op.inputs[0], None
        while (producer := trace.producer(value)) is not None and _single_reader(trace, value) is not None:
            if producer.kind == "view" and len(producer.inputs) == 1:
                members.append(producer)
            elif producer.name == "im2col" and window is None and len(producer.operands) >= 5:
                names = ("kernel", "dilation", "padding", "stride")
                window = {k: tuple(int(n) for n in producer.operands[i + 1][1]) for i, k in enumerate(names)}
                members.append(producer)
            else:
                break
            value = producer.inputs[0]
        source = _shape_of(trace, value)
        end, bias_params = op.output, tuple[str, ...]()
        while (after := _single_reader(trace, end)) is not None:
            if after.kind == "view" and len(after.inputs) == 1:
                members.append(after)
            elif after.name in ("add", "add_") and len(after.inputs) == 1 and after.params and not bias_params:
                bias_params = after.params
                members.append(after)
            else:
                break
            end = after.output
        out = trace.producer(end).shape  # type: ignore[union-attr]
        attrs = _conv_attrs(source, tuple(out), window, bool(bias_params))  # type: ignore[arg-type]
        weights = tuple(dict.fromkeys(op.params))
        if attrs is None or sum(trace.params.get(w, 0) for w in weights) != attrs["out_channels"] * attrs[
            "in_channels"
        ] * math.prod(attrs["kernel"]):
            continue
        if bias_params and sum(trace.params.get(b, 0) for b in bias_params) != attrs["out_channels"]:
            continue
        members.sort(key=lambda o: o.index)
        taken.update(o.index for o in members)
        attrs.update(equivalence="conv.im2col" if window else "conv.matrix", weights=weights, biases=bias_params)
        merged = dataclasses.replace(
            members[-1], kind="conv", aten=op.aten, inputs=(value,), params=(*weights, *bias_params), module=op.module,
            attrs=MappingProxyType(attrs), operands=(("value", value),), buffers=(), arg_names=(),
        )  # fmt: skip
        groups.append((members, merged))
    return _merge(trace, groups)


def _split_convs(trace: Trace) -> Trace:
    """Convolutions of one input with one window whose outputs only a channel concatenation reads are one
    convolution with their output channels in the concatenation's order."""
    groups = []
    keys = ("kernel", "stride", "padding", "dilation", "groups", "in_channels", "bias")
    for cat in trace.ops:
        if cat.kind != "cat" or len(cat.inputs) < 2 or len(set(cat.inputs)) != len(cat.inputs):
            continue
        dim = _scalar(cat.operands[1]) if len(cat.operands) > 1 else 0.0
        if dim is None or int(dim) % max(1, len(cat.shape)) != 1:
            continue
        parts = [trace.producer(v) for v in cat.inputs]
        if any(p is None or p.kind != "conv" or _single_reader(trace, p.output) is not cat for p in parts):
            continue
        convs: list[Op] = parts  # type: ignore[assignment]
        first = convs[0]
        if any(c.inputs[:1] != first.inputs[:1] or any(c.attrs.get(k) != first.attrs.get(k) for k in keys)
               for c in convs):  # fmt: skip
            continue
        # one weight sliced into the parts is itself (dict.fromkeys): its layout is the concatenation's
        weights = tuple(dict.fromkeys(c.arg_names[1] if len(c.arg_names) > 1 else "" for c in convs))
        biases = tuple(dict.fromkeys(c.arg_names[2] for c in convs if len(c.arg_names) > 2 and c.arg_names[2]))
        attrs = dict(first.attrs, out_channels=int(cat.shape[1]), macs=sum(int(c.attrs.get("macs", 0)) for c in convs),
                     equivalence="conv.split", weights=weights, biases=biases)  # fmt: skip
        merged = dataclasses.replace(
            cat, kind="conv", aten=first.aten, inputs=first.inputs[:1],
            params=tuple(dict.fromkeys(p for c in convs for p in c.params)),
            module=common_module(c.module for c in convs), attrs=MappingProxyType(attrs),
            operands=(("value", first.inputs[0]),), buffers=(), arg_names=(),
        )  # fmt: skip
        groups.append(([*convs, cat], merged))
    return _merge(trace, groups)


def common_module(names: Any) -> str:
    """The longest dotted prefix shared by module names."""
    parts = [name.split(".") for name in names if name]
    if not parts:
        return ""
    common = []
    for pieces in zip(*parts, strict=False):
        if len(set(pieces)) != 1:
            break
        common.append(pieces[0])
    return ".".join(common)
