"""The conformance suite as a pytest plugin: ``pytest --resnet-impl mypkg.models:resnet50 --resnet-arch resnet50``.

Registered through the ``pytest11`` entry point; inactive unless ``--resnet-impl`` is given.  Then pytest also
collects :mod:`resnet_spec.conformance_tests`, whose tests run on the model that TARGET builds (see docs/plugin.md):
one structure test per Table 1 row, the totals, functional equivalence per row, hypothesis properties at drawn input
sizes and, when a GPU is present, CUDA against CPU.  Importing this module imports neither torch nor hypothesis.
"""

from __future__ import annotations

from pathlib import Path

import pytest

__all__ = ["option_values"]

_SUITE = Path(__file__).with_name("conformance_tests.py")
_OPTIONS = ("impl", "arch", "variant", "shortcut", "examples")


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("resnet-spec", "resnet-spec conformance suite (runs only with --resnet-impl)")
    group.addoption("--resnet-impl", metavar="TARGET", help="the model to check: MODULE:EXPRESSION, as compare "
                    "--impl takes it (package.module:factory, path/to/file.py:factory, or a call such as "
                    "\"timm:create_model('resnet50d')\")")  # fmt: skip
    group.addoption("--resnet-arch", metavar="NAME", help="the table entry it should be: resnet50, resnet20, ... "
                    "or FILE.toml:NAME")  # fmt: skip
    group.addoption("--resnet-variant", metavar="NAME", help="stride placement: v1 (the paper) or v1.5 (on the 3x3)")
    group.addoption("--resnet-shortcut", metavar="OPTION", help="shortcut option A, B, C or none; default the table's")
    group.addoption("--resnet-examples", metavar="N", type=int, default=10,
                    help="hypothesis examples per property (default 10)")  # fmt: skip


def pytest_load_initial_conftests(early_config: pytest.Config, parser: pytest.Parser, args: list[str]) -> None:
    """With ``--resnet-impl``, add the conformance suite to what pytest collects."""
    known = parser.parse_known_args(args)
    if getattr(known, "resnet_impl", None) and str(_SUITE) not in args:
        args.append(str(_SUITE))


def pytest_pycollect_makemodule(module_path: Path, parent: pytest.Collector) -> pytest.Module | None:
    """The suite's tests are named ``resnet_spec/conformance_tests.py::test_...`` wherever the package is installed."""
    if module_path != _SUITE:
        return None
    return pytest.Module.from_parent(parent, path=module_path, nodeid="resnet_spec/conformance_tests.py")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "cuda: needs a CUDA device; skipped with the reason where none is present")
    if config.getoption("resnet_impl", None) and not config.getoption("resnet_arch", None):
        raise pytest.UsageError("--resnet-impl needs --resnet-arch NAME: the table entry the model should be")


def option_values(config: pytest.Config) -> dict[str, object]:
    """The suite's options as given (None where absent)."""
    return {name: config.getoption(f"resnet_{name}", None) for name in _OPTIONS}
