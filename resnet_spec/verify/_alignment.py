"""The alignment: where every operator and every tensor the reader found sits in the layout plan.

The reader (:mod:`~resnet_spec.verify._read_trace`) rebuilds the Table 1 view of a model from its canonical trace;
the plan (:func:`resnet_spec.spec.layout_plan`) lists every layer the table's network has.  :func:`align` puts the
two side by side once, and everything on the verify side reads the result:

* the found blocks are aligned to the table's block sequence by the fewest edits (:func:`align_blocks`), so every
  found block has its row and its planned block (or none: an extra block), and every planned block its found one (or
  none: a missing block);
* every operator of a found unit (conv, its norm, its activation; a block's pre-activation, shortcut, addition,
  squeeze-and-excitation; the stem's pool; the head's norm, pool and fc) gets its :class:`Place`: the row, the
  block, the planned layer, and the user's own module that ran it;
* every parameter and buffer the model uses gets the planned tensors it fills (:attr:`Alignment.tensors`): by its
  operator's argument role where the operator says (a convolution's weight and bias, a batch norm's four tensors),
  or as "one of this layer's" where only the numbers can tell (a batch norm written by hand, a convolution written
  as a matrix product);
* every row has the value it ends with (:attr:`Alignment.row_ends`), where the functional check compares it.

Two readings of the table's own ambiguities are settled here, once, against the plan: a network without additions
is one chain of convs, cut into the table's blocks; in a pre-activation network without a stem pool, the BN-ReLU
after the stem conv is the first block's pre-activation.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import MappingProxyType

from ..spec import Layer, Plan, PlannedBlock, ResNetSpec, layout_plan
from ._canonical import common_module
from ._read_trace import ConvUnit, FoundBlock, FoundNetwork, FoundSelectiveKernel
from ._trace import Op, Trace

__all__ = ["Alignment", "BlockMatch", "Place", "Slot", "align", "align_blocks"]


@dataclass(frozen=True)
class Place:
    """Where one found operator sits: the table's row and block, the planned layer, and the user's module."""

    row: str  # conv1, conv2_x, ..., fc
    block: str | None  # the table's block (conv3_1), None outside blocks
    layer: str | None  # the planned layer's name ("layer2.0.conv1"); None where the plan has no layer for it
    module: str  # the user's module that ran the operator ("" for the model's own forward)
    position: int = -1  # the planned layer's position in the plan's execution order (-1 with no layer)


@dataclass(frozen=True)
class Slot:
    """A planned tensor a model's tensor fills."""

    layer: str  # the planned layer
    tensor: str | None  # the planned tensor's full name; None: one of the layer's, which only the numbers can tell
    role: str  # weight, bias, running_mean, running_var, or "" (unknown)


@dataclass(frozen=True)
class BlockMatch:
    """One pair of the block alignment: a planned block and the found block in its place (either may be None)."""

    row: str
    planned: PlannedBlock | None
    found: FoundBlock | None
    module: str  # the user's module of the found block ("layer2.0"), "" where it has none of its own

    @property
    def name(self) -> str | None:
        return self.planned.spec.name if self.planned is not None else None


