"""Containment and the exit-status contract: hostile subjects and hostile tables never decide the exit status.

Each hostile subject below is our own code written the way an adversary (or a careless user) would: it exits, prints,
loops, interrupts, allocates.  The contract (resnet_spec.cli): exit 0 only for a complete "conformant", 1 only for a
complete "not conformant", 2 for everything else with exactly one line on stderr and, under ``--format json``, a
JSON error object on stdout.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path

import pytest
import torchvision  # also imported here so that the forked children need not import it again

from resnet_spec.cli import run_command
from resnet_spec.sandbox import ContainedError, parse_size, phase, run_contained

# ---- run_contained ------------------------------------------------------------------------------------------------


def _answer(x: int) -> int:
    print("to stdout")
    print("to stderr", file=sys.stderr)
    os.write(1, b"straight to fd 1\n")
    with phase("adding"):
        return x + 1


def _exits() -> None:
    with phase("construction"):
        sys.exit(0)


def _hard_exit() -> None:
    with phase("import"):
        os._exit(0)


def _signal() -> None:
    with phase("trace"):
        os.kill(os.getpid(), signal.SIGSEGV)


def _interrupt() -> None:
    with phase("trace"):
        raise KeyboardInterrupt


def _loop() -> None:
    with phase("construction"):
        while True:
            time.sleep(0.01)


def _allocate(megabytes: int) -> int:
    import torch

    with phase("construction"):
        return int(torch.ones(megabytes * 2**20 // 4).sum())


def _fails() -> None:
    with phase("trace"):
        raise RuntimeError("boom\nsecond line")


def test_result_and_output_come_back_apart() -> None:
    result = run_contained(_answer, 41)
    assert result.value == 42
    assert result.output.splitlines() == ["to stdout", "to stderr", "straight to fd 1"] or sorted(
        result.output.splitlines()
    ) == ["straight to fd 1", "to stderr", "to stdout"], result.output


@pytest.mark.parametrize(
    ("fn", "where", "kind", "reason"),
    [
        (_exits, "construction", "exit", "the code called sys.exit(0)"),
        (_hard_exit, "import", "exit", "the code ended the process (exit status 0) without a result"),
        (_signal, "trace", "signal", "killed by signal SIGSEGV"),
        (_interrupt, "trace", "interrupt", "the code raised KeyboardInterrupt"),
        (_fails, "trace", "exception", "RuntimeError: boom second line"),
    ],
)
def test_every_way_out_is_an_error_naming_the_phase(fn: object, where: str, kind: str, reason: str) -> None:
    with pytest.raises(ContainedError) as info:
        run_contained(fn)  # type: ignore[arg-type]
    assert (info.value.phase, info.value.kind) == (where, kind)
    assert reason in info.value.reason, info.value.reason


def test_a_time_limit_ends_a_loop() -> None:
    start = time.monotonic()
    with pytest.raises(ContainedError, match=r"construction: timed out after 0.5 s") as info:
        run_contained(_loop, timeout=0.5)
    assert info.value.kind == "timeout"
    assert time.monotonic() - start < 10


def test_a_memory_ceiling_ends_an_allocation() -> None:
    assert run_contained(_allocate, 8, memory=256 * 2**20).value == 2 * 2**20
    with pytest.raises(ContainedError, match="construction: ran out of memory under the memory ceiling of 256M"):
        run_contained(_allocate, 1024, memory=256 * 2**20)


def test_sizes() -> None:
    assert parse_size("512M") == 512 * 2**20
    assert parse_size("1.5G") == 3 * 2**29
    assert parse_size("none") is None
    for bad in ("12", "lots", "-1G"):
        with pytest.raises(ValueError, match="expected a size"):
            parse_size(bad)


# ---- hostile subjects through the command ------------------------------------------------------------------------

RESNET18 = """
import torchvision
from torchvision.models.resnet import BasicBlock

def resnet18():
    return torchvision.models.ResNet(BasicBlock, [2, 2, 2, 2])
