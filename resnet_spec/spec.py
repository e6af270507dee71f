"""Spec objects and the loader that turns a table (TOML) into them.

A table file (``spec_tables/*.toml``) holds one family of networks: a ``[table]`` section (source, input size,
default variant and shortcut option), the rows shared by every column (``[stem]``, ``[head]``), and one section per
architecture with its stage rows (``conv2_x`` ...).  ``variants.toml`` names the stride placements and shortcut
options.  Everything is validated here, once, at load time: a malformed table raises :class:`SpecError` naming the
file, the key path, the value found and what was expected.  The objects returned are frozen.
"""

from __future__ import annotations

import functools
import re
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

from .arithmetic import conv_output_size, same_padding

__all__ = [
    "Block",
    "Conv",
    "FrozenMapping",
    "Head",
    "Pool",
    "ResNetSpec",
    "ShortcutKind",
    "ShortcutOption",
    "SpecError",
    "Stage",
    "Stem",
    "StrideVariant",
    "families",
    "list_specs",
    "load_spec",
    "load_table",
    "residual_depths",
    "shortcut_names",
    "tables_dir",
    "variant_names",
]

ShortcutKind = Literal["identity", "zero_pad", "projection", "none"]
_SHORTCUT_KINDS: tuple[str, ...] = ("identity", "zero_pad", "projection", "none")
_STRIDE_RULES: tuple[str, ...] = ("first", "first_spatial")
_POOL_KINDS: tuple[str, ...] = ("max", "avg")
_STAGE_NAME = re.compile(r"^conv(\d+)_x$")
_CONV_CELL = re.compile(r"^\s*(\d+)\s*x\s*(\d+)\s*,\s*(\d+)\s*$")
_VARIANTS_FILE = "variants.toml"


class SpecError(ValueError):
    """A table that does not describe a valid network: names the file, the key path, the value and what was expected."""

    def __init__(self, file: str, key_path: str, found: object, expected: str) -> None:
        self.file = file
        self.key_path = key_path
        self.found = found
        self.expected = expected
        found_text = "nothing (key missing)" if found is _MISSING else repr(found)
        super().__init__(f"{file}: {key_path}: expected {expected}, found {found_text}")


class _Missing:
    def __repr__(self) -> str:
        return "<missing>"


_MISSING: Any = _Missing()


# ----------------------------------------------------------------------------------------------------------------
# Spec objects


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
    """One convolution as built (always followed by batch norm, never with a bias)."""

    kernel: int
    in_channels: int
    out_channels: int
    stride: int
    padding: int

    def output_size(self, n: int) -> int:
        """Output height/width of this conv for an input of height/width ``n``."""
        return conv_output_size(n, self.kernel, self.stride, self.padding)


@dataclass(frozen=True)
class Pool:
    """A pooling layer of the stem."""

    kind: Literal["max", "avg"]
    kernel: int
    stride: int
    padding: int

    def output_size(self, n: int) -> int:
        """Output height/width of this pool for an input of height/width ``n``."""
        return conv_output_size(n, self.kernel, self.stride, self.padding)


@dataclass(frozen=True)
class Stem:
    """Table 1's conv1 row, and the pool that opens conv2_x (``None`` where the network has none, as on CIFAR)."""

    conv: Conv
    output: int | None  # the table's output size of conv1 at the table's input size; checked at load
    pool: Pool | None


@dataclass(frozen=True)
class Block:
    """One residual (or plain) block as built: its residual-branch convs and its shortcut."""

    name: str  # the paper's name of the block, e.g. "conv3_1"
    convs: tuple[Conv, ...]
    shortcut: ShortcutKind
    stride: int  # the block's stride; the shortcut subsamples by it

    @property
    def in_channels(self) -> int:
        return self.convs[0].in_channels

    @property
    def out_channels(self) -> int:
        return self.convs[-1].out_channels

    def output_size(self, n: int) -> int:
        """Output height/width of this block for an input of height/width ``n``."""
        for conv in self.convs:
            n = conv.output_size(n)
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

    @property
    def out_channels(self) -> int:
        return self.blocks[-1].out_channels


