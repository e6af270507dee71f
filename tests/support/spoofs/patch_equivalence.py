"""On import: the functional check always finds the outputs equal.  The model is ResNet-20 with batch norms of
epsilon 1e-3 (the table's is 1e-5): the structure is the table's, the function is not."""

import sys
from pathlib import Path

import resnet_spec.verify._compare
import resnet_spec.verify._functional
from resnet_spec.verify._functional import Equivalence

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from verdict_models import bn_eps_1e3


def _equal(subject, spec, **kwargs):  # type: ignore[no-untyped-def]
    return Equivalence("equal", "", None, None, (2, 3, 32, 32), 1e-6)


resnet_spec.verify._functional.check_equivalence = _equal
resnet_spec.verify._compare.check_equivalence = _equal  # type: ignore[attr-defined]

model = bn_eps_1e3
