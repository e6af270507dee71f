"""The ``resnet-spec`` command: subcommands, --impl forms, terminal conventions, and the installed wheel."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torchvision  # noqa: F401  (imported here so that the forked children need not import it again)
from fresh_env import build_wheel, fresh_environment

from resnet_spec.cli import _compare as compare_command
from resnet_spec.cli import _list, main, run_command
from resnet_spec.verify import SubjectError, parse_target

ROOT = Path(__file__).resolve().parent.parent
SUPPORT = Path(__file__).resolve().parent / "support"


def _compare(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = run_command("compare", list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# ---- --impl forms -------------------------------------------------------------------------------------------------

MODELS = """
import functools
import torch
import torchvision
from torch import nn
from torchvision.models.resnet import BasicBlock, ResNet

INSTANCE = ResNet(BasicBlock, [2, 2, 2, 2])         # a module-level instance, built at import
PARTIAL = functools.partial(ResNet, BasicBlock, [2, 2, 2, 2])


class Eighteen(ResNet):                              # a class whose arguments all have defaults
    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__(BasicBlock, [2, 2, 2, 2], num_classes=num_classes)


def one_channel():
    model = ResNet(BasicBlock, [2, 2, 2, 2])
    model.conv1 = nn.Conv2d(1, 64, 7, 2, 3, bias=False)
    return model
