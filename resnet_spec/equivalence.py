"""Functional equivalence: the subject's weights in the reference network, the same input, every row compared.

The structural reader recognises the forms it knows; the numbers decide the rest.  :func:`check_equivalence`

1. copies the subject to the CPU in float64 and fills every parameter and buffer with values drawn here (seeded):
   an initialisation such as zero-init residual or batch norm at identity would hide a difference, random values
   do not;
2. maps every tensor the subject's forward pass reads to the reference network built from the table, by dataflow
   (the trace: the stem conv, each residual block's branch convs in order and its shortcut, the classifier; the
   batch norm after each conv by its operator's argument roles, or, written by hand, by which assignment of its
   four tensors reproduces its output) and by shape, never by attribute names: torchvision, timm, Hugging Face,
   MONAI and hand-written models map alike; what has no place in the table is refused with a finding;
3. runs both on the same input in eval mode (running statistics) and in train mode (batch statistics) and compares
   every row's output (``conv1``, ``conv2_x`` ... ``fc``).

The figure per row is the maximum relative difference ``max|subject - reference| / max|reference|`` over the row's
output.  Both networks compute in float64; the tolerance is a bound on float64 accumulation error: a dot product
of length K is exact to ``K u`` relative (``u = 2**-53``, Higham's gamma_K), at most ``depth`` such layers are
composed, and a factor 16 covers the different summation orders of two implementations.  So the tolerance is
``16 * depth * K_max * u`` (ResNet-152: K_max = 3*3*512 = 4608, tolerance 1.2e-9), far below any change of the
function (a wrong stride, a missing ReLU, a batch norm with another epsilon differ by 1e-4 or more).

The input is the smallest odd size at which every row's map is at least 2x2 (width two more than height, so that
height and width are not confused), batch 2 (batch statistics need more than one value per channel).
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import Tensor, nn

from .counting import count
from .model import ResNet, build
from .read import _common_ancestor, _path_ops
from .spec import ResNetSpec, load_spec
from .trace import Op, Trace, TraceError, record_values, to_meta, trace_model

__all__ = [
    "MAX_MACS",
    "MAX_PARAMS",
    "Equivalence",
    "RowCheck",
    "TransferError",
    "Transferred",
    "check_equivalence",
    "equivalence_input",
    "reference_row",
    "subject_rows",
    "tolerance",
    "transfer",
]

# Beyond these the check is skipped with a note (never silently): four float64 forward passes of the subject and
# the reference cost about a second per 1e9 multiply-adds on one core, and float64 copies of both take memory.
MAX_MACS = 4_000_000_000  # at the equivalence input, per image (ResNet-152 at 33x35: about 0.3e9)
MAX_PARAMS = 150_000_000  # ResNet-152: 60e6

Status = Literal["equal", "differs", "unmapped", "skipped"]
_UNIT_ROUNDOFF = 2.0**-53  # float64
_BATCH = 2
_SEED = 0


@dataclass(frozen=True)
class RowCheck:
    """One row's output, subject against reference, in both modes."""

    row: str  # conv1, conv2_x, ..., fc
    eval: float | None  # maximum relative difference in eval mode; None when the shapes differ
    train: float | None  # the same in train mode (batch statistics)
    expected_shape: tuple[int, ...]
    found_shape: tuple[int, ...]
    ok: bool
    # The row alone: the reference's row run on the model's own previous row output (the larger of eval and train),
    # so a defect shows in its own row only; None where the shapes differ.
    local: float | None = None


@dataclass(frozen=True)
class Equivalence:
    """The result of the numerical check; ``status`` says whether it ran and what it found."""

    status: Status  # equal, differs (at `row`), unmapped (a tensor has no place: `row`, `reason`), skipped
    reason: str  # one line: the first difference, what could not be mapped, or why the check did not run
    row: str | None  # the first row whose output differs, or where mapping failed
    block: str | None  # the block, where the finding is inside one
    input_shape: tuple[int, ...]
    tolerance: float
    rows: tuple[RowCheck, ...] = ()
    mapped: int = 0  # subject tensors transferred into the reference
    notes: tuple[str, ...] = field(default=())  # how it was written differently (a hand-written batch norm, ...)

    @property
    def equal(self) -> bool:
        return self.status == "equal"


class _Unmapped(Exception):
    def __init__(self, row: str | None, block: str | None, reason: str) -> None:
        super().__init__(reason)
        self.row, self.block, self.reason = row, block, reason


