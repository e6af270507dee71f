"""Auditing a model zoo: every constructor of a source, the table entry it is, its verdict, the rows that differ.

A SOURCE names the constructors (:func:`parse_source`)::

    timm:*resnet*              timm's models whose name matches the glob (several: a*,b*; !c* leaves out)
    timm/resnet,resnetv2       every model of timm's resnet.py and resnetv2.py (a pattern may follow: ...:*50*)
    torchvision:resnet*        torchvision's classification models (torchvision.models.list_models)
    pytorchcv:*resnet*         pytorchcv's models (pytorchcv.model_provider)
    path/to/zoo.py             the public functions and classes the file defines (its __all__, where it has one)

Each model is built with random weights in a process of its own, forked from one that has imported the source's
library once (:func:`resnet_spec.verify._subjects.preloaded`): the library's import is paid once per worker, and no
model's code runs where the verdict is computed.  Its best entry is the one whose structure it has exactly, under any
named deviation (:func:`~resnet_spec.verify.best_matches`), in the first family where one fits; it is then
compared with that entry structurally and functionally (:func:`~resnet_spec.verify.compare_subject`).  Where
no entry fits, the entry with the fewest rows that differ is named, and the structure decides (with the numbers
too where the reading is incomplete).  :func:`audit_model` returns one :class:`AuditRow`; the pytest plugin runs it
per model (``resnet-spec audit``, docs/zoo.md).
"""

from __future__ import annotations

import ast
import difflib
import fnmatch
import json
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..sandbox import ContainedError, PreloadedServers, run_contained
from ..spec import ResNetSpec, families, list_specs, load_spec
from ._compare import Comparison, best_matches, compare_subject, options_like, structural_comparison, trace_sizes
from ._read_trace import FoundNetwork, read_trace
from ._report import finding_line, table, verdict_text
from ._subjects import RemoteSubject, preloaded
from ._targets import SubjectError
from ._trace import Trace, TraceError

__all__ = [
    "AUDIT_FORMATS", "AuditRow", "ZooModel", "audit_model", "parse_source", "read_results", "render_audit",
    "servers_for", "zoo_models",
]  # fmt: skip

AUDIT_FORMATS = ("text", "markdown", "json", "html")
_LIBRARIES = {  # library -> (the module that lists its models, the call that builds one; {name} is the model's)
    "timm": ("timm", "timm:create_model({name!r})"),
    "torchvision": ("torchvision", "torchvision.models:get_model({name!r})"),
    "pytorchcv": ("pytorchcv.model_provider", "pytorchcv.model_provider:get_model({name!r})"),
}
_FORMS = (
    "expected LIBRARY[:PATTERN] (timm, torchvision, pytorchcv; PATTERN a glob such as '*resnet*'), "
    "timm/MODULE[,MODULE...][:PATTERN] (timm's model files, e.g. timm/resnet,resnetv2) or a Python file FILE.py"
)


class SourceError(ValueError):
    """A SOURCE that names no constructors: malformed, a library that is not installed, a file that is not there."""


@dataclass(frozen=True)
class ZooModel:
    """One constructor of a source: its name (the test id) and the TARGET that builds it."""

    name: str
    target: str


@dataclass(frozen=True)
class Source:
    """A parsed SOURCE: the library (or file), the modules to preload, the glob, timm's model files."""

    text: str
    library: str  # timm, torchvision, pytorchcv, or "file"
    pattern: str  # globs on the model names, comma-separated: a name matching any is audited
    modules: tuple[str, ...] = ()  # timm's model files (resnet, resnetv2); empty: all
    path: str = ""  # the file, for a file source

    @property
    def preload(self) -> tuple[str, ...]:
        """The modules every model of the source imports (imported once by the preloaded process)."""
        if self.library == "file":
            return _file_imports(Path(self.path))
        return (_LIBRARIES[self.library][0],)


