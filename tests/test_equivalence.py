"""Functional equivalence: the subject's weights in the reference, row by row, in eval and train mode.

The oracles are independent implementations (torchvision; a CIFAR ResNet-20 written out in this file; the broken
models of ``broken_resnets``) and what each defect must change: the row named here is where the paper's network
and the defect first compute something different (a stride moved in conv3_1 changes conv3_x onwards).
"""

from __future__ import annotations

import json

import pytest
import torch
import torchvision
from broken_resnets import Net
from written_differently import Cifar20

from resnet_spec import build, load_spec
from resnet_spec.verify import check_equivalence, compare_model, equivalence_input, render, to_json, tolerance


def _meta(factory, **knobs):  # type: ignore[no-untyped-def]
    with torch.device("meta"):
        return factory(**knobs)


def test_tolerance_and_input_follow_the_table() -> None:
    spec = load_spec("resnet152")
    # 16 * depth * K_max * 2**-53, with K_max = 3*3*512 (a conv5_x 3x3): arithmetic written out here
    assert tolerance(spec) == pytest.approx(16 * 152 * 4608 * 2.0**-53)
    n, c, h, w = equivalence_input(spec)
    assert (n, c) == (2, 3) and h % 2 == 1 and w == h + 2
    assert min(spec.row_output_sizes(h, w)["conv5_x"]) == 2  # the smallest odd size giving conv5_x at least 2x2
    assert min(spec.row_output_sizes(h - 2, w - 2)["conv5_x"]) < 2


def test_torchvision_resnet50_is_equivalent_to_v15_and_differs_from_v1_at_conv3() -> None:
    model = _meta(torchvision.models.resnet50)
    v15 = check_equivalence(model, load_spec("resnet50", variant="v1.5"))
    assert v15.status == "equal", v15.reason
    assert [r.row for r in v15.rows] == ["conv1", "conv2_x", "conv3_x", "conv4_x", "conv5_x", "fc"]
    assert all(r.eval is not None and r.train is not None and r.eval <= v15.tolerance for r in v15.rows)
    assert v15.mapped == len(dict(model.named_parameters())) + 2 * 53  # each BN's running mean and variance
    v1 = check_equivalence(model, load_spec("resnet50"))
    assert (v1.status, v1.row) == ("differs", "conv3_x"), v1.reason
    assert [r.ok for r in v1.rows] == [True, True, False, False, False, False]


def test_a_model_on_the_cpu_is_not_modified() -> None:
    model = Cifar20()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.train()
    assert check_equivalence(model, load_spec("resnet20")).status == "equal"
    assert model.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


@pytest.mark.parametrize(
    ("knobs", "verdict", "note"),
    [
        ({}, "conformant", None),
        ({"hand_bn": True}, "equivalent", "batch norms written by hand"),
        ({"conv_classifier": True}, "equivalent", None),  # applied before the pool: 64x the classifier's MACs
        ({"matmul_classifier": True}, "conformant", None),  # x @ w.t() + b: read as the linear layer it is
    ],
    ids=["as-written", "hand-bn", "conv-classifier", "matmul-classifier"],
)
def test_models_written_differently_are_equivalent(knobs: dict, verdict: str, note: str | None) -> None:
    comparison = compare_model(_meta(Cifar20, **knobs), load_spec("resnet20"))
    assert comparison.equivalence is not None and comparison.equivalence.status == "equal"
    assert (comparison.verdict, comparison.exit_status) == (verdict, 0), render(comparison, "Cifar20")
    if verdict == "equivalent":
        assert comparison.mismatches, "the structural reader should not recognise this form (else pick another)"
        assert note is None or any(note in n for n in comparison.equivalence.notes), comparison.equivalence.notes
        assert "functionally: equivalent, written differently" in render(comparison, "Cifar20")


