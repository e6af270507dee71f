"""Tracer: run any ``nn.Module`` on a meta-device input and record its operator-level dataflow.

Every ATen operator the forward pass dispatches is recorded as an :class:`Op` (kind, attributes, output shape,
the activation values it reads and the one it writes, the parameters it uses, the module that ran it).  Values
are numbered; an in-place operator (``x += y``, ``relu_``) reads its input value and writes a new one, so the
dataflow stays a DAG.  Module-style and functional-style (``F.conv2d``, ``F.relu``) models trace alike, because
recording happens below both, at the dispatcher.  No memory is allocated: every tensor lives on the meta device,
and the output shapes of the operators a ResNet runs are computed here (``_META_SHAPES``) rather than by PyTorch's
Python meta kernels, which would import ``torch._dynamo`` and sympy on first use: seconds of start-up for a trace
that takes a fraction of one.

Limitation: an in-place operator applied to a *view* of an activation updates only the view's value, not its
base's; ResNets do not do that.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import torch
from torch import nn
from torch.nn.modules.module import register_module_forward_hook, register_module_forward_pre_hook
from torch.nn.parameter import is_lazy
from torch.utils._python_dispatch import TorchDispatchMode

from .arithmetic import conv_output_size

__all__ = ["Op", "Trace", "TraceError", "record_values", "trace_model"]


class TraceError(RuntimeError):
    """The model could not be traced: it cannot move to the meta device, or its forward pass failed."""


# ATen operator (overload packet name) -> the kind the reader works with.
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
        "cat": "cat",
    }
)
# Operators that only reshape, alias or copy: their output is their input, for the reader.
_VIEWS = frozenset(
    {
        "view", "_unsafe_view", "reshape", "flatten", "t", "permute", "transpose", "expand", "slice", "select",
        "squeeze", "unsqueeze", "clone", "contiguous", "detach", "alias", "as_strided", "_to_copy", "lift_fresh",
    }
)  # fmt: skip
_ACTIVATIONS = frozenset(
    {
        "gelu", "gelu_", "silu", "silu_", "hardtanh", "hardtanh_", "leaky_relu", "leaky_relu_", "elu", "elu_",
        "sigmoid", "sigmoid_", "tanh", "tanh_", "threshold", "threshold_", "clamp_min", "clamp_min_", "prelu",
        "_prelu_kernel", "hardswish", "hardswish_", "mish", "mish_", "softplus", "relu6",
    }
)  # fmt: skip


@dataclass(frozen=True)
class Op:
    """One recorded operator."""

    index: int
    kind: str  # conv, bn, relu, activation, add, maxpool, avgpool, mean, adaptive_*, linear, pad, cat, view, other
    aten: str  # the ATen overload, e.g. "aten.convolution.default"
    inputs: tuple[int, ...]  # activation values read, in argument order
    output: int  # the value written (-1 when the output is a parameter view or a non-tensor)
    shape: tuple[int, ...]  # output shape
    params: tuple[str, ...]  # names of the parameters used
    module: str  # the innermost module running when the op was dispatched ("" for the model itself)
    attrs: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    buffers: tuple[str, ...] = ()  # names of the buffers used (running statistics), as `params` for parameters
    # Per positional argument: the parameter or buffer it is (or a view of), else "".  Says each tensor's role in
    # the operator (batch norm's weight, bias, running mean and variance), which weight transfer needs.
    arg_names: tuple[str, ...] = ()


@dataclass(frozen=True)
class Trace:
    """A forward pass as data: ops in execution order, the input and output values, the model's parameters."""

    ops: tuple[Op, ...]
    input: int
    output: int
    input_shape: tuple[int, ...]
    params: Mapping[str, int]  # every parameter name -> numel
    used_params: frozenset[str]
    producers: Mapping[int, int]  # value -> index of the op that wrote it
    consumers: Mapping[int, tuple[int, ...]]  # value -> indices of the ops that read it

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
        self._params = params
        self._buffers = buffers
        self._module_stack = module_stack
        self._values: dict[int, int] = {}  # id(tensor) -> current value
        # id(tensor) -> (parameters, buffers) it is a view of (or computed from alone, e.g. running_var + eps)
        self._param_views: dict[int, tuple[tuple[str, ...], tuple[str, ...]]] = {}
        self._keep: list[torch.Tensor] = []  # keeps tensors alive so that their ids stay unique
        self.tensors: dict[int, torch.Tensor] = {}  # value -> tensor (what record_values returns)
        self.ops: list[Op] = []
        self.next_value = 0

    def new_value(self, tensor: torch.Tensor) -> int:
        value = self.next_value
        self.next_value += 1
        self._values[id(tensor)] = value
        self._keep.append(tensor)
        self.tensors[value] = tensor
        return value

    def _name(self, arg: Any) -> str:
        """The parameter or buffer ``arg`` is, or a view of; "" for anything else."""
        if not isinstance(arg, torch.Tensor):
            return ""
        key = id(arg)
        if key in self._params:
            return self._params[key]
        if key in self._buffers:
            return self._buffers[key]
        names = sum(self._param_views.get(key, ((), ())), ())
        return names[0] if len(names) == 1 else ""

    def value_of(self, tensor: torch.Tensor) -> int | None:
        return self._values.get(id(tensor))

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        name = func.overloadpacket.__name__
        out: Any = None
        if self._keep_values and func._schema.is_mutable:
            for arg in _tensors(args, kwargs):
                value = self.value_of(arg)
                if value is not None:
                    self.tensors[value] = arg.clone()
        shaper = _META_SHAPES.get(func)
        if shaper is not None and all(t.device.type == "meta" for t in _tensors(args, kwargs)):
            out = shaper(*args, **kwargs)
        if out is None:
            out = func(*args, **kwargs)
        inputs: list[int] = []
        params: list[str] = []
        buffers: list[str] = []
        for arg in _tensors(args, kwargs):
            if id(arg) in self._params:
                params.append(self._params[id(arg)])
            elif id(arg) in self._buffers:
                buffers.append(self._buffers[id(arg)])
            elif id(arg) in self._param_views:
                params.extend(self._param_views[id(arg)][0])
                buffers.extend(self._param_views[id(arg)][1])
            else:
                value = self.value_of(arg)
                if value is not None:
                    inputs.append(value)
        first = out[0] if isinstance(out, (tuple, list)) and out else out
        if not isinstance(first, torch.Tensor):
            return out
        if not inputs and (params or buffers):  # e.g. fc.weight.t(): a view of a parameter, not an activation
            if id(first) not in self._params and id(first) not in self._buffers:  # not an in-place update
                self._param_views[id(first)] = (tuple(params), tuple(buffers))
                self._keep.append(first)
            return out
        kind = _kind(name, inputs)
        attrs = _attrs(kind, name, args, first)
        output = self.new_value(first)
        module = self._module_stack[-1] if self._module_stack else ""
        arg_names = tuple(self._name(arg) for arg in args) if params or buffers else ()
        op = Op(len(self.ops), kind, str(func), tuple(inputs), output, tuple(first.shape), tuple(params), module, attrs,
                tuple(buffers), arg_names)  # fmt: skip
        self.ops.append(op)
        return out


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


