"""The ``resnet-spec`` command (also ``python -m resnet_spec``): audit, compare, count, conventions, identify, list.

Also the entry points of the tools in a checkout (``tools/compare.py`` is ``resnet-spec compare``,
``tools/conventions.py`` is ``resnet-spec conventions``) and :func:`guarded`, the catch-all the other tools use.

Exit status, for every subcommand (a contract scripts rely on):

* 0: a complete verdict "conformant" or "equivalent" (``compare``), or the job done (``list``, ``count``;
  ``conventions``: every measured figure agrees with its convention; ``identify``: at least one entry fits);
* 1: a complete verdict "not conformant" (``conventions``: a figure disagrees; ``identify``: no entry fits);
* 2: anything else (an undecided verdict, a wrong argument, a table that does not load, a model that cannot be
  imported, built or traced, one that exits, loops past ``--timeout`` or allocates past ``--memory``, an internal
  error), always with one line on stderr, and under ``--format json`` a JSON object
  ``{"error": ..., "phase": ..., "notes": [...]}`` on stdout (an undecided verdict prints its report instead).

Everything ``compare`` runs (loading the table, importing and building the model, tracing it, the comparison) runs
in a child process (:func:`resnet_spec.contain.run_contained`): what the model's code prints goes to stderr (or to
the JSON's notes), never into the report.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import fnmatch
import functools
import io
import itertools
import json
import math
import os
import re
import sys
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

from .contain import (
    DEFAULT_TIMEOUT,
    ContainedError,
    default_memory,
    mark_pool_free,
    parse_size,
    phase,
    run_contained,
)

__all__ = [
    "ArgumentParser",
    "UsageError",
    "compare_main",
    "conventions_main",
    "float_in_range",
    "guarded",
    "int_in_range",
    "main",
]

COMPARE_EPILOG = """\
examples:
  {prog} --depth 101                 # our ResNet-101 against Table 1 (v1, option B)
  {prog} --depth 50 --impl torchvision.models:resnet50              # exits 1: stride on the 3x3
  {prog} --depth 50 --variant v1.5 --impl torchvision.models:resnet50   # exits 0
  {prog} --depth 50 --variant v1.5 --impl "timm:create_model('resnet50d')"
  {prog} --depth 34 --shortcut A --format markdown
  {prog} --depth 56                  # the CIFAR-10 family of Sec. 4.2 (option A)
  {prog} --depth 18 --impl path/to/my_resnet.py:build --input-size 160 --format json

--impl MODULE:EXPRESSION: MODULE is an importable module or a .py file; EXPRESSION is looked up in it and is an
nn.Module, or a callable that returns one (called with no arguments), or a call with arguments, e.g.
  --impl "transformers:ResNetForImageClassification(ResNetConfig(num_labels=1000))"
  --impl "monai.networks.nets:ResNet('bottleneck', [3, 4, 6, 3], [64, 128, 256, 512], spatial_dims=2, \\
          n_input_channels=1, num_classes=1000)" --in-channels 1

