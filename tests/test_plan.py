"""The layout plan is the built network, and the tables' vocabulary is data: new entries need no code.

* Every registry entry's model (on meta) has exactly the plan's modules, parameters and state_dict, names and shapes.
* The vocabulary table (support/vocabulary_table.toml: a deep stem, average-pool projections, pre-activation, groups,
  squeeze-and-excitation, the Caffe stem pool) loads, builds, counts exactly (analytic == FlopCounterMode / 2 ==
  fvcore conv+linear, per row) and compares conformant to itself; a model of one entry is not conformant to another.
* A copy of the shipped tables with two more depth-50 entries works in every tool, and ``--depth 50`` still
  means resnet50.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from test_counts import measured_problems
from torch import nn

from resnet_spec import build, compare_model
from resnet_spec.models import BlurPool, StandardizedConv2d, ZeroFilledMaxPool, ZeroPadShortcut
from resnet_spec.spec import TABLES_ENV, layout_plan, list_specs, load_spec, load_table, tables_dir
from resnet_spec.spec._loader import read_toml
from resnet_spec.verify import best_matches

ROOT = Path(__file__).resolve().parent.parent
VOCABULARY = Path(__file__).parent / "support" / "vocabulary_table.toml"
VOCABULARY_NAMES = list(read_toml(VOCABULARY).keys() - {"table", "stem", "head"})

# The module class each plan kind is built as (the builder's choice, stated here to be checked).
KIND_OF = {
    nn.Conv2d: "conv",
    nn.Conv1d: "conv",  # ECA's conv across the channels
    StandardizedConv2d: "conv",  # weight standardisation (BiT)
    nn.BatchNorm2d: "bn",
    nn.GroupNorm: "bn",  # the normalisation's place, where a table names GroupNorm
    nn.ReLU: "relu",
    nn.MaxPool2d: "pool",
    ZeroFilledMaxPool: "pool",  # BiT's stem pool
    nn.AvgPool2d: "pool",
    BlurPool: "pool",  # anti-aliasing (the anti_alias word)
    nn.AdaptiveAvgPool2d: "global_pool",
    nn.AdaptiveMaxPool2d: "global_pool",
    nn.Linear: "fc",
    nn.Identity: "identity",
    ZeroPadShortcut: "zero_pad",
}


def _vocabulary(name: str, **overrides: str) -> object:
    return load_spec(f"{VOCABULARY}:{name}", **overrides)


def _specs() -> list[object]:
    return [pytest.param(load_spec(n), id=n) for n in list_specs()] + [
        pytest.param(_vocabulary(n), id=n) for n in sorted(VOCABULARY_NAMES)
    ]


@pytest.mark.parametrize("spec", _specs())
def test_the_built_model_is_its_plan(spec: object) -> None:
    """named_modules (leaf kinds), named_parameters and the state_dict, in names, order and shapes."""
    model = build(spec, device="meta")  # type: ignore[arg-type]
    plan = layout_plan(model.spec)
    leaves = {name: KIND_OF[type(m)] for name, m in model.named_modules() if not m._modules and name}
    assert leaves == plan.modules()
    assert [(n, tuple(p.shape)) for n, p in model.named_parameters()] == list(plan.parameters().items())
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == plan.state_dict()


def test_the_plan_names_a_headless_model_and_other_input_channels() -> None:
    model = build("resnet20", num_classes=0, in_channels=1, device="meta")
    plan = layout_plan(model.spec, num_classes=0, in_channels=1)
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == plan.state_dict()
    assert plan.state_dict()["conv1.weight"] == (16, 1, 3, 3)  # Sec. 4.2: 3x3, 16 filters
    assert "fc.weight" not in plan.state_dict()


@pytest.mark.parametrize("name", sorted(VOCABULARY_NAMES))
def test_vocabulary_entries_count_exactly(name: str) -> None:
    """Analytic params and MACs equal FlopCounterMode / 2, torchinfo and fvcore's conv+linear, per row."""
    spec = _vocabulary(name)
    problems = measured_problems(spec)  # type: ignore[arg-type]
    assert not problems, f"{name}:\n  " + "\n  ".join(problems)


@pytest.mark.parametrize("name", sorted(VOCABULARY_NAMES))
def test_vocabulary_entries_compare_conformant_to_themselves(name: str) -> None:
    spec = _vocabulary(name)
    # the structure; tests/test_equivalence.py checks the numbers of one entry per vocabulary word
    comparison = compare_model(build(spec, device="meta"), spec, functional=False)  # type: ignore[arg-type]
    assert comparison.mismatches == (), [(m.where, m.property, m.expected, m.found) for m in comparison.mismatches]


@pytest.mark.parametrize(
    ("model_of", "spec_of", "property_"),
    [
        ("preact", "se_grouped", "pre-activation"),  # BN-ReLU before each conv is not conv-BN-ReLU
        ("se_grouped", "preact", "squeeze-excitation"),
        ("deep_stem_d", "preact", "convs"),  # three stem convs where one is expected
    ],
)
def test_a_vocabulary_model_is_not_conformant_to_another_entry(model_of: str, spec_of: str, property_: str) -> None:
    model = build(_vocabulary(model_of), device="meta")  # type: ignore[arg-type]
    comparison = compare_model(model, _vocabulary(spec_of), functional=False)  # type: ignore[arg-type]
    assert property_ in {m.property for m in comparison.mismatches}, comparison.mismatches