"""

HOSTILE = {
    "exit at import": ("import sys\nsys.exit(0)\ndef make(): pass\n", "make", "import"),
    "exit in the factory": ("import sys\ndef make():\n    sys.exit(0)\n", "make", "construction"),
    "os._exit in the factory": ("import os\ndef make():\n    os._exit(0)\n", "make", "construction"),
    "exit in forward": (
        RESNET18 + "import sys\nclass M(torchvision.models.ResNet):\n    def forward(self, x):\n        sys.exit(0)\n"
        "def make():\n    return M(BasicBlock, [2, 2, 2, 2])\n",
        "make",
        "trace",
    ),
    "loop in the factory": ("def make():\n    while True:\n        pass\n", "make", "construction"),
    "loop in forward": (
        RESNET18 + "class M(torchvision.models.ResNet):\n    def forward(self, x):\n        while True:\n"
        "            pass\ndef make():\n    return M(BasicBlock, [2, 2, 2, 2])\n",
        "make",
        "trace",
    ),
    "KeyboardInterrupt in the factory": ("def make():\n    raise KeyboardInterrupt\n", "make", "construction"),
    "a 1 GB model": (
        "import torch\nfrom torch import nn\ndef make():\n    m = nn.Module()\n"
        "    m.w = nn.Parameter(torch.ones(2**28, device='cpu'))\n    return m\n",
        "make",
        "construction",
    ),
    "a signal in forward": (
        RESNET18 + "import os, signal\nclass M(torchvision.models.ResNet):\n    def forward(self, x):\n"
        "        os.kill(os.getpid(), signal.SIGTERM)\ndef make():\n    return M(BasicBlock, [2, 2, 2, 2])\n",
        "make",
        "trace",
    ),
}


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = run_command("compare", list(args), prog="compare.py")
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _assert_one_line_error(code: int, out: str, err: str, where: str, json_format: bool) -> dict[str, object]:
    assert code == 2, (code, out, err)
    assert err.count("\n") == 1 and err.startswith(f"compare.py: error: {where}: "), err
    if not json_format:
        assert out == "", out
        return {}
    data = json.loads(out)
    assert set(data) == {"error", "phase", "notes"} and data["phase"] == where, data
    return data


# JSON for every case (stderr has its one line there too); text for a few.
FORMATS = [(case, True) for case in sorted(HOSTILE)] + [("exit in forward", False), ("loop in the factory", False)]


@pytest.mark.parametrize(("case", "json_format"), FORMATS, ids=[f"{c}-{'json' if j else 'text'}" for c, j in FORMATS])
def test_hostile_subject_exits_2_with_one_line(
    case: str, json_format: bool, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source, name, where = HOSTILE[case]
    (tmp_path / "hostile.py").write_text(source)
    timeout = "2" if case.startswith("loop") else "60"  # the loops end by it; the rest must not need it
    args = ["--depth", "18", "--impl", f"{tmp_path / 'hostile.py'}:{name}", "--timeout", timeout, "--memory", "512M"]
    code, out, err = _run(capsys, *args, *(["--format", "json"] if json_format else []))
    _assert_one_line_error(code, out, err, where, json_format)


PRINTS = RESNET18 + (
    "class M(torchvision.models.ResNet):\n    def forward(self, x):\n        print('hello from forward')\n"
    "        return super().forward(x)\n"
    "def make():\n    print('hello from the factory')\n    return M(BasicBlock, [2, 2, 2, 2])\n"
)


def test_prints_stay_out_of_the_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "noisy.py").write_text(PRINTS)
    target = f"{tmp_path / 'noisy.py'}:make"
    code, out, err = _run(capsys, "--depth", "18", "--impl", target, "--format", "json")
    data = json.loads(out)  # stdout is the JSON and nothing else
    assert code == 0 and data["conformant"] is True, data
    assert any("hello from the factory" in n and "hello from forward" in n for n in data["notes"]), data["notes"]
    assert err == ""
    code, out, err = _run(capsys, "--depth", "18", "--impl", target)
    assert code == 0 and "hello" not in out and "verdict: conforms to resnet18" in out
    assert "hello from the factory" in err and "hello from forward" in err


def test_output_before_a_failure_is_summarised_on_the_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "h.py").write_text("import sys\ndef make():\n    print('a'); print('last words')\n    sys.exit(3)\n")
    code, out, err = _run(capsys, "--depth", "18", "--impl", f"{tmp_path / 'h.py'}:make", "--format", "json")
    data = _assert_one_line_error(code, out, err, "construction", True)
    assert "sys.exit(3)" in err and "'last words'" in err
    assert any("last words" in str(n) for n in data["notes"])  # type: ignore[union-attr]


def test_lazy_module_is_never_a_traceback(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "lazy.py").write_text(
        "from torch import nn\ndef make():\n    return nn.Sequential(nn.LazyConv2d(64, 7, 2, 3), "
        "nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.LazyLinear(1000))\n"
    )
    code, out, err = _run(capsys, "--depth", "18", "--impl", f"{tmp_path / 'lazy.py'}:make", "--format", "json")
    data = json.loads(out)
    assert code in (1, 2), (code, err)
    assert "Traceback" not in err and err.count("\n") <= 1, err
    # every tensor lazy: they take their shapes on the device the model was built on, no CPU rebuild
    assert not any("meta device" in str(note) for note in data.get("notes", [])), data.get("notes")


# ---- hostile tables ---------------------------------------------------------------------------------------------

TOY_TABLE = Path(__file__).resolve().parent / "support" / "toy_table.toml"  # a small valid user table: conv2_x, conv3_x


def _table(tmp_path: Path, width: int | None = None, repeats: int | None = None) -> str:
    """The toy table with conv3_x's width or repeat count replaced."""
    text = TOY_TABLE.read_text()
    if width is not None:
        text = text.replace('"3x3, 16"', f'"3x3, {width}"')
    if repeats is not None:
        head, sep, tail = text.partition("conv3_x")
        text = head + sep + tail.replace("repeats = 1", f"repeats = {repeats}", 1)
    path = tmp_path / "hostile.toml"
    path.write_text(text)
    return f"{path}:toy"