@pytest.mark.parametrize(
    ("knobs", "row"),
    [
        ({"add_alpha": 0.0}, "conv2_x"),  # out.add_(shortcut, alpha=0): a plain net in disguise
        ({"stem_scale": 0.0}, "conv2_x"),  # conv1 (conv-BN-ReLU) is the table's; what conv2_x receives is not
        ({"logits_scale": 0.0}, "fc"),
        ({"sigmoid": True}, "fc"),
        ({"frozen_bn": True}, "conv1"),  # running statistics in train mode too: differs in train mode only
    ],
    ids=["add-alpha-0", "stem-times-0", "logits-times-0", "sigmoid", "frozen-bn"],
)
def test_silent_structural_passes_are_not_conformant(knobs: dict, row: str) -> None:
    comparison = compare_model(_meta(Cifar20, **knobs), load_spec("resnet20"))
    eq = comparison.equivalence
    assert eq is not None and (eq.status, eq.row) == ("differs", row), eq
    assert (comparison.verdict, comparison.exit_status) == ("not conformant", 1)
    assert "; by computation: " in render(comparison, "Cifar20")
    assert [m.row for m in comparison.mismatches if m.kind == "computation"] == [row], comparison.mismatches


# Defects of broken_resnets.Net that change the function, and the first row whose output they change.
FUNCTION_CHANGES = [
    ({"cifar_n": 3, "shortcut": "A", "kernel": {(1, 1, 1): 5}}, "resnet20", {}, "conv3_x", "conv3_2"),
    ({"cifar_n": 3, "shortcut": "A", "padding": {(2, 1, 0): 0, (2, 1, 1): 2}}, "resnet20", {}, "conv4_x", None),
    ({"cifar_n": 3, "shortcut": "A", "stride": {(1, 0, 0): 1, (1, 0, 1): 2}}, "resnet20", {}, "conv3_x", None),
    ({"cifar_n": 3, "shortcut": "A", "repeats": (3, 2, 3)}, "resnet20", {}, "conv3_x", "conv3_3"),
    ({"cifar_n": 3, "shortcut": "A", "no_add": (1, 1)}, "resnet20", {}, "conv3_x", None),
    ({"cifar_n": 3, "shortcut": "B"}, "resnet20", {}, "conv3_x", "conv3_1"),
    ({"cifar_n": 3, "shortcut": "none"}, "resnet20", {}, "conv2_x", "conv2_1"),
    ({"cifar_n": 3, "shortcut": "A", "relu": "missing"}, "resnet20", {}, "conv2_x", None),
    ({"cifar_n": 3, "shortcut": "A", "relu": "before"}, "resnet20", {}, "conv2_x", None),
    ({"cifar_n": 3, "shortcut": "A", "gelu": True}, "resnet20", {}, "conv2_x", None),
    ({"cifar_n": 3, "shortcut": "A", "missing_bn": (2, 1, 1)}, "resnet20", {}, "conv4_x", None),
    ({"cifar_n": 3, "shortcut": "A", "bn_before_conv": (1, 0, 0)}, "resnet20", {}, "conv3_x", "conv3_1"),
    ({"cifar_n": 3, "shortcut": "A", "head_pool": "max"}, "resnet20", {}, "fc", None),
    ({"cifar_n": 3, "shortcut": "A", "num_classes": 100}, "resnet20", {}, "fc", None),
    ({"depth": 18, "stem_pool": "avg"}, "resnet18", {}, "conv2_x", None),
    ({"depth": 18, "stem_pool_padding": 0}, "resnet18", {}, "conv2_x", None),
    ({"depth": 18, "stem_stride": 1}, "resnet18", {}, "conv1", None),
    ({"depth": 50, "stride_on": "3x3"}, "resnet50", {}, "conv3_x", None),
]
FUNCTION_IDS = [
    "kernel", "padding", "stride", "repeats", "missing-add", "B-for-A", "plain", "relu-missing", "relu-before",
    "gelu", "bn-missing", "bn-before-conv", "head-pool", "fc-width", "stem-pool-avg", "stem-pool-pad",
    "stem-stride", "v15-for-v1",
]  # fmt: skip