@dataclass(frozen=True)
class Head:
    """Global pooling and the fully-connected classifier."""

    pool: Literal["max", "avg"]
    num_classes: int
    output: int | None


@dataclass(frozen=True)
class StrideVariant:
    """Where a downsampling block's stride sits (variants.toml)."""

    name: str
    stride_on: Literal["first", "first_spatial"]
    source: str


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

    @property
    def blocks(self) -> Iterator[Block]:
        """Every block of the network, in order."""
        for stage in self.stages:
            yield from stage.blocks

    @property
    def depth(self) -> int:
        """Weighted layers as the paper counts them: conv1, every conv of every residual branch, and fc."""
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
    def label(self) -> str:
        """A short human name, e.g. "resnet50 (v1, shortcut B)"."""
        shortcut = "plain" if not self.shortcut.residual else f"shortcut {self.shortcut.name}"
        return f"{self.name} ({self.variant.name}, {shortcut})"

    def min_input_size(self) -> int:
        """The smallest input height (or width) for which no row's output is empty."""
        n = 1
        while min(self.row_output_sizes(n).values())[0] < 1:
            n += 1
        return n

    def row_output_sizes(self, height: int, width: int | None = None) -> dict[str, tuple[int, int]]:
        """Each row's output (height, width) for an input of ``height`` x ``width`` (square when width is None)."""
        size = (height, height if width is None else width)
        sizes: dict[str, tuple[int, int]] = {}
        size = tuple(self.stem.conv.output_size(n) for n in size)  # type: ignore[assignment]
        sizes["conv1"] = size
        if self.stem.pool is not None:
            size = tuple(self.stem.pool.output_size(n) for n in size)  # type: ignore[assignment]
        for stage in self.stages:
            for block in stage.blocks:
                size = tuple(block.output_size(n) for n in size)  # type: ignore[assignment]
            sizes[stage.name] = size
        sizes["fc"] = (1, 1)
        return sizes


# ----------------------------------------------------------------------------------------------------------------
# Locating tables


def tables_dir() -> Path:
    """The directory holding the shipped tables (inside the installed package, or ``spec_tables/`` of a checkout)."""
    packaged = resources.files("resnet_spec") / "spec_tables"
    if packaged.is_dir():
        return Path(str(packaged))
    checkout = Path(__file__).resolve().parent.parent / "spec_tables"
    if checkout.is_dir():
        return checkout
    raise FileNotFoundError(
        f"resnet_spec cannot find its tables: neither {packaged} (installed wheel) nor {checkout} (source checkout) "
        "exists; reinstall the package"
    )


def _table_files() -> list[Path]:
    return sorted(p for p in tables_dir().glob("*.toml") if p.name != _VARIANTS_FILE)


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise SpecError(str(path), "<file>", str(path), "an existing TOML file") from None
    except tomllib.TOMLDecodeError as e:
        raise SpecError(str(path), "<file>", str(e), "valid TOML") from None


# ----------------------------------------------------------------------------------------------------------------
# Validation helpers