def tolerance(spec: ResNetSpec) -> float:
    """The largest maximum relative difference per row that counts as equal (see the module docstring)."""
    reductions = [conv.kernel**2 * conv.in_channels for conv in spec.stem.convs] + [spec.out_channels]
    reductions += [conv.kernel**2 * conv.in_channels for block in spec.blocks for conv in block.convs]
    return 16 * spec.depth * max(reductions) * _UNIT_ROUNDOFF


def equivalence_input(spec: ResNetSpec) -> tuple[int, int, int, int]:
    """(N, C, H, W): the smallest odd H at which every row's map is at least 2x2 (or the table's size), W = H + 2."""
    limit = spec.input_size
    size = spec.min_input_size() | 1
    while size < limit and min(min(hw) for row, hw in spec.row_output_sizes(size, size + 2).items() if row != "fc") < 2:
        size += 2
    size = min(size, limit)
    return (_BATCH, spec.in_channels, size, size + 2 if size < limit else size)


# ---- reading a trace into the table's slots -------------------------------------------------------------------

_NORM_KINDS = frozenset({"bn", "other", "view"})  # what may follow a conv before the next conv, merge or activation


@dataclass
class _Unit:
    """A conv (or linear) and the per-channel tensors that follow it (its batch norm)."""

    op: Op
    norm: list[Op]  # ops after it that read parameters or buffers


@dataclass
class _Block:
    start: int  # the block's input value
    output: int  # its output value (after the ReLU that follows the addition, if one does)
    branch: list[_Unit]
    shortcut: list[_Unit]
    end: int  # index of the last op of the block
    residual: bool = True  # closed by an addition (False: a block of a plain network)


@dataclass
class _Layout:
    stem: _Unit | None
    stem_rest: list[_Unit]  # a deep stem's convs after the first (ResNet-C: three 3x3 convs), as the table has them
    blocks: list[_Block]
    head: list[Op]  # parameter-reading ops after the last block
    stray: list[Op]  # parameter-reading ops that belong to none of the above
    conv1_end: int | None  # the value the stem row ends with
    head_input: int | None


def _reads_tensors(op: Op) -> bool:
    return bool(op.params or op.buffers)


def _norm_ops(trace: Trace, conv: Op) -> list[Op]:
    """Ops reading parameters or buffers downstream of ``conv`` before a conv, merge, activation or pool."""
    found: dict[int, Op] = {}
    stack = [conv.output]
    while stack:
        value = stack.pop()
        for op in trace.readers(value):
            if op.index in found or op.kind not in _NORM_KINDS:
                continue
            found[op.index] = op
            stack.append(op.output)
    return [found[i] for i in sorted(found) if _reads_tensors(found[i])]


def _unit(trace: Trace, op: Op) -> _Unit:
    return _Unit(op, _norm_ops(trace, op))


def _output_of_add(trace: Trace, add: Op) -> tuple[int, int]:
    """The block's output value and last op index: the ReLU reading the sum when it is the sum's only reader."""
    readers = list(trace.readers(add.output))
    if len(readers) == 1 and readers[0].kind == "relu":
        return readers[0].output, readers[0].index
    return add.output, add.index


def _layout(trace: Trace, spec: ResNetSpec) -> _Layout:
    ops = trace.ops
    convs = [op for op in ops if op.kind == "conv"]
    if not convs:
        raise _Unmapped("conv1", None, "the model has no convolution")
    stem = _unit(trace, convs[0])
    stem_count = len(spec.stem.convs)
    stem_rest = [_unit(trace, op) for op in convs[1:stem_count]]
    blocks: list[_Block] = []
    for add in (op for op in ops if op.kind == "add" and len(op.inputs) == 2):
        start = _common_ancestor(trace, *add.inputs)
        if start is None:
            continue
        paths = [_path_ops(trace, value, start) for value in add.inputs]
        counts = [sum(op.kind == "conv" for op in path) for path in paths]
        branch, shortcut = (paths[0], paths[1]) if counts[0] >= counts[1] else (paths[1], paths[0])
        output, end = _output_of_add(trace, add)
        blocks.append(
            _Block(
                start,
                output,
                [_unit(trace, op) for op in branch if op.kind == "conv"],
                [_unit(trace, op) for op in shortcut if op.kind == "conv"],
                end,
            )
        )
    if not blocks:  # a plain network: its convs after the stem, cut into blocks of the table's sizes
        blocks = _plain_blocks(trace, convs[stem_count:], spec)
    last_end = blocks[-1].end if blocks else stem.op.index
    head_input = blocks[-1].output if blocks else None
    conv1_end = None
    if blocks:
        conv1_end = blocks[0].start
        producer = trace.producer(conv1_end)
        while producer is not None and producer.kind == "view" and producer.inputs:
            producer = trace.producer(producer.inputs[0])
        if producer is not None and producer.kind in ("maxpool", "avgpool") and producer.inputs:
            conv1_end = producer.inputs[0]
    if spec.order == "pre":  # the stem row is its last conv: the BN-ReLU after it is the first block's (He et al. 2016)
        conv1_end = (stem_rest[-1] if stem_rest else stem).op.output
    claimed = {op.index for unit in (stem, *stem_rest) for op in (unit.op, *unit.norm)}
    for block in blocks:
        for unit in (*block.branch, *block.shortcut):
            claimed |= {unit.op.index, *(op.index for op in unit.norm)}
    head = [op for op in ops[last_end + 1 :] if _reads_tensors(op) and op.index not in claimed]
    claimed |= {op.index for op in head}
    stray = [op for op in ops if _reads_tensors(op) and op.index not in claimed]
    return _Layout(stem, stem_rest, blocks, head, stray, conv1_end, head_input)


