"""On import: every batch norm passes its input through (frozen at identity).  The model is ResNet-20."""

import sys
from pathlib import Path

import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from verdict_models import CifarResNet

F.batch_norm = lambda input, *args, **kwargs: input
nn.BatchNorm2d.forward = lambda self, input: input  # type: ignore[method-assign]

model = CifarResNet
