"""Why 3.86 vs 4.09 vs 4.11 vs 8.18: one network, several counting conventions, side by side.

For ResNet-18 ... 152 of Table 1 in v1 (the paper's stride placement) and v1.5 (torchvision's), our analytic count
under each convention (:func:`resnet_spec.counts.count`) next to what fvcore, torch's FlopCounterMode and torchinfo
report for the built model (:func:`resnet_spec.counts.measure`).  ``resnet-spec conventions`` prints it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["HEADER", "ConventionRow", "convention_rows", "render_conventions"]


@dataclass(frozen=True)
class ConventionRow:
    """One network under every convention: analytic and measured figures (None where not measured)."""

    label: str
    depth: int
    variant: str
    paper: float | None  # Table 1's printed figure, from the table's paper.flops
    conv_fc: int
    fvcore_set: int
    torchinfo_set: int
    flops: int
    fvcore: int | None
    flop_counter: int | None
    torchinfo: int | None

    @property
    def agrees(self) -> bool | None:
        """Whether every measured figure equals its analytic counterpart (None when nothing was measured)."""
        pairs = ((self.fvcore_set, self.fvcore), (self.flops, self.flop_counter), (self.torchinfo_set, self.torchinfo))
        measured = [(a, m) for a, m in pairs if m is not None]
        return all(a == m for a, m in measured) if measured else None


def convention_rows(
    depths: Sequence[int], variants: Sequence[str], input_size: int, measured: bool = True
) -> list[ConventionRow]:
    """The figures for each (depth, variant): analytic always, measured by the three tools when ``measured``."""
    from ..models import build
    from ..spec import load_spec, residual_depths
    from ._analytic import count
    from ._measured import materialize, measure

    names = residual_depths("imagenet")
    rows = []
    for depth in depths:
        for variant in variants:
            spec = load_spec(names[depth], variant=variant)
            paper = spec.paper.get("flops")
            conv_fc = count(spec, input_size).total
            fvcore = flop_counter = torchinfo = None
            if measured:
                model = build(spec, device="meta")  # FlopCounterMode and torchinfo need shapes only
                rest = measure(model, input_size, counters=("flop_counter", "torchinfo"))
                fv = measure(materialize(model), input_size, counters=("fvcore",)).fvcore  # fvcore: real zeros
                if fv is None or rest.flop_counter is None or rest.torchinfo is None:
                    raise RuntimeError(f"conventions: a counter measured nothing for {spec.label}")
                fvcore, flop_counter, torchinfo = fv.total, rest.flop_counter.total, rest.torchinfo.total_mult_adds
            rows.append(
                ConventionRow(
                    label=spec.label,
                    depth=depth,
                    variant=variant,
                    paper=float(paper) if isinstance(paper, (int, float)) else None,
                    conv_fc=conv_fc,
                    fvcore_set=count(spec, input_size, ops="fvcore").total,
                    torchinfo_set=count(spec, input_size, ops="torchinfo").total,
                    flops=count(spec, input_size, unit="flops").total,
                    fvcore=fvcore,
                    flop_counter=flop_counter,
                    torchinfo=torchinfo,
                )
            )
    return rows


HEADER = (
    "network",
    "paper",
    "conv+fc",
    "fvcore set",
    "torchinfo set",
    "FLOPs",
    "fvcore (measured)",
    "FlopCounterMode (measured)",
    "torchinfo (measured)",
    "ok",
)


def _cells(row: ConventionRow, exact: bool) -> list[str]:
    def fmt(value: int | float | None) -> str:
        if value is None:
            return "-"
        return f"{int(value):,}" if exact else f"{value / 1e9:.3f}"

    paper = "-" if row.paper is None else f"{row.paper / 1e9:.1f}"
    ok = {True: "yes", False: "NO", None: "-"}[row.agrees]
    return [
        f"ResNet-{row.depth} {row.variant}",
        paper,
        *(fmt(v) for v in (row.conv_fc, row.fvcore_set, row.torchinfo_set, row.flops)),
        *(fmt(v) for v in (row.fvcore, row.flop_counter, row.torchinfo)),
        ok,
    ]


def render_conventions(rows: Sequence[ConventionRow], fmt: str, exact: bool, input_size: int) -> str:
    """The rows as an aligned text table or a Markdown table."""
    body = [_cells(r, exact) for r in rows]
    unit = "exact counts" if exact else "x 1e9"
    title = f"Counting conventions at {input_size}x{input_size}, batch 1 ({unit})"
    if fmt == "markdown":
        lines = [f"**{title}**", "", "| " + " | ".join(HEADER) + " |", "|" + "|".join(["---"] + ["---:"] * 9) + "|"]
        lines += ["| " + " | ".join(cells) + " |" for cells in body]
        return "\n".join(lines)
    widths = [max(len(h), *(len(c[i]) for c in body)) for i, h in enumerate(HEADER)]
    lines = [title, ""]
    for cells in [list(HEADER), *body]:
        lines.append(
            "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True)))
        )
    return "\n".join(lines)
