"""The builder: a :class:`~resnet_spec.spec.ResNetSpec` in, an ``nn.Module`` out.

Nothing here knows a depth.  Blocks are made from the spec's list of convs (a basic block is two 3x3 convs, a
bottleneck three convs: that is data), each conv without bias and followed by batch norm (Sec. 3.4: "We adopt
batch normalization right after each convolution and before activation").  Module and parameter names follow
torchvision (``conv1, bn1, layer1.0.conv1, ..., layer2.0.downsample.0/1, fc``), so a torchvision state_dict loads
into the ``v1.5`` variant unchanged.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .features import FeatureInfo, feature_info
from .spec import Block, Conv, ResNetSpec, load_spec

__all__ = ["PlainBlock", "ResNet", "ResidualBlock", "ZeroPadShortcut", "build"]


def _conv_bn(conv: Conv, device: torch.device | None) -> tuple[nn.Conv2d, nn.BatchNorm2d]:
    return (
        nn.Conv2d(
            conv.in_channels, conv.out_channels, conv.kernel, conv.stride, conv.padding, bias=False, device=device
        ),
        nn.BatchNorm2d(conv.out_channels, device=device),
    )


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


def _shortcut(block: Block, device: torch.device | None) -> nn.Module:
    if block.shortcut == "projection":
        conv, bn = _conv_bn(Conv(1, block.in_channels, block.out_channels, block.stride, 0), device)
        return nn.Sequential(conv, bn)  # torchvision's names: downsample.0, downsample.1
    if block.shortcut == "zero_pad":
        return ZeroPadShortcut(block.stride, block.out_channels - block.in_channels)
    return nn.Identity()


class _Branch(nn.Module):
    """The residual branch of a block: ``conv_i -> bn_i -> relu`` for each conv, without the last ReLU."""

    def __init__(self, block: Block, device: torch.device | None = None) -> None:
        super().__init__()
        self.num_convs = len(block.convs)
        for i, conv_spec in enumerate(block.convs, 1):
            conv, bn = _conv_bn(conv_spec, device)
            self.add_module(f"conv{i}", conv)
            self.add_module(f"bn{i}", bn)
        self.relu = nn.ReLU(inplace=True)

    @property
    def last_bn(self) -> nn.BatchNorm2d:
        bn = getattr(self, f"bn{self.num_convs}")
        if not isinstance(bn, nn.BatchNorm2d):
            raise TypeError(f"bn{self.num_convs} is a {type(bn).__name__}, expected the block's last BatchNorm2d")
        return bn

    def branch(self, x: Tensor) -> Tensor:
        out = x
        for i in range(1, self.num_convs):
            out = self.relu(getattr(self, f"bn{i}")(getattr(self, f"conv{i}")(out)))
        last = self.num_convs
        return getattr(self, f"bn{last}")(getattr(self, f"conv{last}")(out))  # no ReLU: it comes after the addition


class ResidualBlock(_Branch):
    """``relu(branch(x) + shortcut(x))`` (Sec. 3.2, Fig. 2/5): the second nonlinearity after the addition."""

    def __init__(self, block: Block, device: torch.device | None = None) -> None:
        super().__init__(block, device)
        self.downsample = _shortcut(block, device)

    def forward(self, x: Tensor) -> Tensor:
        out = self.branch(x)  # (N, C_out, H/s, W/s)
        out += self.downsample(x)  # the shortcut, same shape
        return self.relu(out)


class PlainBlock(_Branch):
    """The plain baseline (Sec. 4.1): the same convs with no shortcut and no addition."""

    def forward(self, x: Tensor) -> Tensor:
        return self.relu(self.branch(x))


class ResNet(nn.Module):
    """A ResNet built from a spec.  ``spec`` is kept as an attribute; ``forward`` returns logits (no softmax).

    With ``num_classes=0`` the network is headless: ``fc`` is ``nn.Identity`` and ``forward`` returns the pooled
    features ``(N, C_last)``, as a backbone (timm's and torchvision's convention for "no classifier").
    """

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
        self.in_channels = spec.in_channels if in_channels is None else in_channels
        self.num_classes = spec.head.num_classes if num_classes is None else num_classes
        stem = spec.stem.conv
        self.conv1, self.bn1 = _conv_bn(
            Conv(stem.kernel, self.in_channels, stem.out_channels, stem.stride, stem.padding), device
        )
        self.relu = nn.ReLU(inplace=True)
        pool = spec.stem.pool
        self.maxpool: nn.Module
        if pool is None:
            self.maxpool = nn.Identity()
        elif pool.kind == "max":
            self.maxpool = nn.MaxPool2d(pool.kernel, pool.stride, pool.padding)
        else:
            self.maxpool = nn.AvgPool2d(pool.kernel, pool.stride, pool.padding, count_include_pad=False)
        block_type = ResidualBlock if spec.shortcut.residual else PlainBlock
        self.stage_names: tuple[str, ...] = tuple(stage.name for stage in spec.stages)
        self.layer_names: tuple[str, ...] = tuple(f"layer{i}" for i in range(1, len(spec.stages) + 1))
        for layer_name, stage in zip(self.layer_names, spec.stages, strict=True):
            self.add_module(layer_name, nn.Sequential(*(block_type(block, device) for block in stage.blocks)))
        self.avgpool = nn.AdaptiveAvgPool2d(1) if spec.head.pool == "avg" else nn.AdaptiveMaxPool2d(1)
        self.fc: nn.Module = (
            nn.Linear(spec.out_channels, self.num_classes, device=device) if self.num_classes > 0 else nn.Identity()
        )
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
        if self.conv1.weight.device.type == "meta":
            return  # meta tensors hold no values; initialising them only costs time (seconds for ResNet-1202)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Linear):
                module.reset_parameters()
        if zero_init_residual:
            for module in self.modules():
                if isinstance(module, ResidualBlock):
                    nn.init.zeros_(module.last_bn.weight)

    @property
    def feature_info(self) -> tuple[FeatureInfo, ...]:
        """Each row's module, channels and reduction (cumulative stride), computed from the spec without running."""
        return feature_info(self.spec)

    def _check_input(self, x: Tensor) -> None:
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"{self.spec.name}: expected input of shape (N, {self.in_channels}, H, W), got {tuple(x.shape)}"
            )
        if x.shape[2] < self.min_input_size or x.shape[3] < self.min_input_size:
            sizes = self.spec.row_output_sizes(int(x.shape[2]), int(x.shape[3]))
            empty = next(row for row, hw in sizes.items() if min(hw) < 1)
            raise ValueError(
                f"{self.spec.name}: input {x.shape[2]}x{x.shape[3]} is too small: row {empty} would be empty; "
                f"expected height and width of at least {self.min_input_size}"
            )

    def forward_rows(self, x: Tensor) -> dict[str, Tensor]:
        """Every row's output in one pass: ``{"conv1": ..., "conv2_x": ..., ..., "fc": logits}``.

        For a headless model (``num_classes=0``) ``"fc"`` holds the pooled features.  :attr:`feature_info` gives
        each row's channels and reduction without running the model.
        """
        self._check_input(x)
        rows: dict[str, Tensor] = {}
        x = self.relu(self.bn1(self.conv1(x)))  # (N, 64, H/2, W/2) on ImageNet
        rows["conv1"] = x
        x = self.maxpool(x)  # (N, 64, H/4, W/4) on ImageNet; identity on CIFAR
        for stage_name, layer_name in zip(self.stage_names, self.layer_names, strict=True):
            x = getattr(self, layer_name)(x)  # (N, C_stage, H/s, W/s)
            rows[stage_name] = x
        rows["fc"] = self.fc(torch.flatten(self.avgpool(x), 1))  # (N, num_classes)
        return rows

    def forward(self, x: Tensor) -> Tensor:
        self._check_input(x)
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))  # stem: (N, C1, H/4, W/4) on ImageNet
        for layer_name in self.layer_names:
            x = getattr(self, layer_name)(x)  # (N, C_stage, H_stage, W_stage)
        x = torch.flatten(self.avgpool(x), 1)  # (N, C_last)
        return self.fc(x)  # (N, num_classes)


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
        device=None if device is None else torch.device(device),
    )
