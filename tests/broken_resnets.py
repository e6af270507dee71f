"""A ResNet written independently of resnet_spec, with a knob for every way tutorials get it wrong.

``Net(**knobs)`` with no knobs is the paper's network (Table 1 / Sec. 4.2, v1, the given shortcut option);
each knob breaks one thing.  ``functional=True`` computes everything with ``torch.nn.functional`` calls on
parameters held in plain ``nn.Parameter``s, so the tracer is tested on both styles.  Nothing here imports
resnet_spec: it is the other implementation the compare tool must read.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

# Table 1 and Sec. 4.2, written out again here (FACTS.md), independent of spec_tables/.
IMAGENET = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
    152: ("bottleneck", (3, 8, 36, 3)),
}


@dataclass
class Knobs:
    depth: int = 18
    cifar_n: int | None = None  # a CIFAR net of 6n+2 layers instead of an ImageNet one
    shortcut: str = "B"  # A, B, C or none
    stride_on: str = "first"  # "first" (v1) or "3x3" (v1.5)
    kernel: dict[tuple[int, int, int], int] = field(default_factory=dict)  # (stage, block, conv) -> kernel
    padding: dict[tuple[int, int, int], int] = field(default_factory=dict)
    channels: dict[tuple[int, int, int], int] = field(default_factory=dict)  # out channels of a middle conv
    stride: dict[tuple[int, int, int], int] = field(default_factory=dict)
    repeats: tuple[int, ...] | None = None
    no_add: tuple[int, int] | None = None  # (stage, block) without its addition
    relu: str = "after"  # "after" the addition, "before" it, "missing"
    missing_bn: tuple[int, int, int] | None = None
    bn_before_conv: tuple[int, int, int] | None = None  # BN moved in front of the conv (pre-activation style)
    bias: bool = False
    stem_pool: str = "max"  # max, avg, none
    stem_pool_padding: int = 1
    stem_stride: int = 2
    head_pool: str = "avg"
    num_classes: int | None = None
    unused: bool = False  # an extra conv built in a block but never called
    functional: bool = False
    gelu: bool = False  # GELU instead of ReLU inside the blocks


class _Block(nn.Module):
    def __init__(self, k: Knobs, stage: int, index: int, c_in: int, layers: list[tuple[int, int]], stride: int):
        super().__init__()
        self.k, self.stage, self.index = k, stage, index
        n = len(layers)
        if k.stride_on == "first":
            stride_at = 0
        else:
            stride_at = next(i for i, (kernel, _) in enumerate(layers) if kernel == 3)
        self.convs = nn.ModuleList()
        self.bns = nn.ModuleList()
        channels = c_in
        for i, (kernel, out) in enumerate(layers):
            key = (stage, index, i)
            kernel = k.kernel.get(key, kernel)
            out = k.channels.get(key, out)
            s = k.stride.get(key, stride if i == stride_at else 1)
            pad = k.padding.get(key, (kernel - 1) // 2)
            self.convs.append(nn.Conv2d(channels, out, kernel, s, pad, bias=k.bias))
            bn_channels = channels if key == k.bn_before_conv else out
            self.bns.append(nn.BatchNorm2d(bn_channels))
            channels = out
        self.n = n
        out = layers[-1][1]
        changes = stride != 1 or c_in != out
        self.kind = {"A": "pad" if changes else "id", "B": "proj" if changes else "id", "C": "proj", "none": "none"}[
            k.shortcut
        ]
        if (stage, index) == k.no_add:
            self.kind = "none"
        self.pad_channels = out - c_in
        self.stride = stride
        if self.kind == "proj":
            self.proj = nn.Conv2d(c_in, out, 1, stride, bias=False)
            self.proj_bn = nn.BatchNorm2d(out)
        if k.unused:
            self.spare = nn.Conv2d(out, out, 1, bias=False)

    def _act(self, x: torch.Tensor) -> torch.Tensor:
        return F.gelu(x) if self.k.gelu else F.relu(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x
        for i in range(self.n):
            key = (self.stage, self.index, i)
            conv, bn = self.convs[i], self.bns[i]
            if key == self.k.bn_before_conv:
                out = conv(bn(out))
            elif key == self.k.missing_bn:
                out = conv(out)
            elif self.k.functional:
                out = F.conv2d(out, conv.weight, conv.bias, conv.stride, conv.padding)
                out = F.batch_norm(out, bn.running_mean, bn.running_var, bn.weight, bn.bias, False)
            else:
                out = bn(conv(out))
            last = i == self.n - 1
            if not last or self.kind == "none" or self.k.relu == "before":
                out = self._act(out)
        if self.kind == "none":
            return out
        if self.kind == "id":
            shortcut = x
        elif self.kind == "pad":
            shortcut = F.pad(x[:, :, :: self.stride, :: self.stride], (0, 0, 0, 0, 0, self.pad_channels))
        else:
            shortcut = self.proj_bn(self.proj(x))
        out = out + shortcut
        return F.relu(out) if self.k.relu == "after" else out


class Net(nn.Module):
    """The paper's network unless a knob says otherwise."""

    def __init__(self, **knobs: object) -> None:
        super().__init__()
        k = self.k = Knobs(**knobs)  # type: ignore[arg-type]
        if k.cifar_n is not None:
            stem_kernel, stem_out, stem_pad = 3, 16, 1
            stage_layers = [[(3, w), (3, w)] for w in (16, 32, 64)]
            repeats = (k.cifar_n,) * 3
            stem_stride, pool, classes = 1, "none", 10
        else:
            block, repeats = IMAGENET[k.depth]
            stem_kernel, stem_out, stem_pad = 7, 64, 3
            widths = (64, 128, 256, 512)
            if block == "basic":
                stage_layers = [[(3, w), (3, w)] for w in widths]
            else:
                stage_layers = [[(1, w), (3, w), (1, 4 * w)] for w in widths]
            stem_stride, pool, classes = k.stem_stride, k.stem_pool, 1000
        repeats = k.repeats or repeats
        self.conv1 = nn.Conv2d(3, stem_out, stem_kernel, stem_stride, stem_pad, bias=k.bias)
        self.bn1 = nn.BatchNorm2d(stem_out)
        self.pool = {
            "max": nn.MaxPool2d(3, 2, k.stem_pool_padding),
            "avg": nn.AvgPool2d(3, 2, k.stem_pool_padding),
            "none": nn.Identity(),
        }[pool]
        blocks = []
        channels = stem_out
        for stage, (layers, r) in enumerate(zip(stage_layers, repeats, strict=True)):
            for index in range(r):
                stride = 2 if stage > 0 and index == 0 else 1
                blocks.append(_Block(k, stage, index, channels, layers, stride))
                channels = layers[-1][1]
        self.blocks = nn.Sequential(*blocks)
        self.head_pool = nn.AdaptiveAvgPool2d(1) if k.head_pool == "avg" else nn.AdaptiveMaxPool2d(1)
        self.fc = nn.Linear(channels, k.num_classes or classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(F.relu(self.bn1(self.conv1(x))))
        x = self.blocks(x)
        return self.fc(torch.flatten(self.head_pool(x), 1))
