"""Backbone features: each row's channels and reduction from the spec alone, and a module returning chosen rows.

Detection and segmentation necks (FPN and the like) need, for every feature map they take, its channel count and
its reduction (the cumulative stride: input size / map size).  Both follow from the layout plan: the channels are
the last block's of the row, the reduction is the product of the strides of every conv and pool up to it.  Nothing is
run to find them; ``ResNet.feature_info`` returns the same tuple.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from torch import Tensor, nn

from .spec import ResNetSpec, as_spec, layout_plan

if TYPE_CHECKING:
    from .model import ResNet

__all__ = ["FeatureExtractor", "FeatureInfo", "feature_info", "feature_rows"]


@dataclass(frozen=True)
class FeatureInfo:
    """One row of the table as a backbone output: what a neck needs to attach to it."""

    row: str  # the paper's row name: "conv1", "conv2_x", ...
    module: str  # the module whose output it is, in torchvision's names ("relu" after conv1/bn1, "layer1", ...)
    channels: int  # the row's output channels
    reduction: int  # cumulative stride: the map is ceil(H / reduction) x ceil(W / reduction) ("same" padding)

    def as_timm(self) -> dict[str, int | str]:
        """The entry as timm's ``feature_info`` dicts spell it: ``num_chs``, ``reduction``, ``module``."""
        return {"num_chs": self.channels, "reduction": self.reduction, "module": self.module}


def feature_info(spec: ResNetSpec | str) -> tuple[FeatureInfo, ...]:
    """Each row's module, channels and reduction, in network order (conv1, then every stage), from the layout plan."""
    spec = as_spec(spec, "feature_info")
    plan = layout_plan(spec, spec.min_input_size())
    main_path = [layer for layer in plan.layers if layer.role in ("stem", "branch")]
    stem = [layer for layer in plan.stem if layer.module and layer.row == "conv1"]
    reduction = math.prod(layer.stride for layer in stem)
    infos = [FeatureInfo("conv1", stem[-1].name.split(".")[0], stem[-1].out_shape[0], reduction)]
    for row, module in plan.stage_modules:
        reduction = math.prod(layer.stride for layer in main_path if spec.rows.index(layer.row) <= spec.rows.index(row))
        channels = next(b.spec.out_channels for b in reversed(plan.blocks) if b.row == row)
        infos.append(FeatureInfo(row, module, channels, reduction))
    return tuple(infos)


def feature_rows(spec: ResNetSpec) -> tuple[str, ...]:
    """The rows a backbone can return: ``("conv1", "conv2_x", ...)`` (every row but the classifier)."""
    return tuple(info.row for info in feature_info(spec))


class FeatureExtractor(nn.Module):
    """A ResNet as a backbone: ``forward`` returns ``{row: feature map}`` for the chosen rows, in network order.

    ``rows`` defaults to every row but the classifier.  The wrapped model is shared, not copied (its state_dict keys
    gain a ``model.`` prefix).  The head still runs; build the model with ``num_classes=0`` to drop the fc weights.
    """

    def __init__(self, model: ResNet, rows: Sequence[str] | None = None) -> None:
        super().__init__()
        if not isinstance(getattr(model, "spec", None), ResNetSpec) or not hasattr(model, "forward_rows"):
            kind = f"{type(model).__module__}.{type(model).__qualname__}"
            raise TypeError(
                f"FeatureExtractor: expected a resnet_spec ResNet (from resnet_spec.build: it carries the .spec its "
                f"rows come from), got a {kind}; build ours (and load the weights with resnet_spec.convert_state_dict)"
            )
        available = feature_rows(model.spec)
        chosen = available if rows is None else tuple(rows)
        unknown = [row for row in chosen if row not in available]
        if unknown or not chosen or len(set(chosen)) != len(chosen):
            raise ValueError(
                f"FeatureExtractor: expected distinct rows of {model.spec.name} among {', '.join(available)}, "
                f"got {list(chosen)!r}" + (f" (unknown: {unknown})" if unknown else "")
            )
        self.model = model
        self.rows: tuple[str, ...] = tuple(row for row in available if row in chosen)  # network order
        self.info: tuple[FeatureInfo, ...] = tuple(i for i in feature_info(model.spec) if i.row in self.rows)

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        rows = self.model.forward_rows(x)  # every row: (N, C_row, H / r, W / r)
        return {row: rows[row] for row in self.rows}
