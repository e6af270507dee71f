"""The command's parser: one-line argument errors, the argument types, the table-entry flags and the spec they
select (``--depth``/``--arch``/``--family``, one flag per named deviation of the tables, ``--input-size``), and
:class:`Command`, the way a subcommand registers itself."""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NoReturn

from ..sandbox import DEFAULT_TIMEOUT, parse_size
from ..spec import KNOBS

__all__ = [
    "MAX_IN_CHANNELS",
    "ArgumentParser",
    "Command",
    "SpecRequest",
    "UsageError",
    "add_knob_arguments",
    "add_limits",
    "add_spec_arguments",
    "float_in_range",
    "int_in_range",
    "resolve_spec",
    "seconds",
    "spec_request",
    "version",
]


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


def version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("resnet-spec")
    except PackageNotFoundError:
        return "unknown (not installed)"


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


def seconds(text: str) -> float | None:
    """An argparse ``type``: a positive number of seconds, or 'none' (no limit)."""
    if text.strip().lower() == "none":
        return None
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds (a positive number) or 'none', got {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"expected seconds (a positive number) or 'none', got {text!r}")
    return value


def _memory_size(text: str) -> int | str | None:
    """An argparse ``type``: a size such as 4G, 'half' (half the physical memory) or 'none'."""
    if text == "half":
        return text
    try:
        return parse_size(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


# The largest input side a table may ask for on the command line (beyond any real network's).
MAX_INPUT_SIZE = 16384
MAX_IN_CHANNELS = 4096
MAX_IN_CHANNELS = 4096


@dataclass(frozen=True)
class Command:
    """A subcommand: its name and help, how it adds its arguments, and how it runs (its exit status)."""

    name: str
    help: str
    description: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace, Any], int]  # (the parsed arguments, the entry point's Reporter)
    epilog: str = ""


def add_spec_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--depth", type=int_in_range(1), help="weighted layers: 18, 34, 50, 101, 152 (ImageNet), 20 ... 1202 (CIFAR)"
    )
    p.add_argument("--arch", help="a table entry by name instead of --depth (see list), or FILE.toml[:NAME]")
    p.add_argument("--family", help="the table family when a depth is in several (see list)")

    p.add_argument(
        "--input-size",
        type=int_in_range(1, MAX_INPUT_SIZE),
        nargs="+",
        metavar=("H", "W"),
        help="input height [and width]",
    )


def add_knob_arguments(p: argparse.ArgumentParser, plain: bool = False) -> None:
    """One flag per named deviation of the tables (``--variant``, ``--shortcut``, ``--stem-pool``, ...), its options
    from ``variants.toml``: a new knob or option in the tables needs no change here.  ``plain`` adds ``--plain``,
    which is ``--shortcut none``."""
    from ..spec import knob_options

    for knob, options in knob_options().items():
        group: Any = p.add_mutually_exclusive_group() if plain and knob == "shortcut" else p
        if group is not p:
            group.add_argument("--plain", action="store_true", help="the plain network: no shortcuts")
        group.add_argument(
            "--" + knob.replace("_", "-"),
            metavar=knob.upper(),
            help=f"the named deviation {knob!r}: {', '.join(options)} (default: the table's)",
        )


def _knob_overrides(args: argparse.Namespace) -> tuple[tuple[str, str], ...]:
    """The named deviations given on the command line, as ``load_spec`` keywords."""
    given = {knob: getattr(args, knob) for knob in KNOBS if getattr(args, knob, None) is not None}
    if getattr(args, "plain", False):
        given["shortcut"] = "none"
    return tuple(given.items())


def add_limits(p: argparse.ArgumentParser, shown: bool = False) -> None:
    """``--timeout`` and ``--memory`` of a contained job (in its help where ``shown``)."""
    p.add_argument(
        "--timeout",
        type=seconds,
        default=DEFAULT_TIMEOUT,
        metavar="SECONDS",
        help=f"time limit for the whole check (default {DEFAULT_TIMEOUT:g}; 'none': no limit)"
        if shown
        else argparse.SUPPRESS,
    )
    p.add_argument(
        "--memory",
        type=_memory_size,
        default="half",
        metavar="SIZE",
        help="memory the check may allocate, e.g. 4G (default: half the physical memory; 'none': no ceiling)"
        if shown
        else argparse.SUPPRESS,
    )


@dataclass(frozen=True)
class SpecRequest:
    """The table entry the flags select: by name or depth, the named deviations, the input size and channels."""

    arch: str | None
    depth: int | None
    family: str | None
    overrides: tuple[tuple[str, str], ...]
    input_size: tuple[int, int] | None
    in_channels: int | None


def spec_request(args: argparse.Namespace, give: str = "--depth N (or --arch NAME)") -> dict[str, Any]:
    """The :class:`SpecRequest` fields the flags give (``--depth``/``--arch``, ``--family``, the named deviations,
    ``--input-size``, ``--in-channels`` where the command has it); :class:`UsageError` for a wrong combination."""
    if args.arch is not None and args.depth is not None:
        raise UsageError("give --depth or --arch, not both")
    if args.arch is None and args.depth is None:
        raise UsageError(f"give {give}; see --help")
    if args.input_size and len(args.input_size) > 2:
        raise UsageError(f"--input-size takes H or H W, positive integers; got {args.input_size}")
    return {
        "arch": args.arch,
        "depth": args.depth,
        "family": args.family,
        "overrides": _knob_overrides(args),
        "input_size": (args.input_size[0], args.input_size[-1]) if args.input_size else None,
        "in_channels": getattr(args, "in_channels", None),
    }


def resolve_spec(request: SpecRequest) -> Any:
    from ..spec import SpecError, load_spec

    overrides = dict(request.overrides)
    if request.arch is not None:
        name = request.arch
    elif request.depth is not None:
        name = name_for_depth(request.depth, request.family)
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
        spec = with_in_channels(spec, request.in_channels)
    if request.input_size is not None:
        h, w = request.input_size
        too_small = [row for row, hw in spec.row_output_sizes(h, w).items() if min(hw) < 1]
        if too_small:
            raise UsageError(f"--input-size {h}x{w} is too small for {spec.name}: row {too_small[0]} is empty")
    return spec


def with_in_channels(spec: Any, in_channels: int) -> Any:
    """``spec`` for an input of ``in_channels`` channels: conv1 reads them; the paper's figures no longer apply."""
    from ..spec import FrozenMapping

    first = dataclasses.replace(spec.stem.convs[0], in_channels=in_channels)
    stem = dataclasses.replace(spec.stem, convs=(first, *spec.stem.convs[1:]))
    return dataclasses.replace(spec, in_channels=in_channels, stem=stem, paper=FrozenMapping({}))


def name_for_depth(depth: int, family: str | None) -> str:
    """The residual table entry with ``depth`` weighted layers (in ``family`` when given)."""
    from ..spec import families, residual_depths

    by_family = {f: residual_depths(f) for f in ([family] if family is not None else families())}  # LookupError
    matches = {f: depths[depth] for f, depths in by_family.items() if depth in depths}
    if not matches:
        known = sorted({d for depths in by_family.values() for d in depths})
        raise UsageError(f"no table entry has depth {depth}; known depths: {', '.join(map(str, known))}")
    if len(matches) > 1:
        raise UsageError(f"depth {depth} is in several families ({', '.join(sorted(matches))}): pass --family")
    return next(iter(matches.values()))