def _plain_blocks(trace: Trace, convs: list[Op], spec: ResNetSpec) -> list[_Block]:
    sizes = [len(block.convs) for block in spec.blocks]
    if len(convs) != sum(sizes):
        return []
    blocks: list[_Block] = []
    position = 0
    for size in sizes:
        members = convs[position : position + size]
        position += size
        units = [_unit(trace, op) for op in members]
        blocks.append(_Block(members[0].inputs[0], -1, units, [], members[-1].index, residual=False))
    for block, following in itertools.pairwise(blocks):
        block.output = following.start
    # the last block ends where the head starts: the value the global pool reads
    last = blocks[-1]
    for op in trace.ops[last.end + 1 :]:
        if op.kind in ("mean", "adaptive_avgpool", "adaptive_maxpool", "avgpool", "maxpool") and op.inputs:
            last.output = op.inputs[0]
            break
    return blocks


# ---- mapping the subject's tensors onto the reference's ----------------------------------------------------------


@dataclass
class _Transfer:
    """Reference tensor name -> where its value comes from."""

    sources: dict[str, str] = field(default_factory=dict)  # reference name -> subject name
    constants: dict[str, float] = field(default_factory=dict)  # reference name -> a constant (identity BN)
    hand_norms: list[tuple[_Unit, _Unit, str, str | None]] = field(default_factory=list)  # (subject, ref, row, block)
    # reference running mean -> the subject's conv bias it absorbs: BN(Wx + b) with mean m is BN(Wx) with mean m - b
    # in eval mode, and batch statistics cancel b in train mode (the fold convert.py makes for Caffe's biases)
    folded: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def _bn_roles(op: Op) -> tuple[str, str, str, str]:
    """(weight, bias, running_mean, running_var) names of a native batch norm op ("" where absent)."""
    names = (*op.arg_names, "", "", "", "", "")
    return (names[1], names[2], names[3], names[4])


def _conv_roles(op: Op) -> tuple[str, str]:
    """(weight, bias) of a conv, or of a linear op (addmm(bias, x, w.t()), mm(x, w.t()))."""
    names = (*op.arg_names, "", "", "")
    if op.kind == "linear":
        return (names[2], names[0]) if "addmm" in op.aten else (names[1], "")
    return (names[1], names[2])


