"""The tables load, say what the paper says, and every malformed table raises SpecError with its key path."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import pytest
from facts import (
    CIFAR_N,
    CIFAR_OUTPUT,
    CIFAR_WIDTHS,
    TABLE1_BASIC_WIDTHS,
    TABLE1_BLOCK,
    TABLE1_BOTTLENECK_WIDTHS,
    TABLE1_OUTPUT,
    TABLE1_REPEATS,
)

import resnet_spec.spec._registry
from resnet_spec import SpecError, list_specs, load_spec, residual_depths
from resnet_spec.spec import Pool, layout_plan, load_table

IMAGENET_DEPTHS = sorted(TABLE1_REPEATS)


@pytest.mark.parametrize("depth", IMAGENET_DEPTHS)
def test_table1_columns_match_the_paper(depth: int) -> None:
    spec = load_spec(f"resnet{depth}")
    widths = TABLE1_BASIC_WIDTHS if TABLE1_BLOCK[depth] == "basic" else TABLE1_BOTTLENECK_WIDTHS
    kernels = (3, 3) if TABLE1_BLOCK[depth] == "basic" else (1, 3, 1)
    found = [(stage.name, stage.layers, stage.repeats, stage.stride, stage.output) for stage in spec.stages]
    expected = [
        (
            f"conv{i + 2}_x",
            tuple(zip(kernels, widths[i], strict=True)),
            TABLE1_REPEATS[depth][i],
            1 if i == 0 else 2,
            TABLE1_OUTPUT[f"conv{i + 2}_x"],
        )
        for i in range(4)
    ]
    assert found == expected
    (conv1,) = spec.stem.convs
    assert (conv1.kernel, conv1.out_channels, conv1.stride) == (7, 64, 2)
    assert spec.stem.output == TABLE1_OUTPUT["conv1"]
    pool = spec.stem.pool
    assert pool is not None and (pool.kind, pool.kernel, pool.stride) == ("max", 3, 2)
    assert (spec.head.pool, spec.head.num_classes, spec.head.output) == ("avg", 1000, 1)
    assert spec.depth == depth, f"{spec.name}: counted {spec.depth} weighted layers, the name says {depth}"
    assert (spec.variant.name, spec.shortcut.name) == ("v1", "B"), "the default must be the paper's network"
    assert "Table 1" in spec.source


@pytest.mark.parametrize("depth", sorted(CIFAR_N))
def test_cifar_columns_match_section_4_2(depth: int) -> None:
    spec = load_spec(f"resnet{depth}")
    n = CIFAR_N[depth]
    assert [(s.layers, s.repeats, s.stride, s.output) for s in spec.stages] == [
        (((3, w), (3, w)), n, 1 if i == 0 else 2, CIFAR_OUTPUT[f"conv{i + 2}_x"]) for i, w in enumerate(CIFAR_WIDTHS)
    ]
    (conv1,) = spec.stem.convs
    assert (conv1.kernel, conv1.out_channels, spec.stem.pool) == (3, 16, None)
    assert spec.head.num_classes == 10
    assert spec.depth == 6 * n + 2 == depth
    assert spec.shortcut.name == "A"


def test_registry_lists_every_family() -> None:
    names = list_specs()
    for depth in IMAGENET_DEPTHS:
        assert f"resnet{depth}" in names
    assert {"plain18", "plain34"} <= set(names)
    assert {f"resnet{d}" for d in CIFAR_N} <= set(names)
    assert list_specs("cifar10") and set(list_specs("cifar10")) < set(names)


def test_residual_depths_name_each_family_by_depth_without_the_plain_nets() -> None:
    """Table 1's five depths and Sec. 4.2's 6n+2 depths, each its resnetN; plain-18/34 and plain-20.. are left out."""
    assert residual_depths("imagenet") == {d: f"resnet{d}" for d in sorted(IMAGENET_DEPTHS)}
    assert residual_depths("cifar10") == {6 * n + 2: f"resnet{6 * n + 2}" for n in sorted(CIFAR_N.values())}
    with pytest.raises(LookupError, match="unknown family 'imagenet22k'; expected one of cifar10, imagenet"):
        residual_depths("imagenet22k")


def test_residual_depths_refuses_a_depth_two_entries_share(monkeypatch: pytest.MonkeyPatch) -> None:
    twin = load_spec("resnet18")
    monkeypatch.setattr(resnet_spec.spec._registry, "_registry", lambda: {"resnet18": twin, "my_resnet18": twin})
    with pytest.raises(LookupError, match="canonical entries 'resnet18' and 'my_resnet18' both have depth 18"):
        residual_depths("imagenet")


@pytest.mark.parametrize("name", list_specs())
def test_every_entry_names_its_source(name: str) -> None:
    spec = load_spec(name)
    assert spec.source.strip()
    assert spec.variant.source.strip() and spec.shortcut.source.strip()


def test_plain_entries_are_their_base_without_shortcuts() -> None:
    plain, base = load_spec("plain34"), load_spec("resnet34")
    assert plain.shortcut.name == "none"
    assert plain.stages[1].layers == base.stages[1].layers
    assert all(block.shortcut == "none" for block in plain.blocks)


def test_overrides_select_variants() -> None:
    spec = load_spec("resnet50", variant="v1.5", shortcut="C")
    assert (spec.variant.name, spec.shortcut.name) == ("v1.5", "C")
    assert all(block.shortcut == "projection" for block in spec.blocks)


@pytest.mark.parametrize(
    ("override", "pattern"),
    [
        ({"variant": "v2"}, r"<override variant>: expected one of 'v1', 'v1.5'.*found 'v2'"),
        ({"shortcut": "E"}, r"<override shortcut>: expected one of 'A', 'B', 'C', 'D', 'none'.*found 'E'"),
        ({"stride": "v1"}, r"<override stride>: expected an override named 'variant' or 'shortcut' or 'stem_pool'"),
    ],
)
def test_unknown_overrides_raise(override: dict[str, str], pattern: str) -> None:
    with pytest.raises(SpecError, match=pattern):
        load_spec("resnet50", **override)


@pytest.mark.parametrize("option", ["padded", "caffe"])
def test_a_stem_pool_option_names_a_max_pool_only(option: str) -> None:
    """``stem_pool`` is a max pool's padding and rounding (variants.toml): an average-pool stem (timm's resnetaa50,
    ``aa_layer=nn.AvgPool2d``) has no such pool, so naming one is an error, not another network."""
    with pytest.raises(SpecError, match=rf"resnetaa50\.stem\.pool\.kind: expected 'max' under stem_pool '{option}'.*"
                                        r"found 'avg'"):  # fmt: skip
        load_spec("resnetaa50", stem_pool=option)
    assert load_spec("resnetblur50", stem_pool="padded").stem == load_spec("resnetblur50").stem  # its own padding


def test_an_unknown_name_is_told_the_close_ones() -> None:
    with pytest.raises(SpecError, match=r"<name>: expected one of the \d+ known entries \(resnet-spec list\), found "
                       r"'resnet51'; did you mean 'resnet56' or 'resnet50'"):  # fmt: skip
        load_spec("resnet51")
    with pytest.raises(SpecError, match=r"found 'alexnet'$"):  # nothing close: no suggestion
        load_spec("alexnet")


# ------------------------------------------------------------------------------------------------------------
# Malformed tables: one valid document, broken one way at a time.

VALID: dict[str, Any] = {
    "table": {"family": "toy", "source": "test", "input_size": 32, "in_channels": 3, "variant": "v1", "shortcut": "B"},
    "stem": {"conv1": {"conv": "3x3, 8", "stride": 1, "padding": 1, "output": 32}},
    "head": {"pool": "avg", "fc": 10, "output": 1},
    "net": {
        "source": "test",
        "conv2_x": {"block": ["1x1, 8", "3x3, 8", "1x1, 16"], "repeats": 2, "stride": 1, "output": 32},
        "conv3_x": {"block": ["1x1, 16", "3x3, 16", "1x1, 32"], "repeats": 1, "stride": 2, "output": 16},
    },
}


def _broken(path: str, value: Any) -> dict[str, Any]:
    """VALID with the value at dotted ``path`` replaced (``...`` deletes the key)."""
    doc = copy.deepcopy(VALID)
    *parents, last = path.split(".")
    node = doc
    for key in parents:
        node = node[key]
    if value is ...:
        del node[last]
    else:
        node[last] = value
    return doc


def test_the_valid_document_loads() -> None:
    spec = load_table(VALID, "toy.toml")["net"]
    assert [b.name for b in spec.blocks] == ["conv2_1", "conv2_2", "conv3_1"]
    assert [b.shortcut for b in spec.blocks] == ["projection", "identity", "projection"]


MALFORMED = [
    # (where, new value, the key path the message must name, a phrase of what was expected)
    ("net.conv3_x.repeats", ..., "net.conv3_x.repeats", "an integer >= 1"),
    ("net.conv3_x.repeats", 0, "net.conv3_x.repeats", "an integer >= 1"),
    ("net.conv3_x.repeats", -2, "net.conv3_x.repeats", "an integer >= 1"),
    ("net.conv3_x.repeats", "4", "net.conv3_x.repeats", "an integer >= 1"),
    ("net.conv3_x.repeats", 2.0, "net.conv3_x.repeats", "an integer >= 1"),
    ("net.conv3_x.repeats", True, "net.conv3_x.repeats", "an integer >= 1"),
    ("net.conv3_x.stride", 0, "net.conv3_x.stride", "an integer >= 1"),
    ("net.conv3_x.block", [], "net.conv3_x.block", "a non-empty list"),
    ("net.conv3_x.block", "1x1, 16", "net.conv3_x.block", "a non-empty list"),
    ("net.conv3_x.block", ["1x1, 16", "3x3, 0", "1x1, 32"], "net.conv3_x.block[1]", "channels >= 1"),
    ("net.conv3_x.block", ["1x1, 16", "3 by 3, 16"], "net.conv3_x.block[1]", "a conv cell 'KxK, C'"),
    ("net.conv3_x.block", ["1x1, 16", "3x5, 16"], "net.conv3_x.block[1]", "a square kernel"),
    ("net.conv3_x.block", ["1x1, 16", "2x2, 16"], "net.conv3_x.block[1]", "an odd kernel"),
    ("net.conv3_x.output", 15, "net.conv3_x.output", "16: the output of row conv3_x"),
    ("net.conv3_x.colour", "red", "net.conv3_x.colour", "no such key"),
    ("net.conv3_x", 3, "net.conv3_x", "a table with block"),
    ("net.conv4_y", {}, "net.conv4_y", "no such key"),
    ("net.conv5_x", VALID["net"]["conv3_x"], "net.conv5_x", "conv4_x"),
    ("net.source", ..., "net.source", "a non-empty string"),
    ("net.variant", "v3", "net.variant", "one of 'v1', 'v1.5'"),
    ("net.shortcut", "E", "net.shortcut", "one of 'A', 'B', 'C', 'D', 'none'"),
    ("net.base", "nothing", "net.base", "the name of another architecture"),
    ("net.paper", {"flops": [1]}, "net.paper.flops", "a number or a string"),
    ("table.input_size", 0, "table.input_size", "an integer >= 1"),
    ("table.input_size", ..., "table.input_size", "an integer >= 1"),
    ("table.in_channels", -3, "table.in_channels", "an integer >= 1"),
    ("table.variant", 1.5, "table.variant", "one of 'v1', 'v1.5'"),
    ("table.extra", 1, "table.extra", "no such key"),
    ("table", ..., "table", "a table"),
    ("stem.conv1.padding", -1, "stem.conv1.padding", "an integer >= 0"),
    ("stem.conv1.stride", "2", "stem.conv1.stride", "an integer >= 1"),
    ("stem.conv1.output", 16, "stem.conv1.output", "32: the output of row conv1"),
    ("stem.conv1", ..., "stem.conv1", "a table (one conv) or a list"),
    ("stem.pool", {"kind": "median", "kernel": 3, "stride": 2, "padding": 1}, "stem.pool.kind", "'max', 'avg'"),
    ("stem.pool", {"kind": "max", "kernel": 3, "stride": 2, "padding": 2}, "stem.pool.padding", "at most half"),
    ("stem", ..., "stem", "a table with conv1"),
    ("head.fc", 0, "head.fc", "an integer >= 1"),
    ("head.pool", "sum", "head.pool", "one of 'max', 'avg'"),
    ("head.output", 7, "head.output", "1 (global pooling)"),
    ("head.final_bn", True, "head.final_bn", 'only a pre-activation net (order = "pre") has a BN-ReLU'),
    ("head.final_bn", "no", "head.final_bn", "true or false"),
    ("input_size", 4, "input_size", "a table"),  # a stray top-level scalar is no architecture
    # Sizes no real network has, refused before anything is allocated (bounds in docs/tables.md).
    ("net.conv3_x.repeats", 100_000_000, "net.conv3_x.repeats", "at most 5,000 (repeats"),
    ("net.conv3_x.block", ["1x1, 16", "3x3, 1000000000", "1x1, 32"], "net.conv3_x.block[1]", "at most 65,536"),
    ("net.conv3_x.block", ["1x1, 16", "129x129, 16", "1x1, 32"], "net.conv3_x.block[1]", "at most 127 (kernel"),
    ("net.conv3_x.block", ["1x1, 16", "3x3, 16, C=100000", "1x1, 32"], "net.conv3_x.block[1]", "(groups"),
    ("net.conv3_x.block", ["1x1, 16", "3x3, 16, C=3", "1x1, 32"], "net.conv3_x.block[1]", "divisible by the groups"),
    ("net.conv3_x.block", ["3x3, 16"] * 17, "net.conv3_x.block", "at most 16 conv cells"),
    ("net.conv3_x.stride", 1000, "net.conv3_x.stride", "at most 64 (stride"),
    ("table.input_size", 10**6, "table.input_size", "at most 16,384 (input_size"),
    ("table.in_channels", 10**9, "table.in_channels", "at most 65,536 (channels"),
    ("head.fc", 10**9, "head.fc", "at most 1,000,000 (classes"),
    ("stem.conv1.padding", 10**6, "stem.conv1.padding", "at most 127 (padding"),
    ("net.se_reduction", 10**6, "net.se_reduction", "at most 1,024"),
    ("net.se_reduction", 3, "net.conv2_x.block[2]", "divisible by se_reduction 3"),
    ("net.se_divisor", 8, "net.se_divisor", "an se_reduction beside it"),
    ("net.se_divisor", 0, "net.se_divisor", "an integer >= 1"),
    ("net.se_divisor", 10**6, "net.se_divisor", "at most 1,024 (se_divisor"),
    ("net.eca_gamma", 2, "net.eca_gamma", "an eca_beta beside it"),
    ("net.eca_beta", 1, "net.eca_beta", "an eca_gamma beside it"),
    ("net.eca_gamma", 0, "net.eca_gamma", "an integer >= 1"),
    ("net.eca_beta", 10**6, "net.eca_beta", "at most 64 (eca_beta"),
    ("net.eca_kernel", 4, "net.eca_kernel", "an odd integer"),
    ("net.eca_kernel", 0, "net.eca_kernel", "an integer >= 1"),
    ("net.eca_kernel", 10**3, "net.eca_kernel", "at most 63 (eca_kernel"),
    ("net.anti_alias", "gauss", "net.anti_alias", "one of 'avg', 'blur'"),
    ("net.anti_alias_filter", 5, "net.anti_alias_filter", 'an anti_alias = "blur" beside it'),
    ("net.anti_alias_filter", 10**3, "net.anti_alias_filter", "at most 15 (anti_alias_filter"),
    ("net.order", "sandwich", "net.order", "one of 'post', 'pre'"),
    ("net.canonical", "yes", "net.canonical", "true or false"),
    ("table.stem_pool", "round", "table.stem_pool", "one of 'padded', 'caffe'"),
    ("stem.conv1", [], "stem.conv1", "a list of 1 to 16 tables"),
    ("stem.conv1", [{"conv": "3x3, 8", "stride": 1, "padding": 1}, 3], "stem.conv1[1]", "a table"),
]


@pytest.mark.parametrize(
    ("where", "value", "key_path", "expected"), MALFORMED, ids=[f"{m[0]}={m[1]!r}" for m in MALFORMED]
)
def test_malformed_table_raises_spec_error(where: str, value: Any, key_path: str, expected: str) -> None:
    with pytest.raises(SpecError) as info:
        load_table(_broken(where, value), "toy.toml")
    message = str(info.value)
    assert isinstance(info.value, ValueError)
    assert message.startswith("toy.toml: "), message
    assert f": {key_path}: " in message, f"expected key path {key_path!r} in: {message}"
    assert expected in message, f"expected {expected!r} in: {message}"
    assert info.value.key_path == key_path


def test_one_channel_gate_a_block() -> None:
    doc = _broken("net.se_reduction", 4)
    doc["net"].update(eca_gamma=2, eca_beta=1)
    with pytest.raises(SpecError, match=r"net.eca_gamma: expected one channel gate: se_reduction or ECA's, not both"):
        load_table(doc, "toy.toml")
    doc = _broken("net.se_reduction", 4)
    doc["net"].update(eca_kernel=3)
    with pytest.raises(SpecError, match=r"net.eca_kernel: expected one channel gate: se_reduction or ECA's, not both"):
        load_table(doc, "toy.toml")


def test_one_eca_kernel_rule() -> None:
    doc = _broken("net.eca_kernel", 3)
    doc["net"].update(eca_gamma=2, eca_beta=1)
    with pytest.raises(SpecError, match=r"net.eca_kernel: expected one ECA kernel rule: eca_kernel, or eca_gamma"):
        load_table(doc, "toy.toml")


@pytest.mark.parametrize(
    ("words", "key_path", "expected"),
    [
        ({"anti_alias": "blur", "anti_alias_filter": 1}, "net.anti_alias_filter", "at least 2 taps"),
        ({"anti_alias": "avg", "anti_alias_filter": 3}, "net.anti_alias_filter", 'anti_alias = "blur"'),
        ({"anti_alias": "blur", "order": "pre"}, "net.anti_alias", "no anti_alias in a pre-activation net"),
        ({"anti_alias_shortcut": True}, "net.anti_alias_shortcut", 'an anti_alias = "blur" beside it'),
        ({"anti_alias": "avg", "anti_alias_shortcut": True}, "net.anti_alias_shortcut", 'anti_alias = "blur"'),
        ({"anti_alias": "blur", "anti_alias_shortcut": "yes"}, "net.anti_alias_shortcut", "true or false"),
        (
            {"anti_alias": "blur", "anti_alias_shortcut": True, "shortcut": "D"},
            "net.anti_alias_shortcut",
            "a shortcut option with 1x1 projections (B or C; option D has avg_projection)",
        ),
        (
            {"anti_alias": "blur", "anti_alias_shortcut": True, "shortcut": "A"},
            "net.anti_alias_shortcut",
            "a shortcut option with 1x1 projections (B or C; option A has zero_pad)",
        ),
    ],
)
def test_anti_alias_words_that_form_no_network(words: dict[str, Any], key_path: str, expected: str) -> None:
    doc = copy.deepcopy(VALID)
    doc["net"].update(words)
    with pytest.raises(SpecError) as info:
        load_table(doc, "toy.toml")
    assert info.value.key_path == key_path and expected in str(info.value), str(info.value)


SK = {"sk_dilations": [1, 2], "sk_reduction": 4, "sk_min_width": 2}


@pytest.mark.parametrize(
    ("words", "key_path", "expected"),
    [
        ({"sk_dilations": [1]}, "net.sk_dilations", "a list of two or more dilations"),
        ({"sk_dilations": [1, 0]}, "net.sk_dilations", "integers from 1 to 64"),
        ({"sk_dilations": [1, 100]}, "net.sk_dilations", "integers from 1 to 64"),
        ({"sk_dilations": "1, 2"}, "net.sk_dilations", "a list of two or more dilations"),
        ({"sk_dilations": ...}, "net.sk_reduction", "an sk_dilations beside it"),
        ({"sk_reduction": ...}, "net.sk_reduction", "an integer >= 1"),
        ({"sk_min_width": 0}, "net.sk_min_width", "an integer >= 1"),
        ({"sk_reduction": 10**6}, "net.sk_reduction", "at most 1,024 (sk_reduction"),
        ({"sk_reduction": 3}, "net.conv2_x.block[1]", "divisible by sk_reduction 3"),
        ({"sk_split": "yes"}, "net.sk_split", "true or false"),
        ({"order": "pre"}, "net.sk_dilations", "no selective kernel in a pre-activation net"),
        ({"anti_alias": "avg"}, "net.sk_dilations", "no selective kernel beside anti_alias"),
        # conv2_x's 3x3 reads 8 channels: 3 paths do not split them
        ({"sk_dilations": [1, 2, 3], "sk_split": True}, "net.conv2_x.block[1]", "split into 3 paths"),
    ],
)
def test_selective_kernel_words_that_form_no_network(words: dict[str, Any], key_path: str, expected: str) -> None:
    doc = copy.deepcopy(VALID)
    doc["net"].update(SK)
    for key, value in words.items():
        if value is ...:
            del doc["net"][key]
        else:
            doc["net"][key] = value
    with pytest.raises(SpecError) as info:
        load_table(doc, "toy.toml")
    assert info.value.key_path == key_path and expected in str(info.value), str(info.value)


def test_a_selective_kernel_unit_needs_a_spatial_conv_before_the_last() -> None:
    doc = _broken("net.conv3_x.block", ["1x1, 16", "1x1, 32"])
    doc["net"].update(SK)
    with pytest.raises(SpecError, match=r"net.conv3_x.block: expected a conv with a kernel over 1 before the last"):
        load_table(doc, "toy.toml")


def test_a_selective_kernel_unit_stands_in_for_the_blocks_first_spatial_conv() -> None:
    """Li et al. 2019, Eq. 4: d = max(C / r, L): conv2_x's 3x3 has C = 8, r = 4, L = 2 -> max(2, 2) = 2; conv3_x's
    C = 16 -> 4.  Each path is the 3x3 at its dilation with padding d (3 - 1) / 2 (1, then 2), the block's stride
    (v1: conv3_1's stride sits on its first 1x1, so the unit's paths run at stride 1), and with a split input half
    of the 8 (or 16) input channels."""
    doc = copy.deepcopy(VALID)
    doc["net"].update(SK, sk_split=True)
    spec = load_table(doc, "toy.toml")["net"]
    blocks = list(spec.blocks)
    units = [(block.selective_at, block.selective_kernel) for block in blocks]
    assert [(at, unit.attn_channels, unit.split_input) for at, unit in units if unit] == [
        (1, 2, True), (1, 2, True), (1, 4, True)]  # fmt: skip
    at, unit = units[2]
    assert unit is not None
    paths = unit.paths(blocks[2].convs[at])
    assert [(p.kernel, p.in_channels, p.out_channels, p.stride, p.padding, p.dilation) for p in paths] == [
        (3, 8, 16, 1, 1, 1), (3, 8, 16, 1, 2, 2)]  # fmt: skip
    layers = [(layer.name, layer.kind, layer.out_shape) for layer in layout_plan(spec).blocks[2].layers
              if layer.role == "sk"]  # fmt: skip
    assert layers == [
        ("layer2.0.conv2", "split", (8, 16, 16)),
        ("layer2.0.conv2.paths.0.conv", "conv", (16, 16, 16)),
        ("layer2.0.conv2.paths.0.bn", "bn", (16, 16, 16)),
        ("layer2.0.conv2.paths.0.relu", "relu", (16, 16, 16)),
        ("layer2.0.conv2.paths.1.conv", "conv", (16, 16, 16)),
        ("layer2.0.conv2.paths.1.bn", "bn", (16, 16, 16)),
        ("layer2.0.conv2.paths.1.relu", "relu", (16, 16, 16)),
        ("layer2.0.conv2.attn", "squeeze", (16, 1, 1)),
        ("layer2.0.conv2.attn.fc_reduce", "conv", (4, 1, 1)),
        ("layer2.0.conv2.attn.bn", "bn", (4, 1, 1)),
        ("layer2.0.conv2.attn.relu", "relu", (4, 1, 1)),
        ("layer2.0.conv2.attn.fc_select", "conv", (32, 1, 1)),
        ("layer2.0.conv2", "select", (16, 16, 16)),
    ]


def test_anti_aliasing_needs_a_conv_before_the_last_to_carry_the_stride() -> None:
    """The layer follows the strided conv's BN and ReLU: a block whose only conv strides has no place for it."""
    doc = _broken("net.conv3_x.block", ["3x3, 32"])
    doc["net"]["anti_alias"] = "avg"
    with pytest.raises(SpecError, match=r"net.conv3_x.block: expected a conv before the last to carry the stride"):
        load_table(doc, "toy.toml")


