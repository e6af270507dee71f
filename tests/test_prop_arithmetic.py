"""Padding arithmetic against torch: conv_output_size is what conv2d, max_pool2d and avg_pool2d produce.

The oracle is torch itself, run on the meta device (shapes only, no memory): for every drawn window either torch
refuses the input and ``conv_output_size`` says it does not fit (< 1), or both give the same size.  The paper's
sizes are pinned with ``@example`` and checked against FACTS.md's Table 1 column.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from facts import CIFAR_OUTPUT, TABLE1_OUTPUT
from hypothesis import example, given
from hypothesis import strategies as st
from strategies import ConvArgs, PoolArgs, conv_args, out_size, pool_args

from resnet_spec.spec import conv_output_size, same_padding

# The paper's windows (Table 1 and Sec. 4.2), as (input, kernel, stride, padding).
PAPER_STEM = ConvArgs(224, 224, 7, 2, 3, 1)  # conv1: 7x7, 64, stride 2 -> 112x112
PAPER_POOL = PoolArgs(112, 112, 3, 2, 1, 1, False)  # 3x3 max pool, stride 2 -> 56x56
CAFFE_POOL = PoolArgs(112, 112, 3, 2, 0, 1, True)  # the released models: no padding, output rounded up -> 56
CIFAR_STEM = ConvArgs(32, 32, 3, 1, 1, 1)  # 3x3, 16 -> 32x32


def _torch_conv_size(args: ConvArgs) -> tuple[int, int] | None:
    """(h, w) that torch's conv2d gives, or None where it refuses the input."""
    x = torch.empty(1, 1, args.height, args.width, device="meta")
    weight = torch.empty(1, 1, args.kernel, args.kernel, device="meta")
    try:
        y = F.conv2d(x, weight, stride=args.stride, padding=args.padding, dilation=args.dilation)
    except RuntimeError:
        return None
    return y.shape[-2], y.shape[-1]


def _torch_pool_size(args: PoolArgs, kind: str) -> tuple[int, int] | None:
    x = torch.empty(1, 1, args.height, args.width, device="meta")
    try:
        if kind == "max":
            y = F.max_pool2d(x, args.kernel, args.stride, args.padding, args.dilation, ceil_mode=args.ceil_mode)
        else:
            y = F.avg_pool2d(x, args.kernel, args.stride, args.padding, ceil_mode=args.ceil_mode)
    except RuntimeError:
        return None
    return y.shape[-2], y.shape[-1]


@given(args=conv_args())
@example(args=PAPER_STEM)
@example(args=CIFAR_STEM)
@example(args=ConvArgs(5, 6, 7, 2, 0, 1))  # window larger than the input: torch refuses, ours says 0
def test_conv_output_size_equals_torch_conv2d(args: ConvArgs) -> None:
    ours = tuple(
        conv_output_size(n, args.kernel, args.stride, args.padding, args.dilation) for n in (args.height, args.width)
    )
    found = _torch_conv_size(args)
    if found is None:
        assert min(ours) < 1, f"torch refuses {args}, but conv_output_size gives {ours}"
    else:
        assert ours == found, f"{args}: conv_output_size gives {ours}, torch conv2d {found}"
        assert ours == tuple(
            out_size(n, args.kernel, args.stride, args.padding, args.dilation) for n in (args.height, args.width)
        )


@given(args=pool_args(), kind=st.sampled_from(("max", "avg")))
@example(args=PAPER_POOL, kind="max")
@example(args=CAFFE_POOL, kind="max")
@example(args=PoolArgs(6, 6, 3, 2, 1, 1, True), kind="max")  # ceil mode: the last window would start in padding
def test_conv_output_size_equals_torch_pooling(args: PoolArgs, kind: str) -> None:
    dilation = args.dilation if kind == "max" else 1  # avg_pool2d has no dilation
    ours = tuple(
        conv_output_size(n, args.kernel, args.stride, args.padding, dilation, ceil_mode=args.ceil_mode)
        for n in (args.height, args.width)
    )
    found = _torch_pool_size(args, kind)
    if found is None:
        assert min(ours) < 1, f"torch refuses {kind} pool {args}, but conv_output_size gives {ours}"
    else:
        assert ours == found, f"{kind} pool {args}: conv_output_size gives {ours}, torch {found}"


