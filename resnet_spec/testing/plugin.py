"""The conformance suite as a pytest plugin: ``pytest --resnet-impl mypkg.models:resnet50 --resnet-arch resnet50``.

Registered through the ``pytest11`` entry point; inactive unless ``--resnet-impl`` is given.  Then the model each
``--resnet-impl`` names is compared once, before collection, in a contained process of its own (this pytest process
never runs its code; with pytest-xdist the comparisons are sent to the workers, not made again), and pytest also
collects the shipped suite, whose tests are views of those comparisons (see docs/plugin.md), with
the model in their ids (``test_structure[resnet50:conv3_x]``).  A target that cannot be imported, built or traced,
or an entry that does not exist, is one usage error (pytest's exit status 4).  The session's exit status is the
verdict's: 0 conforms, 1 does not (failed tests), 2 undecided (the tests that cannot decide are skipped, and this
module sets the status).  Importing this module imports neither torch nor hypothesis.
"""

from __future__ import annotations

import base64
import copyreg
import io
import pickle
import re
import time
import types
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from . import REPORT_FORMATS

if TYPE_CHECKING:
    from ..spec import ResNetSpec
    from ..verify import Comparison

__all__ = ["Model", "models_of"]

_SUITE = Path(__file__).with_name("_conformance_suite.py")
_AUDIT_SUITE = Path(__file__).with_name("_audit_suite.py")
# The suites' test ids, the same wherever the package is installed.
_NODE_IDS = {_SUITE: "resnet_spec/conformance_tests.py", _AUDIT_SUITE: "resnet_spec/audit_tests.py"}
_ZOO = pytest.StashKey["Zoo"]()
_VERDICT = "resnet_spec_verdict"  # the user property test_verdict reports (and pytest-xdist carries to the controller)
_WORKER_KEY = "resnet_spec_models"  # the comparisons, as the controller sends them to pytest-xdist's workers
_MODELS = pytest.StashKey[list["Model"]]()


@dataclass(frozen=True)
class Model:
    """One ``--resnet-impl``: its label in the test ids, the target, the entry, the comparison, CUDA against CPU."""

    label: str
    target: str
    spec: ResNetSpec
    comparison: Comparison
    cuda: float | str | None  # the logits' relative difference, or why the model does not run on CUDA; None: no GPU


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("resnet-spec", "resnet-spec conformance suite (runs only with --resnet-impl)")
    group.addoption("--resnet-impl", metavar="TARGET", action="append", help="the model to check: MODULE:EXPRESSION, "
                    "as compare --impl takes it (package.module:factory, path/to/file.py:factory, or a call such as "
                    "\"timm:create_model('resnet50d')\"); repeat it to check several models")  # fmt: skip
    group.addoption("--resnet-arch", metavar="NAME", action="append", help="the table entry it should be: resnet50, "
                    "resnet20, ... or FILE.toml:NAME; once for every model, or once per --resnet-impl")  # fmt: skip
    from ..spec import knob_options  # one option per named deviation of the tables

    for knob, options in knob_options().items():
        flag = f"--resnet-{knob.replace('_', '-')}"
        group.addoption(flag, metavar=knob.upper(), action="append", dest=f"resnet_{knob}",
                        help=f"the named deviation {knob!r}: {', '.join(options)} (default: the table's); once for "
                        "every model, or once per --resnet-impl")  # fmt: skip
    group.addoption("--resnet-audit", metavar="SOURCE", help="audit a model zoo instead: every constructor of SOURCE "
                    "(timm:'*resnet*', timm/resnet,resnetv2, torchvision:'resnet*', pytorchcv:'*resnet*', FILE.py) "
                    "is one test: built with random weights, compared with its best entry (docs/zoo.md)")  # fmt: skip
    group.addoption("--resnet-audit-results", metavar="FILE", default="resnet-audit.jsonl", help="where each model's "
                    "row is appended as it finishes, one JSON object a line (default %(default)s)")  # fmt: skip
    group.addoption("--resnet-audit-report", metavar="FILE", action="append", default=[], help="write the audit's "
                    "table to FILE at the end: .txt, .md, .json or .html; repeat for several")  # fmt: skip
    group.addoption("--resnet-audit-timeout", metavar="SECONDS", type=float, default=120.0, help="the time limit of "
                    "one model's process (default %(default)s)")  # fmt: skip
    group.addoption("--resnet-audit-resume", action="store_true", help="keep the results file's rows and audit only "
                    "the models it does not have yet")  # fmt: skip


def pytest_load_initial_conftests(early_config: pytest.Config, parser: pytest.Parser, args: list[str]) -> None:
    """With ``--resnet-impl``, add the conformance suite to what pytest collects."""
    known = parser.parse_known_args(args)
    if getattr(known, "resnet_impl", None) and str(_SUITE) not in args:
        args.append(str(_SUITE))
    if getattr(known, "resnet_audit", None) and str(_AUDIT_SUITE) not in args:
        args.append(str(_AUDIT_SUITE))


