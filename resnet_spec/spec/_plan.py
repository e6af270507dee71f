"""The layout plan: every layer the built network has, in execution order, from the spec alone (no torch).

:func:`layout_plan` walks a resolved spec at an input size and lists each layer with its module name, kind, Table 1
row, block, input and output shapes (one image: channels, height, width), its window, and its parameters and
buffers with their shapes.  The builder makes its modules from it, the analytic counter counts it, the converters
take their keys and shapes from it, feature info and the measured counters' row attribution read it, and the diff
takes its expected side from it: a module name or a shape is written here once.

Names follow torchvision where the network is torchvision's (``conv1, bn1, layer1.0.conv1 ..., downsample.0/1,
fc``) and timm where timm is the reference for a family member (a deep stem ``conv1.0 .. conv1.6`` then ``bn1``;
an average-pool projection ``downsample.0`` pool, ``.1`` conv, ``.2`` BN; squeeze-and-excitation ``se.fc1/fc2``).
A pre-activation block (He et al. 2016) names each BN after the conv it precedes (``bn1`` before ``conv1``), and the
network's last BN-ReLU ``final_bn``/``relu``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field

from ._arithmetic import conv_output_size
from ._registry import as_spec
from ._types import Block, Conv, Pool, ResNetSpec, SelectiveKernel

__all__ = [
    "FeatureInfo", "Layer", "Plan", "PlannedBlock", "Shape", "defined_at", "feature_info", "feature_rows",
    "layout_plan",
]  # fmt: skip

Shape = tuple[int, int, int]  # (channels, height, width) of one image

# What a layer is.  ``module`` kinds are modules of the built network; the others are operations of a module's
# forward: the residual addition, squeeze-and-excitation's squeeze (a spatial mean) and its gate (sigmoid, scale), a
# selective-kernel unit's split of its input, its squeeze (the paths' sum, a spatial mean) and its selection (a
# softmax across the paths, their weighted sum).
MODULE_KINDS = ("conv", "bn", "relu", "pool", "global_pool", "fc", "identity", "zero_pad")
OPERATION_KINDS = ("add", "squeeze", "gate", "split", "select")


@dataclass(frozen=True)
class Layer:
    """One layer of the network: a module (conv, bn, ...) or an operation of its parent's forward (add, gate)."""

    name: str  # the module's name ("layer2.0.downsample.1"); for an operation, the module whose forward runs it
    kind: str  # one of MODULE_KINDS or OPERATION_KINDS
    row: str  # the Table 1 row: "conv1", "conv2_x", ..., "fc"
    block: str | None  # the paper's block name ("conv3_1") or None outside blocks
    role: str  # "stem", "branch", "shortcut", "se", "head"
    in_shape: Shape
    out_shape: Shape
    kernel: int = 1  # conv kernel or pooling window (square); 1 for elementwise layers
    stride: int = 1
    padding: int = 0
    groups: int = 1
    dilation: int = 1  # a conv's (a selective-kernel path's)
    bias: bool = False  # a conv with a bias (squeeze-and-excitation's 1x1 convs)
    detail: str = ""  # pools: "max", "avg", "blur"; "channels": ECA's 1-D conv across channels; "group": a GroupNorm
    ceil_mode: bool = False
    zero_fill: bool = False  # a max pool whose padding is zeros, not -inf (an explicit zero pad before the pool)
    extra_end: int = 0  # a pool's padding after the map beyond ``padding`` (an even blur filter: Zhang's BlurPool)
    weight_standardization: float | None = None  # a conv's: (w - mean) / sqrt(var + eps) per output channel
    params: tuple[tuple[str, tuple[int, ...]], ...] = ()  # (full parameter name, shape)
    buffers: tuple[tuple[str, tuple[int, ...]], ...] = ()  # (full buffer name, shape): BN statistics

    @property
    def module(self) -> bool:
        """Whether the builder makes a module of this name (else it is an operation of a module's forward)."""
        return self.kind in MODULE_KINDS

    @property
    def param_count(self) -> int:
        total = 0
        for _, shape in self.params:
            n = 1
            for d in shape:
                n *= d
            total += n
        return total


