"""Generated tables: every valid document loads, builds, has the predicted shapes and counts; every broken one
raises SpecError naming the key path.

The documents come from ``strategies.table_documents`` (valid by construction: 1-4 stages, basic or bottleneck
blocks, stride 1 or 2, v1 or v1.5, shortcut A/B/C/none, stems with kernel 3/5/7, stride 1/2, any padding, with
or without a max/avg pool).  The expectations are computed here from the document itself with the padding formula
and the shortcut options of the paper (A: zero-padding, no parameters; B: a 1x1 projection (conv + BN) where the
shape changes; C: a projection on every block; none: no shortcut) -- never from resnet_spec's own objects.  The
paper's ResNet-50 and CIFAR ResNet-20, written as documents from FACTS.md, are pinned with ``@example``, and for
them the counts must be FACTS.md's exact ones.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import pytest
import torch
from facts import (
    CIFAR_MACS,
    CIFAR_N,
    CIFAR_OUTPUT,
    CIFAR_PARAMS_A,
    CIFAR_WIDTHS,
    MACS_V1,
    MACS_V15,
    PARAMS_B,
    TABLE1_BASIC_WIDTHS,
    TABLE1_BLOCK,
    TABLE1_BOTTLENECK_WIDTHS,
    TABLE1_OUTPUT,
    TABLE1_REPEATS,
)
from hypothesis import example, given
from hypothesis import strategies as st
from strategies import (
    Mutation,
    arch_rows,
    cell_groups,
    invalid_documents,
    out_size,
    parse_cell,
    stem_convs,
    stride_index,
    table_documents,
)
from torch.utils.flop_counter import FlopCounterMode

from resnet_spec import SpecError, build
from resnet_spec.spec import load_table, variants

_SECTIONS = ("table", "stem", "head")
# Inputs larger than this many pixels run on the meta device (the pinned 224x224 ResNet-50); the rest on the CPU.
CPU_PIXELS = 64 * 64


# ------------------------------------------------------------------------------------------------------------
# The paper's networks written as documents, from FACTS.md (tests/support/facts.py)


def imagenet_document(depth: int, variant: str = "v1") -> dict[str, Any]:
    """Table 1's column ``depth`` with shortcut B, and FACTS.md's exact counts as its ``paper`` figures."""
    bottleneck = TABLE1_BLOCK[depth] == "bottleneck"
    widths = TABLE1_BOTTLENECK_WIDTHS if bottleneck else TABLE1_BASIC_WIDTHS
    kernels = (1, 3, 1) if bottleneck else (3, 3)
    net: dict[str, Any] = {"source": f"FACTS.md, Table 1, {depth}-layer"}
    for i, (repeats, stage_widths) in enumerate(zip(TABLE1_REPEATS[depth], widths, strict=True)):
        row = f"conv{i + 2}_x"
        cells = [f"{k}x{k}, {w}" for k, w in zip(kernels, stage_widths, strict=True)]
        net[row] = {"block": cells, "repeats": repeats, "stride": 1 if i == 0 else 2, "output": TABLE1_OUTPUT[row]}
    macs = MACS_V1 if variant == "v1" else MACS_V15
    net["paper"] = {"params": PARAMS_B[depth], "macs": macs[depth]}
    return {
        "table": {"family": "paper", "source": "FACTS.md", "input_size": 224, "in_channels": 3, "variant": variant}
        | {"shortcut": "B"},
        "stem": {
            "conv1": {"conv": "7x7, 64", "stride": 2, "padding": 3, "output": TABLE1_OUTPUT["conv1"]},
            "pool": {"kind": "max", "kernel": 3, "stride": 2, "padding": 1},
        },
        "head": {"pool": "avg", "fc": 1000, "output": 1},
        f"resnet{depth}": net,
    }


def cifar_document(depth: int) -> dict[str, Any]:
    """Sec. 4.2's 6n+2 network with option A, and FACTS.md's exact counts."""
    n = CIFAR_N[depth]
    net: dict[str, Any] = {"source": f"FACTS.md, CIFAR-10 ResNet-{depth}"}
    for i, width in enumerate(CIFAR_WIDTHS):
        row = f"conv{i + 2}_x"
        net[row] = {
            "block": [f"3x3, {width}"] * 2,
            "repeats": n,
            "stride": 1 if i == 0 else 2,
            "output": CIFAR_OUTPUT[row],
        }
    net["paper"] = {"params": CIFAR_PARAMS_A[depth], "macs": CIFAR_MACS[depth]}
    return {
        "table": {"family": "paper", "source": "FACTS.md", "input_size": 32, "in_channels": 3, "variant": "v1"}
        | {"shortcut": "A"},
        "stem": {"conv1": {"conv": "3x3, 16", "stride": 1, "padding": 1, "output": CIFAR_OUTPUT["conv1"]}},
        "head": {"pool": "avg", "fc": 10, "output": 1},
        f"resnet{depth}": net,
    }


# ------------------------------------------------------------------------------------------------------------
# The test's own prediction from a document


@dataclass
class Prediction:
    """What a document's architecture must build to, at its table's input size and batch 1."""

    shapes: dict[str, tuple[int, ...]]
    params: int
    macs: int  # conv and fc multiply-adds
    row_params: dict[str, int]
    row_macs: dict[str, int]


def _key(doc: dict[str, Any], arch: str, key: str) -> Any:
    """An architecture's key, else its base's, else the table's (as the loader resolves it)."""
    section = doc[arch]
    for where in (section, doc[section["base"]] if "base" in section else {}, doc["table"]):
        if key in where:
            return where[key]
    return None


