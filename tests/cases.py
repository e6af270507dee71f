"""Parametrization over the registry: every table entry at its table's options, and every canonical entry (the
networks ``--depth N`` names) under every stride variant and shortcut option.

The entries, variants and shortcut options come from the tables (through the registry), so a new entry or a new
option is tested without a new test.  Combinations that resolve to the same network (v1 and v1.5 of a
basic-block net put the stride on the same 3x3) are kept once, so deep tables are not checked twice for nothing.
The stem-pool knob is exercised per entry in tests/test_plan.py.
"""

from __future__ import annotations

from resnet_spec.spec import knob_options, list_specs, load_spec

KNOBS = knob_options()
VARIANTS = KNOBS["variant"]
SHORTCUTS = KNOBS["shortcut"]


def distinct_cases() -> list[tuple[str, str, str]]:
    """(name, variant, shortcut) for every registry entry, one per distinct resolved network.

    Entries at their table's defaults come first, so ``plain34`` is kept under its own name and ``resnet34`` with
    ``shortcut="none"`` (the same network) is dropped.
    """
    seen: set[object] = set()
    cases = []
    candidates = [(name, load_spec(name).variant.name, load_spec(name).shortcut.name) for name in list_specs()]
    canonical = [name for name in list_specs() if load_spec(name).canonical]
    candidates += [(name, v, s) for name in canonical for v in VARIANTS for s in SHORTCUTS]
    for name, variant, shortcut in candidates:
        spec = load_spec(name, variant=variant, shortcut=shortcut)
        key = (spec.stem, spec.stages, spec.head, spec.order)
        if key not in seen:
            seen.add(key)
            cases.append((name, variant, shortcut))
    return cases


CASES = distinct_cases()
CASE_IDS = [f"{n}-{v}-{s}" for n, v, s in CASES]
