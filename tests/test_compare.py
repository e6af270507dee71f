"""compare: tracer, reader and diff catch every detection class on deliberately broken models, naming the row."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torchvision
from broken_resnets import Net
from cases import case_params
from json_schema import assert_valid
from torch import nn

from resnet_spec import build, load_spec
from resnet_spec.verify import Mismatch, TraceError, best_matches, compare_model, trace_model
from resnet_spec.verify._report import JSON_KEYS, to_json

ROOT = Path(__file__).resolve().parent.parent
COMPARE = [sys.executable, str(ROOT / "tools" / "compare.py")]


def _mismatches(model: nn.Module, name: str, **overrides: str) -> list[Mismatch]:
    return list(compare_model(model, load_spec(name, **overrides), functional=False).mismatches)


def _at(m: Mismatch, where: str) -> bool:
    """The mismatch is at ``where``, itself or as one of the places of a cause that recurs through a row."""
    return m.where == where or any(place == where or place.startswith(f"{where}.") for place in m.blocks)


def _assert_caught(found: list[Mismatch], where: str, prop: str) -> None:
    generic = prop.partition(".")[2] if prop.startswith(("conv", "shortcut")) and "." in prop else prop
    hits = [m for m in found if _at(m, where) and (m.property.startswith(prop) or m.property == generic)]
    assert hits, f"expected a mismatch at {where} on {prop!r}; got {[(m.where, m.property) for m in found]}"


@pytest.mark.parametrize(("name", "variant", "shortcut"), case_params())
def test_our_model_conforms_for_every_table_entry(name: str, variant: str, shortcut: str) -> None:
    spec = load_spec(name, variant=variant, shortcut=shortcut)
    comparison = compare_model(build(spec, device="meta"), spec, functional=False)
    assert comparison.mismatches == ()


@pytest.mark.parametrize("depth", [18, 34, 50, 101, 152])
def test_torchvision_conforms_to_v15(depth: int) -> None:
    with torch.device("meta"):
        model = getattr(torchvision.models, f"resnet{depth}")()
    assert compare_model(model, load_spec(f"resnet{depth}", variant="v1.5"), functional=False).mismatches == ()
    v1 = _mismatches(model, f"resnet{depth}")
    if depth >= 50:  # bottlenecks: torchvision strides the 3x3, the paper the first 1x1
        for block in ("conv3_1", "conv4_1", "conv5_1"):
            _assert_caught(v1, block, "stride placement")
        assert {m.property for m in v1} == {"stride placement", "MACs (conv+fc)"}
    else:  # basic blocks: both place the stride on the first 3x3
        assert v1 == []


def test_the_reference_net_written_in_the_tests_conforms() -> None:
    """The oracle for the broken models: with no knob turned, Net is the paper's network."""
    for knobs, name, overrides in [
        ({"depth": 18}, "resnet18", {}),
        ({"depth": 50}, "resnet50", {}),
        ({"depth": 50, "stride_on": "3x3"}, "resnet50", {"variant": "v1.5"}),
        ({"depth": 34, "shortcut": "A"}, "resnet34", {"shortcut": "A"}),
        ({"depth": 34, "shortcut": "C"}, "resnet34", {"shortcut": "C"}),
        ({"depth": 34, "shortcut": "none"}, "plain34", {}),
        ({"cifar_n": 3, "shortcut": "A"}, "resnet20", {}),
        ({"depth": 18, "functional": True}, "resnet18", {}),
    ]:
        with torch.device("meta"):
            model = Net(**knobs)
        assert _mismatches(model, name, **overrides) == [], knobs


