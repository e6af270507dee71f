"""Deprecated: the counts moved to :mod:`resnet_spec.counts` (``from resnet_spec.counts import count``).

The names importers used keep working for one release, with a ``DeprecationWarning``.  Importing this module does
not import torch.
"""

from __future__ import annotations

import importlib
import warnings
from typing import Any

_MOVED = ("CONVENTIONS", "OPS", "UNITS", "Convention", "Counts", "Operator", "RowCount", "count", "operators")


def __getattr__(name: str) -> Any:
    if name not in _MOVED:
        raise AttributeError(f"module 'resnet_spec.counting' has no attribute {name!r}")
    warnings.warn(f"resnet_spec.counting.{name} moved to resnet_spec.counts.{name}; import it from there",
                  DeprecationWarning, stacklevel=2)  # fmt: skip
    return getattr(importlib.import_module("resnet_spec.counts"), name)
