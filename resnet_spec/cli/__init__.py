"""The ``resnet-spec`` command (also ``python -m resnet_spec``): audit, compare, count, conventions, identify, list.

One parser; each subcommand is one module that registers itself (its :class:`~resnet_spec.cli._parser.Command`).
``tools/compare.py`` is ``resnet-spec compare`` and ``tools/conventions.py`` is ``resnet-spec conventions``
(:func:`run_command`); :func:`guarded` is the catch-all the other tools use.

Exit status, for every subcommand (a contract scripts rely on):

* 0: a complete verdict "conformant" or "equivalent" (``compare``), or the job done (``list``, ``count``;
  ``conventions``: every measured figure agrees with its convention; ``identify``: at least one entry fits);
* 1: a complete verdict "not conformant" (``conventions``: a figure disagrees; ``identify``: no entry fits);
* 2: anything else (an undecided verdict, a wrong argument, a table that does not load, a model that cannot be
  imported, built or traced, one that exits, loops past ``--timeout`` or allocates past ``--memory``, an internal
  error), always with one line on stderr, and under ``--format json`` a JSON object
  ``{"error": ..., "phase": ..., "notes": [...]}`` on stdout (an undecided verdict prints its report instead).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ..sandbox import mark_pool_free
from . import _audit, _compare, _conventions, _count, _identify, _list
from ._exit import Reporter, guarded, json_wanted, run_guarded
from ._parser import ArgumentParser, Command, UsageError, float_in_range, int_in_range, version

__all__ = [
    "COMMANDS",
    "ArgumentParser",
    "UsageError",
    "float_in_range",
    "guarded",
    "int_in_range",
    "main",
    "run_command",
]

COMMANDS: tuple[Command, ...] = tuple(
    module.COMMAND
    for module in (_compare, _list, _count, _identify, _conventions, _audit)  # as --help lists them
)


def _parser(prog: str = "resnet-spec", progs: dict[str, str] | None = None) -> ArgumentParser:
    """The one parser: ``prog COMMAND ...``, a subparser per registered command (``progs`` renames one's prog)."""
    p = ArgumentParser(
        prog=prog,
        description="The ResNet of He et al. 2015 from machine-readable tables, and the check that a model is it.",
        epilog="exit status: 0 conformant / done, 1 not conformant, 2 anything else (one line on stderr).\n"
        "'resnet-spec COMMAND --help' shows a command's options.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--version", action="version", version=f"resnet-spec {version()}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=ArgumentParser)
    for command in COMMANDS:
        command_prog = (progs or {}).get(command.name, f"{prog} {command.name}")
        parser = sub.add_parser(
            command.name,
            prog=command_prog,
            help=command.help,
            description=command.description,
            epilog=command.epilog.format(prog=command_prog),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        command.add_arguments(parser)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """``resnet-spec ARGS``: the exit status."""
    return _main(argv, {})


def run_command(command: str, argv: Sequence[str] | None = None, prog: str | None = None) -> int:
    """``resnet-spec COMMAND ARGS``, its messages under the name ``prog`` (``tools/compare.py`` runs ``compare`` as
    ``compare.py``): the exit status."""
    if argv is None:
        mark_pool_free()  # the process's own command line: it has computed nothing yet (see the sandbox)
    return _main([command, *(sys.argv[1:] if argv is None else argv)], {command: prog} if prog else {})


def _main(argv: Sequence[str] | None, progs: dict[str, str]) -> int:
    if argv is None:
        mark_pool_free()
    argv = list(sys.argv[1:] if argv is None else argv)
    names = {command.name for command in COMMANDS}
    command_name = argv[0] if argv and argv[0] in names else None
    prog = progs.get(command_name or "", f"resnet-spec {command_name}" if command_name else "resnet-spec")
    reporter = Reporter(prog, json_wanted(argv), "--debug" in argv)

    def job() -> int:
        args = _parser("resnet-spec", progs).parse_args(argv)
        if args.command is None:
            raise UsageError(f"give a command: {', '.join(sorted(names))} (see --help)")
        reporter.debug = bool(getattr(args, "debug", False))
        command = next(c for c in COMMANDS if c.name == args.command)
        return command.run(args, reporter)

    return run_guarded(reporter, job)
