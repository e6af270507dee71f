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

import warnings

import pytest

from ..verify import CUDA_TOLERANCE, Mismatch, Verdict, finding_line, undecided_reason, verdict_text
from .plugin import Model, models_of


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Every test once per model (its label in the id), the row tests once per row of the model's entry."""
    if "subject" not in metafunc.fixturenames:
        return
    models = models_of(metafunc.config)
    if "row" not in metafunc.fixturenames:
        metafunc.parametrize("subject", models, ids=[m.label for m in models])
        return
    extra = ["model"] if metafunc.function.__name__ == "test_structure" else []
    pairs = [(m, row) for m in models for row in [*m.spec.rows, *extra]]
    metafunc.parametrize(("subject", "row"), pairs, ids=[f"{m.label}:{row}" for m, row in pairs])


def _judge(subject: Model, findings: list[Mismatch], undecided_skips: bool = True) -> None:
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


def test_structure(subject: Model, row: str) -> None:
    """The row read from the model's dataflow is the table's row."""
    found = [m for m in subject.comparison.mismatches
             if m.row == row and m.kind == "structure" and m.property not in _TOTALS]  # fmt: skip
    _judge(subject, found)


def test_params(subject: Model) -> None:
    """Parameters: the table's count (arithmetic over its layers), each tensor in one place of the table."""
    _judge(subject, [m for m in subject.comparison.mismatches if m.kind == "parameters"])


def test_macs(subject: Model) -> None:
    """Multiply-adds of convs and the classifier at the table's input size, against the table's."""
    _judge(subject, [m for m in subject.comparison.mismatches if m.property == "MACs (conv+fc)"])


def test_equivalence(subject: Model, row: str) -> None:
    """The numbers: where the logits differ, the row where the difference first shows fails."""
    eq = subject.comparison.equivalence
    if eq is None or eq.status == "skipped":
        pytest.skip(f"functional check not run: {eq.reason if eq is not None else 'not requested'}")
    if eq.status == "unmapped":
        pytest.skip(f"not computed: the model's tensors could not be transferred ({eq.block or eq.row}: {eq.reason})")
    _judge(subject, [m for m in subject.comparison.mismatches if m.kind == "computation" and m.row == row])


def test_verdict(subject: Model, request: pytest.FixtureRequest) -> None:
    """The verdict, as ``compare`` gives it."""
    comparison = subject.comparison
    request.node.user_properties.append(("resnet_spec_verdict", comparison.verdict.value))
    if comparison.verdict == Verdict.UNDECIDED:
        pytest.skip(f"undecided: {undecided_reason(comparison)}")
    if not comparison.conformant:
        pytest.fail(verdict_text(comparison), pytrace=False)


@pytest.mark.cuda
def test_cuda_equals_cpu(subject: Model) -> None:
    """The model's logits on the GPU equal its CPU logits (float32, drawn weights), measured in its own process."""
    if subject.cuda is None:
        pytest.skip("needs a CUDA device; none is available (torch.cuda.is_available() is False)")
    if isinstance(subject.cuda, str):
        pytest.fail(f"fc: the model does not run on CUDA: {subject.cuda}", pytrace=False)
    if subject.cuda > CUDA_TOLERANCE:  # float32 on two devices: different kernels, different summation orders
        pytest.fail(f"fc: CUDA logits differ from CPU logits (maximum relative difference {subject.cuda:.1e}, "
                    f"tolerance {CUDA_TOLERANCE:g} in float32)", pytrace=False)  # fmt: skip
