"""``resnet-spec identify``: which table entries a checkpoint's tensors fill exactly, and how to load it."""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import dataclass

from ..sandbox import phase, run_contained
from ._exit import Reporter
from ._parser import Command, UsageError, add_limits

__all__ = ["COMMAND", "IdentifyRequest", "identify_job"]

_EPILOG = """\
FILE is a .safetensors file or a torch.save state_dict (.pth, .pt, .bin), read with weights_only=True: a pickle
that would run code is refused and nothing of it runs.  A checkpoint holds names and shapes, not strides, pools or
activations: it tells which entries its weights fit, never that a network conforms
(resnet-spec compare --arch NAME --impl FILE: the first row that differs).

exit status: 0 at least one entry fits, 1 none does, 2 the file cannot be read or is refused (one line on stderr).
"""


def _add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", metavar="FILE", help="a .safetensors file or a torch.save state_dict")
    p.add_argument("--format", choices=("text", "json"), default="text")
    add_limits(p)


@dataclass(frozen=True)
class IdentifyRequest:
    """A checkpoint file and how to report what it fits (the contained job's input)."""

    path: str
    format: str


def identify_job(request: IdentifyRequest) -> tuple[int, str]:
    """``identify``'s exit status and output: the entries the file's tensors fit."""
    from ..verify import checkpoint_to_json, identify, open_checkpoint, render_checkpoint

    with phase("load"):
        file, tensors = open_checkpoint(request.path)
    with phase("identify"):
        result = identify(tensors)
    if request.format == "json":
        return result.exit_status, json.dumps(checkpoint_to_json(result, file), indent=2) + "\n"
    return result.exit_status, render_checkpoint(result, file)


def _run(args: argparse.Namespace, reporter: Reporter) -> int:
    if not os.path.isfile(args.file):
        raise UsageError(f"{args.file}: no such file (expected a .safetensors file or a torch.save state_dict)")
    request = IdentifyRequest(args.file, args.format)
    result = run_contained(identify_job, request, timeout=args.timeout, memory=args.memory)  # a parser that crashes
    status, text = result.value
    sys.stdout.write(text)
    return status


COMMAND = Command(
    name="identify",
    help="which table entries a checkpoint's weights fit (names and shapes; no code runs)",
    description="Which table entries, under which named deviations and weight formats, a checkpoint's tensors "
    "fill exactly (every key used once, every shape equal), and how to load it.",
    epilog=_EPILOG,
    add_arguments=_add_arguments,
    run=_run,
)