def parse_source(text: str) -> Source:
    """Parse a SOURCE (see the module docstring).  Raises :class:`SourceError` naming what was expected."""
    if not isinstance(text, str) or not text.strip():
        raise SourceError(f"source {text!r}: {_FORMS}")
    head, _, pattern = text.partition(":")
    if head.endswith(".py"):
        path = Path(head)
        if not path.is_file():
            raise SourceError(f"source {text!r}: no such file {head!r}")
        return Source(text, "file", pattern or "*", path=str(path))
    library, slash, modules = head.partition("/")
    if library not in _LIBRARIES:
        raise SourceError(f"source {text!r}: unknown library {library!r}; {_FORMS}")
    if slash and library != "timm":
        raise SourceError(f"source {text!r}: model files (LIBRARY/MODULE) are timm's only; {_FORMS}")
    names = tuple(m.strip() for m in modules.split(",") if m.strip()) if modules else ()
    if slash and not names:
        raise SourceError(f"source {text!r}: no module after '/'; {_FORMS}")
    return Source(text, library, pattern or "*", names)


def _file_imports(path: Path) -> tuple[str, ...]:
    """The top-level modules a file imports at its top level (read, never run): what its models need."""
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    except (OSError, SyntaxError, ValueError):
        return ()
    names: list[str] = []
    for node in tree.body:
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.append(node.module)
    return tuple(dict.fromkeys(names))


def _required(function: ast.FunctionDef | ast.AsyncFunctionDef, bound: bool) -> int:
    """How many arguments a call must give ``function`` (``bound``: a method, its ``self`` given)."""
    arguments = function.args
    positional = len(arguments.posonlyargs) + len(arguments.args) - int(bound)
    keyword_only = sum(default is None for default in arguments.kw_defaults)
    return max(positional - len(arguments.defaults), 0) + keyword_only


def _builds_bare(node: ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) -> bool:
    """Whether a top-level function or class can be called with no arguments, as far as its syntax tells: a class
    without its own ``__init__`` is tried."""
    if not isinstance(node, ast.ClassDef):
        return _required(node, bound=False) == 0
    init = next((n for n in node.body if isinstance(n, ast.FunctionDef) and n.name == "__init__"), None)
    return init is None or _required(init, bound=True) == 0


def _file_models(source: Source) -> list[ZooModel]:
    """The public functions and classes a file defines at its top level that can be called with no arguments (or
    its literal ``__all__``, all of it), read from its syntax: nothing of the file runs here."""
    path = Path(source.path)
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    except (OSError, SyntaxError, ValueError) as e:
        raise SourceError(f"source {source.text!r}: cannot read {source.path!r} as Python: {e}") from None
    kinds = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
    defined = [n.name for n in tree.body if isinstance(n, kinds) and not n.name.startswith("_") and _builds_bare(n)]
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets):
            try:
                listed = ast.literal_eval(node.value)
            except ValueError:
                continue
            if isinstance(listed, (list, tuple)) and all(isinstance(n, str) for n in listed):
                defined = list(listed)
    return [ZooModel(name, f"{source.path}:{name}") for name in defined if _matches(name, source.pattern)]


def _matches(name: str, pattern: str) -> bool:
    """Whether ``name`` matches one of the comma-separated globs and none of those written ``!GLOB``."""
    globs = [glob.strip() for glob in pattern.split(",") if glob.strip()]
    wanted = [g for g in globs if not g.startswith("!")] or ["*"]
    return any(fnmatch.fnmatchcase(name, g) for g in wanted) and not any(
        fnmatch.fnmatchcase(name, g[1:]) for g in globs if g.startswith("!")
    )


def _library_names(library: str, pattern: str, modules: tuple[str, ...]) -> list[str]:
    """In a contained child: the library's model names matching ``pattern``, in the library's order."""
    if library == "timm":
        import timm

        names = timm.list_models(module=list(modules)) if modules else timm.list_models()
    elif library == "torchvision":
        import torchvision

        names = torchvision.models.list_models(module=torchvision.models)
    else:
        from pytorchcv.model_provider import _models  # pytorchcv lists its models in this dict only

        names = list(_models)
    return [str(n) for n in names if _matches(str(n), pattern)]