"""


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("impl") / "models.py"
    path.write_text(MODELS)
    return path


@pytest.mark.parametrize(
    "expression",  # each form runs a whole comparison: an instance and a call with keywords by default
    [
        "INSTANCE",
        pytest.param("PARTIAL", marks=pytest.mark.slow),
        pytest.param("Eighteen", marks=pytest.mark.slow),
        pytest.param("ResNet(BasicBlock, [2, 2, 2, 2])", marks=pytest.mark.slow),
        "ResNet(BasicBlock, layers=[2, 2, 2, 2], norm_layer=torch.nn.BatchNorm2d)",
    ],
)
def test_impl_forms_that_give_resnet18(expression: str, models: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _compare(capsys, "--depth", "18", "--impl", f"{models}:{expression}")
    assert code == 0, (out, err)
    assert "verdict: conforms to resnet18 (v1, shortcut B)" in out


def test_impl_keyword_arguments_reach_the_model(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _compare(capsys, "--depth", "18", "--impl", "torchvision.models:resnet18(num_classes=10)")
    assert code == 1
    assert "1000-d fc" in out and "10-d fc" in out, out


def test_in_channels(models: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _compare(capsys, "--depth", "18", "--in-channels", "1", "--impl", f"{models}:one_channel")
    assert code == 0, out
    assert "input 1x1x224x224" in out
    assert f"{11_689_512 - 2 * 7 * 7 * 64:,}" in out  # FACTS: ResNet-18 has 11,689,512 parameters; conv1 loses 2 of 3
    code, out, err = _compare(capsys, "--depth", "18", "--impl", f"{models}:one_channel")
    assert code == 2 and err.count("\n") == 1 and "trace: " in err, err
    assert err.endswith(": pass --in-channels 1\n"), err  # the library's in_channels=1, in the command's words


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("torchvision.models", "expected MODULE:EXPRESSION"),
        ("torchvision.models:resnet18(", "is not a Python expression"),
        ("not a module:x", "expected MODULE:EXPRESSION"),
        ("torchvision.models:", "expected MODULE:EXPRESSION"),
    ],
)
def test_malformed_targets_are_refused_before_anything_runs(target: str, message: str) -> None:
    with pytest.raises(SubjectError, match=message):
        parse_target(target)


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("torchvision.models.resnet:ResNet(Nope, [2, 2, 2, 2])", "has no attribute 'Nope'"),
        ("torchvision.models.resnet:ResNet", "required arguments ['block', 'layers']; give them in the target"),
        ("torchvision.models:resnet18(wrong=1)", "TypeError"),
        ("math:pi", "is a float, expected an nn.Module"),
    ],
)
def test_wrong_targets_exit_2_with_one_line(target: str, message: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _compare(capsys, "--depth", "18", "--impl", target)
    assert code == 2 and out == ""
    assert message in err and err.count("\n") == 1, err


def test_file_targets_parse_with_colons_in_the_expression() -> None:
    target = parse_target("my/models.py:make({'a': 1})")
    assert (target.module, target.expression, target.is_file) == ("my/models.py", "make({'a': 1})", True)
    target = parse_target("timm:create_model('resnet50d', pretrained=False)")
    assert (target.module, target.expression, target.is_file) == (
        "timm",
        "create_model('resnet50d', pretrained=False)",
        False,
    )


# ---- terminal conventions ---------------------------------------------------------------------------------------


def test_quiet_prints_nothing_and_keeps_the_status(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _compare(capsys, "--depth", "18", "--impl", "torchvision.models:resnet18(num_classes=10)", "-q")
    assert (code, out, err) == (1, "", "")


def test_diff_cells_are_red_only_on_a_terminal_without_no_color(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    monkeypatch.delenv("NO_COLOR", raising=False)
    code, out, _ = _compare(capsys, "--depth", "18", "--impl", "torchvision.models:resnet18(num_classes=10)")
    assert code == 1
    red = [line for line in out.splitlines() if "\x1b[31mDIFF\x1b[0m" in line]
    assert red and all(line.startswith(("fc", "params", "MACs")) for line in red), red
    plain = out.replace("\x1b[31mDIFF\x1b[0m", "DIFF")
    assert "\x1b" not in plain
    monkeypatch.setenv("NO_COLOR", "1")
    assert compare_command._colour(plain) == plain
    monkeypatch.delenv("NO_COLOR")
    monkeypatch.setattr(sys.stdout, "isatty", lambda: False)
    assert compare_command._colour(plain) == plain


def test_version_list_and_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0 and capsys.readouterr().out.startswith("resnet-spec ")
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "resnet1202" in out and "plain34" in out
    assert main([]) == 2 and "give a command" in capsys.readouterr().err
    code = main(["compare", "--depth", "51", "--format", "json"])
    captured = capsys.readouterr()
    assert code == 2 and json.loads(captured.out)["phase"] == "table"
    assert captured.err.startswith("resnet-spec compare: error: table: no table entry has depth 51")


def test_argument_errors_are_one_line_and_json_when_asked(capsys: pytest.CaptureFixture[str]) -> None:
    for args in (["--depth", "0"], ["--depth", "18", "--timeout", "-1"], ["--depth", "18", "--memory", "lots"]):
        code, out, err = _compare(capsys, *args, "--format", "json")
        assert code == 2 and err.count("\n") == 1 and "argument --" in err, err
        assert json.loads(out)["phase"] == "arguments"


# ---- the installed command ----------------------------------------------------------------------------------------


@pytest.mark.slow
def test_the_installed_command_works_from_a_fresh_environment(tmp_path: Path) -> None:
    """The wheel in a fresh virtual environment (torch and the rest seen from this one), run outside the checkout."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env_dir, site = fresh_environment(tmp_path, build_wheel(tmp_path))
    python = env_dir / "bin" / "python"
    outside = tmp_path / "elsewhere"
    outside.mkdir()

    def run(*argv: str | Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(argv, cwd=outside, env=env, capture_output=True, text=True, timeout=300, check=False)

    where = run(python, "-c", "import resnet_spec; print(resnet_spec.__file__)")
    assert Path(where.stdout.strip()).is_relative_to(site), where
    result = run(env_dir / "bin" / "resnet-spec", "compare", "--depth", "101")
    assert result.returncode == 0, result.stderr
    assert "verdict: conforms to resnet101 (v1, shortcut B)" in result.stdout
    result = run(python, "-m", "resnet_spec", "compare", "--depth", "50", "--impl", "torchvision.models:resnet50")
    assert result.returncode == 1, result.stderr
    assert "conforms to resnet50 (v1.5, shortcut B)" in result.stdout
    result = run(env_dir / "bin" / "resnet-spec", "list")
    assert result.returncode == 0 and "resnet152" in result.stdout, result.stderr


# ---- the tools keep the same contract --------------------------------------------------------------------------


def _tool(name: str) -> Any:
    path = ROOT / "tools" / f"{name}.py"
    sys.path.insert(0, str(path.parent))  # bench_verify imports bench, as it does when run as a script
    try:
        module_spec = importlib.util.spec_from_file_location(f"resnet_spec_tool_{name}", path)
        assert module_spec is not None and module_spec.loader is not None
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[module_spec.name] = module
        module_spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(path.parent))
    return module


