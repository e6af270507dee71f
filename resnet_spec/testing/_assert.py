"""``assert_conforms``: the conformance verdict inside a user's own test."""

from __future__ import annotations

from torch import nn

from ..spec import ResNetSpec, as_spec, load_spec
from ..verify import Comparison, best_matches, compare_subject, input_size_of, render, subject_of, verdict_text

__all__ = ["assert_conforms", "load_target_spec"]


def load_target_spec(arch: ResNetSpec | str, **overrides: str | None) -> ResNetSpec:
    """``arch`` as a spec: a loaded one, or a name / ``FILE.toml:NAME`` under the named deviations given
    (``variant=``, ``shortcut=``, ``stem_pool=``; None: the table's)."""
    given = {knob: value for knob, value in overrides.items() if value is not None}
    if isinstance(arch, ResNetSpec):
        if given:
            raise TypeError(f"{', '.join(given)} need a spec name, not a loaded ResNetSpec")
        return arch
    if not isinstance(arch, str):
        as_spec(arch, "assert_conforms")  # TypeError naming the argument
    return load_spec(arch, **given)


def assert_conforms(
    model: nn.Module | str,
    arch: ResNetSpec | str,
    *,
    input_size: int | tuple[int, int] | None = None,
    **overrides: str | None,
) -> Comparison:
    """Raise ``AssertionError`` with the report unless ``model`` conforms to ``arch`` (structure and computation).

    ``assert_conforms(model, "resnet50", variant="v1.5")`` gives the verdict of ``tools/compare.py``: it passes for
    "conformant" and for "functionally equivalent, written differently", and returns the comparison; it raises for
    "not conformant" and for "undecided" (no pass without a complete verdict).  ``model`` is an ``nn.Module`` or a
    ``MODULE:EXPRESSION`` target (run in a contained process of its own, as ``compare --impl`` runs it); anything else
    is a TypeError naming the argument.  ``input_size`` is one int (square) or (height, width); the other keywords
    are the tables' named deviations (``variant=``, ``shortcut=``, ``stem_pool=``).  The message starts
    with the verdict in one line, then the report.
    """
    __tracebackhide__ = True  # pytest shows the caller's line, not this function's source
    spec = load_target_spec(arch, **overrides)
    size = input_size_of(input_size, spec, "assert_conforms")
    subject = subject_of(model, "assert_conforms")
    with subject:
        comparison = compare_subject(subject, spec, size)
    if not comparison.conformant:
        name = model if isinstance(model, str) else type(model).__name__
        structural = comparison.verdict == "not conformant" and any(
            m.kind == "structure" for m in comparison.mismatches
        )
        best = best_matches(comparison.found, spec.family, comparison.input_size,
                            inference=comparison.inference_form) if structural else []  # fmt: skip
        raise AssertionError(f"{name}: {comparison.verdict}: {verdict_text(comparison, best)}\n\n"
                             f"{render(comparison, name, best)}")  # fmt: skip
    return comparison