def test_the_hostile_table_loads_when_sane(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(capsys, "--arch", _table(tmp_path))
    assert code == 0, (out, err)


TABLES = ["huge width", "huge repeats", "not UTF-8", "a directory", "not TOML", "missing"]
TABLE_FORMATS = [(case, True) for case in TABLES] + [("not UTF-8", False)]


@pytest.mark.parametrize(
    ("case", "json_format"), TABLE_FORMATS, ids=[f"{c}-{'json' if j else 'text'}" for c, j in TABLE_FORMATS]
)
def test_hostile_table_exits_2_with_one_line(
    case: str, json_format: bool, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    if case == "huge width":
        arch = _table(tmp_path, width=10**9)
    elif case == "huge repeats":
        arch = _table(tmp_path, repeats=10**8)
    elif case == "not UTF-8":
        (tmp_path / "latin1.toml").write_bytes("[table]\nfamily = 'caf\xe9'\n".encode("latin-1"))
        arch = str(tmp_path / "latin1.toml")
    elif case == "a directory":
        (tmp_path / "dir.toml").mkdir()
        arch = str(tmp_path / "dir.toml")
    elif case == "not TOML":
        (tmp_path / "bad.toml").write_text("[table\n")
        arch = str(tmp_path / "bad.toml")
    else:
        arch = str(tmp_path / "missing.toml")
    timeout = "2" if case == "huge repeats" else "60"  # the loader's bounds should refuse it at once
    args = ["--arch", arch, "--timeout", timeout, "--memory", "1G", *(["--format", "json"] if json_format else [])]
    code, out, err = _run(capsys, *args)
    assert code == 2, (code, out, err)
    assert err.count("\n") == 1 and err.startswith("compare.py: error: "), err
    if json_format:
        assert set(json.loads(out)) == {"error", "phase", "notes"}
    else:
        assert out == ""


# ---- a CPU-built model moves to meta without a copy of its weights ---------------------------------------------


def test_to_meta_copies_no_weights(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch
    from torch import nn

    from resnet_spec.verify._trace import to_meta

    model = torchvision.models.resnet18()
    model.register_buffer("extra", torch.ones(3))

    def refuse(self: torch.Tensor, memo: object) -> None:
        raise AssertionError(f"a tensor of shape {tuple(self.shape)} was deep-copied")

    monkeypatch.setattr(torch.Tensor, "__deepcopy__", refuse)
    monkeypatch.setattr(nn.Parameter, "__deepcopy__", refuse)
    meta = to_meta(model)
    originals = dict(model.state_dict(keep_vars=True))
    copies = dict(meta.state_dict(keep_vars=True))
    assert copies.keys() == originals.keys()
    for name, tensor in copies.items():
        original = originals[name]
        assert tensor.device.type == "meta" and original.device.type == "cpu", name
        assert (tensor.shape, tensor.dtype, tensor.requires_grad) == (
            original.shape,
            original.dtype,
            original.requires_grad,
        )
        assert isinstance(tensor, nn.Parameter) == isinstance(original, nn.Parameter), name
