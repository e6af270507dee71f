"""A CIFAR ResNet-20 (Sec. 4.2, option A) written independently of resnet_spec, in forms a structural reader does not
recognise, and with the defects only the numbers catch.  Each factory below takes no arguments, for
``compare.py --impl tests/support/written_differently.py:NAME`` and ``pytest --resnet-impl``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class _HandBatchNorm(nn.Module):
    """Batch norm by hand: batch statistics in train mode, running statistics in eval mode (no running update)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(channels))
        self.beta = nn.Parameter(torch.zeros(channels))
        self.register_buffer("mean", torch.zeros(channels))
        self.register_buffer("var", torch.ones(channels))

    def forward(self, x: Tensor) -> Tensor:
        if self.training:
            mean, var = x.mean((0, 2, 3), keepdim=True), x.var((0, 2, 3), unbiased=False, keepdim=True)
        else:
            mean, var = self.mean.view(1, -1, 1, 1), self.var.view(1, -1, 1, 1)
        return (x - mean) * torch.rsqrt(var + 1e-5) * self.gamma.view(1, -1, 1, 1) + self.beta.view(1, -1, 1, 1)


class _FrozenBatchNorm(_HandBatchNorm):
    """Batch norm that always uses its running statistics, also in train mode (a detection backbone's frozen BN)."""

    def forward(self, x: Tensor) -> Tensor:
        scale = self.gamma * torch.rsqrt(self.var + 1e-5)
        return x * scale.view(1, -1, 1, 1) + (self.beta - self.mean * scale).view(1, -1, 1, 1)


class Cifar20(nn.Module):
    """ResNet-20 of Sec. 4.2 (3x3 convs, 16/32/64 channels, option A), written independently, with defects on knobs.

    ``hand_bn``: every batch norm by hand; ``frozen_bn``: every batch norm frozen (running statistics in train
    mode); ``conv_classifier``: the classifier as a 1x1 conv before the pool; ``matmul_classifier``: the classifier
    as a matrix product and a bias vector added; the
    rest are the silent passes a structural reader alone lets through.
    """

    def __init__(
        self,
        hand_bn: bool = False,
        frozen_bn: bool = False,
        conv_classifier: bool = False,
        add_alpha: float = 1.0,
        stem_scale: float = 1.0,
        logits_scale: float = 1.0,
        sigmoid: bool = False,
        matmul_classifier: bool = False,
    ) -> None:
        super().__init__()
        self.add_alpha, self.stem_scale, self.logits_scale, self.sigmoid = add_alpha, stem_scale, logits_scale, sigmoid
        norm = _FrozenBatchNorm if frozen_bn else _HandBatchNorm if hand_bn else nn.BatchNorm2d
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, 1, 1, bias=False), norm(16))
        self.units = nn.ModuleList()
        channels = 16
        for width in (16, 32, 64):
            for index in range(3):
                stride = 2 if index == 0 and width != 16 else 1
                self.units.append(
                    nn.ModuleList([nn.Conv2d(channels, width, 3, stride, 1, bias=False), norm(width),
                                   nn.Conv2d(width, width, 3, 1, 1, bias=False), norm(width)])
                )  # fmt: skip
                channels = width
        self.conv_classifier, self.matmul_classifier = conv_classifier, matmul_classifier
        self.head = nn.Conv2d(64, 10, 1) if conv_classifier else nn.Linear(64, 10)

    def forward(self, x: Tensor) -> Tensor:
        x = F.relu(self.stem(x)) * self.stem_scale
        for conv_a, bn_a, conv_b, bn_b in self.units:  # type: ignore[misc]
            out = bn_b(conv_b(F.relu(bn_a(conv_a(x)))))
            shortcut = x[:, :, :: conv_a.stride[0], :: conv_a.stride[0]]
            if shortcut.shape[1] != out.shape[1]:  # option A: zeros appended as the extra channels
                shortcut = torch.cat([shortcut, shortcut.new_zeros(shortcut.shape)], 1)
            x = F.relu(out.add_(shortcut, alpha=self.add_alpha))
        if self.conv_classifier:
            logits = self.head(x).mean((2, 3))
        elif self.matmul_classifier:  # a matrix product, then the bias vector added
            logits = torch.flatten(F.adaptive_avg_pool2d(x, 1), 1) @ self.head.weight.t() + self.head.bias
        else:
            logits = self.head(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))
        logits = logits * self.logits_scale
        return torch.sigmoid(logits) if self.sigmoid else logits


def as_written() -> Cifar20:
    """The paper's ResNet-20, every batch norm an ``nn.BatchNorm2d``."""
    return Cifar20()


def hand_bn() -> Cifar20:
    """Every batch norm written by hand: the same function."""
    return Cifar20(hand_bn=True)


def conv_classifier() -> Cifar20:
    """The classifier as a 1x1 conv before the global pool: the same function."""
    return Cifar20(conv_classifier=True)


def frozen_bn() -> Cifar20:
    """Every batch norm frozen: running statistics in train mode too, where the paper's uses the batch's."""
    return Cifar20(frozen_bn=True)


def add_alpha_zero() -> Cifar20:
    """Every addition ``out.add_(shortcut, alpha=0)``: a plain network in disguise."""
    return Cifar20(add_alpha=0.0)


def logits_times_zero() -> Cifar20:
    """The logits multiplied by 0."""
    return Cifar20(logits_scale=0.0)
