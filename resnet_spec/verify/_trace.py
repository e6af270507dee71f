"""Tracer: run any ``nn.Module`` on a meta-device input and record its operator-level dataflow.

Every ATen operator the forward pass dispatches on an activation is recorded as an :class:`Op` (kind, attributes,
output shape, the activation values it reads and the one it writes, the parameters it uses, the module that ran
it, and a description of every operand).  Values are numbered; an in-place operator (``x += y``, ``relu_``) reads
its input value and writes a new one, so the dataflow stays a DAG.  Tensors that do not depend on the input
(parameters, buffers, factory tensors such as ``torch.zeros(1)``, random masks, and anything computed from those
alone) are *constants*: they are not recorded as operators, but an operator that reads one describes it
(:class:`Const`: its shape, its value when every element is known to be equal, whether it is random, which
parameters it comes from), so that :mod:`resnet_spec.verify._canonical` can tell ``clamp(min=0)`` from ``clamp(min=1)``.

Module-style and functional-style models trace alike, because recording happens below both, at the dispatcher.
The forward pass runs in training mode (what training runs: dropout dispatches nothing in eval mode), under
``torch.no_grad``.  No memory is allocated: every tensor lives on the meta device, and the output shapes of the
operators a ResNet runs are computed here (``_META_SHAPES``) rather than by PyTorch's Python meta kernels, which
would import ``torch._dynamo`` and sympy on first use: seconds of start-up for a trace that takes a fraction of one.
A model that cannot run on the meta device (a data-dependent check, a scripted module) is traced on the CPU
instead by :func:`trace_model` when given ``cpu_sizes`` (its buffers are restored afterwards).

The forward's result may be a tensor, a mapping (``dict``, a Hugging Face ``ModelOutput``), a dataclass, or a
tuple/list of those: every tensor in it computed from the input is an output (:attr:`Trace.outputs`).

Limitation: an in-place operator applied to a *view* of an activation updates only the view's value, not its
base's; ResNets do not do that.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import torch
from torch import nn
from torch.nn.modules.module import register_module_forward_hook, register_module_forward_pre_hook
from torch.nn.parameter import is_lazy
from torch.utils._python_dispatch import TorchDispatchMode

from ..spec import conv_output_size

__all__ = [
    "Const",
    "Op",
    "Trace",
    "TraceError",
    "materialize",
    "output_tensors",
    "record_values",
    "to_meta",
    "trace_from_data",
    "trace_model",
    "trace_to_data",
]  # fmt: skip


class TraceError(RuntimeError):
    """The model could not be traced: it cannot move to the meta device, or its forward pass failed."""


# ATen operator (overload packet name) -> the kind the reader works with, before canonicalisation
# (resnet_spec.verify._canonical turns equivalent forms, such as clamp(min=0) or a hand-written batch norm, into these).
_KINDS: Mapping[str, str] = MappingProxyType(
    {
        "convolution": "conv",
        "_convolution": "conv",
        "native_batch_norm": "bn",
        "_native_batch_norm_legit": "bn",
        "_native_batch_norm_legit_no_training": "bn",
        "_native_batch_norm_legit_functional": "bn",
        "batch_norm": "bn",
        "relu": "relu",
        "relu_": "relu",
        "add": "add",
        "add_": "add",
        "max_pool2d_with_indices": "maxpool",
        "max_pool2d": "maxpool",
        "avg_pool2d": "avgpool",
        "mean": "mean",
        "_adaptive_avg_pool2d": "adaptive_avgpool",
        "adaptive_avg_pool2d": "adaptive_avgpool",
        "adaptive_max_pool2d": "adaptive_maxpool",
        "addmm": "linear",
        "mm": "linear",
        "linear": "linear",
        "constant_pad_nd": "pad",
        "reflection_pad2d": "edge_pad",  # a pad by the border's values (reflected or repeated), not zeros
        "replication_pad2d": "edge_pad",
        "cat": "cat",
        "native_group_norm": "norm",
        "native_layer_norm": "norm",
        "native_dropout": "dropout",
        "dropout": "dropout",
        "feature_dropout": "dropout",
        "_softmax": "softmax",
        "_log_softmax": "softmax",
        "softmax": "softmax",
        "log_softmax": "softmax",
    }
)
# Operators that only reshape, alias or copy: their output is their input, for the reader.
_VIEWS = frozenset(
    {
        "view", "_unsafe_view", "reshape", "flatten", "t", "permute", "transpose", "expand", "slice", "select",
        "squeeze", "unsqueeze", "clone", "contiguous", "detach", "alias", "as_strided", "_to_copy", "lift_fresh",
        "lift_fresh_copy", "copy", "view_as", "expand_as", "to", "_reshape_alias", "unflatten",
    }
)  # fmt: skip
_ACTIVATIONS = frozenset(
    {
        "gelu", "gelu_", "silu", "silu_", "hardtanh", "hardtanh_", "leaky_relu", "leaky_relu_", "elu", "elu_",
        "sigmoid", "sigmoid_", "tanh", "tanh_", "threshold", "threshold_", "clamp_min", "clamp_min_", "prelu",
        "_prelu_kernel", "hardswish", "hardswish_", "mish", "mish_", "softplus", "relu6", "clamp", "clamp_",
        "hardsigmoid", "hardsigmoid_", "selu", "selu_", "celu", "celu_", "rrelu_with_noise", "log_sigmoid_forward",
    }
)  # fmt: skip
# Operators whose output depends on their tensor arguments' shapes only (or on nothing): a constant.
_FACTORIES = frozenset(
    {
        "empty_like", "zeros_like", "ones_like", "full_like", "rand_like", "randn_like", "randint_like", "new_empty",
        "new_zeros", "new_ones", "new_full", "empty", "zeros", "ones", "full", "scalar_tensor", "arange", "rand",
        "randn", "randint", "empty_strided", "new_empty_strided", "eye", "linspace",
    }
)  # fmt: skip
_RANDOM = frozenset(
    {"bernoulli", "bernoulli_", "rand", "rand_like", "randn", "randn_like", "randint", "randint_like", "normal_",
     "uniform_", "exponential_", "geometric_", "cauchy_", "log_normal_", "random_", "multinomial"}
)  # fmt: skip
_NUMBERS = frozenset({int, float, bool})
_PLAIN = frozenset({int, float, bool, str, type(None)})
# Operators returning several tensors that are all results (parts of their input); every part is a value of its own
# (other multi-output operators, a batch norm's saved statistics, a max pool's indices, return one result first).
_PARTS = frozenset({"split", "split_with_sizes", "unsafe_split", "unsafe_split_with_sizes", "unbind", "tensor_split",
                    "chunk", "unsafe_chunk"})  # fmt: skip
# Keyword arguments that say where or how a result is stored, not what is computed.
_STORAGE_KWARGS = frozenset({"out", "dtype", "device", "layout", "memory_format", "pin_memory", "non_blocking"})


@dataclass(frozen=True)
class Const:
    """An operand that does not depend on the input: a parameter, a buffer, a factory tensor, or derived from those."""

    shape: tuple[int, ...]
    value: float | None = None  # every element equals this, when that is known (torch.zeros(1), torch.tensor(0.))
    random: bool = False  # drawn at random (a dropout mask)
    params: tuple[str, ...] = ()  # the parameters it is, or is computed from
    buffers: tuple[str, ...] = ()  # the buffers (running statistics) it is, or is computed from
    # The operators that computed it from its parameters, views left out, each with its numbers: ("var_mean",
    # "sub", "add(1e-10)", "sqrt", "div") for a weight standardised by hand; () for a parameter itself (or a view).
    transform: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        """The one parameter or buffer this is (or a view of); "" when it is none or several."""
        names = (*self.params, *self.buffers)
        return names[0] if len(names) == 1 else ""

    @property
    def source(self) -> str:
        """The one parameter this is or is computed from, buffers aside (a pruned weight: the parameter times its
        mask); otherwise :attr:`name`."""
        return self.params[0] if len(self.params) == 1 else self.name


@dataclass(frozen=True)
class Op:
    """One recorded operator."""

    index: int
    kind: str  # conv, bn, norm, relu, activation, add, maxpool, avgpool, mean, linear, pad, dropout, view, other...
    aten: str  # the ATen overload, e.g. "aten.convolution.default"
    inputs: tuple[int, ...]  # activation values read, in argument order
    output: int  # the value written
    shape: tuple[int, ...]  # output shape
    params: tuple[str, ...]  # names of the parameters used
    module: str  # the innermost module running when the op was dispatched ("" for the model itself)
    attrs: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    # Every positional argument: ("value", v) an activation, ("const", Const), or ("scalar", a Python value).
    operands: tuple[tuple[str, Any], ...] = ()
    buffers: tuple[str, ...] = ()  # names of the buffers used (running statistics), as `params` for parameters
    # Per positional argument: the parameter or buffer it is (or a view of), else "".  Says each tensor's role in
    # the operator (batch norm's weight, bias, running mean and variance), which weight transfer needs.
    arg_names: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        """The overload packet's name, e.g. ``"convolution"``, ``"add_"``."""
        return self.aten.split(".")[1] if self.aten.startswith("aten.") else self.aten