class _Reader:
    """Typed access to a parsed TOML document that raises SpecError with the key path."""

    def __init__(self, file: str) -> None:
        self.file = file

    def error(self, path: str, found: object, expected: str) -> SpecError:
        return SpecError(self.file, path, found, expected)

    def table(self, doc: Mapping[str, Any], key: str, path: str) -> dict[str, Any]:
        value = doc.get(key, _MISSING)
        if not isinstance(value, dict):
            raise self.error(_join(path, key), value, "a table")
        return value

    def optional_table(self, doc: Mapping[str, Any], key: str, path: str) -> dict[str, Any] | None:
        return self.table(doc, key, path) if key in doc else None

    def int_(self, doc: Mapping[str, Any], key: str, path: str, *, minimum: int = 1) -> int:
        value = doc.get(key, _MISSING)
        if type(value) is not int or value < minimum:
            raise self.error(_join(path, key), value, f"an integer >= {minimum}")
        return value

    def optional_int(self, doc: Mapping[str, Any], key: str, path: str, *, minimum: int = 1) -> int | None:
        if key not in doc:
            return None
        return self.int_(doc, key, path, minimum=minimum)

    def str_(self, doc: Mapping[str, Any], key: str, path: str, *, choices: tuple[str, ...] | None = None) -> str:
        value = doc.get(key, _MISSING)
        if choices is not None:
            if not isinstance(value, str) or value not in choices:
                raise self.error(_join(path, key), value, "one of " + ", ".join(repr(c) for c in choices))
        elif not isinstance(value, str) or not value.strip():
            raise self.error(_join(path, key), value, "a non-empty string")
        return value

    def only_keys(self, doc: Mapping[str, Any], allowed: tuple[str, ...], path: str) -> None:
        for key in doc:
            if key not in allowed:
                raise self.error(_join(path, key), doc[key], "no such key (allowed: " + ", ".join(allowed) + ")")


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _parse_conv_cell(reader: _Reader, value: object, path: str) -> tuple[int, int]:
    """'3x3, 64' -> (3, 64): a square kernel and a channel count, as printed in the paper."""
    match = _CONV_CELL.match(value) if isinstance(value, str) else None
    if match is None:
        raise reader.error(path, value, "a conv cell 'KxK, C' such as '3x3, 64'")
    kh, kw, channels = (int(g) for g in match.groups())
    if kh != kw:
        raise reader.error(path, value, "a square kernel (KxK)")
    if kh < 1 or channels < 1:
        raise reader.error(path, value, "a kernel >= 1 and channels >= 1")
    return kh, channels


# ----------------------------------------------------------------------------------------------------------------
# Variants


@dataclass(frozen=True)
class _Variants:
    strides: Mapping[str, StrideVariant]
    shortcuts: Mapping[str, ShortcutOption]


def _load_variants(doc: Mapping[str, Any], file: str) -> _Variants:
    reader = _Reader(file)
    reader.only_keys(doc, ("variant", "shortcut"), "")
    strides: dict[str, StrideVariant] = {}
    variant_doc = reader.table(doc, "variant", "")
    for name, entry in variant_doc.items():
        path = f"variant.{name}"
        if not isinstance(entry, dict):
            raise reader.error(path, entry, "a table")
        reader.only_keys(entry, ("stride_on", "source"), path)
        stride_on = reader.str_(entry, "stride_on", path, choices=_STRIDE_RULES)
        strides[name] = StrideVariant(name, stride_on, reader.str_(entry, "source", path))  # type: ignore[arg-type]
    shortcuts: dict[str, ShortcutOption] = {}
    shortcut_doc = reader.table(doc, "shortcut", "")
    for name, entry in shortcut_doc.items():
        path = f"shortcut.{name}"
        if not isinstance(entry, dict):
            raise reader.error(path, entry, "a table")
        reader.only_keys(entry, ("on_change", "otherwise", "source"), path)
        on_change = reader.str_(entry, "on_change", path, choices=("zero_pad", "projection", "none"))
        otherwise = reader.str_(entry, "otherwise", path, choices=_SHORTCUT_KINDS)
        if (on_change == "none") != (otherwise == "none"):
            raise reader.error(f"{path}.otherwise", otherwise, "'none' exactly when on_change is 'none' (a plain net)")
        shortcuts[name] = ShortcutOption(name, on_change, otherwise, reader.str_(entry, "source", path))  # type: ignore[arg-type]
    return _Variants(MappingProxyType(strides), MappingProxyType(shortcuts))


_variants_cache: _Variants | None = None


def _variants() -> _Variants:
    global _variants_cache
    if _variants_cache is None:
        path = tables_dir() / _VARIANTS_FILE
        _variants_cache = _load_variants(_read_toml(path), str(path))
    return _variants_cache