exit status: 0 conformant, 1 not conformant, 2 anything else (one line on stderr; under --format json an
{{"error", "phase"}} object on stdout).
"""


class UsageError(Exception):
    """A wrong argument: exit 2 with one line (raised by :class:`ArgumentParser` and by the commands' checks)."""


class ArgumentParser(argparse.ArgumentParser):
    """argparse with one-line errors (raised, so that the caller decides the exit status and the JSON)."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(message + self._did_you_mean(message))

    def _did_you_mean(self, message: str) -> str:
        """A hint for a mistyped flag or choice: the close ones (difflib), or the flag a value belongs to."""
        parsers = [self, *(sub for a in self._actions if isinstance(a, argparse._SubParsersAction)
                           for sub in a.choices.values())]  # fmt: skip
        actions = [a for parser in parsers for a in parser._actions if a.option_strings]
        flags = list(dict.fromkeys(flag for a in actions for flag in a.option_strings if flag.startswith("--")))
        unknown = re.match(r"unrecognized arguments: (.*)", message)
        if unknown:
            hints = []
            for word in unknown.group(1).split():
                close = (
                    difflib.get_close_matches(word.split("=")[0], flags, n=2, cutoff=0.75) if word[:1] == "-" else []
                )
                if close:
                    hints.append(f"{word}: did you mean {' or '.join(close)}?")
            return f" ({'; '.join(hints)})" if hints else ""
        choice = re.match(r"argument (\S+): invalid choice: '([^']*)'", message)
        if choice:
            flag, value = choice.groups()
            own = next((a for a in actions if set(flag.split("/")) & set(a.option_strings)), None)
            close = difflib.get_close_matches(value, [str(c) for c in own.choices or ()], n=2) if own else []
            if close:
                return f"; did you mean {' or '.join(map(repr, close))}?"
            elsewhere = [a.option_strings[-1] for a in actions if a is not own and value in (a.choices or ())]
            if elsewhere:
                return f"; {value!r} is a choice of {' and '.join(elsewhere)}"
        return ""


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("resnet-spec")
    except PackageNotFoundError:
        return "unknown (not installed)"


# ---- argument types: ranges checked where the flag is read --------------------------------------------------------


def int_in_range(minimum: int, maximum: int | None = None) -> Callable[[str], int]:
    """An argparse ``type``: an integer from ``minimum`` to ``maximum`` (inclusive; no upper bound when None)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum or (maximum is not None and value > maximum):
            bound = f"from {minimum} to {maximum}" if maximum is not None else f">= {minimum}"
            raise argparse.ArgumentTypeError(f"expected an integer {bound}, got {value}")
        return value

    return parse


def float_in_range(minimum: float, maximum: float) -> Callable[[str], float]:
    """An argparse ``type``: a finite number from ``minimum`` to ``maximum`` (inclusive)."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not (math.isfinite(value) and minimum <= value <= maximum):
            raise argparse.ArgumentTypeError(f"expected a number from {minimum:g} to {maximum:g}, got {text}")
        return value

    return parse


def _seconds(text: str) -> float | None:
    if text.strip().lower() == "none":
        return None
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds (a positive number) or 'none', got {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"expected seconds (a positive number) or 'none', got {text!r}")
    return value


def _memory(text: str) -> int | str | None:
    if text == "half":
        return text
    try:
        return parse_size(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


# The largest input side a table may ask for on the command line (beyond any real network's).
MAX_INPUT_SIZE = 16384
MAX_IN_CHANNELS = 4096


def _add_spec_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--depth", type=int_in_range(1), help="weighted layers: 18, 34, 50, 101, 152 (ImageNet), 20 ... 1202 (CIFAR)"
    )
    p.add_argument("--arch", help="a table entry by name instead of --depth (see list), or FILE.toml[:NAME]")
    p.add_argument("--family", help="the table family when a depth is in several (see list)")
    p.add_argument("--variant", help="stride placement: v1 (the paper, stride on the first 1x1) or v1.5 (on the 3x3)")
    p.add_argument(
        "--input-size",
        type=int_in_range(1, MAX_INPUT_SIZE),
        nargs="+",
        metavar=("H", "W"),
        help="input height [and width]",
    )


def _compare_parser(prog: str) -> ArgumentParser:
    p = ArgumentParser(
        prog=prog,
        description="Diff a ResNet (ours from the tables, or --impl yours) against the paper's layer table.",
        epilog=COMPARE_EPILOG.format(prog=prog),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_compare_arguments(p)
    return p


def _add_compare_arguments(p: argparse.ArgumentParser) -> None:
    _add_spec_arguments(p)
    shortcut = p.add_mutually_exclusive_group()
    shortcut.add_argument("--shortcut", help="shortcut option A, B or C (Sec. 3.3); default: the table's")
    shortcut.add_argument("--plain", action="store_true", help="the plain network: no shortcuts")
    p.add_argument(
        "--impl",
        metavar="TARGET",
        help="MODULE:EXPRESSION or a model file (.onnx, .pt2, TorchScript, "
        "a checkpoint), the model to check (see below)",
    )
    p.add_argument(
        "--in-channels", type=int_in_range(1, MAX_IN_CHANNELS), help="input channels (default: the table's, 3)"
    )
    p.add_argument(
        "--headless",
        action="store_true",
        help="expect a backbone: the stem and the stages, no pool-and-fc head (a model returning feature maps)",
    )
    p.add_argument(
        "--format", choices=("text", "markdown", "json", "html"), default="text",
        help="text, markdown (a CI summary: what differs), json, or html (one self-contained page, the network drawn)",
    )  # fmt: skip
    p.add_argument(
        "--timeout",
        type=_seconds,
        default=DEFAULT_TIMEOUT,
        metavar="SECONDS",
        help=f"time limit for the whole check (default {DEFAULT_TIMEOUT:g}; 'none': no limit)",
    )
    p.add_argument(
        "--memory",
        type=_memory,
        default="half",
        metavar="SIZE",
        help="memory the check may allocate, e.g. 4G (default: half the physical memory; 'none': no ceiling)",
    )
    p.add_argument("--quiet", "-q", action="store_true", help="print nothing but errors: the exit status says it all")
    p.add_argument("--debug", action="store_true", help="on an error, also show the traceback and the model's output")
    p.add_argument("--list", action="store_true", help="list the table entries and exit")


# ---- compare: the job the child runs ------------------------------------------------------------------------------


@dataclass(frozen=True)
class CompareRequest:
    """What to compare with what, and how to report it (the child's whole input)."""

    arch: str | None
    depth: int | None
    family: str | None
    overrides: tuple[tuple[str, str], ...]
    input_size: tuple[int, int] | None
    impl: str | None
    in_channels: int | None
    format: str
    headless: bool = False  # the subject is a backbone: its head is expected absent
    memory: int | None = None  # the model's process's memory ceiling (bytes; None: this process's own)


@dataclass(frozen=True)
class CompareOutcome:
    """The child's answer: the verdict, and the report as text (text, markdown) or as JSON-ready data."""

    verdict: str  # conformant, equivalent, not conformant, undecided (resnet_spec.verify.Verdict)
    exit_status: int  # 0 conforms, 1 does not, 2 undecided
    why_undecided: str  # one line, where the verdict is undecided
    text: str
    data: dict[str, Any] | None


def _resolve_spec(request: CompareRequest) -> Any:
    from .spec import SpecError, load_spec

    overrides = dict(request.overrides)
    if request.arch is not None:
        name = request.arch
    elif request.depth is not None:
        name = _name_for_depth(request.depth, request.family)
    else:
        raise UsageError("give --depth N (or --arch NAME, or --list); see --help")
    try:
        spec = load_spec(name, **overrides)
    except SpecError as e:
        if e.key_path.startswith("<override "):  # a knob's value: the flag's error, not the table's
            flag = "--" + e.key_path.removeprefix("<override ").removesuffix(">").replace("_", "-")
            raise UsageError(f"argument {flag}: expected {e.expected}, got {e.found!a}") from None
        raise
    if request.in_channels is not None and request.in_channels != spec.in_channels:
        spec = _with_in_channels(spec, request.in_channels)
    if request.input_size is not None:
        h, w = request.input_size
        too_small = [row for row, hw in spec.row_output_sizes(h, w).items() if min(hw) < 1]
        if too_small:
            raise UsageError(f"--input-size {h}x{w} is too small for {spec.name}: row {too_small[0]} is empty")
    return spec


def _with_in_channels(spec: Any, in_channels: int) -> Any:
    """``spec`` for an input of ``in_channels`` channels: conv1 reads them; the paper's figures no longer apply."""
    from .spec import FrozenMapping

    first = dataclasses.replace(spec.stem.convs[0], in_channels=in_channels)
    stem = dataclasses.replace(spec.stem, convs=(first, *spec.stem.convs[1:]))
    return dataclasses.replace(spec, in_channels=in_channels, stem=stem, paper=FrozenMapping({}))


def _name_for_depth(depth: int, family: str | None) -> str:
    """The residual table entry with ``depth`` weighted layers (in ``family`` when given)."""
    from .spec import families, residual_depths

    by_family = {f: residual_depths(f) for f in ([family] if family is not None else families())}  # LookupError
    matches = {f: depths[depth] for f, depths in by_family.items() if depth in depths}
    if not matches:
        known = sorted({d for depths in by_family.values() for d in depths})
        raise UsageError(f"no table entry has depth {depth}; known depths: {', '.join(map(str, known))}")
    if len(matches) > 1:
        raise UsageError(f"depth {depth} is in several families ({', '.join(sorted(matches))}): pass --family")
    return next(iter(matches.values()))


def compare_job(request: CompareRequest) -> CompareOutcome:
    """Everything ``compare`` does, as one call (run contained): load, build or import, compare, render."""
    from .verify import best_matches, compare_model, not_run
    from .verify.report import dumps, render, to_json, undecided_reason

    with phase("table"):
        spec = _resolve_spec(request)
    if request.impl is not None and _is_checkpoint(request.impl):
        return _compare_checkpoint_job(request, spec)
    own = request.impl is None  # the reference network itself: its outputs would be compared with themselves
    if own:
        from .model import build

        with phase("build"):
            model: Any = build(spec, device="meta")
        subject = f"resnet_spec {spec.name}"
    else:
        model = subject = str(request.impl)  # run in a contained process of its own: this one never imports its code
    with phase("trace"):  # the comparison marks its own later phases
        comparison = compare_model(
            model,
            spec,
            request.input_size,
            functional=not own,
            headless=request.headless,
            timeout=None,
            memory=request.memory,
        )  # the model's process: within this one's time limit, with the same memory ceiling
    if own:
        reason = "the subject is the reference network built from this table; --impl checks another model"
        comparison = dataclasses.replace(comparison, equivalence=not_run(spec, reason))
    with phase("report"):
        structural = comparison.verdict == "not conformant" and any(
            m.kind == "structure" for m in comparison.mismatches
        )
        best = (
            best_matches(
                comparison.found,
                spec.family,
                comparison.input_size,
                headless=request.headless,
                inference=comparison.inference_form,
            )
            if structural
            else []
        )
        undecided = undecided_reason(comparison) if comparison.exit_status == 2 else ""
        outcome = functools.partial(CompareOutcome, comparison.verdict.value, comparison.exit_status, undecided)
        if request.format == "json":
            data = to_json(comparison, subject, best)
            return outcome(dumps(data), data)
        if request.format == "html":
            from .verify.html import ReportError, render_html

            try:
                return outcome(render_html(comparison, subject, best), None)
            except ReportError as e:
                raise UsageError(f"--format html: {e}") from None
        return outcome(render(comparison, subject, best, markdown=request.format == "markdown"), None)


def _is_checkpoint(impl: str) -> bool:
    """Whether ``--impl`` names a checkpoint file (tensors by name, no network: judged by its names and shapes)."""
    from pathlib import Path

    from .verify.artifacts import CHECKPOINT_KINDS, ArtifactError, artifact_kind, is_artifact_path

    if not is_artifact_path(impl) or not Path(impl).is_file():
        return False
    try:
        return artifact_kind(impl) in CHECKPOINT_KINDS
    except ArtifactError:  # not a file resnet-spec reads: the model's path says so
        return False


# Flags that mean nothing for a checkpoint (no activations, no input; the stem conv says the input channels).
_CHECKPOINT_IGNORED = (("input_size", "--input-size"), ("headless", "--headless"), ("in_channels", "--in-channels"))


def _compare_checkpoint_job(request: CompareRequest, spec: Any) -> CompareOutcome:
    """``compare --impl CHECKPOINT``: the file's tensors against the entry (never conformant: names and shapes
    cannot show strides, pools or activations).  Markdown is the text report."""
    from .verify.checkpoints import compare_checkpoint, open_checkpoint, render, to_json, undecided_reason

    if request.format == "html":
        with phase("report"):
            raise UsageError("--format html: a checkpoint's report is text, markdown or json (no network to draw)")
    with phase("load"):
        file, tensors = open_checkpoint(str(request.impl))
    with phase("compare"):
        result = compare_checkpoint(tensors, spec)
    notes = [f"{flag} is ignored for a checkpoint: it holds weights, not a network that runs"
             for field, flag in _CHECKPOINT_IGNORED if getattr(request, field)]  # fmt: skip
    why = undecided_reason(result) if result.exit_status == 2 else ""
    outcome = functools.partial(CompareOutcome, result.verdict.value, result.exit_status, why)
    if request.format == "json":
        data = to_json(result, file)
        data["notes"] = [*data["notes"], *notes]
        return outcome(json.dumps(data, indent=2) + "\n", data)
    return outcome(render(result, file) + "".join(f"note: {note}\n" for note in notes), None)


# ---- compare: the parent ------------------------------------------------------------------------------------------

_DIFF_CELL = re.compile(r"(?<=  )DIFF$", re.MULTILINE)


def _colour(text: str) -> str:
    """DIFF cells in red, when stdout is a terminal and NO_COLOR is not set (https://no-color.org)."""
    if os.environ.get("NO_COLOR") or not sys.stdout.isatty():
        return text
    return _DIFF_CELL.sub("\x1b[31mDIFF\x1b[0m", text)


class _Reporter:
    """One entry point's way of failing: one line on stderr, and the JSON error object when asked for JSON."""

    def __init__(self, prog: str, json_wanted: bool, debug: bool) -> None:
        self.prog = prog
        self.json = json_wanted
        self.debug = debug

    def fail(self, message: str, where: str = "arguments", notes: Sequence[str] = (), details: str = "") -> int:
        if self.debug and details:
            sys.stderr.write(details if details.endswith("\n") else details + "\n")
        line = message if where == "arguments" else f"{where}: {message}"
        print(f"{self.prog}: error: {line}", file=sys.stderr)
        if self.json and not isinstance(sys.stdout, _ClosedOutput):
            sys.stdout.write(json.dumps({"error": message, "phase": where, "notes": list(notes)}, indent=2) + "\n")
        return 2


def _json_wanted(argv: Sequence[str]) -> bool:
    args = list(argv)
    return "--format=json" in args or any(pair == ("--format", "json") for pair in itertools.pairwise(args))


def _output_notes(output: str) -> list[str]:
    text = output.strip()
    return [f"output of the checked code (stdout and stderr): {text}"] if text else []


def _output_hint(output: str) -> str:
    lines = [line for line in output.splitlines() if line.strip()]
    if not lines:
        return ""
    last = " ".join(lines[-1].split())
    last = last if len(last) <= 120 else last[:117] + "..."
    return f" [the code wrote {len(lines)} line(s); the last: {last!r}; --debug shows them]"


def _run_compare(args: argparse.Namespace, reporter: _Reporter) -> int:
    if not args.quiet and isinstance(sys.stdout, _ClosedOutput):
        sys.stdout.write("")  # the one-line error now, not after the comparison
    if args.list:
        return _print_list()
    if args.arch is not None and args.depth is not None:
        raise UsageError("give --depth or --arch, not both")
    if args.arch is None and args.depth is None:
        raise UsageError("give --depth N (or --arch NAME, or --list); see --help")
    if args.input_size and len(args.input_size) > 2:
        raise UsageError(f"--input-size takes H or H W, positive integers; got {args.input_size}")
    overrides = []
    if args.variant is not None:
        overrides.append(("variant", args.variant))
    if args.shortcut is not None or args.plain:
        overrides.append(("shortcut", "none" if args.plain else args.shortcut))
    impl = None
    if args.impl is not None:
        from .subject import SubjectError, check_target

        try:
            impl = check_target(args.impl)
        except SubjectError as e:
            raise UsageError(str(e)) from None
    request = CompareRequest(
        arch=args.arch,
        depth=args.depth,
        family=args.family,
        overrides=tuple(overrides),
        input_size=(args.input_size[0], args.input_size[-1]) if args.input_size else None,
        impl=impl,
        in_channels=args.in_channels,
        headless=args.headless,
        format=args.format,
        memory=default_memory() if args.memory == "half" else args.memory,
    )
    result = run_contained(compare_job, request, timeout=args.timeout, memory=args.memory)
    outcome = result.value
    if not args.quiet:
        if outcome.data is not None:
            data = dict(outcome.data)
            data["notes"] = [*data["notes"], *_output_notes(result.output)]
            sys.stdout.write(json.dumps(data, indent=2) + "\n")
        else:
            if result.output:
                sys.stderr.write(result.output if result.output.endswith("\n") else result.output + "\n")
            sys.stdout.write(_colour(outcome.text) if args.format == "text" else outcome.text)
    if outcome.exit_status == 2:  # a report without a verdict: still the one line of every exit 2
        print(f"{reporter.prog}: error: verdict: undecided: {' '.join(outcome.why_undecided.split())}", file=sys.stderr)
    return outcome.exit_status


def _print_list(pattern: str | None = None, format: str = "text") -> int:
    """The table entries by family (those whose name matches the glob ``pattern``), as text or JSON."""
    from .spec import SpecError, families, knob_options, list_specs, load_spec

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


def guarded(prog: str, job: Callable[[], int], argv: Sequence[str] = ()) -> int:
    """Run an entry point's ``job`` under the exit-status contract: its status, or 2 with one line for any error.

    ``argv`` (the entry point's arguments) tells whether JSON was asked for (``--format json``) and ``--debug``.
    Errors of an :class:`ArgumentParser` and :class:`~resnet_spec.contain.ContainedError` are one line too.
    """
    return _guarded(_Reporter(prog, _json_wanted(argv), "--debug" in argv), job)


class _ClosedOutput(io.TextIOBase):
    """Standard output where the process was started with it closed (``cmd >&-``: Python's ``sys.stdout`` is None):
    writing to it is the entry point's one-line error; a job that writes nothing (``compare --quiet``) runs."""

    def write(self, text: str) -> int:
        raise UsageError("standard output is closed: nowhere to write (compare --quiet answers by its exit status)")

    def isatty(self) -> bool:
        return False


def _guarded(reporter: _Reporter, job: Callable[[], int]) -> int:
    """The catch-all of an entry point: anything unexpected is exit 2 with one line (--debug: the traceback)."""
    if sys.stdout is None:
        sys.stdout = _ClosedOutput()
    try:
        return job()
    except UsageError as e:
        return reporter.fail(str(e))
    except ContainedError as e:
        reason = e.reason + ("" if reporter.debug else _output_hint(e.output))
        return reporter.fail(
            reason, e.phase, _output_notes(e.output), (e.output + "\n" + e.details) if reporter.debug else ""
        )
    except KeyboardInterrupt:
        return reporter.fail("interrupted", "run")
    except Exception as e:  # the contract: never a traceback, never exit 1 for an error
        return reporter.fail(
            f"internal error: {type(e).__name__}: {' '.join(str(e).split())}", "run", details=traceback.format_exc()
        )


def compare_main(argv: Sequence[str] | None = None, prog: str = "resnet-spec compare") -> int:
    """``resnet-spec compare ARGS`` (and ``tools/compare.py ARGS``): the exit status."""
    if argv is None:  # the process's own command line: it has computed nothing yet (see contain.mark_pool_free)
        mark_pool_free()
    argv = list(sys.argv[1:] if argv is None else argv)
    reporter = _Reporter(prog, _json_wanted(argv), "--debug" in argv)

    def job() -> int:
        args = _compare_parser(prog).parse_args(argv)
        reporter.debug = args.debug
        return _run_compare(args, reporter)

    return _guarded(reporter, job)


# ---- conventions, count ----------------------------------------------------------------------------------------

MAX_MEASURED_INPUT = 1024  # conventions measures real forward passes (fvcore): beyond this, hours and many GB


def _conventions_parser(prog: str) -> ArgumentParser:
    from .conventions import EPILOG

    p = ArgumentParser(
        prog=prog,
        description="Our analytic counts under each convention next to fvcore, FlopCounterMode and torchinfo.",
        epilog=EPILOG.format(prog=prog),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_conventions_arguments(p)
    return p


def _add_conventions_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--depth", type=int_in_range(1), nargs="+", help="some of 18 34 50 101 152 (default: all)")
    from .spec import variant_names  # torch-free: --help still answers at once

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


def _run_conventions(args: argparse.Namespace) -> int:
    from .conventions import convention_rows, render
    from .spec import residual_depths

    known = residual_depths("imagenet")
    depths = args.depth or list(known)
    unknown = [d for d in depths if d not in known]
    if unknown:
        raise UsageError(f"unknown depth(s) {unknown}; expected some of {list(known)}")
    rows = convention_rows(depths, args.variant, args.input_size, measured=not args.no_measure)
    print(render(rows, args.format, args.exact, args.input_size))
    return 0 if all(r.agrees is not False for r in rows) else 1


def conventions_main(argv: Sequence[str] | None = None, prog: str = "resnet-spec conventions") -> int:
    """``resnet-spec conventions ARGS`` (and ``tools/conventions.py ARGS``): the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    reporter = _Reporter(prog, False, "--debug" in argv)
    return _guarded(reporter, lambda: _run_conventions(_conventions_parser(prog).parse_args(argv)))


def _add_hidden_limits(p: argparse.ArgumentParser) -> None:
    """``--timeout`` and ``--memory`` for a contained job whose help does not show them (compare's does)."""
    p.add_argument("--timeout", type=_seconds, default=DEFAULT_TIMEOUT, metavar="SECONDS", help=argparse.SUPPRESS)
    p.add_argument("--memory", type=_memory, default="half", metavar="SIZE", help=argparse.SUPPRESS)


def _add_count_arguments(p: argparse.ArgumentParser) -> None:
    from .counting import CONVENTIONS, UNITS

    _add_spec_arguments(p)
    p.add_argument(
        "--ops", default="paper", choices=tuple(CONVENTIONS), help="counting convention (default: the paper's)"
    )
    p.add_argument("--unit", default="macs", choices=UNITS, help="macs (default) or flops (2 per multiply-add)")
    p.add_argument("--format", choices=("text", "json"), default="text")
    _add_hidden_limits(p)


@dataclass(frozen=True)
class CountRequest:
    """A table entry and the convention to count it under (the contained job's input)."""

    spec: CompareRequest
    ops: str
    unit: str


def count_job(request: CountRequest) -> str:
    """``count``'s output: the rows of the table entry with their parameters and counted operations."""
    from .counting import count

    with phase("table"):
        spec = _resolve_spec(request.spec)
    with phase("count"):
        counts = count(spec, request.spec.input_size, ops=request.ops, unit=request.unit)
    if request.spec.format == "json":
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


def _run_count(args: argparse.Namespace) -> int:
    if args.arch is not None and args.depth is not None:
        raise UsageError("give --depth or --arch, not both")
    if args.arch is None and args.depth is None:
        raise UsageError("give --depth N (or --arch NAME); see --help")
    if args.input_size and len(args.input_size) > 2:
        raise UsageError(f"--input-size takes H or H W, positive integers; got {args.input_size}")
    overrides = (("variant", args.variant),) if args.variant is not None else ()
    spec = CompareRequest(
        arch=args.arch,
        depth=args.depth,
        family=args.family,
        overrides=overrides,
        input_size=(args.input_size[0], args.input_size[-1]) if args.input_size else None,
        impl=None,
        in_channels=None,
        headless=False,
        format=args.format,
    )
    result = run_contained(count_job, CountRequest(spec, args.ops, args.unit), timeout=args.timeout, memory=args.memory)
    sys.stdout.write(result.value)
    return 0


# ---- identify ----------------------------------------------------------------------------------------------------

IDENTIFY_EPILOG = """\
FILE is a .safetensors file or a torch.save state_dict (.pth, .pt, .bin), read with weights_only=True: a pickle
that would run code is refused and nothing of it runs.  A checkpoint holds names and shapes, not strides, pools or
activations: it tells which entries its weights fit, never that a network conforms
(resnet-spec compare --arch NAME --impl FILE: the first row that differs).

exit status: 0 at least one entry fits, 1 none does, 2 the file cannot be read or is refused (one line on stderr).
"""


def _add_identify_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", metavar="FILE", help="a .safetensors file or a torch.save state_dict")
    p.add_argument("--format", choices=("text", "json"), default="text")
    _add_hidden_limits(p)


@dataclass(frozen=True)
class IdentifyRequest:
    """A checkpoint file and how to report what it fits (the contained job's input)."""

    path: str
    format: str


def identify_job(request: IdentifyRequest) -> tuple[int, str]:
    """``identify``'s exit status and output: the entries the file's tensors fit."""
    from .verify.checkpoints import identify, open_checkpoint, render, to_json

    with phase("load"):
        file, tensors = open_checkpoint(request.path)
    with phase("identify"):
        result = identify(tensors)
    if request.format == "json":
        return result.exit_status, json.dumps(to_json(result, file), indent=2) + "\n"
    return result.exit_status, render(result, file)


def _run_identify(args: argparse.Namespace) -> int:
    if not os.path.isfile(args.file):
        raise UsageError(f"{args.file}: no such file (expected a .safetensors file or a torch.save state_dict)")
    request = IdentifyRequest(args.file, args.format)
    result = run_contained(identify_job, request, timeout=args.timeout, memory=args.memory)  # a parser that crashes
    status, text = result.value
    sys.stdout.write(text)
    return status


# ---- audit -------------------------------------------------------------------------------------------------------

AUDIT_EPILOG = """\
Each model of SOURCE is one test of the pytest plugin (pytest --resnet-audit SOURCE), so pytest-xdist spreads the
models over processes (-n auto) and --junitxml records one test case per model. Each model is built with random
weights in a process of its own, and its row is appended to --results as soon as it is known.

sources:
  timm:'*resnet*'         timm's models whose name matches the glob
  timm/resnet,resnetv2    every model of timm's resnet.py and resnetv2.py (':PATTERN' may follow)
  torchvision:'resnet*'   torchvision's classification models
  pytorchcv:'*resnet*'    pytorchcv's models
  zoo.py[:PATTERN]        the public functions and classes the file defines (its __all__, where it has one)

exit status: 0 every model audited (whatever its verdict), 1 a model could not be audited (it does not build,
trace or run, or passes --timeout: its row says why), 2 anything else (one line on stderr).
"""


def _add_audit_arguments(p: argparse.ArgumentParser) -> None:
    from .verify.audit import AUDIT_FORMATS

    p.add_argument("source", metavar="SOURCE", help="the models to audit (see below)")
    p.add_argument("-n", "--numprocesses", metavar="N", help="pytest-xdist's worker processes: a number or 'auto' "
                   "(default: the models one after another in this process)")  # fmt: skip
    p.add_argument("--format", choices=AUDIT_FORMATS, default="text", help="the table's format (default text)")
    p.add_argument("--output", metavar="FILE", help="write the table to FILE instead of stdout")
    p.add_argument("--results", metavar="FILE", default="resnet-audit.jsonl", help="each model's row, appended as it "
                   "finishes (one JSON object a line; default %(default)s)")  # fmt: skip
    p.add_argument("--resume", action="store_true", help="keep --results' rows; audit only the models it lacks")
    p.add_argument("--junitxml", metavar="FILE", help="JUnit XML of the run: one test case per model")
    p.add_argument("-k", dest="keyword", metavar="EXPRESSION", help="only the models pytest's -k selects by name")
    p.add_argument("--timeout", type=_seconds, default=DEFAULT_TIMEOUT, metavar="SECONDS",
                   help="one model's time limit (default %(default)g)")  # fmt: skip


def _run_audit(args: argparse.Namespace) -> int:
    import contextlib
    import importlib.util
    import tempfile
    from pathlib import Path

    import pytest

    from .verify.audit import SourceError, parse_source

    try:
        parse_source(args.source)
    except SourceError as e:
        raise UsageError(str(e)) from None
    if args.numprocesses is not None and importlib.util.find_spec("xdist") is None:
        raise UsageError("-n needs pytest-xdist: pip install pytest-xdist")
    suffix = {"text": ".txt", "markdown": ".md", "json": ".json", "html": ".html"}[args.format]
    with tempfile.TemporaryDirectory(prefix="resnet-spec-audit-") as folder:
        ini, report = Path(folder, "pytest.ini"), Path(folder, "report" + suffix)
        ini.write_text("[pytest]\n")  # none of the current directory's pytest configuration applies
        argv = ["-q", "-p", "no:cacheprovider", "-c", str(ini), "--rootdir", folder, "--resnet-audit", args.source,
                "--resnet-audit-results", str(Path(args.results).resolve()), "--resnet-audit-report", str(report),
                "--resnet-audit-timeout", str(args.timeout or 1e9)]  # fmt: skip
        argv += ["--resnet-audit-resume"] if args.resume else []
        argv += ["-n", args.numprocesses] if args.numprocesses is not None else []
        argv += ["--junitxml", str(Path(args.junitxml).resolve())] if args.junitxml else []
        argv += ["-k", args.keyword] if args.keyword else []
        errors = io.StringIO()  # pytest's own errors: one line of ours where the audit does not run
        with contextlib.redirect_stdout(sys.stderr), contextlib.redirect_stderr(errors):  # stdout: the table's
            status = pytest.main(argv)
        if status == pytest.ExitCode.NO_TESTS_COLLECTED and args.resume:
            status = pytest.ExitCode.OK  # every model has its row already
        if status not in (0, 1):
            lines = [line.removeprefix("ERROR: ") for line in errors.getvalue().splitlines() if line.strip()]
            reason = lines[0] if lines else f"pytest's exit status {int(status)}"
            raise UsageError(f"the audit did not run to its end: {reason}")
        sys.stderr.write(errors.getvalue())
        text = report.read_text(encoding="utf-8") if report.is_file() else ""
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return int(status)


# ---- the command --------------------------------------------------------------------------------------------------


def _parser() -> ArgumentParser:
    p = ArgumentParser(
        prog="resnet-spec",
        description="The ResNet of He et al. 2015 from machine-readable tables, and the check that a model is it.",
        epilog="exit status: 0 conformant / done, 1 not conformant, 2 anything else (one line on stderr).\n"
        "'resnet-spec COMMAND --help' shows a command's options.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--version", action="version", version=f"resnet-spec {_version()}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=ArgumentParser)
    compare = sub.add_parser(
        "compare",
        help="diff a model against a table entry, row by row",
        description="Diff a ResNet (ours from the tables, or --impl yours) against the paper's layer table.",
        epilog=COMPARE_EPILOG.format(prog="resnet-spec compare"),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_compare_arguments(compare)
    listing = sub.add_parser(
        "list", help="list the table entries (matching a pattern)", description="List the table entries by family."
    )
    listing.add_argument("pattern", nargs="?", metavar="PATTERN", help="a glob on the names, such as '*50*'")
    listing.add_argument(
        "--format", choices=("text", "json"), default="text",
        help="text (by family and paper) or JSON (with the options of each named deviation it accepts)",
    )  # fmt: skip
    count = sub.add_parser(
        "count",
        help="parameters and operations of a table entry, per row (arithmetic, no model)",
        description="Parameters and counted operations of a table entry, per row of Table 1, for one image.",
    )
    _add_count_arguments(count)
    identify = sub.add_parser(
        "identify",
        help="which table entries a checkpoint's weights fit (names and shapes; no code runs)",
        description="Which table entries, under which named deviations and weight formats, a checkpoint's tensors "
        "fill exactly (every key used once, every shape equal), and how to load it.",
        epilog=IDENTIFY_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_identify_arguments(identify)
    conventions = sub.add_parser(
        "conventions",
        help="our counts under each convention next to fvcore, FlopCounterMode and torchinfo",
        description="Our analytic counts under each convention next to fvcore, FlopCounterMode and torchinfo.",
        epilog=_conventions_epilog("resnet-spec conventions"),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_conventions_arguments(conventions)
    audit = sub.add_parser(
        "audit",
        help="audit a model zoo: each model's best entry, verdict and rows that differ",
        description="Audit a model zoo: each model of SOURCE built with random weights, its best table entry, its "
        "verdict and the rows that differ, as one table.",
        epilog=AUDIT_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_audit_arguments(audit)
    return p


def _conventions_epilog(prog: str) -> str:
    from .conventions import EPILOG

    return EPILOG.format(prog=prog)


def main(argv: Sequence[str] | None = None) -> int:
    """``resnet-spec ARGS``: the exit status."""
    if argv is None:  # the process's own command line: it has computed nothing yet (see contain.mark_pool_free)
        mark_pool_free()
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["compare"]:
        return compare_main(argv[1:])
    reporter = _Reporter("resnet-spec", _json_wanted(argv), "--debug" in argv)

    def job() -> int:
        args = _parser().parse_args(argv)
        reporter.prog = f"resnet-spec {args.command}" if args.command else "resnet-spec"
        if args.command == "list":
            return _print_list(args.pattern, args.format)
        if args.command == "count":
            return _run_count(args)
        if args.command == "conventions":
            return _run_conventions(args)
        if args.command == "identify":
            return _run_identify(args)
        if args.command == "audit":
            return _run_audit(args)
        raise UsageError("give a command: audit, compare, count, conventions, identify, list (see --help)")

    return _guarded(reporter, job)
