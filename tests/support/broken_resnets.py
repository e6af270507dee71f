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
    # Spellings of the same computation (each is the paper's network computed another way):
    relu_form: str = "relu"  # relu, clamp, clamp_min, maximum, threshold, leaky0, hardtanh
    add_form: str = "plus"  # plus, sum (Python's sum), out (torch.add(out=)), stack (stack().sum(0)), inplace
    bn_form: str = "module"  # module, by_hand (from the buffers, with eps), frozen (scale and shift precomputed)
    pool_form: str = "adaptive"  # adaptive, mean_mean (x.mean(3).mean(2)), flatten_mean, amax_avg (sum/HW)
    fc_form: str = "linear"  # linear, conv1x1 (a 1x1 conv on the pooled map), matmul (x @ w.t() + b)
    stem_pad_form: str = "conv"  # conv (padding=3), zero_pad (F.pad then padding=0, as Keras ports do)
    # Defects nobody sees in the structure of the code:
    dropout: float = 0.0  # a dropout before the fc
    fc_relu: bool = False  # a ReLU on the logits
    shortcut_relu: bool = False  # a ReLU on the projection shortcut's output
    fc_bias: bool = True
    bn_affine: bool = True
    norm: str = "bn"  # bn or group (GroupNorm with 1 group everywhere)
    width: dict[tuple[int, int], int] = field(default_factory=dict)  # (stage, block) -> that block's output width
    shortcut_pool: bool = False  # ResNet-D: a 2x2 average pool before a stride-1 projection
    scale: tuple[int, int] | None = None  # (stage, block) whose branch output is multiplied by 0.5
    # Around the network:
    input_norm: bool = False  # (x - mean) / std before conv1
    softmax: bool = False  # a softmax on the logits
    output: str = "tensor"  # tensor, tuple (logits, features), dict, dataclass, features (a list of stage maps)


def _relu(x: torch.Tensor, form: str) -> torch.Tensor:
    """ReLU, spelled one of several equivalent ways."""
    if form == "clamp":
        return x.clamp(min=0)
    if form == "clamp_min":
        return torch.clamp_min(x, 0.0)
    if form == "maximum":
        return torch.maximum(x, torch.zeros(1, device=x.device, dtype=x.dtype))
    if form == "threshold":
        return F.threshold(x, 0.0, 0.0)
    if form == "leaky0":
        return F.leaky_relu(x, 0.0)
    if form == "hardtanh":
        return F.hardtanh(x, 0.0, float("inf"))
    return F.relu(x)


def _add(a: torch.Tensor, b: torch.Tensor, form: str) -> torch.Tensor:
    """a + b, spelled one of several equivalent ways."""
    if form == "sum":
        return sum([a, b])  # type: ignore[return-value]
    if form == "out":
        result = torch.empty_like(a)
        torch.add(a, b, out=result)
        return result
    if form == "stack":
        return torch.stack([a, b]).sum(0)
    if form == "inplace":
        return a.add_(b)
    return a + b


def _norm(k: Knobs, channels: int) -> nn.Module:
    if k.norm == "group":
        return nn.GroupNorm(1, channels)
    return nn.BatchNorm2d(channels, affine=k.bn_affine)


