"""Checkpoints: which table entries a file of weights can be, and where it cannot be one entry.

A checkpoint (``.safetensors``, or a ``torch.save`` state_dict read with ``weights_only=True``) holds tensor names and
shapes: no strides, no pools, no activations, no code.  So it can prove that weights do NOT fit a table entry (a block
missing, a conv wider), never that a network conforms: comparing a checkpoint ends "not conformant" (exit 1) or
"undecided" (exit 2), never "conformant".

* :func:`identify`: every registry entry, under every option of every named deviation (as
  :func:`~resnet_spec.verify.best_matches` forms them), whose parameters and buffers the tensors fill exactly
  under one of the weight formats of :mod:`resnet_spec.weights` (every key used once, every shape equal; the keys and
  shapes are :func:`~resnet_spec.weights.format_layout`'s, the load line is checked by
  :func:`~resnet_spec.weights.convert_state_dict`), with the line of code that loads it;
* :func:`compare_checkpoint`: the tensors against one entry, row by row of Table 1, under the format that names most of
  them; the first row that differs, with expected and found;
* :func:`render` and :func:`to_json`: the report (text; JSON described by :data:`JSON_SCHEMA`).

The classifier's and the stem conv's shapes give ``num_classes`` and ``in_channels`` (a 10-class fine-tune of a
1-channel network is still identified); a file without a classifier is read as a backbone (``num_classes=0``).
"""

from __future__ import annotations

import bisect
import json
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import Tensor

from ..spec import (
    Layer,
    Plan,
    PlannedBlock,
    ResNetSpec,
    SpecError,
    as_spec,
    families,
    knob_combinations,
    knob_options,
    layout_plan,
    list_specs,
    load_spec,
)
from ..spec import variants as table_variants
from ..weights import FORMATS, ConversionError, FormatKey, convert_state_dict, format_layout
from ._artifacts import CHECKPOINT_KINDS, ArtifactError, artifact_kind, read_checkpoint
from ._report import json_object
from ._report import table as text_table
from ._verdict import Verdict

__all__ = [
    "FINDING_PROBLEMS",
    "JSON_SCHEMA",
    "UNKNOWABLE",
    "CheckpointComparison",
    "CheckpointFile",
    "CheckpointFinding",
    "CheckpointRow",
    "Fit",
    "FitGroup",
    "Identification",
    "compare_checkpoint",
    "identify",
    "open_checkpoint",
    "render",
    "to_json",
    "undecided_reason",
]

# What parameter names and shapes never fix, whatever entry the tensors fit (the report's words for each).
UNKNOWABLE: Mapping[str, str] = {
    "strides": "every conv's and pool's stride and padding, so where a downsampling block strides (v1 or v1.5)",
    "pooling": "the pools (max, average or an anti-aliasing blur; window; where they sit): they have no weights",
    "activations": "the activations and where they sit (before or after the addition)",
    "computation": "what a model's code computes with the tensors: a checkpoint holds no code",
}
# The named deviations (variants.toml's knobs) in the report's words.
_KNOB_WORDS: Mapping[str, str] = {
    "variant": "stride placement",
    "shortcut": "shortcut option",
    "stem_pool": "stem pool padding and rounding",
}
# What a finding says of one tensor (or of a block, when none of its tensors is in the file).
FINDING_PROBLEMS = ("missing block", "unexpected block", "missing", "shape", "unexpected")
_NAMING_WORDS: Mapping[str, str] = {
    "ours": "torchvision's names",
    "timm": "timm's names",
    "mmpretrain": "mmpretrain's names",
    "caffe": "the Caffe release's names",
    "timm-resnetv2": "timm resnetv2's names",
}
_MIN_PREFIX = 3  # an unexpected key is placed by its nearest expected key only when they share this many characters
_SHOWN_FINDINGS = 12  # findings the text report lists before "... and N more"
_SEPARATORS = "._"


# ---- the file --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CheckpointFile:
    """Which file the tensors came from, and what kind of file it is (for the report)."""

    path: str
    kind: str  # one of artifacts.CHECKPOINT_KINDS: "safetensors" or "state_dict"


def open_checkpoint(path: str | Path) -> tuple[CheckpointFile, dict[str, Tensor]]:
    """A checkpoint file and its tensors by name (:func:`~resnet_spec.verify._artifacts.read_checkpoint`: nothing of
    the file runs).  Raises :class:`~resnet_spec.verify.ArtifactError` in one line for a file that is not a
    checkpoint or is refused (a pickle that would run code)."""
    kind = artifact_kind(path)
    if kind not in CHECKPOINT_KINDS:
        raise ArtifactError(
            f"{path}: a {kind} file, not a checkpoint (expected .safetensors or a torch.save state_dict); compare the "
            "model it holds with resnet-spec compare --impl FILE"
        )
    return CheckpointFile(str(path), kind), read_checkpoint(path)


# ---- results ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Fit:
    """One network of the registry whose parameters and buffers the checkpoint's tensors fill exactly."""

    entry: str  # the table entry ("resnet50d")
    label: str  # the entry under these deviations ("resnet50d (v1, shortcut D)")
    deviations: tuple[tuple[str, str], ...]  # (knob, option) that differ from the entry's table; (): as it defines it
    knobs: tuple[tuple[str, str], ...]  # every knob's option: what the networks of one entry differ by
    format: str  # the weight format the load line reads the file with (resnet_spec.weights.FORMATS)
    formats: tuple[str, ...]  # every format whose converter reads the tensors into this network
    num_classes: int  # read from the classifier; 0: the file has none (a backbone)
    in_channels: int  # read from the stem's first conv
    build_arguments: tuple[tuple[str, int | str], ...]  # build()'s keywords besides the name: what differs

    def load_code(self, path: str = "PATH") -> str:
        """The line that loads the file into this network, e.g.
        ``load_checkpoint("w.pth", build("resnet50d", num_classes=10), source="timm")``."""
        arguments = "".join(f", {k}={_literal(v)}" for k, v in self.build_arguments)
        model = f"build({_literal(self.entry)}{arguments})"
        return f"load_checkpoint({_literal(path)}, {model}, source={_literal(self.format)})"