@dataclass(frozen=True)
class Alignment:
    """The found network laid against the plan (see the module docstring)."""

    spec: ResNetSpec
    plan: Plan
    input_size: tuple[int, int]
    found: FoundNetwork  # the reading with the plan's two settlements applied (see the module docstring)
    headless: bool
    blocks: tuple[BlockMatch, ...]
    places: Mapping[int, Place]  # operator position in the canonical trace -> where it sits
    tensors: Mapping[str, tuple[Slot, ...]]  # a model tensor the forward reads -> the planned tensors it fills
    row_ends: Mapping[str, int]  # row -> the value it ends with (absent where the model has no such row)
    modules: Mapping[str, str] = field(default_factory=dict)  # row or block -> the user's module there
    # The inference form (a graph with no train mode): each planned batch norm folded into the conv before it (the
    # found conv has no norm after it, and no found operator sits on the batch norm) -> the conv's bias that holds it
    # ("" where the exporter dropped a zero bias); and the planned conv that holds it (in the row before, for the
    # pre-activation of a block right after the stem).
    folded: Mapping[str, str] = field(default_factory=dict)
    holders: Mapping[str, str] = field(default_factory=dict)
    # The inference form of weight standardisation: the table standardises its convs' weights, and the graph's convs
    # apply weights with no computation before them (an exporter computed them once): they are compared as they are.
    standardization_folded: bool = False
    # A symmetry of a selective-kernel unit whose paths read the same input: its paths stacked in another order than
    # the plan's (the softmax weighs each by its own part of fc_select's outputs). Block -> for each planned path,
    # the found path in its place; only where that order is not the found one.
    path_orders: Mapping[str, tuple[int, ...]] = field(default_factory=dict)

    @property
    def inference(self) -> bool:
        """Whether batch norms were found folded into their convs (compared with the table's inference form)."""
        return bool(self.folded)

    @property
    def trace(self) -> Trace:
        if self.found.trace is None:
            raise ValueError("the alignment's reading carries no trace")
        return self.found.trace

    def place_of(self, index: int) -> Place | None:
        return self.places.get(index)

    def where(self, row: str, block: str | None = None) -> str:
        """The user's module at a row or block ("layer2.0"), "" where none is known."""
        return self.modules.get(block or row, "")

    def layer(self, name: str) -> Layer:
        for layer in self.plan.layers:
            if layer.name == name:
                return layer
        raise KeyError(name)

    def matched(self) -> Iterable[tuple[str, PlannedBlock, FoundBlock]]:
        """(row, planned, found) for every block present on both sides."""
        for match in self.blocks:
            if match.planned is not None and match.found is not None:
                yield match.row, match.planned, match.found

    @property
    def filled(self) -> dict[str, tuple[str, ...]]:
        """Every planned tensor -> the model's tensors that fill it (by role, or as one of its layer's)."""
        out: dict[str, list[str]] = {}
        for name, slots in self.tensors.items():
            for slot in slots:
                out.setdefault(slot.tensor or f"{slot.layer}.?", []).append(name)
        return {k: tuple(dict.fromkeys(v)) for k, v in out.items()}


# ---- the block alignment ----------------------------------------------------------------------------------------


def align_blocks(expected: Sequence[object], found: Sequence[object]) -> list[tuple[int | None, int | None]]:
    """Align two sequences of block keys by the fewest edits: (expected index, found index) pairs, in order.

    A pair with a None is a block missing from ``found`` (or one ``found`` has in addition).  Equal keys match at
    no cost, a changed block (another width) costs 1, a missing or extra block costs 1.  Where several alignments
    cost the same, the missing or extra blocks are the last ones of their run (a stage of 23 found with 22 lacks
    its 23rd).  Stages of equal width and map size stay distinct, because the table's sequence is the reference.
    """
    n, m = len(expected), len(found)
    if n == m and all(e == f for e, f in zip(expected, found, strict=True)):
        return [(i, i) for i in range(n)]
    cost = [[0] * (m + 1) for _ in range(n + 1)]
    for i in range(n + 1):
        cost[i][0] = i
    for j in range(m + 1):
        cost[0][j] = j
    for i in range(1, n + 1):
        row, above, key = cost[i], cost[i - 1], expected[i - 1]
        for j in range(1, m + 1):
            row[j] = min(above[j - 1] + (key != found[j - 1]), above[j] + 1, row[j - 1] + 1)
    pairs: list[tuple[int | None, int | None]] = []
    i, j = n, m
    while i > 0 or j > 0:
        if i > 0 and cost[i][j] == cost[i - 1][j] + 1:
            pairs.append((i - 1, None))
            i -= 1
        elif j > 0 and cost[i][j] == cost[i][j - 1] + 1:
            pairs.append((None, j - 1))
            j -= 1
        else:
            pairs.append((i - 1, j - 1))
            i, j = i - 1, j - 1
    pairs.reverse()
    return pairs


