"""Compare a ResNet with the paper's table, row by row: `python tools/compare.py --depth 101`.

The same as ``resnet-spec compare`` (:mod:`resnet_spec.cli`): trace the model on the meta device, read its Table 1
view, diff it against the table entry, print the report.  Exit status: 0 conformant, 1 not conformant, 2 anything
else.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from resnet_spec.cli import run_command


def main(argv: Sequence[str] | None = None) -> int:
    """``compare.py ARGS`` (``resnet-spec compare ARGS``): the exit status."""
    return run_command("compare", argv, prog="compare.py")


if __name__ == "__main__":
    sys.exit(main())
