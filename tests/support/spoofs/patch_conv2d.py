"""On import: every 2-d convolution returns zeros (the functional form, torch's, and nn.Conv2d's).  The model is
ResNet-20, which computes nothing then: a checker whose reference ran here would compute nothing alike."""

import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from verdict_models import CifarResNet

_conv2d = F.conv2d


def _zeros(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):  # type: ignore[no-untyped-def]
    return _conv2d(input, weight, bias, stride, padding, dilation, groups) * 0


F.conv2d = _zeros
torch.conv2d = _zeros
nn.Conv2d._conv_forward = lambda self, input, weight, bias: _zeros(  # type: ignore[method-assign]
    input, weight, bias, self.stride, self.padding, self.dilation, self.groups
)

model = CifarResNet
