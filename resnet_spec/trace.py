"""Tracer: run any ``nn.Module`` on a meta-device input and record its operator-level dataflow.

Every ATen operator the forward pass dispatches is recorded as an :class:`Op` (kind, attributes, output shape,
the activation values it reads and the one it writes, the parameters it uses, the module that ran it).  Values
are numbered; an in-place operator (``x += y``, ``relu_``) reads its input value and writes a new one, so the
dataflow stays a DAG.  Module-style and functional-style (``F.conv2d``, ``F.relu``) models trace alike, because
recording happens below both, at the dispatcher.  No memory is allocated: every tensor lives on the meta device.

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
from torch.utils._python_dispatch import TorchDispatchMode

from .arithmetic import conv_output_size

__all__ = ["Op", "Trace", "TraceError", "trace_model"]


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
# Eval-mode batch norms, whose output is shaped as their input (their two other outputs are empty in eval mode).
_META_BATCH_NORMS = frozenset({"native_batch_norm", "_native_batch_norm_legit_no_training"})
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
    def __init__(self, params: Mapping[int, str], buffers: frozenset[int], module_stack: list[str]) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self._params = params
        self._buffers = buffers
        self._module_stack = module_stack
        self._values: dict[int, int] = {}  # id(tensor) -> current value
        self._param_views: dict[int, tuple[str, ...]] = {}  # id(tensor) -> parameters it is a view of
        self._keep: list[torch.Tensor] = []  # keeps tensors alive so that their ids stay unique
        self.ops: list[Op] = []
        self.next_value = 0

    def new_value(self, tensor: torch.Tensor) -> int:
        value = self.next_value
        self.next_value += 1
        self._values[id(tensor)] = value
        self._keep.append(tensor)
        return value

    def value_of(self, tensor: torch.Tensor) -> int | None:
        return self._values.get(id(tensor))

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        name = func.overloadpacket.__name__
        on_meta = bool(args) and isinstance(args[0], torch.Tensor) and args[0].device.type == "meta"
        out: Any
        if on_meta and name in _META_BATCH_NORMS:
            # Batch norm keeps the shape; PyTorch's meta kernel for it is a slow Python decomposition.
            x = args[0]
            out = (torch.empty_like(x), x.new_empty((0,)), x.new_empty((0,)))
        elif on_meta and name == "convolution" and not args[6]:
            # PyTorch's meta kernel for convolution is Python too; the shape is the padding arithmetic.
            out = _meta_conv(args[0], args[1], args[2], args[3], args[4], args[5], groups=int(args[8]))
        else:
            out = func(*args, **kwargs)
        inputs: list[int] = []
        params: list[str] = []
        for arg in _tensors(args, kwargs):
            if id(arg) in self._params:
                params.append(self._params[id(arg)])
            elif id(arg) in self._param_views:
                params.extend(self._param_views[id(arg)])
            elif id(arg) in self._buffers:
                continue
            else:
                value = self.value_of(arg)
                if value is not None:
                    inputs.append(value)
        first = out[0] if isinstance(out, (tuple, list)) and out else out
        if not isinstance(first, torch.Tensor):
            return out
        if not inputs and params:  # e.g. fc.weight.t(): a view of a parameter, not an activation
            self._param_views[id(first)] = tuple(params)
            self._keep.append(first)
            return out
        kind = _kind(name, inputs)
        attrs = _attrs(kind, name, args, first)
        output = self.new_value(first)
        module = self._module_stack[-1] if self._module_stack else ""
        op = Op(len(self.ops), kind, str(func), tuple(inputs), output, tuple(first.shape), tuple(params), module, attrs)
        self.ops.append(op)
        return out


def _meta_conv(
    x: torch.Tensor, weight: torch.Tensor, bias: Any, stride: Any, padding: Any, dilation: Any, groups: int
) -> torch.Tensor:
    """The output of a 2-d convolution on meta tensors, with the checks PyTorch's kernel makes."""
    if x.dim() != 4 or weight.dim() != 4:
        raise RuntimeError(
            f"expected a 4-d input and weight for conv2d, got {tuple(x.shape)} and {tuple(weight.shape)}"
        )
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
    """A copy of ``model`` on the meta device (the model itself if it is already there).  Raises TraceError."""
    tensors = [*model.parameters(), *model.buffers()]
    if tensors and all(t.device.type == "meta" for t in tensors):
        return model
    try:
        with torch.device("meta"):
            clone = copy.deepcopy(model)
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
    meta = to_meta(model)
    was_training = meta.training
    meta.eval()
    params = {id(p): name for name, p in meta.named_parameters(remove_duplicate=False)}
    numel = {name: p.numel() for name, p in meta.named_parameters()}
    buffers = frozenset(id(b) for b in meta.buffers())
    stack: list[str] = []
    recorder = _Recorder(params, buffers, stack)
    x = torch.empty(input_shape, device="meta")
    input_value = recorder.new_value(x)
    try:
        with torch.no_grad(), _module_names(meta, stack), recorder:
            out = forward(meta, x) if forward is not None else meta(x)
    except Exception as e:  # report any forward failure the same way
        raise TraceError(
            f"the model's forward pass failed on a meta input of shape {tuple(input_shape)}: {type(e).__name__}: {e}"
        ) from e
    finally:
        meta.train(was_training)
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
    return Trace(
        ops=tuple(recorder.ops),
        input=input_value,
        output=output_value,
        input_shape=tuple(input_shape),
        params=MappingProxyType(numel),
        used_params=used,
        producers=MappingProxyType(producers),
        consumers=MappingProxyType({k: tuple(v) for k, v in consumers.items()}),
    )
