"""ResNets written independently of resnet_spec, one per class of model the verdict must get right.

Each factory takes no arguments (for ``compare.py --impl tests/support/verdict_models.py:NAME``, ``assert_conforms`` and
``pytest --resnet-impl``).  :data:`CASES` says, for each, the table entry it is checked against and the verdict the
paper's definition gives it, with the reason written out here (FACTS.md: Sec. 4.2 for the CIFAR nets, Table 1 for
the ImageNet ones):

* the paper's network spelled otherwise (ReLU as clamp or maximum, the addition as stack-and-sum, a zero pad before
  the stem's max pool on a ReLU's output, convs as unfold-and-matmul, as einsum, as a Linear on channels, split by
  output channels and concatenated, option A's zeros on both sides of the identity: the same network up to a
  permutation of channels, BN with ``momentum=None``: the same forward) conforms;
* other parameters make another network, whatever it computes (a missing fc bias or BN affine, one BN or conv used
  twice, conv biases before BN, a parameter never used): not conformant;
* another function (a BN epsilon of 1e-3, a BN without running statistics, weight standardisation in one stage, a
  shortcut cached from an earlier call, weights pruned by a mask with zeros): not conformant, found by the numbers;
* weights computed from their parameter and fixed data (torch's pruning with a mask of ones): equivalent; from two
  parameters (weight normalisation): not conformant; lazy modules: shaped by a first forward pass, then conformant;
* a buffer that is data (a temperature on the logits): kept as the model holds it, so 1 conforms and 2 does not.

Nothing here imports resnet_spec.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils import prune
from torch.nn.utils.parametrizations import orthogonal, weight_norm

# ---- the paper's CIFAR network (Sec. 4.2: 3x3 convs; 16, 32, 64 filters on 32, 16, 8 maps; 6n+2 layers; option A)


def _relu(x: Tensor, form: str) -> Tensor:
    if form == "clamp":
        return torch.clamp(x, min=0)
    if form == "maximum":
        return torch.maximum(x, torch.zeros((), dtype=x.dtype, device=x.device))
    if form == "threshold":
        return F.threshold(x, 0.0, 0.0)
    return F.relu(x)


class Im2colConv(nn.Module):
    """A 3x3 convolution as unfold (im2col) and a matrix product with a (out, in * 9) weight."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        self.weight = nn.Parameter(torch.randn(c_out, c_in * 9) / (c_in * 9) ** 0.5)

    def forward(self, x: Tensor) -> Tensor:
        n, _, h, w = x.shape
        cols = F.unfold(x, 3, padding=1, stride=self.stride)  # (N, C*9, H'*W')
        h_out, w_out = (h - 1) // self.stride + 1, (w - 1) // self.stride + 1
        return (self.weight @ cols).view(n, -1, h_out, w_out)


