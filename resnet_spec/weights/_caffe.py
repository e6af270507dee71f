"""The ``"caffe"`` weight format: the authors' release (KaimingHe/deep-residual-networks), its layer names and blobs,
and their conversion to our names and back.

Its stride sits on the first 1x1 ("v1", the paper's network).  Represented as a flat dict keyed
``"<layer>.<blob>"``: a Convolution's ``weight`` (and ``bias`` where the layer has one: the released ResNet-50's
conv1 does, Caffe's default), a BatchNorm's ``mean``, ``variance`` and ``moving_average_factor`` (its three blobs
as stored: the statistics are the first two divided by the third), a Scale's ``weight`` (gamma) and ``bias``
(beta), the InnerProduct's ``weight`` and ``bias``.
:func:`caffe_params_to_state_dict` builds it from pycaffe's ``net.params``.  Layer names: ``conv1``,
``bn_conv1``, ``scale_conv1``; ``res2a_branch2a``, ``bn2a_branch2a``, ``scale2a_branch2a`` ...; ``res2a_branch1``
for projections; ``fc1000``.  Each BatchNorm + Scale pair becomes one ``BatchNorm2d`` (eps 1e-5 on both sides);
a conv bias is folded into the running mean, ``BN(Wx + b - m) = BN(Wx - (m - b))``, which is exact in eval mode.

Caffe block names (``res4b22``) follow the released prototxts, derived from a network's repeats: a network whose
stages all have at most 6 blocks (ResNet-50, ``res4a`` ... ``res4f``) letters every block; a deeper one
(ResNet-101/152) names the blocks of each stage longer than 3 blocks ``a, b1, b2, ...`` (``res3b1``, ``res4b22``)
and keeps letters for its 3-block stages (``res2a`` ... ``res2c``, ``res5a`` ... ``res5c``).
"""

from __future__ import annotations

import re
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from ..spec import Plan, ResNetSpec, Stage
from ._ledger import ConversionError, FormatKey, Ledger

__all__ = ["ConvBN", "caffe_block_names", "caffe_convs", "caffe_layout", "caffe_params_to_state_dict", "read_caffe",
           "write_caffe"]  # fmt: skip

# The released prototxts' block naming (see the module docstring): the longest stage ResNet-50 letters (res4a..f),
# and the longest stage a deeper release still letters (res2a..c, res5a..c of ResNet-101/152).
_CAFFE_MAX_LETTERED_NETWORK_STAGE = 6
_CAFFE_MAX_LETTERED_STAGE_IN_NUMBERED_NETWORK = 3
_CAFFE_BN_BLOBS = ("mean", "variance", "moving_average_factor")  # BatchNorm's blobs, in Caffe's order
_CAFFE_PARAM_BLOBS = ("weight", "bias")  # Convolution, Scale, InnerProduct
_STAGE_NUMBER = re.compile(r"^conv(\d+)_x$")


@dataclass(frozen=True)
class ConvBN:
    """One conv and the batch norm after it, under our names and the Caffe release's."""

    conv: str  # our module name: "conv1", "layer1.0.conv2", "layer2.0.downsample.0"
    bn: str  # "bn1", "layer1.0.bn2", "layer2.0.downsample.1"
    caffe_conv: str  # "conv1", "res2a_branch2b", "res3a_branch1"
    caffe_bn: str  # "bn_conv1", "bn2a_branch2b"
    caffe_scale: str  # "scale_conv1", "scale2a_branch2b"
    weight_shape: tuple[int, int, int, int]  # (out, in, k, k)

    @property
    def channels(self) -> int:
        return self.weight_shape[0]


def caffe_block_names(spec: ResNetSpec) -> dict[str, tuple[str, ...]]:
    """Each stage's Caffe block names, e.g. ``{"conv4_x": ("4a", "4b1", ..., "4b22"), ...}`` for ResNet-101."""
    numbered_network = max(stage.repeats for stage in spec.stages) > _CAFFE_MAX_LETTERED_NETWORK_STAGE
    names: dict[str, tuple[str, ...]] = {}
    for stage in spec.stages:
        number = _stage_number(spec, stage)
        if numbered_network and stage.repeats > _CAFFE_MAX_LETTERED_STAGE_IN_NUMBERED_NETWORK:
            suffixes = ["a", *(f"b{i}" for i in range(1, stage.repeats))]
        else:
            suffixes = list(string.ascii_lowercase[: stage.repeats])  # at most 6 blocks here: never runs out
        names[stage.name] = tuple(f"{number}{suffix}" for suffix in suffixes)
    return names