def zoo_models(source: str | Source, *, timeout: float | None = 120.0) -> list[ZooModel]:
    """The constructors ``source`` names, in its order.  A library is imported in a contained child (its code never
    runs here); a file is read, not run.  Raises :class:`SourceError` (nothing matches, a library not installed)."""
    parsed = source if isinstance(source, Source) else parse_source(source)
    if parsed.library == "file":
        models = _file_models(parsed)
    else:
        try:
            names = run_contained(_library_names, parsed.library, parsed.pattern, parsed.modules, timeout=timeout).value
        except ContainedError as e:
            raise SourceError(f"source {parsed.text!r}: cannot list {parsed.library}'s models: {e.reason}") from None
        template = _LIBRARIES[parsed.library][1]
        models = [ZooModel(name, template.format(name=name)) for name in names]
    if not models:
        raise SourceError(f"source {parsed.text!r}: no model matches")
    return models


def servers_for(source: str | Source) -> PreloadedServers:
    """The preloaded servers the models of ``source`` run in (see the module docstring)."""
    parsed = source if isinstance(source, Source) else parse_source(source)
    return preloaded(parsed.preload)


@dataclass(frozen=True)
class AuditRow:
    """One model's line of the audit: what it is, against which entry, the verdict, the rows that differ."""

    model: str
    target: str
    entry: str | None  # the entry's label (with its named deviations); None where the model could not be read
    # "exact": its structure is the entry's; "backbone": the entry's without its fc (the verdict is as a backbone's);
    # "closest": no entry fits, the nearest is named; "": none
    match: str
    verdict: str  # conformant, equivalent, not conformant, undecided; "error" where the audit failed
    rows: tuple[str, ...]  # the rows that differ, in the table's order
    summary: str  # the verdict in one sentence, or the error
    seconds: float

    @property
    def failed(self) -> bool:
        """The model could not be audited (it does not build, trace or run; a time-out)."""
        return self.verdict == "error"

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["rows"] = list(self.rows)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> AuditRow:
        return cls(**{**data, "rows": tuple(data["rows"])})


def _family_size(family: str) -> int:
    return load_spec(list_specs(family)[0]).input_size


def _rows_that_differ(comparison: Comparison) -> tuple[str, ...]:
    order = [row.row for row in comparison.rows]
    found = {m.row for m in comparison.mismatches}
    return tuple([row for row in order if row in found] + sorted(found - set(order)))


_SHORTLIST = 3  # entries compared in full for the closest: those whose blocks look most like the model's, and the
# likeliest at each level of _likeness besides


def _found_shape(found: FoundNetwork) -> tuple[tuple[object, ...], ...]:
    """The model's blocks in a few facts each (channels, convs and their kernels, groups, its gate's convs: 2 for
    SE, 1 for ECA, pre-activation, an addition), its stem convs' kernels and widths first: what a glance at the
    table would compare."""
    stem = tuple((c.kernel[0], c.out_channels) for c in found.stem_convs)
    return (stem, *(
        (b.out_channels, tuple(c.kernel[0] for c in b.convs), max((c.groups for c in b.convs), default=1) > 1,
         len(b.se), bool(b.preactivation), b.shortcut is not None)
        for b in found.blocks
    ))  # fmt: skip


def _spec_shape(spec: ResNetSpec) -> tuple[tuple[object, ...], ...]:
    """The same facts of an entry (see _found_shape)."""
    stem = tuple((c.kernel, c.out_channels) for c in spec.stem.convs)
    return (stem, *(
        (b.out_channels, tuple(c.kernel for c in b.convs), max(c.groups for c in b.convs) > 1,
         0 if not b.gated else 1 if b.eca_kernel is not None else 2, b.order == "pre", b.shortcut != "none")
        for b in spec.blocks
    ))  # fmt: skip


def _likeness(found: tuple[tuple[object, ...], ...], spec: tuple[tuple[object, ...], ...]) -> tuple[float, ...]:
    """How alike two shapes look, at five levels and block by block: their kinds of block in order, each run of
    equal blocks once (a stage, whatever its repeats: the rows that differ count stages), as they are and with the
    facts a named network adds to a plain one left out in turn (its gate, its pre-activation, its addition: an SE
    net with no SE entry is like the same net without SE), then its groups too (channels and kernels only); last,
    the blocks one by one."""

    def ratio(a: Sequence[object], b: Sequence[object]) -> float:
        return difflib.SequenceMatcher(None, a, b, autojunk=False).ratio()

    def runs(shape: Sequence[tuple[object, ...]]) -> list[tuple[object, ...]]:
        return [item for i, item in enumerate(shape) if i == 0 or shape[i - 1] != item]

    def without(shape: tuple[tuple[object, ...], ...], left_out: tuple[int, ...]) -> list[tuple[object, ...]]:
        return [shape[0], *(tuple(f for i, f in enumerate(block) if i not in left_out) for block in shape[1:])]

    # the fields of _found_shape's blocks left out in turn: none, the gate, also the pre-activation, the addition,
    # the groups
    levels = ((), (3,), (3, 4), (3, 4, 5), (2, 3, 4, 5))
    return (*(ratio(runs(without(found, out)), runs(without(spec, out))) for out in levels), ratio(found, spec))


