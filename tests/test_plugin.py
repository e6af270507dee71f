"""The conformance suite as a pytest plugin, run on our model, torchvision's and broken ones, as a user runs it.

Each run is a fresh ``pytest`` process with the plugin (``-p resnet_spec.testing.plugin`` where the entry point is not
installed), so its verdict is the one a user's CI sees.  Expected failures are written here from each defect: the
rows it touches and the totals it changes, nothing else.
"""

from __future__ import annotations

import importlib.metadata
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torchvision
from broken_resnets import Net
from fresh_env import build_wheel, fresh_environment

from resnet_spec import build
from resnet_spec.testing import assert_conforms

ROOT = Path(__file__).resolve().parent.parent
SUPPORT = ROOT / "tests" / "support"


def _plugin_args() -> list[str]:
    installed = any(
        ep.value == "resnet_spec.testing.plugin" for ep in importlib.metadata.entry_points(group="pytest11")
    )
    return [] if installed else ["-p", "resnet_spec.testing.plugin"]


def _run(tmp_path: Path, impl: str, arch: str, *extra: str, python: str = sys.executable) -> tuple[int, dict, str]:
    """Run the suite on ``impl``; returns the exit status, {test id: outcome} and the output."""
    command = [
        python,
        "-m",
        "pytest",
        *_plugin_args(),
        "--resnet-impl",
        impl,
        "--resnet-arch",
        arch,
        "-p",
        "no:cacheprovider",
        "-p",
        "no:randomly",
        "-rA",
        "-q",
        *extra,
    ]
    env = {"PYTHONPATH": f"{ROOT}:{SUPPORT}", "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=600, env=env)
    outcomes = dict(
        (name, outcome)
        for outcome, name in re.findall(r"^(PASSED|FAILED|SKIPPED|ERROR) (?:\[\d+\] )?(\S+)", result.stdout, re.M)
    )
    return result.returncode, outcomes, result.stdout + result.stderr


def _failed(outcomes: dict) -> set[str]:
    return {name.split("::", 1)[-1] for name, outcome in outcomes.items() if outcome in ("FAILED", "ERROR")}


def test_the_plugin_is_inactive_unless_asked(tmp_path: Path) -> None:
    (tmp_path / "test_mine.py").write_text("def test_mine():\n    pass\n")
    result = subprocess.run(
        [sys.executable, "-m", "pytest", *_plugin_args(), "-q", "-p", "no:cacheprovider"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env={"PYTHONPATH": str(ROOT)},
    )
    assert result.returncode == 0 and "1 passed" in result.stdout, result.stdout


def test_our_model_passes_every_test(tmp_path: Path) -> None:
    status, outcomes, output = _run(tmp_path, "resnet_spec:resnet20", "resnet20")
    assert status == 0, output
    rows = ["conv1", "conv2_x", "conv3_x", "conv4_x", "fc"]
    expected = {f"test_structure[resnet20:{r}]" for r in [*rows, "model"]}
    expected |= {f"test_equivalence[resnet20:{r}]" for r in rows}
    expected |= {"test_params[resnet20]", "test_macs[resnet20]", "test_verdict[resnet20]"}
    passed = {name.split("::", 1)[-1] for name, outcome in outcomes.items() if outcome == "PASSED"}
    assert passed == expected, output
    assert "needs a CUDA device" in output or torch.cuda.is_available()


def test_a_defect_in_one_row_fails_that_row_and_the_totals(tmp_path: Path) -> None:
    (tmp_path / "broken.py").write_text(
        "from broken_resnets import Net\n"
        "def make():\n    return Net(cifar_n=3, shortcut='A', kernel={(1, 1, 1): 5})  # conv3_2's second conv 5x5\n"
    )
    status, outcomes, output = _run(tmp_path, "broken.py:make", "resnet20")
    assert status == 1, output
    # the 5x5 weight has no place in the table's 3x3 conv: the numbers are not computed (test_equivalence skips)
    expected = {"test_structure[make:conv3_x]", "test_params[make]", "test_macs[make]", "test_verdict[make]"}
    assert _failed(outcomes) == expected, output
    assert "conv3_x: conv3_2 (blocks.4.convs.1) conv2.kernel: expected (3, 3), found (5, 5)" in output


@pytest.mark.slow  # another run of the suite in its own process
def test_a_defect_only_the_numbers_see_fails_the_computation_tests(tmp_path: Path) -> None:
    """Every batch norm frozen (running statistics in train mode too): the structure reads as the paper's; the
    numbers differ in train mode from the first batch norm on, the stem's."""
    status, outcomes, output = _run(tmp_path, f"{SUPPORT / 'written_differently.py'}:frozen_bn", "resnet20")
    assert status == 1, output
    assert _failed(outcomes) == {"test_equivalence[frozen_bn:conv1]", "test_verdict[frozen_bn]"}, output
    assert "conv1 (stem.1) bn1.output: expected the table's bn (bn1) on the same input, found differs by" in output


@pytest.mark.slow  # a third run of the suite in its own process
def test_an_addition_that_drops_the_shortcut_fails_the_structure_and_the_numbers(tmp_path: Path) -> None:
    """Every addition ``add_(shortcut, alpha=0)``: a plain net in disguise, seen by the structure of every stage and
    by the numbers from the first block on."""
    status, outcomes, output = _run(tmp_path, f"{SUPPORT / 'written_differently.py'}:add_alpha_zero", "resnet20")
    assert status == 1, output
    stages = {f"test_structure[add_alpha_zero:conv{i}_x]" for i in (2, 3, 4)}
    assert stages | {"test_equivalence[add_alpha_zero:conv2_x]", "test_verdict[add_alpha_zero]"} <= _failed(outcomes)
    assert outcomes["resnet_spec/conformance_tests.py::test_structure[add_alpha_zero:conv1]"] == "PASSED", output


@pytest.mark.slow  # two runs of pytest in processes of their own
def test_a_bad_target_is_one_usage_error(tmp_path: Path) -> None:
    """A typo in --resnet-impl: one line naming it (with what it may have meant), pytest's usage status 4, no test."""
    status, outcomes, output = _run(tmp_path, "torchvision.models:resnet5", "resnet50", "-n", "2")
    assert status == 4 and not outcomes, output
    errors = [line for line in output.splitlines() if line.startswith("ERROR")]
    assert errors == ["ERROR: construction: --resnet-impl 'torchvision.models:resnet5': 'torchvision.models' has no "
                      "attribute 'resnet5' (and it is not a builtin or a module); did you mean 'resnet50' or "
                      "'resnet' or 'resnet152'?"], output  # fmt: skip
    status, _, output = _run(tmp_path, "resnet_spec:resnet20", "resnet21")
    assert status == 4 and "ERROR: --resnet-arch 'resnet21': <registry>: <name>: expected one of the" in output, output


@pytest.mark.slow  # two more runs of the suite in processes of their own
def test_two_models_in_one_session_are_told_apart(tmp_path: Path) -> None:
    """Two --resnet-impl with an entry each: every test once per model, the model in its id; one that does not
    conform fails its own tests only (with pytest-xdist: the workers get the controller's comparisons)."""
    (tmp_path / "broken.py").write_text(
        "from broken_resnets import Net\n"
        "def make():\n    return Net(cifar_n=3, shortcut='B')  # projection shortcuts where the table pads\n"
    )
    command = ["--resnet-impl", "broken.py:make", "--resnet-arch", "resnet20", "-n", "2"]
    status, outcomes, output = _run(tmp_path, "resnet_spec:resnet20", "resnet20", *command)
    assert status == 1, output
    failed = _failed(outcomes)
    assert failed and all("[make" in name for name in failed), output
    assert outcomes["resnet_spec/conformance_tests.py::test_verdict[resnet20]"] == "PASSED", output
    arches = ["--resnet-arch", "resnet32", "--resnet-arch", "resnet44"]
    status, _, output = _run(tmp_path, "resnet_spec:resnet20", "resnet20", "--resnet-impl", "broken.py:make", *arches)
    assert status == 4 and "--resnet-arch is given 3 times for 2 --resnet-impl" in output, output


def test_assert_conforms_gives_the_verdict_inside_a_test() -> None:
    with torch.device("meta"):
        model = torchvision.models.resnet18()
    assert assert_conforms(model, "resnet18", variant="v1.5").verdict == "conformant"
    assert assert_conforms(build("resnet20", device="meta"), "resnet20").conformant
    with torch.device("meta"):
        broken = Net(cifar_n=3, shortcut="A", relu="before")
    with pytest.raises(AssertionError, match=r"not conformant[\s\S]*; by computation: conv2_1 \(blocks.0\)"):
        assert_conforms(broken, "resnet20")


def test_a_failing_assert_conforms_shows_the_caller_and_a_finding_first(pytester: pytest.Pytester) -> None:
    """In a user's test, the failure shows the user's line (not the library's source) and the message's first line
    is the verdict with the first finding; the report follows."""
    pytester.makepyfile(
        test_user="""
        import torch, torchvision
        from resnet_spec import assert_conforms

        def test_resnet50():
            with torch.device("meta"):
                model = torchvision.models.resnet50()
            assert_conforms(model, "resnet50")
        """
    )
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "-q")
    assert result.ret == 1
    output = "\n".join(result.outlines)
    assert "def assert_conforms" not in output and "__tracebackhide__" not in output, output
    assert '>       assert_conforms(model, "resnet50")' in output, output
    first = next(line for line in result.outlines if line.startswith("E ")).split(maxsplit=1)[1]
    verdict = "ResNet: not conformant: does NOT conform to resnet50 (v1, shortcut B); the structure differs"
    assert first.startswith(f"AssertionError: {verdict} (conv3_1 (layer2.0) stride placement and 3 more)"), first


@pytest.mark.slow
def test_the_plugin_from_the_wheel_in_a_fresh_environment(tmp_path: Path) -> None:
    """The done-when run: the wheel in a new virtual environment, torchvision's ResNet-50 green with -n auto."""
    env, _ = fresh_environment(tmp_path, build_wheel(tmp_path))
    work = tmp_path / "work"
    work.mkdir()
    python = str(env / "bin" / "python")
    command = [
        python,
        "-m",
        "pytest",
        "--resnet-impl",
        "torchvision.models:resnet50",
        "--resnet-arch",
        "resnet50",
        "--resnet-variant",
        "v1.5",
        "-n",
        "auto",
        "-p",
        "no:cacheprovider",
        "-q",
    ]
    green = subprocess.run(
        command, cwd=work, capture_output=True, text=True, timeout=900, env={"PATH": "/usr/bin:/bin"}
    )
    assert green.returncode == 0, green.stdout + green.stderr
    assert re.search(r"\b16 passed, 1 skipped\b", green.stdout), green.stdout
    where = subprocess.run(
        [python, "-c", "import resnet_spec; print(resnet_spec.__file__)"],
        cwd=work,
        capture_output=True,
        text=True,
        check=True,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert Path(where.stdout.strip()).is_relative_to(env), where.stdout
    (work / "broken.py").write_text(
        "import torchvision\n"
        "def make():\n    return torchvision.models.resnet50()  # v1.5, checked against the paper's v1\n"
    )
    command = [c for c in command if c != "v1.5" and c != "--resnet-variant"]
    command[command.index("torchvision.models:resnet50")] = "broken.py:make"
    red = subprocess.run(command, cwd=work, capture_output=True, text=True, timeout=900, env={"PATH": "/usr/bin:/bin"})
    assert red.returncode == 1, red.stdout + red.stderr
    failed = set(re.findall(r"^FAILED \S+::(\S+)", red.stdout, re.M))
    assert failed == {
        "test_structure[make:conv3_x]",
        "test_structure[make:conv4_x]",
        "test_structure[make:conv5_x]",
        "test_macs[make]",
        "test_equivalence[make:conv3_x]",
        "test_verdict[make]",
    }, red.stdout
