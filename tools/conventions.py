#!/usr/bin/env python3
"""Why 3.86 vs 4.09 vs 4.11 vs 8.18: one network, several counting conventions, side by side.

The same as ``resnet-spec conventions`` (resnet_spec.cli, resnet_spec.conventions):
`python tools/conventions.py [--depth 50 101] [--format markdown]`.  Exit status: 0 every measured figure agrees
with its convention, 1 one does not, 2 anything else (one line on stderr).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    from resnet_spec.cli import conventions_main

    return conventions_main(argv, prog="conventions.py")


if __name__ == "__main__":
    sys.exit(main())
