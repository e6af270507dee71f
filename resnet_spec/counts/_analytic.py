"""Analytic parameter and operation counts, from the spec alone (pure arithmetic: no torch, no model).

The paper's convention, and the default here: count the multiply-adds of the conv and fc layers (Table 1's FLOPs
row, "3.6 billion FLOPs (multiply-adds)"), one per multiply-add, for one image.

How it works: :func:`operators` reads the spec's layout plan (:func:`resnet_spec.spec.layout_plan`) and lists every
operator the built network runs, with its shapes and module names.  A *convention* is a table from operator class to a
pure function of those shapes (fvcore's ``_DEFAULT_SUPPORTED_OPS`` idea); :func:`count` applies one and sums the
result per row of Table 1.  Conventions shipped (see :data:`CONVENTIONS`):

* ``"paper"`` (= ``ops=("conv", "fc")``): conv ``k*k*(C_in/groups)*C_out*H_out*W_out``, fc ``in*out`` (no bias
  add); squeeze-and-excitation's 1x1 convs count as convs, and so does an anti-aliasing blur (a fixed ``k x k``
  filter on each channel: ``k*k*C*H_out*W_out``, as fvcore and FlopCounterMode count its ``conv2d``).
* the operator classes of :data:`OPS`, chosen freely (``ops=("conv", "fc", "bn")``, ``ops="all"``), each under our
  rule: ``bn`` one multiply-add per output element (inference form ``y = a*x + b``); ``relu`` one per element;
  ``add`` (the residual addition) one per element of the block's output; ``pool`` one per window element per output
  element (the stem's max pool ``k*k*C*H_out*W_out``, the global average pool ``C*H*W``, its input size; SE's
  squeeze likewise); ``gate`` (SE's channel-wise scale) one per element.
* ``"fvcore"``: fvcore ``FlopCountAnalysis``'s default total (its ``jit_handles.py``): conv and fc as above, batch
  norm in eval mode with affine ``2 * elements``, ``adaptive_avg_pool2d`` one per *input* element; max pooling, ReLU
  and the residual addition are not counted (ReLU is in its ignored list, ``max_pool2d`` and ``add_`` are reported
  as unsupported).
* ``"torchinfo"``: torchinfo's "Total mult-adds" (its ``LayerInfo.calculate_macs``): a conv counts its weight
  and bias elements times ``H_out*W_out``; any other layer with parameters counts its parameter count once per
  sample (fc: ``in*out + out``; batch norm: ``2*C``, whatever the map size); layers without parameters count
  nothing.

``unit="flops"`` doubles every figure (one multiply-add = two floating-point operations, as PyTorch's
``FlopCounterMode`` counts). Rows: ``conv1`` is the stem conv(s), BN and ReLU; the first stage row (``conv2_x``)
includes the stem's pool; ``fc`` includes the global pool (and a pre-activation net's final BN-ReLU); a projection
shortcut belongs to its block's row.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from math import prod
from types import MappingProxyType

from ..spec import Layer, ResNetSpec, as_spec, layout_plan

__all__ = [
    "CONVENTIONS",
    "OPS",
    "UNITS",
    "Convention",
    "Counts",
    "Operator",
    "RowCount",
    "count",
    "operators",
]

# Operator classes that can be counted ("gate": squeeze-and-excitation's sigmoid and channel-wise scale, a
# selective-kernel unit's weighing of its paths).
OPS: tuple[str, ...] = ("conv", "fc", "bn", "relu", "add", "pool", "gate")
UNITS: tuple[str, ...] = ("macs", "flops")
PAPER_OPS: tuple[str, ...] = ("conv", "fc")

Shape = tuple[int, int, int]  # (channels, height, width) of one sample


@dataclass(frozen=True)
class Operator:
    """One operator the built network runs on one image, with the shapes a counting rule needs."""

    kind: str  # one of OPS
    row: str  # the Table 1 row it belongs to: "conv1", "conv2_x", ..., "fc"
    name: str  # the builder's (torchvision's) module name, e.g. "layer2.0.downsample.0"; a block's name for "add"
    in_shape: Shape
    out_shape: Shape
    window: tuple[int, int] = (1, 1)  # conv kernel or pooling window (height, width); (1, 1) for elementwise ops
    detail: str = ""  # pools: "max", "avg", "global_avg", "global_max" or "squeeze" (SE), to tell them apart
    params: int = 0  # parameters of the layer (conv weight and bias, BN weight + bias, fc weight + bias)
    groups: int = 1  # a grouped conv's groups: each output sees C_in / groups input channels


Rule = Callable[[Operator], int]  # multiply-adds of one operator for one image


def _numel(shape: Shape) -> int:
    return prod(shape)


def _conv_macs(op: Operator) -> int:
    return op.window[0] * op.window[1] * (op.in_shape[0] // op.groups) * _numel(op.out_shape)


def _fc_macs(op: Operator) -> int:
    return op.in_shape[0] * op.out_shape[0]


def _per_output_element(op: Operator) -> int:
    return _numel(op.out_shape)


def _per_input_element(op: Operator) -> int:
    return _numel(op.in_shape)


def _per_window_element(op: Operator) -> int:
    return op.window[0] * op.window[1] * _numel(op.out_shape)


def _twice_per_output_element(op: Operator) -> int:
    return 2 * _numel(op.out_shape)


def _fvcore_norm(op: Operator) -> int:
    """fvcore's batchnorm_flop_jit in eval mode (2 per element); its norm_flop_jit for a GroupNorm with an affine
    (5 per element, "a rough estimate")."""
    return (5 if op.detail == "group" else 2) * _numel(op.out_shape)


def _global_avg_pool_input(op: Operator) -> int:
    return _numel(op.in_shape) if op.detail == "global_avg" else 0


def _params_per_output_position(op: Operator) -> int:
    return op.params * op.out_shape[1] * op.out_shape[2]


def _parameters(op: Operator) -> int:
    return op.params


@dataclass(frozen=True)
class Convention:
    """A way of counting: which operator classes count, and the rule (a pure function of shapes) for each."""

    name: str
    rules: Mapping[str, Rule]  # operator class -> multiply-adds for one image; classes absent count nothing
    summary: str  # one sentence, for reports

    @property
    def ops(self) -> tuple[str, ...]:
        """The operator classes this convention counts, in the order of :data:`OPS`."""
        return tuple(op for op in OPS if op in self.rules)


# Our rule for each operator class (used when ``ops`` is a selection of OPS).
RULES: Mapping[str, Rule] = MappingProxyType(
    {
        "conv": _conv_macs,  # k*k*C_in per output element
        "fc": _fc_macs,  # in_features per output feature; the bias add is not a multiply-add
        "bn": _per_output_element,  # inference form: y = a*x + b, one multiply-add per element
        "relu": _per_output_element,  # one max(x, 0) per element
        "add": _per_output_element,  # the residual addition: one add per element of the block's output
        "pool": _per_window_element,  # one per window element per output element
        # SE: the channel-wise scale x * s, one per element (the sigmoid per channel); a selective-kernel unit's
        # selection: each path's elements times its weights, one per element of the paths it weighs
        "gate": _per_input_element,
    }
)

CONVENTIONS: Mapping[str, Convention] = MappingProxyType(
    {
        "paper": Convention(
            "paper",
            MappingProxyType({op: RULES[op] for op in PAPER_OPS}),
            "multiply-adds of conv and fc layers (He et al. 2015, Table 1: 'FLOPs (multiply-adds)')",
        ),
        "all": Convention(
            "all",
            RULES,
            "every operator class of OPS under resnet_spec's rules (BN, ReLU, add: 1 per element; pool: 1 per "
            "window element)",
        ),
        "fvcore": Convention(
            "fvcore",
            MappingProxyType(
                {
                    "conv": _conv_macs,
                    "fc": _fc_macs,
                    "bn": _fvcore_norm,  # batch norm 2 per element (eval mode, affine), GroupNorm 5
                    "pool": _global_avg_pool_input,  # adaptive_avg_pool2d: 1 per input element; max_pool2d unsupported
                }
            ),
            "fvcore FlopCountAnalysis default: conv and fc multiply-adds, BN 2 per element (GroupNorm 5), global "
            "average pool 1 per input element",
        ),
        "torchinfo": Convention(
            "torchinfo",
            MappingProxyType(
                {
                    "conv": _params_per_output_position,  # (weight + bias) elements x H_out x W_out
                    "fc": _parameters,  # weight + bias elements, once per sample
                    "bn": _parameters,  # 2*C, once per sample
                }
            ),
            "torchinfo 'Total mult-adds': conv weight x output size, other layers their parameter count per sample",
        ),
    }
)


@dataclass(frozen=True)
class RowCount:
    """Parameters and counted operations of one row of Table 1."""

    row: str  # "conv1", "conv2_x", ..., "fc"
    params: int  # every parameter of the row's layers (whatever ops are counted)
    ops: int  # counted operations, in the chosen unit
    by_op: Mapping[str, int]  # the same, split by operator class (only the counted classes)


@dataclass(frozen=True)
class Counts:
    """The result of :func:`count`: per row and in total."""

    rows: Mapping[str, RowCount]  # "conv1", "conv2_x".."convN_x", "fc", in order
    params: int
    total: int  # counted operations in ``unit``
    unit: str  # "macs" or "flops" (= 2 x macs)
    ops: tuple[str, ...]  # the operator classes counted
    input_size: tuple[int, int]  # (height, width)
    convention: str  # "paper", "all", "fvcore", "torchinfo" or "custom" (a selection of OPS under our rules)
    by_op: Mapping[str, int]  # the total, split by operator class
    label: str  # the spec's label, e.g. "resnet50 (v1, shortcut B)"


# ----------------------------------------------------------------------------------------------------------------
# Input checks


def _positive_int(value: object, what: str, where: str, minimum: int = 1) -> int:
    expected = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{where}: expected {what} {expected}, got {value!r} ({type(value).__name__})")
    if value < minimum:
        raise ValueError(f"{where}: expected {what} {expected}, got {value}")
    return value


def input_hw(input_size: object, default: int, where: str = "count") -> tuple[int, int]:
    """``None`` -> (default, default); ``n`` -> (n, n); ``(h, w)`` -> (h, w); anything else raises."""
    if input_size is None:
        return default, default
    if isinstance(input_size, int) and not isinstance(input_size, bool):
        n = _positive_int(input_size, "input_size", where)
        return n, n
    if isinstance(input_size, (tuple, list)) and len(input_size) == 2:
        return (
            _positive_int(input_size[0], "input_size height", where),
            _positive_int(input_size[1], "input_size width", where),
        )
    raise TypeError(f"{where}: expected input_size an int (square) or a (height, width) pair, got {input_size!r}")


def _resolve_convention(ops: object) -> Convention:
    if isinstance(ops, str):
        if ops in CONVENTIONS:
            return CONVENTIONS[ops]
        if ops in OPS:
            ops = (ops,)
        else:
            raise ValueError(
                f"count: unknown ops {ops!r}; expected a convention ({', '.join(CONVENTIONS)}) "
                f"or a selection of operator classes from {OPS}"
            )
    if not isinstance(ops, Iterable):
        raise TypeError(f"count: expected ops a convention name or a tuple of operator classes from {OPS}, got {ops!r}")
    chosen = tuple(ops)
    unknown = [op for op in chosen if op not in OPS]
    if unknown:
        raise ValueError(f"count: unknown operator class(es) {unknown}; expected some of {OPS}")
    if not chosen:
        raise ValueError(f"count: expected at least one operator class from {OPS}, got an empty selection")
    if set(chosen) == set(PAPER_OPS):
        return CONVENTIONS["paper"]
    if set(chosen) == set(OPS):
        return CONVENTIONS["all"]
    return Convention("custom", MappingProxyType({op: RULES[op] for op in OPS if op in chosen}), "")


# ----------------------------------------------------------------------------------------------------------------
# The operator list

# Plan layer kind -> operator class counted here (layers of other kinds, identities and zero-padding, count nothing).
_OPERATOR_CLASS: Mapping[str, str] = MappingProxyType(
    {"conv": "conv", "fc": "fc", "bn": "bn", "relu": "relu", "add": "add", "pool": "pool", "global_pool": "pool",
     "squeeze": "pool", "gate": "gate", "select": "gate"}
)  # fmt: skip


def _operator(layer: Layer) -> Operator:
    window = (layer.in_shape[1], layer.in_shape[2]) if layer.kind in ("global_pool", "squeeze") else (layer.kernel,) * 2
    if layer.detail == "channels":  # ECA's 1-D conv: a window of k along its (1, C, 1) line
        window = (layer.kernel, 1)
    detail = {"global_pool": f"global_{layer.detail}", "squeeze": "squeeze"}.get(layer.kind, layer.detail)
    if layer.detail == "blur":  # a fixed filter on each channel: a depthwise conv's multiply-adds, no parameters
        return Operator("conv", layer.row, layer.name, layer.in_shape, layer.out_shape, window, detail, 0,
                        layer.in_shape[0])  # fmt: skip
    return Operator(
        _OPERATOR_CLASS[layer.kind], layer.row, layer.name, layer.in_shape, layer.out_shape, window, detail,
        layer.param_count, layer.groups,
    )  # fmt: skip


def operators(
    spec: ResNetSpec | str,
    input_size: int | tuple[int, int] | None = None,
    *,
    num_classes: int | None = None,
    in_channels: int | None = None,
) -> tuple[Operator, ...]:
    """Every operator the built network runs on one image of ``input_size``, in execution order, with shapes.

    Read from the layout plan (:func:`resnet_spec.spec.layout_plan`).  Raises ``ValueError`` naming the row (and
    layer) whose output would be smaller than 1x1.
    """
    spec = as_spec(spec, "operators")
    height, width = input_hw(input_size, spec.input_size, "operators")
    # num_classes=0: a headless backbone (fc is identity), as resnet_spec.build makes it
    classes = None if num_classes is None else _positive_int(num_classes, "num_classes", "count", 0)
    channels = None if in_channels is None else _positive_int(in_channels, "in_channels", "count")
    plan = layout_plan(spec, (height, width), num_classes=classes, in_channels=channels)
    return tuple(_operator(layer) for layer in plan.layers if layer.kind in _OPERATOR_CLASS)


# ----------------------------------------------------------------------------------------------------------------
# Counting


def count(
    spec: ResNetSpec | str,
    input_size: int | tuple[int, int] | None = None,
    *,
    ops: Iterable[str] | str = PAPER_OPS,
    unit: str = "macs",
    num_classes: int | None = None,
    in_channels: int | None = None,
) -> Counts:
    """Parameters and operations of the network ``spec`` describes, per row of Table 1 and in total, for one image.

    The default is the paper's convention: multiply-adds of the conv and fc layers.  ``ops`` picks operator classes
    from :data:`OPS` (each under the rule in this module's docstring) or names a convention of :data:`CONVENTIONS`
    (``"paper"``, ``"all"``, ``"fvcore"``, ``"torchinfo"``).  ``unit="flops"`` doubles every count.
    ``input_size``: an int (square), ``(height, width)``, or ``None`` for the table's.  ``num_classes`` and
    ``in_channels`` replace the table's, as :func:`resnet_spec.build` does (``num_classes=0``: headless, no fc).
    Raises ``ValueError`` for an unknown op or unit and for an input too small for the network (naming the row),
    ``TypeError`` for wrong types.
    """
    convention = _resolve_convention(ops)
    if unit not in UNITS:
        raise ValueError(f"count: unknown unit {unit!r}; expected one of {UNITS}")
    scale = 2 if unit == "flops" else 1
    spec = as_spec(spec, "count")
    height, width = input_hw(input_size, spec.input_size)
    rows = spec.rows
    params = dict.fromkeys(rows, 0)
    by_row_op = {row: dict.fromkeys(convention.ops, 0) for row in rows}
    for op in operators(spec, (height, width), num_classes=num_classes, in_channels=in_channels):
        params[op.row] += op.params
        rule = convention.rules.get(op.kind)
        if rule is not None:
            by_row_op[op.row][op.kind] += scale * rule(op)
    row_counts = {
        row: RowCount(row, params[row], sum(by_row_op[row].values()), MappingProxyType(by_row_op[row])) for row in rows
    }
    by_op = {op: sum(by_row_op[row][op] for row in rows) for op in convention.ops}
    return Counts(
        rows=MappingProxyType(row_counts),
        params=sum(params.values()),
        total=sum(by_op.values()),
        unit=unit,
        ops=convention.ops,
        input_size=(height, width),
        convention=convention.name,
        by_op=MappingProxyType(by_op),
        label=spec.label,
    )
