"""Weights from other implementations: state_dicts converted between our names and other releases', checked.

Our names are torchvision's (``conv1, bn1, layer1.0.conv1, ..., layer2.0.downsample.0/1, fc``).  The formats
(:data:`FORMATS`) and what they are:

- ``"ours"``: our names; no check of where a block's stride sits.
- ``"torchvision"`` and ``"timm"``: the same names.  timm's ResNet (``timm/models/resnet.py``) was copied from
  torchvision and keeps its module names (``conv1``, ``bn1``, ``layerN.M.convK/bnK``, ``downsample.0/1``, ``fc``;
  "never liked this name, but weight compat requires it"), so the conversion is the identity after the checks.  Both
  put a downsampling block's stride on its 3x3 ("v1.5"): their weights belong in ``variant="v1.5"``.
- ``"mmpretrain"``: ``backbone.`` + our names for the body, ``head.fc.weight/bias`` for the classifier
  (``ResNet`` backbone, ``LinearClsHead``); ``style='pytorch'``, its default, stride on the 3x3.
  ``"mmpretrain-caffe"`` is the same naming with ``style='caffe'`` (stride on the first 1x1).
- ``"caffe"``: the authors' release (KaimingHe/deep-residual-networks), stride on the first 1x1 ("v1", the
  paper's network).  Represented as a flat dict keyed ``"<layer>.<blob>"``: a Convolution's ``weight`` (and
  ``bias`` where the layer has one: the released ResNet-50's conv1 does, Caffe's default), a BatchNorm's ``mean``,
  ``variance`` and ``moving_average_factor`` (its three blobs as stored: the statistics are the first two divided by
  the third), a Scale's ``weight`` (gamma) and ``bias`` (beta), the InnerProduct's ``weight`` and ``bias``.
  :func:`caffe_params_to_state_dict` builds it from pycaffe's ``net.params``.  Layer names: ``conv1``,
  ``bn_conv1``, ``scale_conv1``; ``res2a_branch2a``, ``bn2a_branch2a``, ``scale2a_branch2a`` ...; ``res2a_branch1``
  for projections; ``fc1000``.  Each BatchNorm + Scale pair becomes one ``BatchNorm2d`` (eps 1e-5 on both sides);
  a conv bias is folded into the running mean, ``BN(Wx + b - m) = BN(Wx - (m - b))``, which is exact in eval mode.
- ``"timm-resnetv2"``: timm's pre-activation ResNet (``stem.conv``, ``stages.S.blocks.B.normK/convK``,
  ``downsample.conv``, ``norm``, ``head.fc`` a 1x1 conv), stride on the 3x3.
- ``"pytorchcv"``: pytorchcv's resnet, seresnet, resnext and seresnext (``pytorchcv/models/resnet.py``,
  ``seresnet.py``): ``features.init_block.conv.conv/bn`` for the stem, ``features.stageN.unitM.body.convK.conv/bn``
  for a block's conv-BN pairs (``unitM`` counts from 1), ``se.conv1/conv2``, ``identity_conv.conv/bn`` for a
  projection, ``output`` for the classifier.  Its unsuffixed ResNets (``resnet50``, ``seresnet50``:
  ``conv1_stride=True``) stride a downsampling block's first conv ("v1"); ``"pytorchcv-b"`` is the same naming with
  the stride on the 3x3 ("v1.5": its ``*b`` models, ``resnet50b``, and its ResNeXts).

Every conversion is checked, not guessed: each source key is used exactly once, each shape equals the one the spec
predicts, and the format's stride placement equals the spec's; otherwise :class:`ConversionError` lists every
missing, unexpected and mis-shaped key.  ``num_batches_tracked`` may be absent from a source (PyTorch's loader
tolerates that too); it is then 0, and Caffe has no such counter.  :func:`format_layout` lists the keys and shapes
a format holds for a network, each with the module of ours it fills (how a checkpoint file is identified).

Caffe block names (``res4b22``) follow the released prototxts, derived from a network's repeats: a network whose
stages all have at most 6 blocks (ResNet-50, ``res4a`` ... ``res4f``) letters every block; a deeper one
(ResNet-101/152) names the blocks of each stage longer than 3 blocks ``a, b1, b2, ...`` (``res3b1``, ``res4b22``)
and keeps letters for its 3-block stages (``res2a`` ... ``res2c``, ``res5a`` ... ``res5c``).
"""

