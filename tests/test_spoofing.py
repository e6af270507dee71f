"""Models that try to forge their verdict are never "conformant", through any face.

The spoofs are ``support/spoofs/*.py`` (each patches the checker or torch when imported: the verdict, the functional
check, ``F.conv2d``, ``F.batch_norm``, ``Tensor.__add__``) and ``tests/support/spoofing_models.py`` (a ResNet-20 that is
itself only while the checker looks the way it used to: on the meta device, in float64, without gradients, at odd
input sizes, under a dispatch mode, for its first calls; a forward that writes its weights or statistics; noise in
eval mode).  Each is named by a target, so it runs in a process of its own: this process never imports one.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from test_verdicts import _plugin_args

from resnet_spec import assert_conforms
from resnet_spec.cli import run_command
from resnet_spec.verify import Comparison
from resnet_spec.verify import _compare as compare
from resnet_spec.verify import _verdict as verdict

SUPPORT = Path(__file__).resolve().parent / "support"
MODELS = SUPPORT / "spoofing_models.py"

# (target, arch, what the report must name): the finding that gives the spoof away
SPOOFS: list[tuple[str, str, str]] = [
    (f"{SUPPORT / 'spoofs' / 'patch_verdict.py'}:model()", "resnet20", "the structure differs"),
    (f"{SUPPORT / 'spoofs' / 'patch_equivalence.py'}:model()", "resnet20", "eps"),
    (f"{SUPPORT / 'spoofs' / 'patch_conv2d.py'}:model()", "resnet20", "does NOT conform"),
    (f"{SUPPORT / 'spoofs' / 'patch_batch_norm.py'}:model()", "resnet20", "does NOT conform"),
    (f"{SUPPORT / 'spoofs' / 'patch_add.py'}:model()", "resnet20", "does NOT conform"),
    (f"{MODELS}:meta_only()", "resnet20", "by computation"),
    (f"{MODELS}:float64_only()", "resnet20", "output as used"),
    (f"{MODELS}:no_grad_only()", "resnet20", "output as used"),
    (f"{MODELS}:odd_sizes_only()", "resnet20", "output as used"),
    (f"{MODELS}:dispatch_mode_only()", "resnet20", "output as used"),
    (f"{MODELS}:small_batches_only()", "resnet20", "output as used"),
    (f"{MODELS}:first_calls(3)", "resnet20", "by computation"),
    (f"{MODELS}:first_calls(12)", "resnet20", "by computation"),
    (f"{MODELS}:writes_weight()", "resnet20", "written by the forward pass"),
    (f"{MODELS}:writes_weight_data()", "resnet20", "by computation"),
    (f"{MODELS}:writes_running_mean()", "resnet20", "written by the forward pass"),
    (f"{MODELS}:updates_statistics_in_eval()", "resnet20", "statistics"),
    (f"{MODELS}:eval_noise()", "resnet20", "by computation"),
]
# By default a patch of the checker; every spoof under the slow marker.
_QUICK = {"patch_verdict.py:model()"}


def _params() -> list[object]:
    return [
        pytest.param(target, arch, words, id=target.rsplit("/", 1)[-1],
                     marks=[] if target.rsplit("/", 1)[-1].split(":")[-1] in _QUICK
                     or target.rsplit("/", 1)[-1] in _QUICK else [pytest.mark.slow])
        for target, arch, words in SPOOFS
    ]  # fmt: skip


@pytest.mark.parametrize(("target", "arch", "words"), _params())
def test_a_spoof_is_never_conformant_through_any_face(
    target: str, arch: str, words: str, pytester: pytest.Pytester, capsys: pytest.CaptureFixture[str]
) -> None:
    """compare exits 1 with the finding that gives the spoof away, assert_conforms raises, the plugin fails; and this
    process's checker is untouched (the spoof's patches stayed in its own process)."""
    status = run_command("compare", ["--arch", arch, "--impl", target])
    out = capsys.readouterr().out
    assert status == 1, out
    assert words in out, out
    with pytest.raises(AssertionError, match=r"not conformant: does NOT conform"):
        assert_conforms(target, arch)
    result = pytester.runpytest_inprocess(*_plugin_args(), "--resnet-impl", target, "--resnet-arch", arch, "-q",
                                          "-p", "no:cacheprovider")  # fmt: skip
    assert int(result.ret) == 1, "\n".join(result.outlines[-15:])
    spoofs = {MODELS, *(SUPPORT / "spoofs").glob("*.py")}
    assert not [m for m in list(sys.modules.values()) if Path(getattr(m, "__file__", None) or "/").resolve() in spoofs]
    assert Comparison.verdict.fget is not None and Comparison.verdict.fget.__module__ == "resnet_spec.verify._compare"
    assert compare.decide is verdict.decide and verdict.decide.__code__.co_filename == verdict.__file__


def test_a_model_that_refuses_to_run_as_the_numbers_run_it_is_undecided(capsys: pytest.CaptureFixture[str]) -> None:
    """Its structure on the meta device is the table's, but what it computes is never shown: exit 2 with the reason
    (it was 'conformant' on the structure alone), and assert_conforms raises."""
    status = run_command("compare", ["--arch", "resnet20", "--impl", f"{MODELS}:refuses_float64()"])
    captured = capsys.readouterr()
    assert status == 2 and "float64 is not supported" in captured.err, captured
    with pytest.raises(AssertionError, match="undecided"):
        assert_conforms(f"{MODELS}:refuses_float64()", "resnet20")


def test_a_model_that_counts_further_than_the_checker_is_beyond_it(capsys: pytest.CaptureFixture[str]) -> None:
    """The limit docs/threat-model.md states: a model honest for its first hundred calls conforms (the checker calls
    a model a fixed number of times; a model that counts further cannot be told from the table's network)."""
    assert run_command("compare", ["--arch", "resnet20", "--impl", f"{MODELS}:first_calls(100)", "--quiet"]) == 0
    capsys.readouterr()