def _map_unit(
    subject: _Unit, reference: _Unit, shapes: tuple[Mapping[str, torch.Size], Mapping[str, torch.Size]],
    out: _Transfer, row: str, block: str | None, what: str,
) -> None:  # fmt: skip
    s_shapes, r_shapes = shapes
    s_weight, s_bias = _conv_roles(subject.op)
    r_weight, r_bias = _conv_roles(reference.op)
    if not s_weight:
        raise _Unmapped(row, block, f"{what}: its weight is not a parameter or buffer of the model")
    s_shape, r_shape = tuple(s_shapes[s_weight]), tuple(r_shapes[r_weight])
    if s_shape != r_shape and _squeezed(s_shape) != _squeezed(r_shape):
        raise _Unmapped(row, block, f"{what}: weight {s_weight} has shape {s_shape}, the table's is {r_shape}")
    out.sources[r_weight] = s_weight
    if s_bias and not r_bias:
        if not (reference.norm and subject.norm):
            raise _Unmapped(row, block, f"{what}: bias {s_bias} has no place in the table (the table's has no bias)")
        out.folded[_bn_roles(reference.norm[0])[2]] = s_bias
    if r_bias:
        if s_bias:
            out.sources[r_bias] = s_bias
        else:
            out.constants[r_bias] = 0.0
    if not reference.norm:
        if subject.norm:
            names = sorted({n for op in subject.norm for n in (*op.params, *op.buffers)})
            raise _Unmapped(row, block, f"{what}: tensors {', '.join(names)} after it have no place in the table")
        return
    (r_bn,) = reference.norm
    roles = _bn_roles(r_bn)
    if not subject.norm:  # no batch norm: the reference's is the identity in eval mode; train mode shows the rest
        for name, value in zip(roles, (1.0, 0.0, 0.0, 1.0), strict=True):
            out.constants[name] = value
        return
    if len(subject.norm) == 1 and subject.norm[0].kind == "bn":
        for r_name, s_name, identity in zip(roles, _bn_roles(subject.norm[0]), (1.0, 0.0, 0.0, 1.0), strict=True):
            if s_name:
                if s_shapes[s_name].numel() != r_shapes[r_name].numel():
                    found_shape, table_shape = tuple(s_shapes[s_name]), tuple(r_shapes[r_name])
                    raise _Unmapped(
                        row,
                        block,
                        f"{what}: batch norm tensor {s_name} has shape {found_shape}, the table's {table_shape}",
                    )
                out.sources[r_name] = s_name
            else:
                out.constants[r_name] = identity
        return
    out.hand_norms.append((subject, reference, row, block))


def _squeezed(shape: Sequence[int]) -> tuple[int, ...]:
    return tuple(n for n in shape if n != 1)


def _map(
    subject: _Layout, reference: _Layout, spec: ResNetSpec,
    shapes: tuple[Mapping[str, torch.Size], Mapping[str, torch.Size]],
) -> _Transfer:  # fmt: skip
    out = _Transfer()
    if subject.stem is None or reference.stem is None:
        raise _Unmapped("conv1", None, "the model has no stem convolution")
    _map_unit(subject.stem, reference.stem, shapes, out, "conv1", None, "the stem conv")
    for n, (found_unit, our_unit) in enumerate(zip(subject.stem_rest, reference.stem_rest, strict=False), 2):
        _map_unit(found_unit, our_unit, shapes, out, "conv1", None, f"stem conv {n}")
    # Batch norms outside every conv's unit: a pre-activation block's first BN, the final BN before the pool (He et
    # al. 2016).  They pair with the reference's in order when both have the same ones; anything else is refused.
    subject_loose = [op for op in (*subject.stray, *subject.head) if op.kind == "bn"]
    reference_loose = [op for op in (*reference.stray, *reference.head) if op.kind == "bn"]
    if subject_loose and len(subject_loose) == len(reference_loose):
        s_shapes, r_shapes = shapes
        for s_bn, r_bn in zip(subject_loose, reference_loose, strict=True):
            pairs = [(r, s) for r, s in zip(_bn_roles(r_bn), _bn_roles(s_bn), strict=True) if r]
            if any(not s or s_shapes[s].numel() != r_shapes[r].numel() for r, s in pairs):
                break
            out.sources.update(dict(pairs))
        else:
            loose = {op.index for op in subject_loose}
            subject = dataclasses.replace(
                subject,
                stray=[op for op in subject.stray if op.index not in loose],
                head=[op for op in subject.head if op.index not in loose],
            )
            reference = dataclasses.replace(reference, head=[op for op in reference.head if op.kind != "bn"])
    if subject.stray:  # first: a conv outside every block shifts the blocks after it
        op = subject.stray[0]
        names = ", ".join((*op.params, *op.buffers))
        row, block = _next_block(subject, op.index, spec)
        where = f"{block}: " if block else ""
        raise _Unmapped(row, block, f"{where}{names} ({op.aten} in {op.module or 'the model'}) outside every residual "
                                    "block and the stem: no place in the table")  # fmt: skip
    table_blocks = [(stage.name, block) for stage in spec.stages for block in stage.blocks]
    counted = "" if len(subject.blocks) == len(table_blocks) else (
        f" (the model has {len(subject.blocks)} blocks, the table {len(table_blocks)})")  # fmt: skip
    for index, (row, expected) in enumerate(table_blocks):
        name = expected.name
        if index >= len(subject.blocks):
            raise _Unmapped(row, name, f"{name}: the model has no block here{counted}")
        found, ours = subject.blocks[index], reference.blocks[index]
        if found.residual != ours.residual:
            has = ("no addition (a plain block)", "an addition (a shortcut)")
            raise _Unmapped(row, name, f"{name}: the block has {has[found.residual]}, the table's "
                                       f"{has[ours.residual]}")  # fmt: skip
        if len(found.branch) != len(ours.branch):
            raise _Unmapped(row, name, f"{name}: the residual branch has {len(found.branch)} convs, the table's "
                                       f"{len(ours.branch)}{counted}")  # fmt: skip
        if len(found.shortcut) != len(ours.shortcut):
            kinds = ("no conv", "a conv (projection)")
            raise _Unmapped(row, name, f"{name}: the shortcut has {kinds[min(len(found.shortcut), 1)]}, the table's "
                                       f"{expected.shortcut}{counted}")  # fmt: skip
        for i, (s_unit, r_unit) in enumerate(zip(found.branch, ours.branch, strict=True), 1):
            _map_unit(s_unit, r_unit, shapes, out, row, name, f"{name} conv{i}")
        for s_unit, r_unit in zip(found.shortcut, ours.shortcut, strict=True):
            _map_unit(s_unit, r_unit, shapes, out, row, name, f"{name} shortcut")
    if len(subject.blocks) > len(table_blocks):
        raise _Unmapped(spec.stages[-1].name, None, f"after {table_blocks[-1][1].name}: a block the table does not "
                                                    f"have{counted}")  # fmt: skip
    if len(subject.head) != 1 or subject.head[0].kind not in ("linear", "conv"):
        found_text = ", ".join(f"{op.aten} ({', '.join(op.params)})" for op in subject.head) or "none"
        raise _Unmapped("fc", None, f"the classifier: expected one linear layer (or 1x1 conv), found {found_text}")
    (r_fc,) = reference.head
    s_fc = subject.head[0]
    _map_unit(_Unit(s_fc, []), _Unit(r_fc, []), shapes, out, "fc", None, "the classifier")
    if out.folded:
        out.notes.append(f"{len(out.folded)} conv biases before a batch norm, folded into its running mean (the batch "
                         "norm cancels a bias: the same function, more parameters)")  # fmt: skip
    if s_fc.kind == "conv":
        out.notes.append("the classifier is a 1x1 convolution (equivalent to a linear layer on the pooled map)")
    return out


