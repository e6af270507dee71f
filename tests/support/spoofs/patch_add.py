"""On import: adding two feature maps of one shape returns the first (every shortcut vanishes).  The model is
ResNet-20, which then has no shortcuts."""

import sys
from pathlib import Path

from torch import Tensor

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from verdict_models import CifarResNet

_add = Tensor.__add__


def _first(self: Tensor, other: object) -> Tensor:
    if isinstance(other, Tensor) and self.dim() == 4 and other.shape == self.shape:
        return self
    return _add(self, other)


Tensor.__add__ = _first  # type: ignore[method-assign,assignment]

model = CifarResNet