from __future__ import annotations

import pickle
import re
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import torch
from torch import Tensor

from .spec import Block, Plan, ResNetSpec, Stage, as_spec, layout_plan, variants

if TYPE_CHECKING:
    from .model import ResNet

__all__ = [
    "FORMATS",
    "ConversionError",
    "FormatKey",
    "WeightFormat",
    "caffe_block_names",
    "caffe_params_to_state_dict",
    "convert_state_dict",
    "format_layout",
    "load_checkpoint",
    "state_dict_layout",
]

StrideOn = Literal["first", "first_spatial"]


@dataclass(frozen=True)
class WeightFormat:
    """A naming of a ResNet's weights, and where its downsampling blocks carry their stride."""

    name: str
    naming: Literal["ours", "mmpretrain", "caffe", "timm-resnetv2", "pytorchcv"]
    stride_on: StrideOn | None  # as variants.toml's stride_on; None: not checked (our own checkpoints)
    source: str  # where the naming comes from


FORMATS: Mapping[str, WeightFormat] = {
    f.name: f
    for f in (
        WeightFormat("ours", "ours", None, "resnet_spec.build: torchvision's module names"),
        WeightFormat("torchvision", "ours", "first_spatial", "torchvision.models.resnet (stride on the 3x3, v1.5)"),
        WeightFormat("timm", "ours", "first_spatial", "timm/models/resnet.py: torchvision's names, stride on the 3x3"),
        WeightFormat("mmpretrain", "mmpretrain", "first_spatial", "mmpretrain ResNet, style='pytorch'; LinearClsHead"),
        WeightFormat("mmpretrain-caffe", "mmpretrain", "first", "mmpretrain ResNet, style='caffe'; LinearClsHead"),
        WeightFormat("caffe", "caffe", "first", "KaimingHe/deep-residual-networks prototxts (stride on the 1x1)"),
        WeightFormat(
            "timm-resnetv2",
            "timm-resnetv2",
            "first_spatial",
            "timm/models/resnetv2.py, preact=True: stem.conv, stages.S.blocks.B.normK/convK, downsample.conv, norm, "
            "head.fc (a 1x1 conv); stride on the 3x3",
        ),
        WeightFormat(
            "pytorchcv",
            "pytorchcv",
            "first",
            "pytorchcv/models/resnet.py, seresnet.py: features.init_block, features.stageN.unitM.body.convK.conv/bn, "
            "se.conv1/2, identity_conv, output; stride on the first conv (conv1_stride=True: resnetN, seresnetN)",
        ),
        WeightFormat(
            "pytorchcv-b",
            "pytorchcv",
            "first_spatial",
            "pytorchcv's names (format pytorchcv); stride on the 3x3 (conv1_stride=False: resnetNb, seresnetNb; and "
            "resnext, seresnext)",
        ),
    )
}

# The released prototxts' block naming (see the module docstring): the longest stage ResNet-50 letters (res4a..f),
# and the longest stage a deeper release still letters (res2a..c, res5a..c of ResNet-101/152).
_CAFFE_MAX_LETTERED_NETWORK_STAGE = 6
_CAFFE_MAX_LETTERED_STAGE_IN_NUMBERED_NETWORK = 3
_CAFFE_BN_BLOBS = ("mean", "variance", "moving_average_factor")  # BatchNorm's blobs, in Caffe's order
_CAFFE_PARAM_BLOBS = ("weight", "bias")  # Convolution, Scale, InnerProduct
_STAGE_NUMBER = re.compile(r"^conv(\d+)_x$")
_MAX_LISTED = 40  # problems listed per kind in a ConversionError before "... and N more"