@dataclass(frozen=True)
class PlannedBlock:
    """One block's layers, and where the block sits."""

    spec: Block
    module: str  # "layer2.0"
    row: str  # "conv3_x"
    layers: tuple[Layer, ...]  # in execution order, names in full

    def relative(self, layer: Layer) -> str:
        """A layer's name inside the block: "layer2.0.downsample.1" -> "downsample.1"."""
        return layer.name[len(self.module) + 1 :]

    def role(self, role: str) -> tuple[Layer, ...]:
        return tuple(layer for layer in self.layers if layer.role == role)

    @property
    def unit_convs(self) -> tuple[tuple[Layer, ...], tuple[Layer, ...]]:
        """A selective-kernel unit's convs: (each path's, in order; the attention's: fc_reduce, fc_select); two
        empty tuples where the block has no unit."""
        convs = tuple(layer for layer in self.role("sk") if layer.kind == "conv")
        return convs[:-2], convs[-2:]


@dataclass(frozen=True)
class Plan:
    """Every layer of the network a spec builds, at one input size, in execution order."""

    spec: ResNetSpec
    input_size: tuple[int, int]
    in_channels: int
    num_classes: int  # 0: headless (fc is identity)
    stem: tuple[Layer, ...]  # conv1's row (and the stem pool, which Table 1 prints in conv2_x)
    blocks: tuple[PlannedBlock, ...]
    head: tuple[Layer, ...]  # a pre-activation net's last BN-ReLU, the global pool, the fc
    stage_modules: tuple[tuple[str, str], ...] = field(default=())  # (row, module) per stage: ("conv2_x", "layer1")

    @property
    def layers(self) -> Iterator[Layer]:
        """Every layer in execution order."""
        yield from self.stem
        for block in self.blocks:
            yield from block.layers
        yield from self.head

    def parameters(self) -> dict[str, tuple[int, ...]]:
        """Every parameter name of the built model with its shape (``named_parameters()`` order)."""
        return {name: shape for layer in self.layers for name, shape in layer.params}

    def state_dict(self) -> dict[str, tuple[int, ...]]:
        """Every state_dict key with its shape (parameters, then each module's buffers, as PyTorch orders them)."""
        out: dict[str, tuple[int, ...]] = {}
        for layer in self.layers:
            out.update(layer.params)
            out.update(layer.buffers)
        return out

    def modules(self) -> dict[str, str]:
        """Each module name the builder makes -> its kind."""
        return {layer.name: layer.kind for layer in self.layers if layer.module}

    def row_of_top_module(self) -> dict[str, str]:
        """Top-level module name -> Table 1 row (the measured counters attribute by it)."""
        rows: dict[str, str] = {}
        for layer in self.layers:
            rows.setdefault(layer.name.split(".")[0], layer.row)
        return rows

    @property
    def rows(self) -> tuple[str, ...]:
        return self.spec.rows


