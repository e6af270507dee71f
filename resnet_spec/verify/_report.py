"""Rendering a :class:`~resnet_spec.verify.Comparison`: text or Markdown laid out like Table 1, or JSON.  This is the
only place that writes the verdict in words; everything it renders is data.

JSON (``to_json``) is described by :data:`JSON_SCHEMA` (a JSON Schema, draft 2020-12): every value typed, numbers
as numbers and kernels, strides and sizes as lists (``[3, 3]``), never their string forms.  ``row`` is conv1,
conv2_x ... or fc (or "model" for totals); ``block`` names the block (conv3_1) where the difference is inside one,
else null; ``module`` is the model's own module there (``layer2.0``, "" where none is known); ``kind`` is what the
finding is about (structure, parameters, computation); ``blocks`` lists every place of a cause that recurs through a
row (a bias on every conv of conv3_x is one mismatch).  ``verdict`` is the policy's conclusion
(:mod:`resnet_spec.verify._verdict`); ``equivalence`` is the numerical check (``eval`` and ``train`` are each row's
maximum relative difference, null where the shapes differ; ``local`` is the row alone: the reference's row run on
the model's own input to the row, the larger of the two modes, null where not computed; ``mode`` and ``direction``
say where the logits first differed).  A run that gives no verdict prints ``{"error": ..., "phase": ...}`` instead
(the second branch of the schema).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

from ..spec import ResNetSpec
from ._compare import Comparison
from ._functional import Equivalence
from ._structure import Mismatch, RowView, Value
from ._verdict import Verdict

__all__ = [
    "JSON_KEYS", "JSON_SCHEMA", "dumps", "finding_line", "json_object", "render", "table", "to_json",
    "undecided_reason", "verdict_text",
]  # fmt: skip

JSON_KEYS = ("conformant", "subject", "spec", "input_size", "rows", "mismatches", "totals", "best_matches", "notes",
             "verdict", "equivalence", "artifact")  # fmt: skip


_STR = {"type": "string"}
_INT = {"type": "integer"}
_VALUE = {"$ref": "#/$defs/value"}
_NULLABLE_STR = {"type": ["string", "null"]}


def json_object(properties: dict[str, Any]) -> dict[str, Any]:
    """A JSON Schema object with exactly ``properties``, every one required."""
    return {"type": "object", "required": list(properties), "additionalProperties": False, "properties": properties}


_REPORT = json_object(
    {
        "conformant": {"type": "boolean"},
        "subject": _STR,
        "spec": json_object({key: _STR for key in ("name", "label", "family", "variant", "shortcut", "source")}),
        "input_size": {"type": "array", "items": _INT, "minItems": 2, "maxItems": 2},
        "rows": {
            "type": "array",
            "items": json_object(
                {
                    "row": _STR,
                    "expected_output": _STR,
                    "found_output": _STR,
                    "expected": _STR,
                    "found": _STR,
                    "ok": {"type": "boolean"},
                }
            ),
        },
        "mismatches": {
            "type": "array",
            "items": json_object(
                {
                    "row": _STR,
                    "block": _NULLABLE_STR,
                    "property": _STR,
                    "expected": _VALUE,
                    "found": _VALUE,
                    "blocks": {"type": "array", "items": _STR},
                    "module": _STR,
                    "kind": {"enum": ["structure", "parameters", "computation"]},
                }
            ),
        },
        "totals": json_object(
            {
                "params": json_object({"expected": _INT, "found": _INT}),
                "macs": json_object({"expected": _INT, "found": _INT}),
                "paper_flops": {"type": ["number", "null"]},
            }
        ),
        "best_matches": {"type": "array", "items": _STR},
        "notes": {"type": "array", "items": _STR},
        "verdict": {"enum": ["conformant", "equivalent", "not conformant", "undecided"]},
        "equivalence": {
            "oneOf": [
                {"type": "null"},
                json_object(
                    {
                        "status": {"enum": ["equal", "differs", "unmapped", "skipped"]},
                        "reason": _STR,
                        "row": _NULLABLE_STR,
                        "block": _NULLABLE_STR,
                        "input_shape": {"type": "array", "items": _INT, "minItems": 4, "maxItems": 4},
                        "dtype": _STR,
                        "tolerance": {"type": "number"},
                        "rows": {
                            "type": "array",
                            "items": json_object(
                                {
                                    "row": _STR,
                                    "eval": {"type": ["number", "null"]},
                                    "train": {"type": ["number", "null"]},
                                    "expected_shape": {"type": "array", "items": _INT},
                                    "found_shape": {"type": "array", "items": _INT},
                                    "ok": {"type": "boolean"},
                                    "local": {"type": ["number", "null"]},
                                    "train_read": {"type": "boolean"},
                                }
                            ),
                        },
                        "mapped": _INT,
                        "notes": {"type": "array", "items": _STR},
                        "mode": {"enum": ["eval", "train", None]},
                        "direction": {"enum": ["model", "reference", None]},
                        "difference": {"type": ["number", "null"]},
                        "permuted": {"type": "array", "items": _STR},
                    }
                ),
            ]
        },
        "artifact": {
            "oneOf": [
                {"type": "null"},
                json_object(
                    {
                        "kind": {"enum": ["onnx", "torch.export", "torchscript"]},
                        "train_mode": {"type": "boolean"},
                        "input_size": {"type": ["array", "null"], "items": _INT},
                        "batch": {"type": ["integer", "null"]},
                        "inference_form": _NULLABLE_STR,
                        "folded_batch_norms": _INT,
                    }
                ),
            ]
        },
    }
)
# The schema of every JSON document `compare --format json` prints for a model: a report, or an error (no verdict,
# exit 2).  A checkpoint's comparison is another document: resnet_spec.verify.JSON_SCHEMA.
JSON_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "resnet-spec compare --format json",
    "oneOf": [
        _REPORT,
        {
            "type": "object",
            "required": ["error"],
            "properties": {"error": _STR, "phase": _NULLABLE_STR},
        },
    ],
    "$defs": {
        "value": {
            "oneOf": [
                {"type": ["string", "number", "boolean", "null"]},
                {"type": "array", "items": {"$ref": "#/$defs/value"}},
            ]
        }
    },
}


def _paper_flops(spec: ResNetSpec) -> float | None:
    value = spec.paper.get("flops")
    return float(value) if isinstance(value, (int, float)) else None


def _json_value(value: Value) -> Any:
    """A mismatch value as JSON: tuples become lists, everything else is already a JSON type."""
    return [_json_value(v) for v in value] if isinstance(value, tuple) else value


def value_text(value: Value) -> str:
    """A mismatch value as text: integers with thousands separators, tuples as '(3, 3)', None as 'none'."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, tuple):
        return "(" + ", ".join(value_text(v) for v in value) + ")"
    return str(value)