class ConversionError(ValueError):
    """A state_dict that does not fit the spec: lists every missing, unexpected and mis-shaped key."""

    def __init__(self, what: str, problems: Sequence[str]) -> None:
        self.problems = tuple(problems)
        shown = list(self.problems[:_MAX_LISTED])
        if len(self.problems) > _MAX_LISTED:
            shown.append(f"... and {len(self.problems) - _MAX_LISTED} more")
        super().__init__(f"{what}: {len(self.problems)} problem(s):\n  " + "\n  ".join(shown))


# ----------------------------------------------------------------------------------------------------------------
# The layout a spec predicts


@dataclass(frozen=True)
class _ConvBN:
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


@dataclass(frozen=True)
class _Layout:
    spec: ResNetSpec
    plan: Plan
    convs: tuple[_ConvBN, ...] | str  # conv-BN pairs under Caffe's names too; a str: why there are none
    fc_shape: tuple[int, int] | None  # (num_classes, features); None for a headless model
    caffe_fc: str  # "fc1000"


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


def _layout(spec: ResNetSpec, num_classes: int | None, in_channels: int | None) -> _Layout:
    for name, value, minimum in (("num_classes", num_classes, 0), ("in_channels", in_channels, 1)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < minimum):
            raise ValueError(f"expected {name} an integer >= {minimum}, got {value!r}")
    return _layout_of(layout_plan(spec, spec.min_input_size(), num_classes=num_classes, in_channels=in_channels))


def _layout_of(plan: Plan) -> _Layout:
    fc = [layer for layer in plan.head if layer.kind == "fc"]
    fc_shape = (plan.num_classes, plan.spec.out_channels) if fc else None
    return _Layout(plan.spec, plan, _caffe_convs(plan), fc_shape, f"fc{plan.num_classes}")


def _caffe_convs(plan: Plan) -> tuple[_ConvBN, ...] | str:
    """Each conv-BN pair under our names and the Caffe release's, or why the release's naming has none for it."""
    spec = plan.spec
    if spec.order != "post" or len(spec.stem.convs) != 1 or spec.se_reduction is not None:
        return "the Caffe release names only one-conv stems and post-activation blocks without SE"
    if any(block.spec.shortcut not in ("identity", "projection", "none") for block in plan.blocks):
        return "the Caffe release names only identity and projection shortcuts"
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
        _ConvBN(conv.name, bn.name, caffe_conv, caffe_bn, caffe_scale, conv.params[0][1])  # type: ignore[arg-type]
        for caffe_conv, caffe_bn, caffe_scale, conv, bn in pairs
    )


def _ours_layout(layout: _Layout) -> dict[str, tuple[int, ...]]:
    return layout.plan.state_dict()


def state_dict_layout(
    spec: ResNetSpec | str, num_classes: int | None = None, in_channels: int | None = None
) -> dict[str, tuple[int, ...]]:
    """Every key of the state_dict the spec's model has (our names), with its shape, from the layout plan."""
    spec = as_spec(spec, "state_dict_layout")
    return _ours_layout(_layout(spec, num_classes, in_channels))


@dataclass(frozen=True)
class FormatKey:
    """One tensor of a weight format's state_dict: its shape, and the module of ours (a layer of the plan) it fills."""

    shape: tuple[int, ...]  # as the format stores it
    module: str  # the plan's layer it belongs to ("layer1.0.bn1"): its row and block
    ours: str | None  # our state_dict key it becomes; None: folded into others (Caffe's conv bias, BN factor)
    optional: bool = False  # may be absent: num_batches_tracked (PyTorch's loader allows that), a Caffe conv bias