@dataclass(frozen=True)
class FitGroup:
    """The networks of one table entry that the tensors fit: a checkpoint cannot tell them apart."""

    entry: str
    fits: tuple[Fit, ...]
    knobs: tuple[tuple[str, tuple[str, ...]], ...]  # (knob, its options that all fit) where more than one does


@dataclass(frozen=True)
class Identification:
    """Every network of the registry the tensors fit (:func:`identify`)."""

    tensors: int  # tensors in the file
    elements: int  # numbers they hold, parameters and buffers together
    fits: tuple[Fit, ...]  # entries as their tables define them first, then by fewer deviations
    groups: tuple[FitGroup, ...]  # the fits by table entry, in the order of their first fit
    naming: str | None  # WeightFormat.naming of the fits ("ours": torchvision's names); None when nothing fits
    cannot_tell: tuple[str, ...]  # knobs with several options among the fits (KNOBS names), then UNKNOWABLE's keys

    @property
    def exit_status(self) -> int:
        """0 when at least one entry fits, 1 when none does."""
        return 0 if self.fits else 1


@dataclass(frozen=True)
class CheckpointRow:
    """One row of Table 1 as the checkpoint's tensors show it (convs as "KxK, channels"; no strides, no pools)."""

    row: str  # conv1, conv2_x, ..., fc; "model" for tensors no row can be told for
    expected: str  # "[1x1, 64; 3x3, 64; 1x1, 256] x3"
    found: str
    expected_blocks: int  # the row's blocks in the table (0 outside the stages)
    found_blocks: int  # blocks with tensors in the file
    ok: bool  # every tensor of the row present with its shape, and none more


@dataclass(frozen=True)
class CheckpointFinding:
    """A tensor (or a whole block) where the file and the table entry differ."""

    row: str
    block: str | None  # the paper's block name ("conv4_7"); None outside blocks
    key: str  # the file's key, in the format's names; a missing block: its first; a block more: "layer3.6"
    problem: str  # one of FINDING_PROBLEMS
    expected: tuple[int, ...] | int | None  # the shape (a missing block: its tensor count); None: unexpected
    found: tuple[int, ...] | int | None  # the shape in the file (a block beyond the table's: its tensor count)


@dataclass(frozen=True)
class CheckpointComparison:
    """A checkpoint against one table entry (:func:`compare_checkpoint`)."""

    spec: ResNetSpec
    format: str | None  # the format whose names most of the file's keys are (None: no format names any)
    formats: tuple[str, ...]  # the formats with those names
    mapped: int  # the file's keys that are names of that format for this entry
    tensors: int
    elements: int
    num_classes: int  # read from the file, as the layout compared
    in_channels: int
    rows: tuple[CheckpointRow, ...]
    findings: tuple[CheckpointFinding, ...]
    identification: Identification  # every entry the file fits
    fit: Fit | None  # this entry's own fit (how to load the file into it), when the tensors fit it

    @property
    def recognised(self) -> bool:
        """Most of the file's keys are a format's names for this entry: only then can a difference be told."""
        return self.mapped * 2 > self.tensors

    @property
    def fits(self) -> bool:
        """Every tensor of the entry present, with its shape, and none more."""
        return self.recognised and not self.findings

    @property
    def verdict(self) -> Verdict:
        """NOT_CONFORMANT when the weights do not fit; UNDECIDED otherwise: names and shapes never prove conformance."""
        return Verdict.NOT_CONFORMANT if self.recognised and self.findings else Verdict.UNDECIDED

    @property
    def exit_status(self) -> int:
        """1 when the weights do not fit, 2 otherwise."""
        return self.verdict.exit_status

    @property
    def first_difference(self) -> str | None:
        """The first row of Table 1 that differs, with expected and found; None when none does."""
        if not self.recognised or not self.findings:
            return None
        row = next(r for r in self.rows if not r.ok)
        if row.expected_blocks != row.found_blocks:
            return f"{row.row} ({row.expected_blocks} blocks expected, {row.found_blocks} found)"
        finding = next(f for f in self.findings if f.row == row.row)
        return f"{row.row} ({_finding_text(finding)})"


# ---- the registry's networks -----------------------------------------------------------------------------------

_Network = tuple[Any, ...]  # what makes two specs one network (as best_matches dedupes), with the input channels
_PLANS: dict[tuple[_Network, int | None, int | None], Plan] = {}
_BRANCH_CONVS: dict[_Network, Counter[tuple[int, ...]]] = {}
_LAYOUTS: dict[tuple[int, str], tuple[Plan, dict[str, FormatKey]]] = {}


def _network(spec: ResNetSpec) -> _Network:
    return (*spec.network_key, spec.in_channels)


def _plan(spec: ResNetSpec, num_classes: int | None = None, in_channels: int | None = None) -> Plan:
    """The layout plan (cached: a network's plan does not change while we run)."""
    key = (_network(spec), num_classes, in_channels)
    plan = _PLANS.get(key)
    if plan is None:
        try:  # at the table's input size (shapes of weights do not depend on it); the smallest where that fails
            plan = layout_plan(spec, num_classes=num_classes, in_channels=in_channels)
        except ValueError:
            plan = layout_plan(spec, spec.min_input_size(), num_classes=num_classes, in_channels=in_channels)
        _PLANS[key] = plan
    return plan


def _format_layout(plan: Plan, source: str) -> dict[str, FormatKey]:
    """format_layout, cached for the cached plans (kept alive by _PLANS, so their ids stay theirs)."""
    key = (id(plan), source)
    cached = _LAYOUTS.get(key)
    if cached is None or cached[0] is not plan:
        cached = (plan, format_layout(plan, source))
        _LAYOUTS[key] = cached
    return cached[1]