def joined_places(places: Sequence[str]) -> str:
    shown = ", ".join(places[:3])
    return f" [{shown}{', ...' if len(places) > 3 else ''}: {len(places)} places]"


def to_json(comparison: Comparison, subject: str, best: Sequence[ResNetSpec] = ()) -> dict[str, Any]:
    """The comparison as JSON-ready data (see the module docstring for the shape)."""
    spec = comparison.spec
    return {
        "conformant": comparison.conformant,
        "subject": subject,
        "spec": {
            "name": spec.name,
            "label": spec.label,
            "family": spec.family,
            "variant": spec.variant.name,
            "shortcut": spec.shortcut.name,
            "source": spec.source,
        },
        "input_size": list(comparison.input_size),
        "rows": [
            {
                "row": r.row,
                "expected_output": r.expected_output,
                "found_output": r.found_output,
                "expected": r.expected,
                "found": r.found,
                "ok": r.ok,
            }
            for r in comparison.rows
        ],
        "mismatches": [
            {
                "row": m.row,
                "block": m.block,
                "property": m.property,
                "expected": _json_value(m.expected),
                "found": _json_value(m.found),
                "blocks": list(m.blocks),
                "module": m.module,
                "kind": m.kind,
            }
            for m in comparison.mismatches
        ],
        "totals": {
            "params": {"expected": comparison.expected_params, "found": comparison.found.params},
            "macs": {"expected": comparison.expected_macs, "found": comparison.found.macs},
            "paper_flops": _paper_flops(spec) if comparison.input_size == (spec.input_size, spec.input_size) else None,
        },
        "best_matches": [s.label for s in best],
        "notes": [*comparison.info, *comparison.notes],
        "verdict": comparison.verdict.value,
        "equivalence": _equivalence_json(comparison.equivalence),
        "artifact": _artifact_json(comparison),
    }


