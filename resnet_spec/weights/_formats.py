"""Weights from other implementations: state_dicts converted between our names and other releases', checked.

Our names are torchvision's (``conv1, bn1, layer1.0.conv1, ..., layer2.0.downsample.0/1, fc``).  The formats
(:data:`FORMATS`) and what they are:

- ``"ours"``: our names; no check of where a block's stride sits.
- ``"torchvision"`` and ``"timm"``: the same names.  timm's ResNet (``timm/models/resnet.py``) was copied from
  torchvision and keeps its module names (``conv1``, ``bn1``, ``layerN.M.convK/bnK``, ``downsample.0/1``, ``fc``;
  "never liked this name, but weight compat requires it"), so the conversion is the identity after the checks.  Both
  put a downsampling block's stride on its 3x3 ("v1.5"): their weights belong in ``variant="v1.5"``.  One stem
  differs: where timm replaces the stem's max pool by a fourth conv (``replace_stem_pool``, ResNet-RS), that conv
  and its BN are ``maxpool.0/1`` and the third conv's BN is ``bn1`` (ours: ``conv1.9``, ``bn1`` and ``conv1.7``).
- ``"mmpretrain"``: ``backbone.`` + our names for the body, ``head.fc.weight/bias`` for the classifier
  (``ResNet`` backbone, ``LinearClsHead``); ``style='pytorch'``, its default, stride on the 3x3.
  ``"mmpretrain-caffe"`` is the same naming with ``style='caffe'`` (stride on the first 1x1).
- ``"caffe"``: the authors' release (KaimingHe/deep-residual-networks), stride on the first 1x1 ("v1", the
  paper's network): its layer names and blobs are :mod:`~resnet_spec.weights._caffe`'s.
- ``"timm-resnetv2"``: timm's pre-activation ResNet (``stem.conv``, ``stages.S.blocks.B.normK/convK``,
  ``downsample.conv``, ``norm``, ``head.fc`` a 1x1 conv), stride on the 3x3.
- ``"pytorchcv"``: pytorchcv's resnet, seresnet, resnext and seresnext (``pytorchcv/models/resnet.py``,
  ``seresnet.py``): ``features.init_block.conv.conv/bn`` for the stem, ``features.stageN.unitM.body.convK.conv/bn``
  for a block's conv-BN pairs (``unitM`` counts from 1), ``se.conv1/conv2``, ``identity_conv.conv/bn`` for a
  projection, ``output`` for the classifier.  Its unsuffixed ResNets (``resnet50``, ``seresnet50``:
  ``conv1_stride=True``) stride a downsampling block's first conv ("v1"); ``"pytorchcv-b"`` is the same naming with
  the stride on the 3x3 ("v1.5": its ``*b`` models, ``resnet50b``, its ResNeXts and ``sknet50``, whose
  selective-kernel unit is ``body.convK.branches.branchN`` (N from 2) with ``fc1.conv/bn`` and ``fc2``).
- ``"antialiased-cnns"``: Zhang's anti-aliased ResNets (adobe/antialiased-cnns, ``antialiased_cnns/resnet.py``):
  torchvision's names, except that the conv after a block's blur is the second module of a ``Sequential`` whose
  first is the blur (``layer2.0.conv3.1``; ours ``layer2.0.conv3``, the blur ``layer2.0.aa``), and each blur saves
  its fixed filter as a buffer ``filt`` of shape (C, 1, taps, taps) (``maxpool.1.filt``, ``layer2.0.conv3.0.filt``,
  ``layer2.0.downsample.0.filt``): read, each must be the binomial filter the spec's blur applies; written, it is.

Every conversion is checked, not guessed: each source key is used exactly once, each shape equals the one the spec
predicts, and the format's stride placement equals the spec's; otherwise :class:`ConversionError` lists every
missing, unexpected and mis-shaped key.  ``num_batches_tracked`` may be absent from a source (PyTorch's loader
tolerates that too); it is then 0, and Caffe has no such counter.  :func:`format_layout` lists the keys and shapes
a format holds for a network, each with the module of ours it fills (how a checkpoint file is identified).
"""

from __future__ import annotations

import pickle
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import torch
from torch import Tensor

from ..spec import Block, Layer, Plan, ResNetSpec, as_spec, binomial_filter, layout_plan, variants
from ._caffe import caffe_layout, read_caffe, write_caffe
from ._ledger import ConversionError, FormatKey, Ledger

if TYPE_CHECKING:
    from ..models import ResNet