@pytest.mark.parametrize(("knobs", "name", "overrides", "row", "block"), FUNCTION_CHANGES, ids=FUNCTION_IDS)
def test_broken_models_are_located_by_computation(
    knobs: dict, name: str, overrides: dict, row: str, block: str | None
) -> None:
    eq = check_equivalence(_meta(Net, **knobs), load_spec(name, **overrides))
    assert eq.status in ("differs", "unmapped") and eq.row == row, eq
    if block is not None:
        assert eq.block == block, eq


@pytest.mark.parametrize(
    ("knobs", "finding", "words"),
    [
        # a spare 1x1 conv of the block's width in each of ResNet-20's 9 blocks (Sec. 4.2: 3 per stage, 16/32/64)
        ({"unused": True}, "unused parameter", f"with 9 unused parameters: +{3 * (16**2 + 32**2 + 64**2):,}"),
        # 19 convs (the stem and 2 x 9 in the blocks), a bias per output channel
        ({"bias": True}, "conv.bias", f"with 19 redundant conv biases: +{16 + 6 * 16 + 6 * 32 + 6 * 64:,}"),
    ],
    ids=["unused-conv", "bias-before-bn"],
)
def test_the_same_function_with_other_parameters_is_not_conformant(knobs: dict, finding: str, words: str) -> None:
    """Parameters are part of the network: the same function with more of them is another network (exit 1)."""
    comparison = compare_model(_meta(Net, cifar_n=3, shortcut="A", **knobs), load_spec("resnet20"))
    assert comparison.equivalence is not None and comparison.equivalence.status == "equal"
    assert (comparison.verdict, comparison.exit_status) == ("not conformant", 1), render(comparison, "Net")
    assert finding in {m.property for m in comparison.mismatches}
    assert f"computes the table's function, but {words}" in render(comparison, "Net")


def test_json_carries_the_per_row_figures() -> None:
    comparison = compare_model(build("resnet20", device="meta"), load_spec("resnet20"))
    data = json.loads(json.dumps(to_json(comparison, "ours")))
    assert data["verdict"] == "conformant" and data["conformant"] is True
    eq = data["equivalence"]
    assert eq["status"] == "equal" and eq["dtype"] == "float64" and eq["tolerance"] == tolerance(comparison.spec)
    assert [r["row"] for r in eq["rows"]] == ["conv1", "conv2_x", "conv3_x", "conv4_x", "fc"]
    assert all(r["ok"] and 0 <= r["eval"] <= eq["tolerance"] and 0 <= r["train"] <= eq["tolerance"] for r in eq["rows"])


def test_too_large_is_skipped_with_a_note_never_silently() -> None:
    eq = check_equivalence(build("resnet20", device="meta"), load_spec("resnet20"), max_params=1000)
    assert eq.status == "skipped" and "too large" in eq.reason
    comparison = compare_model(build("resnet20", device="meta"), load_spec("resnet20"))
    skipped = type(comparison)(**{**comparison.__dict__, "equivalence": eq})
    assert skipped.verdict == "conformant"  # structure alone, complete (no uninterpreted operators)
    assert "note: functional check skipped: too large" in render(skipped, "ours")
    noted = type(comparison)(**{**skipped.__dict__, "notes": ("operators the reader does not interpret: aten.mul",)})
    assert noted.verdict == "undecided" and noted.exit_status == 2


# One entry per way the vocabulary changes the stem row or the BNs outside conv units: a deep stem with the
# average-pool projection, pre-activation with identity and with projection first blocks, with and without a stem pool.
@pytest.mark.parametrize("name", ["resnet18d", "preact_resnet110", "preact_resnet164", "preact_resnet50"])
def test_our_family_entries_are_functionally_their_own_tables(name: str) -> None:
    spec = load_spec(name)
    comparison = compare_model(build(spec, device="meta"), spec)
    assert comparison.equivalence is not None and comparison.equivalence.equal, comparison.equivalence
    assert (comparison.verdict, comparison.exit_status) == ("conformant", 0), comparison.mismatches