INFERENCE_FORM = "inference form: batch norms folded into the convs"


def _artifact_json(comparison: Comparison) -> dict[str, Any] | None:
    """What a model file is (None for code): its kind, its modes, the input it is fixed to, the inference form."""
    artifact = comparison.artifact
    if artifact is None:
        return None
    folded = comparison.alignment.folded if comparison.alignment is not None else {}
    return {
        "kind": artifact.kind,
        "train_mode": artifact.train,
        "input_size": list(artifact.input_size) if artifact.input_size is not None else None,
        "batch": artifact.batch,
        "inference_form": INFERENCE_FORM if folded else None,
        "folded_batch_norms": len(folded),
    }


def _number(value: float | None) -> float | None:
    """A figure as JSON allows it: an infinite or NaN difference (a model's NaN output) is null."""
    return value if value is None or math.isfinite(value) else None


def _equivalence_json(eq: Equivalence | None) -> dict[str, Any] | None:
    if eq is None:
        return None
    return {
        "status": eq.status,
        "reason": eq.reason,
        "row": eq.row,
        "block": eq.block,
        "input_shape": list(eq.input_shape),
        "dtype": "float64",
        "tolerance": eq.tolerance,
        "rows": [
            {
                "row": r.row,
                "eval": _number(r.eval),
                "train": _number(r.train),
                "expected_shape": list(r.expected_shape),
                "found_shape": list(r.found_shape),
                "ok": r.ok,
                "local": _number(r.local),
                "train_read": r.train_read,
            }
            for r in eq.rows
        ],
        "mapped": eq.mapped,
        "notes": list(eq.notes),
        "mode": eq.mode,
        "direction": eq.direction,
        "difference": _number(eq.difference),
        "permuted": list(eq.permuted),
    }


def table(headers: Sequence[str], lines: Sequence[Sequence[str]], markdown: bool = False) -> list[str]:
    """Rows under headers: columns padded to their widest cell (or a Markdown table)."""
    if markdown:
        out = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
        out += ["| " + " | ".join(cell.replace("|", "\\|") for cell in line) + " |" for line in lines]
        return out
    widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(headers)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return [fmt.format(*headers).rstrip(), fmt.format(*("-" * w for w in widths)).rstrip()] + [
        fmt.format(*line).rstrip() for line in lines
    ]


def found_cell(row: RowView, comparison: Comparison) -> str:
    """The row as found; where it differs in what the row's one-line summary does not show (a shortcut's pool or
    bias, a missing ReLU), the properties that differ are named in the cell itself."""
    if row.ok or row.found != row.expected:
        return row.found
    differing = dict.fromkeys(m.property for m in comparison.mismatches if m.row == row.row and m.kind == "structure")
    return f"{row.found}; differs: {', '.join(differing)}" if differing else row.found


