"""Selective-kernel ResNets (Li et al. 2019) written independently of resnet_spec and of timm, in the form many
repositories copy (ResearchingDexter/SKNet_pytorch's ``SKConv``: the paths' sum by additions, an adaptive pool, a
softmax whose chunks weigh the paths one product each), for the entries of ``support/sk_table.toml``, and with
defects.  Each factory takes no arguments, for ``compare --impl tests/support/selective_kernel.py:NAME``.
"""

from __future__ import annotations

from functools import reduce

import torch
from torch import Tensor, nn


class SKConv(nn.Module):
    """M paths (3x3 convs of dilation 1 .. M, each conv-BN-ReLU), U = their sum, s = pool(U), z = fc1(s) (a 1x1
    conv, BN, ReLU), fc2(z) reshaped (N, M, C, 1) and a softmax over the paths, V = the paths weighed by its chunks."""

    def __init__(self, channels: int, stride: int, width: int, split: bool = False, dilations: tuple[int, ...] = (1, 2),
                 softmax_dim: int = 1, attention: str = "softmax", attn_bn: bool = True) -> None:  # fmt: skip
        super().__init__()
        self.m, self.channels, self.split = len(dilations), channels, split
        self.softmax_dim, self.attention = softmax_dim, attention
        c_in = channels // self.m if split else channels
        self.conv = nn.ModuleList(
            nn.Sequential(nn.Conv2d(c_in, channels, 3, stride, padding=d, dilation=d, bias=False),
                          nn.BatchNorm2d(channels), nn.ReLU(inplace=True))
            for d in dilations
        )  # fmt: skip
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        norm: list[nn.Module] = [nn.BatchNorm2d(width)] if attn_bn else []
        self.fc1 = nn.Sequential(nn.Conv2d(channels, width, 1, bias=False), *norm, nn.ReLU(inplace=True))
        self.fc2 = nn.Conv2d(width, channels * self.m, 1, 1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        n = x.size(0)
        inputs = x.chunk(self.m, 1) if self.split else [x] * self.m
        output = [conv(part) for conv, part in zip(self.conv, inputs, strict=True)]
        u = reduce(lambda a, b: a + b, output)
        z = self.fc1(self.global_pool(u))
        a_b = self.fc2(z).reshape(n, self.m, self.channels, -1)
        a_b = a_b.softmax(dim=self.softmax_dim) if self.attention == "softmax" else a_b.sigmoid()
        weights = [w.reshape(n, self.channels, 1, 1) for w in a_b.chunk(self.m, dim=1)]
        return reduce(lambda a, b: a + b, [y * w for y, w in zip(output, weights, strict=True)])


class Bottleneck(nn.Module):
    def __init__(self, c_in: int, inner: int, c_out: int, stride: int, **sk: object) -> None:
        super().__init__()
        self.conv1 = nn.Sequential(nn.Conv2d(c_in, inner, 1, bias=False), nn.BatchNorm2d(inner), nn.ReLU(inplace=True))
        self.conv2 = SKConv(inner, stride, **sk)  # type: ignore[arg-type]
        self.conv3 = nn.Sequential(nn.Conv2d(inner, c_out, 1, bias=False), nn.BatchNorm2d(c_out))
        self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: Tensor) -> Tensor:
        return torch.relu(self.conv3(self.conv2(self.conv1(x))) + self.shortcut(x))


class SKNet(nn.Module):
    """sk_toy: a 3x3 stem of 16, bottlenecks 16 -> 32 (inner 16) and 32 -> 64 (inner 32, stride 2), the unit's
    attention 8 wide in both, an average pool and a 10-way fc."""

    def __init__(self, **sk: object) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU())
        self.layers = nn.Sequential(Bottleneck(16, 16, 32, 1, width=8, **sk), Bottleneck(32, 32, 64, 2, width=8, **sk))
        self.fc = nn.Linear(64, 10)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.layers(self.stem(x)).mean((2, 3)))


def sk_toy() -> nn.Module:
    return SKNet()


def sk_toy_split() -> nn.Module:
    return SKNet(split=True)


def softmax_over_channels() -> nn.Module:
    return SKNet(softmax_dim=2)  # each path's weights normalised across its channels, not across the paths


def sigmoid_attention() -> nn.Module:
    return SKNet(attention="sigmoid")  # each path gated on its own: no selection between them


def no_attention_bn() -> nn.Module:
    return SKNet(attn_bn=False)


def dilations_1_and_3() -> nn.Module:
    return SKNet(dilations=(1, 3))


def paths_swapped() -> nn.Module:
    return SKNet(dilations=(2, 1))  # the 5x5-like path first: the same unit, its paths in the other order


def split_paths_swapped() -> nn.Module:
    return SKNet(split=True, dilations=(2, 1))  # the first half of the input to the dilated path: another unit