def _branch_convs(spec: ResNetSpec) -> Counter[tuple[int, ...]]:
    """The weight shapes of the blocks' residual-branch convs, which no named deviation changes (the stride
    placement moves a stride, the shortcut option changes shortcuts, the stem pool pads a pool)."""
    key = _network(spec)
    if key not in _BRANCH_CONVS:
        layers = (layer for block in _plan(spec).blocks for layer in block.role("branch") if layer.kind == "conv")
        _BRANCH_CONVS[key] = Counter(layer.params[0][1] for layer in layers)
    return _BRANCH_CONVS[key]


def _may_fit(spec: ResNetSpec, conv_shapes: Counter[tuple[int, ...]]) -> bool:
    """Cheap necessary conditions on an entry, true under every named deviation: at least as many conv-shaped (3-D
    or 4-D) tensors in the file as the entry has convs in its stem and branches, and every branch conv's shape among
    them."""
    convs = len(spec.stem.convs) + sum(len(block.convs) for block in spec.blocks)
    return convs <= sum(conv_shapes.values()) and _branch_convs(spec) <= conv_shapes


def _convs_may_fit(plan: Plan, conv_shapes: Counter[tuple[int, ...]]) -> bool:
    """A necessary condition on a network, in every format (each stores a conv's weight as it is, out x in x k x k,
    or out x in x k for a gate's 1-D conv): the weight shape of every conv but the first (whose input channels the
    file decides) among the file's."""
    convs = [layer.params[0][1] for layer in plan.layers if layer.kind == "conv"]
    return Counter(convs[1:]) <= conv_shapes


def _tensorless(spec: ResNetSpec) -> int:
    """Layers a checkpoint never shows that an entry adds to the network with the same tensors: its anti-aliasing
    pools.  Of entries a file fits alike, the one with the fewest is named first."""
    return sum(block.anti_alias is not None for block in spec.blocks) + (spec.stem.anti_alias is not None)


def _deviations(spec: ResNetSpec, table: ResNetSpec) -> tuple[tuple[str, str], ...]:
    return tuple((knob, option) for knob, option in spec.knobs.items() if table.knobs.get(knob) != option)


def _candidates(names: Sequence[str]) -> list[tuple[ResNetSpec, ResNetSpec]]:
    """(network, its entry as the table defines it) for ``names`` under every option of every named deviation: the
    entries as defined first, then by fewer deviations, each distinct network once.  A knob an entry leaves unnamed
    (a stem pool whose padding is the table's own) is also left as the entry has it."""
    tables = {name: load_spec(name) for name in names}
    found: list[tuple[int, int, ResNetSpec, ResNetSpec]] = [(0, i, tables[n], tables[n]) for i, n in enumerate(names)]
    for i, name in enumerate(names):
        for combination in knob_combinations(tables[name]):
            try:
                spec = load_spec(name, **combination)
            except SpecError:  # options that form no network (a pre-activation table with no shortcuts)
                continue
            found.append((len(_deviations(spec, tables[name])), i, spec, tables[name]))
    order = list(knob_options())
    found.sort(key=lambda item: (item[0], item[1], [order.index(k) for k, _ in _deviations(item[2], item[3])]))
    seen: set[_Network] = set()
    out: list[tuple[ResNetSpec, ResNetSpec]] = []
    for _, _, spec, table in found:
        if _network(spec) not in seen:
            seen.add(_network(spec))
            out.append((spec, table))
    return out


# ---- reading the tensors under a format ------------------------------------------------------------------------


def _namings() -> dict[str, tuple[str, ...]]:
    """Each naming (WeightFormat.naming) and its formats, in FORMATS order."""
    out: dict[str, list[str]] = {}
    for fmt in FORMATS.values():
        out.setdefault(fmt.naming, []).append(fmt.name)
    return {naming: tuple(names) for naming, names in out.items()}


def _alike(plan: Plan, naming: str) -> tuple[str, ...]:
    """The formats whose names for ``plan``'s network are ``naming``'s, in FORMATS order: that naming's, and any
    other's that names this network alike (timm's names are torchvision's unless a stem conv replaces the pool)."""
    keys = set(_format_layout(plan, _namings()[naming][0]))
    alike = []
    for name, fmt in FORMATS.items():
        if fmt.naming != naming:
            try:
                if set(_format_layout(plan, name)) != keys:
                    continue
            except (ConversionError, ValueError):  # no names for this network
                continue
        alike.append(name)
    return tuple(alike)


@dataclass(frozen=True)
class _Reading:
    """The tensors laid on one entry under one naming."""

    naming: str
    plan: Plan
    layout: dict[str, FormatKey]
    num_classes: int
    in_channels: int
    mapped: int  # the file's keys among the layout's


def _first_conv(plan: Plan) -> str:
    return next(layer.params[0][0] for layer in plan.stem if layer.kind == "conv")


def _classifier(plan: Plan) -> str | None:
    return next((layer.params[0][0] for layer in plan.head if layer.kind == "fc"), None)


def _key_of(layout: Mapping[str, FormatKey], ours: str | None) -> str | None:
    return next((key for key, slot in layout.items() if slot.ours == ours), None) if ours else None


def _read(spec: ResNetSpec, naming: str, shapes: Mapping[str, tuple[int, ...]], *, strict: bool) -> _Reading | None:
    """The layout of ``spec`` under ``naming`` for the classes and input channels the file's classifier and stem
    conv have (none: a backbone; the table's channels).  ``strict``: None when the file lacks the stem conv's key
    (the naming is not the file's).  None when the naming has no names for the network."""
    source = _namings()[naming][0]
    try:
        plan = _plan(spec)
        table_layout = _format_layout(plan, source)
        stem_key = _key_of(table_layout, _first_conv(plan))
        fc_key = _key_of(table_layout, _classifier(plan))
        stem = shapes.get(stem_key) if stem_key is not None else None
        if stem is None or len(stem) != 4:
            if strict:
                return None
            in_channels = spec.in_channels
        else:
            in_channels = stem[1]
        fc = shapes.get(fc_key) if fc_key is not None else None
        num_classes = fc[0] if fc is not None and len(fc) >= 1 else 0
        layout = table_layout
        if (num_classes, in_channels) != (plan.num_classes, plan.in_channels):
            plan = _plan(spec, num_classes, in_channels)
            layout = _format_layout(plan, source)
    except (ConversionError, ValueError):  # no names for this network; a shape no network can have (0 channels)
        return None
    return _Reading(naming, plan, layout, num_classes, in_channels, sum(1 for key in shapes if key in layout))


