"""The builder: a :class:`~resnet_spec.spec.ResNetSpec` in, an ``nn.Module`` out, made from its layout plan.

Nothing here knows a depth or a module name: :func:`~resnet_spec.spec.layout_plan` lists every layer with its name
and shape, and the builder makes one module per planned layer (convs without bias, each with its batch norm: Sec.
3.4, "We adopt batch normalization right after each convolution and before activation").  The block classes hold
the wiring: post-activation (He et al. 2015) and pre-activation (He et al. 2016) residual blocks and the plain block.
Names follow torchvision, so a torchvision state_dict loads into the ``v1.5`` variant unchanged.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..spec import FeatureInfo, Layer, PlannedBlock, ResNetSpec, binomial_filter, feature_info, layout_plan, load_spec

__all__ = [
    "BlurPool", "EfficientChannelAttention", "PlainBlock", "PreActBlock", "ResNet", "ResidualBlock",
    "SelectiveKernelUnit", "SqueezeExcitation", "StandardizedConv2d", "ZeroFilledMaxPool", "ZeroPadShortcut", "build",
]  # fmt: skip


class StandardizedConv2d(nn.Conv2d):
    """A conv with weight standardisation (Qiao et al. 2019; BiT, Kolesnikov et al. 2020): each output channel's
    weights centred and scaled to unit variance, ``(w - mean) / sqrt(var + eps)``, before they are applied."""

    def __init__(self, *args: object, eps: float, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        var, mean = torch.var_mean(self.weight, dim=(1, 2, 3), keepdim=True, unbiased=False)  # (C_out, 1, 1, 1)
        weight = (self.weight - mean) / torch.sqrt(var + self.eps)  # (C_out, C_in / groups, k, k)
        return self._conv_forward(x, weight, self.bias)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, eps={self.eps}"  # type: ignore[no-untyped-call]


class ZeroFilledMaxPool(nn.MaxPool2d):
    """A max pool whose padding is zeros, not -inf: BiT's stem pads the conv's map with zeros, then pools."""

    def forward(self, x: Tensor) -> Tensor:
        p = int(self.padding)  # type: ignore[arg-type]
        x = F.pad(x, (p, p, p, p))  # (N, C, H + 2p, W + 2p), zeros around
        return F.max_pool2d(x, self.kernel_size, self.stride, 0, self.dilation, self.ceil_mode)


class BlurPool(nn.Module):
    """Anti-aliased downsampling (Zhang 2019): each channel blurred by the binomial filter of ``taps`` taps in each
    direction (normalised to sum 1: 1 2 1 / 4 for 3), after a reflected padding (``padding`` before the map,
    ``padding + extra_end`` after it: an even filter's), then subsampled by ``stride``.  The filter is fixed,
    computed in the forward: the module holds no tensor (timm's ``BlurPool2d`` holds it as a buffer it does not save,
    Zhang's ``BlurPool`` as one it saves)."""

    def __init__(self, channels: int, taps: int, stride: int, padding: int, extra_end: int = 0) -> None:
        super().__init__()
        self.channels, self.taps, self.stride, self.padding = channels, taps, stride, padding
        self.extra_end = extra_end
        self.coefficients = binomial_filter(taps)

    def forward(self, x: Tensor) -> Tensor:
        row = torch.tensor(self.coefficients, dtype=x.dtype, device=x.device)
        weight = (row[:, None] * row[None, :]).expand(self.channels, 1, self.taps, self.taps)
        p, q = self.padding, self.padding + self.extra_end
        x = F.pad(x, [p, q, p, q], mode="reflect")  # (N, C, H + p + q, W + p + q)
        return F.conv2d(x, weight, stride=self.stride, groups=self.channels)  # (N, C, H', W')

    def extra_repr(self) -> str:
        end = f", extra_end={self.extra_end}" if self.extra_end else ""
        return f"{self.channels}, taps={self.taps}, stride={self.stride}, padding={self.padding}{end}"


class ZeroPadShortcut(nn.Module):
    """Option A (Sec. 3.3): the input subsampled by ``stride``, extra channels appended as zeros; no parameters."""

    def __init__(self, stride: int, extra_channels: int) -> None:
        super().__init__()
        self.stride = stride
        self.extra_channels = extra_channels

    def forward(self, x: Tensor) -> Tensor:
        x = x[:, :, :: self.stride, :: self.stride]  # (N, C, ceil(H/s), ceil(W/s)), as a stride-s "same" conv
        return F.pad(x, (0, 0, 0, 0, 0, self.extra_channels))  # (N, C + extra, H', W'), zeros appended

    def extra_repr(self) -> str:
        return f"stride={self.stride}, extra_channels={self.extra_channels}"


class SqueezeExcitation(nn.Module):
    """Hu et al. 2018: ``x * sigmoid(fc2(relu(fc1(mean(x)))))``, fc1/fc2 1x1 convs with bias (made from the plan)."""

    fc1: nn.Conv2d
    relu: nn.ReLU
    fc2: nn.Conv2d

    def forward(self, x: Tensor) -> Tensor:
        s = x.mean((2, 3), keepdim=True)  # (N, C, 1, 1): squeeze
        s = self.fc2(self.relu(self.fc1(s)))  # (N, C, 1, 1): excitation
        return x * s.sigmoid()  # (N, C, H, W): channel-wise scale


class EfficientChannelAttention(nn.Module):
    """Wang et al. 2020 (ECA): ``x * sigmoid(conv(mean(x)))``, conv a 1-D conv of kernel k across the channels, one
    input and one output channel, no bias (made from the plan)."""

    conv: nn.Conv1d

    def forward(self, x: Tensor) -> Tensor:
        s = x.mean((2, 3)).unsqueeze(1)  # (N, 1, C): the squeezed channels as one line
        s = self.conv(s)  # (N, 1, C): each channel's weight from its k neighbours
        return x * s.sigmoid().view(x.shape[0], -1, 1, 1)  # (N, C, H, W): channel-wise scale


class _SelectiveKernelPath(nn.Module):
    """One path of a selective-kernel unit: its modules (made from the plan); the unit's forward runs them."""

    conv: nn.Module
    bn: nn.Module
    relu: nn.Module


class _SelectiveKernelAttention(nn.Module):
    """A selective-kernel unit's fuse-and-select layers (made from the plan); the unit's forward runs them."""

    fc_reduce: nn.Module
    bn: nn.Module
    relu: nn.Module
    fc_select: nn.Module


class SelectiveKernelUnit(nn.Module):
    """Li et al. 2019 (SKNet, Fig. 1): each path ``relu(bn(conv(x)))`` (on its part of the input where the unit
    splits it), the paths' sum squeezed to ``s`` (N, C, 1, 1), ``fc_select(relu(bn(fc_reduce(s))))`` a softmax
    across the paths for each channel, and the paths' sum weighted by it (children made from the plan)."""

    paths: nn.Sequential  # each path: conv, bn, relu
    attn: _SelectiveKernelAttention

    def __init__(self, split_input: bool = False) -> None:
        super().__init__()
        self.split_input = split_input

    def forward(self, x: Tensor) -> Tensor:
        n = len(self.paths)
        parts = x.chunk(n, 1) if self.split_input else (x,) * n  # each (N, C_in / n or C_in, H, W)
        outs = [path.relu(path.bn(path.conv(part))) for path, part in zip(self.path_modules, parts, strict=True)]
        stacked = torch.stack(outs, 1)  # (N, n, C, H', W')
        s = stacked.sum(1).mean((2, 3), keepdim=True)  # (N, C, 1, 1): fuse
        a = self.attn.fc_select(self.attn.relu(self.attn.bn(self.attn.fc_reduce(s))))  # (N, n * C, 1, 1)
        a = a.view(x.shape[0], n, -1, 1, 1).softmax(1)  # (N, n, C, 1, 1): each channel's weights across the paths
        return (stacked * a).sum(1)  # (N, C, H', W'): select

    @property
    def path_modules(self) -> list[_SelectiveKernelPath]:
        """The paths, in order."""
        return [cast(_SelectiveKernelPath, path) for path in self.paths]

    def extra_repr(self) -> str:
        return "split_input=True" if self.split_input else ""


def _make(layer: Layer, device: torch.device | None) -> nn.Module:
    """The module of one planned layer."""
    if layer.kind == "conv" and layer.detail == "channels":  # ECA's conv across the channels
        return nn.Conv1d(1, 1, layer.kernel, padding=layer.padding, bias=False, device=device)
    if layer.kind == "conv":
        c_in, c_out = layer.in_shape[0], layer.out_shape[0]
        window = (c_in, c_out, layer.kernel, layer.stride, layer.padding, layer.dilation)
        if layer.weight_standardization is not None:
            return StandardizedConv2d(*window, groups=layer.groups, bias=layer.bias, device=device,
                                      eps=layer.weight_standardization)  # fmt: skip
        return nn.Conv2d(*window, groups=layer.groups, bias=layer.bias, device=device)
    if layer.kind == "bn" and layer.detail == "group":
        return nn.GroupNorm(layer.groups, layer.out_shape[0], device=device)
    if layer.kind == "bn":
        return nn.BatchNorm2d(layer.out_shape[0], device=device)
    if layer.kind == "relu":
        return nn.ReLU(inplace=True)
    if layer.kind == "pool" and layer.detail == "max":
        pool = ZeroFilledMaxPool if layer.zero_fill else nn.MaxPool2d
        return pool(layer.kernel, layer.stride, layer.padding, ceil_mode=layer.ceil_mode)
    if layer.kind == "pool" and layer.detail == "blur":
        return BlurPool(layer.in_shape[0], layer.kernel, layer.stride, layer.padding, layer.extra_end)
    if layer.kind == "pool":
        return nn.AvgPool2d(
            layer.kernel, layer.stride, layer.padding, ceil_mode=layer.ceil_mode, count_include_pad=False
        )
    if layer.kind == "global_pool":
        return nn.AdaptiveAvgPool2d(1) if layer.detail == "avg" else nn.AdaptiveMaxPool2d(1)
    if layer.kind == "fc":
        return nn.Linear(layer.in_shape[0], layer.out_shape[0], device=device)
    if layer.kind == "zero_pad":
        return ZeroPadShortcut(layer.stride, layer.out_shape[0] - layer.in_shape[0])
    if layer.kind == "identity":
        return nn.Identity()
    raise ValueError(f"{layer.name}: the builder has no module for layer kind {layer.kind!r}")


_Containers = dict[str, Callable[[], nn.Module]]  # a parent module's name -> what makes it (its class)


def _place(root: nn.Module, name: str, layer: Layer, device: torch.device | None, containers: _Containers) -> None:
    """Make ``layer``'s module at dotted ``name`` under ``root`` (once: the block's ReLU is shared).  A missing parent
    is of the class ``containers`` names for it, else an nn.Sequential where its child is numbered."""
    *parents, leaf = name.split(".")
    node = root
    for i, part in enumerate(parents):
        child = node._modules.get(part)
        if child is None:
            numbered = [*parents, leaf][i + 1].isdigit()
            child = containers[part]() if part in containers else nn.Sequential() if numbered else nn.Module()
            node.add_module(part, child)
        node = child
    if leaf not in node._modules:
        node.add_module(leaf, _make(layer, device))


def _fill(
    root: nn.Module,
    layers: tuple[Layer, ...],
    prefix: str,
    device: torch.device | None,
    containers: _Containers | None = None,
) -> None:
    for layer in layers:
        if layer.module:
            _place(root, layer.name[len(prefix) :], layer, device, containers or {})


class _Block(nn.Module):
    """A block's modules, made from its planned layers (names relative to the block)."""

    relu: nn.Module
    downsample: nn.Module
    aa: nn.Module  # where the block has an anti-aliasing layer
    se: SqueezeExcitation | EfficientChannelAttention  # where the block has a channel gate

    def __init__(self, planned: PlannedBlock, device: torch.device | None = None) -> None:
        super().__init__()
        spec = planned.spec
        self.num_convs = len(spec.convs)
        self.alias_after = spec.anti_alias_at + 1 if spec.anti_alias is not None else 0  # conv number
        self.has_se = spec.gated
        gate = EfficientChannelAttention if spec.eca_kernel is not None else SqueezeExcitation
        containers: _Containers = {"se": gate}
        # the conv number a selective-kernel unit stands in for (its own BN and ReLU inside); 0: none
        self.selective = spec.selective_at + 1 if spec.selective_kernel is not None else 0
        if spec.selective_kernel is not None:
            containers[f"conv{self.selective}"] = partial(SelectiveKernelUnit, spec.selective_kernel.split_input)
            containers["attn"] = _SelectiveKernelAttention
            # paths.0, paths.1, ...: the block's only parents named by a number (its other numbered modules are leaves)
            containers.update({str(p): _SelectiveKernelPath for p in range(len(spec.selective_kernel.dilations))})
        _fill(self, planned.layers, planned.module + ".", device, containers)

    def _se(self, x: Tensor) -> Tensor:
        return self.se(x) if self.has_se else x

    @property
    def last_bn(self) -> nn.BatchNorm2d:
        """The BN whose output feeds the addition (post-activation) or the last BN of the branch (pre-activation)."""
        bn = getattr(self, f"bn{self.num_convs}")
        if not isinstance(bn, nn.BatchNorm2d):
            raise TypeError(f"bn{self.num_convs} is a {type(bn).__name__}, expected the block's last BatchNorm2d")
        return bn

    def branch(self, x: Tensor) -> Tensor:
        """``conv_i -> bn_i -> relu`` for each conv, without the last ReLU (it comes after the addition)."""
        out = x
        for i in range(1, self.num_convs):
            conv = getattr(self, f"conv{i}")
            out = conv(out) if i == self.selective else self.relu(getattr(self, f"bn{i}")(conv(out)))
            if i == self.alias_after:
                out = self.aa(out)  # anti-aliasing: the block's stride, after the conv's BN and ReLU
        last = self.num_convs
        return self._se(getattr(self, f"bn{last}")(getattr(self, f"conv{last}")(out)))


class ResidualBlock(_Block):
    """``relu(branch(x) + shortcut(x))`` (Sec. 3.2, Fig. 2/5): the second nonlinearity after the addition."""

    def forward(self, x: Tensor) -> Tensor:
        out = self.branch(x)  # (N, C_out, H/s, W/s)
        out += self.downsample(x)  # the shortcut, same shape
        return self.relu(out)


class PlainBlock(_Block):
    """The plain baseline (Sec. 4.1): the same convs with no shortcut and no addition."""

    def forward(self, x: Tensor) -> Tensor:
        return self.relu(self.branch(x))


class PreActBlock(_Block):
    """He et al. 2016, Fig. 4(e): ``x + branch(relu(bn1(x)))``, each conv preceded by BN-ReLU, nothing after the sum.

    A projection (or zero-pad) shortcut reads the pre-activated input, as timm's ``PreActBottleneck``; an identity
    shortcut reads the block's input.  Every pre-activation block has a shortcut: the tables refuse a plain
    pre-activation net (it is the post-activation one).
    """

    bn1: nn.Module
    conv1: nn.Module

    def __init__(self, planned: PlannedBlock, device: torch.device | None = None) -> None:
        super().__init__(planned, device)
        self.project = planned.spec.shortcut not in ("identity", "none")

    def branch(self, x: Tensor) -> Tensor:
        out = self.conv1(x)  # x: the pre-activated input
        for i in range(2, self.num_convs + 1):
            out = getattr(self, f"conv{i}")(self.relu(getattr(self, f"bn{i}")(out)))
        return self._se(out)

    def forward(self, x: Tensor) -> Tensor:
        pre = self.relu(self.bn1(x))  # (N, C_in, H, W)
        out = self.branch(pre)  # (N, C_out, H/s, W/s)
        return out + self.downsample(pre if self.project else x)


def _block(planned: PlannedBlock, device: torch.device | None) -> nn.Module:
    if planned.spec.order == "pre":
        return PreActBlock(planned, device)
    return (PlainBlock if planned.spec.shortcut == "none" else ResidualBlock)(planned, device)


class ResNet(nn.Module):
    """A ResNet built from a spec.  ``spec`` is kept as an attribute; ``forward`` returns logits (no softmax).

    With ``num_classes=0`` the network is headless: ``fc`` is ``nn.Identity`` and ``forward`` returns the pooled
    features ``(N, C_last)``, as a backbone (timm's and torchvision's convention for "no classifier").
    """

    # Made from the layout plan (names as the plan gives them): the stem's pool, the global pool, the classifier.
    maxpool: nn.Module
    avgpool: nn.Module
    fc: nn.Module
    relu: nn.Module

    def __init__(
        self,
        spec: ResNetSpec,
        num_classes: int | None = None,
        in_channels: int | None = None,
        zero_init_residual: bool = False,
        device: torch.device | None = None,
    ) -> None:
        super().__init__()
        self.spec = spec
        self.min_input_size = spec.min_input_size()  # smaller inputs leave a row empty; checked in forward
        # an anti-aliasing layer on a branch may round otherwise than its shortcut: such sizes are refused too
        self._rounded_branches = any(block.anti_alias is not None for block in spec.blocks)
        # a batch norm of a pooled (1x1) map: a selective-kernel unit's attention
        self._pooled_norms = any(block.selective_kernel is not None for block in spec.blocks)
        self._refusals: dict[tuple[int, int], str] = {}
        plan = layout_plan(spec, self.min_input_size, num_classes=num_classes, in_channels=in_channels)
        self.in_channels = plan.in_channels
        self.num_classes = plan.num_classes
        _fill(self, plan.stem, "", device)
        # The stem's modules in order (a deep stem's conv1 is one nn.Sequential), and the head's before the pool.
        self.stem_modules: tuple[str, ...] = _top_level(plan.stem)
        self.stage_names: tuple[str, ...] = tuple(row for row, _ in plan.stage_modules)
        self.layer_names: tuple[str, ...] = tuple(module for _, module in plan.stage_modules)
        for _, module in plan.stage_modules:
            blocks = [_block(b, device) for b in plan.blocks if b.module.split(".")[0] == module]
            self.add_module(module, nn.Sequential(*blocks))
        _fill(self, plan.head, "", device)
        self.head_modules: tuple[str, ...] = _top_level(plan.head)[:-2]  # a pre-activation net's final BN-ReLU
        self.reset_parameters(zero_init_residual)

    def reset_parameters(self, zero_init_residual: bool = False) -> None:
        """He initialisation (fan_out) of convs, BN weight 1 and bias 0, as torchvision and the paper's [13].

        ``zero_init_residual`` sets each residual block's last BN weight to 0, so every block starts as identity
        (Goyal et al. 2017); it is refused for plain networks, where it would zero every block's output.
        """
        if zero_init_residual and not self.spec.shortcut.residual:
            raise ValueError(
                f"zero_init_residual=True needs shortcuts, but {self.spec.label} is a plain network: "
                "every block's output would be zero"
            )
        if next(self.parameters()).device.type == "meta":
            return  # meta tensors hold no values; initialising them only costs time (seconds for ResNet-1202)
        for module in self.modules():
            if isinstance(module, nn.Conv2d) and module.bias is None:
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Linear | nn.Conv2d):
                module.reset_parameters()
        if zero_init_residual:
            for module in self.modules():
                if isinstance(module, ResidualBlock | PreActBlock):
                    nn.init.zeros_(module.last_bn.weight)

    @property
    def feature_info(self) -> tuple[FeatureInfo, ...]:
        """Each row's module, channels and reduction (cumulative stride), computed from the spec without running."""
        return feature_info(self.spec)

    def _refusal(self, height: int, width: int) -> str:
        """Why the network is not defined at ``height`` x ``width`` ("" where it is): an anti-aliasing pool that
        rounds down on a branch whose shortcut rounds up (timm's AvgPool2d(2)) meets it at even sizes only."""
        if (height, width) not in self._refusals:
            try:
                layout_plan(self.spec, (height, width))
                self._refusals[(height, width)] = ""
            except ValueError as e:
                self._refusals[(height, width)] = str(e).removeprefix(f"{self.spec.label}: ")
        return self._refusals[(height, width)]

    def _check_input(self, x: Tensor) -> None:
        if not isinstance(x, Tensor):
            raise TypeError(f"{self.spec.name}: expected input a torch.Tensor (N, C, H, W), got {type(x).__name__}")
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"{self.spec.name}: expected input of shape (N, {self.in_channels}, H, W), got {tuple(x.shape)}"
            )
        weight = next(self.parameters())
        if not x.is_floating_point():
            raise ValueError(
                f"{self.spec.name}: expected a floating-point input (the model's dtype, {weight.dtype}), got input "
                f"dtype {x.dtype}; convert it, e.g. x.float() / 255"
            )
        autocast = x.device.type in ("cpu", "cuda") and torch.is_autocast_enabled(x.device.type)
        if x.dtype != weight.dtype and not autocast:  # autocast casts inputs and weights itself
            raise ValueError(
                f"{self.spec.name}: input dtype {x.dtype} does not match the model's parameters ({weight.dtype}); "
                f"cast one to the other: model.to({x.dtype}) or x.to({weight.dtype})"
            )
        if x.shape[2] < self.min_input_size or x.shape[3] < self.min_input_size:
            sizes = self.spec.row_output_sizes(int(x.shape[2]), int(x.shape[3]))
            empty = next(row for row, hw in sizes.items() if min(hw) < 1)
            raise ValueError(
                f"{self.spec.name}: input {x.shape[2]}x{x.shape[3]} is too small: row {empty} would be empty; "
                f"expected height and width of at least {self.min_input_size}"
            )
        if self._rounded_branches:
            refusal = self._refusal(int(x.shape[2]), int(x.shape[3]))
            if refusal:
                raise ValueError(f"{self.spec.name}: {refusal}")
        if self.training:
            # Batch norm in training mode needs more than one value per channel; the last stage's maps are the
            # smallest any of them sees, but for a selective-kernel unit's, which normalises a pooled 1x1 map.
            h, w = self.spec.row_output_sizes(int(x.shape[2]), int(x.shape[3]))[self.stage_names[-1]]
            where = self.stage_names[-1]
            if self._pooled_norms:
                h, w, where = 1, 1, "each selective-kernel unit's attention"
            if x.shape[0] * h * w < 2:
                raise ValueError(
                    f"{self.spec.name}: training mode needs more than one value per channel in every batch norm, "
                    f"and a batch of {x.shape[0]} at {x.shape[2]}x{x.shape[3]} leaves {x.shape[0]}x{h}x{w} at "
                    f"{where}; use a batch of 2 or more{'' if self._pooled_norms else ', a larger input'}, or "
                    "model.eval()"
                )

    def _stem(self, x: Tensor) -> Tensor:
        for name in self.stem_modules[:-1]:  # conv(s), BN, ReLU; the pool is the last stem module
            x = getattr(self, name)(x)
        return x  # (N, C1, H/2, W/2) on ImageNet

    def _head(self, x: Tensor) -> Tensor:
        for name in self.head_modules:
            x = getattr(self, name)(x)  # a pre-activation net's final BN-ReLU
        return self.fc(torch.flatten(self.avgpool(x), 1))  # (N, num_classes)

    def forward_row(self, row: str, x: Tensor) -> Tensor:
        """One row of Table 1 on ``x``, the previous row's output (the network's input for ``conv1``): the stem's
        convs for ``conv1``, the stem pool and the stage for the first stage, the stage for the others, the head
        (pool and fc) for ``fc``."""
        if row == "conv1":
            return self._stem(x)
        if row == "fc":
            return self._head(x)
        if row not in self.stage_names:
            raise ValueError(f"{self.spec.name}: expected a row of {list(self.spec.rows)}, got {row!r}")
        index = self.stage_names.index(row)
        if index == 0:
            x = self.maxpool(x)
        return getattr(self, self.layer_names[index])(x)

    def forward_rows(self, x: Tensor) -> dict[str, Tensor]:
        """Every row's output in one pass: ``{"conv1": ..., "conv2_x": ..., ..., "fc": logits}``.

        For a headless model (``num_classes=0``) ``"fc"`` holds the pooled features.  :attr:`feature_info` gives
        each row's channels and reduction without running the model.
        """
        self._check_input(x)
        rows: dict[str, Tensor] = {}
        x = self._stem(x)
        rows["conv1"] = x
        x = self.maxpool(x)  # (N, C1, H/4, W/4) on ImageNet; identity on CIFAR
        for stage_name, layer_name in zip(self.stage_names, self.layer_names, strict=True):
            x = getattr(self, layer_name)(x)  # (N, C_stage, H/s, W/s)
            rows[stage_name] = x
        rows["fc"] = self._head(x)
        return rows

    def forward(self, x: Tensor) -> Tensor:
        self._check_input(x)
        x = self.maxpool(self._stem(x))  # stem: (N, C1, H/4, W/4) on ImageNet
        for layer_name in self.layer_names:
            x = getattr(self, layer_name)(x)  # (N, C_stage, H_stage, W_stage)
        return self._head(x)  # (N, num_classes)