# ---- the plan's settlements --------------------------------------------------------------------------------------


def _plain_deep_stem(found: FoundNetwork, spec: ResNetSpec) -> FoundNetwork:
    """A network without additions is one chain of convs: its first ones are the stem's, as many as the table has."""
    need = len(spec.stem.convs) - len(found.stem_convs)
    if found.blocks or not found.stem_convs or need <= 0 or len(found.chain) < need:
        return found
    return replace(found, stem_convs=(*found.stem_convs, *found.chain[:need]), chain=found.chain[need:])


def _first_preactivation(found: FoundNetwork, spec: ResNetSpec, inference: bool = False) -> FoundNetwork:
    """In a pre-activation net without a stem pool, "stem conv, then the first block's BN-ReLU read by its conv and
    its projection" computes what "stem conv-BN-ReLU, then a block whose projection reads the stem's output" does:
    the reader sees the second.  Against a pre-activation table, the BN-ReLU is the first block's.  In the inference
    form that BN may be folded into the stem conv: the ReLU after the stem is then the block's."""
    if spec.order != "pre" or spec.stem.pool is not None or not found.blocks or not found.stem_convs:
        return found
    stem, first = found.stem_convs[-1], found.blocks[0]
    kind = first.shortcut.kind if first.shortcut is not None else "none"
    normed = stem.norm is not None or inference
    if not normed or stem.activation_after != "relu" or first.preactivation or kind in ("identity", "none"):
        return found
    moved = frozenset(stem.norm_params)
    trace = found.trace
    conv_output = trace.ops[stem.index].output if trace is not None else stem.end
    stem = replace(
        stem,
        bn_after=False,
        activation_after=None,
        norm_after=None,
        params=tuple(name for name in stem.params if name not in moved),
        norm_params=(),
        end=conv_output,
        members=stem.members[:1],
    )
    first = replace(
        first,
        preactivation=(found.stem_convs[-1].norm, "relu") if found.stem_convs[-1].norm else ("relu",),
        shortcut_reads_preactivation=True,
        input_value=conv_output,  # the block now starts at the stem conv's output
        params=first.params | moved,
        preactivation_ops=tuple(found.stem_convs[-1].members[1:]),
    )
    stem_convs = (*found.stem_convs[:-1], stem)
    return replace(found, stem=stem_convs[0], stem_convs=stem_convs, blocks=(first, *found.blocks[1:]))


def _found_blocks(found: FoundNetwork, spec: ResNetSpec) -> tuple[FoundBlock, ...]:
    """The found blocks; for a network without additions, its conv chain cut into blocks of the table's size."""
    if found.blocks:
        return found.blocks
    sizes = [len(block.convs) for block in spec.blocks]
    trace = found.trace
    blocks: list[FoundBlock] = []
    chain = list(found.chain)
    while chain:
        size = sizes[len(blocks)] if len(blocks) < len(sizes) else sizes[-1]
        convs, chain = tuple(chain[:size]), chain[size:]
        params = frozenset(name for conv in convs for name in conv.params)
        last = convs[-1]
        span = (convs[0].index, max(max(c.members, default=c.index) for c in convs))
        first_input = trace.ops[convs[0].index].inputs[0] if trace is not None else -1
        blocks.append(FoundBlock(convs, None, False, "plain", last.output_size, last.out_channels, params, span,
                                 input_value=first_input, output_value=last.end))  # fmt: skip
    return tuple(blocks)


# ---- placing operators and tensors ---------------------------------------------------------------------------