class SplitConv(nn.Module):
    """A 3x3 convolution as two convolutions of half the output channels each, concatenated."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.low = nn.Conv2d(c_in, c_out // 2, 3, stride, 1, bias=False)
        self.high = nn.Conv2d(c_in, c_out - c_out // 2, 3, stride, 1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([self.low(x), self.high(x)], dim=1)


class WeightStandardizedConv(nn.Conv2d):
    """A conv whose weight is standardised per output channel before use (Qiao et al.'s weight standardisation)."""

    def forward(self, x: Tensor) -> Tensor:
        w = self.weight
        w = (w - w.mean((1, 2, 3), keepdim=True)) / (w.std((1, 2, 3), keepdim=True) + 1e-5)
        return F.conv2d(x, w, None, self.stride, self.padding)


@dataclass
class Knobs:
    """What a model changes; the defaults are the paper's network."""

    n: int = 3  # blocks per stage: 6n+2 layers
    relu: str = "relu"  # relu, clamp, maximum, threshold
    add: str = "plus"  # plus, stack (torch.stack([a, b]).sum(0))
    conv: str = "conv"  # conv, im2col, split
    pad_sides: str = "end"  # where option A's zero channels go: "end" (appended) or "both" (half on each side)
    fc_bias: bool = True
    bn: Callable[[int], nn.Module] = nn.BatchNorm2d
    share_bn: bool = False  # each block's second BN is its first
    tie_convs: bool = False  # each block that keeps its width runs its first conv twice
    conv_bias: bool = False
    dead: bool = False  # a parameter in every block that the forward never reads
    standardize_stage: int | None = None  # the stage whose convs standardise their weights
    cache_shortcut_stage: int | None = None  # the stage whose blocks keep the shortcut of their first call
    extra: dict[str, object] = field(default_factory=dict)


class Block(nn.Module):
    def __init__(self, k: Knobs, stage: int, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.k, self.stage, self.stride = k, stage, stride
        if stage == k.standardize_stage:
            make: Callable[..., nn.Module] = lambda a, b, s: WeightStandardizedConv(a, b, 3, s, 1, bias=False)  # noqa: E731
        elif k.conv == "im2col":
            make = Im2colConv
        elif k.conv == "split":
            make = SplitConv
        else:
            make = partial(_conv3x3, bias=k.conv_bias)
        self.conv_a = make(c_in, c_out, stride)
        self.bn_a = k.bn(c_out)
        self.conv_b = self.conv_a if k.tie_convs and c_in == c_out else make(c_out, c_out, 1)
        self.bn_b = self.bn_a if k.share_bn else k.bn(c_out)
        self.extra_channels = c_out - c_in
        if k.dead:
            self.unused_scale = nn.Parameter(torch.ones(c_out))
        self.cached: Tensor | None = None

    def shortcut(self, x: Tensor) -> Tensor:
        if self.extra_channels == 0:
            return x
        x = x[:, :, :: self.stride, :: self.stride]
        if self.k.pad_sides == "both":  # the most-copied CIFAR ResNet's LambdaLayer
            half = self.extra_channels // 2
            return F.pad(x, (0, 0, 0, 0, half, self.extra_channels - half))
        return F.pad(x, (0, 0, 0, 0, 0, self.extra_channels))

    def forward(self, x: Tensor) -> Tensor:
        out = _relu(self.bn_a(self.conv_a(x)), self.k.relu)
        out = self.bn_b(self.conv_b(out))
        if self.stage == self.k.cache_shortcut_stage:
            if self.cached is None or self.cached.shape != out.shape or self.cached.device != out.device:
                self.cached = self.shortcut(x).detach()
            shortcut = self.cached
        else:
            shortcut = self.shortcut(x)
        out = torch.stack([out, shortcut]).sum(0) if self.k.add == "stack" else out + shortcut
        return _relu(out, self.k.relu)


def _conv3x3(c_in: int, c_out: int, stride: int, bias: bool = False) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, 3, stride, 1, bias=bias)


class CifarResNet(nn.Module):
    """Sec. 4.2's network with the knobs of :class:`Knobs`."""

    def __init__(self, **knobs: object) -> None:
        super().__init__()
        k = self.k = Knobs(**knobs)  # type: ignore[arg-type]
        self.conv = nn.Conv2d(3, 16, 3, 1, 1, bias=k.conv_bias)
        self.bn = k.bn(16)
        blocks, c_in = [], 16
        for stage, width in enumerate((16, 32, 64)):
            for i in range(k.n):
                blocks.append(Block(k, stage, c_in, width, 2 if stage > 0 and i == 0 else 1))
                c_in = width
        self.blocks = nn.Sequential(*blocks)
        self.linear = nn.Linear(64, 10, bias=k.fc_bias)

    def forward(self, x: Tensor) -> Tensor:
        x = _relu(self.bn(self.conv(x)), self.k.relu)
        x = self.blocks(x)
        return self.linear(F.adaptive_avg_pool2d(x, 1).flatten(1))


# ---- the paper's ImageNet networks (Table 1), for the spellings that need their stem or their bottlenecks


class Conv1x1(nn.Module):
    """A 1x1 convolution as a matrix product over channels: einsum, matmul, or nn.Linear on channels-last."""

    def __init__(self, c_in: int, c_out: int, stride: int, form: str) -> None:
        super().__init__()
        self.stride, self.form = stride, form
        if form == "linear":
            self.linear = nn.Linear(c_in, c_out, bias=False)
        else:
            self.weight = nn.Parameter(torch.randn(c_out, c_in) / c_in**0.5)

    def forward(self, x: Tensor) -> Tensor:
        x = x[:, :, :: self.stride, :: self.stride]
        if self.form == "einsum":
            return torch.einsum("nchw,oc->nohw", x, self.weight)
        if self.form == "matmul":
            n, _, h, w = x.shape
            return (self.weight @ x.flatten(2)).view(n, -1, h, w)
        return self.linear(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class Bottleneck(nn.Module):
    """1x1, 3x3 (the stride: v1.5), 1x1 x4; projection where the shape changes (option B)."""

    def __init__(self, c_in: int, width: int, stride: int, form: str) -> None:
        super().__init__()
        c_out = 4 * width
        self.reduce, self.bn1 = Conv1x1(c_in, width, 1, form), nn.BatchNorm2d(width)
        self.conv, self.bn2 = nn.Conv2d(width, width, 3, stride, 1, bias=False), nn.BatchNorm2d(width)
        self.expand, self.bn3 = Conv1x1(width, c_out, 1, form), nn.BatchNorm2d(c_out)
        self.project = None
        if stride != 1 or c_in != c_out:
            self.project = nn.Sequential(Conv1x1(c_in, c_out, stride, form), nn.BatchNorm2d(c_out))

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.reduce(x)))
        out = F.relu(self.bn2(self.conv(out)))
        out = self.bn3(self.expand(out))
        return F.relu(out + (x if self.project is None else self.project(x)))