def test_the_float32_calls_run_where_the_reference_is_well_conditioned(monkeypatch: pytest.MonkeyPatch) -> None:
    """The model as it is used is called in float32, against the reference in float32.  That comparison decides only
    where float32 rounding cannot change the output by itself: the reference's own float32 logits must be within the
    float32 tolerance of its float64 ones at the values the calls use.  A deep gated net is the hard case: with every
    per-channel tensor drawn alike, eval mode's residual stream grew to about 1e6 and a gate's sigmoid flipped on
    rounding alone, so the reference's float32 logits were some 0.2 from its float64 ones on about half the inputs."""
    from resnet_spec.verify import _functional

    seen: dict[str, dict[str, torch.Tensor]] = {}
    observe = _functional._observe

    def spy(subject, values, reference, transfer, *args):  # type: ignore[no-untyped-def]
        seen["state"] = {name: value.clone() for name, value in transfer.forward(values).items()}
        return observe(subject, values, reference, transfer, *args)

    monkeypatch.setattr(_functional, "_observe", spy)
    spec = load_spec("ecaresnet101d")
    assert check_equivalence(build(spec), spec).status == "equal"
    single, double = build(spec).eval(), build(spec).double().eval()
    single.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in seen["state"].items()})
    double.load_state_dict(seen["state"])
    generator = torch.Generator().manual_seed(0)
    worst = 0.0
    with torch.no_grad():
        for _ in range(10):
            x = torch.randn(1, 3, 36, 36, generator=generator)
            exact = double(x.double())
            worst = max(worst, float((single(x).double() - exact).abs().max() / exact.abs().max()))
    assert worst <= _functional.FLOAT32_TOLERANCE


@pytest.mark.slow
def test_a_deep_gated_net_off_by_five_percent_in_eval_mode_float32_is_found() -> None:
    """An ECA-ResNet-101-D that scales its logits by 1.05 only where the model is used in eval mode (float32, off the
    meta device) is found by the float32 calls at every draw.  Where eval mode was ill conditioned, the allowance grew
    to eight times the reference's own float32 error (some 0.2 on about half the inputs), and the spoof passed there."""
    spec = load_spec("ecaresnet101d")

    class OffInEval(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = build(spec)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out = self.net(x)
            return out * 1.05 if x.dtype == torch.float32 and not x.is_meta and not self.training else out

    result = check_equivalence(OffInEval(), spec)
    assert result.status == "differs", result.reason
    [finding] = [m for m in result.findings if m.property == "output as used"]
    assert "eval mode, float32" in finding.found and "within 0.001" in finding.expected, finding


def test_redundant_conv_biases_do_not_move_where_the_numbers_first_differ() -> None:
    """Conv biases before every batch norm (folded into its running mean for the numbers) and weight standardisation
    in the second stage only: the numbers first differ in conv3_x, and the finding says so, not at conv1, whose conv
    output holds the bias the reference's batch norm holds instead."""
    from verdict_models import CifarResNet

    comparison = compare_model(CifarResNet(conv_bias=True, standardize_stage=1), load_spec("resnet20"))
    computed = [m for m in comparison.mismatches if m.kind == "computation"]
    assert comparison.verdict == "not conformant" and computed, render(comparison, "biased")
    assert computed[0].row == "conv3_x", render(comparison, "biased")


def test_a_model_that_runs_only_at_a_size_too_large_for_the_numbers_rests_on_its_structure() -> None:
    """torchvision's ResNet-101 with a fixed 7x7 average pool (as pytorchcv builds it) runs at 224x224 only, where
    its 7.8e9 multiply-adds per image pass the numbers' limit: the limit is the checker's own, so the verdict rests on
    the complete structure (conformant, with the note), unlike a model that refuses the inputs the check can run."""
    with torch.device("meta"):
        model = torchvision.models.resnet101()
    model.avgpool = torch.nn.AvgPool2d(7)
    comparison = compare_model(model, load_spec("resnet101", variant="v1.5"))
    eq = comparison.equivalence
    assert eq is not None and eq.status == "skipped" and not eq.failed and "too large" in eq.reason, eq
    assert comparison.verdict == "conformant"