@pytest.mark.parametrize(
    ("tool", "argv", "message"),
    [
        ("conventions", ["--input-size", "100000"], "--input-size: expected an integer from 1 to 1024"),
        ("bench_verify", ["--depths", "77"], "no table entry has depth(s) [77]"),
        ("bench_verify", ["--repeats", "0"], "--repeats: expected an integer from 1 to"),
        ("bench", ["--size", "100000"], "--size: expected an integer from 1 to 1024"),
        ("bench", ["--threads", "100000"], "--threads: expected an integer from 1 to"),
        ("bench", ["--modes", ","], "--modes ',': expected at least one of"),
        ("train_cifar", ["--lr", "1e308"], "--lr: expected a number from 0 to 10"),
        ("train_cifar", ["--seed", str(10**23)], "--seed: expected an integer from 0 to 4294967295"),
        ("train_cifar", ["--batch", "100000"], "--batch: expected an integer from 1 to 1024"),
    ],
)
def test_tools_exit_2_with_one_line_on_out_of_range_flags(
    tool: str, argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _tool(tool).main(argv) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith(f"{tool}.py: error: ") and captured.err.count("\n") == 1, captured.err
    assert message in captured.err, captured.err
    assert captured.out == ""


def test_an_unexpected_failure_is_exit_2_with_one_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise ZeroDivisionError("deep inside")

    monkeypatch.setattr(_list, "print_list", broken)
    assert main(["list"]) == 2
    err = capsys.readouterr().err
    assert err == "resnet-spec list: error: run: internal error: ZeroDivisionError: deep inside\n", err


def test_list_takes_a_pattern_and_gives_json_with_the_knobs(capsys: pytest.CaptureFixture[str]) -> None:
    """``resnet-spec list '*50*'``: the matching entries only; ``--format json``: each with the options of each named
    deviation it accepts (a pre-activation network has shortcuts: 'none' forms no network)."""
    assert main(["list", "*50*"]) == 0
    out = capsys.readouterr().out
    names = re.findall(r"^    (\S+)", out, re.M)
    assert "resnet50" in names and "resnext50_32x4d" in names and all("50" in name for name in names), out
    assert main(["list", "preact_resnet5?", "--format", "json"]) == 0
    entries = json.loads(capsys.readouterr().out)
    assert [e["name"] for e in entries] == ["preact_resnet50"]
    assert entries[0]["depth"] == 50 and entries[0]["family"] == "imagenet"
    assert "none" not in entries[0]["knobs"]["shortcut"] and "B" in entries[0]["knobs"]["shortcut"]
    assert entries[0]["knobs"]["variant"] == ["v1", "v1.5"]
    assert main(["list", "alexnet*"]) == 2
    assert capsys.readouterr().err == (
        "resnet-spec list: error: no table entry matches 'alexnet*' (a glob such as '*50*'; resnet-spec list names "
        "all)\n"
    )


@pytest.mark.parametrize(
    ("args", "hint"),
    [
        (["count", "--depth", "50", "--ops", "flops"], "; 'flops' is a choice of --unit"),
        (["count", "--depth", "50", "--ops", "papr"], "; did you mean 'paper'?"),
        (["count", "--depth", "50", "--unti", "flops"], " (--unti: did you mean --unit?)"),
        (["compare", "--depth", "50", "--variatn", "v1.5"], " (--variatn: did you mean --variant?)"),
    ],
)
def test_a_mistyped_flag_or_choice_is_told_the_close_one(
    args: list[str], hint: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.endswith(hint + "\n") and err.count("\n") == 1, err
