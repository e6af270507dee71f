"""Comparing a model with a table entry: trace, read, align, diff, the numbers, the verdict.

:func:`compare_model` is the whole ladder for a model object; :func:`best_matches` says which table entries (under
which named deviations) a reading conforms to structurally.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, replace

from torch import nn

from ..sandbox import DEFAULT_MEMORY, DEFAULT_TIMEOUT
from ..spec import ResNetSpec, SpecError, as_spec, families, knob_combinations, list_specs, load_spec
from ._alignment import Alignment, align
from ._artifacts import Artifact
from ._functional import Equivalence, check_equivalence, fixed_filters
from ._read_trace import FoundNetwork, read_trace
from ._structure import Mismatch, RowView, diff
from ._subjects import LocalSubject, RemoteSubject, Subject
from ._trace import Trace, TraceError
from ._verdict import Verdict, decide

__all__ = [
    "Comparison", "best_matches", "compare_model", "compare_subject", "input_size_of", "structural_comparison",
    "subject_of", "trace_sizes",
]  # fmt: skip


@dataclass(frozen=True)
class Comparison:
    """The result of comparing a model with a spec: findings, the Table 1 lines, the numbers, the verdict."""

    spec: ResNetSpec
    input_size: tuple[int, int]
    found: FoundNetwork
    mismatches: tuple[Mismatch, ...]  # structural, parameter and computation findings (Mismatch.kind)
    rows: tuple[RowView, ...]
    expected_params: int
    expected_macs: int
    notes: tuple[str, ...] = field(default=())  # what the structure cannot decide (an operator not interpreted)
    equivalence: Equivalence | None = None  # the numerical check; None when only the structure was compared
    info: tuple[str, ...] = field(default=())  # how the model was read (the CPU fallback, which output)
    complete: bool = True  # the reader understood every operator from the stem to the logits
    alignment: Alignment | None = None
    artifact: Artifact | None = None  # a model file (ONNX, torch.export, TorchScript): what it is

    @property
    def inference_form(self) -> bool:
        """Compared with the table's inference form: the batch norms found folded into the convs before them."""
        return self.alignment is not None and self.alignment.inference

    @property
    def verdict(self) -> Verdict:
        """The policy's conclusion (:func:`resnet_spec.verify.decide`)."""
        return decide(self.mismatches, self.complete, self.notes, self.equivalence)

    @property
    def conformant(self) -> bool:
        """A complete verdict "conforms": conformant, or equivalent (written differently)."""
        return self.verdict.conforms

    @property
    def exit_status(self) -> int:
        """0 conforms, 1 does not, 2 undecided."""
        return self.verdict.exit_status


def _pair(n: int) -> tuple[int, int]:
    return (n, n)


def structural_comparison(
    found: FoundNetwork, spec: ResNetSpec, input_size: tuple[int, int] | None = None, *, headless: bool = False,
    in_channels: int | None = None, inference: bool = False,
) -> Comparison:  # fmt: skip
    """The structure alone: ``found`` aligned with ``spec`` and diffed (no numbers).  ``inference``: a graph without a
    train mode, whose batch norms may be folded into its convs (compared with the table's inference form)."""
    alignment = align(found, spec, input_size, headless=headless, in_channels=in_channels, inference=inference)
    structure = diff(alignment)
    return Comparison(spec, alignment.input_size, alignment.found, structure.mismatches, structure.rows,
                      structure.expected_params, structure.expected_macs, structure.notes, None, found.notes,
                      structure.complete, alignment)  # fmt: skip


