"""``assert_conforms``: the conformance verdict inside a user's own test."""

from __future__ import annotations

from torch import nn

from .spec import ResNetSpec, load_spec
from .verify import Comparison, best_matches, compare_model
from .verify.report import render

__all__ = ["assert_conforms", "load_target_spec"]


def load_target_spec(arch: ResNetSpec | str, variant: str | None = None, shortcut: str | None = None) -> ResNetSpec:
    """``arch`` as a spec: a loaded one, or a name / ``FILE.toml:NAME`` with the given stride variant and shortcut."""
    if isinstance(arch, ResNetSpec):
        if variant is not None or shortcut is not None:
            raise TypeError("variant and shortcut need a spec name, not a loaded ResNetSpec")
        return arch
    overrides = {key: value for key, value in (("variant", variant), ("shortcut", shortcut)) if value is not None}
    return load_spec(arch, **overrides)


def assert_conforms(
    model: nn.Module,
    arch: ResNetSpec | str,
    variant: str | None = None,
    shortcut: str | None = None,
    input_size: tuple[int, int] | None = None,
) -> Comparison:
    """Raise ``AssertionError`` with the report unless ``model`` conforms to ``arch`` (structure and computation).

    ``assert_conforms(model, "resnet50", variant="v1.5")`` gives the verdict of ``tools/compare.py``: it passes for
    "conformant" and for "functionally equivalent, written differently", and returns the comparison.
    """
    spec = load_target_spec(arch, variant, shortcut)
    comparison = compare_model(model, spec, input_size)
    if not comparison.conformant:
        best = best_matches(comparison.found, spec.family, comparison.input_size) if comparison.mismatches else []
        report = render(comparison, type(model).__name__, best)
        raise AssertionError(f"{type(model).__name__}: {comparison.verdict}\n{report}")
    return comparison
