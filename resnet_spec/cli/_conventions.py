"""``resnet-spec conventions``: why 3.86 vs 4.09 vs 4.11 vs 8.18 -- one network, several counting
conventions, our analytic figures beside each peer's measurement (exit 1 where one disagrees)."""

from __future__ import annotations

import argparse

from ._exit import Reporter
from ._parser import Command, UsageError, int_in_range

__all__ = ["COMMAND"]

_EPILOG = """\
columns (multiply-adds unless said otherwise; x 1e9 unless --exact):
  paper        Table 1's FLOPs row as printed (multiply-adds of conv and fc, one decimal)
  conv+fc      analytic: conv and fc multiply-adds, the paper's convention (= torchvision `_ops` for v1.5)
  fvcore set   analytic under fvcore's rules: + batch norm 2 per element + global average pool 1 per input element
  torchinfo    analytic under torchinfo's rules: + fc bias + 2*C per batch norm layer
  FLOPs        analytic: 2 x conv+fc (one multiply-add = two floating-point operations)
  fvcore / FlopCounterMode / torchinfo (measured): what each tool reports for the built model, batch 1
  ok           every measured figure equals the analytic one of its convention

examples:
  {prog}                       # ResNet-18 ... 152, v1 and v1.5, at 224x224
  {prog} --depth 50 --format markdown
  {prog} --depth 152 --variant v1 --exact
  {prog} --no-measure          # analytic columns only (arithmetic, instant)
"""


MAX_MEASURED_INPUT = 1024  # conventions measures real forward passes (fvcore): beyond this, hours and many GB


def _add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--depth", type=int_in_range(1), nargs="+", help="some of 18 34 50 101 152 (default: all)")
    from ..spec import variant_names  # torch-free: --help still answers at once

    p.add_argument("--variant", nargs="+", choices=variant_names(), default=list(variant_names()))
    p.add_argument(
        "--input-size",
        type=int_in_range(1, MAX_MEASURED_INPUT),
        default=224,
        help=f"square input size (default 224, at most {MAX_MEASURED_INPUT})",
    )
    p.add_argument("--format", choices=("text", "markdown"), default="text")
    p.add_argument("--exact", action="store_true", help="exact integers instead of x 1e9")
    p.add_argument("--no-measure", action="store_true", help="analytic columns only (no model is built)")


def _run(args: argparse.Namespace, reporter: Reporter) -> int:
    from ..counts import convention_rows, render_conventions
    from ..spec import residual_depths

    known = residual_depths("imagenet")
    depths = args.depth or list(known)
    unknown = [d for d in depths if d not in known]
    if unknown:
        raise UsageError(f"unknown depth(s) {unknown}; expected some of {list(known)}")
    rows = convention_rows(depths, args.variant, args.input_size, measured=not args.no_measure)
    print(render_conventions(rows, args.format, args.exact, args.input_size))
    return 0 if all(r.agrees is not False for r in rows) else 1


COMMAND = Command(
    name="conventions",
    help="our counts under each convention next to fvcore, FlopCounterMode and torchinfo",
    description="Our analytic counts under each convention next to fvcore, FlopCounterMode and torchinfo.",
    epilog=_EPILOG,
    add_arguments=_add_arguments,
    run=_run,
)