class _Placer:
    """Collects places and slots while the units of the found network are laid against the plan's layers."""

    def __init__(self, plan: Plan, trace: Trace | None, inference: bool = False) -> None:
        self.inference = inference
        self.folded: dict[str, str] = {}
        self.holders: dict[str, str] = {}
        self.order = list(plan.layers)
        self.position = {id(layer): i for i, layer in enumerate(self.order)}
        self.trace = trace
        self.places: dict[int, Place] = {}
        self.tensors: dict[str, list[Slot]] = {}
        self.path_orders: dict[str, tuple[int, ...]] = {}

    def op(self, index: int) -> Op | None:
        if self.trace is None or not 0 <= index < len(self.trace.ops):
            return None
        return self.trace.ops[index]

    def put(self, index: int, row: str, block: str | None, layer: Layer | None) -> None:
        op = self.op(index)
        if op is None or index in self.places:
            return
        position = self.position[id(layer)] if layer is not None else -1
        self.places[index] = Place(row, block, layer.name if layer is not None else None, op.module, position)
        if layer is not None:
            self._slots(op, layer)

    def _slots(self, op: Op, layer: Layer) -> None:
        """The planned tensors op's tensors fill: by argument role where the operator names it."""
        names = (*op.arg_names, "", "", "", "", "")
        planned = {role: name for name, _ in (*layer.params, *layer.buffers) for role in (name.rsplit(".", 1)[-1],)}

        def fill(tensor: str, role: str) -> None:
            if tensor:
                target = planned.get(role)
                self.tensors.setdefault(tensor, []).append(Slot(layer.name, target, role))

        weights = op.attrs.get("weights")
        if op.kind == "blur":
            return  # a fixed filter: part of the function, not a tensor of the table's (the model keeps its own)
        if op.kind in ("conv", "linear") and weights is not None:  # written otherwise: its layout by the numbers
            for tensor in weights:
                fill(tensor, "weight")
            for tensor in op.attrs.get("biases", ()):
                fill(tensor, "bias")
        elif op.kind == "conv" or (op.kind == "linear" and op.name == "convolution"):
            fill(names[1], "weight")
            fill(names[2], "bias")
        elif op.kind == "linear" and op.name == "addmm":
            fill(names[2], "weight")
            fill(names[0], "bias")
        elif op.kind == "linear" and op.name == "mm":
            fill(names[1], "weight")
        elif op.kind == "bn" and not op.attrs.get("by_hand"):
            for position, role in enumerate(("weight", "bias", "running_mean", "running_var"), 1):
                fill(names[position], role)
        elif op.kind == "norm" and op.name in ("native_group_norm", "native_layer_norm"):  # (x, weight, bias, ...)
            fill(names[1], "weight")
            fill(names[2], "bias")
        else:  # a batch norm written by hand, a linear layer spelled otherwise: which is which, the numbers say
            for tensor in dict.fromkeys((*op.params, *op.buffers)):
                self.tensors.setdefault(tensor, []).append(Slot(layer.name, None, ""))

    def after(self, layer: Layer, kinds: tuple[str, ...]) -> Layer | None:
        """The planned layer right after ``layer`` (identity layers skipped) when it is of one of ``kinds``."""
        for following in self.order[self.position[id(layer)] + 1 :]:
            if following.kind == "identity":
                continue
            return following if following.kind in kinds else None
        return None

    def unit(self, unit: ConvUnit, conv: Layer | None, row: str, block: str | None) -> None:
        """A conv unit (conv, norm, activation) on a planned conv: the norm and activation on the layers after it."""
        members = [i for i in unit.members if self.op(i) is not None]
        self.put(unit.index, row, block, conv)
        if conv is not None and self.inference and unit.norm is None:
            norm = self.after(conv, ("bn",))
            if norm is not None:  # the inference form: this batch norm is the conv's bias
                op = self.op(unit.index)
                bias = op.arg_names[2] if op is not None and len(op.arg_names) > 2 else ""
                self.folded[norm.name] = bias
                self.holders[norm.name] = conv.name
        if conv is None:
            for index in members[1:]:
                self.put(index, row, block, None)
            return
        current = conv
        for index in members[1:]:
            op = self.op(index)
            kind = op.kind if op is not None else ""
            pool = kind in ("maxpool", "avgpool", "blur")  # an anti-aliasing pool after the unit
            kinds = ("bn",) if kind in ("bn", "norm") else ("pool",) if pool else ("relu",)
            following = self.after(current, kinds)
            if following is None:
                break  # a norm or activation the plan does not have here stays unplaced (the diff names it)
            self.put(index, row, block, following)
            current = following