def pytest_pycollect_makemodule(module_path: Path, parent: pytest.Collector) -> pytest.Module | None:
    """The suite's tests are named ``resnet_spec/conformance_tests.py::test_...`` wherever the package is installed."""
    if module_path not in _NODE_IDS:
        return None
    return pytest.Module.from_parent(parent, path=module_path, nodeid=_NODE_IDS[module_path])


@pytest.hookimpl(trylast=True)  # after the terminal reporter: the comparisons' progress lines go through it
def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "cuda: needs a CUDA device; skipped with the reason where none is present")
    if config.getoption("resnet_audit", None):
        _configure_audit(config)
    targets = config.getoption("resnet_impl", None)
    if not targets:
        return
    workerinput = getattr(config, "workerinput", None)
    if workerinput is not None and _WORKER_KEY in workerinput:  # a pytest-xdist worker: the controller compared
        models: list[Model] = pickle.loads(base64.b64decode(workerinput[_WORKER_KEY]))  # our controller's data
    else:
        models = _compare_all(config, list(targets))
        if config.pluginmanager.hasplugin("xdist"):
            config.pluginmanager.register(_ToWorkers(models), "resnet-spec-to-workers")
    config.stash[_MODELS] = models
    config.pluginmanager.register(_VerdictWatch(), "resnet-spec-verdict")


def models_of(config: pytest.Config) -> list[Model]:
    """The models of this session's ``--resnet-impl`` options, each with its comparison."""
    return config.stash.get(_MODELS, [])


def _per_model(config: pytest.Config, name: str, count: int) -> list[str | None]:
    """An option given once (for every model) or once per ``--resnet-impl``; UsageError otherwise."""
    values: list[str] | None = config.getoption(f"resnet_{name}", None)
    if not values:
        return [None] * count
    if len(values) == 1:
        return [values[0]] * count
    if len(values) != count:
        raise pytest.UsageError(f"--resnet-{name} is given {len(values)} times for {count} --resnet-impl: give it once "
                                "(for every model) or once per --resnet-impl, in their order")  # fmt: skip
    return list(values)


def _label(target: str, taken: set[str]) -> str:
    """The model's name in test ids: the target's expression (``torchvision.models:resnet50`` -> ``resnet50``,
    ``timm:create_model('resnet50d')`` -> ``create_model-resnet50d``), unique in the session."""
    expression = target.rpartition(":")[2] or target
    label = re.sub(r"[^A-Za-z0-9_.]+", "-", expression).strip("-") or "model"
    unique, n = label, 1
    while unique in taken:
        n += 1
        unique = f"{label}-{n}"
    taken.add(unique)
    return unique


def _compare_all(config: pytest.Config, targets: list[str]) -> list[Model]:
    """Each target compared with its entry in a process of its own; anything that keeps a comparison from being made
    is one usage error."""
    from ..sandbox import ContainedError
    from ..spec import KNOBS, SpecError
    from ..verify import RemoteSubject, SubjectError, TraceError, check_target, compare_subject, equivalence_input
    from ._assert import load_target_spec

    arches = _per_model(config, "arch", len(targets))
    if None in arches:
        raise pytest.UsageError("--resnet-impl needs --resnet-arch NAME: the table entry the model should be")
    knobs = {knob: _per_model(config, knob, len(targets)) for knob in KNOBS}
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    taken: set[str] = set()
    models = []
    for i, (target, arch) in enumerate(zip(targets, arches, strict=True)):
        try:
            spec = load_target_spec(str(arch), **{knob: values[i] for knob, values in knobs.items()})
        except (SpecError, LookupError, TypeError) as e:
            raise pytest.UsageError(f"--resnet-arch {arch!r}: {e}") from None
        try:
            check_target(target, checkpoints=False)
        except SubjectError as e:
            raise pytest.UsageError(str(e).replace("target ", "--resnet-impl ", 1)) from None
        label = _label(target, taken)
        if reporter is not None and config.option.verbose >= 0:
            reporter.write(f"resnet-spec: comparing {label} ({target}) with {spec.label} ... ")
        start = time.perf_counter()
        try:
            with RemoteSubject(target) as subject:
                comparison = compare_subject(subject, spec, (spec.input_size, spec.input_size))
                cuda = _cuda(subject, equivalence_input(spec))
        except (TraceError, ContainedError) as e:
            if reporter is not None and config.option.verbose >= 0:
                reporter.write_line("failed")
            message = str(e).replace("target '", "--resnet-impl '")  # the library names the target
            if "--resnet-impl" not in message:
                message = f"--resnet-impl {target!r}: {message}"
            raise pytest.UsageError(message) from None
        if reporter is not None and config.option.verbose >= 0:
            reporter.write_line(f"{comparison.verdict.value} ({time.perf_counter() - start:.1f} s)")
        models.append(Model(label, target, spec, comparison, cuda))
    return models