def _exact(layout: Mapping[str, FormatKey], shapes: Mapping[str, tuple[int, ...]]) -> bool:
    """Every key of the file in the layout with its shape, and every required key of the layout in the file."""
    if len(shapes) > len(layout):
        return False
    for key, shape in shapes.items():
        slot = layout.get(key)
        if slot is None or slot.shape != shape:
            return False
    return all(slot.optional or key in shapes for key, slot in layout.items())


def _accepted(tensors: Mapping[str, Tensor], spec: ResNetSpec, reading: _Reading) -> tuple[str, ...]:
    """The formats whose converter reads the tensors into the network (the reading's naming, or another with the
    same names for it: timm's are torchvision's but for a replaced stem pool): those whose stride placement is the
    spec's first, then those that check none (the converter decides)."""
    accepted = []
    for name in FORMATS:
        try:
            convert_state_dict(tensors, spec, source=name, num_classes=reading.num_classes,
                               in_channels=reading.in_channels)  # fmt: skip
        except (ConversionError, ValueError):
            continue
        accepted.append(name)
    return tuple(sorted(accepted, key=lambda name: FORMATS[name].stride_on is None))


def _fit(tensors: Mapping[str, Tensor], spec: ResNetSpec, table: ResNetSpec, reading: _Reading) -> Fit | None:
    formats = _accepted(tensors, spec, reading)
    if not formats:
        return None
    deviations = _deviations(spec, table)
    arguments: list[tuple[str, int | str]] = []
    if reading.num_classes != table.head.num_classes:
        arguments.append(("num_classes", reading.num_classes))
    if reading.in_channels != table.in_channels:
        arguments.append(("in_channels", reading.in_channels))
    return Fit(spec.name, spec.label, deviations, tuple(spec.knobs.items()), formats[0], formats,
               reading.num_classes, reading.in_channels, (*arguments, *deviations))  # fmt: skip


def _shapes(tensors: object, caller: str) -> dict[str, tuple[int, ...]]:
    if not isinstance(tensors, Mapping):
        raise TypeError(f"{caller}: expected tensors a mapping of names to tensors, got {type(tensors).__name__}")
    shapes: dict[str, tuple[int, ...]] = {}
    for key, value in tensors.items():
        if not isinstance(key, str) or not isinstance(value, Tensor):
            raise TypeError(f"{caller}: expected tensors a mapping of names to tensors, got {key!r}: "
                            f"{type(value).__name__}")  # fmt: skip
        shapes[key] = tuple(value.shape)
    return shapes


def _elements(shapes: Mapping[str, tuple[int, ...]]) -> int:
    total = 0
    for shape in shapes.values():
        n = 1
        for d in shape:
            n *= d
        total += n
    return total


# ---- identify --------------------------------------------------------------------------------------------------


def identify(tensors: Mapping[str, Tensor]) -> Identification:
    """Every table entry (every family), under every option of every named deviation, whose parameters and buffers
    ``tensors`` fill exactly under one of the weight formats of :mod:`resnet_spec.weights`: every key used once,
    every shape equal.  The classifier's and the stem conv's shapes give the classes and input channels.

    Each fit says its entry, the deviations that make it, the format and the line that loads the file; the fits of
    one entry are grouped (a checkpoint cannot tell them apart), and ``cannot_tell`` lists what names and shapes
    never fix.  Raises TypeError for anything but a mapping of names to tensors.
    """
    shapes = _shapes(tensors, "identify")
    conv_shapes: Counter[tuple[int, ...]] = Counter(shape for shape in shapes.values() if len(shape) in (3, 4))
    names = [name for family in families() for name in list_specs(family) if _may_fit(load_spec(name), conv_shapes)]
    fits: list[Fit] = []
    naming: str | None = None
    for spec, table in _candidates(names):
        if not _convs_may_fit(_plan(spec), conv_shapes):
            continue
        for candidate in _namings():
            reading = _read(spec, candidate, shapes, strict=True)
            if reading is None or reading.mapped != len(shapes) or not _exact(reading.layout, shapes):
                continue
            fit = _fit(tensors, spec, table, reading)
            if fit is not None:
                fits.append(fit)
                naming = candidate
                break
    fits.sort(key=lambda fit: _tensorless(load_spec(fit.entry)))  # stable: by deviations, then the tables' order
    knobs = [knob for knob in knob_options() if len({dict(fit.knobs).get(knob) for fit in fits}) > 1]
    return Identification(len(shapes), _elements(shapes), tuple(fits), _groups(fits), naming, (*knobs, *UNKNOWABLE))


def _groups(fits: Sequence[Fit]) -> tuple[FitGroup, ...]:
    entries = sorted(dict.fromkeys(fit.entry for fit in fits), key=lambda entry: _tensorless(load_spec(entry)))
    groups = []
    for entry in entries:
        members = tuple(fit for fit in fits if fit.entry == entry)
        options: dict[str, list[str]] = {}
        for fit in members:
            for knob, option in fit.knobs:
                options.setdefault(knob, [])
                if option not in options[knob]:
                    options[knob].append(option)
        varying = tuple((knob, tuple(opts)) for knob, opts in options.items() if len(opts) > 1)
        groups.append(FitGroup(entry, members, varying))
    return tuple(groups)


# ---- compare ---------------------------------------------------------------------------------------------------