def _module_of(trace: Trace | None, indices: Iterable[int]) -> str:
    """The user's module of a group of operators: the common prefix of the modules of those reading tensors."""
    if trace is None:
        return ""
    ops = [trace.ops[i] for i in indices if 0 <= i < len(trace.ops)]
    named = [op.module for op in ops if op.params or op.buffers] or [op.module for op in ops]
    return common_module(named)


def _block_ops(found: FoundBlock) -> list[int]:
    indices = [i for unit in (*found.convs, *found.se) for i in unit.members]
    if found.selective_kernel is not None:
        indices += found.selective_kernel.ops
    if found.shortcut is not None and found.shortcut.conv is not None:
        indices += found.shortcut.conv.members
    return indices + list(found.preactivation_ops) + list(found.shortcut_ops)


def align(found: FoundNetwork, spec: ResNetSpec, input_size: tuple[int, int] | None = None, *,
          headless: bool = False, in_channels: int | None = None, inference: bool = False) -> Alignment:  # fmt: skip
    """Lay ``found`` (a reading of a model) against the plan of ``spec`` at ``input_size`` (the table's when None).

    ``headless`` expects a backbone (no pool-and-fc head); ``in_channels`` replaces the table's input channels;
    ``inference`` reads a graph without a train mode, whose batch norms may be folded into the convs before them
    (:attr:`Alignment.folded`).
    """
    size = input_size or (spec.input_size, spec.input_size)
    plan = layout_plan(spec, size, num_classes=0 if headless else None, in_channels=in_channels)
    found = _first_preactivation(_plain_deep_stem(found, spec), spec, inference)
    blocks = _found_blocks(found, spec)
    trace = found.trace
    placer = _Placer(plan, trace, inference)
    modules: dict[str, str] = {}

    # conv1: the stem's convs in order, each with its norm and activation
    stem_convs = found.stem_convs or ((found.stem,) if found.stem is not None else ())
    planned_stem = [layer for layer in plan.stem if layer.kind == "conv"]
    for n, unit in enumerate(stem_convs):
        placer.unit(unit, planned_stem[n] if n < len(planned_stem) else None, "conv1", None)
    first_row = spec.stages[0].name
    stem_pools = [layer for layer in plan.stem if layer.kind == "pool"]  # the pool, and an anti-aliasing layer
    for n, index in enumerate((found.stem_pool_op, found.stem_anti_alias_op)):
        if index >= 0:
            placer.put(index, first_row, None, stem_pools[n] if n < len(stem_pools) else None)
    modules["conv1"] = _module_of(trace, [i for unit in stem_convs for i in unit.members])

    # the blocks, aligned to the table's sequence
    expected_sizes = spec.row_output_sizes(*size)
    keys = [(block.spec.out_channels, expected_sizes[block.row]) for block in plan.blocks]
    pairs = align_blocks(keys, [(b.out_channels, b.output_size) for b in blocks])
    matches: list[BlockMatch] = []
    row = spec.stages[0].name
    for e_index, f_index in pairs:
        planned = plan.blocks[e_index] if e_index is not None else None
        if planned is not None:
            row = planned.row
        found_block = blocks[f_index] if f_index is not None else None
        module = _module_of(trace, _block_ops(found_block)) if found_block is not None else ""
        matches.append(BlockMatch(row, planned, found_block, module))
        if planned is not None and found_block is not None:
            modules[planned.spec.name] = module
        _place_block(placer, row, planned, found_block)
    for stage in spec.stages:
        members = [m.module for m in matches if m.row == stage.name and m.found is not None and m.module]
        modules[stage.name] = common_module(members)

    # fc: a pre-activation net's final BN-ReLU, the global pool, the classifier
    head = found.head
    planned_head = list(plan.head)
    norms = [layer for layer in planned_head if layer.kind in ("bn", "relu")]
    for index, layer in zip(head.norm_ops, norms, strict=False):
        op = placer.op(index)
        expected_kind = "bn" if op is not None and op.kind in ("bn", "norm") else "relu"
        placer.put(index, "fc", None, layer if layer.kind == expected_kind else None)
    for index in head.norm_ops[len(norms) :]:
        placer.put(index, "fc", None, None)
    if head.pool_op >= 0:
        pool_layer = next((layer for layer in planned_head if layer.kind == "global_pool"), None)
        placer.put(head.pool_op, "fc", None, pool_layer)
    fc = next((layer for layer in planned_head if layer.kind == "fc"), None)
    for n, index in enumerate(head.fc_ops):
        placer.put(index, "fc", None, fc if n == len(head.fc_ops) - 1 else None)
    modules["fc"] = _module_of(trace, head.fc_ops)

    # where each row ends
    row_ends: dict[str, int] = {}
    if stem_convs:
        row_ends["conv1"] = stem_convs[-1].end
    for match in matches:
        if match.found is not None and match.found.output_value >= 0 and match.planned is not None:
            row_ends[match.row] = match.found.output_value  # the last block of a row wins
    if head.present and head.logits >= 0:
        row_ends["fc"] = head.logits
    projections = [b.shortcut.conv for b in blocks if b.shortcut is not None and b.shortcut.conv is not None]
    found_convs = [*stem_convs, *(unit for b in blocks for unit in b.convs), *projections]
    standardization_folded = (inference and spec.weight_standardization is not None and bool(found_convs)
                              and not any(unit.weight_transform for unit in found_convs))  # fmt: skip
    placed = {place.layer for place in placer.places.values()}
    folded = {norm: bias for norm, bias in placer.folded.items() if norm not in placed}  # a BN found is not folded
    return Alignment(
        spec=spec,
        plan=plan,
        input_size=size,
        found=found,
        headless=headless,
        blocks=tuple(matches),
        places=MappingProxyType(placer.places),
        tensors=MappingProxyType({k: tuple(v) for k, v in placer.tensors.items()}),
        row_ends=MappingProxyType(row_ends),
        modules=MappingProxyType(modules),
        folded=MappingProxyType(folded),
        holders=MappingProxyType({norm: conv for norm, conv in placer.holders.items() if norm in folded}),
        standardization_folded=standardization_folded,
        path_orders=MappingProxyType(placer.path_orders),
    )


