"""Padding arithmetic: the output size of a convolution or pooling window along one spatial dimension."""

from __future__ import annotations

import math

__all__ = ["binomial_filter", "conv_output_size", "eca_kernel", "same_padding"]


def conv_output_size(
    n: int, kernel: int, stride: int = 1, padding: int = 0, dilation: int = 1, ceil_mode: bool = False
) -> int:
    """Output length of a conv or pool along one dimension, as PyTorch computes it.

    ``n_out = floor((n + 2p - d(k-1) - 1) / s) + 1``; with ``ceil_mode`` (pooling only) the division rounds up,
    but a window that would start inside the right padding is dropped (PyTorch's rule).  Returns a value < 1
    when the window does not fit; callers decide whether that is an error.
    """
    for name, value, minimum in (("n", n, 0), ("kernel", kernel, 1), ("stride", stride, 1), ("dilation", dilation, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ValueError(f"conv_output_size: expected {name} an integer >= {minimum}, got {value!r}")
    if isinstance(padding, bool) or not isinstance(padding, int) or padding < 0:
        raise ValueError(f"conv_output_size: expected padding an integer >= 0, got {padding!r}")
    # PyTorch's pooling_output_shape (aten/src/ATen/native/Pool.h); floor division rounds towards -inf as div_rtn.
    numerator = n + 2 * padding - dilation * (kernel - 1) - 1 + (stride - 1 if ceil_mode else 0)
    out = numerator // stride + 1
    if ceil_mode and (out - 1) * stride >= n + padding:
        out -= 1  # the last window would start inside the right padding
    return max(out, 0)


def same_padding(kernel: int) -> int:
    """The padding ``(k-1)/2`` that keeps the size of an odd kernel at stride 1 (and gives ceil(n/s) at stride s)."""
    if isinstance(kernel, bool) or not isinstance(kernel, int) or kernel < 1 or kernel % 2 == 0:
        raise ValueError(f"same_padding: expected an odd kernel >= 1, got {kernel!r}")
    return (kernel - 1) // 2


def binomial_filter(taps: int) -> tuple[float, ...]:
    """An anti-aliasing blur's filter along one direction (Zhang 2019): the binomial coefficients ``C(taps - 1, k)``
    normalised to sum 1 (``[1, 2, 1] / 4`` for 3 taps, ``[1, 3, 3, 1] / 8`` for 4); the 2-D filter is the outer
    product of this row with itself."""
    if isinstance(taps, bool) or not isinstance(taps, int) or taps < 1:
        raise ValueError(f"binomial_filter: expected taps an integer >= 1, got {taps!r}")
    return tuple(math.comb(taps - 1, k) / 2 ** (taps - 1) for k in range(taps))


def eca_kernel(channels: int, gamma: int, beta: int) -> int:
    """ECA's kernel size for ``channels`` (Wang et al. 2020, ECA-Net, Eq. 12): ``k = |(log2 C + b) / gamma|_odd``,
    the nearest odd integer at or above the floor: ``t = floor((log2 C + b) / gamma)``, ``k = t`` if t is odd else
    ``t + 1`` (the paper sets gamma = 2, b = 1: C = 256 -> 5, 2048 -> 7)."""
    for name, value, minimum in (("channels", channels, 1), ("gamma", gamma, 1), ("beta", beta, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ValueError(f"eca_kernel: expected {name} an integer >= {minimum}, got {value!r}")
    t = int((math.log2(channels) + beta) // gamma)
    return t if t % 2 else t + 1
