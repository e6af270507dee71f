#!/usr/bin/env python3
"""Compare a ResNet with the paper's table, row by row: `python tools/compare.py --depth 101`.

A thin wrapper over resnet_spec.diff: trace the model on the meta device, read its Table 1 view, diff it against
the table entry, run it with the reference's weights (functional equivalence), print the report.  Exit status: 0
conformant, 1 not conformant, 2 undecided or a usage or load error.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

EPILOG = """\
examples:
  python tools/compare.py --depth 101                 # our ResNet-101 against Table 1 (v1, option B)
  python tools/compare.py --depth 50 --impl torchvision.models:resnet50              # exits 1: stride on the 3x3
  python tools/compare.py --depth 50 --variant v1.5 --impl torchvision.models:resnet50   # exits 0
  python tools/compare.py --depth 34 --shortcut A --format markdown
  python tools/compare.py --depth 56                  # the CIFAR-10 family of Sec. 4.2 (option A)
  python tools/compare.py --depth 18 --impl path/to/my_resnet.py:build --input-size 160 --format json
  python tools/compare.py --list

exit status: 0 conformant, 1 not conformant, 2 undecided or a usage or load error.
"""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="compare.py",
        description="Diff a ResNet (ours from the tables, or --impl yours) against the paper's layer table.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--depth", type=int, help="weighted layers: 18, 34, 50, 101, 152 (ImageNet), 20 ... 1202 (CIFAR)")
    p.add_argument("--arch", help="a table entry by name instead of --depth (see --list), or FILE.toml[:NAME]")
    p.add_argument("--family", help="the table family when a depth is in several (see --list)")
    p.add_argument("--variant", help="stride placement: v1 (the paper, stride on the first 1x1) or v1.5 (on the 3x3)")
    shortcut = p.add_mutually_exclusive_group()
    shortcut.add_argument("--shortcut", help="shortcut option A, B or C (Sec. 3.3); default: the table's")
    shortcut.add_argument("--plain", action="store_true", help="the plain network: no shortcuts")
    p.add_argument("--input-size", type=int, nargs="+", metavar=("H", "W"), help="input height [and width]")
    p.add_argument("--impl", metavar="TARGET", help="package.module:callable or path/to/file.py:callable")
    p.add_argument(
        "--headless",
        action="store_true",
        help="expect a backbone: the stem and the stages, no pool-and-fc head (a model returning feature maps)",
    )
    p.add_argument("--format", choices=("text", "markdown", "json"), default="text")
    p.add_argument("--list", action="store_true", help="list the table entries and exit")
    return p


def _fail(message: str) -> int:
    print(f"compare.py: error: {message}", file=sys.stderr)
    return 2


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    # Imported here so that --help answers at once.
    from resnet_spec import SpecError, build, families, list_specs, load_spec
    from resnet_spec.diff import best_matches, compare_model
    from resnet_spec.report import dumps, render, to_json
    from resnet_spec.subject import SubjectError, make_subject
    from resnet_spec.trace import TraceError

    if args.list:
        for family in families():
            print(f"{family}:")
            for name in list_specs(family):
                spec = load_spec(name)
                print(f"  {name:<12} depth {spec.depth:<5} {spec.label:<36} {spec.source}")
        return 0

    overrides = {}
    if args.variant:
        overrides["variant"] = args.variant
    if args.shortcut or args.plain:
        overrides["shortcut"] = "none" if args.plain else args.shortcut
    try:
        if args.arch and args.depth is not None:
            return _fail("give --depth or --arch, not both")
        if args.arch:
            spec = load_spec(args.arch, **overrides)
        elif args.depth is not None:
            spec = load_spec(_name_for_depth(args.depth, args.family), **overrides)
        else:
            return _fail("give --depth N (or --arch NAME, or --list); see --help")
    except (SpecError, LookupError) as e:
        return _fail(str(e).strip("'\""))

    size = None
    if args.input_size:
        if len(args.input_size) > 2 or min(args.input_size) < 1:
            return _fail(f"--input-size takes H or H W, positive integers; got {args.input_size}")
        size = (args.input_size[0], args.input_size[-1])
        too_small = [row for row, hw in spec.row_output_sizes(*size).items() if min(hw) < 1]
        if too_small:
            return _fail(f"--input-size {size[0]}x{size[1]} is too small for {spec.name}: row {too_small[0]} is empty")

    notes = []
    try:
        if args.impl:
            model, note = make_subject(args.impl)
            subject = args.impl
            if note:
                notes.append(note)
        else:
            model = build(spec, device="meta")
            subject = f"resnet_spec {spec.name}"
        comparison = compare_model(model, spec, size, headless=args.headless)
    except (SubjectError, TraceError) as e:
        return _fail(str(e))

    structural = comparison.verdict == "not conformant" and comparison.mismatches
    best = (
        best_matches(comparison.found, spec.family, comparison.input_size, headless=args.headless) if structural else []
    )
    if args.format == "json":
        data = to_json(comparison, subject, best)
        data["notes"] = notes + data["notes"]
        sys.stdout.write(dumps(data))
    else:
        sys.stdout.write(render(comparison, subject, best, markdown=args.format == "markdown"))
        for note in notes:
            print(f"note: {note}")
    return comparison.exit_status


def _name_for_depth(depth: int, family: str | None) -> str:
    """The residual table entry with ``depth`` weighted layers (in ``family`` when given)."""
    from resnet_spec import families, residual_depths

    by_family = {f: residual_depths(f) for f in ([family] if family is not None else families())}  # LookupError
    matches = {f: depths[depth] for f, depths in by_family.items() if depth in depths}
    if not matches:
        known = sorted({d for depths in by_family.values() for d in depths})
        raise LookupError(f"no table entry has depth {depth}; known depths: {', '.join(map(str, known))}")
    if len(matches) > 1:
        raise LookupError(f"depth {depth} is in several families ({', '.join(sorted(matches))}): pass --family")
    return next(iter(matches.values()))


if __name__ == "__main__":
    sys.exit(main())