def test_anti_aliasing_moves_the_stride_from_the_conv_to_the_layer_after_it() -> None:
    """v1 strides the block's first 1x1: with anti_alias it runs at stride 1 and the blur (3 taps, padding
    ((2 - 1) + (3 - 1)) // 2 = 1) takes the stride after its BN-ReLU; the row sizes are the table's still."""
    doc = copy.deepcopy(VALID)
    doc["net"]["anti_alias"] = "blur"
    block = load_table(doc, "toy.toml")["net"].stages[1].blocks[0]
    assert [conv.stride for conv in block.convs] == [1, 1, 1] and block.stride == 2
    assert block.anti_alias_at == 0 and block.anti_alias is not None
    assert (block.anti_alias.kind, block.anti_alias.kernel, block.anti_alias.stride, block.anti_alias.padding) == (
        "blur", 3, 2, 1)  # fmt: skip
    assert block.output_size(32) == 16


def test_an_even_blur_pads_one_more_after_the_map_and_the_projection_blurs_first() -> None:
    """Zhang's BlurPool of 4 taps pads (4 - 1) // 2 = 1 before the map and ceil(3 / 2) = 2 after it: a 16x16 map
    gives (16 + 1 + 2 - 4) // 2 + 1 = 8, a 15x15 one (15 + 3 - 4) // 2 + 1 = 8, and it needs a map of at least 3
    (a reflection pads fewer than the map's size).  With anti_alias_shortcut the stride-2 projection is that blur,
    then its 1x1 at stride 1 and BN; the stride-1 projection of conv2_1 (channels 8 -> 16) is unchanged."""
    doc = copy.deepcopy(VALID)
    doc["net"].update(anti_alias="blur", anti_alias_filter=4, anti_alias_shortcut=True)
    spec = load_table(doc, "toy.toml")["net"]
    first, _, strided = spec.blocks
    assert strided.anti_alias == strided.shortcut_alias == Pool("blur", 4, 2, 1, extra_end=1)
    assert [strided.anti_alias.output_size(n) for n in (16, 15, 3, 2)] == [8, 8, 2, 0]
    assert first.shortcut_alias is None
    shortcut = [(layer.name, layer.kind, layer.stride) for layer in layout_plan(spec).blocks[2].layers
                if layer.role == "shortcut"]  # fmt: skip
    assert shortcut == [("layer2.0.downsample.0", "pool", 2), ("layer2.0.downsample.1", "conv", 1),
                        ("layer2.0.downsample.2", "bn", 1)]  # fmt: skip
    assert [layer.name for layer in layout_plan(spec).blocks[0].layers if layer.role == "shortcut"] == [
        "layer1.0.downsample.0", "layer1.0.downsample.1"]  # fmt: skip