def _closest(readings: Sequence[tuple[str, tuple[int, int], FoundNetwork]]) -> Comparison:
    """The entry with the fewest rows, then findings, that differ: the structural diff of the few entries whose
    blocks look most like the model's (all levels together, the first counted twice; and the likeliest at each
    level: the diff of every entry would cost seconds), each as its table defines it or under the named deviations'
    options that give the model's strides and shortcuts (a v1.5 model's closest is a v1 table's entry at v1.5, not
    its stride placement in three rows)."""
    candidates = []
    for family, size, found in readings:
        shape = _found_shape(found)
        for name in list_specs(family):
            spec = load_spec(name)
            *levels, blocks = _likeness(shape, _spec_shape(spec))
            candidates.append((levels[0] + sum(levels), levels, blocks, name, spec, size, found))
    overall = sorted(candidates, key=lambda c: (-c[0], -c[2], c[3]))
    shortlist = overall[:_SHORTLIST]
    for level in range(len(overall[0][1]) if overall else 0):
        best = min(overall, key=lambda c: (-c[1][level], -c[0], -c[2], c[3]))
        if all(best[3] != c[3] for c in shortlist):
            shortlist.append(best)
    comparisons = [
        structural_comparison(found, option, size)
        for *_, spec, size, found in shortlist
        for option in options_like(found, spec.name)
    ]
    return min(comparisons, key=lambda c: (len(_rows_that_differ(c)), len(c.mismatches)))


def _audit(subject: RemoteSubject) -> tuple[Comparison, str]:
    """The model read once, at the input of the first table family it runs at (the largest first: ImageNet's); the
    first family with an entry it fits exactly; else, for a model without a classifier, the first with an entry it
    fits without its fc (a backbone, compared as ``compare --headless`` does); else the closest entry of any
    family."""
    ordered = sorted(families(), key=_family_size, reverse=True)
    reading: tuple[Trace, FoundNetwork, tuple[int, int]] | None = None
    failures: list[str] = []
    for family in ordered:
        size = (_family_size(family),) * 2
        reference = load_spec(list_specs(family)[0])
        try:
            trace = subject.trace((2, reference.in_channels, *size), trace_sizes(reference, size))
        except TraceError as e:
            failures.append(f"{family} ({size[0]}x{size[1]}): {e}")
            continue
        reading = (trace, read_trace(trace), size)
        break
    if reading is None:
        first = f"; at {failures[0]}" if failures else ""
        raise TraceError(f"the model does not run at the input size of any table family{first}")
    trace, found, size = reading
    for family in ordered:
        exact = best_matches(found, family, size, limit=1)
        if exact:
            return compare_subject(subject, exact[0], size, trace=trace), "exact"
    if not found.head.fc:  # no classifier: a backbone (num_classes=0, features_only) is an entry without its fc
        for family in ordered:
            exact = best_matches(found, family, size, headless=True, limit=1)
            if exact:
                return compare_subject(subject, exact[0], size, headless=True, trace=trace), "backbone"
    comparison = _closest([(family, size, found) for family in ordered])
    if not comparison.mismatches:  # the structure fits as far as it was read: the numbers decide
        return compare_subject(
            subject, comparison.spec, size, trace=trace
        ), "exact" if comparison.complete else "closest"
    if not comparison.complete:  # the structure cannot decide: the numbers may
        comparison = compare_subject(subject, comparison.spec, size, trace=trace)
    return comparison, "closest"