def _next_block(layout: _Layout, index: int, spec: ResNetSpec) -> tuple[str, str | None]:
    """The row and the table's block that op ``index`` comes before (fc after the last block)."""
    table_blocks = [(stage.name, block.name) for stage in spec.stages for block in stage.blocks]
    done = sum(block.end < index for block in layout.blocks)
    if layout.stem is None or index < layout.stem.op.index:
        return ("conv1", None)
    return table_blocks[done] if done < len(table_blocks) else ("fc", None)


# ---- values ------------------------------------------------------------------------------------------------------


def _materialize(model: nn.Module) -> nn.Module:
    """A float64 CPU copy of ``model`` with uninitialised tensors (their values are drawn next, never copied)."""
    on_meta = any(t.device.type == "meta" for t in itertools.chain(model.parameters(), model.buffers()))
    clone = copy.deepcopy(model) if on_meta else to_meta(model)
    # Not Module.to_empty: on meta tensors it calls empty_like, a Python reference that imports sympy (~0.6 s).
    allocated: dict[int, Tensor] = {}  # id(meta tensor) -> its CPU tensor, so that tied tensors stay tied
    for module in clone.modules():
        stores: tuple[dict[str, Any], ...] = (module._parameters, module._buffers)
        for store in stores:
            for key, tensor in store.items():
                if tensor is None:
                    continue
                if id(tensor) not in allocated:
                    dtype = torch.float64 if tensor.is_floating_point() else tensor.dtype
                    value = torch.empty(tuple(tensor.shape), dtype=dtype)
                    is_param = isinstance(tensor, nn.Parameter)
                    allocated[id(tensor)] = nn.Parameter(value, tensor.requires_grad) if is_param else value
                store[key] = allocated[id(tensor)]
    return clone


# Values are drawn as a random pool of this prime length, repeated through each tensor: drawing every entry of a
# ResNet-152 costs seconds, and two entries share a value only when their flat offsets differ by a multiple of the
# prime, which no arrangement of a ResNet's weights (kernel taps, channels, rows) lines up with.
_PERIOD = 65521


def _fill(tensor: Tensor, low: float, high: float, generator: torch.Generator) -> None:
    flat = tensor.view(-1)
    pool = torch.rand(min(flat.numel(), _PERIOD), generator=generator, dtype=tensor.dtype) * (high - low) + low
    whole = flat.numel() // pool.numel() * pool.numel()
    flat[:whole].view(-1, pool.numel()).copy_(pool)
    flat[whole:].copy_(pool[: flat.numel() - whole])


