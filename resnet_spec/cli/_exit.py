"""The exit-status contract every entry point keeps: its status, or 2 with one line on stderr for any error
(under ``--format json`` also ``{"error", "phase", "notes"}`` on stdout), never a traceback (``--debug`` shows it)."""

from __future__ import annotations

import io
import itertools
import json
import re
import sys
import traceback
from collections.abc import Callable, Sequence

from ..sandbox import ContainedError
from ._parser import UsageError

__all__ = ["ClosedOutput", "Reporter", "as_flags", "guarded", "json_wanted", "output_notes", "run_guarded"]

# The library's messages name its parameters (``in_channels=1``, ``timeout=2``, ``target 'pkg:make'``); the command's
# name the flags that set them.
_FLAGS = {"in_channels": "--in-channels", "input_size": "--input-size", "family": "--family", "timeout": "--timeout",
          "memory": "--memory"}  # fmt: skip
_PARAMETER = re.compile(r"(?<![\w-])(" + "|".join(_FLAGS) + r")=('?)([^\s',)]+)\2")
_TARGET = re.compile(r"(?<![\w-])target (?=['\"])")


def as_flags(message: str) -> str:
    """A library message in the command's words: ``in_channels=1`` -> ``--in-channels 1``, ``target 'x'`` ->
    ``--impl 'x'``."""
    message = _TARGET.sub("--impl ", message)
    return _PARAMETER.sub(lambda m: f"{_FLAGS[m.group(1)]} {'none' if m.group(3) == 'None' else m.group(3)}", message)


class Reporter:
    """One entry point's way of failing: one line on stderr, and the JSON error object when asked for JSON."""

    def __init__(self, prog: str, json_wanted: bool, debug: bool) -> None:
        self.prog = prog
        self.json = json_wanted
        self.debug = debug

    def fail(self, message: str, where: str = "arguments", notes: Sequence[str] = (), details: str = "") -> int:
        message = as_flags(message)
        if self.debug and details:
            sys.stderr.write(details if details.endswith("\n") else details + "\n")
        line = message if where == "arguments" else f"{where}: {message}"
        print(f"{self.prog}: error: {line}", file=sys.stderr)
        if self.json and not isinstance(sys.stdout, ClosedOutput):
            sys.stdout.write(json.dumps({"error": message, "phase": where, "notes": list(notes)}, indent=2) + "\n")
        return 2


def json_wanted(argv: Sequence[str]) -> bool:
    args = list(argv)
    return "--format=json" in args or any(pair == ("--format", "json") for pair in itertools.pairwise(args))


def output_notes(output: str) -> list[str]:
    """What the checked code printed, as the JSON report's note."""
    text = output.strip()
    return [f"output of the checked code (stdout and stderr): {text}"] if text else []


def _output_hint(output: str) -> str:
    lines = [line for line in output.splitlines() if line.strip()]
    if not lines:
        return ""
    last = " ".join(lines[-1].split())
    last = last if len(last) <= 120 else last[:117] + "..."
    return f" [the code wrote {len(lines)} line(s); the last: {last!r}; --debug shows them]"


def guarded(prog: str, job: Callable[[], int], argv: Sequence[str] = ()) -> int:
    """Run an entry point's ``job`` under the exit-status contract: its status, or 2 with one line for any error.

    ``argv`` (the entry point's arguments) tells whether JSON was asked for (``--format json``) and ``--debug``.
    Errors of an :class:`ArgumentParser` and :class:`~resnet_spec.sandbox.ContainedError` are one line too.
    """
    return run_guarded(Reporter(prog, json_wanted(argv), "--debug" in argv), job)


class ClosedOutput(io.TextIOBase):
    """Standard output where the process was started with it closed (``cmd >&-``: Python's ``sys.stdout`` is None):
    writing to it is the entry point's one-line error; a job that writes nothing (``compare --quiet``) runs."""

    def write(self, text: str) -> int:
        raise UsageError("standard output is closed: nowhere to write (compare --quiet answers by its exit status)")

    def isatty(self) -> bool:
        return False


def run_guarded(reporter: Reporter, job: Callable[[], int]) -> int:
    """The catch-all of an entry point: anything unexpected is exit 2 with one line (--debug: the traceback)."""
    if sys.stdout is None:
        sys.stdout = ClosedOutput()
    try:
        return job()
    except UsageError as e:
        return reporter.fail(str(e))
    except ContainedError as e:
        reason = e.reason + ("" if reporter.debug else _output_hint(e.output))
        return reporter.fail(
            reason, e.phase, output_notes(e.output), (e.output + "\n" + e.details) if reporter.debug else ""
        )
    except KeyboardInterrupt:
        return reporter.fail("interrupted", "run")
    except Exception as e:  # the contract: never a traceback, never exit 1 for an error
        return reporter.fail(
            f"internal error: {type(e).__name__}: {' '.join(str(e).split())}", "run", details=traceback.format_exc()
        )
