"""Build: the network of a table entry as an ``nn.Module``, its backbone features and its fused inference form.

Every layer comes from :func:`resnet_spec.spec.layout_plan`; nothing here knows a depth, a width or a repeat list.

* :mod:`~resnet_spec.models._resnet`: :func:`build` and :class:`ResNet` (its blocks and shortcuts);
* :mod:`~resnet_spec.models._features`: :class:`FeatureExtractor`, chosen rows as feature maps;
* :mod:`~resnet_spec.models._fused`: :func:`fuse_for_inference`, BN folded into the convs for deployment.
"""

from ._features import FeatureExtractor
from ._fused import FusedResNet, fold_conv_bn, fuse_for_inference
from ._resnet import (
    BlurPool,
    EfficientChannelAttention,
    PlainBlock,
    PreActBlock,
    ResidualBlock,
    ResNet,
    SqueezeExcitation,
    StandardizedConv2d,
    ZeroFilledMaxPool,
    ZeroPadShortcut,
    build,
)

__all__ = [
    "BlurPool",
    "EfficientChannelAttention",
    "FeatureExtractor",
    "FusedResNet",
    "PlainBlock",
    "PreActBlock",
    "ResNet",
    "ResidualBlock",
    "SqueezeExcitation",
    "StandardizedConv2d",
    "ZeroFilledMaxPool",
    "ZeroPadShortcut",
    "build",
    "fold_conv_bn",
    "fuse_for_inference",
]