def _kind(name: str, inputs: list[int]) -> str:
    if name in _VIEWS:
        return "view"
    if name in _ACTIVATIONS:
        return "activation"
    kind = _KINDS.get(name, "other")
    if kind == "add" and len(inputs) != 2:
        return "other"  # x + 1: not a merge of two paths
    return kind


def _ints(value: Any) -> tuple[int, ...]:
    return tuple(int(v) for v in value) if isinstance(value, (list, tuple)) else (int(value),)


def _pair(value: Any) -> tuple[int, int]:
    """A pooling argument given as one int or as (height, width)."""
    ints = _ints(value)
    return (ints[0], ints[-1])


def _attrs(kind: str, name: str, args: tuple[Any, ...], out: torch.Tensor) -> Mapping[str, Any]:
    """Operator attributes the reader compares against a spec; shapes come from the (meta) tensors."""
    attrs: dict[str, Any] = {}
    if kind == "conv":
        x, weight, bias = args[0], args[1], args[2]
        attrs.update(
            kernel=tuple(weight.shape[2:]),
            stride=_ints(args[3]),
            padding=_ints(args[4]),
            dilation=_ints(args[5]),
            groups=int(args[8]) if len(args) > 8 else 1,
            in_channels=int(x.shape[1]),
            out_channels=int(weight.shape[0]),
            bias=bias is not None,
            macs=int(out.numel()) * int(weight[0].numel()),
        )
    elif kind in ("maxpool", "avgpool"):
        kernel = _ints(args[1])
        stride = _ints(args[2]) if len(args) > 2 and args[2] else kernel
        attrs.update(
            kernel=kernel * (2 // len(kernel)),
            stride=stride * (2 // len(stride)),
            padding=_ints(args[3]) * (2 // len(_ints(args[3]))) if len(args) > 3 else (0, 0),
            ceil_mode=bool(args[5])
            if kind == "maxpool" and len(args) > 5
            else bool(args[4])
            if len(args) > 4
            else False,
        )
    elif kind == "mean":
        dims = sorted(d % args[0].dim() for d in _ints(args[1])) if len(args) > 1 else []
        attrs.update(dims=tuple(dims))
    elif kind == "linear":
        # addmm(bias, x, w.t()) or mm(x, w.t()): in/out features from the output and the activation
        x = args[1] if name == "addmm" else args[0]
        attrs.update(in_features=int(x.shape[-1]), out_features=int(out.shape[-1]), bias=name == "addmm",
                     macs=int(out.numel()) * int(x.shape[-1]))  # fmt: skip
    elif kind == "pad":
        attrs.update(pad=_ints(args[1]), value=float(args[2]) if len(args) > 2 else 0.0)
    elif kind == "activation":
        attrs.update(function=name.rstrip("_"))
    return MappingProxyType(attrs)


@contextmanager
def _module_names(model: nn.Module, stack: list[str]) -> Iterator[None]:
    """Keep ``stack`` at the names of the modules running (global hooks: one each, not one per module)."""
    names = {id(module): name for name, module in model.named_modules()}

    def enter(module: nn.Module, args: Any) -> None:
        stack.append(names.get(id(module), "?"))

    def leave(module: nn.Module, args: Any, output: Any) -> None:
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
    try:
        memo: dict[int, Any] = {}
        for t in tensors:
            if is_lazy(t) or id(t) in memo:
                continue  # a lazy module's placeholder has no shape yet: copied as it is
            meta = torch.empty_strided(t.shape, t.stride(), dtype=t.dtype, device="meta")
            memo[id(t)] = nn.Parameter(meta, requires_grad=t.requires_grad) if isinstance(t, nn.Parameter) else meta
        with torch.device("meta"):
            clone = copy.deepcopy(model, memo)
        return clone.to("meta")
    except Exception as e:  # any failure here means the same thing to the user
        raise TraceError(f"cannot move the model to the meta device: {type(e).__name__}: {e}") from e


def trace_model(
    model: nn.Module, input_shape: tuple[int, ...], forward: Callable[[nn.Module, torch.Tensor], Any] | None = None
) -> Trace:
    """Trace ``model`` (not modified: a meta copy is traced) on a meta input of ``input_shape``, in eval mode.

    Raises :class:`TraceError` with the reason when the model cannot move to meta or its forward pass fails.
    """
    if len(input_shape) != 4 or any(not isinstance(n, int) or n < 1 for n in input_shape):
        raise ValueError(f"trace_model: expected an input shape (N, C, H, W) of positive integers, got {input_shape}")
    trace, _ = _record(to_meta(model), torch.empty(input_shape, device="meta"), forward, train=False)
    return trace


def record_values(model: nn.Module, x: torch.Tensor, train: bool = False) -> tuple[Trace, Mapping[int, torch.Tensor]]:
    """Run ``model`` on ``x`` where both are (no copy, real values) and record its trace and every value's tensor.

    ``train`` runs it in train mode (batch norm on batch statistics, which updates the running statistics).  The
    model's mode is restored afterwards.  Raises :class:`TraceError` when the forward pass fails.
    """
    return _record(model, x, None, train=train, keep_values=True)


def _record(
    model: nn.Module,
    x: torch.Tensor,
    forward: Callable[[nn.Module, torch.Tensor], Any] | None,
    train: bool,
    keep_values: bool = False,
) -> tuple[Trace, Mapping[int, torch.Tensor]]:
    was_training = model.training
    model.train(train)
    params = {id(p): name for name, p in model.named_parameters(remove_duplicate=False)}
    numel = {name: p.numel() for name, p in model.named_parameters()}
    buffers = {id(b): name for name, b in model.named_buffers(remove_duplicate=False)}
    stack: list[str] = []
    recorder = _Recorder(params, buffers, stack, keep_values)
    input_value = recorder.new_value(x)
    input_shape = tuple(x.shape)
    try:
        with torch.no_grad(), _module_names(model, stack), recorder:
            out = forward(model, x) if forward is not None else model(x)
    except Exception as e:  # report any forward failure the same way
        raise TraceError(
            f"the model's forward pass failed on a {x.device.type} input of shape {input_shape}: "
            f"{type(e).__name__}: {e}"
        ) from e
    finally:
        model.train(was_training)
    if not isinstance(out, torch.Tensor):
        raise TraceError(f"expected the forward pass to return a tensor of logits, got {type(out).__name__}")
    output_value = recorder.value_of(out)
    if output_value is None:
        raise TraceError("the forward pass returned a tensor that was not computed from the input")
    producers: dict[int, int] = {}
    consumers: dict[int, list[int]] = {}
    for op in recorder.ops:
        producers[op.output] = op.index
        for value in op.inputs:
            consumers.setdefault(value, []).append(op.index)
    used = frozenset(name for op in recorder.ops for name in op.params)
    trace = Trace(
        ops=tuple(recorder.ops),
        input=input_value,
        output=output_value,
        input_shape=input_shape,
        params=MappingProxyType(numel),
        used_params=used,
        producers=MappingProxyType(producers),
        consumers=MappingProxyType({k: tuple(v) for k, v in consumers.items()}),
    )
    return trace, MappingProxyType(recorder.tensors)