def format_layout(plan: Plan, source: str = "ours") -> dict[str, FormatKey]:
    """Every key a state_dict of the ``source`` format holds for the network ``plan`` lays out, in the plan's order.

    The keys and shapes :func:`convert_state_dict` reads (``plan`` carries the spec, ``num_classes`` and
    ``in_channels``: :func:`~resnet_spec.spec.layout_plan`); where the format's downsampling blocks carry their
    stride is not a matter of names and is checked there, not here.  Raises :class:`ConversionError` when the
    format has no names for the network (the Caffe release names no deep stem).
    """
    fmt = _format(source)
    layout = _layout_of(plan)
    if fmt.naming == "caffe":
        return _caffe_layout(layout)
    return {
        _source_key(fmt.naming, key, layout): FormatKey(
            _source_shape(fmt.naming, key, shape), key.rpartition(".")[0], key, key.endswith(".num_batches_tracked")
        )
        for key, shape in _ours_layout(layout).items()
    }


# ----------------------------------------------------------------------------------------------------------------
# Checks


def _strided_conv(block: Block) -> int | None:
    strided = [i for i, conv in enumerate(block.convs) if conv.stride > 1]
    return strided[0] if strided else None


def _expected_strided_conv(block: Block, stride_on: StrideOn) -> int:
    if stride_on == "first":
        return 0
    return next((i for i, conv in enumerate(block.convs) if conv.kernel > 1), 0)


def _check_stride_placement(spec: ResNetSpec, fmt: WeightFormat) -> None:
    """Weights trained with the stride on another conv would load and silently compute another function."""
    if fmt.stride_on is None:
        return
    problems = []
    for block in spec.blocks:
        found = _strided_conv(block)
        expected = _expected_strided_conv(block, fmt.stride_on)
        if found is not None and found != expected:
            problems.append(
                f"block {block.name}: the spec strides conv {found + 1} of {len(block.convs)}, "
                f"{fmt.name} weights stride conv {expected + 1} ({fmt.source})"
            )
    if problems:
        variant = next(v.name for v in variants().strides.values() if v.stride_on == fmt.stride_on)
        raise ConversionError(
            f"{fmt.name} weights do not fit {spec.label}: they put the stride on the {fmt.stride_on.replace('_', ' ')} "
            f"conv; build with variant={variant!r}",
            problems,
        )


def _format(name: str) -> WeightFormat:
    if name not in FORMATS:
        raise ValueError(f"expected a weight format among {', '.join(FORMATS)}, got {name!r}")
    return FORMATS[name]


class _Ledger:
    """Takes keys out of a source state_dict, recording what is missing, mis-shaped, not a tensor, or left over."""

    def __init__(self, source: Mapping[str, Any]) -> None:
        if not isinstance(source, Mapping):
            raise TypeError(f"expected a state_dict (a mapping of names to tensors), got {type(source).__name__}")
        self.source = source
        self.used: set[str] = set()
        self.problems: list[str] = []

    def take(self, key: str, shape: tuple[int, ...], *, optional: bool = False) -> Tensor | None:
        if key not in self.source:
            if not optional:
                self.problems.append(f"missing key {key!r} (expected shape {shape})")
            return None
        self.used.add(key)
        value = self.source[key]
        if not isinstance(value, Tensor):
            try:
                value = torch.as_tensor(value)  # numpy arrays from pycaffe
            except (TypeError, ValueError, RuntimeError):
                self.problems.append(f"key {key!r}: expected a tensor of shape {shape}, found {type(value).__name__}")
                return None
        if tuple(value.shape) != shape:
            self.problems.append(f"key {key!r}: expected shape {shape}, found {tuple(value.shape)}")
            return None
        return value

    def finish(self, what: str) -> None:
        for key in self.source:
            if key not in self.used:
                value = self.source[key]
                shape = f" (shape {tuple(value.shape)})" if isinstance(value, Tensor) else ""
                self.problems.append(f"unexpected key {key!r}{shape}: the spec has no such tensor")
        if self.problems:
            raise ConversionError(what, self.problems)


# ----------------------------------------------------------------------------------------------------------------
# Readers (a format -> ours) and writers (ours -> a format)


def _prefixes(naming: str) -> tuple[str, str]:
    """(body prefix, classifier prefix) of a naming that differs from ours only by prefixes."""
    return ("backbone.", "head.") if naming == "mmpretrain" else ("", "")