def render(
    comparison: Comparison, subject: str, best: Sequence[ResNetSpec] | None = None, markdown: bool = False
) -> str:
    """Text laid out like Table 1: expected and found per row, a mark per row, the findings, the functional check,
    the verdict (``best``: as for :func:`verdict_text`).  ``markdown=True``: :func:`render_markdown`."""
    if markdown:
        return render_markdown(comparison, subject, best)
    spec = comparison.spec
    h, w = comparison.input_size
    title = f"{subject} vs {spec.label}: {spec.source}"
    out = [title, ""]
    out.append(f"input 1x{spec.in_channels}x{h}x{w}; '/2' marks a stride-2 conv; MACs are conv+fc multiply-adds")
    out.append("")
    lines = [
        [r.row, r.expected_output, r.found_output, r.expected, found_cell(r, comparison), "ok" if r.ok else "DIFF"]
        for r in comparison.rows
    ]
    params_ok = comparison.expected_params == comparison.found.params
    macs_ok = comparison.expected_macs == comparison.found.macs
    paper = _paper_flops(spec)
    paper_text = f" (paper: {paper / 1e9:g}e9)" if paper and (h, w) == (spec.input_size, spec.input_size) else ""
    lines.append(["params", "", "", f"{comparison.expected_params:,}", f"{comparison.found.params:,}",
                  "ok" if params_ok else "DIFF"])  # fmt: skip
    lines.append(["MACs", "", "", f"{comparison.expected_macs:,}{paper_text}", f"{comparison.found.macs:,}",
                  "ok" if macs_ok else "DIFF"])  # fmt: skip
    out += table(["row", "output", "found output", "expected", "found", ""], lines, False)
    out.append("")
    kind = comparison.verdict
    if comparison.mismatches:
        heading = "finding(s) that do not change the function" if kind == Verdict.EQUIVALENT else "finding(s)"
        out.append(f"{len(comparison.mismatches)} {heading}:")
        mismatch_lines = [
            [
                finding_place(m),
                m.property,
                value_text(m.expected),
                value_text(m.found),
            ]
            for m in comparison.mismatches
        ]
        out += table(["where", "property", "expected", "found"], mismatch_lines, False)
        out.append("")
    eq = comparison.equivalence
    if eq is not None:
        out += _equivalence_lines(eq, False)
    out.append("verdict: " + verdict_text(comparison, best))
    if eq is not None:
        out += [f"note: {note}" for note in eq.notes]
        if eq.status == "skipped":
            out.append(f"note: functional check skipped: {eq.reason}")
    out += [f"note: {note}" for note in (*comparison.info, *comparison.notes)]
    return "\n".join(out) + "\n"


_MARKS = {Verdict.CONFORMANT: "conformant", Verdict.EQUIVALENT: "equivalent (written differently)",
          Verdict.NOT_CONFORMANT: "NOT conformant", Verdict.UNDECIDED: "undecided"}  # fmt: skip


def render_markdown(comparison: Comparison, subject: str, best: Sequence[ResNetSpec] | None = None) -> str:
    """Markdown for a CI summary: the verdict first, then only what differs (the Table 1 rows, the findings with the
    model's module names, the functional check's rows), then the notes."""
    spec = comparison.spec
    h, w = comparison.input_size
    kind = comparison.verdict
    out = [f"### `{subject}` vs {spec.label}: {_MARKS[kind]}", "", f"**verdict**: {verdict_text(comparison, best)}", ""]
    differing = [r for r in comparison.rows if not r.ok]
    totals = [(name, f"{expected:,}", f"{found:,}") for name, expected, found in (
        ("params", comparison.expected_params, comparison.found.params),
        ("MACs", comparison.expected_macs, comparison.found.macs)) if expected != found]  # fmt: skip
    if differing or totals:
        out.append(f"Rows that differ from {spec.source} (input {h}x{w}):")
        out.append("")
        lines = [[r.row, r.expected, found_cell(r, comparison)] for r in differing]
        lines += [[name, expected, found] for name, expected, found in totals]
        out += table(["row", "expected", "found"], lines, True)
        out.append("")
    else:
        rows = len(comparison.rows)
        out += [f"All {rows} rows of {spec.source}, the parameters and the multiply-adds are the table's "
                f"(input {h}x{w}).", ""]  # fmt: skip
    if comparison.mismatches:
        heading = "Findings that do not change the function" if kind == Verdict.EQUIVALENT else "Findings"
        out += [f"{heading} ({len(comparison.mismatches)}):", ""]
        lines = [[finding_place(m), m.property, value_text(m.expected), value_text(m.found)]
                 for m in comparison.mismatches]  # fmt: skip
        out += table(["where (module)", "property", "expected", "found"], lines, True)
        out.append("")
    eq = comparison.equivalence
    if eq is not None and eq.rows:
        bad = [r for r in eq.rows if not r.ok]
        if bad:
            out += [f"Functional check, rows that differ (maximum relative difference; tolerance {eq.tolerance:.1e}):",
                    ""]  # fmt: skip
            lines = [[r.row, "-" if r.eval is None else f"{r.eval:.1e}", "-" if r.train is None else f"{r.train:.1e}",
                      "-" if r.local is None else f"{r.local:.1e}"] for r in bad]  # fmt: skip
            out += table(["row", "eval", "train", "row alone"], lines, True)
            out.append("")
        else:
            out += [f"Functional check: every row equal in eval and train mode (tolerance {eq.tolerance:.1e}).", ""]
    notes = [*(eq.notes if eq is not None else ()), *comparison.info, *comparison.notes]
    if eq is not None and eq.status == "skipped":
        notes.append(f"functional check skipped: {eq.reason}")
    out += [f"- note: {note}" for note in notes]
    return "\n".join(out).rstrip("\n") + "\n"


