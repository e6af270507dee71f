"""Deprecated: the comparison moved to :mod:`resnet_spec.verify` (``from resnet_spec.verify import compare_model``).

The names importers used keep working for one release, with a ``DeprecationWarning``.
"""

from __future__ import annotations

import importlib
import warnings
from typing import Any

_MOVED = {
    "Comparison": "resnet_spec.verify",
    "Mismatch": "resnet_spec.verify",
    "RowView": "resnet_spec.verify",
    "Value": "resnet_spec.verify",
    "align_blocks": "resnet_spec.verify",
    "best_matches": "resnet_spec.verify",
    "compare_model": "resnet_spec.verify",
}


def __getattr__(name: str) -> Any:
    if name not in _MOVED:
        raise AttributeError(f"module 'resnet_spec.diff' has no attribute {name!r}")
    warnings.warn(f"resnet_spec.diff.{name} moved to {_MOVED[name]}.{name}; import it from there",
                  DeprecationWarning, stacklevel=2)  # fmt: skip
    return getattr(importlib.import_module(_MOVED[name]), name)