def compare_model(
    model: nn.Module | str,
    spec: ResNetSpec | str,
    input_size: int | tuple[int, int] | None = None,
    batch: int = 2,
    functional: bool = True,
    *,
    headless: bool = False,
    in_channels: int | None = None,
    timeout: float | None = DEFAULT_TIMEOUT,
    memory: int | str | None = DEFAULT_MEMORY,
) -> Comparison:
    """Trace ``model`` at ``input_size`` (the table's when None), diff it against ``spec``, and check its function.

    ``model`` is an ``nn.Module`` (traced and run in this process: its code has run here already), a
    ``MODULE:EXPRESSION`` target such as ``"torchvision.models:resnet50"`` (imported, built and run in a contained
    child process that answers in data only: this process never runs its code; see docs/threat-model.md), or the
    path of a model file: an ONNX graph, a ``torch.export`` program or a TorchScript archive (loaded in that child;
    nothing of its author's Python runs; docs/artifacts.md).
    ``input_size`` is one int (square) or (height, width).

    The model is traced on the meta device (no memory, no time), its lazy modules first shaped by one forward pass
    in eval mode (an ``nn.Module`` given here is changed by it, as by its first use).  One that cannot run on the
    meta device (a data-dependent check, a scripted module) is run on the CPU instead, at the smallest input every
    row of the table still has an output for (then at the table's own), and the comparison's notes say so.  The
    forward pass runs in training mode, on a batch of ``batch`` (two: a batch norm in training mode needs more than
    one value per channel).  ``headless=True`` expects a backbone (the stem and the stages, no pool-and-fc head);
    ``in_channels`` replaces the table's input channels (a model for 1-channel images).

    ``functional`` adds the numerical check (:func:`~resnet_spec.verify.check_equivalence`), which
    decides where the structure cannot.  ``timeout`` (seconds) and ``memory`` (bytes, ``"half"`` of the machine's,
    or None) bound a target's process.

    Raises TypeError for a ``model`` that is neither, :class:`~resnet_spec.verify.TraceError` with one line saying
    what the model expects when it cannot be traced (its rank, its input channels, an input size it takes), and
    for a target :class:`~resnet_spec.verify.SubjectError` (it cannot be imported or built) or
    :class:`~resnet_spec.sandbox.ContainedError` (its code exits, hangs, or runs out of memory instead).
    """
    spec = as_spec(spec, "compare_model")
    size = input_size_of(input_size, spec, "compare_model")
    if not isinstance(batch, int) or isinstance(batch, bool) or batch < 1:
        raise ValueError(f"compare_model: expected batch a positive integer, got {batch!r}")
    subject = subject_of(model, "compare_model", timeout=timeout, memory=memory)
    with subject:  # a target's process ends here
        return compare_subject(subject, spec, size, batch, functional, headless=headless, in_channels=in_channels)


def subject_of(model: object, caller: str, *, timeout: float | None = DEFAULT_TIMEOUT,
               memory: int | str | None = DEFAULT_MEMORY) -> Subject:  # fmt: skip
    """The subject a ``model`` argument names: an nn.Module in this process, a target string in a child process, a
    Subject as it is.  Raises TypeError naming the argument for anything else."""
    if isinstance(model, Subject):
        return model
    if isinstance(model, nn.Module):
        return LocalSubject(model)
    if isinstance(model, str):
        from ._targets import SubjectError, check_target

        try:
            check_target(model, checkpoints=False)  # before any process starts
        except SubjectError as e:  # its words name the target: here the argument is model
            reason = str(e).removeprefix(f"target {model!r}: ")
            raise ValueError(f"{caller}: model {model!r}: {reason}") from None
        return RemoteSubject(model, timeout=timeout, memory=memory)
    raise TypeError(
        f"{caller}: expected model an nn.Module, a 'MODULE:EXPRESSION' string such as "
        f"'torchvision.models:resnet50' or a model file's path, got {type(model).__name__}"
    )


def input_size_of(value: object, spec: ResNetSpec, caller: str) -> tuple[int, int]:
    """An ``input_size`` argument as (height, width): None (the table's), one int, or a pair.  Raises TypeError."""
    if value is None:
        return _pair(spec.input_size)
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return _pair(value)
    if (isinstance(value, (tuple, list)) and len(value) == 2
            and all(isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in value)):  # fmt: skip
        return (value[0], value[1])
    raise TypeError(f"{caller}: expected input_size a positive int (square) or a (height, width) pair, got {value!r}")