def finding_place(m: Mismatch) -> str:
    """Where a finding is, with the blocks it names: ``conv3_x: blocks 1, 2``."""
    return where_text(m) + (joined_places(m.blocks) if m.blocks else "")


def where_text(m: Mismatch) -> str:
    """The table's place and the user's module: "conv3_1 (layer2.0)"."""
    return f"{m.where} ({m.module})" if m.module else m.where


def finding_line(m: Mismatch) -> str:
    """One finding in one line: "conv3_x: conv3_2 (layer2.1.conv2) conv2.kernel: expected (3, 3), found (5, 5)"."""
    places = joined_places(m.blocks) if m.blocks else ""
    prefix = f"{m.row}: " if m.block else ""
    return (
        f"{prefix}{where_text(m)}{places} {m.property}: expected {value_text(m.expected)}, found {value_text(m.found)}"
    )


def verdict_text(comparison: Comparison, best: Sequence[ResNetSpec] | None = None) -> str:
    """The verdict as one sentence (after "verdict: "); ``best``: the entries the model conforms to, as
    :func:`~resnet_spec.verify.best_matches` found them (None: not searched, and the sentence says nothing of them)."""
    spec, eq, kind = comparison.spec, comparison.equivalence, comparison.verdict
    label = f"{spec.label}, {INFERENCE_FORM}" if comparison.inference_form else spec.label
    if kind == Verdict.CONFORMANT:
        if eq is None or eq.status != "equal":
            return f"conforms to {label}"
        text = f"conforms to {label}, structurally and functionally"
        if eq.permuted:
            text += (f" (up to a permutation of channels: the zero-padding shortcuts of {', '.join(eq.permuted)} "
                     "place the identity's channels elsewhere than first)")  # fmt: skip
        return text
    if kind == Verdict.EQUIVALENT:
        return f"conforms to {label} functionally: equivalent, written differently"
    if kind == Verdict.UNDECIDED:
        return f"undecided against {label}: {undecided_reason(comparison)}"
    parts = []
    structural = [m for m in comparison.mismatches if m.kind == "structure"]
    parameters = [m for m in comparison.mismatches if m.kind == "parameters"]
    computation = [m for m in comparison.mismatches if m.kind == "computation"]
    if structural:
        first = structural[0]
        more = f" and {len(structural) - 1} more" if len(structural) > 1 else ""
        parts.append(f"the structure differs ({where_text(first)} {first.property}{more})")
    if parameters and eq is not None and eq.status == "equal":
        parts.append(f"computes the table's function, but {_parameters(parameters)}")
    elif any(m.property != "params" for m in parameters):  # counts alone follow from the structure's findings
        parts.append(f"its parameters differ: {_parameters(parameters)}")
    if computation:
        parts.append(f"by computation: {_phrase(computation[0])}")
        if eq is not None and eq.direction == "reference":
            parts[-1] += " (with the table's weights in the model: a degree of freedom it does not have)"
    elif eq is not None and eq.status == "unmapped" and not structural:
        parts.append(f"the weights have no place in the table: {eq.reason}")
    verdict = f"does NOT conform to {label}" + "".join(f"; {part}" for part in parts)
    if best:
        verdict += "; conforms to " + ", ".join(_describe(s) for s in best)
    elif structural and best is not None:
        verdict += "; conforms to no known table entry"
    return verdict


