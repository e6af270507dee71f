"""The comparison as one self-contained HTML page: the network drawn, the Table 1 view, the functional figures.

The page is rendered from a Jinja2 template (``report.html.j2``, beside this module); the network and the chart of
the functional check are matplotlib figures embedded as inline SVG.  Nothing is fetched when the page opens (no
network access, no CDN).  Every block of the drawing is an SVG group with the id ``block-NAME`` (``block-conv3_1``;
the stem ``block-conv1``, the head ``block-fc``) and the class of its status, so a reader (or a test) can find it.
Both libraries are the ``report`` extra: ``pip install "resnet-spec[report]"``.
"""

from __future__ import annotations

import io
import re
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING, Any

from ..spec import ResNetSpec
from ._report import finding_place, found_cell, value_text, verdict_text, where_text
from ._verdict import Verdict

if TYPE_CHECKING:
    from ._compare import Comparison

__all__ = ["ReportError", "render_html"]

# The drawing's colours: a block as the table has it, one a finding names, where the numbers first differ.
OK_COLOUR = "#d9ead3"
DIFF_COLOUR = "#d62728"
FIRST_COLOUR = "#ff7f0e"


class ReportError(RuntimeError):
    """The HTML report cannot be made here (its libraries are not installed)."""


@dataclass(frozen=True)
class _Box:
    name: str  # conv1, conv3_1, fc
    row: str
    status: str  # "ok", "differs"
    first: bool  # where the functional check first differs
    notes: tuple[str, ...]  # the findings there, one line each


def _libraries() -> tuple[Any, Any, Any]:
    try:
        import jinja2
        import markupsafe
        import matplotlib
    except ImportError as e:
        raise ReportError(
            f"the HTML report needs jinja2 and matplotlib ({e.name} is not installed): "
            "pip install 'resnet-spec[report]'"
        ) from None
    return jinja2, markupsafe, matplotlib


def _boxes(comparison: Comparison) -> list[list[_Box]]:
    """The network as the table lays it out: one line per Table 1 row, one box per block (the stem and the head one
    box each), each with the findings that name it."""
    spec = comparison.spec
    eq = comparison.equivalence
    first = (eq.block or eq.row) if eq is not None and eq.status == "differs" else None
    lines: list[list[tuple[str, str]]] = [[("conv1", "conv1")]]
    alignment = comparison.alignment
    if alignment is not None:
        for row in (stage.name for stage in spec.stages):
            names = [b.layers[0].block for b in alignment.plan.blocks if b.row == row and b.layers[0].block]
            lines.append([(str(name), row) for name in names])
    lines.append([("fc", "fc")])
    out = []
    for line in lines:
        boxes = []
        for name, row in line:
            own = [m for m in comparison.mismatches
                   if m.row != "model" and (m.block == name or name in m.blocks or (m.row == name == row))]  # fmt: skip
            if name in ("conv1", "fc"):
                own += [m for m in comparison.mismatches if m.row == name and m.block is None and m not in own]
            notes = tuple(
                f"{where_text(m)} {m.property}: expected {value_text(m.expected)}, found {value_text(m.found)}"
                for m in own
            )
            boxes.append(_Box(name, row, "differs" if own else "ok", name == first, notes))
        out.append(boxes)
    return out


def _network_svg(matplotlib: Any, lines: list[list[_Box]]) -> str:
    """The drawing: a line of boxes per row, the differing ones red, where the numbers first differ outlined."""
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    longest = max(len(line) for line in lines)
    box = min(0.9, 11.0 / max(longest, 1))  # inches per box
    width, height = 1.3 + longest * box, 0.5 * len(lines) + 0.3
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "resnet-spec", "font.size": 8}):
        figure = Figure(figsize=(width, height))
        axes = figure.add_axes((0, 0, 1, 1))
        axes.set_xlim(0, width)
        axes.set_ylim(height, 0)
        axes.axis("off")
        for y, line in enumerate(lines):
            top = 0.15 + 0.5 * y
            axes.text(0.05, top + 0.18, line[0].row, va="center", ha="left")
            for x, b in enumerate(line):
                rectangle = Rectangle(
                    (1.2 + x * box, top), box * 0.9, 0.36,
                    facecolor=DIFF_COLOUR if b.status == "differs" else OK_COLOUR,
                    edgecolor=FIRST_COLOUR if b.first else "#555555", linewidth=3 if b.first else 0.6,
                )  # fmt: skip
                rectangle.set_gid(f"block-{b.name}")
                axes.add_patch(rectangle)
                if box >= 0.45:
                    colour = "white" if b.status == "differs" else "black"
                    axes.text(1.2 + x * box + box * 0.45, top + 0.18, b.name, ha="center", va="center", color=colour)
        buffer = io.StringIO()
        figure.savefig(buffer, format="svg")
    return _inline(buffer.getvalue())