def compare_checkpoint(tensors: Mapping[str, Tensor], spec: ResNetSpec | str) -> CheckpointComparison:
    """``tensors`` against the table entry ``spec``, row by row of Table 1, under the weight format whose names
    most of the file's keys are (``format`` says which).

    The verdict is NOT_CONFORMANT (exit 1) when the weights do not fit: ``first_difference`` names the first row
    that differs, expected and found (a ResNet-50 checkpoint against resnet101: conv4_x, 23 blocks expected, 6
    found); else UNDECIDED (exit 2): a checkpoint has no strides, pools or activations, so it never proves
    conformance (``identification`` says which entries it fits).  Raises TypeError for anything but a mapping of
    names to tensors.
    """
    spec = as_spec(spec, "compare_checkpoint")
    shapes = _shapes(tensors, "compare_checkpoint")
    identification = identify(tensors)
    readings = [r for naming in _namings() if (r := _read(spec, naming, shapes, strict=False)) is not None]
    reading = max(readings, key=lambda r: r.mapped, default=None)  # the first of equals: FORMATS order
    if reading is None:  # no format names this network: nothing to lay the tensors on
        plan = _plan(spec)
        return CheckpointComparison(spec, None, (), 0, len(shapes), _elements(shapes), plan.num_classes,
                                    plan.in_channels, (), (), identification, None)  # fmt: skip
    rows, findings = _diff(reading, shapes) if reading.mapped * 2 > len(shapes) else ((), ())
    fit = None
    if rows and not findings:
        table = _table_entry(spec)
        fit = _fit(tensors, spec, table, reading) if table is not None else None
    formats = _alike(reading.plan, reading.naming)
    return CheckpointComparison(spec, formats[0], formats, reading.mapped,
                                len(shapes), _elements(shapes), reading.num_classes, reading.in_channels, rows,
                                findings, identification, fit)  # fmt: skip


def _table_entry(spec: ResNetSpec) -> ResNetSpec | None:
    """The registry's entry of that name, as its table defines it (None: a spec from a file of the user's)."""
    if spec.name not in list_specs():
        return None
    table = load_spec(spec.name)
    return table if table.table_file == spec.table_file else None


def _diff(
    reading: _Reading, shapes: Mapping[str, tuple[int, ...]]
) -> tuple[tuple[CheckpointRow, ...], tuple[CheckpointFinding, ...]]:
    """The rows of Table 1 and the findings, in the table's order (a row's whole blocks first)."""
    plan, layout = reading.plan, reading.layout
    layers = {layer.name: layer for layer in plan.layers}
    unexpected = [key for key in shapes if key not in layout]
    places = _place_unexpected(unexpected, layout, layers)
    by_row: dict[str, _RowSlots] = {}
    claimed: set[str] = set()  # unexpected keys of blocks beyond the table's: one finding per block
    for row in plan.rows:
        slots = {key: slot for key, slot in layout.items() if layers[slot.module].row == row}
        blocks = [block for block in plan.blocks if block.row == row]
        extra = _extra_blocks(blocks, slots, unexpected, claimed)
        by_row[row] = _RowSlots(slots, blocks, extra)
    rows, findings = [], []
    for row in (*plan.rows, "model"):
        part = by_row.get(row, _RowSlots({}, [], {}))
        loose = [key for key in unexpected if places[key][0] == row and key not in claimed]
        if row == "model" and not loose:
            continue
        row_findings, present = _row_findings(row, part, loose, places, shapes, layers)
        findings.extend(row_findings)
        found_blocks = present + len(part.extra)
        rows.append(CheckpointRow(row, _row_text(row, plan, part.slots, layers, None, len(part.blocks)),
                                  _row_text(row, plan, part.slots, layers, (shapes, loose), found_blocks),
                                  len(part.blocks), found_blocks, not row_findings))  # fmt: skip
    return tuple(rows), tuple(findings)


@dataclass(frozen=True)
class _RowSlots:
    slots: dict[str, FormatKey]  # the layout's keys in the row
    blocks: list[PlannedBlock]
    extra: dict[str, list[str]]  # the file's blocks beyond the table's: its name ("layer3.6", "res4g") -> keys


def _row_findings(
    row: str, part: _RowSlots, loose: Sequence[str], places: Mapping[str, tuple[str, str | None]],
    shapes: Mapping[str, tuple[int, ...]], layers: Mapping[str, Layer],
) -> tuple[list[CheckpointFinding], int]:  # fmt: skip
    """A row's findings (a block wholly missing or beyond the table's as one each), and its planned blocks that
    have tensors in the file."""
    findings: list[CheckpointFinding] = []
    present = 0
    missing: set[str] = set()
    for block in part.blocks:
        keys = [key for key in _block_keys(block, part.slots).values() if not part.slots[key].optional]
        if any(key in shapes for key in keys):
            present += 1
        elif keys:
            missing.add(block.spec.name)
            findings.append(CheckpointFinding(row, block.spec.name, keys[0], "missing block", len(keys), None))
    for key, slot in part.slots.items():
        name = layers[slot.module].block
        if name in missing:
            continue
        if key not in shapes:
            if not slot.optional:
                findings.append(CheckpointFinding(row, name, key, "missing", slot.shape, None))
        elif shapes[key] != slot.shape:
            findings.append(CheckpointFinding(row, name, key, "shape", slot.shape, shapes[key]))
    for name, keys in part.extra.items():
        findings.append(CheckpointFinding(row, None, name, "unexpected block", None, len(keys)))
    for key in loose:
        findings.append(CheckpointFinding(row, places[key][1], key, "unexpected", None, shapes[key]))
    return findings, present


def _common_prefix(a: str, b: str) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def _place_unexpected(
    keys: Sequence[str], layout: Mapping[str, FormatKey], layers: Mapping[str, Layer]
) -> dict[str, tuple[str, str | None]]:
    """Each key the entry has no place for -> (row, block) of the expected key whose name it shares most of
    (``layer3.6.conv1.weight`` -> conv4_x; ``conv1.0.weight`` -> conv1); ("model", None) when none shares a few
    characters."""
    ordered = sorted(layout)
    out: dict[str, tuple[str, str | None]] = {}
    for key in keys:
        i = bisect.bisect_left(ordered, key)
        neighbours = [ordered[j] for j in (i - 1, i) if 0 <= j < len(ordered)]
        best = max(neighbours, key=lambda other: _common_prefix(key, other), default=None)
        if best is None or _common_prefix(key, best) < _MIN_PREFIX:
            out[key] = ("model", None)
        else:
            layer = layers[layout[best].module]
            out[key] = (layer.row, layer.block)
    return out