def _apply_bn(bn: nn.Module, x: torch.Tensor, form: str) -> torch.Tensor:
    """Batch norm in inference form, from the module or by hand from its buffers."""
    if form == "module" or not isinstance(bn, nn.BatchNorm2d):
        return bn(x)
    mean, var = bn.running_mean, bn.running_var
    assert mean is not None and var is not None
    shape = (1, -1, 1, 1)
    if form == "by_hand":
        out = (x - mean.view(shape)) / torch.sqrt(var.view(shape) + bn.eps)
        return out * bn.weight.view(shape) + bn.bias.view(shape)
    scale = bn.weight * (var + bn.eps).rsqrt()  # frozen: torchvision.ops.FrozenBatchNorm2d's form
    shift = bn.bias - mean * scale
    return x * scale.reshape(shape) + shift.reshape(shape)


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
        if (stage, index) in k.width:
            layers = [(kernel, k.width[(stage, index)]) for kernel, _ in layers]
        for i, (kernel, out) in enumerate(layers):
            key = (stage, index, i)
            kernel = k.kernel.get(key, kernel)
            out = k.channels.get(key, out)
            s = k.stride.get(key, stride if i == stride_at else 1)
            pad = k.padding.get(key, (kernel - 1) // 2)
            self.convs.append(nn.Conv2d(channels, out, kernel, s, pad, bias=k.bias))
            bn_channels = channels if key == k.bn_before_conv else out
            self.bns.append(_norm(k, bn_channels))
            channels = out
        self.out_channels = channels
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
            pool = k.shortcut_pool and stride > 1
            self.proj_pool = nn.AvgPool2d(stride, stride) if pool else nn.Identity()
            self.proj = nn.Conv2d(c_in, out, 1, 1 if pool else stride, bias=False)
            self.proj_bn = _norm(k, out)
        if k.unused:
            self.spare = nn.Conv2d(out, out, 1, bias=False)

    def _act(self, x: torch.Tensor) -> torch.Tensor:
        return F.gelu(x) if self.k.gelu else _relu(x, self.k.relu_form)

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
                out = _apply_bn(bn, conv(out), self.k.bn_form)
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
            shortcut = _apply_bn(self.proj_bn, self.proj(self.proj_pool(x)), self.k.bn_form)
            if self.k.shortcut_relu:
                shortcut = F.relu(shortcut)
        if (self.stage, self.index) == self.k.scale:
            out = out * 0.5
        out = _add(out, shortcut, self.k.add_form)
        return self._act(out) if self.k.relu == "after" else out


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
        self.stem_pad = stem_pad if k.stem_pad_form == "zero_pad" else 0
        self.conv1 = nn.Conv2d(3, stem_out, stem_kernel, stem_stride, stem_pad - self.stem_pad, bias=k.bias)
        self.bn1 = _norm(k, stem_out)
        self.pool = {
            "max": nn.MaxPool2d(3, 2, k.stem_pool_padding),
            "avg": nn.AvgPool2d(3, 2, k.stem_pool_padding),
            "none": nn.Identity(),
        }[pool]
        blocks: list[_Block] = []
        channels = stem_out
        self.stage_ends: list[int] = []
        for stage, (layers, r) in enumerate(zip(stage_layers, repeats, strict=True)):
            for index in range(r):
                stride = 2 if stage > 0 and index == 0 else 1
                blocks.append(_Block(k, stage, index, channels, layers, stride))
                channels = blocks[-1].out_channels
            self.stage_ends.append(len(blocks))
        self.blocks = nn.Sequential(*blocks)
        self.head_pool = nn.AdaptiveAvgPool2d(1) if k.head_pool == "avg" else nn.AdaptiveMaxPool2d(1)
        classes = k.num_classes or classes
        if k.output == "features":  # a backbone: no head
            self.fc: nn.Module = nn.Identity()
        elif k.fc_form == "conv1x1":
            self.fc = nn.Conv2d(channels, classes, 1, bias=k.fc_bias)
        else:
            self.fc = nn.Linear(channels, classes, bias=k.fc_bias)

    def _pool(self, x: torch.Tensor) -> torch.Tensor:
        form = self.k.pool_form
        if form == "mean_mean" and self.k.head_pool == "avg":
            return x.mean(3).mean(2)
        if form == "flatten_mean" and self.k.head_pool == "avg":
            return x.flatten(2).mean(-1)
        return torch.flatten(self.head_pool(x), 1)

    def _fc(self, x: torch.Tensor) -> torch.Tensor:
        if self.k.fc_form == "conv1x1":
            return torch.flatten(self.fc(x.reshape(*x.shape, 1, 1)), 1)
        if self.k.fc_form == "matmul":
            out = x @ self.fc.weight.t()
            return out + self.fc.bias if self.fc.bias is not None else out
        return self.fc(x)

    def forward(self, x: torch.Tensor) -> object:
        k = self.k
        if k.input_norm:
            x = (x - 0.45) / 0.225
        if self.stem_pad:
            x = F.pad(x, (self.stem_pad,) * 4)
        x = _apply_bn(self.bn1, self.conv1(x), k.bn_form)
        x = self.pool(_relu(x, k.relu_form))
        features = []
        for index, block in enumerate(self.blocks):
            x = block(x)
            if index + 1 in self.stage_ends:
                features.append(x)
        if k.output == "features":
            return features
        pooled = self._pool(x)
        if k.dropout:
            pooled = F.dropout(pooled, k.dropout, self.training)
        logits = self._fc(pooled)
        if k.fc_relu:
            logits = F.relu(logits)
        if k.softmax:
            logits = logits.softmax(-1)
        if k.output == "tuple":
            return features[-1], logits
        if k.output == "dict":
            return {"features": features, "logits": logits}
        if k.output == "dataclass":
            return Output(logits=logits, pooled=pooled)
        return logits


@dataclass
class Output:
    """A forward's result as a dataclass (as Hugging Face's ModelOutput is)."""

    logits: torch.Tensor
    pooled: torch.Tensor