def test_the_average_pool_projection_is_compared_by_its_pool() -> None:
    """ResNet-D's shortcut against option B's: the same 1x1 conv and BN, a pool where B has a stride-2 conv."""
    d = _vocabulary("deep_stem_d")
    model = build(d, device="meta")  # type: ignore[arg-type]
    comparison = compare_model(model, _vocabulary("deep_stem_d", shortcut="B"), functional=False)  # type: ignore[arg-type]
    found = {(m.where, m.property): m.found for m in comparison.mismatches}
    assert found[("conv3_1", "shortcut.pool")] == "2x2 avg pool /2 pad 0, ceil mode"
    assert ("conv2_1", "shortcut.pool") not in found  # stride 1: no pool in either


def test_the_caffe_pool_is_a_named_deviation_best_matches_name() -> None:
    """The authors' prototxt pool (3x3, stride 2, padding 0, ceil mode) is resnet101 under stem_pool="caffe"."""
    caffe = load_spec("resnet101", stem_pool="caffe")
    assert caffe.stem.pool is not None and (caffe.stem.pool.padding, caffe.stem.pool.ceil_mode) == (0, True)
    assert caffe.label == "resnet101 (v1, shortcut B, Caffe pool)"
    assert caffe.row_output_sizes(224)["conv2_x"] == (56, 56)  # Table 1: 56x56, as with padding 1 and floor
    comparison = compare_model(build(caffe, device="meta"), load_spec("resnet101"), functional=False)
    assert {m.property for m in comparison.mismatches} == {"pool.padding", "pool.ceil_mode"}
    best = best_matches(comparison.found, "imagenet", comparison.input_size)
    assert [s.label for s in best[:1]] == ["resnet101 (v1, shortcut B, Caffe pool)"]


def test_the_caffe_pool_rounds_as_torch_does_on_real_values() -> None:
    spec = _vocabulary("caffe_pool")
    model = build(spec).eval()  # type: ignore[arg-type]
    assert model.maxpool.ceil_mode and model.maxpool.padding == 0
    with torch.no_grad():
        rows = model.forward_rows(torch.randn(1, 3, 31, 31))
    h = spec.row_output_sizes(31)["conv2_x"]  # type: ignore[attr-defined]
    assert tuple(rows["conv2_x"].shape[2:]) == h


# ----------------------------------------------------------------------------------------------------------------
# A copy of the tables with two more entries at depth 50: the registry is keyed by name


EXTRA_ENTRIES = """
[resnet50c_option]
source = "a user's entry: ResNet-50 with option C shortcuts"
base = "resnet50"
shortcut = "C"

[resnet50_deep]
source = "a user's entry: ResNet-50 with a deep stem"
base = "resnet50"

[resnet50_deep.stem]
pool = { kind = "max", kernel = 3, stride = 2 }
conv1 = [
    { conv = "3x3, 32", stride = 2, padding = 1 },
    { conv = "3x3, 32", stride = 1, padding = 1 },
    { conv = "3x3, 64", stride = 1, padding = 1, output = 112 },
]
"""

TOOLS_SCRIPT = r"""
import contextlib, io, json, runpy, sys
from resnet_spec import residual_depths
results = {"residual_depths": {k: v for k, v in residual_depths("imagenet").items()}}
for argv in json.loads(sys.argv[1]):
    sys.argv = argv
    out = io.StringIO()
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        try:
            runpy.run_path(argv[0], run_name="__main__")
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        except BaseException as e:  # a traceback is a failure of the command, reported with the others
            code, _ = 3, print(repr(e))
    results[" ".join(argv)] = [code, out.getvalue()]
print(json.dumps(results))
"""


@pytest.mark.slow  # every tool in a process of its own, about 10 s
def test_a_copy_of_the_tables_with_more_depth_50_entries_works_in_every_tool(tmp_path: Path) -> None:
    tables = tmp_path / "tables"
    shutil.copytree(tables_dir(), tables)
    with (tables / "imagenet.toml").open("a") as f:
        f.write(EXTRA_ENTRIES)
    tools = ROOT / "tools"
    commands = [
        [str(tools / "compare.py"), "--depth", "50", "--format", "json"],
        [str(tools / "compare.py"), "--arch", "resnet50c_option"],
        [str(tools / "compare.py"), "--arch", "resnet50_deep"],
        [str(tools / "compare.py"), "--list"],
        [str(tools / "conventions.py"), "--no-measure"],
        *[[str(tool), "--help"] for tool in sorted(tools.glob("*.py"))],
    ]
    env = {**os.environ, TABLES_ENV: str(tables), "PYTHONPATH": os.pathsep.join((str(ROOT), str(tools)))}
    result = subprocess.run(
        [sys.executable, "-c", TOOLS_SCRIPT, json.dumps(commands)], env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr[-2000:]
    outcome = json.loads(result.stdout)
    assert outcome.pop("residual_depths") == {"18": "resnet18", "34": "resnet34", "50": "resnet50",
                                              "101": "resnet101", "152": "resnet152"}  # fmt: skip
    failed = {command: out for command, (code, out) in outcome.items() if code != 0}
    assert not failed, failed
    depth50 = json.loads(outcome[f"{tools / 'compare.py'} --depth 50 --format json"][1])
    assert depth50["spec"]["name"] == "resnet50"
    assert "resnet50_deep" in outcome[f"{tools / 'compare.py'} --list"][1]


def test_entries_sharing_a_depth_need_no_canonical_mark() -> None:
    doc = read_toml(tables_dir() / "imagenet.toml")
    specs = load_table({**doc, **__import__("tomllib").loads(EXTRA_ENTRIES)}, "imagenet.toml")
    assert (specs["resnet50c_option"].depth, specs["resnet50_deep"].depth) == (50, 50)
    assert not specs["resnet50c_option"].canonical and specs["resnet50"].canonical  # canonical is not inherited
    assert len(specs["resnet50_deep"].stem.convs) == 3