@torch.no_grad()
def _randomize(model: nn.Module, generator: torch.Generator) -> None:
    """Values valid in any role: weights He-uniform by fan-in; per-channel tensors uniform in [0.5, 1.5]."""
    for tensor in itertools.chain(model.parameters(), model.buffers()):
        if not tensor.is_floating_point():
            tensor.zero_()
        elif len(_squeezed(tensor.shape)) >= 2:
            bound = math.sqrt(6 / tensor[0].numel())
            _fill(tensor, -bound, bound, generator)
        else:
            _fill(tensor, 0.5, 1.5, generator)


def _share(reference: nn.Module, transfer: _Transfer, subject: Mapping[str, Tensor]) -> None:
    """Give the (meta) reference its values: views of the subject's tensors (no copy), constants, zeros."""
    for module_name, module in reference.named_modules():
        prefix = f"{module_name}." if module_name else ""
        stores: tuple[dict[str, Any], ...] = (module._parameters, module._buffers)
        for store in stores:
            for key, tensor in store.items():
                if tensor is None:
                    continue
                name = prefix + key
                dtype = torch.float64 if tensor.is_floating_point() else tensor.dtype
                if name in transfer.sources:
                    value = subject[transfer.sources[name]].detach().reshape(tensor.shape)
                else:
                    fill = transfer.constants.get(name, 1.0 if key == "running_var" else 0.0)
                    value = torch.full(tensor.shape, fill, dtype=dtype)
                if name in transfer.folded:
                    value = value - subject[transfer.folded[name]].detach().reshape(tensor.shape)
                store[key] = nn.Parameter(value, requires_grad=False) if store is module._parameters else value


def _relative(found: Tensor, expected: Tensor) -> float:
    found, expected = found.detach(), expected.detach()
    scale = float(expected.abs().max()) if expected.numel() else 0.0
    difference = float((found - expected).abs().max()) if expected.numel() else 0.0
    return difference / scale if scale > 0 else difference


def _resolve_hand_norms(
    transfer: _Transfer, values: Mapping[int, Tensor], s_tensors: Mapping[str, Tensor], eps: float
) -> None:
    """A batch norm written by hand: which of its four tensors is weight, bias, mean, variance reproduces it."""
    written: list[str] = []
    for subject, reference, row, block in transfer.hand_norms:
        names = list(dict.fromkeys(n for op in subject.norm for n in (*op.params, *op.buffers)))
        roles = _bn_roles(reference.norm[0])
        where = block or row
        if len(names) != 4:
            raise _Unmapped(row, block, f"{where}: the operators after a conv use {len(names)} tensors "
                                        f"({', '.join(names)}); a batch norm has 4")  # fmt: skip
        last = max((op for op in subject.norm if op.inputs), key=lambda op: op.index, default=None)
        if last is None or last.output not in values or subject.op.output not in values:
            raise _Unmapped(row, block, f"{where}: cannot follow the batch norm written after a conv")
        z, y = values[subject.op.output], values[last.output]
        channels = z.shape[1]
        flat = {n: s_tensors[n].detach().reshape(-1) for n in names}
        if any(t.numel() != channels for t in flat.values()):
            raise _Unmapped(row, block, f"{where}: tensors after a conv are not one value per channel")
        best: tuple[float, tuple[str, ...]] | None = None
        for order in itertools.permutations(names):
            g, b, m, v = (flat[n].view(1, -1, 1, 1) for n in order)
            candidate = (z - m) / torch.sqrt(v + eps) * g + b
            if candidate.shape != y.shape:
                continue
            error = _relative(y, candidate)
            if best is None or error < best[0]:
                best = (error, order)
        if best is None:
            raise _Unmapped(row, block, f"{where}: the operators after a conv do not compute a batch norm")
        for r_name, s_name in zip(roles, best[1], strict=True):
            transfer.sources[r_name] = s_name
        written.append(where)
    if written:
        places = list(dict.fromkeys(written))
        shown = ", ".join(places) if len(places) <= 3 else f"{places[0]}, {places[1]} ... {places[-1]}"
        transfer.notes.append(
            f"{len(written)} batch norms written by hand ({shown}), each mapped by the assignment of its four "
            "tensors to weight, bias, mean and variance that reproduces its output"
        )


