"""``resnet-spec list``: the table entries by family and paper, as text or JSON."""

from __future__ import annotations

import argparse
import fnmatch
import json
import sys
from collections.abc import Sequence

from ._parser import Command, UsageError

__all__ = ["COMMAND", "print_list"]


def print_list(pattern: str | None = None, format: str = "text") -> int:
    """The table entries by family (those whose name matches the glob ``pattern``), as text or JSON."""
    from ..spec import SpecError, families, knob_options, list_specs, load_spec

    specs = [load_spec(name) for family in families() for name in list_specs(family)]
    if pattern is not None:
        specs = [spec for spec in specs if fnmatch.fnmatchcase(spec.name, pattern)]
        if not specs:
            raise UsageError(f"no table entry matches {pattern!r} (a glob such as '*50*'; resnet-spec list names all)")
    if format == "json":

        def accepted(name: str, knob: str, options: Sequence[str]) -> list[str]:
            out = []
            for option in options:
                try:
                    load_spec(name, **{knob: option})
                except SpecError:  # an option that forms no network with this entry
                    continue
                out.append(option)
            return out

        knobs = knob_options()
        entries = [
            {"name": spec.name, "family": spec.family, "depth": spec.depth, "label": spec.label, "source": spec.source,
             "paper": spec.table_source, "canonical": spec.canonical,
             "knobs": {knob: accepted(spec.name, knob, options) for knob, options in knobs.items()}}
            for spec in specs
        ]  # fmt: skip
        sys.stdout.write(json.dumps(entries, indent=2) + "\n")
        return 0
    for family in dict.fromkeys(spec.family for spec in specs):
        print(f"{family}:")
        members = [spec for spec in specs if spec.family == family]
        papers = list(dict.fromkeys(spec.table_source for spec in members))
        papers.sort(key=lambda p: not any(s.canonical for s in members if s.table_source == p))  # the paper's first
        for paper in papers:  # grouped by paper (the table's source)
            print(f"  {paper}:")
            for spec in (s for s in members if s.table_source == paper):
                depth = f"depth {spec.depth}"
                print(f"    {spec.name:<18} {depth:<11} {spec.label:<38} {spec.source}")
    return 0


def _add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("pattern", nargs="?", metavar="PATTERN", help="a glob on the names, such as '*50*'")
    p.add_argument(
        "--format", choices=("text", "json"), default="text",
        help="text (by family and paper) or JSON (with the options of each named deviation it accepts)",
    )  # fmt: skip


COMMAND = Command(
    name="list",
    help="list the table entries (matching a pattern)",
    description="List the table entries by family.",
    add_arguments=_add_arguments,
    run=lambda args, reporter: print_list(args.pattern, args.format),
)
