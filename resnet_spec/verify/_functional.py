"""Functional equivalence: is the model the table's network for every choice of weights?

:func:`check_equivalence` decides it by computation, along the alignment (:mod:`resnet_spec.verify._alignment`):

1. **A float64 copy with drawn values.** The model is copied to the CPU in float64 and every parameter and buffer
   gets values drawn here (seeded): weights He-uniform by fan-in, every per-channel tensor uniform in [0.5, 1.5].  No
   initialisation (zero-init residual, batch norm at identity) can hide a difference.  The model is not modified.
2. **The weights transferred along the alignment.** The copy runs once, recorded; its trace is read and aligned like
   any trace, and each tensor goes to the planned tensors it fills: by its operator's argument role where the
   operator says, else by the arrangement that reproduces the operator's recorded output (a batch norm written by
   hand: which of its tensors is the weight, the bias, the mean, the variance; a convolution written as a matrix
   product: its weight's layout).  A conv bias before a batch norm is folded into the batch norm's running mean (the
   same function; the bias is a redundant parameter, which the structural diff reports).  The network's symmetries
   are used where the model's wiring requires them: a zero-padding shortcut that puts the identity's channels
   anywhere else than first makes the model the table's network up to a permutation of that stage's channels, which
   is measured from the shortcut's recorded output and applied to the transfer.
3. **The logits decide, in both directions.** The model and the reference built from the table run on the same
   input, in eval mode (running statistics) and in train mode (batch statistics) with the model's drawn weights in
   the reference, then in eval mode with fresh reference weights (non-zero biases, non-identity affines) held by the
   model where it can.  One random point cannot show a missing, extra or tied degree of freedom in one direction;
   the other direction does (a missing fc bias, one batch norm shared by two convs).  The reference starts from the
   model's own input to its stem conv, and the model's output is compared after its classifier (with the softmax the
   model applies, if one): input normalisation lies outside Table 1, a softmax ends it, anything else shows.
4. **Rows and operators locate.** Every row's output is compared end to end and, where one differs, alone (the
   reference's row on the model's own input to the row).  When the logits differ, the first block whose own output
   differs given its own input is found, and in it the first operator (in the user's module names) and what explains
   it where the trace tells: a batch norm's epsilon, batch statistics in eval mode.

Figures are maximum relative differences ``max|model - reference| / max|reference|``.  The tolerance bounds float64
accumulation: a dot product of length K is exact to ``K u`` relative (``u = 2**-53``), at most ``depth`` such layers
compose, a factor 16 covers two implementations' summation orders: ``16 * depth * K_max * u`` (ResNet-152: 1.2e-9),
far below any change of the function (a moved stride, a missing ReLU, another epsilon differ by 1e-4 or more).

The input is the smallest odd size at which every row's map is at least 2x2 (width two more than height, so height
and width are not confused), batch 2 (batch statistics need more than one value per channel).
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..counts import count
from ..models import ResNet, build
from ..spec import Layer, ResNetSpec, as_spec, defined_at
from ._alignment import Alignment, align
from ._read_trace import read_trace
from ._structure import Mismatch
from ._subjects import LocalSubject, Subject, Values, draw
from ._trace import Op, Trace, TraceError

__all__ = [
    "MAX_MACS",
    "MAX_PARAMS",
    "Equivalence",
    "RowCheck",
    "check_equivalence",
    "equivalence_input",
    "not_run",
    "tolerance",
]

# Beyond these the check is skipped with a note (never silently): the float64 forward passes of the model and the
# reference cost about a second per 1e9 multiply-adds on one core, and float64 copies of both take memory.
MAX_MACS = 4_000_000_000  # at the equivalence input, per image (ResNet-152 at 33x35: about 0.3e9)
MAX_PARAMS = 150_000_000  # ResNet-152: 60e6

Status = Literal["equal", "differs", "unmapped", "skipped"]
Direction = Literal["model", "reference"]  # whose drawn weights both networks run with
_UNIT_ROUNDOFF = 2.0**-53  # float64
_STATISTICS = ("running_mean", "running_var", "num_batches_tracked")
_BATCH = 2
_SEED = 0


@dataclass(frozen=True)
class RowCheck:
    """One row's output, model against reference, in both modes (the model's weights in the reference)."""

    row: str  # conv1, conv2_x, ..., fc
    eval: float | None  # maximum relative difference in eval mode; None when the shapes differ or the row is absent
    train: float | None  # the same in train mode (batch statistics)
    expected_shape: tuple[int, ...]
    found_shape: tuple[int, ...]
    ok: bool
    # The row alone: the reference's row run on the model's own previous row output (the larger of eval and train),
    # so a defect shows in its own row only; None where the shapes differ.
    local: float | None = None
    train_read: bool = True  # False: the row reads otherwise in train mode, so its train figure is not compared


@dataclass(frozen=True)
class Equivalence:
    """The result of the numerical check; ``status`` says whether it ran and what it found."""

    status: Status  # equal, differs (at `row`), unmapped (the weights have no place: `row`, `reason`), skipped
    reason: str  # why it was not run or could not transfer (skipped, unmapped); "" when it ran
    row: str | None  # the first row whose output differs, or where the transfer failed
    block: str | None  # the block, where the finding is inside one
    input_shape: tuple[int, ...]
    tolerance: float
    rows: tuple[RowCheck, ...] = ()
    mapped: int = 0  # the model's tensors transferred into the reference
    notes: tuple[str, ...] = field(default=())  # how it was written differently (a batch norm by hand, ...)
    findings: tuple[Mismatch, ...] = ()  # where the numbers differ: the first block and operator, with the cause
    mode: str | None = None  # "eval" or "train": the first mode in which the logits differ
    direction: Direction | None = None  # whose weights both ran with when the logits differed
    difference: float | None = None  # the logits' maximum relative difference there
    permuted: tuple[str, ...] = ()  # blocks whose shortcut places the identity channels elsewhere (a symmetry)
    # unmapped because the model holds no values for data its function applies (a fixed filter, a pruning mask):
    # what it computes is unknown, so no structural reading decides either
    data_unknown: bool = False
    # skipped because the model did not run as the check runs it (float64 on the CPU, train mode), not for a limit of
    # the check's own (its size): what it computes is unshown, so no structural reading makes it conformant
    failed: bool = False

    @property
    def equal(self) -> bool:
        return self.status == "equal"


class _Unmapped(Exception):
    def __init__(self, row: str | None, block: str | None, reason: str) -> None:
        super().__init__(reason)
        self.row, self.block, self.reason = row, block, reason


class _DataUnknown(_Unmapped):
    """The model holds no values for its fixed data (built on the meta device)."""


class _Skipped(Exception):
    def __init__(self, reason: str, failed: bool = True) -> None:
        super().__init__(reason)
        self.failed = failed  # the model did not run as the check runs it (not a limit of the check's own)


def tolerance(spec: ResNetSpec) -> float:
    """The largest maximum relative difference per row that counts as equal (see the module docstring)."""
    reductions = [conv.kernel**2 * conv.in_channels for conv in spec.stem.convs] + [spec.out_channels]
    reductions += [conv.kernel**2 * conv.in_channels for block in spec.blocks for conv in block.convs]
    return 16 * spec.depth * max(reductions) * _UNIT_ROUNDOFF


def equivalence_input(spec: ResNetSpec, in_channels: int | None = None) -> tuple[int, int, int, int]:
    """(N, C, H, W): the smallest odd H at which every row's map is at least 2x2 (or the table's size), W = H + 2,
    where the table's network is defined (else the smallest even such H)."""
    limit, low = spec.input_size, spec.min_input_size()

    def fits(n: int) -> bool:
        sizes = spec.row_output_sizes(n, n + 2)
        return min(min(hw) for row, hw in sizes.items() if row != "fc") >= 2 and defined_at(spec, n, n + 2)

    for start in (low | 1, low + low % 2):  # odd sizes first, then even ones
        size = start
        while size < limit and not fits(size):
            size += 2
        if size < limit:
            break
    size = min(size, limit)
    return (_BATCH, in_channels or spec.in_channels, size, size + 2 if size < limit else size)