# Every detection class of the issue: a broken model, the row or block it must name, the property.
BROKEN = [
    # wrong kernel / channels / stride / padding of any conv
    ("kernel", {"depth": 18, "kernel": {(0, 1, 1): 5}}, "resnet18", {}, "conv2_2", "conv2.kernel"),
    ("channels", {"depth": 50, "channels": {(1, 2, 1): 96}}, "resnet50", {}, "conv3_3", "conv2.channels"),
    ("stride", {"depth": 18, "stem_stride": 1}, "resnet18", {}, "conv1", "conv.stride"),
    ("padding", {"depth": 18, "padding": {(2, 1, 0): 0, (2, 1, 1): 2}}, "resnet18", {}, "conv4_2", "conv1.padding"),
    # stride on the 1x1 vs the 3x3
    ("stride on 3x3", {"depth": 101, "stride_on": "3x3"}, "resnet101", {}, "conv3_1", "stride placement"),
    ("stride on 1x1", {"depth": 152}, "resnet152", {"variant": "v1.5"}, "conv5_1", "stride placement"),
    # wrong repeat count
    ("repeats", {"depth": 101, "repeats": (3, 4, 22, 3)}, "resnet101", {}, "conv4_x", "repeats"),
    # wrong output size of a row
    ("output", {"depth": 18, "stem_stride": 1}, "resnet18", {}, "conv1", "output"),
    ("row output", {"depth": 34, "stem_pool_padding": 0}, "resnet34", {}, "conv2_x", "output"),
    # missing, extra or wrong-kind shortcuts
    ("missing shortcut", {"depth": 34, "no_add": (2, 3)}, "resnet34", {}, "conv4_x", "repeats"),
    ("no shortcuts", {"depth": 34, "shortcut": "none"}, "resnet34", {}, "conv3_1", "shortcut"),
    ("extra projection", {"depth": 34, "shortcut": "C"}, "resnet34", {}, "conv2_1", "shortcut"),
    ("A instead of B", {"depth": 34, "shortcut": "A"}, "resnet34", {}, "conv4_1", "shortcut"),
    ("B instead of A (CIFAR)", {"cifar_n": 3, "shortcut": "B"}, "resnet20", {}, "conv3_1", "shortcut"),
    ("shortcuts in a plain net", {"depth": 18}, "plain18", {}, "conv2_1", "shortcut"),
    # ReLU missing after the addition, or placed before it
    ("relu missing", {"depth": 50, "relu": "missing"}, "resnet50", {}, "conv2_1", "relu after addition"),
    ("relu before add", {"depth": 18, "relu": "before"}, "resnet18", {}, "conv5_2", "relu placement"),
    ("gelu", {"depth": 18, "gelu": True}, "resnet18", {}, "conv2_1", "conv1.relu"),
    # missing or misplaced BN
    ("bn missing", {"depth": 50, "missing_bn": (3, 1, 1)}, "resnet50", {}, "conv5_2", "conv2.bn"),
    ("bn before conv", {"depth": 18, "bn_before_conv": (1, 0, 0)}, "resnet18", {}, "conv3_1", "conv1.bn"),
    # conv biases before BN
    ("bias", {"depth": 18, "bias": True}, "resnet18", {}, "conv1", "conv.bias"),
    ("bias in blocks", {"depth": 18, "bias": True}, "resnet18", {}, "conv3_2", "conv1.bias"),
    # wrong stem pool: missing, average instead of max, wrong padding
    ("pool missing", {"depth": 18, "stem_pool": "none"}, "resnet18", {}, "conv2_x", "pool"),
    ("pool avg", {"depth": 50, "stem_pool": "avg"}, "resnet50", {}, "conv2_x", "pool.kind"),
    ("pool padding", {"depth": 18, "stem_pool_padding": 0}, "resnet18", {}, "conv2_x", "pool.padding"),
    # wrong head
    ("head pool", {"depth": 18, "head_pool": "max"}, "resnet18", {}, "fc", "pool"),
    ("fc width", {"depth": 18, "num_classes": 100}, "resnet18", {}, "fc", "fc"),
    # parameters built but never used
    ("unused", {"depth": 18, "unused": True}, "resnet18", {}, "conv3_2", "unused parameter"),
    # totals off the table's figures
    ("totals", {"depth": 50, "stride_on": "3x3"}, "resnet50", {}, "model", "MACs"),
    ("param total", {"depth": 18, "num_classes": 100}, "resnet18", {}, "model", "params"),
    # functional style is read the same way
    ("functional", {"depth": 18, "functional": True, "kernel": {(3, 0, 0): 1}}, "resnet18", {}, "conv5_1",
     "conv1.kernel"),
]  # fmt: skip


