"""An inference-only copy of a :class:`~resnet_spec.models.ResNet` with every batch norm folded into its conv.

In eval mode a batch norm is an affine map per channel, ``y = (x - mean) / sqrt(var + eps) * gamma + beta``, and
the conv before it is linear, so the two are one conv with a bias::

    scale = gamma / sqrt(var + eps)
    W' = W * scale  (per output channel)        b' = (b - mean) * scale + beta   (b = 0: our convs have no bias)

:func:`fuse_for_inference` applies this to the stem, to every conv of every block and to projection shortcuts, and
returns a :class:`FusedResNet`: ReLUs in place, no batch norm left, parameters frozen, optionally channels_last.
The scale and the bias are computed in float64 and rounded once to the conv's dtype, the weight is one product in
that dtype, so the fused network equals the eval-mode network up to float32 rounding: the tests hold every table
entry, every shortcut option and the plain nets to ``max |fused - eager| <= 1e-4 * max |eager|``.  What it cannot
fold faithfully it refuses with a ``ValueError`` naming the module: a batch norm without running statistics or with
non-finite ones, a non-BN where the builder puts one, a non-ReLU activation, forward hooks (they would be dropped),
a meta-device model (no values to fold).
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn

from ..spec import layout_plan
from ._resnet import BlurPool, PlainBlock, ResidualBlock, ResNet, SelectiveKernelUnit, ZeroPadShortcut

__all__ = ["FusedBlock", "FusedResNet", "FusedResidualBlock", "fold_conv_bn", "fuse_for_inference"]


def fold_conv_bn(conv: nn.Module, bn: nn.Module, where: str = "conv") -> nn.Conv2d:
    """A new ``nn.Conv2d`` (with bias) computing ``bn(conv(x))`` as ``bn`` computes it in eval mode.

    ``where`` names the pair in error messages (e.g. ``"layer2.0.conv1/bn1"``).  The inputs are not modified.
    Raises ``ValueError`` when ``bn`` has no running statistics, when channels disagree, or when a statistic is not
    finite or ``running_var + eps`` is not positive (the fold would divide by zero or produce NaN).
    """
    if not isinstance(conv, nn.Conv2d) or type(conv) is not nn.Conv2d:
        raise ValueError(f"{where}: expected an nn.Conv2d to fold into, got {type(conv).__name__}")
    if not isinstance(bn, nn.BatchNorm2d) or type(bn) is not nn.BatchNorm2d:
        raise ValueError(f"{where}: expected an nn.BatchNorm2d to fold, got {type(bn).__name__}")
    if bn.running_mean is None or bn.running_var is None:
        raise ValueError(
            f"{where}: batch norm has no running statistics (track_running_stats=False): it normalises with the "
            "batch's own statistics even in eval mode, which no conv bias can reproduce"
        )
    if bn.num_features != conv.out_channels:
        raise ValueError(f"{where}: batch norm has {bn.num_features} features, expected conv's {conv.out_channels}")
    if conv.weight.is_meta or bn.running_mean.is_meta:
        raise ValueError(f"{where}: parameters are on the meta device: there are no values to fold")
    with torch.no_grad():
        mean = bn.running_mean.double()
        var = bn.running_var.double() + bn.eps
        gamma = bn.weight.double() if bn.weight is not None else torch.ones_like(mean)
        beta = bn.bias.double() if bn.bias is not None else torch.zeros_like(mean)
        stats = {"running_mean": mean, "running_var + eps": var, "weight": gamma, "bias": beta}
        for name, value in stats.items():
            if not bool(torch.isfinite(value).all()):
                raise ValueError(f"{where}: batch norm {name} has non-finite entries; cannot fold")
        if not bool((var > 0).all()):
            raise ValueError(f"{where}: batch norm running_var + eps must be positive, min is {var.min().item()}")
        scale = gamma / var.sqrt()  # (C_out,)
        bias = conv.bias.double() if conv.bias is not None else torch.zeros_like(mean)
        fused = copy.deepcopy(conv)  # same geometry, device and dtype; no re-initialisation
        weight = conv.weight * scale.to(conv.weight.dtype).reshape(-1, 1, 1, 1)  # (C_out, C_in/groups, kH, kW)
        fused.weight = nn.Parameter(weight, requires_grad=conv.weight.requires_grad)
        fused.bias = nn.Parameter(
            ((bias - mean) * scale + beta).to(conv.weight.dtype), requires_grad=fused.weight.requires_grad
        )
    return fused


class FusedBlock(nn.Module):
    """A plain block with its batch norms folded: ``relu_(se(conv_K(... relu_(conv_1(x)))))``; an anti-aliasing
    layer ``aa`` after the ReLU of conv ``alias_after`` (1-based; 0: none), copied unchanged."""

    def __init__(self, convs: list[nn.Module], se: nn.Module | None = None, aa: nn.Module | None = None,
                 alias_after: int = 0) -> None:  # fmt: skip
        super().__init__()
        for i, conv in enumerate(convs, 1):
            self.add_module(f"conv{i}", conv)  # the unfused block's names: conv1 .. convK
        self._hidden = tuple(convs[:-1])
        self._last = convs[-1]
        self.se = se if se is not None else nn.Identity()  # squeeze-and-excitation, copied unchanged
        self.aa = aa if aa is not None else nn.Identity()
        self.alias_after = alias_after if aa is not None else 0

    def branch(self, x: Tensor) -> Tensor:
        """The folded residual branch, without the last ReLU."""
        for i, conv in enumerate(self._hidden, 1):
            x = torch.relu_(conv(x))  # (N, C_i, H_i, W_i)
            if i == self.alias_after:
                x = self.aa(x)  # the block's stride, after the strided conv's ReLU
        return self.se(self._last(x))  # (N, C_out, H/s, W/s)

    def forward(self, x: Tensor) -> Tensor:
        return torch.relu_(self.branch(x))


class FusedResidualBlock(FusedBlock):
    """A residual block with its batch norms folded: ``relu_(branch(x) + downsample(x))``."""

    def __init__(self, convs: list[nn.Module], downsample: nn.Module, se: nn.Module | None = None,
                 aa: nn.Module | None = None, alias_after: int = 0) -> None:  # fmt: skip
        super().__init__(convs, se, aa, alias_after)
        self.downsample = downsample  # nn.Identity, ZeroPadShortcut, or one folded 1x1 conv

    def forward(self, x: Tensor) -> Tensor:
        out = self.branch(x)  # (N, C_out, H/s, W/s)
        out += self.downsample(x)  # the shortcut, same shape
        return torch.relu_(out)


class FusedResNet(nn.Module):
    """The inference-only network :func:`fuse_for_inference` returns; ``spec`` is the source model's spec."""

    def __init__(self, source: ResNet, stem: nn.Module, layers: list[list[FusedBlock]], channels_last: bool) -> None:
        super().__init__()
        self.spec = source.spec
        self.in_channels = source.in_channels
        self.num_classes = source.num_classes
        self.channels_last = channels_last
        self.conv1 = stem
        self.maxpool = copy.deepcopy(source.maxpool)
        self.layer_names = source.layer_names
        for layer_name, blocks in zip(self.layer_names, layers, strict=True):
            self.add_module(layer_name, nn.Sequential(*blocks))
        self._layers = tuple(getattr(self, name) for name in self.layer_names)
        self.avgpool = copy.deepcopy(source.avgpool)
        self.fc = copy.deepcopy(source.fc)
        self.requires_grad_(False)
        self.eval()
        if channels_last:
            self.to(memory_format=torch.channels_last)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"{self.spec.name} (fused): expected input of shape (N, {self.in_channels}, H, W), got {tuple(x.shape)}"
            )
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)  # one copy of the input; every conv then stays NHWC
        x = self.maxpool(torch.relu_(self.conv1(x)))  # stem: (N, C1, H/4, W/4) on ImageNet
        for layer in self._layers:
            x = layer(x)  # (N, C_stage, H_stage, W_stage)
        x = torch.flatten(self.avgpool(x), 1)  # (N, C_last)
        return self.fc(x)  # (N, num_classes)


