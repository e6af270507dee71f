"""The conformance suite, collected by pytest when ``--resnet-impl TARGET --resnet-arch NAME`` is given.

Every test runs on the model TARGET builds and says, on failure, the row, the block, what was expected and what was
found.  Each property is its own test, so a defect fails the tests of its rows and nothing else:

- ``test_structure[ROW]``: the row read from the model's dataflow against the table (and ``[model]``: what belongs
  to no row);
- ``test_params``, ``test_macs[analytic|flop_counter|fvcore]``: the totals, exact, at the table's input size;
- ``test_equivalence[ROW]``: the reference's row, given the model's own input to the row and the model's weights,
  computes the model's row output (eval and train mode, float64);
- hypothesis properties at drawn input sizes: every row's output shape is the padding arithmetic's; each residual
  block with its branch zeroed returns ReLU of its shortcut; gradients reach the stem conv; eval outputs are
  deterministic and batch-independent;
- ``test_cuda_equals_cpu`` (marked ``cuda``; skipped with the reason where no GPU is present).
"""

from __future__ import annotations

import copy
import itertools
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache

import pytest
import torch
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from torch import Tensor, nn

from .conformance import load_target_spec
from .counting import count
from .diff import Comparison, compare_model
from .equivalence import (
    TransferError,
    Transferred,
    _layout,
    _relative,
    equivalence_input,
    subject_rows,
    tolerance,
    transfer,
)
from .model import ResidualBlock
from .pytest_plugin import option_values
from .spec import ResNetSpec, SpecError
from .subject import SubjectError, make_subject
from .trace import TraceError, record_values, to_meta


@dataclass
class _Subject:
    target: str
    model: nn.Module
    spec: ResNetSpec
    comparison: Comparison


@cache
def _spec(arch: str, variant: str | None, shortcut: str | None) -> ResNetSpec:
    try:
        return load_target_spec(arch, variant, shortcut)
    except (SpecError, LookupError) as e:
        raise pytest.UsageError(f"--resnet-arch {arch!r}: {e}") from e


def _config_spec(config: pytest.Config) -> ResNetSpec:
    options = option_values(config)
    return _spec(str(options["arch"]), options["variant"], options["shortcut"])


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "row" in metafunc.fixturenames:
        rows = list(_config_spec(metafunc.config).rows)
        if metafunc.function.__name__ == "test_structure":
            rows.append("model")
        metafunc.parametrize("row", rows)


@pytest.fixture(scope="session")
def subject(pytestconfig: pytest.Config) -> _Subject:
    target = str(option_values(pytestconfig)["impl"])
    spec = _config_spec(pytestconfig)
    try:
        model, _ = make_subject(target)
        comparison = compare_model(model, spec)
    except (SubjectError, TraceError) as e:
        pytest.fail(f"--resnet-impl {target!r}: {e}", pytrace=False)
    return _Subject(target, model, spec, comparison)


@pytest.fixture(scope="session")
def moved(subject: _Subject) -> Transferred:
    """The model's float64 copy with drawn weights, and the reference sharing them."""
    try:
        return transfer(subject.model, subject.spec)
    except TransferError as e:
        where = f" ({e.block or e.row})" if e.row else ""
        pytest.skip(f"needs the model's tensors in the reference, which failed{where}: {e.reason}")


@pytest.fixture(scope="session")
def examples(pytestconfig: pytest.Config) -> int:
    return int(option_values(pytestconfig)["examples"] or 10)  # type: ignore[call-overload]


def _settings(examples: int) -> settings:
    return settings(max_examples=examples, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])  # fmt: skip


def _fail(lines: list[str]) -> None:
    if lines:
        pytest.fail("\n".join(lines), pytrace=False)


# ---- structure and totals -------------------------------------------------------------------------------------

_TOTALS = ("params", "MACs (conv+fc)")


def test_structure(subject: _Subject, row: str) -> None:
    """The row read from the model's dataflow is the table's row."""
    found = [m for m in subject.comparison.mismatches if m.row == row and m.property not in _TOTALS]
    _fail([f"{row}: {m.where} {m.property}: expected {m.expected}, found {m.found}" for m in found])


def test_params(subject: _Subject) -> None:
    """Parameters, exact: the table's count (arithmetic over its layers) against the model's."""
    c = subject.comparison
    if c.found.params != c.expected_params:
        _fail([f"model: parameters: expected {c.expected_params:,} (the table's), found {c.found.params:,}"])


