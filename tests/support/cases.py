"""Parametrization over the registry: every table entry at its table's options, and every canonical entry (the
networks ``--depth N`` names) under every stride variant and shortcut option.

The entries, variants and shortcut options come from the tables (through the registry), so a new entry or a new
option is tested without a new test.  Combinations that resolve to the same network (v1 and v1.5 of a
basic-block net put the stride on the same 3x3) are kept once, so deep tables are not checked twice for nothing.
The stem-pool knob is exercised per entry in tests/test_plan.py.

The canonical entries (the 2015 paper's networks, which ``--depth N`` names) and, of every table file, the entry
with the fewest parameters run by default at their table's options; the other entries (each built from the same
vocabulary as its file's) are marked ``slow``.  The options' cross-product runs by default on the shallowest canonical
entry of each block kind in each family (resnet20, resnet18, resnet50): an option changes the same blocks at every
depth.  On the deeper canonical entries it is marked ``slow`` (CI runs it).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import pytest

from resnet_spec import ResNetSpec, count
from resnet_spec.spec import knob_options, list_specs, load_spec

KNOBS = knob_options()
VARIANTS = KNOBS["variant"]
SHORTCUTS = KNOBS["shortcut"]
Case = tuple[str, str, str]  # (name, variant, shortcut)


def distinct_cases() -> list[Case]:
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
        key = spec.network_key
        if key not in seen:
            seen.add(key)
            cases.append((name, variant, shortcut))
    return cases


def _knob_carriers() -> set[str]:
    """The shallowest canonical entry of each block kind (convs per block) in each family."""
    shallowest: dict[tuple[str, int], ResNetSpec] = {}
    for name in list_specs():
        spec = load_spec(name)
        key = (spec.family, len(spec.stages[0].layers))
        if spec.canonical and (key not in shallowest or spec.depth < shallowest[key].depth):
            shallowest[key] = spec
    return {spec.name for spec in shallowest.values()}


CASES = distinct_cases()
CASE_IDS = [f"{n}-{v}-{s}" for n, v, s in CASES]
KNOB_CARRIERS = _knob_carriers()


def _table_heads() -> set[str]:
    """The entries that run by default: the canonical ones (the networks ``--depth N`` names: the paper's) and the
    one with the fewest parameters of each table file."""
    by_file: dict[str, list[ResNetSpec]] = {}
    for name in list_specs():
        spec = load_spec(name)
        by_file.setdefault(spec.table_file, []).append(spec)
    heads = {name for name in list_specs() if load_spec(name).canonical}
    for specs in by_file.values():
        heads.add(min(specs, key=lambda spec: (count(spec).params, spec.name)).name)
    return heads


TABLE_HEADS = _table_heads()


def representative(case: Case) -> bool:
    """Whether a case runs by default: an entry that stands for its table (:data:`TABLE_HEADS`) at its table's
    options, or a knob carrier with one named deviation changed, so that every option of every knob runs once: the
    stride placement on the bottleneck carriers (the only blocks it changes), the shortcut options on the
    basic-block ones (the cheapest networks that have them)."""
    name, variant, shortcut = case
    own = load_spec(name)
    changed = (variant != own.variant.name) + (shortcut != own.shortcut.name)
    if name in KNOB_CARRIERS and changed == 1:
        bottleneck = len(own.stages[0].layers) > 2
        return variant != own.variant.name or not bottleneck
    return (name in KNOB_CARRIERS or name in TABLE_HEADS) and changed == 0


def at_table_options(spec: ResNetSpec) -> bool:
    """Whether ``spec`` is its entry as the table defines it (no named deviation changed): the expensive per-case
    tests run those by default and leave the knob carriers' other options to the slow run."""
    own = load_spec(spec.name)
    knobs = (spec.variant.name, spec.shortcut.name, spec.stem.pool)
    return knobs == (own.variant.name, own.shortcut.name, own.stem.pool)


HUGE_BLOCKS = 100  # a network of more blocks (ResNet-1202 has 600) takes seconds to build even on the meta device


def huge(spec: ResNetSpec) -> bool:
    """Whether ``spec``'s network has more than :data:`HUGE_BLOCKS` blocks: its cases run with the slow tests."""
    return sum(stage.repeats for stage in spec.stages) > HUGE_BLOCKS


def case_marks(case: Case, slow: Callable[[ResNetSpec], bool] | None = None) -> list[Any]:
    """``[pytest.mark.slow]`` where ``case`` is not :func:`representative`, is :func:`huge`, or ``slow(spec)`` says
    the network is too expensive for the default run; else no marks."""
    spec = load_spec(case[0], variant=case[1], shortcut=case[2])
    if not representative(case) or huge(spec) or (slow is not None and slow(spec)):
        return [pytest.mark.slow]
    return []


def case_params(cases: Iterable[Case] = CASES, slow: Callable[[ResNetSpec], bool] | None = None) -> list[Any]:
    """pytest params ``(name, variant, shortcut)`` with ids ``name-variant-shortcut`` and :func:`case_marks`."""
    return [pytest.param(*case, id="-".join(case), marks=case_marks(case, slow)) for case in cases]