# Namings that rename our keys, each a table of (pattern, replacement) tried in order on our key; the replacement's
# fields are the block's place: {stage} (layerN's N), {stage0} (N - 1), {block} (layerN.M's M), {unit} (M + 1) and
# {k} (convK's, bnK's or se.fcK's K).  The rest of the key (".weight") is kept.
_BLOCK = r"^layer(?P<stage>\d+)\.(?P<block>\d+)\."
_RENAMINGS: Mapping[str, tuple[tuple[re.Pattern[str], str], ...]] = {
    naming: tuple((re.compile(pattern), replacement) for pattern, replacement in rules)
    for naming, rules in (
        (  # timm/models/resnetv2.py, preact=True
            "timm-resnetv2",
            (
                (r"^conv1\.", "stem.conv."),
                (_BLOCK + r"bn(?P<k>\d+)\.", "stages.{stage0}.blocks.{block}.norm{k}."),
                (_BLOCK + r"conv(?P<k>\d+)\.", "stages.{stage0}.blocks.{block}.conv{k}."),
                (_BLOCK + r"downsample\.0\.", "stages.{stage0}.blocks.{block}.downsample.conv."),
                (r"^final_bn\.", "norm."),
                (r"^fc\.", "head.fc."),
            ),
        ),
        (  # pytorchcv/models/resnet.py and seresnet.py: ConvBlock(conv, bn, activ) units, SEBlock(conv1, conv2)
            "pytorchcv",
            (
                (r"^conv1\.", "features.init_block.conv.conv."),
                (r"^bn1\.", "features.init_block.conv.bn."),
                (_BLOCK + r"conv(?P<k>\d+)\.", "features.stage{stage}.unit{unit}.body.conv{k}.conv."),
                (_BLOCK + r"bn(?P<k>\d+)\.", "features.stage{stage}.unit{unit}.body.conv{k}.bn."),
                (_BLOCK + r"se\.fc(?P<k>\d+)\.", "features.stage{stage}.unit{unit}.se.conv{k}."),
                (_BLOCK + r"downsample\.0\.", "features.stage{stage}.unit{unit}.identity_conv.conv."),
                (_BLOCK + r"downsample\.1\.", "features.stage{stage}.unit{unit}.identity_conv.bn."),
                (r"^fc\.", "output."),
            ),
        ),
    )
}


def _place(match: re.Match[str]) -> dict[str, int]:
    """The fields of a renaming's replacement, from the groups its pattern matched."""
    fields = {name: int(value) for name, value in match.groupdict().items()}
    if "stage" in fields:
        fields["stage0"] = fields["stage"] - 1
    if "block" in fields:
        fields["unit"] = fields["block"] + 1
    return fields


def _source_key(naming: str, key: str, layout: _Layout) -> str:
    """Our state_dict key in another naming."""
    if naming not in _RENAMINGS:
        body, head = _prefixes(naming)
        return (head if key.startswith("fc.") else body) + key
    if len(layout.spec.stem.convs) != 1:
        raise ConversionError(f"{naming} weights do not fit {layout.spec.label}", ["a one-conv stem"])
    for pattern, replacement in _RENAMINGS[naming]:
        match = pattern.match(key)
        if match is not None:
            return replacement.format(**_place(match)) + key[match.end() :]
    return key


def _source_shape(naming: str, key: str, shape: tuple[int, ...]) -> tuple[int, ...]:
    """The shape another naming stores a tensor in: timm's resnetv2 head is a 1x1 conv, (out, in, 1, 1)."""
    return (*shape, 1, 1) if naming == "timm-resnetv2" and key == "fc.weight" else shape


def _read_prefixed(ledger: _Ledger, layout: _Layout, naming: str) -> dict[str, Tensor]:
    ours: dict[str, Tensor] = {}
    for key, shape in _ours_layout(layout).items():
        source_key = _source_key(naming, key, layout)
        counter = key.endswith(".num_batches_tracked")
        value = ledger.take(source_key, _source_shape(naming, key, shape), optional=counter)
        if value is None and counter and source_key not in ledger.source:
            value = torch.tensor(0, dtype=torch.long)
        if value is not None:
            ours[key] = value if tuple(value.shape) == shape else value.reshape(shape)
    return ours


