"""One verdict for every class of model, and the same verdict from every face.

The models are ``support/verdict_models.py`` (written independently of resnet_spec; each case says the verdict the
paper's definition gives it and why), ``support/written_differently.py`` and ``support/broken_resnets.py``.  Expected
counts are arithmetic over Sec. 4.2's ResNet-20 (FACTS.md): 3x3 convs, 16/32/64 filters, 3 blocks per stage, a
10-way fc.
"""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

import pytest
from test_compare import BROKEN
from test_equivalence import FUNCTION_CHANGES
from test_reader import DEFECTS, SPELLINGS
from verdict_models import CASES

from resnet_spec import load_spec
from resnet_spec.cli import run_command
from resnet_spec.testing import assert_conforms
from resnet_spec.verify import compare_model, render

SUPPORT = Path(__file__).resolve().parent / "support"
ROOT = SUPPORT.parent
MODELS = SUPPORT / "verdict_models.py"


def _comparison(name: str):  # type: ignore[no-untyped-def]
    case = CASES[name]
    spec = load_spec(case.arch, **({"variant": case.variant} if case.variant else {}))
    return compare_model(case.factory(), spec)


def _cases() -> list[object]:
    return [pytest.param(name, marks=[pytest.mark.slow] if case.slow else [], id=name) for name, case in CASES.items()]


@pytest.mark.parametrize("name", _cases())
def test_each_class_of_model_gets_its_verdict(name: str) -> None:
    case = CASES[name]
    comparison = _comparison(name)
    report = render(comparison, name)
    assert comparison.verdict == case.verdict, report
    if case.verdict != "not conformant":
        return
    hits = [
        m for m in comparison.mismatches
        if case.where in (m.where, m.row) or any(p == case.where or p.startswith(f"{case.where}.") for p in m.blocks)
    ]  # fmt: skip
    if case.says is not None:
        hits = [m for m in hits if case.says in m.property or case.says in str(m.found)]
    assert hits, f"expected a finding at {case.where} saying {case.says!r}:\n{report}"


def test_the_batch_norm_epsilon_is_named() -> None:
    comparison = _comparison("bn_eps_1e3")
    (finding,) = [m for m in comparison.mismatches if m.kind == "computation"]
    # the first batch norm, the stem's (PyTorch's default epsilon is the reference's: 1e-5)
    assert (finding.row, finding.property, finding.expected, finding.found, finding.module) == (
        "conv1", "bn1.eps", 1e-5, 1e-3, "bn")  # fmt: skip
    assert "by computation: conv1 (bn) bn1.eps: expected 1e-05, found 0.001" in render(comparison, "m")


def test_batch_statistics_in_eval_mode_are_named() -> None:
    comparison = _comparison("bn_without_running_stats")
    (finding,) = [m for m in comparison.mismatches if m.kind == "computation"]
    assert (finding.row, finding.found) == ("conv1", "batch statistics in eval mode")


@pytest.mark.parametrize("name", ["zeros_both_sides_20", "zeros_both_sides_110"])
def test_option_a_zeros_on_both_sides_is_the_table_up_to_a_permutation(name: str) -> None:
    comparison = _comparison(name)
    assert comparison.equivalence is not None
    assert comparison.equivalence.permuted == ("conv3_1", "conv4_1")  # where the channels grow (Sec. 4.2)
    assert "up to a permutation of channels" in render(comparison, name)


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("fc_without_bias", "with 1 missing bias: -10 parameters"),  # a 10-way fc's bias
        ("conv_bias", f"with 19 redundant conv biases: +{16 + 6 * 16 + 6 * 32 + 6 * 64:,} parameters"),
        ("dead_parameters", f"with 9 unused parameters: +{3 * (16 + 32 + 64):,} parameters"),
        ("bn_without_affine", f"-{2 * (16 + 6 * 16 + 6 * 32 + 6 * 64):,} parameters"),  # 19 BNs' scale and shift
        ("shared_bn", f"-{2 * 3 * (16 + 32 + 64):,} parameters"),  # each block's second BN: its first
        ("tied_convs", "layers tied to another's tensors"),
    ],
)
def test_parameter_findings_say_what_differs_with_the_count(name: str, words: str) -> None:
    comparison = _comparison(name)
    assert comparison.verdict == "not conformant"
    assert words in render(comparison, name)


# ---- every face gives the same verdict -------------------------------------------------------------------------

