"""``resnet-spec audit``: a whole model zoo, one row per model, run as pytest tests (one per model)."""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

from ..sandbox import DEFAULT_TIMEOUT
from ..testing import REPORT_FORMATS
from ._exit import Reporter
from ._parser import Command, UsageError, seconds

__all__ = ["COMMAND"]

_EPILOG = """\
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


def _add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("source", metavar="SOURCE", help="the models to audit (see below)")
    p.add_argument("-n", "--numprocesses", metavar="N", help="pytest-xdist's worker processes: a number or 'auto' "
                   "(default: the models one after another in this process)")  # fmt: skip
    p.add_argument(
        "--format", choices=tuple(REPORT_FORMATS.values()), default="text", help="the table's format (default text)"
    )
    p.add_argument("--output", metavar="FILE", help="write the table to FILE instead of stdout")
    p.add_argument("--results", metavar="FILE", default="resnet-audit.jsonl", help="each model's row, appended as it "
                   "finishes (one JSON object a line; default %(default)s)")  # fmt: skip
    p.add_argument("--resume", action="store_true", help="keep --results' rows; audit only the models it lacks")
    p.add_argument("--junitxml", metavar="FILE", help="JUnit XML of the run: one test case per model")
    p.add_argument("-k", dest="keyword", metavar="EXPRESSION", help="only the models pytest's -k selects by name")
    p.add_argument("--timeout", type=seconds, default=DEFAULT_TIMEOUT, metavar="SECONDS",
                   help="one model's time limit (default %(default)g)")  # fmt: skip


def _run(args: argparse.Namespace, reporter: Reporter) -> int:
    import contextlib
    import importlib.util
    import tempfile

    import pytest

    from ..verify import SourceError, parse_source

    try:
        parse_source(args.source)
    except SourceError as e:
        raise UsageError(str(e)) from None
    if args.numprocesses is not None and importlib.util.find_spec("xdist") is None:
        raise UsageError("-n needs pytest-xdist: pip install pytest-xdist")
    suffix = next(suffix for suffix, format in REPORT_FORMATS.items() if format == args.format)
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


COMMAND = Command(
    name="audit",
    help="audit a model zoo: each model's best entry, verdict and rows that differ",
    description="Audit a model zoo: each model of SOURCE built with random weights, its best table entry, its "
    "verdict and the rows that differ, as one table.",
    epilog=_EPILOG,
    add_arguments=_add_arguments,
    run=_run,
)