def _write_prefixed(ours: Mapping[str, Tensor], layout: _Layout, naming: str) -> dict[str, Tensor]:
    out: dict[str, Tensor] = {}
    for key, shape in _ours_layout(layout).items():
        theirs = _source_shape(naming, key, shape)
        out[_source_key(naming, key, layout)] = ours[key] if theirs == shape else ours[key].reshape(theirs)
    return out


def _caffe_pairs(layout: _Layout) -> tuple[_ConvBN, ...]:
    if isinstance(layout.convs, str):
        raise ConversionError(f"caffe weights do not fit {layout.spec.label}", [layout.convs])
    return layout.convs


def _caffe_keys(cb: _ConvBN) -> dict[str, str]:
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


def _caffe_fc_keys(layout: _Layout) -> dict[str, tuple[str, tuple[int, ...]]]:
    """The InnerProduct's blobs: ours ("weight", "bias") -> (Caffe key, shape); none for a headless model."""
    if layout.fc_shape is None:
        return {}
    return {blob: (f"{layout.caffe_fc}.{blob}", shape) for blob, shape in
            (("weight", layout.fc_shape), ("bias", layout.fc_shape[:1]))}  # fmt: skip


def _caffe_layout(layout: _Layout) -> dict[str, FormatKey]:
    out: dict[str, FormatKey] = {}
    for cb in _caffe_pairs(layout):
        keys, channels = _caffe_keys(cb), (cb.channels,)
        out[keys["weight"]] = FormatKey(cb.weight_shape, cb.conv, f"{cb.conv}.weight")
        out[keys["bias"]] = FormatKey(channels, cb.conv, None, optional=True)
        out[keys["mean"]] = FormatKey(channels, cb.bn, f"{cb.bn}.running_mean")
        out[keys["variance"]] = FormatKey(channels, cb.bn, f"{cb.bn}.running_var")
        out[keys["factor"]] = FormatKey((1,), cb.bn, None)
        out[keys["gamma"]] = FormatKey(channels, cb.bn, f"{cb.bn}.weight")
        out[keys["beta"]] = FormatKey(channels, cb.bn, f"{cb.bn}.bias")
    for blob, (key, shape) in _caffe_fc_keys(layout).items():
        out[key] = FormatKey(shape, "fc", f"fc.{blob}")
    return out


def _read_caffe(ledger: _Ledger, layout: _Layout) -> dict[str, Tensor]:
    ours: dict[str, Tensor] = {}
    for cb in _caffe_pairs(layout):
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
    for blob, (key, shape) in _caffe_fc_keys(layout).items():
        value = ledger.take(key, shape)
        if value is not None:
            ours[f"fc.{blob}"] = value
    return ours


def _write_caffe(ours: Mapping[str, Tensor], layout: _Layout) -> dict[str, Tensor]:
    caffe: dict[str, Tensor] = {}
    for cb in _caffe_pairs(layout):
        keys, mean = _caffe_keys(cb), ours[f"{cb.bn}.running_mean"]
        caffe[keys["weight"]] = ours[f"{cb.conv}.weight"]
        caffe[keys["mean"]] = mean
        caffe[keys["variance"]] = ours[f"{cb.bn}.running_var"]
        caffe[keys["factor"]] = torch.ones(1, dtype=mean.dtype, device=mean.device)
        caffe[keys["gamma"]] = ours[f"{cb.bn}.weight"]
        caffe[keys["beta"]] = ours[f"{cb.bn}.bias"]
    for blob, (key, _) in _caffe_fc_keys(layout).items():
        caffe[key] = ours[f"fc.{blob}"]
    return caffe


def _read(ledger: _Ledger, layout: _Layout, fmt: WeightFormat) -> dict[str, Tensor]:
    return _read_caffe(ledger, layout) if fmt.naming == "caffe" else _read_prefixed(ledger, layout, fmt.naming)