class Basic(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), nn.BatchNorm2d(c_out)
        self.conv2, self.bn2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False), nn.BatchNorm2d(c_out)
        self.project = None
        if stride != 1 or c_in != c_out:
            self.project = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: Tensor) -> Tensor:
        out = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        return F.relu(out + (x if self.project is None else self.project(x)))


class ImageNetResNet(nn.Module):
    """Table 1's ResNet-18 (``depth=18``) or ResNet-50 v1.5 (``depth=50``), its 1x1 convs spelled ``form``; with
    ``padded_pool`` the stem's max pool is an explicit zero pad and an unpadded pool (exact on a ReLU's output)."""

    def __init__(self, depth: int = 50, form: str = "conv", padded_pool: bool = False) -> None:
        super().__init__()
        self.padded_pool = padded_pool
        self.stem = nn.Sequential(nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU())
        layers, c_in = [], 64
        repeats = (2, 2, 2, 2) if depth == 18 else (3, 4, 6, 3)
        for stage, (width, count) in enumerate(zip((64, 128, 256, 512), repeats, strict=True)):
            for i in range(count):
                stride = 2 if stage > 0 and i == 0 else 1
                if depth == 18:
                    layers.append(Basic(c_in, width, stride))
                    c_in = width
                else:
                    layers.append(Bottleneck(c_in, width, stride, form))
                    c_in = 4 * width
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(c_in, 1000)

    def forward(self, x: Tensor) -> Tensor:
        x = self.stem(x)
        x = F.max_pool2d(F.pad(x, (1, 1, 1, 1)), 3, 2) if self.padded_pool else F.max_pool2d(x, 3, 2, 1)
        return self.head(self.body(x).mean((2, 3)))


# ---- the factories ----------------------------------------------------------------------------------------------


def relu_clamp() -> nn.Module:
    return CifarResNet(relu="clamp")


def relu_maximum() -> nn.Module:
    return CifarResNet(relu="maximum")


def relu_threshold() -> nn.Module:
    return CifarResNet(relu="threshold")


def stack_sum() -> nn.Module:
    return CifarResNet(add="stack")


def im2col_convs() -> nn.Module:
    return CifarResNet(conv="im2col")


def split_convs() -> nn.Module:
    return CifarResNet(conv="split")


def zeros_both_sides_20() -> nn.Module:
    return CifarResNet(pad_sides="both")


def zeros_both_sides_110() -> nn.Module:
    return CifarResNet(pad_sides="both", n=18)


def bn_momentum_none() -> nn.Module:
    return CifarResNet(bn=partial(nn.BatchNorm2d, momentum=None))


def fc_without_bias() -> nn.Module:
    return CifarResNet(fc_bias=False)


def bn_without_affine() -> nn.Module:
    return CifarResNet(bn=partial(nn.BatchNorm2d, affine=False))


def shared_bn() -> nn.Module:
    return CifarResNet(share_bn=True)


def tied_convs() -> nn.Module:
    return CifarResNet(tie_convs=True)


def conv_bias() -> nn.Module:
    return CifarResNet(conv_bias=True)


def dead_parameters() -> nn.Module:
    return CifarResNet(dead=True)


