"""One constructor per shipped architecture.  Each only names its table entry; the structure is in the table."""

from __future__ import annotations

from typing import Any

from .model import ResNet, build

__all__ = [
    "plain18",
    "plain34",
    "resnet18",
    "resnet20",
    "resnet32",
    "resnet34",
    "resnet44",
    "resnet50",
    "resnet56",
    "resnet101",
    "resnet110",
    "resnet152",
    "resnet1202",
]


def _from_table(name: str) -> Any:
    def constructor(**kwargs: Any) -> ResNet:
        return build(name, **kwargs)

    constructor.__name__ = constructor.__qualname__ = name
    constructor.__doc__ = (
        f"The ``{name}`` entry of the tables as an ``nn.Module``: the paper's network unless overridden.\n\n"
        "Takes :func:`resnet_spec.build`'s keywords: ``variant='v1'|'v1.5'``, ``shortcut='A'|'B'|'C'|'none'``, "
        "``num_classes``, ``in_channels``, ``zero_init_residual``, ``device``."
    )
    return constructor


resnet18 = _from_table("resnet18")
resnet34 = _from_table("resnet34")
resnet50 = _from_table("resnet50")
resnet101 = _from_table("resnet101")
resnet152 = _from_table("resnet152")
plain18 = _from_table("plain18")
plain34 = _from_table("plain34")
resnet20 = _from_table("resnet20")
resnet32 = _from_table("resnet32")
resnet44 = _from_table("resnet44")
resnet56 = _from_table("resnet56")
resnet110 = _from_table("resnet110")
resnet1202 = _from_table("resnet1202")