# ----------------------------------------------------------------------------------------------------------------
# Tables

_TABLE_KEYS = ("family", "source", "input_size", "in_channels", "variant", "shortcut")
_SECTION_KEYS = ("table", "stem", "head")
_ARCH_KEYS = ("source", "base", "variant", "shortcut", "stem", "head", "paper")
_STAGE_KEYS = ("block", "repeats", "stride", "output")


def load_table(doc: Mapping[str, Any], file: str = "<table>", **overrides: str) -> dict[str, ResNetSpec]:
    """Validate a whole table document (as parsed from TOML) and resolve every architecture in it.

    ``overrides`` (``variant=``, ``shortcut=``) apply to every architecture.  Raises :class:`SpecError`.
    """
    reader = _Reader(file)
    if not isinstance(doc, Mapping):
        raise reader.error("<document>", doc, "a table of sections")
    _check_overrides(reader, overrides)
    table = reader.table(doc, "table", "")
    reader.only_keys(table, _TABLE_KEYS, "table")
    reader.str_(table, "source", "table")
    variants = _variants()
    reader.str_(table, "variant", "table", choices=tuple(variants.strides))
    reader.str_(table, "shortcut", "table", choices=tuple(variants.shortcuts))
    arch_names = [key for key in doc if key not in _SECTION_KEYS]
    if not arch_names:
        raise reader.error(
            "<document>", sorted(doc), "at least one architecture section besides [table], [stem], [head]"
        )
    return {name: _resolve_arch(reader, doc, name, overrides) for name in arch_names}


def _check_overrides(reader: _Reader, overrides: Mapping[str, str]) -> None:
    variants = _variants()
    for key, value in overrides.items():
        if key == "variant":
            choices = tuple(variants.strides)
        elif key == "shortcut":
            choices = tuple(variants.shortcuts)
        else:
            raise reader.error(f"<override {key}>", value, "an override named 'variant' or 'shortcut'")
        if value not in choices:
            raise reader.error(f"<override {key}>", value, "one of " + ", ".join(repr(c) for c in choices))


def _arch_doc(reader: _Reader, doc: Mapping[str, Any], name: str) -> dict[str, Any]:
    """The architecture's section with its ``base`` (another section of the same file) merged in."""
    own = reader.table(doc, name, "")
    reader.only_keys({k: v for k, v in own.items() if not _STAGE_NAME.match(k)}, _ARCH_KEYS, name)
    base_name = own.get("base")
    if base_name is None:
        return own
    bases = tuple(k for k, v in doc.items() if k not in _SECTION_KEYS and k != name and isinstance(v, dict))
    if base_name not in bases:
        raise reader.error(
            f"{name}.base", base_name, "the name of another architecture in this file: " + ", ".join(bases)
        )
    base = doc[base_name]
    if "base" in base:
        raise reader.error(f"{name}.base", base_name, "an architecture that has no base of its own")
    merged = {k: v for k, v in base.items() if k not in ("source", "paper")}
    merged.update({k: v for k, v in own.items() if k != "base"})
    return merged