class _Planner:
    """Follows the activation shape through the network, appending one Layer per module or operation."""

    def __init__(self, spec: ResNetSpec, height: int, width: int) -> None:
        self.spec = spec
        self.input_size = (height, width)
        self.layers: list[Layer] = []

    def _check(self, row: str, name: str, what: str, shape: Shape) -> None:
        if shape[1] < 1 or shape[2] < 1:
            h, w = self.input_size
            raise ValueError(
                f"{self.spec.label}: input {h}x{w} is too small: row {row} ({name}, {what}) reaches an output of "
                f"{shape[1]}x{shape[2]}; expected at least 1x1 in every row"
            )

    def add(self, layer: Layer) -> Shape:
        self.layers.append(layer)
        return layer.out_shape

    def conv(
        self, name: str, row: str, block: str | None, role: str, shape: Shape, conv: Conv, bias: bool = False
    ) -> Shape:
        size = (conv_output_size(n, conv.kernel, conv.stride, conv.padding, conv.dilation) for n in shape[1:])
        out: Shape = (conv.out_channels, *size)  # type: ignore[assignment]
        what = f"{conv.kernel}x{conv.kernel} conv, stride {conv.stride}, padding {conv.padding}"
        what += f", dilation {conv.dilation}" if conv.dilation > 1 else ""
        self._check(row, name, what, out)
        weight = (conv.out_channels, shape[0] // conv.groups, conv.kernel, conv.kernel)
        params = ((f"{name}.weight", weight),) + (((f"{name}.bias", (conv.out_channels,)),) if bias else ())
        standardized = None if role == "se" else self.spec.weight_standardization  # BiT: every conv but the gate's
        return self.add(
            Layer(name, "conv", row, block, role, shape, out, conv.kernel, conv.stride, conv.padding, conv.groups,
                  conv.dilation, bias, params=params, weight_standardization=standardized)
        )  # fmt: skip

    def bn(self, name: str, row: str, block: str | None, role: str, shape: Shape) -> Shape:
        """The normalisation after (or, pre-activation, before) a conv: batch norm, or the spec's GroupNorm (its
        affine weight and bias per channel, no running statistics)."""
        c = (shape[0],)
        params = ((f"{name}.weight", c), (f"{name}.bias", c))
        groups = self.spec.group_norm
        if groups is not None:
            return self.add(Layer(name, "bn", row, block, role, shape, shape, groups=groups, detail="group",
                                  params=params))  # fmt: skip
        buffers = ((f"{name}.running_mean", c), (f"{name}.running_var", c), (f"{name}.num_batches_tracked", ()))
        return self.add(Layer(name, "bn", row, block, role, shape, shape, params=params, buffers=buffers))

    def simple(self, name: str, kind: str, row: str, block: str | None, role: str, shape: Shape) -> Shape:
        return self.add(Layer(name, kind, row, block, role, shape, shape))

    def pool(self, name: str, row: str, block: str | None, role: str, shape: Shape, pool: Pool) -> Shape:
        out: Shape = (shape[0], pool.output_size(shape[1]), pool.output_size(shape[2]))
        what = f"{pool.kernel}x{pool.kernel} {pool.kind} pool, stride {pool.stride}"
        if pool.kind == "blur":
            end = pool.padding + pool.extra_end
            padding = f"{pool.padding}" if not pool.extra_end else f"{pool.padding} before and {end} after"
            what += f", reflected padding {padding} (an input larger than {end})"
        self._check(row, name, what, out)
        return self.add(
            Layer(name, "pool", row, block, role, shape, out, pool.kernel, pool.stride, pool.padding,
                  detail=pool.kind, ceil_mode=pool.ceil_mode, zero_fill=pool.zero_fill, extra_end=pool.extra_end)
        )  # fmt: skip


def defined_at(spec: ResNetSpec, height: int, width: int) -> bool:
    """Whether the table's network runs at ``height`` x ``width``: every row's map is at least 1x1 and every block's
    shortcut meets its branch (an average pool rounding down on the branch, a conv rounding up on the shortcut, meet
    at even sizes only: timm's anti-aliased nets)."""
    try:
        layout_plan(spec, (height, width))
    except ValueError:
        return False
    return True


def layout_plan(
    spec: ResNetSpec,
    input_size: int | tuple[int, int] | None = None,
    *,
    num_classes: int | None = None,
    in_channels: int | None = None,
) -> Plan:
    """Every layer of the network ``spec`` builds, for one image of ``input_size`` (the table's when None).

    ``num_classes`` and ``in_channels`` replace the table's as :func:`resnet_spec.build` does (``num_classes=0``:
    headless).  Raises ``ValueError`` naming the row (and layer) whose output would be smaller than 1x1.
    """
    height, width = _hw(input_size, spec.input_size)
    classes = spec.head.num_classes if num_classes is None else _count(num_classes, "num_classes", 0)
    channels = spec.in_channels if in_channels is None else _count(in_channels, "in_channels", 1)
    planner = _Planner(spec, height, width)
    shape = _plan_stem(planner, spec, (channels, height, width))
    stem = tuple(planner.layers)
    blocks: list[PlannedBlock] = []
    stage_modules: list[tuple[str, str]] = []
    for layer_index, stage in enumerate(spec.stages, 1):
        stage_modules.append((stage.name, f"layer{layer_index}"))
        for index, block in enumerate(stage.blocks):
            start = len(planner.layers)
            module = f"layer{layer_index}.{index}"
            shape = _plan_block(planner, spec, block, module, stage.name, shape)
            blocks.append(PlannedBlock(block, module, stage.name, tuple(planner.layers[start:])))
    start = len(planner.layers)
    _plan_head(planner, spec, shape, classes)
    return Plan(
        spec, (height, width), channels, classes, stem, tuple(blocks), tuple(planner.layers[start:]),
        tuple(stage_modules),
    )  # fmt: skip


def _plan_stem(planner: _Planner, spec: ResNetSpec, shape: Shape) -> Shape:
    """One conv: conv1, bn1, relu (torchvision).  A deep stem: conv1.0 .. conv1.{3k} as a sequence of conv-BN-ReLU,
    the last conv's BN and ReLU then bn1, relu (timm's ResNet-C/D).  Pre-activation: the last conv has neither (the
    first block's BN-ReLU follows)."""
    convs = spec.stem.convs
    pre = spec.order == "pre"
    for i, conv in enumerate(convs):
        first_input = (
            conv if i else Conv(conv.kernel, shape[0], conv.out_channels, conv.stride, conv.padding, conv.groups)
        )
        last = i == len(convs) - 1
        name = "conv1" if len(convs) == 1 else f"conv1.{3 * i}"
        shape = planner.conv(name, "conv1", None, "stem", shape, first_input)
        if last and pre:
            break
        bn_name, relu_name = ("bn1", "relu") if last else (f"conv1.{3 * i + 1}", f"conv1.{3 * i + 2}")
        shape = planner.bn(bn_name, "conv1", None, "stem", shape)
        shape = planner.simple(relu_name, "relu", "conv1", None, "stem", shape)
    first_row = spec.stages[0].name  # Table 1 prints the stem's max pool in the conv2_x row
    if spec.stem.pool is None:
        return planner.simple("maxpool", "identity", first_row, None, "stem", shape)
    if spec.stem.anti_alias is None:
        return planner.pool("maxpool", first_row, None, "stem", shape, spec.stem.pool)
    shape = planner.pool("maxpool.0", first_row, None, "stem", shape, spec.stem.pool)  # timm: maxpool = Sequential
    return planner.pool("maxpool.1", first_row, None, "stem", shape, spec.stem.anti_alias)


def _plan_block(planner: _Planner, spec: ResNetSpec, block: Block, module: str, row: str, shape: Shape) -> Shape:
    block_in = shape
    if block.order == "pre":
        shape = planner.bn(f"{module}.bn1", row, block.name, "branch", shape)
        shape = planner.simple(f"{module}.relu", "relu", row, block.name, "branch", shape)
        for i, conv in enumerate(block.convs, 1):
            if i > 1:
                shape = planner.bn(f"{module}.bn{i}", row, block.name, "branch", shape)
                shape = planner.simple(f"{module}.relu", "relu", row, block.name, "branch", shape)
            shape = planner.conv(f"{module}.conv{i}", row, block.name, "branch", shape, conv)
    else:
        for i, conv in enumerate(block.convs, 1):
            if block.selective_kernel is not None and i - 1 == block.selective_at:
                unit = block.selective_kernel
                shape = _plan_selective_kernel(planner, block, unit, conv, f"{module}.conv{i}", row, shape)
                continue  # the unit's paths have their own BN and ReLU
            shape = planner.conv(f"{module}.conv{i}", row, block.name, "branch", shape, conv)
            shape = planner.bn(f"{module}.bn{i}", row, block.name, "branch", shape)
            if i < len(block.convs):
                shape = planner.simple(f"{module}.relu", "relu", row, block.name, "branch", shape)
            if block.anti_alias is not None and i - 1 == block.anti_alias_at:  # timm's ``aa`` after the act
                shape = planner.pool(f"{module}.aa", row, block.name, "branch", shape, block.anti_alias)
    if block.gated:
        shape = _plan_gate(planner, block, f"{module}.se", row, shape)
    _plan_shortcut(planner, spec, block, module, row, block_in, shape)
    if block.shortcut != "none":
        planner.simple(module, "add", row, block.name, "branch", shape)
    if block.order == "post":
        planner.simple(f"{module}.relu", "relu", row, block.name, "branch", shape)
    return shape


def _plan_selective_kernel(
    planner: _Planner, block: Block, unit: SelectiveKernel, conv: Conv, name: str, row: str, shape: Shape
) -> Shape:
    """A selective-kernel unit in place of ``conv`` (Li et al. 2019, Fig. 1), named as timm's SelectiveKernel: with a
    split input, its split (``name``: one part per path); each path ``paths.P.conv``, ``.bn``, ``.relu``; the squeeze
    (``attn``: the paths' sum, a spatial mean); ``attn.fc_reduce`` (1x1, no bias), ``attn.bn``, ``attn.relu``,
    ``attn.fc_select`` (1x1 to C x paths, no bias, path-major: channel c of path p is output p * C + c); the
    selection (``name``: a softmax across the paths, their weighted sum)."""
    role, paths = "sk", unit.paths(conv)
    part: Shape = (paths[0].in_channels, shape[1], shape[2])
    if unit.split_input:
        planner.add(Layer(name, "split", row, block.name, role, shape, part, detail=str(len(paths))))
    out = shape
    for p, path in enumerate(paths):
        out = planner.conv(f"{name}.paths.{p}.conv", row, block.name, role, part, path)
        out = planner.bn(f"{name}.paths.{p}.bn", row, block.name, role, out)
        out = planner.simple(f"{name}.paths.{p}.relu", "relu", row, block.name, role, out)
    channels, width = out[0], unit.attn_channels
    pooled: Shape = (channels, 1, 1)
    planner.add(Layer(f"{name}.attn", "squeeze", row, block.name, role, out, pooled, detail="paths"))
    s = planner.conv(f"{name}.attn.fc_reduce", row, block.name, role, pooled, Conv(1, channels, width, 1, 0))
    s = planner.bn(f"{name}.attn.bn", row, block.name, role, s)
    s = planner.simple(f"{name}.attn.relu", "relu", row, block.name, role, s)
    planner.conv(f"{name}.attn.fc_select", row, block.name, role, s, Conv(1, width, channels * len(paths), 1, 0))
    stacked: Shape = (channels * len(paths), out[1], out[2])
    return planner.add(Layer(name, "select", row, block.name, role, stacked, out, detail=str(len(paths))))


def _plan_gate(planner: _Planner, block: Block, name: str, row: str, shape: Shape) -> Shape:
    """The channel gate on the branch, before the addition: global average pool, the excitation, sigmoid,
    channel-wise scale.  Squeeze-and-excitation (Hu et al. 2018, Fig. 3): fc C -> C/r, ReLU, fc C/r -> C, 1x1 convs
    with bias on the pooled map (timm's SEModule: ``se.fc1``, ``se.fc2``).  ECA (Wang et al. 2020, Fig. 2): one 1-D
    conv of kernel k across the channels, one input and one output channel, no bias, padding (k - 1) / 2 (timm's
    EcaModule: ``se.conv``), its shapes (1, C, 1): one channel of length C."""
    channels = shape[0]
    pooled: Shape = (channels, 1, 1)
    planner.add(Layer(name, "squeeze", row, block.name, "se", shape, pooled, detail="avg"))
    if block.eca_kernel is not None:
        k, line = block.eca_kernel, (1, channels, 1)
        planner.add(Layer(f"{name}.conv", "conv", row, block.name, "se", line, line, k, 1, (k - 1) // 2,
                          detail="channels", params=((f"{name}.conv.weight", (1, 1, k)),)))  # fmt: skip
    else:
        reduced = block.se_channels if block.se_channels is not None else channels
        s = planner.conv(f"{name}.fc1", row, block.name, "se", pooled, Conv(1, channels, reduced, 1, 0), bias=True)
        s = planner.simple(f"{name}.relu", "relu", row, block.name, "se", s)
        planner.conv(f"{name}.fc2", row, block.name, "se", s, Conv(1, reduced, channels, 1, 0), bias=True)
    return planner.add(Layer(name, "gate", row, block.name, "se", shape, shape))


def _plan_shortcut(
    planner: _Planner, spec: ResNetSpec, block: Block, module: str, row: str, block_in: Shape, branch_out: Shape
) -> None:
    """The shortcut's layers.  Option B/C: 1x1 conv with the block's stride, BN (torchvision ``downsample.0/1``);
    anti-aliased (``shortcut_alias``, Zhang's antialiased-cnns): the blur with the stride, a stride-1 1x1 conv, BN
    (``downsample.0/1/2``).  ResNet-D (He et al. 2019, Fig. 2c): 2x2 average pool with the block's stride (where it is
    > 1; identity otherwise), a stride-1 1x1 conv, BN (timm ``downsample.0/1/2``).  A pre-activation projection has no
    BN."""
    name, kind = f"{module}.downsample", block.shortcut
    pre = block.order == "pre"
    if kind in ("identity", "none"):
        if kind == "identity":
            planner.simple(name, "identity", row, block.name, "shortcut", block_in)
        return
    if kind == "zero_pad":
        out: Shape = (block.out_channels, *branch_out[1:])
        planner.add(Layer(name, "zero_pad", row, block.name, "shortcut", block_in, out, stride=block.stride))
        return
    shape, index = block_in, 0
    conv_stride = block.stride
    if kind == "avg_projection":
        if block.stride > 1:
            # timm's ResNet-D: AvgPool2d(2, stride, ceil_mode=True, count_include_pad=False)
            pool = Pool("avg", 2, block.stride, 0, ceil_mode=True)
            shape = planner.pool(f"{name}.0", row, block.name, "shortcut", shape, pool)
        else:
            shape = planner.simple(f"{name}.0", "identity", row, block.name, "shortcut", shape)
        index, conv_stride = 1, 1
    elif block.shortcut_alias is not None:
        shape = planner.pool(f"{name}.0", row, block.name, "shortcut", shape, block.shortcut_alias)
        index, conv_stride = 1, 1
    projection = Conv(1, block.in_channels, block.out_channels, conv_stride, 0)
    shape = planner.conv(f"{name}.{index}", row, block.name, "shortcut", shape, projection)
    if not pre:
        shape = planner.bn(f"{name}.{index + 1}", row, block.name, "shortcut", shape)
    if shape != branch_out:
        h, w = planner.input_size
        raise ValueError(
            f"{spec.label}: block {block.name} at input {h}x{w}: the shortcut gives {shape} but the residual "
            f"branch {branch_out}; expected equal shapes"
        )


def _plan_head(planner: _Planner, spec: ResNetSpec, shape: Shape, classes: int) -> None:
    if spec.head.final_bn:  # He et al. 2016: the last unit's output goes through BN-ReLU before the pool
        shape = planner.bn("final_bn", "fc", None, "head", shape)
        shape = planner.simple("relu", "relu", "fc", None, "head", shape)
    pooled: Shape = (shape[0], 1, 1)
    planner.add(Layer("avgpool", "global_pool", "fc", None, "head", shape, pooled, shape[1], detail=spec.head.pool))
    if classes == 0:
        planner.simple("fc", "identity", "fc", None, "head", pooled)
        return
    params = (("fc.weight", (classes, shape[0])), ("fc.bias", (classes,)))
    planner.add(Layer("fc", "fc", "fc", None, "head", pooled, (classes, 1, 1), params=params))


def _count(value: object, what: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"expected {what} an integer >= {minimum}, got {value!r} ({type(value).__name__})")
    if value < minimum:
        raise ValueError(f"expected {what} an integer >= {minimum}, got {value}")
    return value


def _hw(input_size: object, default: int) -> tuple[int, int]:
    if input_size is None:
        return default, default
    if isinstance(input_size, int) and not isinstance(input_size, bool):
        n = _count(input_size, "input_size", 1)
        return n, n
    if isinstance(input_size, (tuple, list)) and len(input_size) == 2:
        return _count(input_size[0], "input_size height", 1), _count(input_size[1], "input_size width", 1)
    raise TypeError(f"expected input_size an int (square) or a (height, width) pair, got {input_size!r}")


# ---- backbone features: what a neck attaches to (from the plan; nothing is run) ----


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
    stem = [layer for layer in plan.stem if layer.module and layer.row == "conv1"]
    reduction = math.prod(layer.stride for layer in stem)
    infos = [FeatureInfo("conv1", stem[-1].name.split(".")[0], stem[-1].out_shape[0], reduction)]
    reduction = math.prod(layer.stride for layer in plan.stem)  # the stem pool too (and its anti-aliasing layer)
    for row, module in plan.stage_modules:
        reduction *= math.prod(block.spec.stride for block in plan.blocks if block.row == row)
        channels = next(b.spec.out_channels for b in reversed(plan.blocks) if b.row == row)
        infos.append(FeatureInfo(row, module, channels, reduction))
    return tuple(infos)


def feature_rows(spec: ResNetSpec) -> tuple[str, ...]:
    """The rows a backbone can return: ``("conv1", "conv2_x", ...)`` (every row but the classifier)."""
    return tuple(info.row for info in feature_info(spec))