def _row_values(layout: _Layout, values: Mapping[int, Tensor], trace: Trace, spec: ResNetSpec) -> dict[str, Tensor]:
    rows: dict[str, Tensor] = {}
    if layout.conv1_end is not None:
        rows["conv1"] = values[layout.conv1_end]
    ends = [stage.name for stage in spec.stages for _ in stage.blocks]
    for position, block in enumerate(layout.blocks[: len(ends)]):
        if block.output in values:
            rows[ends[position]] = values[block.output]  # the last block of a row wins
    rows["fc"] = values[trace.output]
    return rows


@dataclass
class Transferred:
    """A model's float64 CPU copy with drawn values, and the reference network sharing them (no copy)."""

    subject: nn.Module
    reference: ResNet
    sources: Mapping[str, str]  # reference tensor name -> the subject's tensor it shares
    folded: Mapping[str, str]  # reference running mean -> the subject's conv bias subtracted from it
    input: Tensor  # the input the mapping was made on
    trace: Trace  # the subject's eval-mode trace on it
    values: Mapping[int, Tensor]
    notes: tuple[str, ...]


class TransferError(Exception):
    """The check could not be run (``status`` skipped) or a tensor has no place in the table (unmapped)."""

    def __init__(self, status: Status, reason: str, row: str | None = None, block: str | None = None) -> None:
        super().__init__(reason)
        self.status, self.reason, self.row, self.block = status, reason, row, block


def transfer(
    model: nn.Module, spec: ResNetSpec, *, max_macs: int = MAX_MACS, max_params: int = MAX_PARAMS
) -> Transferred:
    """Copy ``model`` to float64 with drawn values and map its tensors onto the reference (see the module docstring).

    Raises :class:`TransferError` (skipped or unmapped, with the reason and the row) when that cannot be done.
    """
    small = equivalence_input(spec)
    table = (_BATCH, spec.in_channels, spec.input_size, spec.input_size)
    macs = count(spec, (small[2], small[3])).total
    params = sum(p.numel() for p in model.parameters())
    if macs > max_macs or params > max_params:
        size = f"{small[2]}x{small[3]}"
        raise TransferError(
            "skipped",
            f"too large to run here ({params:,} parameters, {macs:,} multiply-adds per image at {size}; limits "
            f"{max_params:,} and {max_macs:,})",
        )
    try:
        subject = _materialize(model)
    except (TraceError, RuntimeError, TypeError, ValueError) as e:  # a model that cannot be copied or moved
        raise TransferError("skipped", f"cannot copy the model to the CPU in float64: {type(e).__name__}: {e}") from e
    generator = torch.Generator().manual_seed(_SEED)
    _randomize(subject, generator)
    shapes = [small] if small == table or count(spec, table[2:]).total > max_macs else [small, table]
    # A model that cannot take the small input (a fixed pool size, say) runs at the table's, if that is cheap.
    for shape in shapes:
        x = torch.randn(shape, generator=generator, dtype=torch.float64)
        try:
            s_trace, s_values = record_values(subject, x, train=False)
            break
        except TraceError as e:
            error = e
    else:
        raise TransferError("skipped", f"the model does not run on the CPU in float64: {error}")
    reference: ResNet = build(spec, device="meta")
    r_trace = trace_model(reference, tuple(x.shape))
    s_named = dict(itertools.chain(subject.named_parameters(), subject.named_buffers()))
    r_shapes = {n: t.shape for n, t in itertools.chain(reference.named_parameters(), reference.named_buffers())}
    try:
        s_layout = _layout(s_trace, spec)
        mapping = _map(s_layout, _layout(r_trace, spec), spec, ({n: t.shape for n, t in s_named.items()}, r_shapes))
        eps = float(next(m for m in reference.modules() if isinstance(m, nn.BatchNorm2d)).eps)
        _resolve_hand_norms(mapping, s_values, s_named, eps)
    except _Unmapped as e:
        raise TransferError("unmapped", e.reason, e.row, e.block) from e
    _share(reference, mapping, s_named)
    return Transferred(subject, reference, mapping.sources, mapping.folded, x, s_trace, s_values, tuple(mapping.notes))


def subject_rows(model: nn.Module, x: Tensor, spec: ResNetSpec, train: bool = False) -> dict[str, Tensor]:
    """Every row's output of ``model`` (any implementation) on ``x``, found by dataflow as the mapping finds it."""
    trace, values = record_values(model, x, train=train)
    return _row_values(_layout(trace, spec), values, trace, spec)


def reference_row(reference: ResNet, row: str, x: Tensor) -> Tensor:
    """One row of the reference network on ``x``, the previous row's output (the input for conv1)."""
    if row == "conv1":
        return reference._stem(x)
    if row == "fc":
        return reference._head(x)
    index = reference.stage_names.index(row)
    if index == 0:
        x = reference.maxpool(x)
    return getattr(reference, reference.layer_names[index])(x)


