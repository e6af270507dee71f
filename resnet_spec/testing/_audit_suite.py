"""The audit of a model zoo, collected by pytest when ``--resnet-audit SOURCE`` is given (``resnet-spec audit``).

One test per model of the source, ``test_model[NAME]``: the model is built with random weights in a process of its
own, its best table entry found and its verdict given (:func:`resnet_spec.verify.audit_model`), and its row
appended to the results file as soon as it is known, so an audit stopped half-way keeps what it has done.  The test
passes whatever the verdict (the audit reports; it does not judge the zoo) and fails where the model could not be
audited: it does not build, trace or run, or its process passes the time limit.  The verdict, the entry and the rows
that differ are the test's user properties (in JUnit XML).  With pytest-xdist the models are spread over the
workers; each worker imports the source's library once, in a process the models are forked from.
"""

from __future__ import annotations

import gc
import json
import os
from typing import Any

import pytest

from .plugin import zoo_of

_servers: dict[str, Any] = {}  # this process's preloaded servers, by source


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """One test per model the source still has to audit, the model's name its id."""
    zoo = zoo_of(metafunc.config)
    if "zoo_model" in metafunc.fixturenames and zoo is not None:
        metafunc.parametrize("zoo_model", zoo.models, ids=[m.name for m in zoo.models])


def _append(path: os.PathLike[str], line: str) -> None:
    """One row, written with one call on a file opened for appending: rows of concurrent workers never interleave."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def _share_the_cores() -> None:
    """A pytest-xdist worker computes with its share of the cores: workers that each use all of them slow every one."""
    import torch

    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // workers))


def test_model(zoo_model: Any, request: pytest.FixtureRequest) -> None:
    from ..verify import audit_model, servers_for

    zoo = zoo_of(request.config)
    if zoo is None:  # the suite is collected only with --resnet-audit
        raise pytest.UsageError("resnet_spec/audit_tests.py runs only with --resnet-audit SOURCE")
    servers = _servers.get(zoo.source)
    if servers is None:
        _share_the_cores()
        servers = _servers[zoo.source] = servers_for(zoo.source)
        request.config.add_cleanup(servers.close)
        # the worker's imports live as long as it does: frozen, the collections during each model's check skip them
        gc.collect()
        gc.freeze()
    row = audit_model(zoo_model, servers, timeout=zoo.timeout)
    _append(zoo.results, json.dumps(row.to_json()) + "\n")
    for name in ("entry", "match", "verdict", "rows", "summary"):
        value = getattr(row, name)
        request.node.user_properties.append((f"resnet_spec_{name}", ", ".join(value) if name == "rows" else value))
    if row.failed:
        pytest.fail(f"{zoo_model.name}: {row.summary}", pytrace=False)