# Each model as a TARGET: (target, arch, variant or None).
_FACES: list[tuple[str, str, str | None]] = [
    *((f"{MODELS}:{name}", case.arch, case.variant) for name, case in CASES.items()),
    *((f"{SUPPORT / 'written_differently.py'}:{name}", "resnet20", None)
      for name in ("as_written", "hand_bn", "conv_classifier", "frozen_bn", "add_alpha_zero", "logits_times_zero")),
    *((f"{SUPPORT / 'broken_resnets.py'}:Net(**{knobs!r})", name, overrides.get("variant"))
      for _, knobs, name, overrides, *_ in BROKEN),
    *((f"{SUPPORT / 'broken_resnets.py'}:Net(**{knobs!r})", name, overrides.get("variant"))
      for knobs, name, overrides, *_ in FUNCTION_CHANGES),
    *((f"{SUPPORT / 'broken_resnets.py'}:Net(depth=18, **{knobs!r})", "resnet18", None) for _, knobs in SPELLINGS),
    *((f"{SUPPORT / 'broken_resnets.py'}:Net(depth=18, **{knobs!r})", "resnet18", None) for _, knobs, *_ in DEFECTS),
]  # fmt: skip
# By default one model of each exit status; every model (each verdict and kind of reason) under the slow marker.
_QUICK = {
    f"{MODELS}:relu_clamp",  # conformant
    f"{MODELS}:bn_eps_1e3",  # not conformant: the numbers
    f"{MODELS}:flipped_kernels",  # undecided
}


def _plugin_args() -> list[str]:
    installed = any(
        ep.value == "resnet_spec.testing.plugin" for ep in importlib.metadata.entry_points(group="pytest11")
    )
    return [] if installed else ["-p", "resnet_spec.testing.plugin"]


def _face_params() -> list[object]:
    return [
        pytest.param(
            target, arch, variant, marks=[] if target in _QUICK else [pytest.mark.slow], id=target.split("/")[-1]
        )
        for target, arch, variant in _FACES
    ]


@pytest.mark.parametrize(("target", "arch", "variant"), _face_params())
def test_compare_assert_conforms_and_the_plugin_agree(
    target: str, arch: str, variant: str | None, pytester: pytest.Pytester, capsys: pytest.CaptureFixture[str]
) -> None:
    """compare.py's exit status, assert_conforms (passes, raises AssertionError) and the plugin's pytest exit status
    are one verdict: 0 and passing for conformant or equivalent, 1 and raising for not conformant, 2 (and raising:
    no pass without a complete verdict) for undecided."""
    from resnet_spec.verify import make_subject

    options = ["--variant", variant] if variant else []
    status = run_command("compare", ["--arch", arch, "--impl", target, "--quiet", *options])
    capsys.readouterr()
    model, _ = make_subject(target, meta=False)  # the model the CLI builds, its values with it (a pruning mask)
    try:
        assert_conforms(model, arch, variant=variant)
        asserted = 0
    except AssertionError as e:
        asserted = 1 if "not conformant" in str(e).splitlines()[0] else 2
    plugin_options = ["--resnet-variant", variant] if variant else []
    result = pytester.runpytest_inprocess(
        *_plugin_args(), "--resnet-impl", target, "--resnet-arch", arch, *plugin_options, "-q", "-p", "no:cacheprovider"
    )
    assert (status, asserted, int(result.ret)) in ((0, 0, 0), (1, 1, 1), (2, 2, 2)), (
        f"compare {status}, assert_conforms {asserted}, plugin {int(result.ret)}\n" + "\n".join(result.outlines[-15:])
    )


def test_the_old_import_path_still_works_with_a_deprecation_warning() -> None:
    import resnet_spec.diff as old
    from resnet_spec.verify import compare_model as new

    with pytest.warns(DeprecationWarning, match=r"resnet_spec.diff.compare_model moved to resnet_spec.verify"):
        assert old.compare_model is new


def test_a_batch_norm_the_table_has_no_place_for_may_update_its_statistics_in_train_mode() -> None:
    """Projection shortcuts (option B) checked against option A: their batch norms have no place in the table, and
    their running statistics change in train mode as any batch norm's do; that is no finding of its own."""
    import torch
    from broken_resnets import Net

    with torch.device("meta"):
        model = Net(cifar_n=3, shortcut="B")
    comparison = compare_model(model, load_spec("resnet20"))
    assert comparison.verdict == "not conformant"
    assert not [m for m in comparison.mismatches if m.property == "written by the forward pass"], comparison.mismatches


def test_a_mask_the_model_holds_no_values_for_leaves_the_verdict_undecided() -> None:
    """Built on the meta device, a pruned model's mask has no values: what it computes is unknown, so its weight
    "computed by mul" is no finding either way (undecided, naming the mask), where with its values it is equivalent."""
    from resnet_spec.verify import make_subject

    model, _ = make_subject(f"{MODELS}:mask_of_ones")
    assert next(model.buffers()).device.type == "meta"
    comparison = compare_model(model, load_spec("resnet20"))
    assert comparison.verdict == "undecided", render(comparison, "mask_of_ones")
    assert comparison.equivalence is not None and "weight_mask" in comparison.equivalence.reason


def test_a_model_whose_code_fails_when_built_on_the_meta_device_is_built_on_the_cpu() -> None:
    """A target is built on the meta device; where its forward then fails (torch's orthogonal parametrization keeps
    None for a tensor it computes), it is built again on the CPU and checked as its code builds it there."""
    comparison = compare_model(f"{MODELS}:orthogonal_fc", load_spec("resnet20"))
    assert comparison.verdict == "not conformant", render(comparison, "orthogonal_fc")
    assert any("built on the CPU" in note for note in comparison.info), comparison.info