@dataclass(frozen=True)
class Trace:
    """A forward pass as data: ops in execution order, the input and output values, the model's parameters."""

    ops: tuple[Op, ...]
    input: int
    output: int  # the first output (the only one for a model that returns a tensor)
    input_shape: tuple[int, ...]
    params: Mapping[str, int]  # every parameter name -> numel (a tensor shared by several names: its first)
    used_params: frozenset[str]
    producers: Mapping[int, int]  # value -> index of the op that wrote it
    consumers: Mapping[int, tuple[int, ...]]  # value -> indices of the ops that read it
    outputs: tuple[int, ...] = ()  # every tensor the forward returned that was computed from the input, in order
    device: str = "meta"  # where the forward ran: "meta", or "cpu" for a model that cannot run on meta
    notes: tuple[str, ...] = ()  # how it was traced, when that is not the plain way
    canonical: bool = False  # rewritten by resnet_spec.verify._canonical (equivalent forms read as one)
    # Every parameter and buffer name -> its shape (buffers too: running statistics have places in the table).
    shapes: Mapping[str, tuple[int, ...]] = field(default_factory=lambda: MappingProxyType({}))
    buffers: frozenset[str] = frozenset()  # which names of `shapes` are buffers
    # A tensor the model holds under several names (one module used twice, `conv2 = conv1`): each other name -> the
    # first, the name operators are recorded with.  Such a tensor is tied: one degree of freedom in two places.
    aliases: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))

    def producer(self, value: int) -> Op | None:
        index = self.producers.get(value)
        return None if index is None else self.ops[index]

    def readers(self, value: int) -> Iterator[Op]:
        for index in self.consumers.get(value, ()):
            yield self.ops[index]

    @property
    def unused_params(self) -> tuple[str, ...]:
        """Parameters the model owns that no operator of the forward pass read."""
        return tuple(name for name in self.params if name not in self.used_params)

    def replace_ops(self, ops: Sequence[Op], outputs: Sequence[int] | None = None) -> Trace:
        """This trace with ``ops`` (renumbered in order) and, when given, other outputs; the indexes rebuilt."""
        renumbered = [op if op.index == i else dataclasses.replace(op, index=i) for i, op in enumerate(ops)]
        producers: dict[int, int] = {}
        consumers: dict[int, list[int]] = {}
        for op in renumbered:
            producers[op.output] = op.index
            for value in op.inputs:
                consumers.setdefault(value, []).append(op.index)
        outs = tuple(self.outputs if outputs is None else outputs)
        return dataclasses.replace(
            self,
            ops=tuple(renumbered),
            output=outs[0] if outs else self.output,
            outputs=outs,
            used_params=frozenset(name for op in renumbered for name in op.params),
            producers=MappingProxyType(producers),
            consumers=MappingProxyType({k: tuple(v) for k, v in consumers.items()}),
        )


def _memory(tensor: torch.Tensor) -> tuple[Any, ...]:
    """Where a tensor's elements are: two tensor objects with this key are one value (the recorder keeps every
    value's tensor alive, so that no storage is reused while it records)."""
    try:
        storage = tensor.untyped_storage()._cdata
    except (RuntimeError, NotImplementedError):  # a tensor without storage (a wrapper subclass)
        storage = id(tensor)
    return (storage, tensor.storage_offset(), tuple(tensor.shape), tuple(tensor.stride()), tensor.dtype)


