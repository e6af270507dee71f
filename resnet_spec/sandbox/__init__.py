"""The sandbox: code we do not trust (a subject's import, construction and forward pass) run in a child process.

Its output is captured, its time and memory limited, and whatever it does ends as a result or as one
:class:`ContainedError` naming the phase.  The verdict is never computed in such a process (see
:mod:`resnet_spec.verify`).  Importing this package does not import torch.
"""

from ._process import (
    DEFAULT_MEMORY,
    DEFAULT_TIMEOUT,
    Contained,
    ContainedError,
    ContainedServer,
    ForkedServer,
    PreloadedServers,
    current_phase,
    default_memory,
    mark_pool_free,
    parse_size,
    phase,
    run_contained,
)

__all__ = [
    "DEFAULT_MEMORY",
    "DEFAULT_TIMEOUT",
    "Contained",
    "ContainedError",
    "ContainedServer",
    "ForkedServer",
    "PreloadedServers",
    "current_phase",
    "default_memory",
    "mark_pool_free",
    "parse_size",
    "phase",
    "run_contained",
]