def _check_relu(module: nn.Module, where: str) -> None:
    if type(module) is not nn.ReLU:
        raise ValueError(f"{where}: expected nn.ReLU (the fused path applies relu_), got {type(module).__name__}")


def _check_no_hooks(model: nn.Module) -> None:
    for name, module in model.named_modules():
        if module._forward_hooks or module._forward_pre_hooks:
            raise ValueError(
                f"{name or 'model'}: has forward hooks; the fused copy has different modules and would drop them"
            )


def _shortcut(module: nn.Module, where: str) -> nn.Module:
    if type(module) is nn.Identity:
        return nn.Identity()
    if type(module) is ZeroPadShortcut:
        return copy.deepcopy(module)
    if type(module) is nn.Sequential and len(module) == 2:
        return fold_conv_bn(module[0], module[1], f"{where}.0/1")
    if type(module) is nn.Sequential and len(module) == 3 and type(module[0]) in (nn.AvgPool2d, nn.Identity, BlurPool):
        # ResNet-D's average pool, or an anti-aliased projection's blur, before the stride-1 conv
        return nn.Sequential(copy.deepcopy(module[0]), fold_conv_bn(module[1], module[2], f"{where}.1/2"))
    raise ValueError(
        f"{where}: expected nn.Identity, ZeroPadShortcut, nn.Sequential(Conv2d, BatchNorm2d) or "
        f"nn.Sequential(AvgPool2d or BlurPool, Conv2d, BatchNorm2d), got {module!r}"
    )