class _Recorder(TorchDispatchMode):  # type: ignore[no-untyped-call]
    @classmethod
    def _should_skip_dynamo(cls) -> bool:
        # TorchDispatchMode wraps a subclass's __torch_dispatch__ in torch._disable_dynamo unless this says no, and
        # that wrapper imports torch._dynamo (about 3 s, longer than the whole trace) on the first operator.  A
        # recorder never runs under torch.compile, so there is nothing for the wrapper to disable.
        return False

    def __init__(
        self, params: Mapping[int, str], buffers: Mapping[int, str], module_stack: list[str], keep_values: bool = False
    ) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self._keep_values = keep_values  # keep each value as computed, though an in-place op later overwrites it
        self.tensors: dict[int, torch.Tensor] = {}  # value -> tensor (what record_values returns)
        self._module_stack = module_stack
        self._values: dict[int, int] = {}  # id(tensor) -> current value
        self._aliases: dict[tuple[Any, ...], int] = {}  # a value's memory (storage, offset, shape, strides) -> value
        self._consts: dict[int, Const] = {}  # id(tensor) -> what the constant is
        self._param_ids = dict(params)
        self._buffer_ids = buffers
        self._keep: list[torch.Tensor] = []  # keeps tensors alive so that their ids stay unique
        self.ops: list[Op] = []
        self.next_value = 0

    def new_value(self, tensor: torch.Tensor) -> int:
        value = self.next_value
        self.next_value += 1
        self._values[id(tensor)] = value
        self._consts.pop(id(tensor), None)
        self._keep.append(tensor)
        self.tensors[value] = tensor
        self._aliases[_memory(tensor)] = value
        return value

    def value_of(self, tensor: torch.Tensor) -> int | None:
        return self._values.get(id(tensor))

    def output_value(self, tensor: torch.Tensor) -> int | None:
        """The value a returned tensor is: by identity, or as another object on the same memory (a tensor subclass
        made by ``as_subclass``, a ``.data`` or ``detach()`` of the value)."""
        value = self._values.get(id(tensor))
        return value if value is not None else self._aliases.get(_memory(tensor))

    def _const(self, tensor: torch.Tensor) -> Const:
        """What a tensor that is not an activation is (parameters and buffers by identity; others by record)."""
        known = self._consts.get(id(tensor))
        if known is not None:
            return known
        # A lazy module's parameter has no shape until it is materialised (during the forward pass).
        shape = () if is_lazy(tensor) else tuple(int(n) for n in tensor.shape)
        if id(tensor) in self._param_ids:
            return Const(shape, params=(self._param_ids[id(tensor)],))
        if id(tensor) in self._buffer_ids:
            return Const(shape, buffers=(self._buffer_ids[id(tensor)],))
        return Const(shape, value=_uniform_value(tensor))

    def _operand(self, arg: Any) -> tuple[str, Any]:
        kind = type(arg)
        if kind in _PLAIN:
            return ("scalar", arg)
        if isinstance(arg, torch.Tensor):
            value = self._values.get(id(arg))
            return ("value", value) if value is not None else ("const", self._const(arg))
        if kind is list or kind is tuple:
            if all(type(a) in _NUMBERS for a in arg):
                return ("scalar", tuple(arg))
            if any(isinstance(a, torch.Tensor) for a in arg):
                return ("list", tuple(self._operand(a) for a in arg))
        return ("scalar", None)

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        name = func.overloadpacket.__name__
        out: Any = None
        if self._keep_values and func._schema.is_mutable:
            for arg in _tensors(args, kwargs):
                value = self.value_of(arg)
                if value is not None:
                    self.tensors[value] = arg.clone()
        shaper = _META_SHAPES.get(func) or (_meta_pointwise if torch.Tag.pointwise in func.tags else None)
        if shaper is not None and all(t.is_meta for t in _tensors(args, kwargs)):
            out = shaper(*args, **kwargs) if shaper is not _meta_pointwise else _meta_pointwise(func, args, kwargs)
        if out is None:
            out = func(*args, **kwargs)
        first = out[0] if isinstance(out, (tuple, list)) and out else out
        if not isinstance(first, torch.Tensor):
            return out
        operands = tuple(self._operand(a) for a in args)
        kw_operands = {k: self._operand(v) for k, v in kwargs.items() if k not in _STORAGE_KWARGS}
        inputs: list[int] = []
        consts: list[Const] = []
        for kind, v in _flat(operands, kw_operands):
            if kind == "value":
                inputs.append(v)
            elif kind == "const":
                consts.append(v)
        parts = list(out) if name in _PARTS and isinstance(out, (tuple, list)) else [first]
        if not inputs or name in _FACTORIES:
            for part in parts:
                self._record_const(name, part, operands, consts)
            return out
        params = tuple(p for c in consts for p in c.params)
        buffers = tuple(b for c in consts for b in c.buffers)
        arg_names = tuple(v.source if k == "const" else "" for k, v in operands) if params or buffers else ()
        kind = _kind(name, len(inputs))
        attrs = _attrs(kind, name, args, first)
        if kw_operands:
            attrs = MappingProxyType({**attrs, "kwargs": MappingProxyType(kw_operands)})
        module = self._module_stack[-1] if self._module_stack else ""
        for i, part in enumerate(parts):  # one op per result: each part of a split is read where it is used
            if not isinstance(part, torch.Tensor):
                continue
            part_attrs = attrs if len(parts) == 1 else MappingProxyType({**attrs, "part": i, "parts": len(parts)})
            output = self.new_value(part)
            op = Op(len(self.ops), kind, str(func), tuple(inputs), output, tuple(part.shape), params, module,
                    part_attrs, operands, buffers, arg_names)  # fmt: skip
            self.ops.append(op)
        return out

    def _record_const(
        self, name: str, out: torch.Tensor, operands: tuple[tuple[str, Any], ...], consts: list[Const]
    ) -> None:
        """Remember what a tensor computed without any activation is."""
        shape = tuple(int(n) for n in out.shape)
        scalars = [v for kind, v in operands if kind == "scalar"]
        value: float | None = None
        if name in ("zeros", "zeros_like", "new_zeros", "zero_"):
            value = 0.0
        elif name in ("ones", "ones_like", "new_ones"):
            value = 1.0
        elif name in ("full", "full_like", "new_full", "fill_", "scalar_tensor"):
            numbers = [v for v in scalars if isinstance(v, (int, float)) and not isinstance(v, bool)]
            value = float(numbers[-1]) if numbers else None
        elif name in _VIEWS and len(consts) == 1:
            value = consts[0].value
        elif name not in _FACTORIES and not consts:
            value = _uniform_value(out)
        random = name in _RANDOM or any(c.random for c in consts)
        params = tuple(dict.fromkeys(p for c in consts for p in c.params))
        buffers = tuple(dict.fromkeys(b for c in consts for b in c.buffers))
        transform = tuple(dict.fromkeys(step for c in consts for step in c.transform))
        # a step that computes a new tensor; an in-place write to a parameter (a lazy module's initialisation, a
        # forward pass that writes its weights: a finding of its own) leaves the parameter what the conv reads
        if params and name not in _VIEWS and name not in _FACTORIES and id(out) not in self._param_ids:
            numbers = [v for v in scalars if isinstance(v, float) or (isinstance(v, int) and not isinstance(v, bool))]
            transform += (f"{name}({', '.join(repr(float(v)) for v in numbers)})" if numbers else name,)
        self._consts[id(out)] = Const(shape, value, random, params, buffers, transform)
        self._values.pop(id(out), None)
        self._keep.append(out)


def _uniform_value(tensor: torch.Tensor) -> float | None:
    """The value of every element of a small tensor that holds data and has one value throughout, else None."""
    if tensor.device.type == "meta" or tensor.numel() == 0 or tensor.numel() > 64 or tensor.is_complex():
        return None
    flat = tensor.detach().reshape(-1)
    first = float(flat[0])
    return first if bool((flat == first).all()) else None


def _flat(operands: tuple[tuple[str, Any], ...], kwargs: Mapping[str, tuple[str, Any]]) -> Iterator[tuple[str, Any]]:
    """Every operand, one level into lists (``cat``'s inputs)."""
    for kind, value in (*operands, *kwargs.values()):
        if kind == "list":
            yield from value
        else:
            yield kind, value


# Output shapes of the operators a ResNet runs, on meta tensors.  PyTorch's own meta kernels for these are Python
# decompositions: slow for a 1202-layer net, and the first ones called import torch._dynamo and sympy (about 3 s
# together, more than a ResNet-152's whole trace).  Each function takes the operator's arguments and returns its
# output, or None to leave the operator to PyTorch; tests/test_trace.py checks each against PyTorch's kernel.


def _meta_convolution(
    x: torch.Tensor, weight: torch.Tensor, bias: Any, stride: Any, padding: Any, dilation: Any, transposed: bool,
    output_padding: Any, groups: int,
) -> torch.Tensor | None:  # fmt: skip
    """``aten.convolution`` in two dimensions, with the checks PyTorch's kernel makes; the shape is the arithmetic."""
    if transposed or x.dim() != 4 or weight.dim() != 4:
        return None
    groups = int(groups)
    if x.shape[1] != weight.shape[1] * groups:
        raise RuntimeError(
            f"Given groups={groups}, weight of size {list(weight.shape)}, expected input{list(x.shape)} to have "
            f"{weight.shape[1] * groups} channels, but got {x.shape[1]} channels instead"
        )
    size = [
        conv_output_size(int(x.shape[2 + i]), int(weight.shape[2 + i]), _ints(stride)[i % len(_ints(stride))],
                         _ints(padding)[i % len(_ints(padding))], _ints(dilation)[i % len(_ints(dilation))])
        for i in range(2)
    ]  # fmt: skip
    if min(size) < 1:
        raise RuntimeError(f"conv2d output size {size} is too small for input {tuple(x.shape)} and weight "
                           f"{tuple(weight.shape)}")  # fmt: skip
    return torch.empty((x.shape[0], weight.shape[0], *size), device="meta", dtype=x.dtype)


def _meta_batch_norm(x: torch.Tensor, *args: Any) -> tuple[torch.Tensor, ...]:
    """``aten.native_batch_norm`` and ``_native_batch_norm_legit_no_training``: the input's shape, and two (C,)."""
    channels = (int(x.shape[1]),) if x.dim() > 1 else (0,)
    # torch.empty, not empty_like: on meta, empty_like is a Python reference that imports sympy (about 0.6 s).
    return tuple(torch.empty(shape, device="meta", dtype=x.dtype) for shape in (x.shape, channels, channels))


