"""The tracer's own shape functions agree with PyTorch's meta kernels, and tracing stays off torch's compiler stack.

``trace_model`` computes the output of the operators a ResNet runs (convolution, batch norm, max pool, mean,
``mm``/``addmm``, ``add_``) itself, because PyTorch's meta kernels for them are Python that imports
``torch._dynamo`` and sympy (seconds of start-up for ``tools/compare.py``).  The oracle here is PyTorch: the
same module run on the meta device outside the tracer, which uses PyTorch's kernels.  For every drawn argument
either both refuse the input or both give the same shape.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from hypothesis import example, given
from hypothesis import strategies as st
from strategies import ConvArgs, PoolArgs, conv_args, pool_args
from torch import nn

from resnet_spec.verify import TraceError, trace_model


class _Functional(nn.Module):
    """``fn(x, *parameters)``: one operator under test, with its parameters owned by a module."""

    def __init__(self, fn: Callable[..., torch.Tensor], *shapes: tuple[int, ...]) -> None:
        super().__init__()
        self.fn = fn
        self.weights = nn.ParameterList(nn.Parameter(torch.empty(shape, device="meta")) for shape in shapes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x, *self.weights)


def _check_against_pytorch(module: nn.Module, input_shape: tuple[int, ...]) -> None:
    """The traced output shape is PyTorch's meta output shape; a refused input is refused by both."""
    try:
        expected: tuple[int, ...] | None = tuple(module(torch.empty(input_shape, device="meta")).shape)
    except RuntimeError:
        expected = None
    try:
        trace = trace_model(module, input_shape)
    except TraceError:
        found = None
    else:
        producer = trace.producer(trace.output)
        found = None if producer is None else producer.shape
    assert found == expected, f"traced {found}, PyTorch's meta kernels give {expected} (None: refused)"


@given(conv_args(), st.integers(1, 3), st.integers(1, 3), st.booleans())
def test_convolution_shape_matches_pytorch(args: ConvArgs, groups: int, per_group: int, bias: bool) -> None:
    in_channels, out_channels = groups * per_group, groups * 2
    shapes = [(out_channels, per_group, args.kernel, args.kernel)] + ([(out_channels,)] if bias else [])
    module = _Functional(
        lambda x, w, *b: F.conv2d(x, w, b[0] if b else None, args.stride, args.padding, args.dilation, groups),
        *shapes,
    )
    _check_against_pytorch(module, (2, in_channels, args.height, args.width))


@given(conv_args(), st.integers(1, 4))
def test_convolution_with_the_wrong_channel_count_is_refused_like_pytorch(args: ConvArgs, channels: int) -> None:
    module = _Functional(lambda x, w: F.conv2d(x, w, None, args.stride, args.padding), (4, 3, args.kernel, args.kernel))
    _check_against_pytorch(module, (1, channels, args.height, args.width))


@given(pool_args())
@example(PoolArgs(112, 112, 3, 2, 0, 1, True))  # Caffe's pool1: 56 rounded up, 55 down
def test_max_pool_shape_matches_pytorch(args: PoolArgs) -> None:
    module = _Functional(
        lambda x: F.max_pool2d(x, args.kernel, args.stride, args.padding, args.dilation, ceil_mode=args.ceil_mode)
    )
    _check_against_pytorch(module, (2, 3, args.height, args.width))


@given(st.integers(1, 7), st.integers(0, 4), st.integers(1, 3))
def test_max_pool_padding_over_half_the_kernel_is_refused(kernel: int, padding: int, dilation: int) -> None:
    module = _Functional(lambda x: F.max_pool2d(x, kernel, 1, padding, dilation))
    _check_against_pytorch(module, (1, 2, 20, 20))


@given(
    st.lists(st.integers(1, 5), min_size=3, max_size=3),
    st.lists(st.integers(-4, 3), max_size=4, unique=True),
    st.booleans(),
)
@example([4, 2, 2], [3, -1], False)  # the same dim twice: refused
def test_mean_shape_matches_pytorch(shape: list[int], dims: list[int], keepdim: bool) -> None:
    """Any dims of a 4-d input, negative ones and the same dim named twice (-1 and 3) included."""
    module = _Functional(lambda x: x.mean(dims, keepdim=keepdim))
    _check_against_pytorch(module, (2, *shape))


@given(st.integers(1, 4), st.integers(1, 6), st.integers(1, 6), st.booleans())
@example(1, 4, 3, False)  # 4 features into a 3-feature weight: refused
def test_linear_shape_matches_pytorch(batch: int, features: int, weight_features: int, bias: bool) -> None:
    shapes = [(5, weight_features)] + ([(5,)] if bias else [])
    module = _Functional(lambda x, w, *b: F.linear(torch.flatten(x, 1), w, b[0] if b else None), *shapes)
    _check_against_pytorch(module, (batch, features, 1, 1))


@given(st.lists(st.integers(1, 3), min_size=4, max_size=4), st.lists(st.integers(1, 3), min_size=1, max_size=5))
@example([1, 2, 3, 3], [2, 1, 1])  # broadcasts: channels
@example([1, 2, 3, 3], [1, 3, 1, 1])  # does not broadcast to the output's shape
def test_in_place_add_shape_matches_pytorch(shape: list[int], other: list[int]) -> None:
    def add_(x: torch.Tensor) -> torch.Tensor:
        y = x.clone()
        y += torch.zeros(other, device=x.device)  # a factory tensor: an operand that is not an activation
        return y

    _check_against_pytorch(_Functional(add_), tuple(shape))


