"""The conformance suite as a pytest plugin: ``pytest --resnet-impl mypkg.models:resnet50 --resnet-arch resnet50``.

Registered through the ``pytest11`` entry point; inactive unless ``--resnet-impl`` is given.  Then pytest also
collects :mod:`resnet_spec.conformance_tests`, whose tests are views of one comparison of the model that TARGET builds
(see docs/plugin.md): one structure test per Table 1 row, the parameters, the multiply-adds, the numbers per row, the
verdict and, when a GPU is present, CUDA against CPU.  The session's exit status is the verdict's: 0 conforms, 1
does not (failed tests), 2 undecided (the tests that cannot decide are skipped, and this module sets the status).
Importing this module imports neither torch nor hypothesis.
"""

from __future__ import annotations

from pathlib import Path

import pytest

__all__ = ["option_values"]

_SUITE = Path(__file__).with_name("conformance_tests.py")
_OPTIONS = ("impl", "arch", "variant", "shortcut")
_VERDICT = "resnet_spec_verdict"  # the user property test_verdict reports (and pytest-xdist carries to the controller)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("resnet-spec", "resnet-spec conformance suite (runs only with --resnet-impl)")
    group.addoption("--resnet-impl", metavar="TARGET", help="the model to check: MODULE:EXPRESSION, as compare "
                    "--impl takes it (package.module:factory, path/to/file.py:factory, or a call such as "
                    "\"timm:create_model('resnet50d')\")")  # fmt: skip
    group.addoption("--resnet-arch", metavar="NAME", help="the table entry it should be: resnet50, resnet20, ... "
                    "or FILE.toml:NAME")  # fmt: skip
    group.addoption("--resnet-variant", metavar="NAME", help="stride placement: v1 (the paper) or v1.5 (on the 3x3)")
    group.addoption("--resnet-shortcut", metavar="OPTION", help="shortcut option A, B, C or none; default the table's")


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
    if config.getoption("resnet_impl", None):
        config.pluginmanager.register(_VerdictWatch(), "resnet-spec-verdict")


class _VerdictWatch:
    """Keeps the verdict test_verdict reports (on the controller too: pytest-xdist carries user properties) and
    makes an undecided one the session's exit status 2, as compare's, where nothing failed."""

    def __init__(self) -> None:
        self.verdicts: list[str] = []

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self.verdicts += [str(value) for name, value in report.user_properties if name == _VERDICT]

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if "undecided" in self.verdicts and session.exitstatus == 0:
            session.exitstatus = 2

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        if "undecided" in self.verdicts:
            terminalreporter.write_line("resnet-spec: verdict undecided (exit status 2): test_verdict's skip says why")


def option_values(config: pytest.Config) -> dict[str, object]:
    """The suite's options as given (None where absent)."""
    return {name: config.getoption(f"resnet_{name}", None) for name in _OPTIONS}
