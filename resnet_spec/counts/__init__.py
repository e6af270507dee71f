"""Count: parameters and operations of a table entry, analytic (from the plan, torch-free) and measured.

* :mod:`~resnet_spec.counts._analytic`: :func:`count` under a named convention (the paper's, fvcore's, ...), per row;
* :mod:`~resnet_spec.counts._measured`: :func:`measure`, the same figures from fvcore, FlopCounterMode and
  torchinfo on a built model (loads torch on first use);
* :mod:`~resnet_spec.counts._peer_table`: our counts under each convention beside each peer's measurement.

Importing this package does not import torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._analytic import CONVENTIONS, OPS, UNITS, Convention, Counts, Operator, RowCount, count, input_hw, operators
from ._peer_table import ConventionRow, convention_rows, render_conventions

if TYPE_CHECKING:
    from ._measured import COUNTERS, Measured, materialize, measure, row_of_module

__all__ = [
    "CONVENTIONS",
    "COUNTERS",
    "OPS",
    "UNITS",
    "Convention",
    "ConventionRow",
    "Counts",
    "Measured",
    "Operator",
    "RowCount",
    "convention_rows",
    "count",
    "input_hw",
    "materialize",
    "measure",
    "operators",
    "render_conventions",
    "row_of_module",
]

_MEASURED = ("COUNTERS", "Measured", "materialize", "measure", "row_of_module")  # torch-backed: loaded on first use


def __getattr__(name: str) -> Any:
    if name not in _MEASURED:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module("._measured", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