def _top_level(layers: tuple[Layer, ...]) -> tuple[str, ...]:
    names: list[str] = []
    for layer in layers:
        top = layer.name.split(".")[0]
        if layer.module and (not names or names[-1] != top):
            names.append(top)
    return tuple(names)


def build(
    spec: ResNetSpec | str,
    num_classes: int | None = None,
    in_channels: int | None = None,
    zero_init_residual: bool = False,
    device: torch.device | str | None = None,
    **overrides: str,
) -> ResNet:
    """Build the network a spec describes.

    ``spec`` is a :class:`ResNetSpec` or anything :func:`load_spec` takes (``overrides`` then go to it).
    ``num_classes`` and ``in_channels`` default to the table's (1000 and 3 for ImageNet, 10 and 3 for CIFAR-10);
    ``num_classes=0`` builds a headless backbone whose ``forward`` returns the pooled features (``fc`` is identity).
    ``device="meta"`` builds without allocating memory, for shape and count checks of large networks.
    """
    if isinstance(spec, ResNetSpec):
        if overrides:
            raise TypeError(f"build: overrides {sorted(overrides)} need a spec name or path, not a loaded ResNetSpec")
    else:
        spec = load_spec(spec, **overrides)
    for name, value, minimum, meaning in (
        ("num_classes", num_classes, 0, "an integer >= 0 (0: headless, forward returns pooled features)"),
        ("in_channels", in_channels, 1, "a positive integer"),
    ):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < minimum):
            raise ValueError(f"build: expected {name} {meaning}, got {value!r}")
    return ResNet(
        spec,
        num_classes=num_classes,
        in_channels=in_channels,
        zero_init_residual=zero_init_residual,
        device=None if device is None else _device(device),
    )


def _device(device: object) -> torch.device:
    """``device`` as a torch.device that exists on this machine.  Raises ValueError naming it."""
    expected = "build: expected device a torch.device or a name such as 'cpu', 'cuda', 'cuda:1', 'meta'"
    if isinstance(device, bool) or not isinstance(device, (torch.device, str, int)):
        raise ValueError(f"{expected}, got {device!r} ({type(device).__name__})")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise ValueError(f"{expected}, got {device!r}") from None
    if resolved.type == "cuda":
        available = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if available == 0 or (resolved.index or 0) >= available:
            found = "no CUDA device" if available == 0 else f"{available} CUDA device(s)"
            raise ValueError(f"build: expected device {device!r} ({resolved}) to exist; this machine has {found}")
    return resolved
