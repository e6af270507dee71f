"""Shared test configuration: hypothesis profiles, one torch thread, a private compiler cache, the CUDA marker."""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, settings

# The helpers, the independent models and the fixtures' files live in tests/support/ and are imported by name.
sys.path.insert(0, str(Path(__file__).resolve().parent / "support"))

pytest_plugins = ["pytester"]  # tests/test_verdicts.py runs the conformance plugin in-process

# dev: quick local runs.  ci: more examples, derandomized so a CI failure reproduces, no deadline (2 shared cores).
settings.register_profile("dev", max_examples=15, deadline=None)
settings.register_profile(
    "ci",
    max_examples=40,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    print_blob=True,
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))

# One intra-op thread per process: pytest-xdist already runs one worker per core, and torch's own threads would
# spin-wait against each other on a 2-core machine (measured: a property file went from ~80 s to ~1100 s).
torch.set_num_threads(1)

# torch.compile's caches (Inductor's, and Triton's on a GPU) live in one directory per test process, made here and
# removed at exit: an artifact left in the machine-wide default (/tmp/torchinductor_<user>) by another process, or a
# truncated one, must not decide whether the compile tests pass.  Set before any compile; read by Inductor per call.
# Inductor's precompiled headers stay in the default directory whatever TORCHINDUCTOR_CACHE_DIR says (it is derived
# from the temporary directory when torch._inductor.codecache is imported), so the temporary directory of this
# process, and of what it starts, is the private one too.
COMPILER_CACHE = tempfile.mkdtemp(prefix="resnet-spec-compiler-cache-")
os.environ["TORCHINDUCTOR_CACHE_DIR"] = os.path.join(COMPILER_CACHE, "inductor")
os.environ["TRITON_CACHE_DIR"] = os.path.join(COMPILER_CACHE, "triton")
os.environ["TMPDIR"] = tempfile.tempdir = COMPILER_CACHE
atexit.register(shutil.rmtree, COMPILER_CACHE, ignore_errors=True)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device; none is available (torch.cuda.is_available() is False)")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)