def bn_eps_1e3() -> nn.Module:
    return CifarResNet(bn=partial(nn.BatchNorm2d, eps=1e-3))


def bn_without_running_stats() -> nn.Module:
    return CifarResNet(bn=partial(nn.BatchNorm2d, track_running_stats=False))


def weight_standardized_stage() -> nn.Module:
    return CifarResNet(standardize_stage=1)


def cached_shortcut() -> nn.Module:
    return CifarResNet(cache_shortcut_stage=2)


def zero_padded_stem_pool() -> nn.Module:
    return ImageNetResNet(depth=18, padded_pool=True)


def einsum_1x1() -> nn.Module:
    return ImageNetResNet(form="einsum")


def matmul_1x1() -> nn.Module:
    return ImageNetResNet(form="matmul")


def linear_1x1() -> nn.Module:
    return ImageNetResNet(form="linear")


@dataclass(frozen=True)
class Case:
    """A model, the table entry it is checked against, and the verdict the paper's definition gives it."""

    factory: Callable[[], nn.Module]
    arch: str
    variant: str | None
    verdict: str  # conformant, not conformant
    where: str | None = None  # the row or block a finding names (not conformant)
    says: str | None = None  # words of the finding's property or found value (not conformant)
    slow: bool = False  # an ImageNet network: seconds of float64 work


CASES: dict[str, Case] = {
    "relu_clamp": Case(relu_clamp, "resnet20", None, "conformant"),
    "relu_maximum": Case(relu_maximum, "resnet20", None, "conformant"),
    "relu_threshold": Case(relu_threshold, "resnet20", None, "conformant"),
    "stack_sum": Case(stack_sum, "resnet20", None, "conformant"),
    "im2col_convs": Case(im2col_convs, "resnet20", None, "conformant"),
    "split_convs": Case(split_convs, "resnet20", None, "conformant"),
    "zeros_both_sides_20": Case(zeros_both_sides_20, "resnet20", None, "conformant"),
    "zeros_both_sides_110": Case(zeros_both_sides_110, "resnet110", None, "conformant"),
    "bn_momentum_none": Case(bn_momentum_none, "resnet20", None, "conformant"),
    "zero_padded_stem_pool": Case(zero_padded_stem_pool, "resnet18", None, "conformant", slow=True),
    "einsum_1x1": Case(einsum_1x1, "resnet50", "v1.5", "conformant", slow=True),
    "matmul_1x1": Case(matmul_1x1, "resnet50", "v1.5", "conformant", slow=True),
    "linear_1x1": Case(linear_1x1, "resnet50", "v1.5", "conformant", slow=True),
    "fc_without_bias": Case(fc_without_bias, "resnet20", None, "not conformant", "fc", "fc.bias"),
    "bn_without_affine": Case(bn_without_affine, "resnet20", None, "not conformant", "conv1", "bn.affine"),
    "shared_bn": Case(shared_bn, "resnet20", None, "not conformant", "conv2_x", "bn2.tied"),
    "tied_convs": Case(tied_convs, "resnet20", None, "not conformant", "conv2_x", "tied"),
    "conv_bias": Case(conv_bias, "resnet20", None, "not conformant", "conv1", "bias before BN"),
    "dead_parameters": Case(dead_parameters, "resnet20", None, "not conformant", "conv2_1", "unused parameter"),
    "bn_eps_1e3": Case(bn_eps_1e3, "resnet20", None, "not conformant", "conv1", "eps"),
    "bn_without_running_stats": Case(
        bn_without_running_stats, "resnet20", None, "not conformant", "conv1", "batch statistics in eval mode"
    ),
    "weight_standardized_stage": Case(
        weight_standardized_stage, "resnet20", None, "not conformant", "conv3_1", "conv1.output"
    ),
    "cached_shortcut": Case(cached_shortcut, "resnet20", None, "not conformant", "conv4_x", None),
}


class FlippedIm2colConv(Im2colConv):
    """A 3x3 convolution in the mathematical sense (the kernel flipped, as scipy.signal.convolve does): one-to-one
    with a correlation's weights, but no layout of the weight tensor the numbers can find reproduces it."""

    def forward(self, x: Tensor) -> Tensor:
        n, _, h, w = x.shape
        kernel = self.weight.view(self.weight.shape[0], -1, 3, 3).flip(-1, -2).reshape(self.weight.shape[0], -1)
        cols = F.unfold(x, 3, padding=1, stride=self.stride)
        h_out, w_out = (h - 1) // self.stride + 1, (w - 1) // self.stride + 1
        return (kernel @ cols).view(n, -1, h_out, w_out)