def _path_order(sk: FoundSelectiveKernel, planned: Sequence[Layer]) -> tuple[int, ...]:
    """For each planned path, the found path in its place: the one of its dilation, where the paths read one input
    and have the plan's dilations in another order (a symmetry of the unit); else the found order."""
    found = [path.dilation[0] for path in sk.paths]
    expected = [layer.dilation for layer in planned]
    if sk.split or sorted(found) != sorted(expected) or found == expected:
        return tuple(range(len(sk.paths)))
    order: list[int] = []
    for dilation in expected:
        order.append(next(i for i, d in enumerate(found) if d == dilation and i not in order))
    return tuple(order)


def _place_selective_kernel(
    placer: _Placer, row: str, name: str | None, planned: PlannedBlock | None, sk: FoundSelectiveKernel
) -> None:
    """A selective-kernel unit's operators on the plan's unit (``planned``: its block; None where the plan has no
    unit there): each path on its path, in order, the attention's convs on fc_reduce and fc_select, the split, the
    squeeze and the selection on their operations."""
    unit = list(planned.role("sk")) if planned is not None else []
    paths, attn = planned.unit_convs if planned is not None else ((), ())
    if len(paths) != len(sk.paths) or len(attn) != len(sk.attn):
        paths, attn, unit = (), (), []  # another unit than the plan's: its operators stay unplaced
    order = _path_order(sk, paths)
    if name is not None and order != tuple(range(len(order))):
        placer.path_orders[name] = order
    for j, i in enumerate(order):
        placer.unit(sk.paths[i], paths[j] if paths else None, row, name)
    for i, conv in enumerate(sk.attn):
        placer.unit(conv, attn[i] if attn else None, row, name)
    for kind, indices in (("split", sk.split_ops), ("squeeze", sk.squeeze_ops), ("select", sk.select_ops)):
        layer = next((layer for layer in unit if layer.kind == kind), None)
        for index in indices:
            placer.put(index, row, name, layer)