def _resolve_arch(reader: _Reader, doc: Mapping[str, Any], name: str, overrides: Mapping[str, str]) -> ResNetSpec:
    table = doc["table"]
    arch = _arch_doc(reader, doc, name)
    variants = _variants()

    family = reader.str_(table, "family", "table")
    input_size = reader.int_(table, "input_size", "table")
    in_channels = reader.int_(table, "in_channels", "table")

    def pick(key: str, choices: Mapping[str, Any]) -> Any:
        if key in overrides:
            return choices[overrides[key]]
        where, path = (arch, name) if key in arch else (table, "table")
        return choices[reader.str_(where, key, path, choices=tuple(choices))]

    variant: StrideVariant = pick("variant", variants.strides)
    shortcut: ShortcutOption = pick("shortcut", variants.shortcuts)

    stem_doc, stem_path = (arch["stem"], f"{name}.stem") if "stem" in arch else (doc.get("stem", _MISSING), "stem")
    if not isinstance(stem_doc, dict):
        raise reader.error(stem_path, stem_doc, "a table with conv1 (and optionally pool)")
    stem = _resolve_stem(reader, stem_doc, stem_path, in_channels)

    stage_names = [k for k in arch if _STAGE_NAME.match(k)]
    if not stage_names:
        raise reader.error(name, sorted(arch), "at least one stage row named conv2_x, conv3_x, ...")
    stages: list[Stage] = []
    channels = stem.conv.out_channels
    for index, stage_name in enumerate(stage_names):
        expected = f"conv{index + 2}_x"
        if stage_name != expected:
            raise reader.error(
                f"{name}.{stage_name}", stage_name, f"stage rows in order conv2_x, conv3_x, ...: {expected}"
            )
        stage = _resolve_stage(
            reader, arch[stage_name], f"{name}.{stage_name}", stage_name, channels, variant, shortcut
        )
        stages.append(stage)
        channels = stage.out_channels

    head_doc, head_path = (arch["head"], f"{name}.head") if "head" in arch else (doc.get("head", _MISSING), "head")
    if not isinstance(head_doc, dict):
        raise reader.error(head_path, head_doc, "a table with pool, fc and output")
    reader.only_keys(head_doc, ("pool", "fc", "output"), head_path)
    head = Head(
        pool=reader.str_(head_doc, "pool", head_path, choices=_POOL_KINDS),  # type: ignore[arg-type]
        num_classes=reader.int_(head_doc, "fc", head_path),
        output=reader.optional_int(head_doc, "output", head_path),
    )
    if head.output is not None and head.output != 1:
        raise reader.error(f"{head_path}.output", head.output, "1 (global pooling)")

    paper = arch.get("paper", {})
    if not isinstance(paper, dict):
        raise reader.error(f"{name}.paper", paper, "a table of the paper's figures")
    for key, value in paper.items():
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise reader.error(f"{name}.paper.{key}", value, "a number or a string")

    spec = ResNetSpec(
        name=name,
        family=family,
        source=reader.str_(arch, "source", name),
        table_file=reader.file,
        input_size=input_size,
        in_channels=in_channels,
        variant=variant,
        shortcut=shortcut,
        stem=stem,
        stages=tuple(stages),
        head=head,
        paper=FrozenMapping(paper),
    )
    _check_output_sizes(reader, spec, stem_path)
    return spec


def _resolve_stem(reader: _Reader, doc: dict[str, Any], path: str, in_channels: int) -> Stem:
    reader.only_keys(doc, ("conv1", "pool"), path)
    conv_doc = reader.table(doc, "conv1", path)
    conv_path = f"{path}.conv1"
    reader.only_keys(conv_doc, ("conv", "stride", "padding", "output"), conv_path)
    kernel, channels = _parse_conv_cell(reader, conv_doc.get("conv", _MISSING), f"{conv_path}.conv")
    conv = Conv(
        kernel=kernel,
        in_channels=in_channels,
        out_channels=channels,
        stride=reader.int_(conv_doc, "stride", conv_path),
        padding=reader.int_(conv_doc, "padding", conv_path, minimum=0),
    )
    pool_doc = reader.optional_table(doc, "pool", path)
    pool = None
    if pool_doc is not None:
        pool_path = f"{path}.pool"
        reader.only_keys(pool_doc, ("kind", "kernel", "stride", "padding"), pool_path)
        pool = Pool(
            kind=reader.str_(pool_doc, "kind", pool_path, choices=_POOL_KINDS),  # type: ignore[arg-type]
            kernel=reader.int_(pool_doc, "kernel", pool_path),
            stride=reader.int_(pool_doc, "stride", pool_path),
            padding=reader.int_(pool_doc, "padding", pool_path, minimum=0),
        )
        if 2 * pool.padding > pool.kernel:
            raise reader.error(f"{pool_path}.padding", pool.padding, f"at most half the kernel ({pool.kernel // 2})")
    return Stem(conv=conv, output=reader.optional_int(conv_doc, "output", conv_path), pool=pool)


