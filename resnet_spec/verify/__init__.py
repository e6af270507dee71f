"""Judging anyone's ResNet against the tables: the verify ladder.

    subject -> trace -> canonical -> read -> ALIGN (found x plan) -> diff | transfer -> equivalence -> verdict

* :mod:`~resnet_spec.verify.alignment`: where every found operator and tensor sits in the layout plan, once;
* :mod:`~resnet_spec.verify.structure`: the structural diff of the alignment against the table;
* :mod:`~resnet_spec.verify.equivalence`: the same function for every weight, decided by computation;
* :mod:`~resnet_spec.verify.verdict`: the one policy every face (CLI, ``assert_conforms``, the plugin) derives from;
* :mod:`~resnet_spec.verify.compare`: the ladder for a model object, and the best-matching table entries.
"""

from .alignment import Alignment, BlockMatch, Place, Slot, align, align_blocks
from .compare import Comparison, best_matches, compare_model, compare_subject, structural_comparison
from .equivalence import Equivalence, RowCheck, check_equivalence, equivalence_input, not_run, tolerance
from .structure import KINDS, Mismatch, RowView, Structure, Value, diff
from .verdict import Verdict, decide

__all__ = [
    "KINDS",
    "Alignment",
    "BlockMatch",
    "Comparison",
    "Equivalence",
    "Mismatch",
    "Place",
    "RowCheck",
    "RowView",
    "Slot",
    "Structure",
    "Value",
    "Verdict",
    "align",
    "align_blocks",
    "best_matches",
    "check_equivalence",
    "compare_model",
    "compare_subject",
    "decide",
    "diff",
    "equivalence_input",
    "not_run",
    "structural_comparison",
    "tolerance",
]
