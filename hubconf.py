"""torch.hub entry points: one per architecture of the shipped tables.

    model = torch.hub.load("<owner>/resnet-spec", "resnet50")                       # from GitHub
    model = torch.hub.load("/path/to/resnet-spec", "resnet50", source="local")      # from a checkout
    model = torch.hub.load(..., "resnet50", variant="v1.5", num_classes=0, device="meta")

Every keyword goes to :func:`resnet_spec.build` (``variant``, ``shortcut``, ``num_classes``, ``in_channels``,
``zero_init_residual``, ``device``).  No trained weights are published: ``pretrained=True`` is refused; load weights
with :func:`resnet_spec.weights._formats.load_checkpoint`.  The entry points are made from the tables, so a new table entry
is a new entry point without code here.
"""

from __future__ import annotations

import typing as _typing

import resnet_spec as _resnet_spec

if _typing.TYPE_CHECKING:
    from resnet_spec import ResNet

dependencies = ["torch"]  # torch.hub checks these are importable; every other public callable is an entry point


def _entry(name: str) -> _typing.Any:
    def entry(pretrained: bool = False, **kwargs: _typing.Any) -> ResNet:
        if pretrained:
            raise ValueError(
                f"{name}: expected pretrained=False: resnet-spec publishes no trained weights; build the model and "
                "load a checkpoint with resnet_spec.weights._formats.load_checkpoint(path, model, source=...)"
            )
        return _resnet_spec.build(name, **kwargs)

    entry.__name__ = entry.__qualname__ = name
    entry.__doc__ = (
        f"The ``{name}`` entry of the tables (the paper's network unless overridden); keywords go to resnet_spec.build."
    )
    return entry


__all__ = _resnet_spec.list_specs()
globals().update({name: _entry(name) for name in __all__})