def test_channels_that_cannot_chain_through_a_zero_pad_shortcut() -> None:
    doc = _broken("net.conv3_x.block", ["1x1, 16", "3x3, 16", "1x1, 8"])
    doc["net"]["shortcut"] = "A"
    with pytest.raises(SpecError, match=r"net.conv3_x.block\[2\]: expected at least 16 output channels: option A"):
        load_table(doc, "toy.toml")


def test_v15_needs_a_spatial_conv_to_carry_the_stride() -> None:
    doc = _broken("net.conv3_x.block", ["1x1, 16", "1x1, 32"])
    with pytest.raises(SpecError, match=r"net.conv3_x.block: expected a conv larger than 1x1 .* variant v1.5"):
        load_table(doc, "toy.toml", variant="v1.5")


def test_a_plain_network_has_no_pre_activation_form() -> None:
    """Without shortcuts BN-ReLU before each conv is the post-activation net; the table must say post."""
    with pytest.raises(SpecError, match=r'order: expected "post" for a plain network \(shortcut none\).*found .pre.'):
        load_spec("preact_resnet110", shortcut="none")
    assert load_spec("preact_resnet110", shortcut="A").order == "pre"


def test_the_bounds_leave_ten_times_the_family(tmp_path: Path) -> None:
    """ResNet-1202's 200 repeats (Sec. 4.2) and ResNet-1001's 111 (He et al. 2016) fit ten times over."""
    from resnet_spec.spec import BOUNDS

    assert BOUNDS["repeats"] >= 10 * 200 and BOUNDS["blocks"] >= 10 * 3 * 200
    assert BOUNDS["channels"] >= 10 * 2048 and BOUNDS["input_size"] >= 10 * 224 and BOUNDS["kernel"] >= 10 * 7
    assert BOUNDS["groups"] >= 10 * 64 and BOUNDS["classes"] >= 10 * 21_843  # ResNeXt 64x4d; ImageNet-22k


