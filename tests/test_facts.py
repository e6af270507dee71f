"""support/facts.py is a transcription of FACTS.md: every exact count it holds must stand in FACTS.md as printed."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import facts

FACTS_MD = (Path(__file__).resolve().parent / "support" / "FACTS.md").read_text(encoding="utf-8")


def _exact_counts(value: object) -> Iterator[int]:
    """The integers of a transcribed figure that are exact counts (parameters, MACs), not repeats or sizes."""
    if isinstance(value, bool):
        return
    if isinstance(value, int):
        if value >= 10_000:
            yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _exact_counts(item)
    elif isinstance(value, (tuple, list)):
        for item in value:
            yield from _exact_counts(item)


def test_every_exact_count_of_facts_py_is_printed_in_facts_md() -> None:
    counts = {
        (name, number)
        for name, value in vars(facts).items()
        if not name.startswith("_")
        for number in _exact_counts(value)
    }
    assert len(counts) >= 20, f"expected the exact counts of FACTS.md in tests/support/facts.py, found {len(counts)}"
    missing = sorted((name, f"{number:,}") for name, number in counts if f"{number:,}" not in FACTS_MD)
    assert not missing, f"figures in tests/support/facts.py that FACTS.md does not print: {missing}"
