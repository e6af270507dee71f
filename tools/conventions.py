"""Why 3.86 vs 4.09 vs 4.11 vs 8.18: one network, several counting conventions, side by side.

The same as ``resnet-spec conventions`` (:mod:`resnet_spec.cli`): `python tools/conventions.py [--depth 50 101]
[--format markdown]`.  Exit status: 0 every measured figure agrees with its convention, 1 one does not, 2 anything
else (one line on stderr).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from resnet_spec.cli import run_command


def main(argv: Sequence[str] | None = None) -> int:
    """``conventions.py ARGS`` (``resnet-spec conventions ARGS``): the exit status."""
    return run_command("conventions", argv, prog="conventions.py")


if __name__ == "__main__":
    sys.exit(main())