def _meta_max_pool2d_with_indices(
    x: torch.Tensor, kernel_size: Any, stride: Any = (), padding: Any = 0, dilation: Any = 1, ceil_mode: bool = False
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """``aten.max_pool2d_with_indices`` on a 4-d input, with the checks PyTorch's kernel makes."""
    if x.dim() != 4:
        return None
    kernel = _pair(kernel_size)
    strides = _pair(stride) if _ints(stride) else kernel
    pads, dilations = _pair(padding), _pair(dilation)
    if any(p > k // 2 for k, p in zip(kernel, pads, strict=True)):
        raise RuntimeError(f"pad should be smaller than or equal to half of kernel size, but got padding {pads} for "
                           f"kernel size {kernel}")  # fmt: skip
    size = [conv_output_size(int(x.shape[2 + i]), kernel[i], strides[i], pads[i], dilations[i], bool(ceil_mode))
            for i in range(2)]  # fmt: skip
    if min(size) < 1:
        raise RuntimeError(f"Given input size: {tuple(x.shape[1:])}. Calculated output size: "
                           f"{(x.shape[1], *size)}. Output size is too small")  # fmt: skip
    shape = (x.shape[0], x.shape[1], *size)
    return torch.empty(shape, device="meta", dtype=x.dtype), torch.empty(shape, device="meta", dtype=torch.int64)


def _meta_add_(x: torch.Tensor, other: Any, *, alpha: Any = 1) -> torch.Tensor:
    """``aten.add_.Tensor`` (``out += identity``): ``x`` itself, once ``other`` broadcasts to its shape."""
    if isinstance(other, torch.Tensor):
        ours, theirs = tuple(x.shape), tuple(other.shape)
        padded = (1,) * (len(ours) - len(theirs)) + theirs
        if len(theirs) > len(ours) or any(b not in (1, a) for a, b in zip(ours, padded, strict=True)):
            raise RuntimeError(f"output with shape {list(ours)} doesn't match the broadcast shape of {list(ours)} and "
                               f"{list(theirs)}")  # fmt: skip
    return x


def _meta_mean(x: torch.Tensor, dim: Any = None, keepdim: bool = False, *, dtype: Any = None) -> torch.Tensor:
    """``aten.mean.dim`` (the global average pool); no ``dim``, or an empty one, reduces every dimension."""
    named = _ints(dim) if dim is not None else ()
    if any(not -x.dim() <= d < x.dim() for d in named):
        raise IndexError(f"Dimension out of range (expected to be in range of [{-x.dim()}, {x.dim() - 1}], but got "
                         f"{list(named)})")  # fmt: skip
    dims = {d % x.dim() for d in named} or set(range(x.dim()))
    if len(dims) < len(named):
        raise RuntimeError(f"a dim appears multiple times in the list of dims {list(named)}")
    shape = [1 if i in dims else n for i, n in enumerate(x.shape) if keepdim or i not in dims]
    return torch.empty(shape, device="meta", dtype=dtype or x.dtype)


_COMPARISONS = frozenset({"eq", "ne", "lt", "le", "gt", "ge", "logical_and", "logical_or", "logical_not", "isnan",
                          "isinf", "isfinite", "signbit"})  # fmt: skip


def _meta_pointwise(func: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> torch.Tensor | None:
    """A pointwise operator (``clamp``, ``maximum``, ``mul`` ...): the broadcast of its tensor operands' shapes.
    PyTorch's meta kernels for many of these are Python references whose first call imports sympy (seconds)."""
    if kwargs.get("out") is not None:
        return None
    tensors = [a for a in args if isinstance(a, torch.Tensor)]
    if not tensors:
        return None
    shape = _broadcast([tuple(t.shape) for t in tensors])
    if func.overloadpacket.__name__.endswith("_"):  # in place: the first operand, once the others broadcast to it
        return tensors[0] if shape == tuple(tensors[0].shape) else None
    floating = [t.dtype for t in tensors if t.is_floating_point()]
    dtype = torch.bool if func.overloadpacket.__name__ in _COMPARISONS else (floating or [tensors[0].dtype])[0]
    return torch.empty(shape, device="meta", dtype=dtype)


def _broadcast(shapes: list[tuple[int, ...]]) -> tuple[int, ...]:
    """NumPy broadcasting of shapes (torch.broadcast_shapes imports sympy).  Raises RuntimeError as PyTorch does."""
    rank = max(len(shape) for shape in shapes)
    out = [1] * rank
    for shape in shapes:
        for i, n in enumerate((1,) * (rank - len(shape)) + shape):
            if n != 1 and out[i] not in (1, n):
                raise RuntimeError(f"The size of tensor a ({out[i]}) must match the size of tensor b ({n}) at "
                                   f"non-singleton dimension {i}")  # fmt: skip
            out[i] = n if n != 1 else out[i]
    return tuple(out)


def _meta_mm(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor | None:
    """``aten.mm`` (a linear layer without bias), with PyTorch's check and message."""
    if a.dim() != 2 or b.dim() != 2:
        return None
    if a.shape[1] != b.shape[0]:
        raise RuntimeError(f"a and b must have same reduction dim, but got {list(a.shape)} X {list(b.shape)}.")
    return torch.empty((a.shape[0], b.shape[1]), device="meta", dtype=a.dtype)


def _meta_addmm(bias: torch.Tensor, a: torch.Tensor, b: torch.Tensor, **scales: Any) -> torch.Tensor | None:
    """``aten.addmm`` (a linear layer with bias): ``mm``'s shape."""
    return _meta_mm(a, b)


def _meta(shape: Sequence[int], like: torch.Tensor) -> torch.Tensor:
    return torch.empty(tuple(int(n) for n in shape), device="meta", dtype=like.dtype)


def _dims(x: torch.Tensor, dim: Any) -> list[int]:
    """Reduced dimensions, normalised; none given: all.  Raises IndexError as PyTorch does."""
    named = _ints(dim) if dim is not None else ()
    if any(not -max(1, x.dim()) <= d < max(1, x.dim()) for d in named):
        raise IndexError(f"Dimension out of range (expected to be in range of [{-x.dim()}, {x.dim() - 1}], but got "
                         f"{list(named)})")  # fmt: skip
    return sorted({d % max(1, x.dim()) for d in named}) if named else list(range(x.dim()))


def _meta_reduce(x: torch.Tensor, dim: Any = None, keepdim: bool = False, *rest: Any, **kwargs: Any) -> torch.Tensor:
    """``sum``, ``amax`` over dims (``dtype=`` of ``sum`` only changes the dtype)."""
    dims = set(_dims(x, dim))
    shape = [1 if i in dims else n for i, n in enumerate(x.shape) if keepdim or i not in dims]
    dtype = kwargs.get("dtype") or x.dtype
    return torch.empty(shape, device="meta", dtype=dtype)


def _meta_var(x: torch.Tensor, dim: Any = None, *, correction: Any = None, keepdim: bool = False) -> torch.Tensor:
    return _meta_reduce(x, dim, keepdim)


def _meta_stack(tensors: Sequence[torch.Tensor], dim: int = 0) -> torch.Tensor | None:
    shapes = {tuple(t.shape) for t in tensors}
    if len(shapes) != 1:
        raise RuntimeError(f"stack expects each tensor to be equal size, but got {sorted(shapes)}")
    shape = list(tensors[0].shape)
    position = dim % (len(shape) + 1)
    return _meta([*shape[:position], len(tensors), *shape[position:]], tensors[0])


def _meta_cat(tensors: Sequence[torch.Tensor], dim: int = 0) -> torch.Tensor | None:
    shaped = [t for t in tensors if not (t.dim() == 1 and t.shape[0] == 0)]  # cat skips empty 1-d tensors
    if not shaped:
        return None
    rank = shaped[0].dim()
    position = dim % rank
    for t in shaped:
        if t.dim() != rank or any(a != b for i, (a, b) in enumerate(zip(t.shape, shaped[0].shape, strict=True))
                                  if i != position):  # fmt: skip
            raise RuntimeError(f"Sizes of tensors must match except in dimension {position}")
    shape = list(shaped[0].shape)
    shape[position] = sum(int(t.shape[position]) for t in shaped)
    return _meta(shape, shaped[0])


def _meta_im2col(x: torch.Tensor, kernel: Any, dilation: Any, padding: Any, stride: Any) -> torch.Tensor | None:
    if x.dim() != 4:
        return None
    k, d, p, s = _pair(kernel), _pair(dilation), _pair(padding), _pair(stride)
    size = [conv_output_size(int(x.shape[2 + i]), k[i], s[i], p[i], d[i]) for i in range(2)]
    if min(size) < 1:
        raise RuntimeError(f"im2col: the output size {size} is too small for input {tuple(x.shape)}")
    return _meta((x.shape[0], x.shape[1] * k[0] * k[1], size[0] * size[1]), x)


def _meta_bmm(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor | None:
    if a.dim() != 3 or b.dim() != 3:
        return None
    if a.shape[0] != b.shape[0] or a.shape[2] != b.shape[1]:
        raise RuntimeError(f"Expected size for first two dimensions of batch2 tensor to be: [{a.shape[0]}, "
                           f"{a.shape[2]}] but got: [{b.shape[0]}, {b.shape[1]}].")  # fmt: skip
    return _meta((a.shape[0], a.shape[1], b.shape[2]), a)


def _meta_adaptive_pool(x: torch.Tensor, size: Any) -> torch.Tensor | None:
    return _meta((*x.shape[:-2], *_pair(size)), x) if x.dim() in (3, 4) else None


def _meta_avg_pool2d(
    x: torch.Tensor, kernel_size: Any, stride: Any = (), padding: Any = 0, ceil_mode: bool = False, *rest: Any
) -> torch.Tensor | None:
    if x.dim() != 4:
        return None
    kernel = _pair(kernel_size)
    strides = _pair(stride) if _ints(stride) else kernel
    pads = _pair(padding)
    if any(p > k // 2 for k, p in zip(kernel, pads, strict=True)):
        raise RuntimeError("pad should be at most half of effective kernel size")
    size = [conv_output_size(int(x.shape[2 + i]), kernel[i], strides[i], pads[i], 1, bool(ceil_mode))
            for i in range(2)]  # fmt: skip
    if min(size) < 1:
        raise RuntimeError(f"Given input size: {tuple(x.shape[1:])}. Calculated output size: {(x.shape[1], *size)}. "
                           "Output size is too small")  # fmt: skip
    return _meta((x.shape[0], x.shape[1], *size), x)


def _meta_same(x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
    """An operator whose output has its input's shape (a softmax, a flip)."""
    return _meta(x.shape, x)


def _meta_group_norm(x: torch.Tensor, weight: Any, bias: Any, n: int, c: int, hw: int, groups: int,
                     eps: float) -> tuple[torch.Tensor, ...]:  # fmt: skip
    """``native_group_norm``: the input's shape, and (N, groups) twice."""
    stats = torch.empty((int(n), int(groups)), device="meta", dtype=x.dtype)
    return _meta(x.shape, x), stats, stats.clone()


def _meta_adaptive_max_pool(x: torch.Tensor, size: Any) -> tuple[torch.Tensor, torch.Tensor] | None:
    out = _meta_adaptive_pool(x, size)
    return None if out is None else (out, torch.empty(tuple(out.shape), device="meta", dtype=torch.int64))


def _meta_like(x: torch.Tensor, *args: Any, dtype: Any = None, **kwargs: Any) -> torch.Tensor:
    """``empty_like``, ``zeros_like`` ...: a tensor of ``x``'s shape (values do not exist on meta)."""
    return torch.empty(tuple(x.shape), device="meta", dtype=dtype or x.dtype)


def _meta_self(x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
    """An in-place operator that keeps its operand's shape (``bernoulli_``, ``uniform_``)."""
    return x


def _meta_dropout(x: torch.Tensor, *args: Any) -> tuple[torch.Tensor, torch.Tensor]:
    return _meta(x.shape, x), torch.empty(tuple(x.shape), device="meta", dtype=torch.bool)


_aten = torch.ops.aten
_META_SHAPES: Mapping[Any, Callable[..., Any]] = MappingProxyType(
    {
        _aten.convolution.default: _meta_convolution,
        _aten.native_batch_norm.default: _meta_batch_norm,
        _aten._native_batch_norm_legit_no_training.default: _meta_batch_norm,
        _aten.max_pool2d_with_indices.default: _meta_max_pool2d_with_indices,
        _aten.add_.Tensor: _meta_add_,
        _aten.mean.dim: _meta_mean,
        _aten.mm.default: _meta_mm,
        _aten.addmm.default: _meta_addmm,
        _aten.bmm.default: _meta_bmm,
        _aten.sum.dim_IntList: _meta_reduce,
        _aten.amax.default: _meta_reduce,
        _aten.var.correction: _meta_var,
        _aten.std.correction: _meta_var,
        _aten.stack.default: _meta_stack,
        _aten.cat.default: _meta_cat,
        _aten.im2col.default: _meta_im2col,
        _aten._adaptive_avg_pool2d.default: _meta_adaptive_pool,
        _aten.avg_pool2d.default: _meta_avg_pool2d,
        _aten._softmax.default: _meta_same,
        _aten._log_softmax.default: _meta_same,
        _aten.flip.default: _meta_same,
        _aten.native_dropout.default: _meta_dropout,
        _aten.native_group_norm.default: _meta_group_norm,
        _aten.adaptive_max_pool2d.default: _meta_adaptive_max_pool,
        **{
            getattr(_aten, name).default: _meta_like
            for name in ("empty_like", "zeros_like", "ones_like", "rand_like", "randn_like")
        },
        _aten.full_like.default: _meta_like,
        _aten.bernoulli_.float: _meta_self,
        _aten.uniform_.default: _meta_self,
        _aten.normal_.default: _meta_self,
    }
)


def _tensors(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Iterator[torch.Tensor]:
    """The tensors among an operator's arguments, one level into lists (``cat``'s inputs)."""
    for arg in (*args, *kwargs.values()):
        if isinstance(arg, torch.Tensor):
            yield arg
        elif isinstance(arg, (list, tuple)):
            for item in arg:
                if isinstance(item, torch.Tensor):
                    yield item


def _kind(name: str, inputs: int) -> str:
    if name in _VIEWS or name == "copy_":
        return "view"
    if name in _ACTIVATIONS:
        return "activation"
    kind = _KINDS.get(name, "other")
    return "other" if kind == "add" and inputs != 2 else kind  # x + 1 is not a merge of two paths


def _ints(value: Any) -> tuple[int, ...]:
    return tuple(int(v) for v in value) if isinstance(value, (list, tuple)) else (int(value),)


def _pair(value: Any) -> tuple[int, int]:
    """A pooling argument given as one int or as (height, width)."""
    ints = _ints(value)
    return (ints[0], ints[-1])


def _per_image(out: torch.Tensor) -> int:
    """Elements of one image's output (the first dimension is the batch)."""
    return int(out.numel()) // max(1, int(out.shape[0])) if out.dim() > 0 else int(out.numel())


# Batch norm overloads -> (position of the `training` flag or None, position of `eps`).
_BN_ARGS: Mapping[str, tuple[int | None, int]] = MappingProxyType(
    {
        "native_batch_norm": (5, 7),
        "_native_batch_norm_legit": (5, 7),
        "_native_batch_norm_legit_functional": (5, 7),
        "_native_batch_norm_legit_no_training": (None, 6),
        "batch_norm": (5, 7),
    }
)


def _attrs(kind: str, name: str, args: tuple[Any, ...], out: torch.Tensor) -> Mapping[str, Any]:
    """Operator attributes the reader compares against a spec; shapes come from the (meta) tensors."""
    attrs: dict[str, Any] = (
        {"in_shape": tuple(int(n) for n in args[0].shape)} if args and isinstance(args[0], torch.Tensor) else {}
    )
    if kind == "conv":
        x, weight, bias = args[0], args[1], args[2]
        attrs.update(
            kernel=tuple(int(k) for k in weight.shape[2:]),
            stride=_ints(args[3]),
            padding=_ints(args[4]),
            dilation=_ints(args[5]),
            groups=int(args[8]) if len(args) > 8 else 1,
            in_channels=int(x.shape[1]),
            out_channels=int(weight.shape[0]),
            bias=bias is not None,
            macs=_per_image(out) * int(weight[0].numel()),
            input_size=tuple(int(n) for n in x.shape[2:]),
        )
    elif kind in ("maxpool", "avgpool"):
        kernel = _ints(args[1])
        stride = _ints(args[2]) if len(args) > 2 and args[2] else kernel
        ceil_at = 5 if kind == "maxpool" else 4
        attrs.update(
            kernel=kernel * (2 // len(kernel)),
            stride=stride * (2 // len(stride)),
            padding=_ints(args[3]) * (2 // len(_ints(args[3]))) if len(args) > 3 else (0, 0),
            ceil_mode=bool(args[ceil_at]) if len(args) > ceil_at else False,
        )
    elif kind == "mean":
        dims = sorted(d % args[0].dim() for d in _ints(args[1])) if len(args) > 1 and args[1] is not None else []
        attrs.update(dims=tuple(dims), keepdim=bool(args[2]) if len(args) > 2 else False)
    elif kind == "linear":
        # addmm(bias, x, w.t()) or mm(x, w.t()): in/out features from the output and the activation
        x = args[1] if name == "addmm" else args[0]
        attrs.update(in_features=int(x.shape[-1]), out_features=int(out.shape[-1]), bias=name == "addmm",
                     macs=_per_image(out) * int(x.shape[-1]))  # fmt: skip
    elif kind == "pad":
        attrs.update(pad=_ints(args[1]), value=float(args[2]) if len(args) > 2 and args[2] is not None else 0.0)
    elif kind == "edge_pad":
        attrs.update(pad=_ints(args[1]), mode="reflect" if name.startswith("reflection") else "replicate")
    elif kind == "activation":
        attrs.update(function=name.rstrip("_"))
    elif kind == "bn" and name in _BN_ARGS:
        # what a batch norm computes beyond its tensors: its epsilon, and whether it normalises by the batch's
        # statistics (train mode, or no running statistics at all) or by its running ones
        training_at, eps_at = _BN_ARGS[name] if len(args) != 6 else (3, 5)  # the no-statistics overload
        if len(args) > eps_at:
            attrs.update(eps=float(args[eps_at]))
        attrs.update(batch_statistics=bool(args[training_at]) if training_at is not None and len(args) > training_at
                     else False)  # fmt: skip
    elif kind == "norm":
        attrs.update(function=name.removeprefix("native_"), affine=len(args) > 2 and args[1] is not None)
        if name == "native_group_norm" and len(args) > 7:  # (x, weight, bias, N, C, HxW, groups, eps)
            attrs.update(groups=int(args[6]), eps=float(args[7]))
    return MappingProxyType(attrs)


@contextmanager
def _module_names(model: nn.Module, stack: list[str]) -> Iterator[None]:
    """Keep ``stack`` at the names of the modules running (global hooks: one each, not one per module)."""
    names = {id(module): name for name, module in model.named_modules()}

    def enter(module: nn.Module, args: Any) -> None:
        stack.append(names.get(id(module), "?"))

    def leave(module: nn.Module, args: Any, output: Any) -> None:
        if stack:
            stack.pop()

    handles = [register_module_forward_pre_hook(enter), register_module_forward_hook(leave)]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def to_meta(model: nn.Module) -> nn.Module:
    """A copy of ``model`` on the meta device (the model itself if it is already there).  Raises TraceError.

    The copy shares no storage with ``model`` and copies none: every parameter and buffer is replaced by a meta
    tensor of its shape, dtype and strides before the module tree is copied, so a model built on the CPU costs only
    its module objects again, not its weights.
    """
    tensors = [*model.parameters(), *model.buffers()]
    if tensors and all(t.device.type == "meta" for t in tensors):
        return model
    if isinstance(model, torch.jit.ScriptModule):
        raise TraceError("a TorchScript module cannot move to the meta device")
    try:
        memo: dict[int, Any] = {}
        for t in tensors:
            if is_lazy(t) or id(t) in memo:
                continue  # a lazy module's placeholder has no shape yet: copied as it is
            meta = torch.empty_strided(t.shape, t.stride(), dtype=t.dtype, device="meta")
            memo[id(t)] = nn.Parameter(meta, requires_grad=t.requires_grad) if isinstance(t, nn.Parameter) else meta
        for module in model.modules():  # a weight computed by a hook (pruning, weight_norm): a plain attribute
            for value in vars(module).values():
                if isinstance(value, torch.Tensor) and id(value) not in memo and not is_lazy(value):
                    memo[id(value)] = torch.empty_strided(value.shape, value.stride(), dtype=value.dtype, device="meta")
        with torch.device("meta"):
            clone = copy.deepcopy(model, memo)
        return clone.to("meta")
    except Exception as e:  # any failure here means the same thing to the user
        raise TraceError(f"cannot move the model to the meta device: {type(e).__name__}: {e}") from e


def materialize(model: nn.Module, dtype: torch.dtype | None = None, *, values: bool = True) -> nn.Module:
    """A CPU copy of ``model`` with freshly allocated tensors holding zeros (running variances: ones), in ``dtype``
    where given (floating-point tensors only); ``values=False`` leaves them uninitialised (the caller fills every
    one).  Tensors the model shares stay shared.  Raises TraceError.

    The model's own values are never copied (a copy on the meta device is made first), so this is also how a model
    built on the meta device gets tensors to run on.
    """
    try:
        on_meta = any(t.device.type == "meta" for t in (*model.parameters(), *model.buffers()) if not is_lazy(t))
        # a scripted module (or one holding a scripted part) cannot move to meta: copied as it is, its every tensor
        # then replaced below
        scripted = any(isinstance(module, torch.jit.ScriptModule) for module in model.modules())
        clone = copy.deepcopy(model) if on_meta or scripted else to_meta(model)
    except TraceError:
        raise
    except Exception as e:  # any failure to copy the model means the same thing to the user
        raise TraceError(f"cannot copy the model: {type(e).__name__}: {e}") from e
    # Not Module.to_empty: on meta tensors it calls empty_like, a Python reference that imports sympy (~0.6 s).
    allocated: dict[object, torch.Tensor] = {}  # a tensor (its id) -> its CPU tensor, so that tied tensors stay tied
    for module in clone.modules():
        stores: tuple[dict[str, Any], ...] = (module._parameters, module._buffers)
        for store in stores:
            for name, tensor in store.items():
                if tensor is None or is_lazy(tensor):
                    continue
                # a scripted module hands out a new Python object per access: its tensors are told apart by their
                # storage (not by data_ptr, which is 0 for every tensor of a module scripted on the meta device)
                key = _memory(tensor) if scripted else id(tensor)
                if key not in allocated:
                    kind = dtype if dtype is not None and tensor.is_floating_point() else tensor.dtype
                    if values:
                        value = torch.full(tuple(tensor.shape), 1 if name == "running_var" else 0, dtype=kind)
                    else:
                        value = torch.empty(tuple(tensor.shape), dtype=kind)
                    is_param = isinstance(tensor, nn.Parameter)
                    allocated[key] = nn.Parameter(value, tensor.requires_grad) if is_param else value
                store[name] = allocated[key]
    return clone


def output_tensors(out: Any, depth: int = 0) -> list[torch.Tensor]:
    """Every tensor in a forward's result, in order: a tensor, a mapping (``ModelOutput``), a dataclass, a sequence."""
    if isinstance(out, torch.Tensor):
        return [out]
    if depth > 4:
        return []
    if isinstance(out, Mapping):
        items: Any = out.values()
    elif dataclasses.is_dataclass(out) and not isinstance(out, type):
        items = (getattr(out, f.name) for f in dataclasses.fields(out))
    elif isinstance(out, (tuple, list)):
        items = out
    else:
        return []
    return [t for item in items for t in output_tensors(item, depth + 1)]


def _run(
    model: nn.Module,
    x: torch.Tensor,
    forward: Callable[[nn.Module, torch.Tensor], Any] | None,
    device: str,
    train: bool = True,
    keep_values: bool = False,
) -> tuple[Trace, Mapping[int, torch.Tensor]]:
    """One recorded forward pass of ``model`` (already on ``x``'s device): the trace and every value's tensor."""
    params: dict[int, str] = {}
    buffers: dict[int, str] = {}
    aliases: dict[str, str] = {}
    for named, ids in ((model.named_parameters(remove_duplicate=False), params),
                       (model.named_buffers(remove_duplicate=False), buffers)):  # fmt: skip
        for name, tensor in named:
            if tensor is None:
                continue
            first = ids.setdefault(id(tensor), name)  # the first name, as named_parameters() lists it
            if first != name:
                aliases[name] = first
    stack: list[str] = []
    recorder = _Recorder(params, buffers, stack, keep_values)
    input_value = recorder.new_value(x)
    was_training = model.training
    model.train(train)
    try:
        with torch.no_grad(), _module_names(model, stack), recorder:
            out = forward(model, x) if forward is not None else model(x)
    finally:
        model.train(was_training)
    tensors = output_tensors(out)
    if not tensors:
        raise TraceError(
            f"expected the forward pass to return a tensor (or a tuple, list, dict or dataclass of tensors), got "
            f"{type(out).__name__}"
        )
    outputs = tuple(dict.fromkeys(v for v in (recorder.output_value(t) for t in tensors) if v is not None))
    if not outputs:
        raise TraceError("the forward pass returned no tensor computed from the input")
    # Parameter sizes after the forward pass: a lazy module has them only once it has run.
    numel = {name: p.numel() for name, p in model.named_parameters()}
    shapes = {
        name: () if is_lazy(t) else tuple(int(n) for n in t.shape)
        for name, t in (*model.named_parameters(), *model.named_buffers())
    }
    buffer_names = frozenset(name for name, _ in model.named_buffers())
    trace = Trace(
        ops=(),
        input=input_value,
        output=outputs[0],
        input_shape=tuple(int(n) for n in x.shape),
        params=MappingProxyType(numel),
        used_params=frozenset(),
        producers=MappingProxyType({}),
        consumers=MappingProxyType({}),
        outputs=outputs,
        device=device,
        shapes=MappingProxyType(shapes),
        buffers=buffer_names,
        aliases=MappingProxyType(aliases),
    )
    return trace.replace_ops(recorder.ops), MappingProxyType(recorder.tensors)


def record_values(model: nn.Module, x: torch.Tensor, train: bool = False) -> tuple[Trace, Mapping[int, torch.Tensor]]:
    """Run ``model`` on ``x`` where both are (no copy, real values) and record its trace and every value's tensor.

    ``train`` runs it in train mode (batch norm on batch statistics, which updates the running statistics).  The
    model's mode is restored afterwards.  Raises :class:`TraceError` when the forward pass fails.
    """
    try:
        return _run(model, x, None, x.device.type, train=train, keep_values=True)
    except TraceError:
        raise
    except Exception as e:  # report any forward failure the same way
        raise TraceError(
            f"the model's forward pass failed on a {x.device.type} input of shape {tuple(x.shape)}: "
            f"{type(e).__name__}: {e}"
        ) from e


def _check_shape(input_shape: tuple[int, ...]) -> None:
    if len(input_shape) != 4 or any(not isinstance(n, int) or n < 1 for n in input_shape):
        raise ValueError(f"trace_model: expected an input shape (N, C, H, W) of positive integers, got {input_shape}")


def trace_model(
    model: nn.Module,
    input_shape: tuple[int, ...],
    forward: Callable[[nn.Module, torch.Tensor], Any] | None = None,
    *,
    cpu_sizes: Sequence[tuple[int, int]] = (),
) -> Trace:
    """Trace ``model`` (a meta copy is traced; the model itself changes only where it has lazy modules, which take
    their shapes first as by its first use: :func:`initialise_lazy`) on a meta input of ``input_shape``, in training
    mode.

    When the model cannot run on the meta device and ``cpu_sizes`` names input sizes (H, W), it is run on the CPU
    at the first of them that works, as it is (its buffers restored afterwards), and the trace says so in its
    notes; its ``input_shape`` is then the one that ran.  Raises :class:`TraceError` with the reason (what the
    model expects, when that can be told: its rank, its input channels, an input size it takes) when it cannot be
    traced.
    """
    _check_shape(input_shape)
    for size in cpu_sizes:
        _check_shape((1, 1, *size))
    initialise_lazy(model, input_shape, forward)
    meta_error: Exception | None = None
    try:
        meta = to_meta(model)
        return _run(meta, torch.empty(input_shape, device="meta"), forward, "meta")[0]
    except TraceError as e:  # cannot move to meta (a scripted module), or no tensor returned
        if not cpu_sizes or str(e).startswith("expected the forward pass") or "no tensor computed" in str(e):
            raise
        meta_error = e
    except Exception as e:  # any failure of the user's forward on meta
        meta_error = e
        # Only a failure of the meta device itself (a value read, a kernel it lacks, Python code handed no value by
        # it) is worth a CPU run; a shape error (torch's RuntimeError or ValueError) would fail on the CPU alike, or
        # worse pass there at a smaller input than the one asked for.
        if not cpu_sizes or not (_meta_specific(e) or not isinstance(e, (RuntimeError, ValueError))):
            raise TraceError(_explain(model, input_shape, e, "meta")) from e
    cpu_error: Exception = meta_error
    for size in cpu_sizes:
        shape = (input_shape[0], input_shape[1], *size)
        try:
            trace = _run_on_cpu(model, shape, forward)
        except TraceError:
            raise
        except Exception as e:  # the forward may fail at this size; try the next
            cpu_error = e
            continue
        reason = _one_line(meta_error)
        note = f"traced on the CPU at {size[0]}x{size[1]}: the model cannot run on the meta device ({reason})"
        return dataclasses.replace(trace, notes=(note,))
    raise TraceError(_explain(model, input_shape, cpu_error, "cpu")) from cpu_error


def initialise_lazy(
    model: nn.Module, input_shape: tuple[int, ...], forward: Callable[[nn.Module, torch.Tensor], Any] | None = None
) -> None:
    """Give a model's lazy modules (``nn.LazyLinear``, ``nn.LazyConv2d`` ...) their shapes, as their first use would:
    one forward pass in eval mode, without gradients, on zeros of ``input_shape`` (on the meta device where the
    model's tensors are there); its modes are put back and nothing else changes.  Raises TraceError."""
    lazy = [name for name, t in (*model.named_parameters(), *model.named_buffers()) if is_lazy(t)]
    if not lazy:
        return
    every = (*model.parameters(), *model.buffers())  # a lazy tensor is on the device it will be made on
    device = "meta" if any(t.device.type == "meta" for t in every) else "cpu"
    dtype = next((t.dtype for t in every if not is_lazy(t) and t.is_floating_point()), torch.float32)
    modes = {module: module.training for module in model.modules()}
    what = f"its lazy modules ({', '.join(lazy)})"
    try:
        model.eval()
        with torch.no_grad():
            x = torch.zeros(input_shape, dtype=dtype, device=device)
            model(x) if forward is None else forward(model, x)
    except Exception as e:  # the user's forward: any failure means the same thing
        raise TraceError(f"{what} could not take their shapes from a forward pass on a {device} input of shape "
                         f"{tuple(input_shape)}: {type(e).__name__}: {_one_line(e)}") from e  # fmt: skip
    finally:
        for module, training in modes.items():
            module.training = training
    left = [name for name, t in (*model.named_parameters(), *model.named_buffers()) if is_lazy(t)]
    if left:
        raise TraceError(f"its lazy modules ({', '.join(left)}) are still uninitialised after a forward pass")


def _run_on_cpu(
    model: nn.Module, shape: tuple[int, ...], forward: Callable[[nn.Module, torch.Tensor], Any] | None
) -> Trace:
    """``_run`` on the CPU, on the model itself; its buffers (running statistics) are put back afterwards."""
    tensors = [*model.parameters(), *model.buffers()]
    if any(t.device.type == "meta" for t in tensors if not is_lazy(t)):
        # built on the meta device (no values), and its forward needs values: run a CPU copy of zeros instead
        return _run(materialize(model), torch.zeros(shape), forward, "cpu")[0]
    if any(t.device.type not in ("cpu",) for t in tensors if not is_lazy(t)):
        raise RuntimeError("the model's tensors are not on the CPU")
    saved = {name: b.detach().clone() for name, b in model.named_buffers() if not is_lazy(b)}
    try:
        return _run(model, torch.zeros(shape), forward, "cpu")[0]
    finally:
        with torch.no_grad():
            for name, b in model.named_buffers():
                if name in saved and b.shape == saved[name].shape:
                    b.copy_(saved[name])


def _meta_specific(error: BaseException) -> bool:
    """The error comes from the meta device (no values, a missing kernel), not from the model's arithmetic."""
    return isinstance(error, NotImplementedError) or "meta" in str(error).lower()


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    text = text if len(text) <= 200 else text[:197] + "..."
    return f"{type(e).__name__}: {text}" if not isinstance(e, TraceError) else text


def _explain(model: nn.Module, input_shape: tuple[int, ...], error: BaseException, device: str) -> str:
    """One line: why the forward failed, and what the model expects when its first convolution tells."""
    where = "a meta input" if device == "meta" else "a CPU input"
    base = f"the model's forward pass failed on {where} of shape {tuple(input_shape)}: {_one_line(error)}"
    first = next((m for m in model.modules() if isinstance(m, nn.modules.conv._ConvNd)), None)
    if first is None:
        return base
    dims = len(first.kernel_size)
    if dims != 2:
        return (
            f"the model is {dims}-D: its first convolution is {type(first).__name__}, which takes {dims + 2}-d "
            f"input; the tables describe 2-D networks on (N, C, H, W) input, so no option compares it"
        )
    channels = first.in_channels if not isinstance(first, nn.modules.lazy.LazyModuleMixin) else 0
    if channels and channels != input_shape[1]:
        return (
            f"the model's first convolution takes {channels} input channels, the table's input has "
            f"{input_shape[1]}: pass in_channels={channels}"
        )
    return base


# ---- a trace as plain data: what crosses from the process that ran a model to the one that judges it ---------------
#
# Only dicts, lists, tuples, strings, numbers, booleans and None: what torch.load(weights_only=True) accepts, so the
# judging process never unpickles an object the model's process made.


def _encode(value: Any) -> Any:
    if isinstance(value, Const):
        return {"const": [list(value.shape), value.value, value.random, list(value.params), list(value.buffers),
                          list(value.transform)]}  # fmt: skip
    if isinstance(value, Mapping):
        return {"map": [[str(k), _encode(v)] for k, v in value.items()]}
    if isinstance(value, tuple):
        return tuple(_encode(v) for v in value)
    if isinstance(value, list):
        return [_encode(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return None  # nothing else is recorded (an operand of another type is "scalar", None)


def _decode(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {"const"}:
            shape, number, random, params, buffers, transform = value["const"]
            return Const(_ints(shape), _number(number), bool(random), _strs(params), _strs(buffers), _strs(transform))
        if set(value) == {"map"}:
            return MappingProxyType({str(k): _decode(v) for k, v in value["map"]})
        raise ValueError(f"unexpected mapping {sorted(value)}")
    if isinstance(value, tuple):
        return tuple(_decode(v) for v in value)
    if isinstance(value, list):
        return [_decode(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise ValueError(f"unexpected {type(value).__name__}")


def _number(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"expected a number, got {type(value).__name__}")
    return float(value)


def _strs(values: Any) -> tuple[str, ...]:
    if not isinstance(values, (list, tuple)) or not all(isinstance(v, str) for v in values):
        raise ValueError("expected a list of names")
    return tuple(values)


def trace_to_data(trace: Trace) -> dict[str, Any]:
    """``trace`` as plain data (see :func:`trace_from_data`)."""
    ops = [
        [op.index, op.kind, op.aten, list(op.inputs), op.output, list(op.shape), list(op.params), op.module,
         _encode(op.attrs), _encode(op.operands), list(op.buffers), list(op.arg_names)]
        for op in trace.ops
    ]  # fmt: skip
    return {
        "ops": ops,
        "input": trace.input,
        "input_shape": list(trace.input_shape),
        "params": [[name, numel] for name, numel in trace.params.items()],
        "outputs": list(trace.outputs),
        "device": trace.device,
        "notes": list(trace.notes),
        "shapes": [[name, list(shape)] for name, shape in trace.shapes.items()],
        "buffers": sorted(trace.buffers),
        "aliases": [[name, first] for name, first in trace.aliases.items()],
    }


def trace_from_data(data: Any) -> Trace:
    """A :class:`Trace` from :func:`trace_to_data`'s data, every field checked.  Raises TraceError naming what is
    malformed: the data comes from a process that ran a model's code, which may send anything."""
    try:
        ops = []
        for entry in data["ops"]:
            index, kind, aten, inputs, output, shape, params, module, attrs, operands, buffers, arg_names = entry
            ops.append(Op(int(index), str(kind), str(aten), _ints(inputs), int(output), _ints(shape),
                          _strs(params), str(module), _decode(attrs), _decode(operands), _strs(buffers),
                          _strs(arg_names)))  # fmt: skip
        params = {str(name): int(numel) for name, numel in data["params"]}
        outputs = _ints(data["outputs"])
        trace = Trace(
            ops=(),
            input=int(data["input"]),
            output=outputs[0] if outputs else -1,
            input_shape=_ints(data["input_shape"]),
            params=MappingProxyType(params),
            used_params=frozenset(),
            producers=MappingProxyType({}),
            consumers=MappingProxyType({}),
            outputs=outputs,
            device=str(data["device"]),
            notes=_strs(data["notes"]),
            shapes=MappingProxyType({str(name): _ints(shape) for name, shape in data["shapes"]}),
            buffers=frozenset(_strs(data["buffers"])),
            aliases=MappingProxyType({str(name): str(first) for name, first in data["aliases"]}),
        )
        if not outputs or any(not isinstance(op.attrs, Mapping) for op in ops):
            raise ValueError("no outputs, or attributes that are not a mapping")
        return trace.replace_ops(ops)
    except (KeyError, TypeError, ValueError) as e:
        raise TraceError(f"the model's process sent a malformed trace ({type(e).__name__}: {e})") from None