def _fold_block(block: nn.Module, where: str) -> FusedBlock:
    # Exact types: a subclass may override forward, and folding its convs would silently change what it computes.
    if not isinstance(block, ResidualBlock | PlainBlock) or type(block) not in (ResidualBlock, PlainBlock):
        raise ValueError(f"{where}: expected a ResidualBlock or PlainBlock, got {type(block).__name__}")
    _check_relu(block.relu, f"{where}.relu")
    convs = [
        _fold_selective(getattr(block, f"conv{i}"), f"{where}.conv{i}") if i == block.selective
        else fold_conv_bn(getattr(block, f"conv{i}"), getattr(block, f"bn{i}"), f"{where}.conv{i}/bn{i}")
        for i in range(1, block.num_convs + 1)
    ]  # fmt: skip
    se = copy.deepcopy(block.se) if block.has_se else None
    aa = copy.deepcopy(block.aa) if block.alias_after else None
    if isinstance(block, ResidualBlock):
        return FusedResidualBlock(convs, _shortcut(block.downsample, f"{where}.downsample"), se, aa, block.alias_after)
    return FusedBlock(convs, se, aa, block.alias_after)


def _fold_selective(unit: nn.Module, where: str) -> nn.Module:
    """A selective-kernel unit with each path's batch norm folded into its conv and the attention's into
    ``fc_reduce`` (each then an identity).  Its output, a weighted sum of ReLU outputs with positive weights, is
    never negative: the block's ``relu_`` after it changes nothing."""
    if type(unit) is not SelectiveKernelUnit:
        raise ValueError(f"{where}: expected a SelectiveKernelUnit, got {type(unit).__name__}")
    fused = copy.deepcopy(unit)
    for p, path in enumerate(fused.path_modules):
        _check_relu(path.relu, f"{where}.paths.{p}.relu")
        path.conv = fold_conv_bn(path.conv, path.bn, f"{where}.paths.{p}.conv/bn")
        path.bn = nn.Identity()
    attn = fused.attn
    _check_relu(attn.relu, f"{where}.attn.relu")
    attn.fc_reduce = fold_conv_bn(attn.fc_reduce, attn.bn, f"{where}.attn.fc_reduce/bn")
    attn.bn = nn.Identity()
    return fused


def _fold_stem(model: ResNet) -> nn.Module:
    """The stem's conv-BN pairs folded, as the layout plan lists them; a deep stem's inner ReLUs kept in place."""
    stem = [layer for layer in layout_plan(model.spec, model.min_input_size).stem if layer.kind in ("conv", "bn")]
    folded: list[nn.Module] = []
    for conv, bn in zip(stem[::2], stem[1::2], strict=True):
        if folded:
            folded.append(nn.ReLU(inplace=True))
        where = f"{conv.name}/{bn.name}"
        folded.append(fold_conv_bn(model.get_submodule(conv.name), model.get_submodule(bn.name), where))
    return folded[0] if len(folded) == 1 else nn.Sequential(*folded)


def fuse_for_inference(model: ResNet, channels_last: bool = True) -> FusedResNet:
    """An inference-only copy of ``model`` with every batch norm folded into the conv before it.

    The copy computes what ``model.eval()`` computes (batch norm with its running statistics), whatever mode
    ``model`` is in; ``model`` itself is not modified.  The copy has no batch norm, applies ReLU in place, has
    ``requires_grad=False`` on every parameter (so no autograd graph is recorded) and, with ``channels_last=True``
    (the default), keeps weights and activations in NHWC, the layout oneDNN's CPU convolutions and cuDNN's tensor
    core kernels prefer.  Parameter names follow the source's for convs (``layer1.0.conv1.weight``, now with a
    ``.bias``); a projection shortcut becomes one conv named ``downsample``.

    Raises ``TypeError`` for anything but a :class:`~resnet_spec.models.ResNet`, and ``ValueError`` for what it
    cannot fold faithfully (see the module docstring); it never skips a module silently.
    """
    if not isinstance(model, ResNet):
        raise TypeError(f"fuse_for_inference: expected a resnet_spec ResNet, got {type(model).__name__}")
    if model.spec.order != "post":
        raise ValueError(
            f"fuse_for_inference: {model.spec.label} is a pre-activation network: each batch norm precedes its conv "
            "with a ReLU between them, so no conv can absorb it"
        )
    if model.spec.group_norm is not None:
        raise ValueError(
            f"fuse_for_inference: {model.spec.label} normalises with GroupNorm, by each image's own statistics, "
            "which no conv can absorb"
        )
    _check_no_hooks(model)
    _check_relu(model.relu, "relu")
    stem = _fold_stem(model)
    layers = []
    for layer_name in model.layer_names:
        layer = getattr(model, layer_name)
        layers.append([_fold_block(block, f"{layer_name}.{i}") for i, block in enumerate(layer)])
    return FusedResNet(model, stem, layers, channels_last)
