"""``resnet-spec count``: parameters and counted operations of a table entry, per row (arithmetic, no model)."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass

from ..sandbox import phase, run_contained
from ._exit import Reporter
from ._parser import (
    Command,
    SpecRequest,
    add_knob_arguments,
    add_limits,
    add_spec_arguments,
    resolve_spec,
    spec_request,
)

__all__ = ["COMMAND", "CountRequest", "count_job"]


def _add_arguments(p: argparse.ArgumentParser) -> None:
    from ..counts import CONVENTIONS, UNITS

    add_spec_arguments(p)
    add_knob_arguments(p)
    p.add_argument(
        "--ops", default="paper", choices=tuple(CONVENTIONS), help="counting convention (default: the paper's)"
    )
    p.add_argument("--unit", default="macs", choices=UNITS, help="macs (default) or flops (2 per multiply-add)")
    p.add_argument("--format", choices=("text", "json"), default="text")
    add_limits(p)


@dataclass(frozen=True)
class CountRequest:
    """A table entry and the convention to count it under (the contained job's input)."""

    spec: SpecRequest
    ops: str
    unit: str
    format: str


def count_job(request: CountRequest) -> str:
    """``count``'s output: the rows of the table entry with their parameters and counted operations."""
    from ..counts import count

    with phase("table"):
        spec = resolve_spec(request.spec)
    with phase("count"):
        counts = count(spec, request.spec.input_size, ops=request.ops, unit=request.unit)
    if request.format == "json":
        data = {
            "spec": spec.label,
            "input_size": list(counts.input_size),
            "convention": counts.convention,
            "unit": counts.unit,
            "rows": [{"row": r.row, "params": r.params, "ops": r.ops} for r in counts.rows.values()],
            "params": counts.params,
            "ops": counts.total,
        }
        return json.dumps(data, indent=2) + "\n"
    h, w = counts.input_size
    unit = counts.unit if counts.unit == "flops" else "MACs"
    lines = [f"{spec.label} at {h}x{w}, {counts.convention} convention ({unit}, one image)", ""]
    widths = (8, 12, 16)
    lines.append(f"{'row':<{widths[0]}} {'params':>{widths[1]}} {unit:>{widths[2]}}")
    for r in [*counts.rows.values()]:
        lines.append(f"{r.row:<{widths[0]}} {r.params:>{widths[1]},} {r.ops:>{widths[2]},}")
    lines.append(f"{'total':<{widths[0]}} {counts.params:>{widths[1]},} {counts.total:>{widths[2]},}")
    return "\n".join(lines) + "\n"


def _run(args: argparse.Namespace, reporter: Reporter) -> int:
    request = CountRequest(SpecRequest(**spec_request(args)), args.ops, args.unit, args.format)
    result = run_contained(count_job, request, timeout=args.timeout, memory=args.memory)
    sys.stdout.write(result.value)
    return 0


COMMAND = Command(
    name="count",
    help="parameters and operations of a table entry, per row (arithmetic, no model)",
    description="Parameters and counted operations of a table entry, per row of Table 1, for one image.",
    add_arguments=_add_arguments,
    run=_run,
)
