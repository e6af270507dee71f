"""Rendering a :class:`~resnet_spec.diff.Comparison`: text or Markdown laid out like Table 1, or JSON.

JSON shape (``to_json``)::

    {"conformant": bool, "subject": str, "spec": {"name", "label", "family", "variant", "shortcut", "source"},
     "input_size": [H, W],
     "rows": [{"row", "expected_output", "found_output", "expected", "found", "ok"}],
     "mismatches": [{"row", "block", "property", "expected", "found"}],
     "totals": {"params": {"expected", "found"}, "macs": {"expected", "found"}, "paper_flops": float | null},
     "best_matches": [label, ...], "notes": [str, ...],
     "verdict": "conformant" | "equivalent" | "not conformant" | "undecided",
     "equivalence": null | {"status": "equal" | "differs" | "unmapped" | "skipped", "reason", "row", "block",
                            "input_shape": [N, C, H, W], "dtype": "float64", "tolerance": float,
                            "rows": [{"row", "eval", "train", "expected_shape", "found_shape", "ok", "local"}],
                            "mapped": int, "notes": [str, ...]}}

``eval`` and ``train`` are each row's maximum relative difference (null where the shapes differ); ``local`` is the
row alone: the reference's row run on the model's own input to the row (the larger of the two modes).

``row`` is conv1, conv2_x ... or fc (or "model" for totals); ``block`` names the block (conv3_1) where the
difference is inside one, else null.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from .diff import Comparison
from .equivalence import Equivalence
from .spec import ResNetSpec

__all__ = ["JSON_KEYS", "render", "to_json"]

JSON_KEYS = ("conformant", "subject", "spec", "input_size", "rows", "mismatches", "totals", "best_matches", "notes",
             "verdict", "equivalence")  # fmt: skip


def _paper_flops(spec: ResNetSpec) -> float | None:
    value = spec.paper.get("flops")
    return float(value) if isinstance(value, (int, float)) else None


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
            {"row": m.row, "block": m.block, "property": m.property, "expected": m.expected, "found": m.found}
            for m in comparison.mismatches
        ],
        "totals": {
            "params": {"expected": comparison.expected_params, "found": comparison.found.params},
            "macs": {"expected": comparison.expected_macs, "found": comparison.found.macs},
            "paper_flops": _paper_flops(spec) if comparison.input_size == (spec.input_size, spec.input_size) else None,
        },
        "best_matches": [s.label for s in best],
        "notes": list(comparison.notes),
        "verdict": comparison.verdict,
        "equivalence": _equivalence_json(comparison.equivalence),
    }


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
                "eval": r.eval,
                "train": r.train,
                "expected_shape": list(r.expected_shape),
                "found_shape": list(r.found_shape),
                "ok": r.ok,
                "local": r.local,
            }
            for r in eq.rows
        ],
        "mapped": eq.mapped,
        "notes": list(eq.notes),
    }


def _table(headers: Sequence[str], lines: Sequence[Sequence[str]], markdown: bool) -> list[str]:
    if markdown:
        out = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
        out += ["| " + " | ".join(cell.replace("|", "\\|") for cell in line) + " |" for line in lines]
        return out
    widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(headers)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return [fmt.format(*headers).rstrip(), fmt.format(*("-" * w for w in widths)).rstrip()] + [
        fmt.format(*line).rstrip() for line in lines
    ]


def render(comparison: Comparison, subject: str, best: Sequence[ResNetSpec] = (), markdown: bool = False) -> str:
    """Text (or Markdown) laid out like Table 1: expected and found per row, a mark per row, then the mismatches."""
    spec = comparison.spec
    h, w = comparison.input_size
    title = f"{subject} vs {spec.label}: {spec.source}"
    out = [f"## {title}" if markdown else title, ""]
    out.append(f"input 1x{spec.in_channels}x{h}x{w}; '/2' marks a stride-2 conv; MACs are conv+fc multiply-adds")
    out.append("")
    lines = [
        [r.row, r.expected_output, r.found_output, r.expected, r.found, "ok" if r.ok else "DIFF"]
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
    out += _table(["row", "output", "found output", "expected", "found", ""], lines, markdown)
    out.append("")
    kind = comparison.verdict
    if comparison.mismatches:
        heading = "structural finding(s) that do not change the function" if kind == "equivalent" else "mismatch(es)"
        out.append(f"{len(comparison.mismatches)} {heading}:")
        mismatch_lines = [[m.where, m.property, m.expected, m.found] for m in comparison.mismatches]
        out += _table(["where", "property", "expected", "found"], mismatch_lines, markdown)
        out.append("")
    eq = comparison.equivalence
    if eq is not None:
        out += _equivalence_lines(eq, markdown)
    if kind == "not conformant":
        verdict = f"does NOT conform to {spec.label}"
        if eq is not None and eq.status in ("differs", "unmapped"):
            verdict += f"; by computation: {eq.reason}"
        if best:
            verdict += "; conforms to " + ", ".join(_describe(s) for s in best)
        elif comparison.mismatches:
            verdict += "; conforms to no known table entry"
    elif kind == "equivalent":
        verdict = f"conforms to {spec.label} functionally: equivalent, written differently"
    elif kind == "undecided":
        verdict = f"undecided against {spec.label}: the structure conforms only with the notes below, and "
        verdict += f"the functional check did not decide ({eq.reason if eq is not None else 'not run'})"
    elif eq is not None and eq.status == "equal":
        verdict = f"conforms to {spec.label}, structurally and functionally"
    else:
        verdict = f"conforms to {spec.label}"
    out.append(("**verdict**: " if markdown else "verdict: ") + verdict)
    if eq is not None:
        out += [f"note: {note}" for note in eq.notes]
        if eq.status == "skipped":
            out.append(f"note: functional check skipped: {eq.reason}")
    out += [f"note: {note}" for note in comparison.notes]
    return "\n".join(out) + "\n"


def _equivalence_lines(eq: Equivalence, markdown: bool) -> list[str]:
    """The functional check: each row's maximum relative difference in eval and train mode."""
    if eq.status == "skipped" or not eq.rows:
        return []
    n, c, h, w = eq.input_shape
    out = [
        f"functional check (the model's weights in the reference, input {n}x{c}x{h}x{w}, float64): maximum relative "
        f"difference per row, end to end and the row alone on the model's own input; tolerance {eq.tolerance:.1e}"
    ]

    def figure(value: float | None) -> str:
        return "shape differs" if value is None else f"{value:.1e}"

    lines = [[r.row, figure(r.eval), figure(r.train), figure(r.local), "ok" if r.ok else "DIFF"] for r in eq.rows]
    out += _table(["row", "eval", "train", "row alone", ""], lines, markdown)
    out.append("")
    return out


def _describe(spec: ResNetSpec) -> str:
    stride = {"first": "stride on the block's first conv", "first_spatial": "stride on the 3x3"}[spec.variant.stride_on]
    return f"{spec.label} [{stride}]"


def dumps(data: dict[str, Any]) -> str:
    """JSON text of :func:`to_json`'s data."""
    return json.dumps(data, indent=2) + "\n"