__all__ = [
    "FORMATS",
    "WeightFormat",
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
    naming: Literal["ours", "timm", "mmpretrain", "caffe", "timm-resnetv2", "pytorchcv", "antialiased-cnns"]
    stride_on: StrideOn | None  # as variants.toml's stride_on; None: not checked (our own checkpoints)
    source: str  # where the naming comes from


FORMATS: Mapping[str, WeightFormat] = {
    f.name: f
    for f in (
        WeightFormat("ours", "ours", None, "resnet_spec.build: torchvision's module names"),
        WeightFormat("torchvision", "ours", "first_spatial", "torchvision.models.resnet (stride on the 3x3, v1.5)"),
        WeightFormat(
            "timm",
            "timm",
            "first_spatial",
            "timm/models/resnet.py: torchvision's names, stride on the 3x3; "
            "a stem conv replacing the max pool is maxpool.0/1",
        ),
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
        WeightFormat(
            "antialiased-cnns",
            "antialiased-cnns",
            "first_spatial",
            "antialiased_cnns/resnet.py (Zhang 2019): torchvision's names, the conv after a blur convK.1, each blur's "
            "fixed filter a buffer filt",
        ),
    )
}


# ----------------------------------------------------------------------------------------------------------------
# The layout a spec predicts


def _plan(spec: ResNetSpec, num_classes: int | None, in_channels: int | None) -> Plan:
    for name, value, minimum in (("num_classes", num_classes, 0), ("in_channels", in_channels, 1)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < minimum):
            raise ValueError(f"expected {name} an integer >= {minimum}, got {value!r}")
    return layout_plan(spec, spec.min_input_size(), num_classes=num_classes, in_channels=in_channels)


def state_dict_layout(
    spec: ResNetSpec | str, num_classes: int | None = None, in_channels: int | None = None
) -> dict[str, tuple[int, ...]]:
    """Every key of the state_dict the spec's model has (our names), with its shape, from the layout plan."""
    spec = as_spec(spec, "state_dict_layout")
    return _plan(spec, num_classes, in_channels).state_dict()


def format_layout(plan: Plan, source: str = "ours") -> dict[str, FormatKey]:
    """Every key a state_dict of the ``source`` format holds for the network ``plan`` lays out, in the plan's order.

    The keys and shapes :func:`convert_state_dict` reads (``plan`` carries the spec, ``num_classes`` and
    ``in_channels``: :func:`~resnet_spec.spec.layout_plan`); where the format's downsampling blocks carry their
    stride is not a matter of names and is checked there, not here.  Raises :class:`ConversionError` when the
    format has no names for the network (the Caffe release names no deep stem).
    """
    fmt = _format(source)
    if fmt.naming == "caffe":
        return caffe_layout(plan)
    layout = {
        _source_key(fmt.naming, key, plan): FormatKey(
            _source_shape(fmt.naming, key, shape), key.rpartition(".")[0], key, key.endswith(".num_batches_tracked")
        )
        for key, shape in plan.state_dict().items()
    }
    for key, layer in _saved_filters(fmt.naming, plan).items():
        layout[key] = FormatKey(_filter_shape(layer), layer.name, None)
    return layout


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


# ----------------------------------------------------------------------------------------------------------------
# Readers (a format -> ours) and writers (ours -> a format)


def _prefixes(naming: str) -> tuple[str, str]:
    """(body prefix, classifier prefix) of a naming that differs from ours only by prefixes."""
    return ("backbone.", "head.") if naming == "mmpretrain" else ("", "")


# Namings that rename our keys, each a table of (pattern, replacement) tried in order on our key; the replacement's
# fields are the block's place: {stage} (layerN's N), {stage0} (N - 1), {block} (layerN.M's M), {unit} (M + 1) and
# {k} (convK's, bnK's or se.fcK's K).  The rest of the key (".weight") is kept.
_BLOCK = r"^layer(?P<stage>\d+)\.(?P<block>\d+)\."
_UNIT = _BLOCK + r"conv(?P<k>\d+)\."  # a selective-kernel unit (the conv it stands in for)
_BODY = "features.stage{stage}.unit{unit}.body.conv{k}."  # pytorchcv's name of it
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
        (  # pytorchcv/models/resnet.py and seresnet.py: ConvBlock(conv, bn, activ) units, SEBlock(conv1, conv2);
            # sknet.py: SKConvBlock(branches.branchN, fc1, fc2)
            "pytorchcv",
            (
                (r"^conv1\.", "features.init_block.conv.conv."),
                (r"^bn1\.", "features.init_block.conv.bn."),
                (_UNIT + r"paths\.(?P<path>\d+)\.conv\.", _BODY + "branches.branch{branch}.conv."),
                (_UNIT + r"paths\.(?P<path>\d+)\.bn\.", _BODY + "branches.branch{branch}.bn."),
                (_UNIT + r"attn\.fc_reduce\.", _BODY + "fc1.conv."),
                (_UNIT + r"attn\.bn\.", _BODY + "fc1.bn."),
                (_UNIT + r"attn\.fc_select\.", _BODY + "fc2."),
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
    if "path" in fields:
        fields["branch"] = fields["path"] + 2  # pytorchcv's SKConvBlock names its paths branch2, branch3, ...
    return fields


# timm/models/resnet.py, ResNet.__init__: a stem of one conv or of three (stem_type 'deep', 'deep_tiered': conv1.0,
# .3, .6, then bn1), and with replace_stem_pool a fourth conv, its BN and ReLU as ``maxpool``
_TIMM_STEM_POOL = ((re.compile(r"^conv1\.7\."), "bn1."), (re.compile(r"^conv1\.9\."), "maxpool.0."),
                   (re.compile(r"^bn1\."), "maxpool.1."))  # fmt: skip


# timm/models/sknet.py: in a block with a selective-kernel unit, every other conv is a ConvNormAct (``convK.conv``,
# ``convK.bn``); the unit (``convK.paths.P.conv/bn``, ``convK.attn.fc_reduce/bn/fc_select``) has our names
_TIMM_CONV_NORM_ACT = re.compile(_BLOCK + r"(?P<kind>conv|bn)(?P<k>\d+)\.(?P<tensor>[a-z_]+)$")


def _timm_key(key: str, plan: Plan) -> str:
    match = _TIMM_CONV_NORM_ACT.match(key)
    if match is not None and _selective_blocks(plan):
        module = f"layer{match['stage']}.{match['block']}"
        if module in _selective_blocks(plan):
            part = "conv" if match["kind"] == "conv" else "bn"
            return f"{module}.conv{match['k']}.{part}.{match['tensor']}"
    convs, pool = len(plan.spec.stem.convs), plan.spec.stem.pool is not None
    if convs in (1, 3):
        return key
    if convs != 4 or pool:
        raise ConversionError(f"timm weights do not fit {plan.spec.label}",
                              ["a stem of 1 or 3 convs, or of 4 and no pool"])  # fmt: skip
    for pattern, replacement in _TIMM_STEM_POOL:
        match = pattern.match(key)
        if match is not None:
            return replacement + key[match.end() :]
    return key


def _selective_blocks(plan: Plan) -> frozenset[str]:
    """The blocks with a selective-kernel unit (their modules, ``layer2.0``)."""
    return frozenset(block.module for block in plan.blocks if block.spec.selective_kernel is not None)


def _blurred_modules(plan: Plan) -> dict[str, str]:
    """antialiased-cnns's names of the modules of ours a blur makes a Sequential of: the conv after a block's blur
    (``layer2.0.conv3`` -> ``layer2.0.conv3.1``) and the blur itself (``layer2.0.aa`` -> ``layer2.0.conv3.0``)."""
    names: dict[str, str] = {}
    for block in plan.blocks:
        if block.spec.anti_alias is not None:
            conv = f"{block.module}.conv{block.spec.anti_alias_at + 2}"
            names[conv] = f"{conv}.1"
            names[f"{block.module}.aa"] = f"{conv}.0"
    return names


def _saved_filters(naming: str, plan: Plan) -> dict[str, Layer]:
    """The fixed filters a naming saves, by key: antialiased-cnns's ``BlurPool`` keeps its filter as a buffer
    ``filt``; the other namings save none (timm's ``BlurPool2d`` does not, ours computes it).  Raises
    :class:`ConversionError` for antialiased-cnns on a network without blurs: its names are torchvision's there."""
    if naming != "antialiased-cnns":
        return {}
    names = _blurred_modules(plan)
    blurs = [layer for layer in plan.layers if layer.kind == "pool" and layer.detail == "blur"]
    if not blurs:
        raise ConversionError(f"antialiased-cnns weights do not fit {plan.spec.label}",
                              ['a network with anti-aliasing blurs (anti_alias = "blur")'])  # fmt: skip
    return {f"{names.get(layer.name, layer.name)}.filt": layer for layer in blurs}


def _filter_shape(layer: Layer) -> tuple[int, ...]:
    return (layer.in_shape[0], 1, layer.kernel, layer.kernel)


def _binomial(layer: Layer) -> Tensor:
    """The blur's filter on each channel, as antialiased-cnns saves it: (C, 1, taps, taps), float32."""
    row = torch.tensor(binomial_filter(layer.kernel), dtype=torch.float64)
    return (row[:, None] * row[None, :]).expand(_filter_shape(layer)).float()


def _source_key(naming: str, key: str, plan: Plan) -> str:
    """Our state_dict key in another naming."""
    if naming == "timm":
        return _timm_key(key, plan)
    if naming == "antialiased-cnns":
        module, _, name = key.rpartition(".")
        return f"{_blurred_modules(plan).get(module, module)}.{name}"
    if naming not in _RENAMINGS:
        body, head = _prefixes(naming)
        return (head if key.startswith("fc.") else body) + key
    if len(plan.spec.stem.convs) != 1:
        raise ConversionError(f"{naming} weights do not fit {plan.spec.label}", ["a one-conv stem"])
    for pattern, replacement in _RENAMINGS[naming]:
        match = pattern.match(key)
        if match is not None:
            return replacement.format(**_place(match)) + key[match.end() :]
    return key


def _source_shape(naming: str, key: str, shape: tuple[int, ...]) -> tuple[int, ...]:
    """The shape another naming stores a tensor in: timm's resnetv2 head is a 1x1 conv, (out, in, 1, 1)."""
    return (*shape, 1, 1) if naming == "timm-resnetv2" and key == "fc.weight" else shape


def _read_prefixed(ledger: Ledger, plan: Plan, naming: str) -> dict[str, Tensor]:
    ours: dict[str, Tensor] = {}
    for key, shape in plan.state_dict().items():
        source_key = _source_key(naming, key, plan)
        counter = key.endswith(".num_batches_tracked")
        value = ledger.take(source_key, _source_shape(naming, key, shape), optional=counter)
        if value is None and counter and source_key not in ledger.source:
            value = torch.tensor(0, dtype=torch.long)
        if value is not None:
            ours[key] = value if tuple(value.shape) == shape else value.reshape(shape)
    for key, layer in _saved_filters(naming, plan).items():
        value = ledger.take(key, _filter_shape(layer))
        if value is not None and not torch.allclose(value.double(), _binomial(layer).double(), rtol=0, atol=1e-6):
            ledger.problems.append(f"key {key!r}: expected the fixed {layer.kernel}-tap binomial filter of the "
                                   f"spec's blur {layer.name}, found other values")  # fmt: skip
    return ours


def _write_prefixed(ours: Mapping[str, Tensor], plan: Plan, naming: str) -> dict[str, Tensor]:
    out: dict[str, Tensor] = {}
    for key, shape in plan.state_dict().items():
        theirs = _source_shape(naming, key, shape)
        out[_source_key(naming, key, plan)] = ours[key] if theirs == shape else ours[key].reshape(theirs)
    for key, layer in _saved_filters(naming, plan).items():
        out[key] = _binomial(layer)
    return out


def _read(ledger: Ledger, plan: Plan, fmt: WeightFormat) -> dict[str, Tensor]:
    return read_caffe(ledger, plan) if fmt.naming == "caffe" else _read_prefixed(ledger, plan, fmt.naming)


def _write(ours: Mapping[str, Tensor], plan: Plan, fmt: WeightFormat) -> dict[str, Tensor]:
    return write_caffe(ours, plan) if fmt.naming == "caffe" else _write_prefixed(ours, plan, fmt.naming)


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
    ``"caffe"``, ``"timm-resnetv2"``, ``"pytorchcv"``, ``"pytorchcv-b"``, ``"antialiased-cnns"``).  ``num_classes``
    and ``in_channels`` are the model's if it was built with others than the table's (``num_classes=0``: no
    classifier weights).  Tensors are shared with the input where no arithmetic is needed.  Raises
    :class:`ConversionError` listing every problem: missing, unexpected or mis-shaped keys (or a saved filter that is
    not the spec's), or a stride placement of either format that differs from the spec's.
    """
    source_format, target_format = _format(source), _format(target)
    spec = as_spec(spec, "convert_state_dict")
    plan = _plan(spec, num_classes, in_channels)
    for fmt in (source_format, target_format):
        _check_stride_placement(spec, fmt)
    ledger = Ledger(state_dict)
    ours = _read(ledger, plan, source_format)
    ledger.finish(f"cannot read {source} weights as {spec.label}")
    return _write(ours, plan, target_format)


# ----------------------------------------------------------------------------------------------------------------
# Sources


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