def _place_block(placer: _Placer, row: str, planned: PlannedBlock | None, found: FoundBlock | None) -> None:
    """Every operator of a found block on its planned layer (None where the plan has none for it)."""
    if found is None:
        return
    name = planned.spec.name if planned is not None else None
    layers = planned.layers if planned is not None else ()
    branch: list[Layer | None] = [layer for layer in layers if layer.role == "branch" and layer.kind == "conv"]
    sk = found.selective_kernel
    planned_sk = planned is not None and planned.spec.selective_kernel is not None
    if planned is not None and planned_sk:
        branch.insert(planned.spec.selective_at, None)  # the unit's place among the convs: its layers are its own
    for i, unit in enumerate(found.convs):
        if sk is not None and i == sk.at:
            here = planned if planned_sk and i < len(branch) and branch[i] is None else None
            _place_selective_kernel(placer, row, name, here, sk)
            continue
        placer.unit(unit, branch[i] if i < len(branch) else None, row, name)
    # pre-activation: the BN and ReLU before the first conv
    leading: list[Layer] = []
    for layer in layers:
        if layer.kind == "conv":
            break
        if layer.role == "branch" and layer.kind in ("bn", "relu"):
            leading.append(layer)
    for index in found.preactivation_ops:  # each on the next planned layer of its kind (a folded BN has no operator)
        op = placer.op(index)
        kind = "bn" if op is not None and op.kind in ("bn", "norm") else "relu"
        at = next((i for i, layer in enumerate(leading) if layer.kind == kind), None)
        placer.put(index, row, name, leading[at] if at is not None else None)
        leading = leading[at + 1 :] if at is not None else leading
    # squeeze-and-excitation: its two convs (with their activations), its squeeze and its gate
    se = [layer for layer in layers if layer.role == "se"]
    se_convs = [layer for layer in se if layer.kind == "conv"]
    for i, unit in enumerate(found.se):
        placer.unit(unit, se_convs[i] if i < len(se_convs) else None, row, name)
    for index in found.se_ops:
        op = placer.op(index)
        kind = "squeeze" if op is not None and op.kind in ("global_pool", "mean", "adaptive_avgpool") else "gate"
        placer.put(index, row, name, next((layer for layer in se if layer.kind == kind), None))
    # the shortcut: its pool, its conv and norm, or its zero padding
    shortcut = [layer for layer in layers if layer.role == "shortcut"]
    if found.shortcut is not None and found.shortcut.conv is not None:
        conv = next((layer for layer in shortcut if layer.kind == "conv"), None)
        placer.unit(found.shortcut.conv, conv, row, name)
    for index in found.shortcut_ops:
        op = placer.op(index)
        if op is None or index in placer.places:
            continue
        if op.kind in ("avgpool", "maxpool", "blur"):
            kinds: tuple[str, ...] = ("pool",)
        elif op.kind in ("pad", "cat"):
            kinds = ("zero_pad",)
        else:
            kinds = ()
        placer.put(index, row, name, next((layer for layer in shortcut if layer.kind in kinds), None))
    # the addition and the ReLU after it
    adds = [layer for layer in layers if layer.kind == "add"]
    if found.add_index >= 0:
        placer.put(found.add_index, row, name, adds[0] if adds else None)
    if found.relu_index >= 0:
        last = layers[-1] if layers and layers[-1].kind == "relu" and planned is not None else None
        placer.put(found.relu_index, row, name, last if planned is not None and planned.spec.order == "post" else None)