def _block_keys(block: PlannedBlock, slots: Mapping[str, FormatKey]) -> dict[tuple[str, int], str]:
    """A block's keys by their role in it: (its module relative to the block's, the key's place in the module)."""
    names = {layer.name for layer in block.layers}
    out: dict[tuple[str, int], str] = {}
    seen: Counter[str] = Counter()
    for key, slot in slots.items():
        if slot.module in names:
            role = slot.module[len(block.module) :]
            out[(role, seen[role])] = key
            seen[role] += 1
    return out


def _templates(blocks: Sequence[PlannedBlock], slots: Mapping[str, FormatKey]) -> list[tuple[str, str]]:
    """How the format names a block's tensors: (prefix, suffix) around the block's own part of each key, from the
    row's first two blocks (``layer3.`` 0/1 ``.conv1.weight``; ``res4`` a/b1 ``_branch2a.weight``)."""
    if len(blocks) < 2:
        return []
    first, second = _block_keys(blocks[0], slots), _block_keys(blocks[1], slots)
    templates = []
    for role in sorted(first.keys() & second.keys()):
        a, b = first[role], second[role]
        prefix = _common_prefix(a, b)
        suffix = min(_common_prefix(a[::-1], b[::-1]), min(len(a), len(b)) - prefix)
        templates.append((a[:prefix], a[len(a) - suffix :]))
    return templates


def _token(key: str, templates: Sequence[tuple[str, str]]) -> str | None:
    """The block's own part of a key (``6`` of ``layer3.6.conv1.weight``), by the first template it fits."""
    for prefix, suffix in templates:
        if key.startswith(prefix) and key.endswith(suffix) and len(key) > len(prefix) + len(suffix):
            token = key[len(prefix) : len(key) - len(suffix)]
            if token.isalnum():
                return token
    return None


def _extra_blocks(blocks: Sequence[PlannedBlock], slots: Mapping[str, FormatKey], unexpected: Sequence[str],
                  claimed: set[str]) -> dict[str, list[str]]:  # fmt: skip
    """The file's blocks of this row beyond the table's: unexpected keys named as the row's blocks are, with a
    block part none of the table's blocks has.  Their keys are added to ``claimed``."""
    templates = _templates(blocks, slots)
    if not templates:
        return {}
    planned = {token for block in blocks for key in _block_keys(block, slots).values()
               if (token := _token(key, templates)) is not None}  # fmt: skip
    extra: dict[str, list[str]] = {}
    names: dict[str, str] = {}
    for key in unexpected:
        token = _token(key, templates)
        if token is not None and token not in planned and key not in claimed:
            prefix = next(p for p, s in templates if key.startswith(p) and key.endswith(s))
            name = names.setdefault(token, prefix + token)
            extra.setdefault(name, []).append(key)
            claimed.add(key)
    return extra


def _cell(shape: tuple[int, ...]) -> str:
    """A conv weight (out, in, kh, kw) as Table 1 prints the conv: "3x3, 64"."""
    return f"{shape[2]}x{shape[3]}, {shape[0]}"


def _row_text(
    row: str, plan: Plan, slots: Mapping[str, FormatKey], layers: Mapping[str, Any],
    found: tuple[Mapping[str, tuple[int, ...]], Sequence[str]] | None, blocks: int,
) -> str:  # fmt: skip
    """A row in Table 1's terms, from the shapes: the table's (``found`` None) or the file's (its shapes and the
    row's unexpected keys)."""

    def shape(key: str) -> tuple[int, ...] | None:
        if found is None:
            return slots[key].shape
        return found[0].get(key)

    def conv(key: str) -> bool:
        slot = slots[key]
        return layers[slot.module].kind == "conv" and slot.ours is not None and slot.ours.endswith(".weight")

    if row == "model":
        return "none" if found is None else f"{len(found[1])} tensors no row has"
    if row == "fc":
        weight = next((key for key, slot in slots.items() if layers[slot.module].kind == "fc" and slot.ours and
                       slot.ours.endswith(".weight")), None)  # fmt: skip
        value = shape(weight) if weight is not None else None
        return f"{value[0]}-d fc" if value else "no fc"
    if row == "conv1":
        keys = [key for key in slots if conv(key)]
        cells = [_cell(s) for key in keys if (s := shape(key)) is not None and len(s) == 4]
        if found is not None:
            cells += [_cell(found[0][key]) for key in found[1] if len(found[0][key]) == 4]
        return "; ".join(cells) or "none"
    for block in (b for b in plan.blocks if b.row == row):
        names = {layer.name for layer in block.role("branch") if layer.kind == "conv"}
        keys = [key for key in slots if slots[key].module in names and conv(key)]
        shapes_ = [shape(key) for key in keys]
        if found is not None and all(s is None for s in shapes_):
            continue  # the file has no tensor of this block: the next one shows the row
        cells = [_cell(s) if s is not None and len(s) == 4 else "?" for s in shapes_]
        return f"[{'; '.join(cells)}] x{blocks}"
    return "none"


# ---- the report ------------------------------------------------------------------------------------------------


def _literal(value: object) -> str:
    """A Python literal of a str (double-quoted: JSON's escapes are Python's) or an int."""
    return json.dumps(value)


def _shape_text(shape: tuple[int, ...] | int | None) -> str:
    if shape is None:
        return "none"
    if isinstance(shape, int):
        return f"{shape} tensors"
    return "(" + ", ".join(str(n) for n in shape) + ")"


def _finding_text(f: CheckpointFinding, named: bool = True) -> str:
    """A finding in words; ``named``: a missing block's name too (a table's "where" column shows it already)."""
    if f.problem == "missing block":
        return f"block{f' {f.block}' if named else ''} expected ({f.expected} tensors: {f.key} ...), not in the file"
    if f.problem == "unexpected block":
        return f"block {f.key} found ({f.found} tensors), beyond the table's"
    if f.problem == "missing":
        return f"{f.key} {_shape_text(f.expected)} expected, not in the file"
    if f.problem == "shape":
        return f"{f.key}: shape {_shape_text(f.expected)} expected, {_shape_text(f.found)} found"
    return f"{f.key} {_shape_text(f.found)} found, the table has no such tensor"


