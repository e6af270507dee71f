"""resnet-spec: the ResNet of He et al. 2015 and its family built from machine-readable tables, and the checks
that prove an implementation matches them.

The user API is :data:`__all__`.  Importing the package (or :mod:`resnet_spec.spec`, or :mod:`resnet_spec.counting`)
does not import torch: the names that need it (``build``, ``ResNet``, ``compare_model``, ``measure`` ...) load on
first use.  Every entry of the shipped tables is also a constructor: ``resnet_spec.resnet50(**build_keywords)``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .spec import ResNetSpec, SpecError, families, layout_plan, list_specs, load_spec, load_table, residual_depths

if TYPE_CHECKING:
    from .conformance import assert_conforms
    from .convert import ConversionError, convert_state_dict, load_checkpoint
    from .counting import count
    from .features import FeatureExtractor, feature_info
    from .fuse import fuse_for_inference
    from .measure import measure
    from .model import ResNet, build
    from .verify import compare_model

__all__ = [
    "ConversionError",
    "FeatureExtractor",
    "ResNet",
    "ResNetSpec",
    "SpecError",
    "assert_conforms",
    "build",
    "compare_model",
    "convert_state_dict",
    "count",
    "families",
    "feature_info",
    "fuse_for_inference",
    "layout_plan",
    "list_specs",
    "load_checkpoint",
    "load_spec",
    "load_table",
    "measure",
    "residual_depths",
]

# Name -> the module it lives in, loaded on first use (the torch-backed parts, and the rest of the library's names
# for code that imported them from the top level).
_LAZY: dict[str, str] = {
    "ConversionError": "convert",
    "convert_state_dict": "convert",
    "load_checkpoint": "convert",
    "state_dict_layout": "convert",
    "count": "counting",
    "assert_conforms": "conformance",
    "best_matches": "verify",
    "compare_model": "verify",
    "FeatureExtractor": "features",
    "FeatureInfo": "features",
    "feature_info": "features",
    "FusedResNet": "fuse",
    "fold_conv_bn": "fuse",
    "fuse_for_inference": "fuse",
    "measure": "measure",
    "PlainBlock": "model",
    "PreActBlock": "model",
    "ResNet": "model",
    "ResidualBlock": "model",
    "ZeroPadShortcut": "model",
    "build": "model",
    "Block": "spec",
    "Conv": "spec",
    "Head": "spec",
    "Pool": "spec",
    "ShortcutOption": "spec",
    "Stage": "spec",
    "Stem": "spec",
    "StrideVariant": "spec",
    "tables_dir": "spec",
    "conv_output_size": "arithmetic",
    "same_padding": "arithmetic",
}


def _constructor(name: str) -> Any:
    """The table entry ``name`` as a constructor taking :func:`build`'s keywords."""

    def constructor(**kwargs: Any) -> Any:
        from .model import build

        return build(name, **kwargs)

    constructor.__name__ = constructor.__qualname__ = name
    constructor.__module__ = __name__
    constructor.__doc__ = (
        f"The ``{name}`` entry of the tables as an ``nn.Module`` (the table's network unless overridden).\n\n"
        "Takes :func:`resnet_spec.build`'s keywords: the named deviations (``variant=``, ``shortcut=``, "
        "``stem_pool=``), ``num_classes``, ``in_channels``, ``zero_init_residual``, ``device``."
    )
    return constructor


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    elif not name.startswith("_") and name in list_specs():
        value = _constructor(name)
    else:
        raise AttributeError(f"module 'resnet_spec' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY, *list_specs()})
