"""The library boundary: a wrong argument is a ValueError/TypeError from resnet-spec naming it and what was expected.

Never torch's message from deep inside ("expected scalar type ...", BN's "Expected more than 1 value per channel"),
never an AttributeError or IndexError.  Every public function that takes a spec takes its name too.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
import torchvision

from resnet_spec import (
    FeatureExtractor,
    assert_conforms,
    build,
    compare_model,
    convert_state_dict,
    count,
    feature_info,
    load_checkpoint,
    load_spec,
)
from resnet_spec.weights import state_dict_layout

NO_CUDA = not torch.cuda.is_available()


@pytest.fixture(scope="module")
def resnet18() -> Any:
    return build("resnet18", device="meta")


def _input(dtype: torch.dtype = torch.float32, size: int = 32, batch: int = 2) -> torch.Tensor:
    return torch.empty(batch, 3, size, size, dtype=dtype, device="meta")


def _cases(tmp_path: Path, resnet18: Any) -> dict[str, tuple[Callable[[], object], type[Exception], str]]:
    text = tmp_path / "notes.txt"
    text.write_text("not a checkpoint\n")
    empty = tmp_path / "empty.pth"
    empty.write_bytes(b"")
    trained = build("resnet18", device="meta").train()
    return {
        "float64 input": (lambda: resnet18(_input(torch.float64)), ValueError, "input dtype torch.float64"),
        "float16 input": (lambda: resnet18(_input(torch.float16)), ValueError, "input dtype torch.float16"),
        "int input": (lambda: resnet18(_input(torch.int64)), ValueError, "expected a floating-point input"),
        "one value per channel in training": (
            lambda: trained(_input(batch=1)),
            ValueError,
            "training mode needs more than one value per channel",
        ),
        "device nope": (lambda: build("resnet18", device="nope"), ValueError, "build: expected device"),
        "device 7": (lambda: build("resnet18", device=7), ValueError, "build: expected device"),
        "FeatureExtractor of torchvision": (
            lambda: FeatureExtractor(torchvision.models.resnet18()),
            TypeError,
            "FeatureExtractor: expected a resnet_spec ResNet",
        ),
        "checkpoint that is text": (lambda: load_checkpoint(text, build("resnet18")), ValueError, "notes.txt"),
        "checkpoint that is empty": (lambda: load_checkpoint(empty, build("resnet18")), ValueError, "an empty file"),
        "checkpoint that is missing": (
            lambda: load_checkpoint(tmp_path / "nope.pth", build("resnet18")),
            ValueError,
            "load_checkpoint: expected path a checkpoint file",
        ),
        # assert_conforms and compare_model take a model or a 'MODULE:EXPRESSION' target, nothing else
        "assert_conforms(None)": (lambda: assert_conforms(None, "resnet18"), TypeError, _MODEL + "got NoneType"),  # type: ignore[arg-type]
        "assert_conforms(a function)": (
            lambda: assert_conforms(torchvision.models.resnet18, "resnet18"),  # type: ignore[arg-type]
            TypeError,
            _MODEL + "got function",
        ),
        "assert_conforms(a class)": (
            lambda: assert_conforms(torchvision.models.ResNet, "resnet18"),  # type: ignore[arg-type]
            TypeError,
            _MODEL + "got type",
        ),
        "compare_model(None)": (
            lambda: compare_model(None, "resnet18"),  # type: ignore[arg-type]
            TypeError,
            "compare_model: expected model an nn.Module, a 'MODULE:EXPRESSION' string",
        ),
        "assert_conforms(a malformed target)": (
            lambda: assert_conforms("torchvision.models", "resnet18"),
            ValueError,
            "expected MODULE:EXPRESSION",
        ),
        "input_size=(1, 2, 3)": (
            lambda: assert_conforms(resnet18, "resnet18", input_size=(1, 2, 3)),  # type: ignore[arg-type]
            TypeError,
            "assert_conforms: expected input_size a positive int (square) or a (height, width) pair, got (1, 2, 3)",
        ),
        "input_size='224'": (
            lambda: compare_model(resnet18, "resnet18", input_size="224"),  # type: ignore[arg-type]
            TypeError,
            "compare_model: expected input_size a positive int",
        ),
    }


_MODEL = "assert_conforms: expected model an nn.Module, a 'MODULE:EXPRESSION' string such as "
_MODEL += "'torchvision.models:resnet50' or a model file's path, "


CASES = [
    "float64 input",
    "float16 input",
    "int input",
    "one value per channel in training",
    "device nope",
    "device 7",
    "FeatureExtractor of torchvision",
    "checkpoint that is text",
    "checkpoint that is empty",
    "checkpoint that is missing",
    "assert_conforms(None)",
    "assert_conforms(a function)",
    "assert_conforms(a class)",
    "compare_model(None)",
    "assert_conforms(a malformed target)",
    "input_size=(1, 2, 3)",
    "input_size='224'",
]


@pytest.mark.parametrize("case", CASES)
def test_a_wrong_argument_names_itself_and_what_was_expected(case: str, tmp_path: Path, resnet18: Any) -> None:
    call, error, message = _cases(tmp_path, resnet18)[case]
    with pytest.raises(error) as info:
        call()
    assert message in str(info.value), str(info.value)
    assert type(info.value).__module__.split(".")[0] == "builtins", type(info.value)


@pytest.mark.skipif(not NO_CUDA, reason="checks the message on a machine without CUDA")
def test_cuda_on_a_machine_without_one() -> None:
    with pytest.raises(
        ValueError, match=r"build: expected device 'cuda' \(cuda\) to exist; this machine has no CUDA device"
    ):
        build("resnet18", device="cuda")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16, torch.float64])
def test_a_model_cast_to_a_dtype_takes_inputs_of_that_dtype(dtype: torch.dtype) -> None:
    out = build("resnet18", device="meta").to(dtype).eval()(_input(dtype))
    assert out.dtype == dtype and tuple(out.shape) == (2, 1000)


def test_names_are_accepted_where_a_spec_is() -> None:
    assert compare_model(build("resnet18", device="meta"), "resnet18", functional=False).conformant
    state = torchvision.models.resnet18().state_dict()
    converted = convert_state_dict(state, "resnet18", source="torchvision")
    assert converted.keys() == build("resnet18", device="meta").state_dict().keys()
    assert state_dict_layout("resnet18") == state_dict_layout(load_spec("resnet18"))
    assert feature_info("resnet18") == feature_info(load_spec("resnet18"))
    assert count("resnet18").params == 11_689_512  # FACTS: ResNet-18 parameters
    with pytest.raises(
        TypeError, match="feature_info: expected spec a ResNetSpec, a spec name or a TOML path, got int"
    ):
        feature_info(18)  # type: ignore[arg-type]


def test_assert_conforms_takes_an_int_input_size_and_is_a_top_level_name() -> None:
    import resnet_spec

    assert "assert_conforms" in resnet_spec.__all__
    model = build("resnet18", device="meta")
    assert assert_conforms(model, "resnet18", input_size=64).input_size == (64, 64)
    assert assert_conforms(model, "resnet18", input_size=(64, 96)).input_size == (64, 96)


class _Marked(torch.Tensor):
    """A tensor subclass a model may return (a library's own logits type)."""


def test_a_model_returning_a_tensor_subclass_is_judged_like_any() -> None:
    class Subclassed(torchvision.models.ResNet):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return super().forward(x).as_subclass(_Marked)

    with torch.device("meta"):
        model = Subclassed(torchvision.models.resnet.BasicBlock, [2, 2, 2, 2])
    assert compare_model(model, load_spec("resnet18", variant="v1.5")).verdict == "conformant"


def test_an_entry_name_a_terminal_would_interpret_is_refused_with_its_characters_named(tmp_path: Path) -> None:
    from resnet_spec.spec import SpecError

    toy = (Path(__file__).parent / "support" / "toy_table.toml").read_text()
    for name, words in (("toy\\u001b[2J", "U+001B a control character"),
                        ("t\\u043Ey", "U+043E CYRILLIC SMALL LETTER O")):  # fmt: skip
        table = tmp_path / "odd.toml"
        table.write_text(toy.replace("[toy]", f'["{name}"]'))
        with pytest.raises(SpecError) as info:
            load_spec(table)
        message = str(info.value)
        assert "expected an entry name of ASCII letters, digits" in message and words in message, message
        assert message.isascii() and message.isprintable(), message


def test_closed_standard_output_is_one_line(tmp_path: Path) -> None:
    """``resnet-spec compare ... >&-``: one line on stderr, exit 2; with --quiet the verdict is the exit status."""
    import os
    import subprocess
    import sys

    command = [sys.executable, "-m", "resnet_spec", "compare", "--arch", "resnet20"]
    closed = subprocess.run(command, stderr=subprocess.PIPE, text=True, preexec_fn=lambda: os.close(1), check=False)
    assert closed.returncode == 2, closed.stderr
    assert closed.stderr == (
        "resnet-spec compare: error: standard output is closed: nowhere to write (compare --quiet answers by its "
        "exit status)\n"
    )
    quiet = subprocess.run([*command, "--quiet"], stderr=subprocess.PIPE, text=True, preexec_fn=lambda: os.close(1),
                           check=False)  # fmt: skip
    assert quiet.returncode == 0, quiet.stderr
