"""The verdict: one type and one policy, from which the CLI's exit status, ``assert_conforms`` and the pytest plugin's
outcome all derive.

* **conformant** (exit 0): the table's structure, the same function for every choice of weights (the logits equal in
  eval and train mode under a one-to-one correspondence of parameters, modulo the network's symmetries), the same
  parameters;
* **equivalent** (exit 0): the same function and parameters, spelled otherwise (structural findings that the numbers
  show change nothing: a batch norm written by hand, the classifier as a 1x1 conv before the pool);
* **not conformant** (exit 1): the numbers differ, or the parameters do (missing, redundant, tied, unused, another
  count: the same function with other parameters is another network), or the structure differs where the reading is
  complete and the numbers could not be computed;
* **undecided** (exit 2): neither the structure nor the numbers can decide (operators the reader does not interpret
  and weights that cannot be transferred; fixed data the function applies, such as a blur's filter or a pruning
  mask, that the model holds no values for; a model that does not run as the numbers run it, in float64 on the CPU
  or in train mode, whatever its structure) — never a guess either way.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum
from typing import TYPE_CHECKING

from ._structure import Mismatch

if TYPE_CHECKING:
    from ._functional import Equivalence

__all__ = ["Verdict", "decide"]


class Verdict(StrEnum):
    """What a comparison concludes; compares equal to its text ("conformant", ...)."""

    CONFORMANT = "conformant"
    EQUIVALENT = "equivalent"
    NOT_CONFORMANT = "not conformant"
    UNDECIDED = "undecided"

    def __repr__(self) -> str:
        return repr(self.value)

    @property
    def exit_status(self) -> int:
        """0 conforms (conformant or equivalent), 1 does not, 2 undecided."""
        return {"conformant": 0, "equivalent": 0, "not conformant": 1}.get(self.value, 2)

    @property
    def conforms(self) -> bool:
        return self.exit_status == 0


def _definite(m: Mismatch, complete: bool) -> bool:
    """A parameter finding that holds whatever the reader could not interpret: the total, a tensor never used or
    used twice; per row and per layer only where the reading is complete."""
    return complete or m.row == "model" or m.property == "unused parameter" or m.property.endswith("tied")


def decide(
    mismatches: Sequence[Mismatch], complete: bool, notes: Sequence[str], equivalence: Equivalence | None
) -> Verdict:
    """The policy (see the module docstring).  ``complete``: the reader understood every operator from the stem to
    the logits; ``notes``: what the structure leaves open (operators before conv1 or after the logits);
    ``equivalence``: the numerical check, None when it was not asked for."""
    eq = equivalence
    parameters = [m for m in mismatches if m.kind == "parameters" and _definite(m, complete)]
    if eq is not None and eq.status == "differs":
        return Verdict.NOT_CONFORMANT
    if parameters:
        return Verdict.NOT_CONFORMANT
    if eq is not None and eq.data_unknown:
        return Verdict.UNDECIDED  # its fixed data (a filter, a mask) have no values: what it computes is unknown
    if eq is not None and eq.status == "equal":
        return Verdict.EQUIVALENT if mismatches else Verdict.CONFORMANT
    if mismatches:
        return Verdict.NOT_CONFORMANT if complete else Verdict.UNDECIDED
    if not complete:
        return Verdict.UNDECIDED
    if eq is None:
        return Verdict.CONFORMANT  # the structure alone was asked for
    if notes or eq.status == "unmapped" or eq.failed:
        return Verdict.UNDECIDED  # what the model computes is not shown: it does not run as the check runs it
    return Verdict.CONFORMANT  # the numbers were not run (too large; the reference itself), the structure is complete
