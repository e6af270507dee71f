"""Testing: the verdict inside a test suite.

* :func:`assert_conforms`: one assertion, the CLI's verdict (``AssertionError`` with the report when not);
* :mod:`resnet_spec.testing.plugin`: the pytest plugin (``pytest --resnet-impl TARGET``), which collects the shipped
  suite (one test per table row and per finding) and the zoo audit (``pytest --resnet-audit SOURCE``).

Importing this package (pytest does, for the plugin, in every session of a project that has resnet-spec installed)
does not import torch: :func:`assert_conforms` loads on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._assert import assert_conforms, load_target_spec

__all__ = ["REPORT_FORMATS", "assert_conforms", "load_target_spec"]

# The audit's report files (``--resnet-audit-report FILE``, ``resnet-spec audit --format``): suffix -> format.
REPORT_FORMATS = {".txt": "text", ".md": "markdown", ".json": "json", ".html": "html"}


def __getattr__(name: str) -> Any:
    if name not in ("assert_conforms", "load_target_spec"):
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module("._assert", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