def _knob_text(knob: str, options: Sequence[str]) -> str:
    described = table_variants().options(knob)
    words = []
    for option in options:
        value = described.get(option)
        if knob == "variant" and value is not None and value.description:
            words.append(f"{option} ({value.description})")
        elif knob == "stem_pool" and value is not None:
            words.append(f"{option} (padding {value.padding}, rounding {'up' if value.ceil_mode else 'down'})")
        else:
            words.append(option)
    return f"{_KNOB_WORDS.get(knob, knob)} ({knob}): {' or '.join(words)}"


def _cannot_tell_lines(identification: Identification) -> list[str]:
    options: dict[str, list[str]] = {}
    for fit in identification.fits:
        for knob, option in fit.knobs:
            if option not in options.setdefault(knob, []):
                options[knob].append(option)
    lines = []
    for item in identification.cannot_tell:
        lines.append(UNKNOWABLE[item] if item in UNKNOWABLE else _knob_text(item, options.get(item, ())))
    return lines


def _naming_text(formats: Sequence[str]) -> str:
    if not formats:
        return "no known format's names"
    naming = FORMATS[formats[0]].naming
    return f"{_NAMING_WORDS.get(naming, naming)} (format{'s' if len(formats) > 1 else ''} {', '.join(formats)})"


def _io_text(num_classes: int, in_channels: int) -> str:
    head = f"{num_classes} classes" if num_classes else "no classifier (a backbone: num_classes=0)"
    return f"{head}, {in_channels} input channels"


def _header(file: CheckpointFile, tensors: int, elements: int) -> str:
    kind = "a .safetensors file" if file.kind == "safetensors" else "a torch.save state_dict"
    return f"{file.path}: {kind}, {tensors} tensors ({elements:,} numbers)"


def _fit_lines(fits: Sequence[Fit], path: str) -> list[str]:
    lines = []
    for fit in fits:
        how = ", ".join(f"{k}={v}" for k, v in fit.deviations) or "as its table defines it"
        lines.append(f"  {fit.label}: {how}")
        lines.append(f"    {fit.load_code(path)}")
    return lines


def _render_identification(result: Identification, file: CheckpointFile) -> str:
    lines = [_header(file, result.tensors, result.elements)]
    if not result.fits:
        lines += ["", "fits no table entry under any named deviation and weight format (every key used once, every "
                  "shape equal)", "compare it with an entry to see the first row that differs: resnet-spec compare "
                  "--arch NAME --impl FILE"]  # fmt: skip
        return "\n".join(lines) + "\n"
    first = result.fits[0]
    plan = _plan(load_spec(first.entry, **dict(first.deviations)), first.num_classes, first.in_channels)
    lines[0] += f"; {_naming_text(_alike(plan, FORMATS[first.format].naming))}; " + _io_text(
        first.num_classes, first.in_channels
    )
    entries = len(result.groups)
    lines += ["", f"fits {len(result.fits)} network(s) of {entries} table entr{'y' if entries == 1 else 'ies'}, "
              "which a checkpoint cannot tell apart:"]  # fmt: skip
    lines += _fit_lines(result.fits, file.path)
    lines += ["", "what a checkpoint cannot tell (it holds names and shapes only):"]
    lines += [f"  {line}" for line in _cannot_tell_lines(result)]
    return "\n".join(lines) + "\n"


def _render_comparison(result: CheckpointComparison, file: CheckpointFile) -> str:
    spec = result.spec
    lines = [f"{_header(file, result.tensors, result.elements)} vs {spec.label}: {spec.source}"]
    lines.append(f"keys: {_naming_text(result.formats)}, {result.mapped} of {result.tensors} named; "
                 + _io_text(result.num_classes, result.in_channels))  # fmt: skip
    if result.rows:
        lines += ["", "a checkpoint shows each conv's kernel and channels, not its stride; no pools", ""]
        lines += text_table(("row", "expected", "found", ""),
                        [(r.row, r.expected, r.found, "ok" if r.ok else "DIFF") for r in result.rows])  # fmt: skip
    if result.findings:
        lines += ["", f"{len(result.findings)} finding(s):"]
        lines += text_table(("where", "finding"), [(f.block or f.row, _finding_text(f, named=False))
                                               for f in result.findings[:_SHOWN_FINDINGS]])  # fmt: skip
        if len(result.findings) > _SHOWN_FINDINGS:
            lines.append(f"... and {len(result.findings) - _SHOWN_FINDINGS} more")
    lines += ["", f"verdict: {_verdict_text(result)}"]
    if result.fit is not None:
        lines.append(f"load: {result.fit.load_code(file.path)}")
    identification = result.identification
    if identification.fits:
        labels = ", ".join(fit.label for fit in identification.fits)
        lines.append(f"the file fits: {labels}")
    else:
        lines.append("the file fits no table entry")
    if result.verdict == Verdict.UNDECIDED and result.recognised:
        lines += ["what a checkpoint cannot tell (it holds names and shapes only):"]
        lines += [f"  {line}" for line in _cannot_tell_lines(identification)]
    return "\n".join(lines) + "\n"


def _verdict_text(result: CheckpointComparison) -> str:
    if result.first_difference is not None:
        return f"does NOT fit {result.spec.label}: {result.first_difference}"
    return f"undecided: {undecided_reason(result)}"


def undecided_reason(result: CheckpointComparison) -> str:
    """One line: why a checkpoint's comparison reached no verdict."""
    if result.format is None:
        return f"no weight format has names for {result.spec.label}"
    if not result.recognised:
        return (f"the file's keys are not a known format's names for {result.spec.label} (at most {result.mapped} of "
                f"{result.tensors} are: {_naming_text(result.formats)})")  # fmt: skip
    how = "" if result.fit is not None else " (no format's converter reads them: where its stride sits differs)"
    return (f"the tensors fit {result.spec.label} exactly{how}, but a checkpoint holds no strides, pools or "
            "activations: it cannot show conformance")  # fmt: skip