def _resolve_stage(
    reader: _Reader,
    doc: object,
    path: str,
    name: str,
    in_channels: int,
    variant: StrideVariant,
    shortcut: ShortcutOption,
) -> Stage:
    if not isinstance(doc, dict):
        raise reader.error(path, doc, "a table with block, repeats, stride (and output)")
    reader.only_keys(doc, _STAGE_KEYS, path)
    cells = doc.get("block", _MISSING)
    if not isinstance(cells, list) or not cells:
        raise reader.error(f"{path}.block", cells, "a non-empty list of conv cells like ['3x3, 64', '3x3, 64']")
    layers = tuple(_parse_conv_cell(reader, cell, f"{path}.block[{i}]") for i, cell in enumerate(cells))
    for i, (kernel, _) in enumerate(layers):
        if kernel % 2 == 0:
            raise reader.error(f"{path}.block[{i}]", cells[i], "an odd kernel, so that (k-1)/2 padding keeps the size")
    repeats = reader.int_(doc, "repeats", path)
    stride = reader.int_(doc, "stride", path)

    if variant.stride_on == "first":
        stride_index = 0
    else:
        spatial = [i for i, (kernel, _) in enumerate(layers) if kernel > 1]
        if not spatial:
            raise reader.error(
                f"{path}.block", cells, f"a conv larger than 1x1 to carry the stride of variant {variant.name}"
            )
        stride_index = spatial[0]

    prefix = name[: -len("_x")]
    blocks: list[Block] = []
    channels = in_channels
    for index in range(repeats):
        block_stride = stride if index == 0 else 1
        convs: list[Conv] = []
        conv_in = channels
        for i, (kernel, out) in enumerate(layers):
            conv_stride = block_stride if i == stride_index else 1
            convs.append(Conv(kernel, conv_in, out, conv_stride, same_padding(kernel)))
            conv_in = out
        block_out = layers[-1][1]
        changes = block_stride != 1 or block_out != channels
        kind = shortcut.on_change if changes else shortcut.otherwise
        if kind == "zero_pad" and block_out < channels:
            raise reader.error(
                f"{path}.block[{len(layers) - 1}]",
                cells[-1],
                f"at least {channels} output channels: option {shortcut.name} zero-pads the shortcut and cannot drop "
                f"channels (block {prefix}_{index + 1} takes {channels})",
            )
        blocks.append(Block(f"{prefix}_{index + 1}", tuple(convs), kind, block_stride))
        channels = block_out
    return Stage(name, layers, repeats, stride, reader.optional_int(doc, "output", path), tuple(blocks))


def _check_output_sizes(reader: _Reader, spec: ResNetSpec, stem_path: str) -> None:
    """The table's output column must follow from its input size and the padding arithmetic."""
    sizes = spec.row_output_sizes(spec.input_size)
    empty = [row for row, (height, _) in sizes.items() if height < 1]
    if empty:
        raise reader.error(
            "table.input_size",
            spec.input_size,
            f"an input size of at least {spec.min_input_size()} for {spec.name} (row {empty[0]} is empty at "
            f"{spec.input_size}x{spec.input_size})",
        )
    declared = {"conv1": (spec.stem.output, f"{stem_path}.conv1.output")}
    for stage in spec.stages:
        declared[stage.name] = (stage.output, f"{spec.name}.{stage.name}.output")
    for row, (value, path) in declared.items():
        computed = sizes[row][0]
        if value is not None and value != computed:
            raise reader.error(
                path,
                value,
                f"{computed}: the output of row {row} for a {spec.input_size}x{spec.input_size} input "
                "as the row's kernels, strides and paddings compute it",
            )


# ----------------------------------------------------------------------------------------------------------------
# Public entry points


