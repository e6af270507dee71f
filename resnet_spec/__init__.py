"""resnet-spec: the ResNet of He et al. 2015 and its family built from machine-readable tables, and the checks
that prove an implementation matches them.

Two products, one folder per job (``docs/design.md``):

* build: :mod:`resnet_spec.spec` (tables -> spec -> layout plan), :mod:`resnet_spec.models`,
  :mod:`resnet_spec.counts`, :mod:`resnet_spec.weights`;
* judge: :mod:`resnet_spec.verify`, :mod:`resnet_spec.sandbox`, :mod:`resnet_spec.testing` (``assert_conforms``
  and the pytest plugin), :mod:`resnet_spec.cli` (the ``resnet-spec`` command).

The user API is :data:`__all__`.  Importing the package (or :mod:`resnet_spec.spec`, or :mod:`resnet_spec.counts`)
does not import torch: the names that need it (``build``, ``ResNet``, ``compare_model`` ...) load on first use.
Every entry of the shipped tables is also a constructor: ``resnet_spec.resnet50(**build_keywords)``.
"""

from __future__ import annotations

import importlib
import warnings
from typing import TYPE_CHECKING, Any

from .spec import ResNetSpec, SpecError, families, layout_plan, list_specs, load_spec, residual_depths

if TYPE_CHECKING:
    from .counts import count, measure
    from .models import FeatureExtractor, ResNet, build, fuse_for_inference
    from .spec import feature_info
    from .testing import assert_conforms
    from .verify import compare_model
    from .weights import ConversionError, convert_state_dict, load_checkpoint

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
    "measure",
    "residual_depths",
]

# The face's names that live in a job's folder, loaded on first use (the torch-backed ones among them).
_FACE: dict[str, str] = {
    "ConversionError": "weights",
    "convert_state_dict": "weights",
    "load_checkpoint": "weights",
    "count": "counts",
    "measure": "counts",
    "assert_conforms": "testing",
    "compare_model": "verify",
    "FeatureExtractor": "models",
    "ResNet": "models",
    "build": "models",
    "fuse_for_inference": "models",
    "feature_info": "spec",
}

# Names this module used to give that now live in a job's folder: they work for one release, with a warning.
_MOVED: dict[str, str] = {
    "load_table": "spec",
    "state_dict_layout": "weights",
    "best_matches": "verify",
    "FeatureInfo": "spec",
    "FusedResNet": "models",
    "fold_conv_bn": "models",
    "PlainBlock": "models",
    "PreActBlock": "models",
    "ResidualBlock": "models",
    "ZeroPadShortcut": "models",
    "Block": "spec",
    "Conv": "spec",
    "Head": "spec",
    "Pool": "spec",
    "ShortcutOption": "spec",
    "Stage": "spec",
    "Stem": "spec",
    "StrideVariant": "spec",
    "tables_dir": "spec",
    "conv_output_size": "spec",
    "same_padding": "spec",
}


def _constructor(name: str) -> Any:
    """The table entry ``name`` as a constructor taking :func:`build`'s keywords."""

    def constructor(**kwargs: Any) -> Any:
        from .models import build

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
    if name in _FACE:
        value = getattr(importlib.import_module(f".{_FACE[name]}", __name__), name)
    elif name in _MOVED:
        warnings.warn(f"resnet_spec.{name} moved to resnet_spec.{_MOVED[name]}.{name}; import it from there",
                      DeprecationWarning, stacklevel=2)  # fmt: skip
        return getattr(importlib.import_module(f".{_MOVED[name]}", __name__), name)
    elif not name.startswith("_") and name in list_specs():
        value = _constructor(name)
    else:
        raise AttributeError(f"module 'resnet_spec' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    """The face (:data:`__all__`) and the job folders; the table entries' constructors are ``list_specs()``."""
    folders = ("cli", "counts", "models", "sandbox", "spec", "testing", "verify", "weights")
    return sorted({*__all__, *folders, "counting", "diff"})