def render(result: Identification | CheckpointComparison, file: CheckpointFile) -> str:
    """The text report of :func:`identify` or :func:`compare_checkpoint` for ``file``."""
    if isinstance(result, Identification):
        return _render_identification(result, file)
    return _render_comparison(result, file)


def _fit_json(fit: Fit, path: str) -> dict[str, Any]:
    return {"entry": fit.entry, "label": fit.label, "deviations": dict(fit.deviations), "knobs": dict(fit.knobs),
            "format": fit.format, "formats": list(fit.formats), "num_classes": fit.num_classes,
            "in_channels": fit.in_channels, "load": fit.load_code(path)}  # fmt: skip


def _cannot_tell_json(identification: Identification) -> list[dict[str, Any]]:
    return [{"property": item, "text": text} for item, text in
            zip(identification.cannot_tell, _cannot_tell_lines(identification), strict=True)]  # fmt: skip


def _artifact_json(file: CheckpointFile, tensors: int, elements: int) -> dict[str, Any]:
    return {"kind": file.kind, "path": file.path, "tensors": tensors, "elements": elements}


def to_json(result: Identification | CheckpointComparison, file: CheckpointFile) -> dict[str, Any]:
    """The report as JSON-ready data (:data:`JSON_SCHEMA`): identify's, or a comparison's with its verdict."""
    if isinstance(result, Identification):
        return {
            "artifact": _artifact_json(file, result.tensors, result.elements),
            "exit_status": result.exit_status,
            "fits": [_fit_json(fit, file.path) for fit in result.fits],
            "groups": [{"entry": g.entry, "labels": [fit.label for fit in g.fits],
                        "knobs": {knob: list(options) for knob, options in g.knobs}} for g in result.groups],
            "cannot_tell": _cannot_tell_json(result),
        }  # fmt: skip
    spec = result.spec
    return {
        "artifact": _artifact_json(file, result.tensors, result.elements),
        "spec": {"name": spec.name, "label": spec.label, "family": spec.family, "variant": spec.variant.name,
                 "shortcut": spec.shortcut.name, "source": spec.source},
        "format": result.format,
        "formats": list(result.formats),
        "mapped": result.mapped,
        "num_classes": result.num_classes,
        "in_channels": result.in_channels,
        "verdict": result.verdict.value,
        "exit_status": result.exit_status,
        "first_difference": result.first_difference,
        "reason": _verdict_text(result),
        "rows": [{"row": r.row, "expected": r.expected, "found": r.found, "expected_blocks": r.expected_blocks,
                  "found_blocks": r.found_blocks, "ok": r.ok} for r in result.rows],
        "findings": [{"row": f.row, "block": f.block, "key": f.key, "problem": f.problem,
                      "expected": list(f.expected) if isinstance(f.expected, tuple) else f.expected,
                      "found": list(f.found) if isinstance(f.found, tuple) else f.found} for f in result.findings],
        "fits": [_fit_json(fit, file.path) for fit in result.identification.fits],
        "load": result.fit.load_code(file.path) if result.fit is not None else None,
        "cannot_tell": _cannot_tell_json(result.identification),
        "notes": [],
    }  # fmt: skip


_STR = {"type": "string"}
_INT = {"type": "integer"}
_SHAPE = {"type": "array", "items": _INT}


_FIT = json_object(
    {
        "entry": _STR,
        "label": _STR,
        "deviations": {"type": "object"},  # knob -> option
        "knobs": {"type": "object"},
        "format": _STR,
        "formats": {"type": "array", "items": _STR},
        "num_classes": _INT,
        "in_channels": _INT,
        "load": _STR,
    }
)
_ARTIFACT = json_object({"kind": {"enum": list(CHECKPOINT_KINDS)}, "path": _STR, "tensors": _INT, "elements": _INT})
_CANNOT_TELL = {"type": "array", "items": json_object({"property": _STR, "text": _STR})}

JSON_SCHEMA: Mapping[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "resnet-spec identify FILE / compare --impl CHECKPOINT --format json",
    "oneOf": [
        json_object({
            "artifact": _ARTIFACT,
            "exit_status": {"enum": [0, 1]},
            "fits": {"type": "array", "items": _FIT},
            "groups": {"type": "array", "items": json_object({"entry": _STR, "labels": {"type": "array", "items": _STR},
                                                          "knobs": {"type": "object"}})},  # knob -> options
            "cannot_tell": _CANNOT_TELL,
        }),
        json_object({
            "artifact": _ARTIFACT,
            "spec": json_object({key: _STR for key in ("name", "label", "family", "variant", "shortcut", "source")}),
            "format": {"type": ["string", "null"]},
            "formats": {"type": "array", "items": _STR},
            "mapped": _INT,
            "num_classes": _INT,
            "in_channels": _INT,
            "verdict": {"enum": [Verdict.NOT_CONFORMANT.value, Verdict.UNDECIDED.value]},
            "exit_status": {"enum": [1, 2]},
            "first_difference": {"type": ["string", "null"]},
            "reason": _STR,
            "rows": {"type": "array", "items": json_object({"row": _STR, "expected": _STR, "found": _STR,
                                                        "expected_blocks": _INT, "found_blocks": _INT,
                                                        "ok": {"type": "boolean"}})},
            "findings": {"type": "array", "items": json_object({
                "row": _STR, "block": {"type": ["string", "null"]}, "key": _STR,
                "problem": {"enum": list(FINDING_PROBLEMS)},
                "expected": {"oneOf": [_SHAPE, _INT, {"type": "null"}]},
                "found": {"oneOf": [_SHAPE, _INT, {"type": "null"}]}})},
            "fits": {"type": "array", "items": _FIT},
            "load": {"type": ["string", "null"]},
            "cannot_tell": _CANNOT_TELL,
            "notes": {"type": "array", "items": _STR},
        }),
    ],
}  # fmt: skip
