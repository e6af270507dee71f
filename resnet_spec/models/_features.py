"""Backbone features: a module returning chosen rows (their channels and reductions: ``spec.feature_info``).

Detection and segmentation necks (FPN and the like) need, for every feature map they take, its channel count and
its reduction (the cumulative stride: input size / map size).  Both follow from the layout plan: the channels are
the last block's of the row, the reduction is the product of the strides of every conv and pool up to it.  Nothing is
run to find them; ``ResNet.feature_info`` returns the same tuple.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from torch import Tensor, nn

from ..spec import FeatureInfo, ResNetSpec, feature_info, feature_rows

if TYPE_CHECKING:
    from ._resnet import ResNet

__all__ = ["FeatureExtractor"]


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