@pytest.mark.parametrize("counter", ["analytic", "flop_counter", "fvcore"])
def test_macs(subject: _Subject, counter: str) -> None:
    """Multiply-adds of convs and the classifier at the table's input size, by three counters, against the table's."""
    spec = subject.spec
    expected = count(spec).total
    size = (spec.input_size, spec.input_size)
    x_shape = (1, spec.in_channels, *size)
    if counter == "analytic":
        found = subject.comparison.found.macs  # the trace's convolutions and matrix products
    elif counter == "flop_counter":
        from torch.utils.flop_counter import FlopCounterMode

        meta = to_meta(subject.model).eval()
        with FlopCounterMode(display=False) as flops, torch.no_grad():
            meta(torch.empty(x_shape, device="meta"))
        found = flops.get_total_flops() // 2  # two FLOPs per multiply-add
    else:
        from .measure import FVCORE_CONV_LINEAR, materialize

        model = materialize(subject.model).eval()
        with warnings.catch_warnings():  # fvcore traces with torch.jit, which warns that it is deprecated
            warnings.simplefilter("ignore", FutureWarning)
            from fvcore.nn import FlopCountAnalysis

            analysis = FlopCountAnalysis(model, torch.zeros(x_shape))
            analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
            found = sum(v for op, v in analysis.by_operator().items() if op in FVCORE_CONV_LINEAR)
    if found != expected:
        _fail([f"model: multiply-adds at {size[0]}x{size[1]} by {counter}: expected {expected:,} (the table's), "
               f"found {found:,}"])  # fmt: skip


# ---- computation ----------------------------------------------------------------------------------------------


def test_equivalence(subject: _Subject, row: str) -> None:
    """The reference's row, with the model's weights and the model's own input to the row, gives the model's output."""
    eq = subject.comparison.equivalence
    if eq is None or eq.status == "skipped":
        pytest.skip(f"functional check not run: {eq.reason if eq is not None else 'not requested'}")
    if eq.status == "unmapped":
        if eq.row == row:
            _fail([f"{row}: {eq.reason}"])
        pytest.skip(f"not computed: the model's tensors could not be mapped ({eq.block or eq.row}: {eq.reason})")
    check = next(c for c in eq.rows if c.row == row)
    if check.local is None:
        _fail([f"{row}: the row's output has shape {check.found_shape}, the reference's {check.expected_shape}"])
    elif check.local > eq.tolerance:
        _fail([f"{row}: the row computes something else than the table's: maximum relative difference "
               f"{check.local:.1e} with the model's own input to the row (tolerance {eq.tolerance:.1e}); end to end "
               f"eval {_figure(check.eval)}, train {_figure(check.train)}"])  # fmt: skip


def _figure(value: float | None) -> str:
    return "shape differs" if value is None else f"{value:.1e}"


# ---- properties at drawn input sizes ----------------------------------------------------------------------------


def _sizes(spec: ResNetSpec, extra: int = 40) -> st.SearchStrategy[tuple[int, int]]:
    """Heights and widths from the smallest the table allows, odd and non-square included."""
    low = spec.min_input_size()
    return st.tuples(st.integers(low, low + extra), st.integers(low, low + extra))


def test_row_output_shapes_follow_the_padding_arithmetic(subject: _Subject, examples: int) -> None:
    spec = subject.spec
    meta = to_meta(subject.model)

    @_settings(examples)
    @given(_sizes(spec, extra=200))
    @example((spec.input_size, spec.input_size))
    def check(size: tuple[int, int]) -> None:
        h, w = size
        try:
            rows = subject_rows(meta, torch.empty(1, spec.in_channels, h, w, device="meta"), spec)
        except (TraceError, ValueError, RuntimeError) as e:
            _fail([f"input {h}x{w} (the table allows it): the model's forward pass fails: {e}"])
        expected = spec.row_output_sizes(h, w)
        lines = []
        for row in spec.rows:
            want = (1, spec.head.num_classes) if row == "fc" else expected[row]
            got = rows.get(row)
            shape = None if got is None else (tuple(got.shape) if row == "fc" else tuple(got.shape[2:]))
            if shape != tuple(want):
                lines.append(f"{row} at input {h}x{w}: output {'x'.join(map(str, want))} expected by the padding "
                             f"arithmetic, found {'x'.join(map(str, shape)) if shape else 'none'}")  # fmt: skip
        _fail(lines)

    check()


@contextmanager
def _zeroed_branches(moved: Transferred) -> Iterator[list[ResidualBlock]]:
    """Each residual block's last batch norm weight and bias set to 0 (in the subject, which the reference shares)."""
    ids = {id(t): name for name, t in itertools.chain(moved.reference.named_parameters())}
    subject_tensors = dict(itertools.chain(moved.subject.named_parameters(), moved.subject.named_buffers()))
    blocks = [m for m in moved.reference.modules() if isinstance(m, ResidualBlock)]
    saved: list[tuple[Tensor, Tensor]] = []
    with torch.no_grad():
        for block in blocks:
            for tensor in (block.last_bn.weight, block.last_bn.bias):
                source = subject_tensors[moved.sources[ids[id(tensor)]]]
                saved.append((source, source.clone()))
                source.zero_()
    try:
        yield blocks
    finally:
        with torch.no_grad():
            for source, value in saved:
                source.copy_(value)