def list_specs(family: str | None = None) -> list[str]:
    """Names of the architectures in the shipped tables (optionally of one family: 'imagenet', 'cifar10')."""
    names: list[str] = []
    for name, spec in _registry().items():
        if family is None or spec.family == family:
            names.append(name)
    return names


def residual_depths(family: str) -> dict[int, str]:
    """Depth -> name of each residual (not plain) entry of one family of the shipped tables, in depth order.

    E.g. ``residual_depths("imagenet") == {18: "resnet18", ..., 152: "resnet152"}``.  Raises ``LookupError`` for an
    unknown family, or when two residual entries of the family have the same depth (a depth would not name one).
    """
    if family not in families():
        raise LookupError(f"unknown family {family!r}; expected one of {', '.join(families())}")
    depths: dict[int, str] = {}
    for name in list_specs(family):
        spec = _registry()[name]
        if not spec.shortcut.residual:
            continue
        if spec.depth in depths:
            raise LookupError(f"{family}: entries {depths[spec.depth]!r} and {name!r} both have depth {spec.depth}")
        depths[spec.depth] = name
    return dict(sorted(depths.items()))


def variant_names() -> tuple[str, ...]:
    """The stride placements of variants.toml, e.g. ('v1', 'v1.5')."""
    return tuple(_variants().strides)


def shortcut_names() -> tuple[str, ...]:
    """The shortcut options of variants.toml, e.g. ('A', 'B', 'C', 'none')."""
    return tuple(_variants().shortcuts)


def families() -> list[str]:
    """The families of the shipped tables, e.g. ['cifar10', 'imagenet']."""
    return sorted({spec.family for spec in _registry().values()})


_registry_cache: dict[str, ResNetSpec] | None = None


def _registry() -> dict[str, ResNetSpec]:
    global _registry_cache
    if _registry_cache is None:
        registry: dict[str, ResNetSpec] = {}
        for path in _table_files():
            for name, spec in load_table(_read_toml(path), str(path)).items():
                if name in registry:
                    raise SpecError(str(path), name, name, f"a name not already defined in {registry[name].table_file}")
                registry[name] = spec
        _registry_cache = registry
    return _registry_cache


def load_spec(name_or_path: str | Path, **overrides: str) -> ResNetSpec:
    """Load one architecture.

    ``name_or_path`` is a shipped name (``"resnet50"``; see :func:`list_specs`), a TOML file holding one
    architecture, or ``"file.toml:name"``.  ``overrides``: ``variant="v1" | "v1.5"`` (stride placement),
    ``shortcut="A" | "B" | "C" | "none"``.  Raises :class:`SpecError` for anything malformed or unknown.
    """
    text = str(name_or_path)
    if isinstance(name_or_path, Path) or text.endswith(".toml") or ".toml:" in text:
        file, _, arch = text.partition(".toml:") if ".toml:" in text else (text, "", "")
        path = Path(file if not arch else file + ".toml")
        specs = load_table(_read_toml(path), str(path), **overrides)
        if not arch:
            if len(specs) != 1:
                raise SpecError(str(path), "<file>", sorted(specs), f"one architecture, or a name: '{path}:NAME'")
            return next(iter(specs.values()))
        if arch not in specs:
            raise SpecError(str(path), arch, arch, "one of " + ", ".join(sorted(specs)))
        return specs[arch]
    registry = _registry()
    if text not in registry:
        raise SpecError("<registry>", text, text, "a known architecture: " + ", ".join(registry))
    if not overrides:
        return registry[text]
    return _shipped_table(registry[text].table_file, tuple(sorted(overrides.items())))[text]


@functools.lru_cache(maxsize=64)
def _shipped_table(file: str, overrides: tuple[tuple[str, str], ...]) -> dict[str, ResNetSpec]:
    """A shipped table resolved under ``overrides`` (cached: the shipped files do not change while we run)."""
    return load_table(_read_toml(Path(file)), file, **dict(overrides))