def compare_subject(
    subject: Subject, spec: ResNetSpec, size: tuple[int, int], batch: int = 2, functional: bool = True, *,
    headless: bool = False, in_channels: int | None = None, trace: Trace | None = None,
) -> Comparison:  # fmt: skip
    """:func:`compare_model` for a :class:`~resnet_spec.verify.Subject` (arguments already checked).
    ``trace``: the subject's trace at ``size`` made already (not made again)."""
    channels = spec.in_channels if in_channels is None else in_channels
    artifact = subject.artifact
    if artifact is not None:  # a file fixed to one input runs there
        size = artifact.input_size or size
        batch = artifact.batch or batch
    try:
        if trace is None:
            trace = subject.trace((batch, channels, *size), trace_sizes(spec, size))
    except TraceError as e:
        raise TraceError(_input_hint(subject, spec, size, channels, batch) or str(e)) from e
    traced = (trace.input_shape[2], trace.input_shape[3])
    inference = artifact is not None and artifact.inference
    found = read_trace(trace)
    comparison = structural_comparison(found, spec, traced, headless=headless, in_channels=in_channels,
                                       inference=inference)  # fmt: skip
    comparison = replace(comparison, artifact=artifact)
    if subject.note:
        comparison = replace(comparison, info=(*comparison.info, subject.note))
    if not functional:
        return comparison
    # a graph (no train mode) may hold the table's inference form: batch norms folded, weights standardised once
    inference = inference or comparison.inference_form
    fixed = fixed_filters(found.trace) if found.trace is not None else ()
    equivalence = check_equivalence(subject, spec, headless=headless, in_channels=in_channels, inference=inference,
                                    fixed=fixed)  # fmt: skip
    return _with_equivalence(comparison, equivalence)


def _with_equivalence(comparison: Comparison, eq: Equivalence) -> Comparison:
    return replace(comparison, equivalence=eq, mismatches=(*comparison.mismatches, *eq.findings))