@given(st.integers(1, 3), st.integers(1, 4), st.booleans())
def test_batch_norm_shape_matches_pytorch(batch: int, channels: int, training: bool) -> None:
    def bn(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        stats = torch.zeros(channels, device=x.device)
        return F.batch_norm(x, stats, stats.clone(), weight, bias, training=training)

    _check_against_pytorch(_Functional(bn, (channels,), (channels,)), (batch, channels, 5, 5))


# One form of each other operator the tracer shapes itself (pointwise operators by broadcasting), against PyTorch.
OTHER_SHAPES: list[tuple[str, Callable[..., torch.Tensor]]] = [
    ("clamp", lambda x: x.clamp(min=0)),
    ("maximum, broadcast", lambda x: torch.maximum(x, torch.zeros(1, x.shape[1], 1, 1, device=x.device))),
    ("mul by a row vector", lambda x: x * torch.ones(x.shape[-1], device=x.device)),
    ("where it does not broadcast", lambda x: x + torch.ones(x.shape[-1] + 1, device=x.device)),
    ("stack", lambda x: torch.stack([x, x], 1)),
    ("cat", lambda x: torch.cat([x, x[:, :1]], 1)),
    ("cat of other sizes", lambda x: torch.cat([x, x[:, :, :1]], 1)),
    ("sum over dims", lambda x: torch.stack([x, x]).sum(0)),
    ("amax keepdim", lambda x: x.amax((2, 3), keepdim=True)),
    ("var", lambda x: x.var((0, 2, 3), unbiased=False, keepdim=True)),
    ("std", lambda x: x.std((1, 2, 3))),
    ("im2col", lambda x: F.unfold(x, 3, padding=1, stride=2)),
    ("bmm", lambda x: torch.bmm(x.flatten(2), x.flatten(2).transpose(1, 2))),
    ("adaptive avg pool", lambda x: F.adaptive_avg_pool2d(x, 1)),
    ("adaptive max pool", lambda x: F.adaptive_max_pool2d(x, (2, 1))),
    ("avg pool, ceil mode", lambda x: F.avg_pool2d(x, 2, 2, ceil_mode=True, count_include_pad=False)),
    ("softmax", lambda x: x.flatten(1).log_softmax(-1)),
    ("flip", lambda x: x.flip(-1)),
    ("dropout", lambda x: F.dropout(x, 0.5, True)),
    ("group norm", lambda x: F.group_norm(x, 1)),
    ("zeros_like", lambda x: x + torch.zeros_like(x)),
]


@pytest.mark.parametrize("form", [f for _, f in OTHER_SHAPES], ids=[label for label, _ in OTHER_SHAPES])
@pytest.mark.parametrize("shape", [(2, 4, 5, 7), (1, 3, 1, 1)])
def test_other_shape_functions_match_pytorch(form: Callable[..., torch.Tensor], shape: tuple[int, ...]) -> None:
    _check_against_pytorch(_Functional(form), shape)


def test_tracing_a_resnet_imports_neither_dynamo_nor_sympy() -> None:
    """PyTorch's Python meta kernels import torch._dynamo and sympy on first use; the tracer must not reach them,
    for the paper's operators nor for what people write instead (a clamp, a stack-and-sum, a matmul, an unfold, a
    dropout).

    Run in a fresh interpreter, since another test in this worker may already have imported either.
    """
    code = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {str(Path(__file__).parent / "support")!r})
        import torch
        import verdict_models
        from broken_resnets import Net
        from resnet_spec import load_spec
        from resnet_spec.models import build
        from resnet_spec.verify import trace_model
        from resnet_spec.verify import compare_model
        before = set(sys.modules)
        for name, functional in (("resnet152", False), ("resnet110", True)):  # the numbers trace on the CPU too
            spec = load_spec(name)
            assert compare_model(build(spec, device="meta"), spec, functional=functional).conformant, name
        for model in (verdict_models.relu_clamp(), verdict_models.stack_sum(), verdict_models.matmul_1x1(),
                      verdict_models.im2col_convs(), Net(depth=18, dropout=0.5)):
            trace_model(model, (2, 3, 64, 64))
        print(sorted({{"torch._dynamo", "sympy"}} & (set(sys.modules) - before)))
        """
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]", f"modules the trace imported: {result.stdout.strip()}"


class _HalvesThroughTwoConvs(nn.Module):
    """The input's channels split in two (``chunk``, ``split``, ``unbind`` of a stack), each half through a conv of
    its own, the halves joined again: every part is an input of the graph."""

    def __init__(self, how: str) -> None:
        super().__init__()
        self.how = how
        self.first, self.second = nn.Conv2d(2, 4, 3, padding=1), nn.Conv2d(2, 4, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.how == "chunk":
            a, b = x.chunk(2, 1)
        elif self.how == "split":
            a, b = torch.split(x, [2, 2], 1)
        else:
            a, b = torch.stack([x[:, :2], x[:, 2:]]).unbind(0)
        return torch.cat([self.first(a), self.second(b)], 1)


@pytest.mark.parametrize("how", ["chunk", "split", "unbind"])
@pytest.mark.parametrize("device", ["meta", "cpu"])
def test_every_part_of_a_split_is_a_value_of_the_graph(how: str, device: str) -> None:
    model = _HalvesThroughTwoConvs(how).to(device)
    trace = trace_model(model, (1, 4, 8, 8))
    convs = [op for op in trace.ops if op.kind == "conv"]
    assert [op.params for op in convs] == [("first.weight", "first.bias"), ("second.weight", "second.bias")], convs
    cat = next(op for op in trace.ops if op.name == "cat")
    assert set(cat.inputs) == {op.output for op in convs}, (cat, convs)  # both halves reach the output
    assert trace.unused_params == ()