def test_zeroed_branch_returns_relu_of_its_shortcut(subject: _Subject, moved: Transferred, examples: int) -> None:
    spec = subject.spec
    if not spec.shortcut.residual:
        pytest.skip(f"{spec.label} has no shortcuts")
    if spec.order == "pre":  # never a silent pass: the property is stated for post-activation blocks only
        pytest.skip(f"{spec.label} is pre-activation: the property is checked for post-activation blocks only")
    table_blocks = list(spec.blocks)
    tol = tolerance(spec)

    @_settings(examples)
    @given(_sizes(spec, extra=16), st.integers(1, 2))
    def check(size: tuple[int, int], batch: int) -> None:
        h, w = size
        x = torch.randn(batch, spec.in_channels, h, w, dtype=torch.float64)
        with _zeroed_branches(moved) as blocks:
            trace, values = record_values(moved.subject, x)
            layout = _layout(trace, spec)
            lines = []
            moved.reference.eval()
            with torch.no_grad():
                for table_block, ours, found in zip(table_blocks, blocks, layout.blocks, strict=False):
                    start, output = values[found.start], values[found.output]
                    expected = torch.relu(ours.downsample(start))
                    if output.shape != expected.shape:
                        lines.append(f"{table_block.name}: with its branch zeroed the block returns shape "
                                     f"{tuple(output.shape)}, expected ReLU of its {table_block.shortcut} shortcut: "
                                     f"{tuple(expected.shape)}")  # fmt: skip
                    elif (difference := _relative(output, expected)) > tol:
                        lines.append(f"{table_block.name}: with its branch zeroed the block does not return ReLU of "
                                     f"its {table_block.shortcut} shortcut (input {h}x{w}; maximum relative "
                                     f"difference {difference:.1e})")  # fmt: skip
        _fail(lines[:1])

    check()


def test_gradients_reach_the_stem_conv(subject: _Subject, moved: Transferred, examples: int) -> None:
    spec = subject.spec
    stem = dict(moved.subject.named_parameters()).get(moved.sources["conv1.weight"])
    if stem is None:
        pytest.skip("the stem conv's weight is a buffer, not a parameter")

    @_settings(examples)
    @given(_sizes(spec, extra=16))
    def check(size: tuple[int, int]) -> None:
        h, w = size
        x = torch.randn(2, spec.in_channels, h, w, dtype=torch.float64)
        moved.subject.train()
        try:
            with torch.enable_grad():
                stem.requires_grad_(True)
                (grad,) = torch.autograd.grad(moved.subject(x).sum(), [stem], allow_unused=True)
        finally:
            moved.subject.eval()
        if grad is None or not bool(torch.isfinite(grad).all()) or float(grad.abs().sum()) == 0:
            found = "none" if grad is None else ("not finite" if not bool(torch.isfinite(grad).all()) else "all zero")
            _fail([f"conv1: the loss's gradient at the stem conv's weight (input {h}x{w}): expected nonzero and "
                   f"finite, found {found}"])  # fmt: skip

    check()


def test_eval_outputs_are_deterministic_and_batch_independent(
    subject: _Subject, moved: Transferred, examples: int
) -> None:
    spec = subject.spec
    tol = tolerance(spec)

    @_settings(examples)
    @given(_sizes(spec, extra=16), st.integers(2, 3))
    def check(size: tuple[int, int], batch: int) -> None:
        h, w = size
        x = torch.randn(batch, spec.in_channels, h, w, dtype=torch.float64)
        model = moved.subject.eval()
        with torch.no_grad():
            first, again = model(x), model(x)
            if not torch.equal(first, again):
                _fail([f"fc: two eval passes on the same {batch}x{h}x{w} input differ (maximum relative difference "
                       f"{_relative(again, first):.1e}); expected identical"])  # fmt: skip
            for i in range(batch):
                alone = model(x[i : i + 1])
                if (difference := _relative(alone[0], first[i])) > tol:
                    _fail([f"fc: image {i} alone gives other logits than in a batch of {batch} (input {h}x{w}; "
                           f"maximum relative difference {difference:.1e}, tolerance {tol:.1e})"])  # fmt: skip

    check()


@pytest.mark.cuda
def test_cuda_equals_cpu(subject: _Subject, moved: Transferred) -> None:
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device; none is available (torch.cuda.is_available() is False)")
    spec = subject.spec
    cpu = copy.deepcopy(moved.subject).float().eval()
    gpu = copy.deepcopy(cpu).cuda()
    x = torch.randn(equivalence_input(spec), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected, found = cpu(x), gpu(x.cuda())
    difference = _relative(found.cpu(), expected)
    if difference > 1e-4:  # float32 on two devices: different kernels, different summation orders
        _fail([f"fc: CUDA logits differ from CPU logits (maximum relative difference {difference:.1e}, "
               "tolerance 1e-4 in float32)"])  # fmt: skip