def _cuda(subject: Any, shape: tuple[int, int, int, int]) -> float | str | None:
    import torch

    return subject.cuda_difference(shape) if torch.cuda.is_available() else None


def _proxy(items: dict[str, Any]) -> types.MappingProxyType[str, Any]:
    return types.MappingProxyType(items)


class _ToWorkers:
    """Sends the controller's comparisons to each pytest-xdist worker (registered only where xdist is)."""

    def __init__(self, models: list[Model]) -> None:
        buffer = io.BytesIO()
        pickler = pickle.Pickler(buffer)
        # the comparisons' read-only mappings travel as what they are
        pickler.dispatch_table = {**copyreg.dispatch_table, types.MappingProxyType: lambda m: (_proxy, (dict(m),))}
        pickler.dump(models)
        self.payload = base64.b64encode(buffer.getvalue()).decode()

    def pytest_configure_node(self, node: Any) -> None:
        node.workerinput[_WORKER_KEY] = self.payload


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


# ---- the audit of a model zoo ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Zoo:
    """``--resnet-audit``: the source, its models still to audit, where the rows go."""

    source: str
    models: list[Any]  # resnet_spec.verify.ZooModel, in the source's order
    results: Path
    timeout: float
    order: list[str]  # every model of the source (those audited before a resume too)


def zoo_of(config: pytest.Config) -> Zoo | None:
    """This session's ``--resnet-audit``, or None."""
    return config.stash.get(_ZOO, None)


def _configure_audit(config: pytest.Config) -> None:
    """The controller lists the source's models (in a contained child) and sends the list to pytest-xdist's
    workers; the results file is started afresh (or kept, to resume)."""
    from ..verify import SourceError, ZooModel, read_results, zoo_models

    source = str(config.getoption("resnet_audit"))
    results = Path(config.getoption("resnet_audit_results")).resolve()
    timeout = float(config.getoption("resnet_audit_timeout"))
    if not timeout > 0:
        raise pytest.UsageError(f"--resnet-audit-timeout: expected a positive number of seconds, got {timeout:g}")
    for report in config.getoption("resnet_audit_report"):
        if Path(report).suffix not in REPORT_FORMATS:
            raise pytest.UsageError(f"--resnet-audit-report {report!r}: expected a file ending in "
                                    f"{', '.join(REPORT_FORMATS)}")  # fmt: skip
    workerinput = getattr(config, "workerinput", None)
    if workerinput is not None and _ZOO_KEY in workerinput:
        names, targets, order = workerinput[_ZOO_KEY]
        models = [ZooModel(n, t) for n, t in zip(names, targets, strict=True)]
    else:
        try:
            listed = zoo_models(source)
        except SourceError as e:
            raise pytest.UsageError(f"--resnet-audit: {e}") from None
        order = [m.name for m in listed]
        done = set()
        if config.getoption("resnet_audit_resume") and results.is_file():
            done = {row.model for row in read_results(results)}
        else:
            results.parent.mkdir(parents=True, exist_ok=True)
            results.write_text("")
        models = [m for m in listed if m.name not in done]
        if config.pluginmanager.hasplugin("xdist"):
            payload = ([m.name for m in models], [m.target for m in models], order)
            config.pluginmanager.register(_ZooToWorkers(payload), "resnet-spec-zoo-to-workers")
        config.pluginmanager.register(_AuditReport(), "resnet-spec-audit-report")
    config.stash[_ZOO] = Zoo(source, models, results, timeout, order)


_ZOO_KEY = "resnet_spec_zoo"


class _ZooToWorkers:
    def __init__(self, payload: tuple[list[str], list[str], list[str]]) -> None:
        self.payload = payload

    def pytest_configure_node(self, node: Any) -> None:
        node.workerinput[_ZOO_KEY] = self.payload


class _AuditReport:
    """On the controller, at the end: the results file's rows in the source's order, as the reports asked for and
    in the terminal summary."""

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
        from ..verify import read_results, render_audit

        zoo = zoo_of(config)
        if zoo is None or not zoo.results.is_file():
            return
        position = {name: i for i, name in enumerate(zoo.order)}
        rows = sorted((r for r in read_results(zoo.results) if r.model in position), key=lambda r: position[r.model])
        for report in config.getoption("resnet_audit_report"):
            path = Path(report)
            path.write_text(render_audit(rows, REPORT_FORMATS[path.suffix], source=zoo.source), encoding="utf-8")
        if config.option.verbose >= 0:
            terminalreporter.write_sep("=", f"resnet-spec audit of {zoo.source}")
            terminalreporter.write(render_audit(rows, "text"))
