"""``resnet-spec compare``: a model (ours, live code, a deployed file or a checkpoint) against a table entry.

Everything it runs (loading the table, importing and building the model, tracing it, the comparison) runs in a
child process (:func:`resnet_spec.sandbox.run_contained`): what the model's code prints goes to stderr (or to the
JSON's notes), never into the report.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import os
import re
import sys
from dataclasses import dataclass
from typing import Any

from ..sandbox import default_memory, phase, run_contained
from ._exit import ClosedOutput, Reporter, as_flags, output_notes
from ._list import print_list
from ._parser import (
    MAX_IN_CHANNELS,
    Command,
    SpecRequest,
    UsageError,
    add_knob_arguments,
    add_limits,
    add_spec_arguments,
    int_in_range,
    resolve_spec,
    spec_request,
)

__all__ = ["COMMAND", "CompareOutcome", "CompareRequest", "compare_job"]

_EPILOG = """\
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


def _add_arguments(p: argparse.ArgumentParser) -> None:
    add_spec_arguments(p)
    add_knob_arguments(p, plain=True)
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
    add_limits(p, shown=True)
    p.add_argument("--quiet", "-q", action="store_true", help="print nothing but errors: the exit status says it all")
    p.add_argument("--debug", action="store_true", help="on an error, also show the traceback and the model's output")
    p.add_argument("--list", action="store_true", help="list the table entries and exit")


@dataclass(frozen=True)
class CompareRequest(SpecRequest):
    """What to compare with what, and how to report it (the child's whole input)."""

    impl: str | None
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


def compare_job(request: CompareRequest) -> CompareOutcome:
    """Everything ``compare`` does, as one call (run contained): load, build or import, compare, render."""
    from ..verify import best_matches, compare_model, dumps, not_run, render, to_json, undecided_reason

    with phase("table"):
        spec = resolve_spec(request)
    if request.impl is not None and _is_checkpoint(request.impl):
        return _compare_checkpoint_job(request, spec)
    own = request.impl is None  # the reference network itself: its outputs would be compared with themselves
    if own:
        from ..models import build

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
            from ..verify import ReportError, render_html

            try:
                return outcome(render_html(comparison, subject, best), None)
            except ReportError as e:
                raise UsageError(f"--format html: {e}") from None
        return outcome(render(comparison, subject, best, markdown=request.format == "markdown"), None)


def _is_checkpoint(impl: str) -> bool:
    """Whether ``--impl`` names a checkpoint file (tensors by name, no network: judged by its names and shapes)."""
    from pathlib import Path

    from ..verify import CHECKPOINT_KINDS, ArtifactError, artifact_kind, is_artifact_path

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
    from ..verify import (
        checkpoint_to_json,
        checkpoint_undecided_reason,
        compare_checkpoint,
        open_checkpoint,
        render_checkpoint,
    )

    if request.format == "html":
        with phase("report"):
            raise UsageError("--format html: a checkpoint's report is text, markdown or json (no network to draw)")
    with phase("load"):
        file, tensors = open_checkpoint(str(request.impl))
    with phase("compare"):
        result = compare_checkpoint(tensors, spec)
    notes = [f"{flag} is ignored for a checkpoint: it holds weights, not a network that runs"
             for field, flag in _CHECKPOINT_IGNORED if getattr(request, field)]  # fmt: skip
    why = checkpoint_undecided_reason(result) if result.exit_status == 2 else ""
    outcome = functools.partial(CompareOutcome, result.verdict.value, result.exit_status, why)
    if request.format == "json":
        data = checkpoint_to_json(result, file)
        data["notes"] = [*data["notes"], *notes]
        return outcome(json.dumps(data, indent=2) + "\n", data)
    return outcome(render_checkpoint(result, file) + "".join(f"note: {note}\n" for note in notes), None)


# ---- the parent ------------------------------------------------------------------------------------------

_DIFF_CELL = re.compile(r"(?<=  )DIFF$", re.MULTILINE)


def _colour(text: str) -> str:
    """DIFF cells in red, when stdout is a terminal and NO_COLOR is not set (https://no-color.org)."""
    if os.environ.get("NO_COLOR") or not sys.stdout.isatty():
        return text
    return _DIFF_CELL.sub("\x1b[31mDIFF\x1b[0m", text)


def _run(args: argparse.Namespace, reporter: Reporter) -> int:
    if not args.quiet and isinstance(sys.stdout, ClosedOutput):
        sys.stdout.write("")  # the one-line error now, not after the comparison
    if args.list:
        return print_list()
    fields = spec_request(args, give="--depth N (or --arch NAME, or --list)")
    impl = None
    if args.impl is not None:
        from ..verify import SubjectError, check_target

        try:
            impl = check_target(args.impl)
        except SubjectError as e:
            raise UsageError(str(e)) from None
    request = CompareRequest(
        **fields,
        impl=impl,
        headless=args.headless,
        format=args.format,
        memory=default_memory() if args.memory == "half" else args.memory,
    )
    result = run_contained(compare_job, request, timeout=args.timeout, memory=args.memory)
    outcome = result.value
    if not args.quiet:
        if outcome.data is not None:
            data = dict(outcome.data)
            data["notes"] = [*data["notes"], *output_notes(result.output)]
            sys.stdout.write(json.dumps(data, indent=2) + "\n")
        else:
            if result.output:
                sys.stderr.write(result.output if result.output.endswith("\n") else result.output + "\n")
            sys.stdout.write(_colour(outcome.text) if args.format == "text" else outcome.text)
    if outcome.exit_status == 2:  # a report without a verdict: still the one line of every exit 2
        reason = as_flags(" ".join(outcome.why_undecided.split()))
        print(f"{reporter.prog}: error: verdict: undecided: {reason}", file=sys.stderr)
    return outcome.exit_status


COMMAND = Command(
    name="compare",
    help="diff a model against a table entry, row by row",
    description="Diff a ResNet (ours from the tables, or --impl yours) against the paper's layer table.",
    epilog=_EPILOG,
    add_arguments=_add_arguments,
    run=_run,
)
