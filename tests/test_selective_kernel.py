"""Selective-kernel units (Li et al. 2019, SKNet) on the verify side: read from the dataflow whatever their modules
are called and however the paths are combined, compared path by path, and their defects named.

The models: timm's ``skresnet*`` (``timm/layers/selective_kernel.py``: the paths stacked, one product with the stack,
a sum across it), and ``support/selective_kernel.py``, written as repositories copy the unit (the paths' sum by
additions, the softmax's chunks weighing the paths one product each) against ``support/sk_table.toml``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import timm
import torch
from selective_kernel import (
    dilations_1_and_3,
    no_attention_bn,
    paths_swapped,
    sigmoid_attention,
    sk_toy,
    sk_toy_split,
    softmax_over_channels,
    split_paths_swapped,
)
from torch import nn

from resnet_spec import load_spec
from resnet_spec.verify import compare_model, read_trace, trace_model

TABLE = Path(__file__).parent / "support" / "sk_table.toml"


def _timm_width(channels: int, ratio: float, divisor: int) -> int:
    """timm's make_divisible(channels * ratio, divisor) (timm/layers/helpers.py), written out: the nearest multiple of
    divisor, at least divisor, one more where rounding lost over 10%."""
    v = channels * ratio
    width = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return width + divisor if width < 0.9 * v else width


def test_timms_unit_is_read_as_one_unit_with_its_paths_and_attention() -> None:
    """skresnet18: each basic block's first 3x3 is the unit, its two paths 3x3 at dilation 1 and 2 on half of the
    input each (split_input=True), its attention C -> make_divisible(C / 8, 16) -> 2C (sknet.py: rd_ratio 1/8,
    rd_divisor 16); nothing of the trace is left unread."""
    found = read_trace(trace_model(timm.create_model("skresnet18"), (2, 3, 224, 224)))
    assert not found.other_ops and not found.unexplained, (found.other_ops, found.unexplained)
    widths = [64, 64, 128, 128, 256, 256, 512, 512]
    assert len(found.blocks) == len(widths)
    for block, c in zip(found.blocks, widths, strict=True):
        sk = block.selective_kernel
        assert sk is not None and sk.at == 0, block
        half = block.convs[0].in_channels // 2
        assert [(p.kernel, p.dilation, p.padding, p.in_channels) for p in sk.paths] == [
            ((3, 3), (1, 1), (1, 1), half), ((3, 3), (2, 2), (2, 2), half)]  # fmt: skip
        assert sk.split and sk.selector == "softmax" and sk.softmax_dim == 1
        assert [(a.in_channels, a.out_channels) for a in sk.attn] == [(c, _timm_width(c, 1 / 8, 16)),
                                                                      (_timm_width(c, 1 / 8, 16), 2 * c)]  # fmt: skip
        assert [conv.cell.split(" /")[0] for conv in block.convs] == [f"3x3, {c}", f"3x3, {c}"]


@pytest.mark.parametrize(("factory", "entry"), [(sk_toy, "sk_toy"), (sk_toy_split, "sk_toy_split")])
def test_the_unit_as_repositories_write_it_conforms(factory: object, entry: str) -> None:
    """Additions in place of the stack and its sum, the softmax's chunks in place of one product: the same unit."""
    model = factory()  # type: ignore[operator]
    comparison = compare_model(model, load_spec(f"{TABLE}:{entry}"))
    assert comparison.verdict == "conformant" and not comparison.mismatches, comparison.mismatches


def test_a_split_unit_is_not_the_whole_input_one() -> None:
    comparison = compare_model(sk_toy_split(), load_spec(f"{TABLE}:sk_toy"))
    assert comparison.verdict == "not conformant"
    found = {(m.block, m.property, m.found) for m in comparison.mismatches}
    assert ("conv2_1", "selective kernel", "2 paths (dilation 1, 2), input split, attention 16 -> 8 -> 32") in found


@pytest.mark.parametrize(
    ("factory", "prop", "expected", "found"),
    [
        (softmax_over_channels, "conv2.softmax", "a softmax across the paths", "a softmax over dimension 2"),
        (sigmoid_attention, "conv2.softmax", "a softmax across the paths", "a sigmoid"),
        (no_attention_bn, "conv2.attn.bn", "BN right after the conv", "no BN after the conv"),
        (dilations_1_and_3, "selective kernel", "2 paths (dilation 1, 2), attention 16 -> 8 -> 32",
         "2 paths (dilation 1, 3), attention 16 -> 8 -> 32"),
    ],
)  # fmt: skip
def test_a_units_defect_is_named_in_each_block(factory: object, prop: str, expected: str, found: str) -> None:
    comparison = compare_model(factory(), load_spec(f"{TABLE}:sk_toy"))  # type: ignore[operator]
    assert comparison.verdict == "not conformant"
    findings = {(m.block, m.property, m.expected, m.found) for m in comparison.mismatches}
    assert ("conv2_1", prop, expected, found) in findings, findings
    assert ("conv3_1", prop) in {(m.block, m.property) for m in comparison.mismatches}, findings


def test_a_plain_3x3_where_the_table_has_a_unit_is_named() -> None:
    """torchvision's ResNet-18 against skresnet18: every block's first conv is one 3x3, not a unit."""
    from torchvision.models import resnet18

    with torch.device("meta"):
        model: nn.Module = resnet18()
    comparison = compare_model(model, "skresnet18", functional=False)
    units = [m for m in comparison.mismatches if m.property == "selective kernel"]
    assert [m.row for m in units] == ["conv2_x", "conv3_x", "conv4_x", "conv5_x"]  # each stage's, both blocks in one
    assert {m.found for m in units} == {"none"}
    assert comparison.verdict == "not conformant"


def test_paths_stacked_in_another_order_are_the_same_unit() -> None:
    """A symmetry: with every path reading the whole input, the order of the stack is the order of fc_select's
    output blocks, which the softmax pairs with the paths; the dilated path first is the same unit."""
    comparison = compare_model(paths_swapped(), load_spec(f"{TABLE}:sk_toy"))
    assert comparison.verdict == "conformant" and not comparison.mismatches, comparison.mismatches
    assert comparison.equivalence is not None and comparison.equivalence.status == "equal"
    notes = comparison.equivalence.notes
    assert any("conv2_1: the selective-kernel paths stacked in another order" in note for note in notes), notes


def test_split_paths_in_another_order_are_another_unit() -> None:
    """With a split input the order also says which half each path reads: the dilated path on the first half is not
    the table's unit, by structure and by the numbers."""
    comparison = compare_model(split_paths_swapped(), load_spec(f"{TABLE}:sk_toy_split"))
    assert comparison.verdict == "not conformant"
    assert any(m.property == "selective kernel" for m in comparison.mismatches), comparison.mismatches
    assert any(m.kind == "computation" for m in comparison.mismatches), comparison.mismatches