def _chart_svg(matplotlib: Any, comparison: Comparison) -> str:
    """Each row's maximum relative difference (eval, train) against the tolerance, on a log scale."""
    from matplotlib.figure import Figure

    eq = comparison.equivalence
    if eq is None or not eq.rows:
        return ""
    floor = eq.tolerance / 1e6  # where an exact 0 is drawn
    rows = [r.row for r in eq.rows]
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "resnet-spec", "font.size": 8}):
        figure = Figure(figsize=(6.5, 2.6))
        axes = figure.add_axes((0.1, 0.18, 0.72, 0.75))
        for mode, marker in (("eval", "o"), ("train", "s")):
            values = [getattr(r, mode) for r in eq.rows]
            xs = [i for i, v in enumerate(values) if v is not None]
            ys = [max(float(v), floor) for v in values if v is not None]
            colours = [DIFF_COLOUR if not eq.rows[i].ok else "#2ca02c" for i in xs]
            axes.scatter(xs, ys, marker=marker, c=colours, label=mode, zorder=3)
        axes.axhline(eq.tolerance, color="#555555", linestyle="--", linewidth=1, label="tolerance")
        axes.set_yscale("log")
        axes.set_xticks(range(len(rows)), rows)
        axes.set_ylabel("max relative difference")
        axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
        buffer = io.StringIO()
        figure.savefig(buffer, format="svg")
    return _inline(buffer.getvalue())


def _inline(svg: str) -> str:
    """An SVG document as an element of the page: without its XML declaration, doctype and RDF metadata."""
    element = svg[svg.index("<svg") :]
    return re.sub(r"\s*<metadata>.*?</metadata>", "", element, flags=re.DOTALL)


def render_html(comparison: Comparison, subject: str, best: Sequence[ResNetSpec] | None = None) -> str:
    """One self-contained HTML page of the comparison (see the module docstring).  Raises :class:`ReportError` where
    jinja2 or matplotlib is not installed."""
    jinja2, markupsafe, matplotlib = _libraries()
    lines = _boxes(comparison)
    template = resources.files(__package__).joinpath("report.html.j2").read_text(encoding="utf-8")
    environment = jinja2.Environment(autoescape=True, trim_blocks=True, lstrip_blocks=True)
    kind = comparison.verdict
    eq = comparison.equivalence
    return environment.from_string(template).render(
        subject=subject,
        spec=comparison.spec,
        verdict=kind.value,
        conforms=kind.conforms,
        undecided=kind == Verdict.UNDECIDED,
        sentence=verdict_text(comparison, best),
        input_size=f"{comparison.input_size[0]}x{comparison.input_size[1]}",
        network=markupsafe.Markup(_network_svg(matplotlib, lines)),  # our figure's SVG, not text to escape
        chart=markupsafe.Markup(_chart_svg(matplotlib, comparison)),
        boxes=[b for line in lines for b in line if b.notes],
        rows=[
            (r.row, r.expected_output, r.found_output, r.expected, found_cell(r, comparison), r.ok)
            for r in comparison.rows
        ],
        totals=[
            ("params", comparison.expected_params, comparison.found.params),
            ("MACs (conv+fc)", comparison.expected_macs, comparison.found.macs),
        ],
        findings=[
            (
                finding_place(m),
                m.kind,
                m.property,
                value_text(m.expected),
                value_text(m.found),
            )
            for m in comparison.mismatches
        ],
        equivalence=eq,
        notes=[*(eq.notes if eq is not None else ()), *comparison.info, *comparison.notes],
        colours={"ok": OK_COLOUR, "differs": DIFF_COLOUR, "first": FIRST_COLOUR},
    )