def test_too_many_blocks_in_all_are_refused_before_any_is_made() -> None:
    doc = copy.deepcopy(VALID)
    for i in range(2, 9):
        doc["net"][f"conv{i}_x"] = {"block": ["3x3, 8", "3x3, 8"], "repeats": 4_000, "stride": 1}
    with pytest.raises(SpecError, match=r"net.<repeats summed over the stages>: expected at most 20,000"):
        load_table(doc, "toy.toml")


def test_a_non_utf8_file_and_a_directory_are_spec_errors(tmp_path: Path) -> None:
    latin = tmp_path / "latin.toml"
    latin.write_bytes(b"[table]\nsource = 'caf\xe9'\n")
    with pytest.raises(SpecError, match=r"latin.toml: <file>: expected a UTF-8 text file"):
        load_spec(latin)
    folder = tmp_path / "folder.toml"
    folder.mkdir()
    with pytest.raises(SpecError, match=r"folder.toml: <file>: expected a TOML file, not a directory"):
        load_spec(folder)


def test_file_errors_name_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[table\nfamily = 1\n")
    with pytest.raises(SpecError, match=re.escape(str(bad)) + r": <file>: expected valid TOML"):
        load_spec(bad)
    with pytest.raises(SpecError, match=r"expected an existing TOML file"):
        load_spec(tmp_path / "missing.toml")


def test_a_user_table_loads_from_a_path(tmp_path: Path) -> None:
    import tomllib  # noqa: F401  (the format is stdlib TOML)

    text = (Path(__file__).parent / "support" / "toy_table.toml").read_text()
    path = tmp_path / "toy.toml"
    path.write_text(text)
    spec = load_spec(path)
    assert spec.name == "toy" and spec.table_file == str(path)
    assert load_spec(f"{path}:toy", shortcut="C").shortcut.name == "C"
    with pytest.raises(SpecError, match=r"toy.toml: nope: expected one of toy"):
        load_spec(f"{path}:nope")