def _write(ours: Mapping[str, Tensor], layout: _Layout, fmt: WeightFormat) -> dict[str, Tensor]:
    return _write_caffe(ours, layout) if fmt.naming == "caffe" else _write_prefixed(ours, layout, fmt.naming)


def convert_state_dict(
    state_dict: Mapping[str, Any],
    spec: ResNetSpec | str,
    *,
    source: str = "ours",
    target: str = "ours",
    num_classes: int | None = None,
    in_channels: int | None = None,
) -> dict[str, Tensor]:
    """Convert ``state_dict`` from the ``source`` format's names to the ``target``'s, for the network ``spec`` builds.

    Formats: :data:`FORMATS` (``"ours"``, ``"torchvision"``, ``"timm"``, ``"mmpretrain"``, ``"mmpretrain-caffe"``,
    ``"caffe"``, ``"timm-resnetv2"``, ``"pytorchcv"``, ``"pytorchcv-b"``).  ``num_classes`` and ``in_channels`` are
    the model's if it was built with others than the table's (``num_classes=0``: no classifier weights).  Tensors
    are shared with the input where no arithmetic is needed.  Raises :class:`ConversionError` listing every problem:
    missing, unexpected or mis-shaped keys, or a stride placement of either format that differs from the spec's.
    """
    source_format, target_format = _format(source), _format(target)
    spec = as_spec(spec, "convert_state_dict")
    layout = _layout(spec, num_classes, in_channels)
    for fmt in (source_format, target_format):
        _check_stride_placement(spec, fmt)
    ledger = _Ledger(state_dict)
    ours = _read(ledger, layout, source_format)
    ledger.finish(f"cannot read {source} weights as {spec.label}")
    return _write(ours, layout, target_format)


# ----------------------------------------------------------------------------------------------------------------
# Sources


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


def _unwrap(obj: object, path: Path) -> Mapping[str, Any]:
    """A state_dict, or the one under "state_dict" (mmengine, Lightning) or "model" (torchvision's references)."""
    if isinstance(obj, Mapping):
        if obj and all(isinstance(v, Tensor) for v in obj.values()):
            return obj
        for key in ("state_dict", "model"):
            inner = obj.get(key)
            if isinstance(inner, Mapping) and inner and all(isinstance(v, Tensor) for v in inner.values()):
                return inner
        found = ", ".join(repr(k) for k in list(obj)[:10])
        raise ValueError(
            f"{path}: expected a state_dict (names -> tensors) or a dict holding one under 'state_dict' or 'model', "
            f"found keys {found}"
        )
    raise ValueError(f"{path}: expected a state_dict, found {type(obj).__name__}")


def load_checkpoint(path: str | Path, model: ResNet, source: str = "ours") -> ResNet:
    """Load a checkpoint file of the ``source`` format into ``model`` (strictly) and return the model.

    Read with ``torch.load(..., weights_only=True)``: tensors and plain containers only, no code runs.  The file
    holds a state_dict, or a dict with one under ``"state_dict"`` or ``"model"``.  Raises :class:`ConversionError`
    for weights that do not fit the model's spec.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"load_checkpoint: expected path a checkpoint file, got {str(path)!r} (no such file)")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise ValueError(
            f"{path}: torch.load(weights_only=True) refused it (it holds more than tensors and plain containers); "
            f"extract the state_dict where you trust the file. Detail: {e}"
        ) from None
    except (EOFError, IndexError, KeyError, RuntimeError, OSError) as e:  # empty, truncated, text, not a zip
        raise ValueError(
            f"{path}: expected a checkpoint written by torch.save, but torch.load cannot read it "
            f"({'an empty file' if path.stat().st_size == 0 else f'{type(e).__name__}: {e}'})"
        ) from None
    converted = convert_state_dict(
        _unwrap(obj, path),
        model.spec,
        source=source,
        num_classes=model.num_classes,
        in_channels=model.in_channels,
    )
    model.load_state_dict(converted)
    return model