@pytest.mark.parametrize(("label", "knobs", "name", "overrides", "where", "prop"), BROKEN, ids=[b[0] for b in BROKEN])
def test_broken_model_is_caught_at_the_right_row(
    label: str, knobs: dict, name: str, overrides: dict, where: str, prop: str
) -> None:
    with torch.device("meta"):
        model = Net(**knobs)
    found = _mismatches(model, name, **overrides)
    _assert_caught(found, where, prop)


def test_stride_placement_is_reported_once_per_block_not_per_conv() -> None:
    with torch.device("meta"):
        model = Net(depth=50, stride_on="3x3")
    found = _mismatches(model, "resnet50")
    assert [m.where for m in found if m.property.endswith("stride")] == []
    assert [m.where for m in found if m.property == "stride placement"] == ["conv3_1", "conv4_1", "conv5_1"]


def test_best_match_names_the_variant_a_model_conforms_to() -> None:
    with torch.device("meta"):
        model = torchvision.models.resnet50()
    comparison = compare_model(model, load_spec("resnet50"), functional=False)
    best = best_matches(comparison.found, "imagenet", comparison.input_size)
    assert [(s.name, s.variant.name, s.shortcut.name) for s in best] == [("resnet50", "v1.5", "B")]
    with torch.device("meta"):
        plain = Net(depth=34, shortcut="none")
    comparison = compare_model(plain, load_spec("resnet34"), functional=False)
    assert [s.name for s in best_matches(comparison.found, "imagenet", comparison.input_size)] == ["plain34"]


def test_in_place_ops_and_functional_style_trace_the_same_dataflow() -> None:
    module_style = trace_model(build("resnet18", device="meta"), (1, 3, 64, 64))
    with torch.device("meta"):
        functional = Net(depth=18, functional=True)
    functional_trace = trace_model(functional, (1, 3, 64, 64))
    kinds = [op.kind for op in module_style.ops if op.kind in ("conv", "bn", "add", "relu")]
    assert kinds == [op.kind for op in functional_trace.ops if op.kind in ("conv", "bn", "add", "relu")]
    assert kinds.count("add") == 8  # ResNet-18: 2+2+2+2 blocks (Table 1)
    adds = [op for op in module_style.ops if op.kind == "add"]
    assert all(op.aten == "aten.add_.Tensor" for op in adds), "ours adds in place (out += shortcut)"