def predict(doc: dict[str, Any], arch: str) -> Prediction:
    """Shapes, parameters and multiply-adds of ``arch``, from the document's numbers and the paper's options."""
    table, section = doc["table"], doc[arch]
    stem, head, stages = arch_rows(doc, arch)
    variant = section.get("variant", doc[section["base"]].get("variant") if "base" in section else None)
    variant = variant or table["variant"]
    shortcut = section.get("shortcut", doc[section["base"]].get("shortcut") if "base" in section else None)
    shortcut = shortcut or table["shortcut"]
    order = _key(doc, arch, "order") or "post"  # He et al. 2016: "pre", BN-ReLU before each conv
    se = _key(doc, arch, "se_reduction")  # Hu et al. 2018: fc C -> C/r -> C (1x1 convs with bias) per block
    pre = order == "pre"
    n, channels = table["input_size"], table["in_channels"]

    row_params, row_macs = {"conv1": 0}, {"conv1": 0}
    convs = stem_convs(stem)
    for i, conv in enumerate(convs):  # one conv, or a deep stem's, each conv-BN-ReLU (pre: the last has no BN)
        kernel, width = parse_cell(conv["conv"])
        n = out_size(n, kernel, conv["stride"], conv["padding"])
        row_params["conv1"] += kernel * kernel * channels * width + (0 if pre and i == len(convs) - 1 else 2 * width)
        row_macs["conv1"] += kernel * kernel * channels * width * n * n
        channels = width
    shapes: dict[str, tuple[int, ...]] = {"conv1": (1, channels, n, n)}
    if "pool" in stem:
        pool = stem["pool"]
        n = out_size(n, pool["kernel"], pool["stride"], pool["padding"])

    for index, stage in enumerate(stages):
        row = f"conv{index + 2}_x"
        cells = [(*parse_cell(c), cell_groups(c)) for c in stage["block"]]
        carrier = stride_index([k for k, _, _ in cells], variant)
        params = macs = 0
        for repeat in range(stage["repeats"]):
            block_stride = stage["stride"] if repeat == 0 else 1
            block_in, n_in, c_in = channels, n, channels
            for i, (kernel, width, groups) in enumerate(cells):
                n = out_size(n, kernel, block_stride if i == carrier else 1, (kernel - 1) // 2)
                # a grouped conv's output sees c_in / groups inputs; BN after the conv, or (pre) before it
                params += kernel * kernel * (c_in // groups) * width + 2 * (c_in if pre else width)
                macs += kernel * kernel * (c_in // groups) * width * n * n
                c_in = width
            if se is not None:
                reduced = c_in // se
                params += 2 * c_in * reduced + reduced + c_in
                macs += 2 * c_in * reduced  # the two 1x1 convs on the pooled 1x1 map
            changes = block_stride != 1 or c_in != block_in
            option = variants().shortcuts[shortcut]  # the option's kinds (variants.toml); their sizes here
            kind = option.on_change if changes else option.otherwise
            # a 1x1 projection with the block's stride and BN (none in a pre-activation net); ResNet-D's average
            # pool takes the stride instead
            if kind in ("projection", "avg_projection"):
                n_proj = out_size(n_in, 1, block_stride, 0)
                assert n_proj == n, f"{row}: projection gives {n_proj}, branch {n}"
                params += block_in * c_in + (0 if pre else 2 * c_in)
                macs += block_in * c_in * n_proj * n_proj
            channels = c_in
        shapes[row] = (1, channels, n, n)
        row_params[row], row_macs[row] = params, macs

    shapes["fc"] = (1, head["fc"])
    row_params["fc"] = channels * head["fc"] + head["fc"] + (2 * channels if pre else 0)  # pre: the final BN
    row_macs["fc"] = channels * head["fc"]
    return Prediction(shapes, sum(row_params.values()), sum(row_macs.values()), row_params, row_macs)


def _declared(doc: dict[str, Any], arch: str) -> dict[str, int]:
    """The output column the document declares (rows without ``output`` left out)."""
    stem, _, stages = arch_rows(doc, arch)
    last = stem_convs(stem)[-1]
    declared = {"conv1": last["output"]} if "output" in last else {}
    for index, stage in enumerate(stages):
        if "output" in stage:
            declared[f"conv{index + 2}_x"] = stage["output"]
    return declared


def _archs(doc: dict[str, Any]) -> list[str]:
    return [key for key in doc if key not in _SECTIONS]


# ------------------------------------------------------------------------------------------------------------
# Valid documents


@given(doc=table_documents())
@example(doc=imagenet_document(50))  # the paper's ResNet-50: 25,557,032 parameters, 3,857,973,248 MACs
@example(doc=imagenet_document(50, "v1.5"))  # torchvision's: 4,089,184,256 MACs
@example(doc=cifar_document(20))  # CIFAR ResNet-20, option A: 269,722 parameters, 40,551,040 MACs
def test_generated_tables_load_build_and_count(doc: dict[str, Any]) -> None:
    specs = load_table(doc, "generated.toml")
    assert list(specs) == _archs(doc)
    size = doc["table"]["input_size"]
    for arch, spec in specs.items():
        expected = predict(doc, arch)
        assert {row: expected.shapes[row][-1] for row in _declared(doc, arch)} == _declared(doc, arch)

        device = "cpu" if size * size <= CPU_PIXELS else "meta"
        model = build(spec, device=device).eval()
        x = torch.zeros(1, doc["table"]["in_channels"], size, size, device=device)
        with torch.no_grad(), FlopCounterMode(display=False) as flops:
            rows = model.forward_rows(x)
        found_shapes = {row: tuple(t.shape) for row, t in rows.items()}
        found_params = sum(p.numel() for p in model.parameters())
        assert found_shapes == expected.shapes, f"{arch}: row shapes"
        assert found_params == expected.params, f"{arch}: parameters, built {found_params}, predicted {expected.params}"
        total = flops.get_total_flops()
        assert total % 2 == 0 and total // 2 == expected.macs, f"{arch}: FlopCounterMode {total} / 2 vs {expected.macs}"
        paper = doc[arch].get("paper")
        if paper is not None:  # the pinned examples: FACTS.md's exact counts
            assert (expected.params, expected.macs) == (paper["params"], paper["macs"])


@given(doc=table_documents())
@example(doc=imagenet_document(152))
@example(doc=imagenet_document(101, "v1.5"))
@example(doc=cifar_document(1202))
def test_analytic_counts_of_generated_tables(doc: dict[str, Any]) -> None:
    """resnet_spec.counts.count(spec) equals the test's arithmetic, in total and row by row."""
    counting = pytest.importorskip(
        "resnet_spec.counts._analytic", reason="resnet_spec/counts/_analytic.py is not written yet"
    )
    for arch, spec in load_table(doc, "generated.toml").items():
        expected = predict(doc, arch)
        counts = counting.count(spec)
        assert (counts.params, counts.total) == (expected.params, expected.macs), arch
        assert {row: (counts.rows[row].params, counts.rows[row].ops) for row in expected.row_params} == {
            row: (expected.row_params[row], expected.row_macs[row]) for row in expected.row_params
        }
        paper = doc[arch].get("paper")
        if paper is not None:
            assert (counts.params, counts.total) == (paper["params"], paper["macs"])


def test_the_paper_documents_are_the_facts() -> None:
    """The pinned documents say what FACTS.md says (so that the @examples above check the right numbers)."""
    resnet50 = imagenet_document(50)["resnet50"]
    assert [resnet50[f"conv{i}_x"]["repeats"] for i in range(2, 6)] == [3, 4, 6, 3]
    assert resnet50["conv5_x"]["block"] == ["1x1, 512", "3x3, 512", "1x1, 2048"]
    assert resnet50["paper"] == {"params": 25_557_032, "macs": 3_857_973_248}
    assert cifar_document(20)["resnet20"]["paper"] == {"params": 269_722, "macs": 40_551_040}


@given(doc=table_documents(max_input=12))
def test_the_smallest_input_has_predicted_shapes_and_a_smaller_one_a_clear_error(doc: dict[str, Any]) -> None:
    """The generated networks at the smallest input their stem accepts (down to 1x1), and one row or column less."""
    spec = load_table(doc, "generated.toml")["net"]
    smallest = next(n for n in range(1, 64) if _stem_output(doc, n) >= 1)
    small = copy.deepcopy(doc)
    small["table"]["input_size"] = smallest
    for section in (small["net"], *(small[k] for k in _SECTIONS if k in small)):
        _drop_outputs(section)
    expected = predict(small, "net")
    model = build(spec).eval()
    with torch.no_grad():
        rows = model.forward_rows(torch.zeros(1, doc["table"]["in_channels"], smallest, smallest))
    assert {row: tuple(t.shape) for row, t in rows.items()} == expected.shapes
    for height, width in ((smallest - 1, smallest), (smallest, smallest - 1)):
        x = torch.zeros(1, doc["table"]["in_channels"], height, width)
        with pytest.raises(ValueError, match=rf"net: input {height}x{width} is too small: .*at least {smallest}$"):
            model.forward_rows(x)


def _stem_output(doc: dict[str, Any], n: int) -> int:
    stem, _, _ = arch_rows(doc, "net")
    for conv in stem_convs(stem):
        kernel, _ = parse_cell(conv["conv"])
        n = out_size(n, kernel, conv["stride"], conv["padding"]) if n >= 1 else 0
    if "pool" in stem and n >= 1:
        n = out_size(n, stem["pool"]["kernel"], stem["pool"]["stride"], stem["pool"]["padding"])
    return n


def _drop_outputs(node: Any) -> None:
    if isinstance(node, list):  # a deep stem's convs
        for item in node:
            _drop_outputs(item)
    if isinstance(node, dict):
        if "block" in node or "conv" in node:
            node.pop("output", None)
        for value in node.values():
            _drop_outputs(value)


# ------------------------------------------------------------------------------------------------------------
# Broken documents


@given(mutation=invalid_documents())
def test_broken_tables_raise_spec_error_naming_the_key_path(mutation: Mutation) -> None:
    with pytest.raises(SpecError) as info:  # any other exception fails the test
        load_table(mutation.doc, "broken.toml")
    error = info.value
    assert error.key_path == mutation.key_path, f"{mutation.what}: named {error.key_path!r}: {error}"
    assert str(error).startswith(f"broken.toml: {mutation.key_path}: expected "), f"{mutation.what}: {error}"


@given(doc=table_documents(), key=st.sampled_from(("variant", "shortcut")), value=st.sampled_from(("v2", "E", "")))
def test_unknown_overrides_raise_spec_error(doc: dict[str, Any], key: str, value: str) -> None:
    with pytest.raises(SpecError) as info:
        load_table(doc, "generated.toml", **{key: value})
    assert info.value.key_path == f"<override {key}>"
    assert f"found {value!r}" in str(info.value)


def _tiny_document() -> dict[str, Any]:
    return {
        "table": {"family": "t", "source": "t", "input_size": 16, "in_channels": 3, "variant": "v1", "shortcut": "B"},
        "stem": {"conv1": {"conv": "7x7, 4", "stride": 1, "padding": 0}},
        "head": {"pool": "avg", "fc": 2},
        "net": {"source": "t", "conv2_x": {"block": ["3x3, 4", "3x3, 4"], "repeats": 1, "stride": 1}},
    }


def test_an_input_too_small_for_a_generated_stem_raises_a_clear_error() -> None:
    model = build(load_table(_tiny_document(), "tiny.toml")["net"]).eval()
    assert out_size(6, 7, 1, 0) < 1
    with pytest.raises(ValueError, match=r"too small.*conv1"):
        model.forward_rows(torch.zeros(1, 3, 6, 6))


@pytest.mark.parametrize("declared", [True, False])
def test_a_table_input_size_too_small_for_the_stem_names_table_input_size(declared: bool) -> None:
    doc = _tiny_document()
    doc["table"]["input_size"] = 6
    if declared:
        doc["stem"]["conv1"]["output"] = 10
    with pytest.raises(SpecError) as info:
        load_table(doc, "tiny.toml")
    assert info.value.key_path == "table.input_size", str(info.value)


@pytest.mark.parametrize("value", [..., 3, ""], ids=["missing", "number", "empty"])
def test_table_source_is_validated(value: object) -> None:
    doc = _tiny_document()
    if value is ...:
        del doc["table"]["source"]
    else:
        doc["table"]["source"] = value
    with pytest.raises(SpecError) as info:
        load_table(doc, "tiny.toml")
    assert info.value.key_path == "table.source"


def test_table_defaults_are_validated_even_when_every_architecture_overrides_them() -> None:
    doc = _tiny_document()
    doc["table"]["variant"] = "v9"
    doc["net"]["variant"] = "v1"
    with pytest.raises(SpecError) as info:
        load_table(doc, "tiny.toml")
    assert info.value.key_path == "table.variant"