def trace_sizes(spec: ResNetSpec, size: tuple[int, int]) -> list[tuple[int, int]]:
    """Input sizes for a CPU trace: the table's total downsampling (its last row then has a 1x1 map), then ``size``.

    Smaller inputs would shrink rows to 1x1 early, where a stem pool reads like a global one.
    """
    last = spec.row_output_sizes(*size)[spec.stages[-1].name]
    factor = (size[0] // last[0], size[1] // last[1]) if min(last) >= 1 else size
    small = (max(1, factor[0]), max(1, factor[1]))
    return [small, size] if small != size and small < size else [size]


def _input_hint(subject: Subject, spec: ResNetSpec, size: tuple[int, int], channels: int, batch: int) -> str | None:
    """When the model fails at ``size`` but runs at the input size of another table family, one line saying so."""
    others: dict[int, str] = {}
    for family in families():
        names = list_specs(family)
        if names:
            other = load_spec(names[0]).input_size
            if (other, other) != size:
                others.setdefault(other, family)
    for other, family in sorted(others.items()):
        try:
            subject.trace((batch, channels, other, other))
        except (TraceError, ValueError):
            continue
        return (
            f"the model cannot take the table's {size[0]}x{size[1]} input, but runs on {other}x{other}: compare it "
            f"at that size (input_size={other}) or against a table of that input size (family={family!r})"
        )
    return None


def _may_conform(found: FoundNetwork, spec: ResNetSpec) -> bool:
    """False where a fact no named deviation changes already differs (blocks, their convs' widths and groups, SE, a
    selective-kernel unit, block order, stem convs): the entry cannot conform under any option, and the diff would
    say so at greater cost."""
    if found.stem_convs and len(found.stem_convs) != len(spec.stem.convs):
        return False
    expected = list(spec.blocks)
    if not found.blocks:  # no additions (a plain network): its main-path convs are the blocks' convs in order
        widths = [(c.out_channels, c.groups) for b in expected for c in b.convs]
        return not found.chain or [(u.out_channels, u.groups) for u in found.chain] == widths
    if [len(b.convs) for b in found.blocks] != [len(b.convs) for b in expected]:
        return False
    # widths and groups: no named deviation changes them
    if [[(c.out_channels, c.groups) for c in b.convs] for b in found.blocks] != [
        [(c.out_channels, c.groups) for c in b.convs] for b in expected
    ]:
        return False
    pre = spec.order == "pre"
    # the first block's pre-activation may be read as the stem conv's BN-ReLU (the alignment places it either way)
    return all(
        bool(f.se) == e.gated and (f.selective_kernel is None) == (e.selective_kernel is None)
        and (index == 0 or bool(f.preactivation) == pre)
        for index, (f, e) in enumerate(zip(found.blocks, expected, strict=True))
    )  # fmt: skip


def _may_match(found: FoundNetwork, spec: ResNetSpec) -> bool:
    """False where a fact the named deviations do change differs for this option of them: a branch conv's stride
    (the stride variant), a block's shortcut kind (the shortcut option).  The diff would report either."""
    expected_blocks = tuple(spec.blocks)
    if not found.blocks or len(found.blocks) != len(expected_blocks):
        return True  # a plain network, or blocks the diff will pair otherwise: the diff decides
    for f, e in zip(found.blocks, expected_blocks, strict=True):
        pairs = zip(f.convs, e.convs, strict=False)
        if len(f.convs) == len(e.convs) and any(c.stride != (x.stride, x.stride) for c, x in pairs):
            return False
        expected = "projection" if e.shortcut in ("projection", "avg_projection") else e.shortcut
        if ("none" if f.shortcut is None else f.shortcut.kind) != expected:
            return False
    return True


def _entries_by_network(family: str) -> dict[object, ResNetSpec]:
    """Each network of ``family`` that an entry is as its table defines it, to that entry (the first, if several)."""
    entries: dict[object, ResNetSpec] = {}
    for name in list_specs(family):
        entries.setdefault(load_spec(name).network_key, load_spec(name))
    return entries


def options_like(found: FoundNetwork, name: str) -> list[ResNetSpec]:
    """Each distinct network of entry ``name``, as its table defines it or under the named deviations' options,
    whose branch strides and shortcuts are ``found``'s (the table's own network where none is), the table's first,
    each named as the entry its table defines so where there is one (``plain18`` with shortcut B is ``resnet18``):
    the networks to diff a model against when it fits no entry exactly."""

    pools = any(b.shortcut is not None and b.shortcut.pool is not None for b in found.blocks)

    def like(spec: ResNetSpec) -> bool:  # and a pool before the projections where the model has one (ResNet-D)
        pooled = any(b.shortcut == "avg_projection" or b.shortcut_alias is not None for b in spec.blocks)
        return _may_match(found, spec) and pools == pooled

    default = load_spec(name)
    entries = _entries_by_network(default.family)
    specs = [default] if like(default) else []
    seen = {default.network_key}
    for combination in knob_combinations(default):
        try:
            spec = load_spec(name, **combination)
        except SpecError:  # options that form no network (a pre-activation table with no shortcuts)
            continue
        key = spec.network_key
        if key not in seen and like(spec):
            specs.append(entries.get(key, spec))
        seen.add(key)
    return specs or [default]


def best_matches(
    found: FoundNetwork, family: str, input_size: tuple[int, int], *, headless: bool = False, inference: bool = False,
    limit: int | None = None,
) -> list[ResNetSpec]:  # fmt: skip
    """Every known table entry of ``family``, under any option of every named deviation (``variants.toml``'s
    knobs: stride variant, shortcut option, stem pool), whose structure ``found`` has exactly.

    ``inference`` reads a graph whose batch norms may be folded into its convs (the inference form); ``limit``
    stops at that many matches.  Entries as
    their table defines them come first, so a plain network is named ``plain34`` rather than
    ``resnet34`` with ``shortcut="none"``; each distinct network is listed once.
    """
    names = [name for name in list_specs(family) if _may_conform(found, load_spec(name))]

    def candidates() -> Iterator[ResNetSpec]:
        yield from (load_spec(name) for name in names)
        for name in names:
            for combination in knob_combinations(load_spec(name)):
                try:
                    yield load_spec(name, **combination)
                except SpecError:  # options that form no network (a pre-activation table with no shortcuts)
                    continue

    matches: list[ResNetSpec] = []
    seen: set[object] = set()
    for spec in candidates():
        key = spec.network_key
        if key in seen:
            continue
        seen.add(key)
        if not _may_match(found, spec):
            continue
        comparison = structural_comparison(found, spec, input_size, headless=headless, inference=inference)
        if comparison.complete and not comparison.mismatches:
            matches.append(spec)
            if limit is not None and len(matches) >= limit:
                break
    return matches