def not_run(spec: ResNetSpec, reason: str) -> Equivalence:
    """The result of a check that was not run, with the reason (a report shows it as a note; never silent)."""
    return Equivalence("skipped", reason, None, None, equivalence_input(spec), tolerance(spec))


def check_equivalence(
    model: nn.Module, spec: ResNetSpec | str, *, max_macs: int = MAX_MACS, max_params: int = MAX_PARAMS
) -> Equivalence:
    """Run ``model`` and the reference built from ``spec`` with the same (drawn) weights; compare every row.

    ``model`` is not modified (a float64 CPU copy is checked; a model on the meta device is materialised).
    Never raises for a model: what cannot be mapped or run is a result with ``status`` unmapped or skipped.
    """
    if isinstance(spec, str):
        spec = load_spec(spec)
    tol = tolerance(spec)
    try:
        moved = transfer(model, spec, max_macs=max_macs, max_params=max_params)
    except TransferError as e:
        return Equivalence(e.status, e.reason, e.row, e.block, equivalence_input(spec), tol)
    x, reference = moved.input, moved.reference
    shape = tuple(x.shape)
    found = {"eval": _row_values(_layout(moved.trace, spec), moved.values, moved.trace, spec)}
    expected = {"eval": _forward_rows(reference, x, train=False)}
    local = {"eval": _local_rows(reference, x, found["eval"], spec, train=False)}
    try:
        found["train"] = subject_rows(moved.subject, x, spec, train=True)
    except (TraceError, _Unmapped) as e:
        return Equivalence("skipped", f"the model does not run in train mode on the CPU: {e}", None, None, shape, tol)
    expected["train"] = _forward_rows(reference, x, train=True)
    local["train"] = _local_rows(reference, x, found["train"], spec, train=True)
    checks: list[RowCheck] = []
    for row in spec.rows:
        figures: dict[str, float | None] = {}
        e_shape: tuple[int, ...] = tuple(expected["eval"][row].shape)
        f_shape: tuple[int, ...] = ()
        for mode in ("eval", "train"):
            got = found[mode].get(row)
            f_shape = tuple(got.shape) if got is not None else ()
            figures[mode] = _relative(got, expected[mode][row]) if got is not None and f_shape == e_shape else None
        locals_ = [local[mode].get(row) for mode in ("eval", "train")]
        row_local = None if any(v is None for v in locals_) else max(v for v in locals_ if v is not None)
        ok = all(v is not None and v <= tol for v in figures.values())
        checks.append(RowCheck(row, figures["eval"], figures["train"], e_shape, f_shape, ok, row_local))
    first = next((c for c in checks if not c.ok), None)
    mapped = len(set(moved.sources.values())) + len(moved.folded)
    if first is None:
        reason = f"every row's output equal within {tol:.1e} in eval and train mode"
        return Equivalence("equal", reason, None, None, shape, tol, tuple(checks), mapped, moved.notes)
    return Equivalence(
        "differs", _describe(first, tol), first.row, None, shape, tol, tuple(checks), mapped, moved.notes
    )


def _local_rows(
    reference: ResNet, x: Tensor, found: Mapping[str, Tensor], spec: ResNetSpec, train: bool
) -> dict[str, float | None]:
    """Each row of the reference run on the subject's own previous row output, against the subject's row output."""
    reference.train(train)
    out: dict[str, float | None] = {}
    previous: Tensor | None = x
    with torch.no_grad():
        for row in spec.rows:
            got = found.get(row)
            try:
                expected = None if previous is None else reference_row(reference, row, previous)
            except RuntimeError:  # the previous row's output has a shape this row cannot take
                expected = None
            same = got is not None and expected is not None and got.shape == expected.shape
            out[row] = _relative(got, expected) if same and got is not None and expected is not None else None
            previous = got
    return out


def _forward_rows(reference: ResNet, x: Tensor, train: bool) -> dict[str, Tensor]:
    reference.train(train)
    with torch.no_grad():
        return reference.forward_rows(x)


def _describe(check: RowCheck, tol: float) -> str:
    if check.eval is None or check.train is None:
        return f"{check.row}'s output has shape {check.found_shape or 'none'}, the reference's {check.expected_shape}"
    modes = [f"{mode} {value:.1e}" for mode, value in (("eval", check.eval), ("train", check.train)) if value > tol]
    return f"{check.row}'s output differs from the reference's ({', '.join(modes)}; tolerance {tol:.1e})"
