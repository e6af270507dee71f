"""The conformance suite, collected by pytest when ``--resnet-impl TARGET --resnet-arch NAME`` is given.

Every test is a view of one comparison (the verdict ``tools/compare.py`` and ``assert_conforms`` give on the same
model), so the suite passes exactly when the model conforms, and each failing test says the row, the block, the
model's own module, what was expected and what was found:

- ``test_structure[ROW]``: the row read from the model's dataflow against the table (and ``[model]``: what belongs
  to no row);
- ``test_params``: the parameters: the count, exact, and every tensor in its one place (none missing, redundant,
  tied or unused);
- ``test_macs``: multiply-adds of convs and the classifier at the table's input size;
- ``test_equivalence[ROW]``: the numbers: with the model's weights in the reference (and the reference's in the
  model) the logits are equal in eval and train mode; a difference fails the row where it first shows;
- ``test_verdict``: the verdict itself, in one line;
- ``test_cuda_equals_cpu`` (marked ``cuda``; skipped with the reason where no GPU is present).

Where the model is equivalent but written differently, the structural findings that do not change its function are
shown as warnings, and the tests pass.  An undecided verdict skips what it cannot decide and the session exits 2.
"""

from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass
from functools import cache

import pytest
import torch
from torch import nn

from .conformance import load_target_spec
from .pytest_plugin import option_values
from .spec import ResNetSpec, SpecError
from .subject import SubjectError, make_subject
from .trace import TraceError, materialize
from .verify import Comparison, Mismatch, Verdict, compare_model, equivalence_input
from .verify.report import finding_line, undecided_reason, verdict_text


@dataclass
class _Subject:
    target: str
    model: nn.Module
    spec: ResNetSpec
    comparison: Comparison


@cache
def _spec(arch: str, variant: str | None, shortcut: str | None) -> ResNetSpec:
    try:
        return load_target_spec(arch, variant, shortcut)
    except (SpecError, LookupError) as e:
        raise pytest.UsageError(f"--resnet-arch {arch!r}: {e}") from e


def _config_spec(config: pytest.Config) -> ResNetSpec:
    options = option_values(config)
    return _spec(str(options["arch"]), options["variant"], options["shortcut"])


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "row" in metafunc.fixturenames:
        rows = list(_config_spec(metafunc.config).rows)
        if metafunc.function.__name__ == "test_structure":
            rows.append("model")
        metafunc.parametrize("row", rows)


@pytest.fixture(scope="session")
def subject(pytestconfig: pytest.Config) -> _Subject:
    target = str(option_values(pytestconfig)["impl"])
    spec = _config_spec(pytestconfig)
    try:
        model, _ = make_subject(target)
        comparison = compare_model(model, spec)
    except (SubjectError, TraceError) as e:
        pytest.fail(f"--resnet-impl {target!r}: {e}", pytrace=False)
    return _Subject(target, model, spec, comparison)


def _judge(subject: _Subject, findings: list[Mismatch], undecided_skips: bool = True) -> None:
    """Fail with ``findings`` where the verdict is "not conformant"; warn with them where it is "equivalent"."""
    verdict = subject.comparison.verdict
    if not findings:
        return
    if verdict == Verdict.NOT_CONFORMANT:
        pytest.fail("\n".join(finding_line(m) for m in findings), pytrace=False)
    if verdict == Verdict.UNDECIDED and undecided_skips:
        pytest.skip(f"undecided: {undecided_reason(subject.comparison)}")
    for m in findings:  # equivalent: written differently, the same function and parameters
        warnings.warn(f"written differently (the same function): {finding_line(m)}", UserWarning, stacklevel=2)


# ---- structure and totals -------------------------------------------------------------------------------------

_TOTALS = ("params", "MACs (conv+fc)")


def test_structure(subject: _Subject, row: str) -> None:
    """The row read from the model's dataflow is the table's row."""
    found = [m for m in subject.comparison.mismatches
             if m.row == row and m.kind == "structure" and m.property not in _TOTALS]  # fmt: skip
    _judge(subject, found)


def test_params(subject: _Subject) -> None:
    """Parameters: the table's count (arithmetic over its layers), each tensor in one place of the table."""
    _judge(subject, [m for m in subject.comparison.mismatches if m.kind == "parameters"])


def test_macs(subject: _Subject) -> None:
    """Multiply-adds of convs and the classifier at the table's input size, against the table's."""
    _judge(subject, [m for m in subject.comparison.mismatches if m.property == "MACs (conv+fc)"])


def test_equivalence(subject: _Subject, row: str) -> None:
    """The numbers: where the logits differ, the row where the difference first shows fails."""
    eq = subject.comparison.equivalence
    if eq is None or eq.status == "skipped":
        pytest.skip(f"functional check not run: {eq.reason if eq is not None else 'not requested'}")
    if eq.status == "unmapped":
        pytest.skip(f"not computed: the model's tensors could not be transferred ({eq.block or eq.row}: {eq.reason})")
    _judge(subject, [m for m in subject.comparison.mismatches if m.kind == "computation" and m.row == row])


def test_verdict(subject: _Subject, request: pytest.FixtureRequest) -> None:
    """The verdict, as ``compare`` gives it."""
    comparison = subject.comparison
    request.node.user_properties.append(("resnet_spec_verdict", comparison.verdict.value))
    if comparison.verdict == Verdict.UNDECIDED:
        pytest.skip(f"undecided: {undecided_reason(comparison)}")
    if not comparison.conformant:
        pytest.fail(verdict_text(comparison), pytrace=False)


@pytest.mark.cuda
def test_cuda_equals_cpu(subject: _Subject) -> None:
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device; none is available (torch.cuda.is_available() is False)")
    spec = subject.spec
    cpu = materialize(subject.model).float().eval()
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for tensor in (*cpu.parameters(), *cpu.buffers()):
            if tensor.is_floating_point():
                tensor.uniform_(0.5, 1.5, generator=generator) if tensor.dim() <= 1 else tensor.normal_(
                    0, 0.05, generator=generator)  # fmt: skip
    gpu = copy.deepcopy(cpu).cuda()
    x = torch.randn(equivalence_input(spec), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected, found = cpu(x), gpu(x.cuda())
    expected = expected if isinstance(expected, torch.Tensor) else expected[0]
    found = found if isinstance(found, torch.Tensor) else found[0]
    difference = float((found.cpu() - expected).abs().max() / expected.abs().max().clamp_min(1e-30))
    if difference > 1e-4:  # float32 on two devices: different kernels, different summation orders
        pytest.fail(f"fc: CUDA logits differ from CPU logits (maximum relative difference {difference:.1e}, "
                    "tolerance 1e-4 in float32)", pytrace=False)  # fmt: skip