def audit_model(model: ZooModel, servers: PreloadedServers | None = None, *, timeout: float | None = 120.0) -> AuditRow:
    """Build ``model`` (in a contained process: ``servers``' fork, or one of its own), find its best entry and its
    verdict.  Never raises for what the model does: a model that cannot be built, traced or run within ``timeout``
    seconds is an :class:`AuditRow` with verdict ``"error"`` saying why in one line."""
    start = time.perf_counter()
    try:
        with RemoteSubject(model.target, servers=servers, timeout=timeout) as subject:
            comparison, match = _audit(subject)
    except (SubjectError, TraceError, ContainedError) as e:
        summary = " ".join(str(e).split())
        return AuditRow(model.name, model.target, None, "", "error", (), summary, time.perf_counter() - start)
    summary = _closest_text(comparison) if match == "closest" else verdict_text(comparison)
    if match == "backbone":
        summary += " (as a backbone: no fc)"
    return AuditRow(model.name, model.target, comparison.spec.label, match, comparison.verdict.value,
                    _rows_that_differ(comparison), summary, time.perf_counter() - start)  # fmt: skip


def _closest_text(comparison: Comparison) -> str:
    first = next((m for m in comparison.mismatches if m.kind == "structure"), None)
    where = f": {finding_line(first)}" if first is not None else ""
    return f"no table entry fits; closest {comparison.spec.label} ({comparison.verdict.value}){where}"


def read_results(path: str | Path) -> list[AuditRow]:
    """The rows a results file holds (one JSON object per line, as each model finished); a line cut short by an
    audit that was killed is skipped."""
    rows = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        try:
            rows.append(AuditRow.from_json(json.loads(line)))
        except (ValueError, TypeError, KeyError):
            continue
    return rows


def render_audit(rows: Iterable[AuditRow], format: str = "text", *, source: str = "") -> str:
    """The audit as one table: text, markdown, json or html."""
    rows = list(rows)
    if format == "json":
        return json.dumps({"source": source, "models": [r.to_json() for r in rows], "summary": _summary(rows)},
                          indent=2) + "\n"  # fmt: skip
    headers = ["model", "entry", "verdict", "rows that differ", "time"]
    lines = [[r.model, (r.entry or "-") + (f" ({r.match})" if r.match in ("closest", "backbone") else ""), r.verdict,
              ", ".join(r.rows) or "-", f"{r.seconds:.1f} s"] for r in rows]  # fmt: skip
    if format == "html":
        return _html(headers, lines, rows, source)
    if format not in ("text", "markdown"):
        raise ValueError(f"render_audit: expected format one of {', '.join(AUDIT_FORMATS)}, got {format!r}")
    counts = _summary(rows)
    tail = ", ".join(f"{n} {verdict}" for verdict, n in counts.items() if verdict != "models")
    out = table(headers, lines, markdown=format == "markdown")
    return "\n".join([*out, "", f"{counts['models']} models: {tail}"]) + "\n"


def _summary(rows: Sequence[AuditRow]) -> dict[str, int]:
    counts = {"models": len(rows)}
    for verdict in ("conformant", "equivalent", "not conformant", "undecided", "error"):
        counts[verdict] = sum(r.verdict == verdict for r in rows)
    return counts


def _html(headers: Sequence[str], lines: Sequence[Sequence[str]], rows: Sequence[AuditRow], source: str) -> str:
    from html import escape

    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join(
        f"<tr class=\"{escape(r.verdict.replace(' ', '-'))}\" title=\"{escape(r.summary)}\">"
        + "".join(f"<td>{escape(cell)}</td>" for cell in line) + "</tr>\n"
        for r, line in zip(rows, lines, strict=True)
    )  # fmt: skip
    title = escape(f"resnet-spec audit {source}".strip())
    return (
        f'<!doctype html>\n<html><head><meta charset="utf-8"><title>{title}</title><style>'
        "body{font-family:sans-serif}td,th{padding:2px 8px;text-align:left}.conformant,.equivalent{color:#060}"
        ".not-conformant{color:#a00}.undecided,.error{color:#a60}</style></head><body>\n"
        f"<h1>{title}</h1>\n<table>\n<tr>{head}</tr>\n{body}</table>\n</body></html>\n"
    )