def _input_shapes(spec: ResNetSpec, shape: tuple[int, int, int, int], max_macs: int) -> list[tuple[int, ...]]:
    """The inputs to try, smallest first: the odd one, then the smallest square one whose every map halves evenly
    (a model whose pools round down where the table's round up runs there), then the table's own, within the
    multiply-adds the check allows."""
    n, c, h, _ = shape
    stride = max(1, spec.input_size // max(spec.row_output_sizes(spec.input_size)[spec.stages[-1].name]))
    even = min(spec.input_size, stride * max(1, -(-h // stride)))
    if min(spec.row_output_sizes(even)[spec.stages[-1].name]) < 2 and 2 * even <= spec.input_size:
        even *= 2
    shapes: list[tuple[int, ...]] = [shape]
    for size in (even, spec.input_size):
        candidate = (n, c, size, size)
        if candidate not in shapes and count(spec, (size, size)).total <= max_macs:
            shapes.append(candidate)
    return shapes


def not_run(spec: ResNetSpec, reason: str) -> Equivalence:
    """The result of a check that was not run, with the reason (a report shows it as a note; never silent)."""
    return Equivalence("skipped", reason, None, None, equivalence_input(spec), tolerance(spec))


# ---- values ---------------------------------------------------------------------------------------------------


def _relative(found: Tensor, expected: Tensor) -> float:
    found, expected = found.detach(), expected.detach()
    if not expected.numel():
        return 0.0
    scale = float(expected.abs().max())
    difference = float((found - expected).abs().max())
    if math.isnan(difference):
        return math.inf
    return difference / scale if scale > 0 else difference


# ---- the transfer ---------------------------------------------------------------------------------------------


@dataclass
class _Source:
    """How a planned tensor's value is computed from the model's tensors."""

    tensors: tuple[str, ...]  # the model's tensors; several: concatenated along the first dimension
    layout: tuple[int, ...] | None = None  # a permutation of the model tensor's dimensions first (None: as it is)
    channels: list[tuple[int, Tensor]] = field(default_factory=list)  # (dim, index): a symmetry's permutation


@dataclass
class _Transfer:
    """Planned tensor -> its source (or a constant), and what was read how."""

    shapes: Mapping[str, tuple[int, ...]]  # every planned tensor's shape (the reference's state)
    sources: dict[str, _Source] = field(default_factory=dict)
    constants: dict[str, float] = field(default_factory=dict)
    folded: dict[str, str] = field(default_factory=dict)  # planned running mean -> the model's conv bias it absorbs
    fixed: set[str] = field(default_factory=set)  # constants of the inference form: never drawn for the reference
    inference: set[str] = field(default_factory=set)  # running means of batch norms folded into a graph's convs
    notes: list[str] = field(default_factory=list)
    permuted: list[str] = field(default_factory=list)
    kept: tuple[str, ...] = ()  # the model's fixed filters: never drawn (the model applies its own)

    def forward(self, values: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """The reference's tensors from the model's."""
        out: dict[str, Tensor] = {}
        for name, shape in self.shapes.items():
            source = self.sources.get(name)
            if source is None:
                fill = self.constants.get(name, 1.0 if name.endswith("running_var") else 0.0)
                out[name] = torch.full(shape, fill, dtype=torch.float64)
                continue
            parts = [_laid_out(values[t], source.layout) for t in source.tensors]
            value = parts[0].reshape(shape) if len(parts) == 1 else torch.cat(
                [p.reshape(-1, *shape[1:]) for p in parts], 0).reshape(shape)  # fmt: skip
            for dim, index in source.channels:
                value = value.index_select(dim, index)
            # a batch norm's statistics are written by train-mode passes: never a view of the model's own
            out[name] = value.clone() if name.endswith(_STATISTICS) else value
        for mean, bias in self.folded.items():
            out[mean] = out[mean] - values[bias].reshape(out[mean].shape)
        return out


def _laid_out(value: Tensor, layout: tuple[int, ...] | None) -> Tensor:
    return value if layout is None else value.permute(layout)


def _layouts(shape: tuple[int, ...]) -> list[tuple[int, ...] | None]:
    """The dimension orders a weight may be written in: as it is first, then every other permutation."""
    if len(shape) < 2:
        return [None]
    return [None, *(p for p in itertools.permutations(range(len(shape))) if p != tuple(range(len(shape))))]


def _ops_on(alignment: Alignment, layer: str) -> list[Op]:
    trace = alignment.trace
    return [trace.ops[i] for i, place in alignment.places.items() if place.layer == layer]


def _planned_after(plan_layers: Sequence[Layer], layer: Layer, kind: str) -> Layer | None:
    """The planned layer right after ``layer`` (identity layers skipped) when it is of ``kind``."""
    index = next(i for i, candidate in enumerate(plan_layers) if candidate is layer)
    for following in plan_layers[index + 1 :]:
        if following.kind != "identity":
            return following if following.kind == kind else None
    return None


def _transfer(
    alignment: Alignment, values: Mapping[int, Tensor], tensors: Mapping[str, Tensor], tol: float
) -> _Transfer:
    """Where each planned tensor's value comes from (see the module docstring).  Raises _Unmapped."""
    plan = alignment.plan
    out = _Transfer(plan.state_dict())
    for layer in plan.layers:  # what a missing batch norm tensor stands for: the identity
        if layer.kind == "bn":
            out.constants[f"{layer.name}.weight"] = 1.0
            if layer.buffers:  # a batch norm's (a GroupNorm has no running statistics)
                out.constants[f"{layer.name}.running_var"] = 1.0
    layers = {layer.name: layer for layer in plan.layers}
    order = list(plan.layers)
    by_layer: dict[str, list[tuple[str, str | None, str]]] = {}
    for name, slots in alignment.tensors.items():
        for slot in slots:
            by_layer.setdefault(slot.layer, []).append((name, slot.tensor, slot.role))
    hand_norms = 0
    for layer_name, claims in by_layer.items():
        layer = layers[layer_name]
        where = (layer.row, layer.block)
        ops = _ops_on(alignment, layer_name)
        known = [(t, target, role) for t, target, role in claims if target is not None]
        unknown = [t for t, target, role in claims if target is None and role == ""]
        extra = [(t, role) for t, target, role in claims if target is None and role != ""]
        written_otherwise = any("weights" in op.attrs or (op.kind == "linear" and op.name not in ("addmm", "mm",
                                "convolution")) for op in ops)  # fmt: skip
        if layer.kind in ("conv", "fc") and written_otherwise:
            _fit_linear(out, alignment, layer, ops, [t for t, _, r in claims if r in ("weight", "")],
                        [t for t, _, r in claims if r == "bias"], values, tensors, tol)  # fmt: skip
            continue
        for tensor, target, _role in known:
            if target is None:  # filtered above
                continue
            if tensors[tensor].numel() != math.prod(out.shapes[target]):
                found = tuple(tensors[tensor].shape)
                raise _Unmapped(*where, f"{_named(layer)}: the model's {tensor} has shape {found}, the table's "
                                        f"{out.shapes[target]}")  # fmt: skip
            source = out.sources.get(target)
            if source is None:
                out.sources[target] = _Source((tensor,))
            elif tensor not in source.tensors:
                source.tensors += (tensor,)
        if unknown and layer.kind == "bn":
            _fit_norm(out, alignment, layer, ops, unknown, values, tensors)
            hand_norms += 1
        elif unknown:
            raise _Unmapped(*where, f"{_named(layer)}: which of {', '.join(unknown)} is which cannot be told")
        for tensor, role in extra:
            if role != "bias":
                continue
            following = _planned_after(order, layer, "bn")
            if following is None:
                continue  # a bias the reference cannot hold: the numbers will differ, and the diff names it
            out.folded[f"{following.name}.running_mean"] = tensor
    for name in list(out.sources):
        source = out.sources[name]
        if len(source.tensors) > 1 and math.prod(out.shapes[name]) != sum(tensors[t].numel() for t in source.tensors):
            layer = layers[name.rsplit(".", 1)[0]]
            raise _Unmapped(layer.row, layer.block, f"{_named(layer)}: {', '.join(source.tensors)} do not add up to "
                                                    "the table's tensor")  # fmt: skip
    _require_weights(alignment, out)
    if hand_norms:
        out.notes.append(f"{hand_norms} batch norms written by hand, each read by the assignment of its tensors to "
                         "weight, bias, mean and variance that reproduces its output")  # fmt: skip
    if len(out.folded) > len(alignment.folded):
        out.notes.append(f"{len(out.folded)} conv biases before a batch norm, folded into its running mean to compare "
                         "the function (a redundant parameter each)")  # fmt: skip
    return out


def _named(layer: Layer) -> str:
    """A planned layer by the table's place: "conv2_1 conv1", "conv1 bn1", "fc"."""
    if layer.block is not None:
        return f"{layer.block} {layer.name.split('.', 2)[-1]}"
    return layer.name if layer.name == layer.row else f"{layer.row} {layer.name}"


def _require_weights(alignment: Alignment, out: _Transfer) -> None:
    """Every planned conv and fc weight needs a source: without one the model lacks a layer the table has."""
    for layer in alignment.plan.layers:
        if layer.kind in ("conv", "fc"):
            weight = f"{layer.name}.weight"
            if weight in out.sources:
                continue
            computed = [c for op in _ops_on(alignment, layer.name) for kind, c in op.operands
                        if kind == "const" and len(c.shape) >= 2 and len(c.params) > 1]  # fmt: skip
            if computed:
                raise _Unmapped(layer.row, layer.block, f"{_named(layer)}: its weight is computed from "
                                f"{', '.join(computed[0].params)}, the table's is one tensor")  # fmt: skip
            what = "conv" if layer.kind == "conv" else "classifier"
            raise _Unmapped(layer.row, layer.block, f"{_named(layer)}: the model has no {what} there")


def _op_values(op: Op, values: Mapping[int, Tensor]) -> tuple[Tensor, Tensor] | None:
    if not op.inputs or op.inputs[0] not in values or op.output not in values:
        return None
    return values[op.inputs[0]], values[op.output]


def _fit_norm(
    out: _Transfer, alignment: Alignment, layer: Layer, ops: list[Op], names: list[str],
    values: Mapping[int, Tensor], tensors: Mapping[str, Tensor],
) -> None:  # fmt: skip
    """A batch norm written by hand: the assignment of its tensors to the four roles that reproduces its output.
    Every assignment is tried; the best one is kept even when none reproduces it (then the numbers differ there)."""
    roles = ("weight", "bias", "running_mean", "running_var")
    pair = next((p for op in ops if (p := _op_values(op, values)) is not None), None)
    channels = layer.out_shape[0]
    if pair is None or len(names) > 4 or any(tensors[n].numel() != channels for n in names):
        raise _Unmapped(layer.row, layer.block, f"{_named(layer)}: {', '.join(names)} do not read as a batch norm's "
                                                "per-channel tensors")  # fmt: skip
    z, y = pair
    eps = 1e-5
    flat = {n: tensors[n].detach().reshape(1, -1, 1, 1) for n in names}
    identity = {role: torch.tensor(value, dtype=z.dtype) for role, value in
                (("weight", 1.0), ("bias", 0.0), ("running_mean", 0.0), ("running_var", 1.0))}  # fmt: skip
    best: tuple[float, dict[str, str]] | None = None
    for chosen in itertools.permutations(roles, len(names)):
        assignment = dict(zip(chosen, names, strict=True))
        g, b, m, v = (flat[assignment[r]] if r in assignment else identity[r] for r in roles)
        candidate = (z - m) / torch.sqrt(v + eps) * g + b
        if candidate.shape != y.shape:
            continue
        error = _relative(y, candidate)
        if best is None or error < best[0]:
            best = (error, assignment)
    if best is None:
        raise _Unmapped(layer.row, layer.block, f"{_named(layer)}: the operators there do not compute a batch norm")
    for role, tensor in best[1].items():
        out.sources[f"{layer.name}.{role}"] = _Source((tensor,))


def _fit_linear(
    out: _Transfer, alignment: Alignment, layer: Layer, ops: list[Op], weights: list[str], biases: list[str],
    values: Mapping[int, Tensor], tensors: Mapping[str, Tensor], tol: float,
) -> None:  # fmt: skip
    """A conv or fc written otherwise (a matrix product, a split): the weight's layout that reproduces the operator's
    recorded output with the table's layer.  Where none does, the weights cannot be transferred (undecided)."""
    weight_name = f"{layer.name}.weight"
    shape = out.shapes[weight_name]
    op = ops[0] if ops else None
    pair = _op_values(op, values) if op is not None else None
    if pair is None or not weights:
        raise _Unmapped(layer.row, layer.block, f"{_named(layer)}: its weights cannot be read from the model")
    z, y = pair
    bias = torch.cat([tensors[b].detach().reshape(-1) for b in biases]) if biases else None
    if sum(tensors[w].numel() for w in weights) != math.prod(shape):
        raise _Unmapped(
            layer.row,
            layer.block,
            f"{_named(layer)}: {', '.join(weights)} hold "
            f"{sum(tensors[w].numel() for w in weights):,} values, the table's weight {math.prod(shape):,}",
        )
    candidates = _layouts(tuple(tensors[weights[0]].shape)) if len(weights) == 1 else [None]
    for layout in candidates:
        parts = [_laid_out(tensors[w].detach(), layout) for w in weights]
        try:
            weight = parts[0].reshape(shape) if len(parts) == 1 else torch.cat(
                [p.reshape(-1, *shape[1:]) for p in parts], 0).reshape(shape)  # fmt: skip
            if layer.kind == "conv":
                expected = F.conv2d(z, weight, bias, layer.stride, layer.padding, 1, layer.groups)
            else:
                expected = F.linear(z.flatten(1), weight, bias)
        except RuntimeError:  # this layout does not fit the layer's shapes
            continue
        if expected.numel() == y.numel() and _relative(y.reshape(expected.shape), expected) <= tol:
            out.sources[weight_name] = _Source(tuple(weights), layout)
            if biases:
                out.sources[f"{layer.name}.bias"] = _Source(tuple(biases))
            return
    what = f"{op.aten} in {op.module or 'the model'}" if op is not None else "its operator"
    raise _Unmapped(
        layer.row,
        layer.block,
        f"{_named(layer)}: no arrangement of {', '.join(weights)} makes the "
        f"table's {layer.kind} compute what the model's does ({what})",
    )


# ---- symmetries: a zero-padding shortcut that places the identity channels elsewhere ---------------------------


def _shortcut_value(alignment: Alignment, found: Any) -> int | None:
    trace = alignment.trace
    if found.add_index < 0:
        return None
    add = trace.ops[found.add_index]
    for value in add.inputs:
        producer = trace.producer(value)
        if producer is not None and producer.index in found.shortcut_ops:
            return value
    return None


def _injection(source: Tensor, output: Tensor) -> list[int] | None:
    """Where a parameter-free shortcut puts each input channel (subsampled as the table's option A does), or None
    when it is not such a copy with zeros elsewhere.  An input channel that is all zeros on this input (a ReLU's) could
    sit in any zero channel: it takes the offset the other channels keep."""
    if source.dim() != 4 or output.dim() != 4:
        return None
    stride = max(1, -(-source.shape[2] // output.shape[2]))
    sub = source[:, :, ::stride, ::stride]
    if sub.shape[2:] != output.shape[2:] or output.shape[1] < sub.shape[1]:
        return None
    nonzero = [bool(output[:, k].any()) for k in range(output.shape[1])]
    placed: dict[int, int] = {}
    for i in range(sub.shape[1]):
        if not bool(sub[:, i].any()):
            continue
        k = next((k for k in range(output.shape[1]) if nonzero[k] and k not in placed.values()
                  and torch.equal(output[:, k], sub[:, i])), None)  # fmt: skip
        if k is None:
            return None
        placed[i] = k
    if sum(nonzero) != len(placed):
        return None  # an output channel that is neither a copy nor zero
    offsets = [k - i for i, k in placed.items()]
    offset = max(set(offsets), key=offsets.count) if offsets else 0
    free = [k for k in range(output.shape[1]) if not nonzero[k]]
    for i in range(sub.shape[1]):
        if i not in placed:
            k = i + offset if i + offset in free else free[0]
            free.remove(k)
            placed[i] = k
    return [placed[i] for i in range(sub.shape[1])]


def _symmetries(out: _Transfer, alignment: Alignment, values: Mapping[int, Tensor]) -> None:
    """Channel permutations of each stage's residual stream that make the model's wiring the table's (see module)."""
    sigma: list[int] | None = None  # reference channel j of the current stream is the model's channel sigma[j]
    changed = False
    perms: dict[str, list[tuple[int, list[int]]]] = {}

    def permute(tensor: str, dim: int, order: list[int]) -> None:
        if tensor in out.shapes:
            perms.setdefault(tensor, []).append((dim, order))

    for _row, planned, found in alignment.matched():
        layers = planned.layers
        convs = [layer for layer in layers if layer.kind == "conv" and layer.role == "branch"]
        shortcut = [layer for layer in layers if layer.role == "shortcut"]
        if sigma is not None and sigma != list(range(len(sigma))):
            # the block reads the permuted stream: its first conv, a projection, a pre-activation's first BN
            for layer in layers:
                reads_input = layer is convs[0] or (layer.role == "shortcut" and layer.kind == "conv")
                if layer.kind == "conv" and reads_input:
                    if layer.groups != 1:
                        return
                    permute(f"{layer.name}.weight", 1, sigma)
                if layer.kind == "bn" and layer is next((ly for ly in layers if ly.kind == "bn"), None) \
                        and planned.spec.order == "pre":  # fmt: skip
                    for key in ("weight", "bias", "running_mean", "running_var"):
                        permute(f"{layer.name}.{key}", 0, sigma)
        kind = planned.spec.shortcut
        if kind == "identity":
            out_sigma = sigma
        elif kind == "zero_pad":
            value = _shortcut_value(alignment, found)
            placed = None
            if value is not None and found.input_value in values:
                placed = _injection(values[found.input_value], values[value])
            if placed is None:
                sigma = None
                break  # not a channel copy: nothing more to permute (the numbers will say what it is)
            inner = sigma or list(range(len(placed)))
            head = [placed[c] for c in inner]
            out_sigma = head + [k for k in range(planned.spec.out_channels) if k not in head]
            if out_sigma != list(range(len(out_sigma))):
                changed = True
                out.permuted.append(planned.spec.name)
        else:
            out_sigma = None
        if out_sigma is not None and out_sigma != list(range(len(out_sigma))):
            # the block writes the permuted stream: its last conv (and BN, SE), a projection's outputs
            ends = [layer for layer in layers if layer.role in ("branch", "se")]
            last_conv = convs[-1]
            after = ends[ends.index(last_conv) + 1 :]
            permute(f"{last_conv.name}.weight", 0, out_sigma)
            for layer in after:
                if layer.kind == "bn":
                    for key in ("weight", "bias", "running_mean", "running_var"):
                        permute(f"{layer.name}.{key}", 0, out_sigma)
                elif layer.kind == "conv" and layer.name.endswith("fc1"):
                    permute(f"{layer.name}.weight", 1, out_sigma)
                elif layer.kind == "conv":
                    permute(f"{layer.name}.weight", 0, out_sigma)
                    permute(f"{layer.name}.bias", 0, out_sigma)
            for layer in shortcut:
                if layer.kind == "conv":
                    permute(f"{layer.name}.weight", 0, out_sigma)
        sigma = out_sigma
    if sigma is not None and sigma != list(range(len(sigma))):
        for layer in alignment.plan.head:
            if layer.kind == "bn":
                for key in ("weight", "bias", "running_mean", "running_var"):
                    permute(f"{layer.name}.{key}", 0, sigma)
            if layer.kind == "fc":
                permute(f"{layer.name}.weight", 1, sigma)
    if not changed:
        return
    for name, steps in perms.items():
        source = out.sources.get(name)
        if source is None:
            continue
        source.channels = [(dim, torch.tensor(order)) for dim, order in steps]


def _path_orders(out: _Transfer, alignment: Alignment) -> None:
    """A selective-kernel unit whose paths are stacked in another order than the plan's (the alignment's
    ``path_orders``): fc_select's outputs are path-major (output p * C + c weighs channel c of path p), so the
    reference's rows of planned path j are the model's of the path in its place."""
    for planned in alignment.plan.blocks:
        order = alignment.path_orders.get(planned.spec.name)
        paths, attn = planned.unit_convs
        if order is None or not attn:
            continue
        select = attn[-1]  # fc_select
        source = out.sources.get(f"{select.name}.weight")
        if source is None:
            continue
        c = select.out_shape[0] // len(order)
        source.channels.append((0, torch.tensor([i * c + k for i in order for k in range(c)])))
        dilations = ", ".join(str(layer.dilation) for layer in paths)
        out.notes.append(f"{planned.spec.name}: the selective-kernel paths stacked in another order, each in the "
                         f"place of the table's of its dilation ({dilations}): the same unit")  # fmt: skip


# ---- running and comparing --------------------------------------------------------------------------------------


@dataclass
class _Run:
    alignment: Alignment
    values: Values
    start: Tensor  # the model's input to its stem conv
    written: tuple[str, ...] = ()  # the model's tensors the pass wrote


@dataclass(frozen=True)
class _How:
    """How the model's runs are aligned: the table, and whether a backbone or other input channels are expected."""

    spec: ResNetSpec
    headless: bool
    in_channels: int | None
    inference: bool = False  # a graph whose batch norms may be folded into its convs
    train: bool = True  # the model has a train mode (a graph or an eval-mode program has none)
    batch: int = 2  # the batch it runs at (a program exported at a fixed batch)


def _record(subject: Subject, x: Tensor, train: bool, how: _How) -> _Run:
    """One recorded run of the model, read and aligned like any trace."""
    run = subject.run(x, train)
    aligned = align(read_trace(run.trace), how.spec, (x.shape[2], x.shape[3]), headless=how.headless,
                    in_channels=how.in_channels, inference=how.inference)  # fmt: skip
    stem = aligned.found.stem
    values = run.values
    first = aligned.trace.ops[stem.index].inputs[0] if stem is not None else -1
    head = [aligned.found.head.logits, aligned.trace.output]
    values.fetch([*aligned.row_ends.values(), first, *head])  # what every comparison reads, in one answer
    start = values.get(first, x) if stem is not None else x
    return _Run(aligned, values, start, run.written)


def _placed(alignment: Alignment, row: str) -> set[str]:
    """The planned layers of a row that a found operator sits on."""
    return {place.layer for place in alignment.places.values() if place.row == row and place.layer is not None}


def _rows(run: _Run) -> dict[str, Tensor]:
    """Each row's output in the run (the values :func:`_record` fetched)."""
    return {row: run.values[value] for row, value in run.alignment.row_ends.items() if value in run.values}


def _reference_rows(reference: ResNet, x: Tensor, train: bool) -> dict[str, Tensor]:
    reference.train(train)
    with torch.no_grad():
        return reference.forward_rows(x)


def _local_rows(reference: ResNet, start: Tensor, found: Mapping[str, Tensor], spec: ResNetSpec,
                train: bool, folds: _Folds) -> dict[str, float | None]:  # fmt: skip
    """Each row of the reference run on the model's own previous row output, against the model's row output."""
    reference.train(train)
    out: dict[str, float | None] = {}
    previous: Tensor | None = start
    with torch.no_grad():
        for row in spec.rows:
            got = found.get(row)
            try:
                expected = None if previous is None else folds.apply(row, reference.forward_row(row, previous))
            except (RuntimeError, ValueError):  # the previous row's output has a shape this row cannot take
                expected = None
            same = got is not None and expected is not None and got.shape == expected.shape
            out[row] = _relative(got, expected) if same and got is not None and expected is not None else None
            previous = None if got is None else folds.undo(row, got)
    return out


def _decisive(run: _Run, expected: Mapping[str, Tensor], spec: ResNetSpec) -> float | None:
    """The figure that decides: the model's output against :func:`_expected_output` (a backbone: its last row's)."""
    if run.alignment.headless:
        row = spec.stages[-1].name
        return _figure(_rows(run).get(row), expected[row])
    reference = _expected_output(run.alignment, expected, spec)
    if reference is None or run.alignment.trace.output not in run.values:
        return None
    return _figure(run.values[run.alignment.trace.output], reference)


def _expected_output(alignment: Alignment, expected: Mapping[str, Tensor], spec: ResNetSpec) -> Tensor | None:
    """What the model's output should be: the reference's logits (a backbone: its last row), with the softmax the
    model applies after its classifier applied to the reference's too (Table 1 ends in a softmax); any other operator
    after the classifier is compared as it is, so it shows.  None where the model has no classifier."""
    if alignment.headless:
        return expected[spec.stages[-1].name]
    trace = alignment.trace
    logits = alignment.found.head.logits
    producer = trace.producer(logits) if logits >= 0 else None
    if producer is None:
        return None
    reference = expected["fc"]
    after = [op for op in trace.ops if op.index > producer.index]
    if after and all(op.kind == "softmax" for op in after):
        for op in after:
            dim = op.operands[1][1] if len(op.operands) > 1 and op.operands[1][0] == "scalar" else -1
            function = torch.log_softmax if "log" in op.aten else torch.softmax
            reference = function(reference, int(dim))
    return reference


def _figure(found: Tensor | None, expected: Tensor) -> float | None:
    """The maximum relative difference; a (N, C, 1, 1) result compares with an (N, C) one; None for other shapes."""
    if found is None:
        return None
    if found.shape != expected.shape:
        if found.numel() != expected.numel() or found.shape[:1] != expected.shape[:1]:
            return None
        found = found.reshape(expected.shape)
    return _relative(found, expected)


def fixed_filters(trace: Trace) -> tuple[str, ...]:
    """The model's fixed filters in its canonical ``trace``: the tensors only anti-aliasing blurs read.  Data, not
    weights: part of the function the model computes, never drawn; the reference computes the table's filter, and
    the numbers say whether they agree.  (Other data, a pruned weight's mask, is found on the alignment:
    :func:`_data_buffers`.)"""
    fixed: set[str] = set()
    others: set[str] = set()
    for op in trace.ops:
        read = {*op.params, *op.buffers}
        if op.kind == "blur":
            fixed |= read
        else:
            others |= read
    return tuple(sorted(fixed - others))


def _data_buffers(alignment: Alignment) -> set[str]:
    """Buffers the model's function reads from the stem on that fill no tensor of the table's and are no batch norm's
    statistics (a constant scale, a temperature on the logits): data, kept as the model holds them, never drawn."""
    trace = alignment.trace
    stem = alignment.found.stem
    start = stem.index if stem is not None else 0
    statistics = {name for op in trace.ops if op.kind in ("bn", "norm") for name in op.buffers}
    return {name for op in trace.ops[start:] for name in op.buffers
            if name not in alignment.tensors and name not in statistics}  # fmt: skip


def _load_reference(reference: ResNet, state: Mapping[str, Tensor]) -> None:
    for module_name, module in reference.named_modules():
        prefix = f"{module_name}." if module_name else ""
        stores: tuple[dict[str, Any], ...] = (module._parameters, module._buffers)
        for store in stores:
            for key, tensor in store.items():
                if tensor is None:
                    continue
                value = state[prefix + key]
                if not tensor.is_floating_point():
                    value = value.to(tensor.dtype)
                store[key] = nn.Parameter(value, requires_grad=False) if store is module._parameters else value


def check_equivalence(
    model: nn.Module | Subject,
    spec: ResNetSpec | str,
    *,
    headless: bool = False,
    in_channels: int | None = None,
    max_macs: int = MAX_MACS,
    max_params: int = MAX_PARAMS,
    inference: bool = False,
    fixed: Sequence[str] = (),
) -> Equivalence:
    """Whether ``model`` computes the network of ``spec`` for every choice of weights (see the module docstring).

    ``inference``: the model is a graph whose batch norms may be folded into the convs before them (an ONNX export):
    each folded batch norm is compared as its conv's bias, the table's inference form.  A model file without a train
    mode (``Subject.artifact``) is compared in eval mode only, at the input it is fixed to where it is.

    ``fixed``: the model's fixed filters where its structural reading knows them already (:func:`fixed_filters` of
    its canonical trace): kept from the first draw; the recorded run's own reading decides, and differs at the cost
    of one more draw.

    ``model`` is not modified (a float64 CPU copy is checked; a model on the meta device is materialised); a
    :class:`~resnet_spec.verify.Subject` is a model wherever it runs (a contained child: ``RemoteSubject``).
    Never raises for a model: what cannot be transferred or run is a result with ``status`` unmapped or skipped.
    """
    spec = as_spec(spec, "check_equivalence")
    tol = tolerance(spec)
    shape = equivalence_input(spec, in_channels)
    subject = model if isinstance(model, Subject) else LocalSubject(model)
    try:
        return _check(
            subject, spec, shape, tol, headless, in_channels, max_macs, max_params, inference, tuple(sorted(fixed))
        )
    except _Skipped as e:
        return Equivalence("skipped", str(e), None, None, shape, tol, failed=e.failed)
    except _Unmapped as e:
        return Equivalence("unmapped", e.reason, e.row, e.block, shape, tol, data_unknown=isinstance(e, _DataUnknown))


def _check(
    subject: Subject, spec: ResNetSpec, shape: tuple[int, int, int, int], tol: float, headless: bool,
    in_channels: int | None, max_macs: int, max_params: int, inference: bool = False, fixed: tuple[str, ...] = (),
) -> Equivalence:  # fmt: skip
    artifact = subject.artifact
    macs = count(spec, (shape[2], shape[3])).total
    try:
        infos = subject.tensors()
    except TraceError as e:  # a model that cannot be copied or moved
        raise _Skipped(str(e)) from e
    params = sum(math.prod(i.shape) for i in infos if not i.buffer)
    if macs > max_macs or params > max_params:
        raise _Skipped(f"too large to run here ({params:,} parameters, {macs:,} multiply-adds per image at "
                       f"{shape[2]}x{shape[3]}; limits {max_params:,} and {max_macs:,})", failed=False)  # fmt: skip
    # the checker's copy of the model's drawn values (the reference reads them), its fixed filters its own
    try:
        drawn: Mapping[str, Tensor] = subject.draw(_SEED, keep=fixed)
    except TraceError as e:  # a fixed filter the model holds no values for: part of the function, unknown
        raise _DataUnknown(None, None, str(e)) from e
    generator = torch.Generator().manual_seed(_SEED)
    train = artifact is None or artifact.train
    batch = artifact.batch if artifact is not None and artifact.batch else _BATCH
    how = _How(spec, headless, in_channels, inference, train, batch)
    candidates = [(batch, *c[1:]) for c in _input_shapes(spec, shape, max_macs)]
    if artifact is not None and artifact.input_size is not None:  # a file fixed to its input: tried last
        pinned = (batch, shape[1], *artifact.input_size)
        candidates = [c for c in candidates if c != pinned] + [pinned]
    error: Exception | None = None
    for candidate in candidates:
        x = torch.randn(candidate, generator=generator, dtype=torch.float64)
        try:
            base = _record(subject, x, False, how)
            break
        except TraceError as e:
            error = e
    else:
        own = (batch, shape[1], spec.input_size, spec.input_size)
        if own not in candidates:  # it may run at the table's input only (a fixed pool), where it is too large
            large = count(spec, (spec.input_size, spec.input_size)).total
            raise _Skipped(f"the model does not run on the CPU in float64 at the inputs tried ({error}); at the "
                           f"table's own, {spec.input_size}x{spec.input_size}, it is too large to run here "
                           f"({large:,} multiply-adds per image; limit {max_macs:,})", failed=False)  # fmt: skip
        raise _Skipped(f"the model does not run on the CPU in float64: {error}")
    kept = tuple(sorted({*fixed_filters(base.alignment.trace), *_data_buffers(base.alignment)}))
    if kept != fixed:  # the model's own filters where the run shows others: it applies them as they are
        try:
            drawn = subject.draw(_SEED, keep=kept)
        except TraceError as e:
            raise _DataUnknown(None, None, str(e)) from e
        try:
            base = _record(subject, x, False, how)
        except TraceError as e:
            raise _Skipped(str(e)) from e
    transfer = _transfer(base.alignment, base.values, drawn, tol)
    transfer.kept = kept
    _symmetries(transfer, base.alignment, base.values)
    _path_orders(transfer, base.alignment)
    plan = base.alignment.plan
    if base.alignment.standardization_folded:  # the graph's weights are standardised already: applied as they are
        spec = dataclasses.replace(spec, weight_standardization=None)
        transfer.notes.append("the table's inference form: weight standardisation computed into the graph's conv "
                              "weights, which the reference applies as they are")  # fmt: skip
    reference = build(spec, num_classes=plan.num_classes, in_channels=plan.in_channels, device="meta")
    for module in reference.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.momentum = 0.0  # train mode leaves the running statistics as transferred: later passes reuse them
    _inference_form(transfer, base.alignment, reference)

    # direction 1: the model's drawn weights in the reference, eval then train
    _load_reference(reference, transfer.forward(drawn))
    runs = {"eval": base}
    if train:  # a file without a train mode (its note says so) is compared in eval mode only
        try:
            runs["train"] = _record(subject, x, True, how)
        except TraceError as e:
            raise _Skipped(f"the model does not run in train mode on the CPU: {e}") from e

    found = {mode: _rows(run) for mode, run in runs.items()}
    # a row read otherwise in train mode (a batch norm written by hand, normalising by the batch's statistics: the
    # reader finds no batch norm there) ends at another value: its train figure says nothing, the logits still do
    unread = {
        row
        for row in spec.rows
        if row != "fc" and train and _placed(runs["train"].alignment, row) != _placed(base.alignment, row)
    }
    for row in unread:
        found["train"].pop(row, None)
    expected = {mode: _reference_rows(reference, run.start, mode == "train") for mode, run in runs.items()}
    folds = _Folds(base.alignment, reference)
    expected["eval"] = {row: folds.apply(row, value) for row, value in expected["eval"].items()}
    # a backbone (headless) is compared up to its last stage: the head is not part of it
    rows = spec.rows[: spec.rows.index(spec.stages[-1].name) + 1] if headless else spec.rows
    figures = {row: {mode: _figure(found[mode].get(row), expected[mode][row]) for mode in runs} for row in rows}
    differ = any(v is None or v > tol for row in figures.values() for v in row.values())
    # the row alone, where some row differs: which rows differ by themselves (not computed when every row is equal)
    local = {mode: _local_rows(reference, run.start, found[mode], spec, mode == "train", folds) if differ else {}
             for mode, run in runs.items()}  # fmt: skip
    checks = []
    for row in rows:
        locals_ = [local[mode].get(row) for mode in runs]
        row_local = None if any(v is None for v in locals_) else max(v for v in locals_ if v is not None)
        got = found["eval"].get(row)
        ok = all(
            v is not None and v <= tol for mode, v in figures[row].items() if not (mode == "train" and row in unread)
        )
        shapes = (tuple(expected["eval"][row].shape), tuple(got.shape) if got is not None else ())
        checks.append(RowCheck(row, figures[row]["eval"], figures[row].get("train"), *shapes, ok, row_local,
                               row not in unread and train))  # fmt: skip
    outcome: tuple[Direction, str, float | None, _Run, Mapping[str, Tensor]] | None = None
    for mode in runs:
        figure = _decisive(runs[mode], expected[mode], spec)
        if figure is None or figure > tol:
            outcome = ("model", mode, figure, runs[mode], transfer.forward(drawn))
            break
    if outcome is None:  # direction 2: fresh values for the reference; what the model cannot hold shows here
        outcome, drawn = _reverse(subject, reference, transfer, x, how, tol, spec)
    mapped = len({t for source in transfer.sources.values() for t in source.tensors} | set(transfer.folded.values()))
    if unread:
        transfer.notes.append(f"in train mode {', '.join(r for r in spec.rows if r in unread)} read otherwise (an "
                              "operator the reader does not interpret, such as a batch norm by hand on the batch's "
                              "statistics): compared there by the logits only")  # fmt: skip
    notes = tuple(transfer.notes)
    permuted = tuple(transfer.permuted)
    written = _written(base.alignment, ((run.written, _trained(run)) for run in runs.values()))
    if outcome is None:
        observed = _observe(subject, drawn, reference, transfer, spec, how, base, tuple(x.shape) == shape)
        if not observed and not written:
            return Equivalence("equal", "", None, None, tuple(x.shape), tol, tuple(checks), mapped, notes,
                               permuted=permuted)  # fmt: skip
        findings = [*written, *observed]
        first = findings[0]
        return Equivalence("differs", "", first.row, first.block, tuple(x.shape), tol, tuple(checks), mapped, notes,
                           tuple(findings), permuted=permuted)  # fmt: skip
    direction, mode, figure, run, state = outcome
    located, row, block = _locate(reference, state, run, spec, mode, tol, figure, base.alignment)
    return Equivalence("differs", "", row, block, tuple(x.shape), tol, tuple(checks), mapped, notes,
                       (*written, *located), mode, direction, figure, permuted)  # fmt: skip


# ---- the model as it is used ------------------------------------------------------------------------------------

# Float32 on two implementations: other kernels, other summation orders; a change of the function is far larger.
FLOAT32_TOLERANCE = 1e-3
# Where the reference's own float32 output is further than that from its float64 one (rounding amplified by the drawn
# weights), the model's may differ by this many times as much: two implementations, each as far from the exact value.
_FLOAT32_MARGIN = 8.0
# Running variances drawn this many times larger for the second direction and the float32 calls: each batch norm
# then scales what it reads by about half in eval mode.  With variances drawn like other per-channel tensors, a deep
# net's residual stream grows about 1.3 times per block, to 1e6 at the logits.  That saturates its gates' sigmoids,
# so float32 rounding, not the function, decides their outputs.
_VARIANCE_FACTOR = 4.0
# Eval calls on one small input after the others: a model that behaves for its first calls and not later shows there
# (a model that counts further than the checker's calls is beyond any checker: docs/threat-model.md).
OBSERVED_REPEATS = 6


def _where_tensor(alignment: Alignment, name: str) -> tuple[str, str | None]:
    """The row and block of the planned layer a model tensor fills ("model" where it fills none)."""
    for slot in alignment.tensors.get(name, ()):
        layer = alignment.layer(slot.layer)
        return layer.row, layer.block
    return "model", None


def _written(alignment: Alignment, passes: Iterable[tuple[Iterable[str], bool]]) -> list[Mismatch]:
    """A forward pass that writes the model's tensors is not a function of its input: a finding per tensor written
    by any of ``passes`` ((the names it wrote, whether in train mode)).  Only train mode's batch norm statistics (and
    integer counters) may change."""
    trace = alignment.trace
    # every batch norm's running statistics, whether or not the table has a place for that batch norm
    statistics = {name for name, slots in alignment.tensors.items()
                  if any(slot.role in ("running_mean", "running_var") for slot in slots)}  # fmt: skip
    statistics |= {name for op in trace.ops if op.kind == "bn" for name in op.buffers}
    found: dict[str, str] = {}
    for written, train in passes:
        for name in written:
            counter = name in trace.buffers and len(trace.shapes.get(name, (1,))) == 0
            if train and (name in statistics or counter):
                continue
            found.setdefault(name, "train" if train else "eval")
    out = []
    for name, mode in found.items():
        row, block = _where_tensor(alignment, name)
        out.append(Mismatch(row, block, "written by the forward pass", "nothing written", f"{name} ({mode} mode)",
                            module=name.rpartition(".")[0], kind="computation"))  # fmt: skip
    return out


def _same(found: Sequence[Tensor], first: Sequence[Tensor]) -> bool:
    """Bit for bit the same outputs, a NaN where the other has one (a deep net's float32 overflow: inf - inf)."""

    def equal(a: Tensor, b: Tensor) -> bool:
        if a.shape != b.shape or a.dtype != b.dtype:
            return False
        if not a.is_floating_point():
            return torch.equal(a, b)
        return bool(((a == b) | (a.isnan() & b.isnan())).all())

    return len(found) == len(first) and all(equal(a, b) for a, b in zip(found, first, strict=True))


def _nondeterministic(first: Sequence[Tensor], found: Sequence[Tensor], where: str) -> Mismatch:
    """Eval calls on one input that differ: the model is not a function of its input."""
    difference = max((f for a, b in zip(first, found, strict=False) if (f := _figure(b, a)) is not None), default=None)
    text = f"differ by {difference:.1e}" if difference is not None else "differ in shape"
    return Mismatch(
        "model",
        None,
        "deterministic",
        "eval calls on one input equal",
        f"{text} (float32, {where})",
        kind="computation",
    )


def _trained(run: _Run) -> bool:
    """Whether a recorded run normalised by batch statistics (train mode)."""
    return any(op.attrs.get("batch_statistics") for op in run.alignment.trace.ops if op.kind == "bn")


def _observe(
    subject: Subject, values: Mapping[str, Tensor], reference: ResNet, transfer: _Transfer, spec: ResNetSpec,
    how: _How, base: _Run, drawn_sizes: bool,
) -> list[Mismatch]:  # fmt: skip
    """The model as it is used: called plainly (nothing recorded) in float32 on the CPU with gradients enabled, with
    the ``values`` the second direction drew (their running variances well conditioned), at input sizes drawn for
    this run: in eval mode on 3 to 6 images (drawn; a graph's own batch) of one size (both sides odd), in train
    mode on two of them, then :data:`OBSERVED_REPEATS` + 1 times in eval mode on one image of another (both sides
    even).  Where the model runs only at the input size the checker found for it (``drawn_sizes`` False: a fixed
    pool), every call is at that size.  Findings: an output other than the reference's (within
    :data:`FLOAT32_TOLERANCE`), calls on one input that differ, tensors a call writes."""
    chooser = random.SystemRandom()
    generator = torch.Generator().manual_seed(chooser.getrandbits(31))
    channels, height, width = base.start.shape[1], base.start.shape[2], base.start.shape[3]
    low, top = equivalence_input(spec, how.in_channels)[2], spec.input_size

    def side(parity: int) -> int:
        n = chooser.randint(low, max(low, min(top, low + 9)))
        return n if n % 2 == parity or n + 1 > top else n + 1

    def pair(parity: int) -> tuple[int, int]:
        """A drawn size where the table's network is defined (the base input's, where none drawn is)."""
        drawn = ((side(parity), side(parity)) for _ in range(16))
        return next((hw for hw in drawn if defined_at(spec, *hw)), (height, width))

    odd, even = (pair(1), pair(0)) if drawn_sizes else ((height, width), (height, width))
    # the eval call's batch drawn too, other than the recorded passes' (where the model is not fixed to one: a graph
    # exported at its batch): 3 to 6 images; the train call on the recorded passes' batch of them (batch statistics
    # of two values on a 1x1 map normalise to exactly -1 and 1: as well conditioned as the recorded passes)
    fixed_batch = subject.artifact is not None and bool(subject.artifact.batch)
    batch = how.batch if fixed_batch else chooser.randint(_BATCH + 1, _BATCH + 4)
    x = torch.randn(batch, channels, *odd, generator=generator)
    small = torch.randn(1 if drawn_sizes else how.batch, channels, *even, generator=generator)  # the repeats: cheap
    state = {name: value.float() for name, value in transfer.forward(values).items()}
    _load_reference(reference, state)
    exact: dict[str, Tensor] = {}  # the same state in float64, made where a figure needs it
    alignment = base.alignment
    stem = alignment.found.stem
    prepared = stem is not None and alignment.trace.ops[stem.index].inputs[0] != alignment.trace.input
    # what the model returns holds what the reference computes (a backbone's last row: among the feature maps it
    # returns; a classifier checked as a backbone returns logits only, which the structure reports)
    last = alignment.row_ends.get(spec.stages[-1].name)
    comparable = not alignment.headless or last in alignment.trace.outputs
    passes = [(x, False), *([(x[: how.batch], True)] if how.train else []), *[(small, False)] * (1 + OBSERVED_REPEATS)]
    first_repeat = len(passes) - OBSERVED_REPEATS
    findings: list[Mismatch] = []
    written: list[tuple[Iterable[str], bool]] = []
    first: tuple[Tensor, ...] = ()  # the first call on the small input
    for number, (input_, train) in enumerate(passes):
        size = "input " + "x".join(str(n) for n in input_.shape)
        try:
            called = subject.call(input_, train)
        except TraceError as e:
            return [*_written(alignment, written), *findings,
                    Mismatch("model", None, "forward pass", f"runs in float32 with gradients at {size}", str(e),
                             kind="computation")]  # fmt: skip
        written.append((called.written, train))
        if number >= first_repeat:  # a repeat: the same as the first call on the small input
            if not _same(called.outputs, first) and not any(m.property == "deterministic" for m in findings):
                findings.append(_nondeterministic(first, called.outputs,
                                                  f"{size}, call {number - first_repeat + 2} on it"))  # fmt: skip
            continue
        first = called.outputs
        if not comparable:
            continue
        # a model that prepares its input before the stem: the reference reads what the model's stem reads
        start = _record(subject, input_.double(), False, how).start.float() if prepared else input_
        expected = _expected_output(alignment, _reference_rows(reference, start, train), spec)
        figures = [f for f in (_figure(t, expected) for t in called.outputs if expected is not None) if f is not None]
        figure = min(figures, default=None)  # the output the reference's has the shape of
        allowed = FLOAT32_TOLERANCE
        if figure is not None and figure > allowed and expected is not None:
            exact = exact or {name: v.double() if v.is_floating_point() else v for name, v in state.items()}
            own = _own_float32_error(reference, alignment, spec, start, train, expected, exact, state)
            allowed = max(allowed, _FLOAT32_MARGIN * own)
        if (figure is None or figure > allowed) and not any(m.property == "output as used" for m in findings):
            text = "shape differs" if figure is None else f"differs by {figure:.1e}"
            mode = "train" if train else "eval"
            findings.append(Mismatch("fc", None, "output as used", f"the reference's (within {allowed:.1g})",
                                     f"{text} ({mode} mode, float32, gradients enabled, {size}, not recorded)",
                                     module=alignment.where("fc"), kind="computation"))  # fmt: skip
    return [*_written(alignment, written), *findings]


def _own_float32_error(
    reference: ResNet, alignment: Alignment, spec: ResNetSpec, start: Tensor, train: bool, expected: Tensor,
    exact: Mapping[str, Tensor], state: Mapping[str, Tensor],
) -> float:  # fmt: skip
    """How far the reference's own float32 output (``expected``, computed with ``state``) is from its float64 one
    (computed with ``exact``, ``state`` in float64) on the same input: a network whose rounding errors its weights
    amplify cannot hold another float32 implementation closer than that.  The reference is left with ``state``."""
    _load_reference(reference, exact)
    try:
        output = _expected_output(alignment, _reference_rows(reference, start.double(), train), spec)
    finally:
        _load_reference(reference, state)
    figure = None if output is None else _figure(expected.double(), output)
    return 0.0 if figure is None else figure


def _inference_form(transfer: _Transfer, alignment: Alignment, reference: ResNet) -> None:
    """The table's inference form where the model's batch norms are folded into its convs: each such batch norm of
    the reference computes ``x + b`` (scale 1, variance ``1 - eps``, mean ``-b``, no shift), ``b`` the conv's bias (or
    zero where the graph has none), and those values are never drawn."""
    if not alignment.folded:
        return
    modules = dict(reference.named_modules())
    for norm, bias in alignment.folded.items():
        module = modules.get(norm)
        eps = float(module.eps) if isinstance(module, nn.BatchNorm2d) else 1e-5
        transfer.constants[f"{norm}.weight"] = 1.0
        transfer.constants[f"{norm}.running_var"] = 1.0 - eps
        for key in ("weight", "bias", "running_mean", "running_var"):
            transfer.sources.pop(f"{norm}.{key}", None)
            transfer.fixed.add(f"{norm}.{key}")
        transfer.inference.add(f"{norm}.running_mean")
        if not bias:
            transfer.folded.pop(f"{norm}.running_mean", None)
    transfer.notes.append(f"the table's inference form: {len(alignment.folded)} batch norms folded into the convs "
                          "before them, each compared as its conv's bias")  # fmt: skip


class _Folds:
    """Rows whose last conv holds the next row's batch norm (the inference form: the pre-activation of the block
    after the stem, folded into the stem conv): in the model such a row ends after that batch norm.  :meth:`apply`
    gives the reference's row output that ending; :meth:`undo` takes it off a model's row output before the
    reference's next row reads it (eval mode: the only mode such a model has)."""

    def __init__(self, alignment: Alignment, reference: ResNet) -> None:
        self.norms: dict[str, Any] = {}  # row -> the next row's batch norm its last conv holds
        for norm, conv in alignment.holders.items():
            row = alignment.layer(conv).row
            if row != alignment.layer(norm).row:
                self.norms[row] = reference.get_submodule(norm)
        self.ends = {alignment.row_ends[row]: row for row in self.norms if row in alignment.row_ends}

    def apply(self, row: str, value: Tensor) -> Tensor:
        m = self.norms.get(row)
        if m is None:
            return value
        with torch.no_grad():
            return F.batch_norm(value, m.running_mean, m.running_var, m.weight, m.bias, False, 0.0, m.eps)

    def undo(self, row: str, value: Tensor) -> Tensor:
        m = self.norms.get(row)
        if m is None:
            return value
        shape = (1, -1, *([1] * (value.dim() - 2)))
        scale = (m.weight / torch.sqrt(m.running_var + m.eps)).reshape(shape)
        return (value - m.bias.reshape(shape)) / scale + m.running_mean.reshape(shape)


def _reverse(
    subject: Subject, reference: ResNet, transfer: _Transfer, x: Tensor, how: _How, tol: float, spec: ResNetSpec
) -> tuple[tuple[Direction, str, float | None, _Run, Mapping[str, Tensor]] | None, Mapping[str, Tensor]]:
    """Fresh reference values, held by the model where it can: the model's tensors drawn anew (and moved into the
    reference), and every reference tensor the model has no tensor of its own for drawn independently (a table
    tensor without a source: a non-identity affine, a non-zero bias; the second of two the model ties together).  A
    folded conv bias is zero.  Running variances are drawn :data:`_VARIANCE_FACTOR` times larger, which keeps eval
    mode well conditioned for :func:`_observe`'s float32 calls that follow.  Eval mode: a degree of freedom the
    model lacks shows there (train mode was compared in the first direction).  Returns the outcome where the outputs
    differ, and the model's values (as the checker drew them: the model holds them now)."""
    zero = tuple(bias for mean, bias in transfer.folded.items() if mean not in transfer.inference)
    variances = {tensor: _VARIANCE_FACTOR for name, source in transfer.sources.items()
                 if name.endswith(".running_var") for tensor in source.tensors}  # fmt: skip
    values = subject.draw(_SEED + 1, zero=zero, keep=transfer.kept, scale=variances)
    state = transfer.forward(values)
    own: dict[str, Tensor] = {}
    held: set[tuple[str, ...]] = set()
    for name, shape in transfer.shapes.items():
        source = transfer.sources.get(name)
        if name in transfer.fixed:
            continue
        if source is None or source.tensors in held:
            if not name.endswith("num_batches_tracked"):
                own[name] = torch.empty(shape, dtype=torch.float64)
        else:
            held.add(source.tensors)
    draw(own, _SEED + 2, scale={name: _VARIANCE_FACTOR for name in own if name.endswith(".running_var")})
    state.update(own)
    _load_reference(reference, state)
    run = _record(subject, x, False, how)
    figure = _decisive(run, _reference_rows(reference, run.start, False), spec)
    if figure is None or figure > tol:
        return ("reference", "eval", figure, run, state), values
    return None, values


# ---- locating a difference --------------------------------------------------------------------------------------


def _blocks_per_row(alignment: Alignment) -> dict[str, int]:
    counts = {row: 0 for row in alignment.spec.rows}
    for match in alignment.blocks:
        if match.found is not None:
            counts[match.row] += 1
    return counts


def _locate(
    reference: ResNet, state: Mapping[str, Tensor], run: _Run, spec: ResNetSpec, mode: str, tol: float,
    figure: float | None, base: Alignment,
) -> tuple[list[Mismatch], str, str | None]:  # fmt: skip
    """The first block (or the stem or head) whose own output differs on its own input, and in it the first operator,
    with what explains it where the trace tells.  Returns the findings and the (row, block).  A model whose dataflow
    in this run is not the one it had in the first (eval mode, the model's own weights) is located where the blocks
    found differ."""
    counts, base_counts = _blocks_per_row(run.alignment), _blocks_per_row(base)
    changed = next((row for row in spec.rows if counts[row] != base_counts[row]), None)
    if changed is not None:
        return [Mismatch(changed, None, "dataflow", f"{base_counts[changed]} blocks, as in the first run (eval mode)",
                         f"{counts[changed]} blocks found in {mode} mode", module=base.where(changed),
                         kind="computation")], changed, None  # fmt: skip
    _load_reference(reference, state)
    folds = _Folds(run.alignment, reference)
    train = mode == "train"
    reference.train(train)
    alignment, values = run.alignment, run.values
    trace = alignment.trace
    places = alignment.places
    # the units in execution order: the stem, each block, the head
    units: list[tuple[str, str | None, list[int], Callable[[Tensor], Tensor] | None, int | None, int | None]] = []
    stem_ops = sorted(i for i, p in places.items() if p.row == "conv1")
    if "conv1" in alignment.row_ends:
        units.append(("conv1", None, stem_ops, lambda t: folds.apply("conv1", reference.forward_row("conv1", t)),
                      None, alignment.row_ends["conv1"]))  # fmt: skip
    for row, planned, found in alignment.matched():
        ops = sorted(i for i, p in places.items() if p.block == planned.spec.name)
        units.append((row, planned.spec.name, ops, reference.get_submodule(planned.module), found.input_value,
                      found.output_value))  # fmt: skip
    head_ops = sorted(i for i, p in places.items() if p.row == "fc")
    units.append(("fc", None, head_ops, None, None, alignment.row_ends.get("fc")))
    read = [n for _, _, ops, _, _, _ in units for i in ops for n in (*trace.ops[i].inputs, trace.ops[i].output)]
    values.fetch([*read, *(v for *_, start, end in units for v in (start, end) if v is not None)])
    with torch.no_grad():
        expected_rows = {row: folds.apply(row, value) for row, value in reference.forward_rows(run.start).items()}
        found_rows = _rows(run)
        first_row = next((row for row in spec.rows if row in found_rows and (
            (f := _figure(found_rows[row], expected_rows[row])) is None or f > tol)), None)  # fmt: skip
        rows_up_to = spec.rows[: spec.rows.index(first_row) + 1] if first_row is not None else spec.rows
        folded = _folded_bias_layers(alignment)
        for row, block, ops, module, start, end in units:
            if row not in rows_up_to:
                break
            for index in ops:
                if places[index].layer in folded:
                    continue  # compared together, by the block's or the row's output
                finding = _op_finding(reference, alignment, trace.ops[index], values, train, tol, row, block)
                if finding is not None:
                    return [finding], row, block
            if module is not None and start is not None and end is not None and start in values and end in values:
                given = folds.undo(folds.ends[start], values[start]) if start in folds.ends else values[start]
                difference = _figure(values[end], module(given))
                if difference is None or difference > tol:
                    where = alignment.where(row, block)
                    return (
                        [
                            Mismatch(
                                row,
                                block,
                                "output",
                                "the table's block on the same input",
                                _difference_text(difference, mode),
                                module=where,
                                kind="computation",
                            )
                        ],
                        row,
                        block,
                    )
    if first_row is not None and first_row != "fc":
        difference = _figure(found_rows[first_row], expected_rows[first_row])
        return [Mismatch(first_row, None, "output", "the reference's row output", _difference_text(difference, mode),
                         module=alignment.where(first_row), kind="computation")], first_row, None  # fmt: skip
    where = alignment.where("fc")
    found_text = _difference_text(figure, mode)
    what = "the model's output" if first_row is None else "logits"
    expected_text = "the logits (a softmax at most)" if first_row is None else "the reference's logits"
    return [Mismatch("fc", None, what, expected_text, found_text, module=where, kind="computation")], "fc", None


def _folded_bias_layers(alignment: Alignment) -> set[str]:
    """The convs whose redundant bias the transfer folds into the batch norm after them, and those batch norms: on
    its own, each holds what the other does (the model's conv output has the bias, the reference's mean has it)."""
    layers = list(alignment.plan.layers)
    out: set[str] = set()
    for index, place in alignment.places.items():
        op = alignment.trace.ops[index]
        if place.layer is None or op.kind != "conv" or not op.attrs.get("bias"):
            continue
        layer = alignment.layer(place.layer)
        norm = _planned_after(layers, layer, "bn") if layer.kind == "conv" else None
        if norm is not None and not any(name.endswith(".bias") for name, _ in layer.params):
            out |= {layer.name, norm.name}
    return out


def _difference_text(figure: float | None, mode: str) -> str:
    return f"shape differs ({mode} mode)" if figure is None else f"differs by {figure:.1e} ({mode} mode)"


def _op_finding(
    reference: ResNet, alignment: Alignment, op: Op, values: Mapping[int, Tensor], train: bool, tol: float, row: str,
    block: str | None,
) -> Mismatch | None:  # fmt: skip
    """The operator against its planned layer on the operator's own input; a finding when they differ."""
    place = alignment.places[op.index]
    if place.layer is None or not op.inputs or op.inputs[0] not in values or op.output not in values:
        return None
    layer = alignment.layer(place.layer)
    if layer.kind not in ("conv", "bn", "relu", "pool", "global_pool", "fc"):
        return None
    plan_layers = list(alignment.plan.layers)
    module: Any = reference.get_submodule(layer.name)
    x, y = values[op.inputs[0]], values[op.output]
    if layer.kind == "bn" and isinstance(module, nn.GroupNorm):
        expected = module(x)
    elif layer.kind == "bn":
        expected = F.batch_norm(x, module.running_mean.clone(), module.running_var.clone(), module.weight,
                                module.bias, train, 0.0, module.eps)  # fmt: skip
    elif layer.kind == "fc" and op.kind == "conv":  # the classifier as a 1x1 conv (before or after the pool)
        expected = F.conv2d(x, module.weight[:, :, None, None], module.bias)
    elif layer.kind == "fc":
        expected = module(x.flatten(1))
    elif layer.kind == "global_pool":
        expected = module(x).flatten(1)
    else:
        expected = module(x)
    norm = _planned_after(plan_layers, layer, "bn") if layer.kind == "conv" and alignment.folded else None
    if norm is not None and norm.name in alignment.folded:  # the inference form: the conv holds its batch norm
        expected = reference.get_submodule(norm.name)(expected)
    difference = _figure(y.reshape(expected.shape) if y.numel() == expected.numel() else y, expected)
    if difference is not None and difference <= tol:
        return None
    name = layer.name
    relative = name.split(".", 2)[-1] if block is not None else name
    mode = "train" if train else "eval"
    if layer.kind == "bn":
        eps = op.attrs.get("eps")
        if eps is not None and not math.isclose(float(eps), module.eps):
            return Mismatch(row, block, f"{relative}.eps", module.eps, float(eps), module=op.module, kind="computation")
        if not train and op.attrs.get("batch_statistics"):
            return Mismatch(row, block, f"{relative}.statistics", "running statistics in eval mode",
                            "batch statistics in eval mode", module=op.module, kind="computation")  # fmt: skip
    return Mismatch(row, block, f"{relative}.output", f"the table's {layer.kind} ({name}) on the same input",
                    _difference_text(difference, mode), module=op.module, kind="computation")  # fmt: skip