def _phrase(m: Mismatch) -> str:
    """A computation finding in a few words: where, and what differs there."""
    if m.property.endswith(("output", "logits")):
        return f"{where_text(m)} {m.property.removesuffix('.output')}: {value_text(m.found)}"
    return f"{where_text(m)} {m.property}: expected {value_text(m.expected)}, found {value_text(m.found)}"


def undecided_reason(comparison: Comparison) -> str:
    """Why neither the structure nor the numbers decided, in one line."""
    eq = comparison.equivalence
    reasons = []
    if not comparison.complete:
        reasons.append("the structure has operators the reader does not interpret")
    elif comparison.mismatches:
        reasons.append("the structure differs")
    elif comparison.notes:
        reasons.append("the structure conforms only with the notes below")
    if eq is None:
        reasons.append("the functional check was not run")
    elif eq.reason:
        reasons.append(f"the functional check did not decide ({eq.reason})")
    return ", and ".join(reasons) or "no reason recorded"


def _parameters(findings: Sequence[Mismatch]) -> str:
    """What the parameter findings add up to: "with 16 redundant conv biases: +3,840 parameters (...)"."""
    counts: dict[tuple[str, str], int] = {}
    total: tuple[int, int] | None = None
    for m in findings:
        places = max(1, len(m.blocks))
        if m.property == "params":
            if m.row == "model" and isinstance(m.expected, int) and isinstance(m.found, int):
                total = (m.expected, m.found)
            continue
        if m.property == "unused parameter":
            key = ("unused parameter", "unused parameters")
        elif m.property.endswith("tied"):
            key = ("layer tied to another's tensors", "layers tied to another's tensors")
        elif m.property.endswith("bn.affine") and "fixed" in str(m.found):
            key = ("batch norm with a fixed scale and shift", "batch norms with a fixed scale and shift")
        elif m.property.endswith("bn.affine"):
            key = ("batch norm without scale and shift", "batch norms without scale and shift")
        elif m.property.endswith("bias") and m.found in ("bias before BN", True):
            key = ("redundant conv bias", "redundant conv biases")
        elif m.property.endswith("bias"):
            key = ("missing bias", "missing biases")
        else:
            key = (m.property, m.property)
        counts[key] = counts.get(key, 0) + places
    parts = [f"{n} {key[0] if n == 1 else key[1]}" for key, n in counts.items()]
    text = "with " + ", ".join(parts) if parts else "with other parameters"
    if total is not None:
        expected, found = total
        text += f": {found - expected:+,} parameters ({found:,}; the table's {expected:,})"
    return text


def _equivalence_lines(eq: Equivalence, markdown: bool) -> list[str]:
    """The functional check: each row's maximum relative difference in eval and train mode."""
    if eq.status == "skipped" or not eq.rows:
        return []
    n, c, h, w = eq.input_shape
    out = [
        f"functional check (the model's weights in the reference, input {n}x{c}x{h}x{w}, float64): maximum relative "
        f"difference per row, end to end and the row alone on the model's own input; tolerance {eq.tolerance:.1e}"
    ]

    def figure(value: float | None, missing: str = "shape differs") -> str:
        return missing if value is None else f"{value:.1e}"

    lines = [
        [
            r.row,
            figure(r.eval),
            figure(r.train) if r.train_read else "-",
            figure(r.local, "-"),
            "ok" if r.ok else "DIFF",
        ]
        for r in eq.rows
    ]
    out += table(["row", "eval", "train", "row alone", ""], lines, markdown)
    out.append("")
    return out


def _describe(spec: ResNetSpec) -> str:
    return f"{spec.label} [{spec.variant.description}]" if spec.variant.description else spec.label


def dumps(data: dict[str, Any]) -> str:
    """JSON text of :func:`to_json`'s data."""
    return json.dumps(data, indent=2) + "\n"