@pytest.mark.parametrize(("n", "kernel", "stride", "padding"), [(1, 2, 2, 0), (2, 3, 3, 0), (3, 4, 3, 0)])
def test_ceil_mode_pool_of_an_input_smaller_than_its_window(n: int, kernel: int, stride: int, padding: int) -> None:
    """In ceil mode torch starts a window even where the padded input is shorter than the window (n=1, k=2, s=2
    gives 1); conv_output_size once returned 0 there."""
    found = _torch_pool_size(PoolArgs(n, n, kernel, stride, padding, 1, True), "max")
    assert found is not None
    assert conv_output_size(n, kernel, stride, padding, ceil_mode=True) == found[0]


def test_the_papers_stem_sizes() -> None:
    """Table 1: conv1 (7x7, stride 2, pad 3) maps 224 to 112; the 3x3/2 max pool maps 112 to 56 (Caffe: pad 0, ceil)."""
    conv1 = conv_output_size(224, 7, 2, 3)
    assert conv1 == TABLE1_OUTPUT["conv1"] == 112
    assert conv_output_size(conv1, 3, 2, 1) == TABLE1_OUTPUT["conv2_x"] == 56
    assert conv_output_size(conv1, 3, 2, 0, ceil_mode=True) == TABLE1_OUTPUT["conv2_x"]
    assert conv_output_size(conv1, 3, 2, 0) == 55  # Caffe's pool without its round-up would lose a row
    assert conv_output_size(32, 3, 1, 1) == CIFAR_OUTPUT["conv1"]
    # The stride-2 "same" convs of conv3_1 .. conv5_1 halve the size, 56 -> 28 -> 14 -> 7.
    size = TABLE1_OUTPUT["conv2_x"]
    for row in ("conv3_x", "conv4_x", "conv5_x"):
        size = conv_output_size(size, 3, 2, same_padding(3))
        assert size == TABLE1_OUTPUT[row]


@given(n=st.integers(1, 300), kernel=st.sampled_from((1, 3, 5, 7, 9, 11)), stride=st.integers(1, 4))
@example(n=56, kernel=3, stride=2)  # conv3_1: 56 -> 28
@example(n=7, kernel=3, stride=2)  # an odd size: 7 -> 4
@example(n=56, kernel=1, stride=2)  # v1: the stride on the 1x1 gives the same size
def test_same_padding_gives_ceil_n_over_s(n: int, kernel: int, stride: int) -> None:
    padding = same_padding(kernel)
    assert padding == (kernel - 1) // 2
    assert conv_output_size(n, kernel, stride, padding) == math.ceil(n / stride)


@pytest.mark.parametrize("kernel", [0, 2, 4, -1, 3.0, True])
def test_same_padding_refuses_kernels_without_a_centre(kernel: object) -> None:
    with pytest.raises(ValueError, match=r"same_padding: expected an odd kernel >= 1, got"):
        same_padding(kernel)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"n": -1}, "n"),
        ({"n": 2.5}, "n"),
        ({"kernel": 0}, "kernel"),
        ({"stride": 0}, "stride"),
        ({"stride": True}, "stride"),
        ({"dilation": 0}, "dilation"),
        ({"padding": -1}, "padding"),
        ({"padding": "1"}, "padding"),
    ],
)
def test_conv_output_size_refuses_bad_arguments(kwargs: dict[str, object], name: str) -> None:
    args: dict[str, object] = {"n": 8, "kernel": 3, "stride": 1, "padding": 1, **kwargs}
    with pytest.raises(ValueError, match=rf"conv_output_size: expected {name} an integer >= \d, got"):
        conv_output_size(**args)  # type: ignore[arg-type]
