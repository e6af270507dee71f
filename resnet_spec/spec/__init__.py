"""The spec layer, torch-free: table types, the loader and its validation, the registry, the layout plan.

* :mod:`~resnet_spec.spec._types`: the frozen objects a table resolves to (:class:`ResNetSpec` and its parts).
* :mod:`~resnet_spec.spec._loader`: TOML reading, validation with bounds, resolution under the named deviations.
* :mod:`~resnet_spec.spec._registry`: the shipped tables keyed by name; depths resolve among canonical entries.
* :mod:`~resnet_spec.spec._plan`: every layer the built network has, with names and shapes, and the rows a backbone
  returns (:func:`feature_info`);
* :mod:`~resnet_spec.spec._arithmetic`: the padding arithmetic (output sizes, 'same' padding), a blur's filter.
"""

from ._arithmetic import binomial_filter, conv_output_size, same_padding
from ._loader import BOUNDS, KNOBS
from ._plan import FeatureInfo, Layer, Plan, PlannedBlock, defined_at, feature_info, feature_rows, layout_plan
from ._registry import (
    TABLES_ENV,
    as_spec,
    families,
    knob_combinations,
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
from ._types import (
    Block,
    BlockOrder,
    Conv,
    FrozenMapping,
    Head,
    Pool,
    ResNetSpec,
    SelectiveKernel,
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
    "FeatureInfo",
    "FrozenMapping",
    "Head",
    "Layer",
    "Plan",
    "PlannedBlock",
    "Pool",
    "ResNetSpec",
    "SelectiveKernel",
    "ShortcutKind",
    "ShortcutOption",
    "SpecError",
    "Stage",
    "Stem",
    "StemPool",
    "StrideVariant",
    "as_spec",
    "binomial_filter",
    "conv_output_size",
    "defined_at",
    "families",
    "feature_info",
    "feature_rows",
    "knob_combinations",
    "knob_options",
    "layout_plan",
    "list_specs",
    "load_spec",
    "load_table",
    "residual_depths",
    "same_padding",
    "shortcut_names",
    "tables_dir",
    "variant_names",
    "variants",
]
