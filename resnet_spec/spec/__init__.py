"""The spec layer, torch-free: table types, the loader and its validation, the registry, the layout plan.

* :mod:`~resnet_spec.spec.types`: the frozen objects a table resolves to (:class:`ResNetSpec` and its parts).
* :mod:`~resnet_spec.spec.loader`: TOML reading, validation with bounds, resolution under the named deviations.
* :mod:`~resnet_spec.spec.registry`: the shipped tables keyed by name; depths resolve among canonical entries.
* :mod:`~resnet_spec.spec.plan`: every layer the built network has, with names and shapes.
"""

from .loader import BOUNDS, KNOBS
from .plan import Layer, Plan, PlannedBlock, layout_plan
from .registry import (
    TABLES_ENV,
    as_spec,
    families,
    knob_options,
    list_specs,
    load_spec,
    load_table,
    residual_depths,
    shortcut_names,
    tables_dir,
    variant_names,
    variants,
)
from .types import (
    Block,
    BlockOrder,
    Conv,
    FrozenMapping,
    Head,
    Pool,
    ResNetSpec,
    ShortcutKind,
    ShortcutOption,
    SpecError,
    Stage,
    Stem,
    StemPool,
    StrideVariant,
)

__all__ = [
    "BOUNDS",
    "KNOBS",
    "TABLES_ENV",
    "Block",
    "BlockOrder",
    "Conv",
    "FrozenMapping",
    "Head",
    "Layer",
    "Plan",
    "PlannedBlock",
    "Pool",
    "ResNetSpec",
    "ShortcutKind",
    "ShortcutOption",
    "SpecError",
    "Stage",
    "Stem",
    "StemPool",
    "StrideVariant",
    "as_spec",
    "families",
    "knob_options",
    "layout_plan",
    "list_specs",
    "load_spec",
    "load_table",
    "residual_depths",
    "shortcut_names",
    "tables_dir",
    "variant_names",
    "variants",
]