def test_a_model_that_fails_in_forward_gets_a_clear_error() -> None:
    class Broken(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            raise RuntimeError("boom")

    with pytest.raises(TraceError, match=r"forward pass failed on a meta input of shape \(1, 3, 224, 224\).*boom"):
        trace_model(Broken(), (1, 3, 224, 224))


def test_a_model_that_cannot_move_to_meta_gets_a_clear_error() -> None:
    class Pinned(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3)

        def _apply(self, fn, recurse=True):  # type: ignore[no-untyped-def]
            raise RuntimeError("this model refuses to move")

    with pytest.raises(TraceError, match=r"cannot move the model to the meta device.*refuses to move"):
        trace_model(Pinned(), (1, 3, 8, 8))


def test_json_has_the_documented_shape() -> None:
    with torch.device("meta"):
        model = Net(depth=18, kernel={(0, 1, 1): 5})
    comparison = compare_model(model, load_spec("resnet18"))
    data = json.loads(json.dumps(to_json(comparison, "Net")))
    assert_valid(data)
    assert tuple(data) == JSON_KEYS
    assert data["conformant"] is False
    assert isinstance(data["mismatches"], list) and data["mismatches"]
    for entry in data["mismatches"]:
        assert set(entry) == {"row", "block", "property", "expected", "found", "blocks", "module", "kind"}
        assert entry["row"] in {"conv1", "conv2_x", "conv3_x", "conv4_x", "conv5_x", "fc", "model"}
    # typed values: a kernel is a list of numbers, a total a number, never their string forms
    assert {"row": "conv2_x", "block": "conv2_2", "property": "conv2.kernel", "expected": [3, 3], "found": [5, 5],
            "blocks": [], "module": "blocks.1.convs.1", "kind": "structure"} in data["mismatches"]  # fmt: skip
    macs = next(m for m in data["mismatches"] if m["property"] == "MACs (conv+fc)")
    assert isinstance(macs["expected"], int) and isinstance(macs["found"], int) and macs["found"] > macs["expected"]
    assert [r["row"] for r in data["rows"]] == ["conv1", "conv2_x", "conv3_x", "conv4_x", "conv5_x", "fc"]


# ---- the CLI -----------------------------------------------------------------------------------------------


def _cli():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("compare_cli", ROOT / "tools" / "compare.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _main(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = _cli().main(list(args))
    captured = capsys.readouterr()
    if "json" in args and captured.out:
        assert_valid(json.loads(captured.out))
    return code, captured.out, captured.err


def test_cli_runs_as_a_script() -> None:
    result = subprocess.run([*COMPARE, "--depth", "18"], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "verdict: conforms to resnet18 (v1, shortcut B)" in result.stdout


def test_cli_main_job_and_torchvision(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _main(capsys, "--depth", "101")
    assert code == 0
    assert "verdict: conforms to resnet101 (v1, shortcut B)" in out
    assert "[1x1, 256 /2; 3x3, 256; 1x1, 1024] x23" in out

    code, out, _ = _main(capsys, "--depth", "50", "--impl", "torchvision.models:resnet50", "--format", "json")
    assert code == 1
    data = json.loads(out)
    assert data["conformant"] is False
    assert {m["block"] for m in data["mismatches"] if m["property"] == "stride placement"} == {
        "conv3_1", "conv4_1", "conv5_1"}  # fmt: skip
    assert data["best_matches"] == ["resnet50 (v1.5, shortcut B)"]
    code, out, _ = _main(capsys, "--depth", "50", "--variant", "v1.5", "--impl", "torchvision.models:resnet50")
    assert code == 0, out


def test_cli_reads_a_model_from_a_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    mine = tmp_path / "mine.py"
    mine.write_text(
        f"import sys; sys.path.insert(0, {str(Path(__file__).parent / 'support')!r})\n"
        "from broken_resnets import Net\n"
        "def make():\n    return Net(cifar_n=3, shortcut='B')\n"
    )
    code, out, _ = _main(capsys, "--depth", "20", "--impl", f"{mine}:make")
    assert code == 1
    assert re.search(r"conv3_1 \(blocks\.3\)\s+shortcut\s+zero_pad\s+projection", out), out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--depth", "51"), "no table entry has depth 51; known depths:"),
        (("--depth", "50", "--variant", "v3"), "argument --variant: expected one of 'v1', 'v1.5', got 'v3'"),
        (("--depth", "50", "--variant", ""), "argument --variant: expected one of 'v1', 'v1.5', got ''"),
        (("--depth", "50", "--shortcut", ""), "argument --shortcut: expected one of 'A', 'B', 'C', 'D', 'none', got"),
        (("--arch", ""), "known entries (resnet-spec list), found ''"),
        (("--arch", "resnet5O"), "found 'resnet5O'; did you mean 'resnet56' or 'resnet50'"),
        (
            ("--arch", "resn\u0435t50"),
            "found 'resn\\u0435t50'; it holds characters that are not printable ASCII: "
            "U+0435 CYRILLIC SMALL LETTER IE; did you mean 'resnet50'",
        ),
        (
            ("--arch", "resnet\x1b[31m50"),
            "found 'resnet\\x1b[31m50'; it holds characters that are not printable ASCII: U+001B a control character",
        ),
        (("--arch", "ok.toml:"), "ok.toml: <name>: expected a name after the colon: 'ok.toml:NAME', found 'ok.toml:'"),
        (("--depth", "18", "--memory", "1e23T"), "argument --memory: expected a size such as 512M"),
        (("--depth", "50", "--impl", "no_such_package.models:resnet"), "cannot import module 'no_such_package.models'"),
        (("--depth", "50", "--impl", "torchvision.models"), "expected MODULE:EXPRESSION"),
        (("--depth", "50", "--impl", "torchvision.models:nope"), "has no attribute 'nope'"),
        (("--depth", "50", "--impl", "torchvision.models:ResNet"), "required arguments"),
        (("--depth", "50", "--impl", "math:pi"), "expected an nn.Module or a callable"),
        (("--depth", "50", "--impl", "collections:OrderedDict"), "expected a torch.nn.Module"),
        (("--depth", "50", "--impl", "missing_file.py:make"), "no such file 'missing_file.py'"),
        (("--depth", "50", "--input-size", "0"), "expected an integer from 1"),
        (("--depth", "50", "--input-size", "1", "2", "3"), "takes H or H W"),
        (("--family", "cifar10", "--depth", "50"), "no table entry has depth 50"),
        (("--family", "mnist", "--depth", "50"), "unknown family 'mnist'"),
        (("--depth", "50", "--arch", "resnet50"), "not both"),
        ((), "give --depth N"),
    ],
)
def test_cli_usage_errors_exit_2_with_one_line(
    args: tuple[str, ...], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = _main(capsys, *args)
    assert code == 2, (out, err)
    assert message in err
    assert err.startswith("compare.py: error: ") and err.count("\n") == 1, err


def test_cli_list_and_help(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _main(capsys, "--list")
    assert code == 0 and "resnet1202" in out and "plain34" in out
    with pytest.raises(SystemExit) as exit_info:
        _main(capsys, "--help")
    assert exit_info.value.code == 0
    assert "examples:" in capsys.readouterr().out


def test_cli_markdown_and_cifar_depths(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _main(capsys, "--depth", "56", "--format", "markdown")
    assert code == 0
    assert out.startswith(
        "### `resnet_spec resnet56` vs resnet56 (v1, shortcut A): conformant\n\n**verdict**: conforms"
    )
    assert "All 5 rows of Sec. 4.2, n = 9; Table 6, the parameters and the multiply-adds are the table's" in out
    # a model that differs: only what differs, with the model's module names
    broken = Path(__file__).parent / "support" / "broken_resnets.py"
    code, out, _ = _main(capsys, "--depth", "20", "--format", "markdown", "--impl",
                         f"{broken}:Net(cifar_n=3, shortcut='B')")  # fmt: skip
    assert code == 1
    assert ": NOT conformant\n\n**verdict**: does NOT conform to resnet20 (v1, shortcut A)" in out
    differing = out.split("Rows that differ", 1)[1].split("Findings", 1)[0]
    assert re.findall(r"^\| (\S+) \|", differing, re.M) == ["row", "conv3_x", "conv4_x", "params", "MACs"], out
    assert "| conv3_1 (blocks.3) | shortcut | zero_pad | projection |" in out, out
    code, out, _ = _main(capsys, "--depth", "1202")
    assert code == 0
    assert "19,421,274" in out  # FACTS.md: ResNet-1202 parameters with option A


def test_cli_headless_expects_a_backbone(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    backbone = tmp_path / "backbone.py"
    backbone.write_text(
        f"import sys; sys.path.insert(0, {str(Path(__file__).parent / 'support')!r})\n"
        "from broken_resnets import Net\n"
        "def make():\n    return Net(depth=18, output='features')\n"
    )
    code, out, _ = _main(capsys, "--depth", "18", "--impl", f"{backbone}:make", "--format", "json")
    assert code == 1
    assert [m["property"] for m in json.loads(out)["mismatches"] if m["row"] == "fc"] == ["head"]
    code, out, _ = _main(capsys, "--depth", "18", "--impl", f"{backbone}:make", "--headless", "--format", "json")
    assert code == 0, out


def test_the_json_schema_in_the_docs_is_the_one_checked() -> None:
    """docs/compare.md shows the schema every JSON output of these tests is validated against (json_schema.py)."""
    from resnet_spec.verify import JSON_SCHEMA

    page = (ROOT / "docs" / "compare.md").read_text()
    block = page.split("### JSON schema", 1)[1].split("```json\n", 1)[1].split("\n```", 1)[0]
    assert json.loads(block) == JSON_SCHEMA


@pytest.mark.parametrize("stages", [2, 50], ids=["two equal stages", "50-stage stress table"])
def test_cli_our_model_conforms_to_consecutive_stages_of_equal_width_and_size(
    stages: int, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Stages of one width and map size are told apart by the table's block sequence, not by the model's changes."""
    rows = "\n".join(
        f'conv{i + 2}_x = {{ block = ["3x3, 8", "3x3, 8"], repeats = {1 + i % 2}, stride = 1 }}' for i in range(stages)
    )
    table = tmp_path / "equal.toml"
    table.write_text(
        '[table]\nfamily = "equal"\nsource = "test"\ninput_size = 8\nin_channels = 3\nvariant = "v1"\n'
        'shortcut = "B"\n\n[stem]\nconv1 = { conv = "3x3, 8", stride = 1, padding = 1 }\n\n'
        f'[head]\npool = "avg"\nfc = 10\n\n[net]\nsource = "test"\n{rows}\n'
    )
    code, out, err = _main(capsys, "--arch", f"{table}:net", "--format", "json")
    assert code == 0, (out, err)
    assert len(json.loads(out)["rows"]) == stages + 2


def test_a_diff_row_whose_summary_reads_alike_names_what_differs() -> None:
    """A ReLU on the projection shortcut's output: the rows' one-line summaries are the table's, so the DIFF row's
    found cell names the property that differs (the findings below give the blocks)."""
    from resnet_spec.verify import render

    with torch.device("meta"):
        model = Net(depth=18, shortcut_relu=True)
    comparison = compare_model(model, load_spec("resnet18"), functional=False)
    lines = {line.split()[0]: line for line in render(comparison, "Net").splitlines() if line.endswith("DIFF")}
    assert set(lines) == {"conv3_x", "conv4_x", "conv5_x"}, lines
    assert all("x2; differs: shortcut path  DIFF" in line for line in lines.values()), lines


def test_a_report_names_no_entry_it_did_not_search() -> None:
    """The words 'conforms to no known table entry' are said where best matches were searched and none fits, never
    by default: torchvision's ResNet-101 against v1 is v1.5's network, which a search names."""
    from resnet_spec.verify import best_matches, compare_model, render

    with torch.device("meta"):
        model = torchvision.models.resnet101()
    comparison = compare_model(model, load_spec("resnet101"), functional=False)
    assert "no known table entry" not in render(comparison, "resnet101"), render(comparison, "resnet101")
    best = best_matches(comparison.found, "imagenet", comparison.input_size)
    assert [spec.label for spec in best] == ["resnet101 (v1.5, shortcut B)"], best
    assert "conforms to resnet101 (v1.5, shortcut B)" in render(comparison, "resnet101", best)
    assert "no known table entry" in render(comparison, "resnet101", [])