def flipped_kernels() -> nn.Module:
    model = CifarResNet()
    model.blocks[0].conv_a = FlippedIm2colConv(16, 16, 1)
    return model


CASES["flipped_kernels"] = Case(flipped_kernels, "resnet20", None, "undecided")


# ---- weights computed from parameters: torch's pruning (weight = weight_orig * weight_mask, the mask a buffer) and
# weight normalisation (weight = g * v / |v|).  A pruned weight is one-to-one with its parameter, its mask fixed
# data: with entries masked to zero it is another function (the masked weights do nothing whatever they are); with a
# mask of ones it is the paper's network spelled otherwise.  Weight normalisation adds a parameter per output unit.


def pruned_fc() -> nn.Module:
    model = CifarResNet()
    prune.l1_unstructured(model.linear, "weight", amount=0.3)
    return model


def pruned_conv() -> nn.Module:
    model = CifarResNet()
    prune.l1_unstructured(model.blocks[3].conv_b, "weight", amount=0.3)
    return model


def mask_of_ones() -> nn.Module:
    model = CifarResNet()
    prune.identity(model.linear, "weight")
    prune.identity(model.blocks[3].conv_b, "weight")
    return model


def weight_normed_fc() -> nn.Module:
    model = CifarResNet()
    weight_norm(model.linear)
    return model


CASES["pruned_fc"] = Case(pruned_fc, "resnet20", None, "not conformant", "fc", "fc.output")
CASES["pruned_conv"] = Case(pruned_conv, "resnet20", None, "not conformant", "conv3_1", "conv2.output")
CASES["mask_of_ones"] = Case(mask_of_ones, "resnet20", None, "equivalent")
CASES["weight_normed_fc"] = Case(weight_normed_fc, "resnet20", None, "not conformant", "fc", "fc.weight")


# ---- lazy modules (nn.LazyLinear, nn.LazyConv2d): shaped by their first forward pass, then the paper's layers


def lazy_fc() -> nn.Module:
    model = CifarResNet()
    model.linear = nn.LazyLinear(10)
    return model


def lazy_stem() -> nn.Module:
    model = CifarResNet()
    model.conv = nn.LazyConv2d(16, 3, 1, 1, bias=False)
    return model


CASES["lazy_fc"] = Case(lazy_fc, "resnet20", None, "conformant")
CASES["lazy_stem"] = Case(lazy_stem, "resnet20", None, "conformant")


# ---- an orthogonal classifier (torch's orthogonal parametrization: the weight a Householder product of its
# parameter): another function with the same count; built on the meta device, its code leaves a tensor None


def orthogonal_fc() -> nn.Module:
    model = CifarResNet()
    orthogonal(model.linear)
    return model


CASES["orthogonal_fc"] = Case(orthogonal_fc, "resnet20", None, "not conformant", "fc", "fc.weight")


# ---- a buffer the function reads that is no weight and no statistic (a temperature on the logits): data, part of
# the function as the model holds it; 1 leaves the paper's network, 2 halves its logits


class Tempered(CifarResNet):
    def __init__(self, temperature: float) -> None:
        super().__init__()
        self.register_buffer("temperature", torch.tensor(temperature))

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x) / self.temperature


def temperature_one() -> nn.Module:
    return Tempered(1.0)


def temperature_two() -> nn.Module:
    return Tempered(2.0)


CASES["temperature_one"] = Case(temperature_one, "resnet20", None, "conformant")
CASES["temperature_two"] = Case(temperature_two, "resnet20", None, "not conformant", "fc", None)


# ---- torchvision's FrozenBatchNorm2d (detection backbones): scale, shift and statistics all buffers, so the batch
# norms have no learned scale and shift (9,600 fewer parameters in ResNet-18; 2 x 688 = 1,376 in ResNet-20), and in
# train mode they still use their statistics


def frozen_batch_norms() -> nn.Module:
    from torchvision.ops import FrozenBatchNorm2d

    return CifarResNet(bn=FrozenBatchNorm2d)


CASES["frozen_batch_norms"] = Case(frozen_batch_norms, "resnet20", None, "not conformant", "conv1", "fixed scale")
