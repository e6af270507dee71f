"""The spec objects: a resolved network, every conv with its channels, stride, padding and groups (no torch).

A table (``spec_tables/*.toml``) is read and validated by :mod:`resnet_spec.spec._loader` into these frozen objects;
:mod:`resnet_spec.spec._plan` turns one into the ordered list of the layers the built network has.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from ._arithmetic import conv_output_size

__all__ = [
    "Block",
    "BlockOrder",
    "Conv",
    "FrozenMapping",
    "Head",
    "Pool",
    "ResNetSpec",
    "SelectiveKernel",
    "ShortcutKind",
    "ShortcutOption",
    "SpecError",
    "Stage",
    "Stem",
    "StemPool",
    "StrideVariant",
]

# What a block's shortcut is (variants.toml names the options built from these kinds).
ShortcutKind = Literal["identity", "zero_pad", "projection", "avg_projection", "none"]
SHORTCUT_KINDS: tuple[str, ...] = ("identity", "zero_pad", "projection", "avg_projection", "none")
# Which conv of a downsampling block carries its stride (variants.toml names the rules).
StrideRule = Literal["first", "first_spatial"]
STRIDE_RULES: tuple[str, ...] = ("first", "first_spatial")
# Where batch norm and ReLU sit around each conv of a block: "post" (He et al. 2015, Sec. 3.3: conv-BN-ReLU, the
# last ReLU after the addition) or "pre" (He et al. 2016, "Identity Mappings", Fig. 4(e): BN-ReLU-conv, nothing
# after the addition, one BN-ReLU before the global pool).
BlockOrder = Literal["post", "pre"]
BLOCK_ORDERS: tuple[str, ...] = ("post", "pre")
POOL_KINDS: tuple[str, ...] = ("max", "avg")


class SpecError(ValueError):
    """A table that does not describe a valid network: names the file, the key path, the value and what was expected."""

    def __init__(self, file: str, key_path: str, found: object, expected: str, hint: str = "") -> None:
        self.file = file
        self.key_path = key_path
        self.found = found
        self.expected = expected
        self.hint = hint
        if found is MISSING:
            found_text = "nothing (key missing)"
        else:
            found_text = ascii(found) if isinstance(found, str) else repr(found)
        text = f"{printable(file)}: {printable(key_path)}: expected {expected}, found {found_text}"
        super().__init__(f"{text}; {hint}" if hint else text)


def printable(text: str) -> str:
    """``text`` as it is when every character is printable ASCII; otherwise its ``ascii()`` form, so that a terminal
    escape sequence never reaches the terminal and a look-alike letter (Cyrillic 'е' for 'e') shows as ``\u0435``."""
    return text if text.isascii() and text.isprintable() else ascii(text)


def unusual_characters(text: str) -> str:
    """A hint naming the characters of ``text`` that are not printable ASCII ("" when there are none)."""
    import unicodedata

    odd = [c for c in dict.fromkeys(text) if not (c.isascii() and c.isprintable())]
    if not odd:
        return ""
    names = ", ".join(f"U+{ord(c):04X} {unicodedata.name(c, 'a control character')}" for c in odd)
    return f"it holds characters that are not printable ASCII: {names}"


class _Missing:
    def __repr__(self) -> str:
        return "<missing>"


MISSING: Any = _Missing()


class FrozenMapping(Mapping[str, Any]):
    """A read-only mapping that, unlike ``MappingProxyType``, pickles and deep-copies (models are saved whole)."""

    def __init__(self, data: Mapping[str, Any]) -> None:
        self._data = dict(data)

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __repr__(self) -> str:
        return f"FrozenMapping({self._data!r})"


@dataclass(frozen=True)
class Conv:
    """One convolution as built (no bias: batch norm follows it, before or after the next conv)."""

    kernel: int
    in_channels: int
    out_channels: int
    stride: int
    padding: int
    groups: int = 1  # ResNeXt's cardinality C ("3x3, 128, C=32"; Xie et al. 2017, Table 1)
    dilation: int = 1  # a selective-kernel path's (Li et al. 2019: the 5x5 path as a 3x3 of dilation 2)

    def output_size(self, n: int) -> int:
        """Output height/width of this conv for an input of height/width ``n``."""
        return conv_output_size(n, self.kernel, self.stride, self.padding, self.dilation)


@dataclass(frozen=True)
class Pool:
    """A pooling window (the stem's, or the one before a ResNet-D projection)."""

    # "blur": an anti-aliasing filter (Zhang 2019; timm's BlurPool2d): the binomial filter of ``kernel`` taps in each
    # direction (1 2 1 for 3, normalised to sum 1), applied to each channel alone after a reflected padding
    kind: Literal["max", "avg", "blur"]
    kernel: int
    stride: int
    padding: int  # before the map (top, left); after it too, plus ``extra_end``
    ceil_mode: bool = False  # Caffe rounds pooling output sizes up; PyTorch's default rounds down
    zero_fill: bool = False  # a max pool padded with zeros, not -inf: an explicit zero pad before it (BiT's stem)
    # more padding after the map (bottom, right) than before it: an even blur filter has no centre tap (Zhang's
    # BlurPool pads (taps - 1) // 2 before and taps // 2 after)
    extra_end: int = 0

    def output_size(self, n: int) -> int:
        """Output height/width of this pool for an input of height/width ``n`` (0 where a blur's reflected padding
        needs more than ``n``: it mirrors ``padding`` pixels beside the edge one)."""
        if self.kind == "blur" and n <= self.padding + self.extra_end:
            return 0
        return conv_output_size(n + self.extra_end, self.kernel, self.stride, self.padding, ceil_mode=self.ceil_mode)


@dataclass(frozen=True)
class Stem:
    """Table 1's conv1 row (one conv, or the deep stem's several), and the pool that opens conv2_x (or ``None``)."""

    convs: tuple[Conv, ...]  # in order; each conv-BN-ReLU (in a pre-activation net the last has neither)
    output: int | None  # the table's output size of conv1 at the table's input size; checked at load
    pool: Pool | None
    anti_alias: Pool | None = None  # the pool's stride moved to an anti-aliasing layer after it (the table's word)

    @property
    def out_channels(self) -> int:
        return self.convs[-1].out_channels


@dataclass(frozen=True)
class SelectiveKernel:
    """A selective-kernel unit in place of one conv of a block (Li, Wang, Hu, Yang 2019, "Selective Kernel Networks",
    Sec. 3.1, Fig. 1).  Split: one path per dilation, each the conv's kernel, stride and groups at that dilation
    (padding ``d (k - 1) / 2``), each followed by BN and ReLU.  Fuse: the paths' sum, a global average pool, a 1x1
    conv to ``attn_channels`` (d = max(C / r, L), Eq. 4), BN, ReLU.  Select: a 1x1 conv to ``C x paths``, a softmax
    across the paths for each channel, and the paths' sum weighted by it (Eq. 5, 6)."""

    dilations: tuple[int, ...]  # one path each; the paper's 3x3 and 5x5 are 3x3 paths of dilation 1 and 2
    attn_channels: int  # the fuse step's width d
    # timm's deviation (timm/layers/selective_kernel.py, split_input): the input's channels split evenly across the
    # paths, each path reading its own part; False: every path reads the whole input (the paper)
    split_input: bool = False

    def paths(self, conv: Conv) -> tuple[Conv, ...]:
        """Each path's conv, for the unit in place of ``conv``."""
        c_in = conv.in_channels // len(self.dilations) if self.split_input else conv.in_channels
        return tuple(Conv(conv.kernel, c_in, conv.out_channels, conv.stride, d * (conv.kernel - 1) // 2, conv.groups, d)
                     for d in self.dilations)  # fmt: skip


@dataclass(frozen=True)
class Block:
    """One residual (or plain) block as built: its residual-branch convs and its shortcut."""

    name: str  # the paper's name of the block, e.g. "conv3_1"
    convs: tuple[Conv, ...]
    shortcut: ShortcutKind
    stride: int  # the block's stride; the shortcut subsamples by it
    order: BlockOrder = "post"
    se_channels: int | None = None  # squeeze-and-excitation's reduced width (Hu et al. 2018); None: no SE
    eca_kernel: int | None = None  # ECA's channel conv kernel (Wang et al. 2020); None: no ECA
    # Anti-aliasing (the table's anti_alias word): the conv ``convs[anti_alias_at]`` runs at stride 1 and this layer,
    # after its norm and ReLU, takes the block's stride; None: the conv itself strides
    anti_alias: Pool | None = None
    anti_alias_at: int = -1
    # the projection's stride taken by an anti-aliasing layer before its 1x1 conv, which then runs at stride 1 (the
    # table's anti_alias_shortcut word: Zhang 2019's antialiased-cnns); None: the conv strides, or no projection here
    shortcut_alias: Pool | None = None
    # a selective-kernel unit in place of the conv ``convs[selective_at]`` (its BN and ReLU are the unit's paths');
    # None: plain convs
    selective_kernel: SelectiveKernel | None = None
    selective_at: int = -1

    @property
    def gated(self) -> bool:
        """Whether the branch ends in a channel gate (squeeze-and-excitation or ECA) before the addition."""
        return self.se_channels is not None or self.eca_kernel is not None

    @property
    def in_channels(self) -> int:
        return self.convs[0].in_channels

    @property
    def out_channels(self) -> int:
        return self.convs[-1].out_channels

    def output_size(self, n: int) -> int:
        """Output height/width of this block for an input of height/width ``n``."""
        for i, conv in enumerate(self.convs):
            n = conv.output_size(n)
            if i == self.anti_alias_at and self.anti_alias is not None:
                n = self.anti_alias.output_size(n)
        return n


@dataclass(frozen=True)
class Stage:
    """One row conv2_x ... of the table: a bracketed block repeated ``repeats`` times."""

    name: str  # "conv3_x"
    layers: tuple[tuple[int, int], ...]  # the bracket as printed: (kernel, channels) per conv
    repeats: int
    stride: int  # stride of the first block
    output: int | None  # the table's output size at the table's input size; checked at load
    blocks: tuple[Block, ...]
    groups: tuple[int, ...] = ()  # each bracket conv's groups ("C=32" in a cell); empty: all 1

    @property
    def out_channels(self) -> int:
        return self.blocks[-1].out_channels


@dataclass(frozen=True)
class Head:
    """Global pooling and the fully-connected classifier."""

    pool: Literal["max", "avg"]
    num_classes: int
    output: int | None
    final_bn: bool = False  # a pre-activation net's BN-ReLU on the last unit's output, before the pool


@dataclass(frozen=True)
class StrideVariant:
    """Where a downsampling block's stride sits (variants.toml)."""

    name: str
    stride_on: StrideRule
    source: str
    description: str = ""  # for reports, e.g. "stride on the 3x3"


@dataclass(frozen=True)
class ShortcutOption:
    """What a block's shortcut is where its shape changes and elsewhere (variants.toml)."""

    name: str
    on_change: ShortcutKind
    otherwise: ShortcutKind
    source: str

    @property
    def residual(self) -> bool:
        return self.otherwise != "none"


@dataclass(frozen=True)
class StemPool:
    """How the stem's pool pads and rounds (variants.toml): a named deviation where releases differ."""

    name: str
    padding: int
    ceil_mode: bool
    source: str
    label: str = ""  # added to a spec's label where not empty, e.g. "Caffe pool"
    zero_fill: bool = False  # a max pool's padding is zeros, not -inf (BiT pads the stem conv's map, then pools)


@dataclass(frozen=True)
class ResNetSpec:
    """A fully resolved architecture: every conv of the network with its channels, stride and padding."""

    name: str
    family: str
    source: str  # where in the paper the column comes from
    table_file: str  # the file it was loaded from, for messages
    input_size: int  # the input size the table's output column refers to
    in_channels: int
    variant: StrideVariant
    shortcut: ShortcutOption
    stem: Stem
    stages: tuple[Stage, ...]
    head: Head
    paper: Mapping[str, float | int | str] = field(default_factory=lambda: FrozenMapping({}))
    order: BlockOrder = "post"
    stem_pool: StemPool | None = None  # the stem pool's named padding/rounding, where the stem has a pool
    se_reduction: int | None = None  # squeeze-and-excitation's reduction ratio r; None: no SE
    # GroupNorm of this many groups wherever the net has a batch norm (Wu & He 2018; BiT); None: batch norm.
    group_norm: int | None = None
    # Weight standardisation's epsilon (Qiao et al. 2019; BiT): every conv of the stem, the blocks and the shortcuts
    # uses (w - mean) / sqrt(var + eps), mean and variance over each output channel's weights; None: w as it is.
    weight_standardization: float | None = None
    canonical: bool = False  # the entry ``--depth N`` names in its family
    table_source: str = ""  # the table's [table] source: the paper the file transcribes (``--list`` groups by it)

    @property
    def network_key(self) -> tuple[object, ...]:
        """What makes two specs one network, whatever their names and named deviations (an option may change
        nothing: the stride variant of basic blocks); the input channels stay out, as the tables' own input."""
        return (self.stem, self.stages, self.head, self.order, self.group_norm, self.weight_standardization)

    @property
    def blocks(self) -> Iterator[Block]:
        """Every block of the network, in order."""
        for stage in self.stages:
            yield from stage.blocks

    @property
    def depth(self) -> int:
        """Weighted layers as the paper counts them: the stem row as one, every conv of every branch, and fc."""
        return 1 + sum(len(block.convs) for block in self.blocks) + 1

    @property
    def out_channels(self) -> int:
        """Channels entering the head (the fc's input features)."""
        return self.stages[-1].out_channels

    @property
    def rows(self) -> tuple[str, ...]:
        """The table's row names: conv1, the stages, fc."""
        return ("conv1", *(stage.name for stage in self.stages), "fc")

    @property
    def knobs(self) -> dict[str, str]:
        """The named deviations this spec was resolved under: ``{"variant": "v1", "shortcut": "B", ...}``."""
        knobs = {"variant": self.variant.name, "shortcut": self.shortcut.name}
        if self.stem_pool is not None:
            knobs["stem_pool"] = self.stem_pool.name
        return knobs

    @property
    def label(self) -> str:
        """A short human name, e.g. "resnet50 (v1, shortcut B)" or "resnet101 (v1, shortcut B, Caffe pool)"."""
        parts = [self.variant.name, "plain" if not self.shortcut.residual else f"shortcut {self.shortcut.name}"]
        if self.stem_pool is not None and self.stem_pool.label:
            parts.append(self.stem_pool.label)
        return f"{self.name} ({', '.join(parts)})"

    def min_input_size(self) -> int:
        """The smallest input height (or width) for which no row's output is empty."""

        def fits(n: int) -> bool:
            return min(min(hw) for hw in self.row_output_sizes(n).values()) >= 1

        high = 1
        while not fits(high):  # every output grows with the input: double, then bisect
            high *= 2
        low = high // 2 + 1 if high > 1 else 1
        while low < high:
            middle = (low + high) // 2
            low, high = (low, middle) if fits(middle) else (middle + 1, high)
        return high

    def row_output_sizes(self, height: int, width: int | None = None) -> dict[str, tuple[int, int]]:
        """Each row's output (height, width) for an input of ``height`` x ``width`` (square when width is None)."""
        h, w = height, height if width is None else width
        sizes: dict[str, tuple[int, int]] = {}
        for conv in self.stem.convs:
            h, w = conv.output_size(h), conv.output_size(w)
        sizes["conv1"] = (h, w)
        for pool in (self.stem.pool, self.stem.anti_alias):
            if pool is not None:
                h, w = pool.output_size(h), pool.output_size(w)
        for stage in self.stages:
            for block in stage.blocks:
                h, w = block.output_size(h), block.output_size(w)
            sizes[stage.name] = (h, w)
        sizes["fc"] = (1, 1)
        return sizes