def _stage_number(spec: ResNetSpec, stage: Stage) -> str:
    match = _STAGE_NUMBER.match(stage.name)
    if match is None:  # the loader admits only conv<N>_x rows
        raise ValueError(f"{spec.table_file}: stage {stage.name!r} of {spec.name}: expected a name like 'conv3_x'")
    return match.group(1)


def caffe_convs(plan: Plan) -> tuple[ConvBN, ...] | str:
    """Each conv-BN pair under our names and the Caffe release's, or why the release's naming has none for it."""
    spec = plan.spec
    if spec.order != "post" or len(spec.stem.convs) != 1 or any(block.gated for block in spec.blocks):
        return "the Caffe release names only one-conv stems and post-activation blocks without a gate (SE, ECA)"
    if any(block.spec.shortcut not in ("identity", "projection", "none") for block in plan.blocks):
        return "the Caffe release names only identity and projection shortcuts"
    if spec.group_norm is not None or spec.weight_standardization is not None:
        return "the Caffe release has batch norms (BatchNorm and Scale layers) and plain convolutions only"
    if spec.stem.anti_alias is not None or any(block.anti_alias is not None for block in spec.blocks):
        return "the Caffe release strides its convolutions and its pool: it has no anti-aliasing layers"
    pairs = [("conv1", "bn_conv1", "scale_conv1", plan.stem[0], plan.stem[1])]
    block_names = caffe_block_names(spec)
    caffe_names = [name for stage in spec.stages for name in block_names[stage.name]]
    for planned, caffe_name in zip(plan.blocks, caffe_names, strict=True):
        for role, letters in (("branch", string.ascii_lowercase), ("shortcut", "")):
            layers = [layer for layer in planned.role(role) if layer.kind in ("conv", "bn")]
            for index, (conv, bn) in enumerate(zip(layers[::2], layers[1::2], strict=True)):
                branch = f"{caffe_name}_branch2{letters[index]}" if letters else f"{caffe_name}_branch1"
                pairs.append((f"res{branch}", f"bn{branch}", f"scale{branch}", conv, bn))
    return tuple(
        ConvBN(conv.name, bn.name, caffe_conv, caffe_bn, caffe_scale, conv.params[0][1])  # type: ignore[arg-type]
        for caffe_conv, caffe_bn, caffe_scale, conv, bn in pairs
    )


def _caffe_pairs(plan: Plan) -> tuple[ConvBN, ...]:
    convs = caffe_convs(plan)
    if isinstance(convs, str):
        raise ConversionError(f"caffe weights do not fit {plan.spec.label}", [convs])
    return convs


def _caffe_keys(cb: ConvBN) -> dict[str, str]:
    """The Caffe keys of one conv-BN pair's three layers (Convolution, BatchNorm, Scale), by what each blob is."""
    return {
        "weight": f"{cb.caffe_conv}.weight",
        "bias": f"{cb.caffe_conv}.bias",
        "mean": f"{cb.caffe_bn}.mean",
        "variance": f"{cb.caffe_bn}.variance",
        "factor": f"{cb.caffe_bn}.moving_average_factor",
        "gamma": f"{cb.caffe_scale}.weight",
        "beta": f"{cb.caffe_scale}.bias",
    }


def _caffe_fc_keys(plan: Plan) -> dict[str, tuple[str, tuple[int, ...]]]:
    """The InnerProduct's blobs: ours ("weight", "bias") -> (Caffe key, shape); none for a headless model."""
    if not any(layer.kind == "fc" for layer in plan.head):
        return {}
    fc_shape = (plan.num_classes, plan.spec.out_channels)
    return {blob: (f"fc{plan.num_classes}.{blob}", shape) for blob, shape in
            (("weight", fc_shape), ("bias", fc_shape[:1]))}  # fmt: skip


def caffe_layout(plan: Plan) -> dict[str, FormatKey]:
    """Every key of the Caffe release's weights for the network ``plan`` lays out."""
    out: dict[str, FormatKey] = {}
    for cb in _caffe_pairs(plan):
        keys, channels = _caffe_keys(cb), (cb.channels,)
        out[keys["weight"]] = FormatKey(cb.weight_shape, cb.conv, f"{cb.conv}.weight")
        out[keys["bias"]] = FormatKey(channels, cb.conv, None, optional=True)
        out[keys["mean"]] = FormatKey(channels, cb.bn, f"{cb.bn}.running_mean")
        out[keys["variance"]] = FormatKey(channels, cb.bn, f"{cb.bn}.running_var")
        out[keys["factor"]] = FormatKey((1,), cb.bn, None)
        out[keys["gamma"]] = FormatKey(channels, cb.bn, f"{cb.bn}.weight")
        out[keys["beta"]] = FormatKey(channels, cb.bn, f"{cb.bn}.bias")
    for blob, (key, shape) in _caffe_fc_keys(plan).items():
        out[key] = FormatKey(shape, "fc", f"fc.{blob}")
    return out


def read_caffe(ledger: Ledger, plan: Plan) -> dict[str, Tensor]:
    """Our state_dict from the Caffe release's blobs (BatchNorm + Scale as one batch norm, a conv bias folded)."""
    ours: dict[str, Tensor] = {}
    for cb in _caffe_pairs(plan):
        keys, channels = _caffe_keys(cb), (cb.channels,)
        weight = ledger.take(keys["weight"], cb.weight_shape)
        bias = ledger.take(keys["bias"], channels, optional=True)
        mean = ledger.take(keys["mean"], channels)
        variance = ledger.take(keys["variance"], channels)
        factor = ledger.take(keys["factor"], (1,))
        gamma = ledger.take(keys["gamma"], channels)
        beta = ledger.take(keys["beta"], channels)
        if weight is None or mean is None or variance is None or factor is None or gamma is None or beta is None:
            continue  # the ledger has the problem
        if bias is None and keys["bias"] in ledger.source:
            continue
        # Caffe's batch_norm_layer.cpp: scale = blobs[2] == 0 ? 0 : 1 / blobs[2]; statistics = blobs[0:2] * scale.
        scale = torch.where(factor == 0, torch.zeros_like(factor), 1 / factor)
        running_mean = mean * scale
        if bias is not None:
            running_mean = running_mean - bias  # BN(Wx + b - m) = BN(Wx - (m - b))
        ours[f"{cb.conv}.weight"] = weight
        ours[f"{cb.bn}.weight"] = gamma
        ours[f"{cb.bn}.bias"] = beta
        ours[f"{cb.bn}.running_mean"] = running_mean
        ours[f"{cb.bn}.running_var"] = variance * scale
        ours[f"{cb.bn}.num_batches_tracked"] = torch.tensor(0, dtype=torch.long)
    for blob, (key, shape) in _caffe_fc_keys(plan).items():
        value = ledger.take(key, shape)
        if value is not None:
            ours[f"fc.{blob}"] = value
    return ours


def write_caffe(ours: Mapping[str, Tensor], plan: Plan) -> dict[str, Tensor]:
    """Our state_dict as the Caffe release's blobs (a moving-average factor of 1, no conv bias)."""
    caffe: dict[str, Tensor] = {}
    for cb in _caffe_pairs(plan):
        keys, mean = _caffe_keys(cb), ours[f"{cb.bn}.running_mean"]
        caffe[keys["weight"]] = ours[f"{cb.conv}.weight"]
        caffe[keys["mean"]] = mean
        caffe[keys["variance"]] = ours[f"{cb.bn}.running_var"]
        caffe[keys["factor"]] = torch.ones(1, dtype=mean.dtype, device=mean.device)
        caffe[keys["gamma"]] = ours[f"{cb.bn}.weight"]
        caffe[keys["beta"]] = ours[f"{cb.bn}.bias"]
    for blob, (key, _) in _caffe_fc_keys(plan).items():
        caffe[key] = ours[f"fc.{blob}"]
    return caffe


def caffe_params_to_state_dict(params: Mapping[str, Sequence[Any]]) -> dict[str, Tensor]:
    """pycaffe's ``net.params`` (layer -> blobs, as arrays) as the flat dict the ``"caffe"`` format reads.

    Three blobs are a BatchNorm's (``mean``, ``variance``, ``moving_average_factor``); one or two are a
    Convolution's, Scale's or InnerProduct's (``weight``, ``bias``).  E.g.
    ``caffe_params_to_state_dict({name: [b.data for b in blobs] for name, blobs in net.params.items()})``.
    """
    out: dict[str, Tensor] = {}
    for layer, blobs in params.items():
        names = _CAFFE_BN_BLOBS if len(blobs) == len(_CAFFE_BN_BLOBS) else _CAFFE_PARAM_BLOBS
        if not 1 <= len(blobs) <= len(_CAFFE_BN_BLOBS):
            raise ValueError(f"caffe layer {layer!r}: expected 1 to 3 blobs, got {len(blobs)}")
        for name, blob in zip(names, blobs, strict=False):
            out[f"{layer}.{name}"] = torch.as_tensor(blob)
    return out
