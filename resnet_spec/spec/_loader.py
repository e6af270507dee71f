"""The loader: a table (TOML) read, validated and resolved into :class:`~resnet_spec.spec.ResNetSpec` objects.

A table file (``spec_tables/*.toml``) holds one family of networks: a ``[table]`` section (source, input size,
defaults of the named deviations), the rows shared by every column (``[stem]``, ``[head]``), and one section per
architecture with its stage rows (``conv2_x`` ...).  ``variants.toml`` names the deviations (stride placements,
shortcut options, stem pools).  Everything is validated here, once, at load time and before anything is
allocated: a malformed table, or a size no real network has (:data:`BOUNDS`), raises :class:`SpecError` naming the
file, the key path, the value found and what was expected.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

from ._arithmetic import eca_kernel, same_padding
from ._types import (
    BLOCK_ORDERS,
    MISSING,
    POOL_KINDS,
    SHORTCUT_KINDS,
    STRIDE_RULES,
    Block,
    Conv,
    FrozenMapping,
    Head,
    Pool,
    ResNetSpec,
    SelectiveKernel,
    ShortcutOption,
    SpecError,
    Stage,
    Stem,
    StemPool,
    StrideVariant,
    unusual_characters,
)

__all__ = ["BOUNDS", "KNOBS", "Variants", "load_variants", "read_toml", "resolve_entry", "resolve_table"]

# Sizes no real network has.  Every entry of the ResNet family fits with a margin of 10x or more (ResNet-1202 has
# 200 blocks a stage, ResNet-1001 111; widths reach 2048, kernels 7, strides 2, inputs 224, ResNeXt 64 groups).
BOUNDS: Mapping[str, int] = MappingProxyType(
    {
        "repeats": 5_000,  # blocks in one stage
        "blocks": 20_000,  # blocks in the whole network
        "stages": 256,  # stage rows conv2_x, conv3_x, ...
        "convs": 16,  # convs in one block's bracket, or in one stem
        "channels": 65_536,  # output channels of any conv (and input channels of the network)
        "kernel": 127,  # a conv's or a pool's kernel
        "stride": 64,
        "padding": 127,
        "groups": 65_536,
        "input_size": 16_384,  # the table's input height and width
        "classes": 1_000_000,  # the fc's outputs
        "se_reduction": 1_024,
        "se_divisor": 1_024,  # timm rounds SE widths to multiples of 8
        "eca_gamma": 64,  # ECA's kernel rule (Wang et al. 2020, Eq. 12): gamma = 2, b = 1
        "eca_beta": 64,
        "eca_kernel": 63,  # ECA's kernel where a table fixes it (the authors' code: 3 in every block)
        "group_norm": 1_024,  # GroupNorm's groups (Wu & He 2018 and BiT: 32)
        "anti_alias_filter": 15,  # the blur filter's taps (timm: 3 or 5; Zhang 2019 up to 7)
        "sk_reduction": 1_024,  # the selective-kernel unit's r (Li et al. 2019: 16)
        "sk_min_width": 65_536,  # and its L (32)
        "dilation": 64,  # a selective-kernel path's dilation (Li et al. 2019: 1 and 2)
    }
)

# The named deviations a spec can be resolved under, and the variants.toml section naming each one's options.
KNOBS: tuple[str, ...] = ("variant", "shortcut", "stem_pool")
_STAGE_NAME = re.compile(r"^conv(\d+)_x$")
# The paper's cell "3x3, 64"; ResNeXt's "3x3, 128, C=32" adds the cardinality (groups).
_CONV_CELL = re.compile(r"^\s*(\d+)\s*x\s*(\d+)\s*,\s*(\d+)\s*(?:,\s*C\s*=\s*(\d+)\s*)?$")

_GATE_KEYS = ("se_reduction", "se_divisor", "eca_gamma", "eca_beta", "eca_kernel")
_NORM_KEYS = ("group_norm", "weight_standardization")
_ALIAS_KEYS = ("anti_alias", "anti_alias_filter", "anti_alias_shortcut")
_SK_KEYS = ("sk_dilations", "sk_reduction", "sk_min_width", "sk_split")
ANTI_ALIAS_KINDS: tuple[str, ...] = ("avg", "blur")
_TABLE_KEYS = (
    "family", "source", "input_size", "in_channels", *KNOBS, "order", *_GATE_KEYS, *_NORM_KEYS, *_ALIAS_KEYS, *_SK_KEYS
)  # fmt: skip
_SECTION_KEYS = ("table", "stem", "head")
# An entry's name: printed in reports and typed on command lines, so nothing a terminal would interpret or show as
# another letter.
_ARCH_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]*")
_ARCH_KEYS = (
    "source", "base", "canonical", *KNOBS, "order", *_GATE_KEYS, *_NORM_KEYS, *_ALIAS_KEYS, *_SK_KEYS, "stem",
    "head", "paper",
)  # fmt: skip
_NOT_INHERITED = ("source", "paper", "canonical")  # what an entry does not take from its base
_STAGE_KEYS = ("block", "repeats", "stride", "output")
_STEM_CONV_KEYS = ("conv", "stride", "padding", "output")


def read_toml(path: Path) -> dict[str, Any]:
    """Parse a TOML file; any failure (missing, a directory, not UTF-8, not TOML) is a :class:`SpecError`."""
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise SpecError(str(path), "<file>", str(path), "an existing TOML file") from None
    except IsADirectoryError:
        raise SpecError(str(path), "<file>", str(path), "a TOML file, not a directory") from None
    except UnicodeDecodeError as e:
        raise SpecError(str(path), "<file>", f"byte {e.start}: {e.reason}", "a UTF-8 text file") from None
    except tomllib.TOMLDecodeError as e:
        raise SpecError(str(path), "<file>", str(e), "valid TOML") from None
    except OSError as e:
        raise SpecError(str(path), "<file>", e.strerror or str(e), "a readable TOML file") from None


# ----------------------------------------------------------------------------------------------------------------
# Typed access


class _Reader:
    """Typed access to a parsed TOML document that raises SpecError with the key path."""

    def __init__(self, file: str) -> None:
        self.file = file

    def error(self, path: str, found: object, expected: str) -> SpecError:
        return SpecError(self.file, path, found, expected)

    def table(self, doc: Mapping[str, Any], key: str, path: str) -> dict[str, Any]:
        value = doc.get(key, MISSING)
        if not isinstance(value, dict):
            raise self.error(_join(path, key), value, "a table")
        return value

    def optional_table(self, doc: Mapping[str, Any], key: str, path: str) -> dict[str, Any] | None:
        return self.table(doc, key, path) if key in doc else None

    def int_(self, doc: Mapping[str, Any], key: str, path: str, *, minimum: int = 1, bound: str = "") -> int:
        value = doc.get(key, MISSING)
        if type(value) is not int or value < minimum:
            raise self.error(_join(path, key), value, f"an integer >= {minimum}")
        self.bounded(_join(path, key), value, bound)
        return value

    def bounded(self, path: str, value: int, bound: str) -> None:
        if bound and value > BOUNDS[bound]:
            raise self.error(path, value, f"at most {BOUNDS[bound]:,} ({bound}: no real network has more)")

    def optional_int(
        self, doc: Mapping[str, Any], key: str, path: str, *, minimum: int = 1, bound: str = ""
    ) -> int | None:
        if key not in doc:
            return None
        return self.int_(doc, key, path, minimum=minimum, bound=bound)

    def bool_(self, doc: Mapping[str, Any], key: str, path: str, default: bool) -> bool:
        value = doc.get(key, default)
        if not isinstance(value, bool):
            raise self.error(_join(path, key), value, "true or false")
        return value

    def str_(self, doc: Mapping[str, Any], key: str, path: str, *, choices: tuple[str, ...] | None = None) -> str:
        value = doc.get(key, MISSING)
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


@dataclass(frozen=True)
class _Cell:
    """One conv cell of the paper's notation: 'KxK, C' or 'KxK, C, C=G'."""

    kernel: int
    channels: int
    groups: int


def _parse_conv_cell(reader: _Reader, value: object, path: str) -> _Cell:
    """'3x3, 64' -> (3, 64, groups 1); '3x3, 128, C=32' -> (3, 128, groups 32): a square kernel, channels, groups."""
    match = _CONV_CELL.match(value) if isinstance(value, str) else None
    if match is None:
        raise reader.error(path, value, "a conv cell 'KxK, C' such as '3x3, 64' (or '3x3, 128, C=32' with groups)")
    kh, kw, channels = (int(g) for g in match.groups()[:3])
    groups = int(match.group(4)) if match.group(4) is not None else 1
    if kh != kw:
        raise reader.error(path, value, "a square kernel (KxK)")
    if kh < 1 or channels < 1 or groups < 1:
        raise reader.error(path, value, "a kernel >= 1, channels >= 1 and groups >= 1")
    for what, number in (("kernel", kh), ("channels", channels), ("groups", groups)):
        reader.bounded(path, number, what)
    if channels % groups:
        raise reader.error(path, value, f"channels divisible by the groups ({channels} by {groups})")
    return _Cell(kh, channels, groups)


# ----------------------------------------------------------------------------------------------------------------
# Variants


@dataclass(frozen=True)
class Variants:
    """The named deviations of variants.toml, one mapping per knob."""

    strides: Mapping[str, StrideVariant]
    shortcuts: Mapping[str, ShortcutOption]
    stem_pools: Mapping[str, StemPool]

    def options(self, knob: str) -> Mapping[str, Any]:
        """The options of one of :data:`KNOBS`."""
        return {"variant": self.strides, "shortcut": self.shortcuts, "stem_pool": self.stem_pools}[knob]


def _entries(reader: _Reader, doc: Mapping[str, Any], section: str, keys: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for name, entry in reader.table(doc, section, "").items():
        path = f"{section}.{name}"
        if not isinstance(entry, dict):
            raise reader.error(path, entry, "a table")
        reader.only_keys(entry, keys, path)
        out[name] = entry
    return out


def load_variants(doc: Mapping[str, Any], file: str) -> Variants:
    """Validate a variants document (as parsed from TOML): its stride placements, shortcut options and stem pools."""
    reader = _Reader(file)
    reader.only_keys(doc, ("variant", "shortcut", "stem_pool"), "")
    strides: dict[str, StrideVariant] = {}
    for name, entry in _entries(reader, doc, "variant", ("stride_on", "description", "source")).items():
        path = f"variant.{name}"
        stride_on = reader.str_(entry, "stride_on", path, choices=STRIDE_RULES)
        description = reader.str_(entry, "description", path) if "description" in entry else ""
        strides[name] = StrideVariant(name, stride_on, reader.str_(entry, "source", path), description)  # type: ignore[arg-type]
    shortcuts: dict[str, ShortcutOption] = {}
    for name, entry in _entries(reader, doc, "shortcut", ("on_change", "otherwise", "source")).items():
        path = f"shortcut.{name}"
        on_change = reader.str_(entry, "on_change", path, choices=tuple(k for k in SHORTCUT_KINDS if k != "identity"))
        otherwise = reader.str_(entry, "otherwise", path, choices=SHORTCUT_KINDS)
        if (on_change == "none") != (otherwise == "none"):
            raise reader.error(f"{path}.otherwise", otherwise, "'none' exactly when on_change is 'none' (a plain net)")
        shortcuts[name] = ShortcutOption(name, on_change, otherwise, reader.str_(entry, "source", path))  # type: ignore[arg-type]
    pools: dict[str, StemPool] = {}
    if "stem_pool" in doc:
        keys = ("padding", "ceil_mode", "zero_fill", "label", "source")
        for name, entry in _entries(reader, doc, "stem_pool", keys).items():
            path = f"stem_pool.{name}"
            label = reader.str_(entry, "label", path) if "label" in entry else ""
            pools[name] = StemPool(
                name,
                reader.int_(entry, "padding", path, minimum=0, bound="padding"),
                reader.bool_(entry, "ceil_mode", path, False),
                reader.str_(entry, "source", path),
                label,
                reader.bool_(entry, "zero_fill", path, False),
            )
    return Variants(MappingProxyType(strides), MappingProxyType(shortcuts), MappingProxyType(pools))


# ----------------------------------------------------------------------------------------------------------------
# Tables


def resolve_table(doc: Mapping[str, Any], file: str, variants: Variants, **overrides: str) -> dict[str, ResNetSpec]:
    """Validate a whole table document (as parsed from TOML) and resolve every architecture in it.

    ``overrides`` (one per knob of :data:`KNOBS`: ``variant=``, ``shortcut=``, ``stem_pool=``) apply to every
    architecture.  Raises :class:`SpecError`.
    """
    reader, arch_names = _read_table(doc, file, variants, overrides)
    return {name: _resolve_arch(reader, doc, name, overrides, variants) for name in arch_names}


def resolve_entry(doc: Mapping[str, Any], file: str, variants: Variants, name: str, **overrides: str) -> ResNetSpec:
    """One architecture of a table document, resolved under ``overrides`` (its table's own sections validated as
    :func:`resolve_table` does; the other architectures not resolved).  Raises :class:`SpecError`."""
    reader, arch_names = _read_table(doc, file, variants, overrides)
    if name not in arch_names:
        raise SpecError(file, name, name, "one of " + ", ".join(sorted(arch_names)))
    return _resolve_arch(reader, doc, name, overrides, variants)


def _read_table(
    doc: Mapping[str, Any], file: str, variants: Variants, overrides: Mapping[str, str]
) -> tuple[_Reader, list[str]]:
    """The reader of a table document, its [table] section and the overrides validated; its architectures' names."""
    reader = _Reader(file)
    if not isinstance(doc, Mapping):
        raise reader.error("<document>", doc, "a table of sections")
    _check_overrides(reader, overrides, variants)
    table = reader.table(doc, "table", "")
    reader.only_keys(table, _TABLE_KEYS, "table")
    reader.str_(table, "source", "table")
    for knob in ("variant", "shortcut"):
        reader.str_(table, knob, "table", choices=tuple(variants.options(knob)))
    if "stem_pool" in table:
        reader.str_(table, "stem_pool", "table", choices=tuple(variants.stem_pools))
    arch_names = [key for key in doc if key not in _SECTION_KEYS]
    for name in arch_names:
        if not _ARCH_NAME.fullmatch(name):
            expected = "an entry name of ASCII letters, digits and _ . + - (starting with a letter or digit)"
            raise SpecError(reader.file, name, name, expected, unusual_characters(name))
    if not arch_names:
        raise reader.error(
            "<document>", sorted(doc), "at least one architecture section besides [table], [stem], [head]"
        )
    return reader, arch_names


def _check_overrides(reader: _Reader, overrides: Mapping[str, str], variants: Variants) -> None:
    for key, value in overrides.items():
        if key not in KNOBS:
            raise reader.error(f"<override {key}>", value, "an override named " + " or ".join(map(repr, KNOBS)))
        choices = tuple(variants.options(key))
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
    merged = {k: v for k, v in base.items() if k not in _NOT_INHERITED}
    merged.update({k: v for k, v in own.items() if k != "base"})
    return merged


@dataclass(frozen=True)
class _Choices:
    """What one architecture resolves under: its knobs, block order and SE."""

    variant: StrideVariant
    shortcut: ShortcutOption
    stem_pool: StemPool | None
    order: str
    se_reduction: int | None
    se_divisor: int | None  # SE widths rounded to a multiple of it (timm); None: exactly C/r (Hu et al. 2018)
    eca: tuple[int, int] | int | None  # ECA's (gamma, b) (Wang et al. 2020, Eq. 12) or its fixed kernel; None: none
    group_norm: int | None  # GroupNorm's groups in place of batch norm; None: batch norm
    weight_standardization: float | None  # weight standardisation's epsilon; None: none
    anti_alias: tuple[str, int] | None = None  # ("avg", 0) or ("blur", filter taps); None: strided convs and pools
    alias_shortcut: bool = False  # the projections' stride taken by an anti-aliasing layer before their 1x1 conv
    # the selective-kernel unit's (dilations, r, L, split input) (Li et al. 2019); None: none
    selective_kernel: tuple[tuple[int, ...], int, int, bool] | None = None

    def alias(self, stride: int) -> Pool | None:
        """The anti-aliasing layer that takes a stride: timm's ``AvgPool2d(stride)`` (a window of the stride), or a
        blur: for an odd filter timm's ``BlurPool2d(filt_size, stride)`` (padding ``((stride - 1) + (taps - 1)) //
        2`` on each side, reflected), for an even one Zhang's ``BlurPool`` (antialiased-cnns: ``(taps - 1) // 2``
        before, ``taps // 2`` after); None where the table has no anti_alias or the stride is 1 (nothing to take)."""
        if self.anti_alias is None or stride == 1:
            return None
        kind, taps = self.anti_alias
        if kind == "avg":
            return Pool("avg", stride, stride, 0)
        if taps % 2 == 0:
            return Pool("blur", taps, stride, (taps - 1) // 2, extra_end=1)
        return Pool("blur", taps, stride, ((stride - 1) + (taps - 1)) // 2)


def _choices(
    reader: _Reader, table: Mapping[str, Any], arch: Mapping[str, Any], name: str, overrides: Mapping[str, str],
    variants: Variants,
) -> _Choices:  # fmt: skip
    def where(key: str) -> tuple[Mapping[str, Any], str]:
        return (arch, name) if key in arch else (table, "table")

    def pick(knob: str) -> Any:
        options = variants.options(knob)
        if knob in overrides:
            return options[overrides[knob]]
        doc, path = where(knob)
        if knob == "stem_pool" and knob not in doc:
            return None
        return options[reader.str_(doc, knob, path, choices=tuple(options))]

    order_doc, order_path = where("order")
    order = reader.str_(order_doc, "order", order_path, choices=BLOCK_ORDERS) if "order" in order_doc else "post"
    se_doc, se_path = where("se_reduction")
    se_reduction = reader.optional_int(se_doc, "se_reduction", se_path, bound="se_reduction")
    divisor_doc, divisor_path = where("se_divisor")
    se_divisor = reader.optional_int(divisor_doc, "se_divisor", divisor_path, bound="se_divisor")
    if se_divisor is not None and se_reduction is None:
        raise reader.error(
            _join(divisor_path, "se_divisor"), se_divisor, "an se_reduction beside it (the divisor rounds C/r)"
        )
    eca = _eca_rule(reader, where)
    if eca is not None and se_reduction is not None:
        key = "eca_gamma" if isinstance(eca, tuple) else "eca_kernel"
        doc, path = where(key)
        gate = "one channel gate: se_reduction or ECA's, not both"
        raise reader.error(_join(path, key), doc[key], gate)
    shortcut = pick("shortcut")
    if order == "pre" and not shortcut.residual:
        # Without shortcuts, BN-ReLU before every conv is the post-activation net: the same layers in the same order.
        raise reader.error(
            _join(order_path, "order"), order, f'"post" for a plain network (shortcut {shortcut.name}): a plain '
            "net's pre-activation form is its post-activation form"
        )  # fmt: skip
    stem_pool = pick("stem_pool")
    if stem_pool is not None and stem_pool.zero_fill and order == "post":
        # After the stem's ReLU every value is >= 0: zeros around the map are what -inf is to a max pool.
        doc, path = where("stem_pool")
        raise reader.error(
            _join(path, "stem_pool"), stem_pool.name, "a pool that pads with -inf ('padded') for a post-activation "
            "net: its stem pool reads a ReLU's map, where a zero padding is the same pool"
        )  # fmt: skip
    norm_doc, norm_path = where("group_norm")
    group_norm = reader.optional_int(norm_doc, "group_norm", norm_path, bound="group_norm")
    ws_doc, ws_path = where("weight_standardization")
    weight_standardization = _epsilon(reader, ws_doc, "weight_standardization", ws_path)
    anti_alias = _anti_alias(reader, where, order)
    return _Choices(
        pick("variant"), shortcut, stem_pool, order, se_reduction, se_divisor, eca, group_norm,
        weight_standardization, anti_alias, _alias_shortcut(reader, where, anti_alias, shortcut),
        _selective_kernel(reader, where, order, anti_alias),
    )  # fmt: skip


def _selective_kernel(
    reader: _Reader, where: Callable[[str], tuple[Mapping[str, Any], str]], order: str,
    anti_alias: tuple[str, int] | None,
) -> tuple[tuple[int, ...], int, int, bool] | None:  # fmt: skip
    """The sk_* words (Li et al. 2019, Sec. 3.1): ``sk_dilations``, one path each (two or more), with
    ``sk_reduction`` (r) and ``sk_min_width`` (L) beside it, and ``sk_split`` (timm's split input, false by
    default)."""
    doc, path = where("sk_dilations")
    if "sk_dilations" not in doc:
        for key in _SK_KEYS[1:]:
            other_doc, other_path = where(key)
            if key in other_doc:
                raise reader.error(_join(other_path, key), other_doc[key], "an sk_dilations beside it (its unit)")
        return None
    key = _join(path, "sk_dilations")
    raw = doc["sk_dilations"]
    expected = f"a list of two or more dilations, integers from 1 to {BOUNDS['dilation']}, one per path, e.g. [1, 2]"
    if not isinstance(raw, list) or len(raw) < 2 or len(raw) > BOUNDS["convs"]:
        raise reader.error(key, raw, expected)
    if any(type(d) is not int or not 1 <= d <= BOUNDS["dilation"] for d in raw):
        raise reader.error(key, raw, expected)
    if order == "pre":
        raise reader.error(key, raw, "no selective kernel in a pre-activation net (its paths end in BN and ReLU)")
    if anti_alias is not None:
        raise reader.error(key, raw, "no selective kernel beside anti_alias (the unit's paths take the stride)")

    def near(word: str) -> tuple[Mapping[str, Any], str]:  # a missing word is missing beside sk_dilations
        found = where(word)
        return found if word in found[0] else (doc, path)

    (r_doc, r_path), (l_doc, l_path), (s_doc, s_path) = near("sk_reduction"), near("sk_min_width"), near("sk_split")
    reduction = reader.int_(r_doc, "sk_reduction", r_path, bound="sk_reduction")
    min_width = reader.int_(l_doc, "sk_min_width", l_path, bound="sk_min_width")
    return tuple(raw), reduction, min_width, reader.bool_(s_doc, "sk_split", s_path, False)


def _anti_alias(
    reader: _Reader, where: Callable[[str], tuple[Mapping[str, Any], str]], order: str
) -> tuple[str, int] | None:
    """The anti_alias word: "avg" or "blur" (with anti_alias_filter, the blur's taps: at least 2, 3 by default), or
    None."""
    doc, path = where("anti_alias")
    filter_doc, filter_path = where("anti_alias_filter")
    taps = reader.optional_int(filter_doc, "anti_alias_filter", filter_path, bound="anti_alias_filter")
    if "anti_alias" not in doc:
        if taps is not None:
            raise reader.error(_join(filter_path, "anti_alias_filter"), taps, 'an anti_alias = "blur" beside it')
        return None
    kind = reader.str_(doc, "anti_alias", path, choices=ANTI_ALIAS_KINDS)
    if order == "pre":
        expected = "no anti_alias in a pre-activation net (the word places the layer after a conv's BN and ReLU)"
        raise reader.error(_join(path, "anti_alias"), kind, expected)
    if kind == "avg":
        if taps is not None:
            raise reader.error(_join(filter_path, "anti_alias_filter"), taps, 'anti_alias = "blur" (a filter\'s taps)')
        return ("avg", 0)
    if taps is None:
        return ("blur", 3)
    if taps < 2:
        expected = "at least 2 taps (a filter of 1 tap does not blur)"
        raise reader.error(_join(filter_path, "anti_alias_filter"), taps, expected)
    return ("blur", taps)


def _alias_shortcut(
    reader: _Reader, where: Callable[[str], tuple[Mapping[str, Any], str]], anti_alias: tuple[str, int] | None,
    shortcut: ShortcutOption,
) -> bool:  # fmt: skip
    """The anti_alias_shortcut word (Zhang 2019's antialiased-cnns: a projection that subsamples blurs first, its
    1x1 conv then at stride 1): true only beside anti_alias = "blur", on a shortcut option with projections."""
    doc, path = where("anti_alias_shortcut")
    if "anti_alias_shortcut" not in doc:
        return False
    value = reader.bool_(doc, "anti_alias_shortcut", path, False)
    if not value:
        return False
    key = _join(path, "anti_alias_shortcut")
    if anti_alias is None or anti_alias[0] != "blur":
        raise reader.error(key, value, 'an anti_alias = "blur" beside it (the blur the projections take first)')
    if "projection" not in (shortcut.on_change, shortcut.otherwise):
        expected = f"a shortcut option with 1x1 projections (B or C; option {shortcut.name} has {shortcut.on_change})"
        raise reader.error(key, value, expected)
    return True


def _epsilon(reader: _Reader, doc: Mapping[str, Any], key: str, path: str) -> float | None:
    """An epsilon added to a variance: a number in (0, 0.1], or None where the key is absent."""
    if key not in doc:
        return None
    value = doc[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 0.1:
        raise reader.error(_join(path, key), value, "a number in (0, 0.1]: the epsilon added to each variance")
    return float(value)


def _eca_rule(reader: _Reader, where: Callable[[str], tuple[Mapping[str, Any], str]]) -> tuple[int, int] | int | None:
    """ECA's kernel rule: ``eca_gamma`` and ``eca_beta`` together (Wang et al. 2020, Eq. 12), or ``eca_kernel``
    alone (one odd kernel for every block, as the authors' code), or none of them."""
    (gamma_doc, gamma_path), (beta_doc, beta_path) = where("eca_gamma"), where("eca_beta")
    gamma = reader.optional_int(gamma_doc, "eca_gamma", gamma_path, bound="eca_gamma")
    beta = reader.optional_int(beta_doc, "eca_beta", beta_path, bound="eca_beta")
    if (gamma is None) != (beta is None):
        path, key, value = (gamma_path, "eca_gamma", gamma) if beta is None else (beta_path, "eca_beta", beta)
        other = "eca_beta" if beta is None else "eca_gamma"
        raise reader.error(_join(path, key), value, f"an {other} beside it (ECA's kernel rule takes both)")
    kernel_doc, kernel_path = where("eca_kernel")
    kernel = reader.optional_int(kernel_doc, "eca_kernel", kernel_path, bound="eca_kernel")
    if kernel is not None and gamma is not None:
        rule = "one ECA kernel rule: eca_kernel, or eca_gamma and eca_beta, not both"
        raise reader.error(_join(kernel_path, "eca_kernel"), kernel, rule)
    if kernel is not None and kernel % 2 == 0:
        expected = "an odd integer (the 1-D conv pads (k - 1) / 2 on each side to keep the channels)"
        raise reader.error(_join(kernel_path, "eca_kernel"), kernel, expected)
    if kernel is not None:
        return kernel
    return None if gamma is None or beta is None else (gamma, beta)


def _resolve_arch(
    reader: _Reader, doc: Mapping[str, Any], name: str, overrides: Mapping[str, str], variants: Variants
) -> ResNetSpec:
    table = doc["table"]
    arch = _arch_doc(reader, doc, name)
    family = reader.str_(table, "family", "table")
    input_size = reader.int_(table, "input_size", "table", bound="input_size")
    in_channels = reader.int_(table, "in_channels", "table", bound="channels")
    choices = _choices(reader, table, arch, name, overrides, variants)

    stem_doc, stem_path = (arch["stem"], f"{name}.stem") if "stem" in arch else (doc.get("stem", MISSING), "stem")
    if not isinstance(stem_doc, dict):
        raise reader.error(stem_path, stem_doc, "a table with conv1 (and optionally pool)")
    stem = _resolve_stem(reader, stem_doc, stem_path, in_channels, choices.stem_pool)
    stem_alias = choices.alias(stem.pool.stride) if stem.pool is not None and stem.pool.kind == "max" else None
    if stem.pool is not None and stem_alias is not None:
        # Zhang 2019's MaxBlurPool (timm's stem): the max at stride 1, then the anti-aliasing layer with the stride;
        # at stride 1 rounding up or down gives the same size (a Caffe pool is the PyTorch one)
        stem = replace(stem, pool=replace(stem.pool, stride=1, ceil_mode=False), anti_alias=stem_alias)
    stages = _resolve_stages(reader, arch, name, stem.out_channels, choices)
    head = _resolve_head(reader, doc, arch, name, choices.order)
    canonical = reader.bool_(doc[name], "canonical", name, False)

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
        variant=choices.variant,
        shortcut=choices.shortcut,
        stem=stem,
        stages=stages,
        head=head,
        paper=FrozenMapping(paper),
        order=choices.order,  # type: ignore[arg-type]
        stem_pool=choices.stem_pool if stem.pool is not None else None,
        se_reduction=choices.se_reduction,
        group_norm=choices.group_norm,
        weight_standardization=choices.weight_standardization,
        canonical=canonical,
        table_source=reader.str_(table, "source", "table"),
    )
    _check_output_sizes(reader, spec, stem_path)
    _check_groups(reader, spec, arch, name)
    return spec


def _check_groups(reader: _Reader, spec: ResNetSpec, arch: Mapping[str, Any], name: str) -> None:
    """GroupNorm's groups divide the channels of every map it normalises (each conv's output, each block's)."""
    groups = spec.group_norm
    if groups is None:
        return
    widths = {conv.out_channels for conv in spec.stem.convs}
    widths |= {conv.out_channels for block in spec.blocks for conv in block.convs}
    odd = sorted(c for c in widths if c % groups)
    if odd:
        path = name if "group_norm" in arch else "table"
        expected = f"a number of groups that divides every normalised width (not {', '.join(map(str, odd))})"
        raise reader.error(_join(path, "group_norm"), groups, expected)


def _resolve_head(reader: _Reader, doc: Mapping[str, Any], arch: Mapping[str, Any], name: str, order: str) -> Head:
    """Pool, fc and output; ``final_bn`` (a pre-activation net's BN-ReLU before the pool: He et al. 2016 have it,
    so it defaults to true where ``order = "pre"``; a post-activation net's last unit already ends in one)."""
    head_doc, head_path = (arch["head"], f"{name}.head") if "head" in arch else (doc.get("head", MISSING), "head")
    if not isinstance(head_doc, dict):
        raise reader.error(head_path, head_doc, "a table with pool, fc and output")
    reader.only_keys(head_doc, ("pool", "fc", "output", "final_bn"), head_path)
    final_bn = reader.bool_(head_doc, "final_bn", head_path, order == "pre")
    if final_bn and order != "pre":
        expected = 'false or nothing: only a pre-activation net (order = "pre") has a BN-ReLU before the pool'
        raise reader.error(f"{head_path}.final_bn", final_bn, expected)
    head = Head(
        pool=reader.str_(head_doc, "pool", head_path, choices=POOL_KINDS),  # type: ignore[arg-type]
        num_classes=reader.int_(head_doc, "fc", head_path, bound="classes"),
        output=reader.optional_int(head_doc, "output", head_path),
        final_bn=final_bn,
    )
    if head.output is not None and head.output != 1:
        raise reader.error(f"{head_path}.output", head.output, "1 (global pooling)")
    return head


def _resolve_stem(
    reader: _Reader, doc: dict[str, Any], path: str, in_channels: int, stem_pool: StemPool | None
) -> Stem:
    """``conv1`` is one conv (Table 1's "7x7, 64, stride 2") or a list of them (the deep stem of ResNet-C)."""
    reader.only_keys(doc, ("conv1", "pool"), path)
    conv_path = f"{path}.conv1"
    value = doc.get("conv1", MISSING)
    if isinstance(value, list) and value and len(value) <= BOUNDS["convs"]:
        items = [(item, f"{conv_path}[{i}]") for i, item in enumerate(value)]
    elif isinstance(value, dict):
        items = [(value, conv_path)]
    else:
        raise reader.error(conv_path, value, f"a table (one conv) or a list of 1 to {BOUNDS['convs']} tables")
    convs: list[Conv] = []
    output: int | None = None
    channels = in_channels
    for index, (item, item_path) in enumerate(items):
        if not isinstance(item, dict):
            raise reader.error(item_path, item, "a table with conv, stride and padding")
        last = index == len(items) - 1
        reader.only_keys(item, _STEM_CONV_KEYS if last else _STEM_CONV_KEYS[:-1], item_path)
        cell = _parse_conv_cell(reader, item.get("conv", MISSING), f"{item_path}.conv")
        convs.append(
            Conv(
                kernel=cell.kernel,
                in_channels=channels,
                out_channels=cell.channels,
                stride=reader.int_(item, "stride", item_path, bound="stride"),
                padding=reader.int_(item, "padding", item_path, minimum=0, bound="padding"),
                groups=cell.groups,
            )
        )
        channels = cell.channels
        if last:
            output = reader.optional_int(item, "output", item_path)
    pool = _resolve_pool(reader, doc, path, stem_pool)
    return Stem(convs=tuple(convs), output=output, pool=pool)


def _resolve_pool(reader: _Reader, doc: dict[str, Any], path: str, stem_pool: StemPool | None) -> Pool | None:
    """The stem pool: kind, kernel and stride from the table; padding and rounding from the table's stem_pool
    (variants.toml) where it names one, else from the pool's own ``padding`` (and ``ceil_mode``)."""
    pool_doc = reader.optional_table(doc, "pool", path)
    if pool_doc is None:
        return None
    pool_path = f"{path}.pool"
    reader.only_keys(pool_doc, ("kind", "kernel", "stride", "padding", "ceil_mode"), pool_path)
    zero_fill = False
    if stem_pool is not None:
        padding, ceil_mode, zero_fill = stem_pool.padding, stem_pool.ceil_mode, stem_pool.zero_fill
    else:
        padding = reader.int_(pool_doc, "padding", pool_path, minimum=0, bound="padding")
        ceil_mode = reader.bool_(pool_doc, "ceil_mode", pool_path, False)
    pool = Pool(
        kind=reader.str_(pool_doc, "kind", pool_path, choices=POOL_KINDS),  # type: ignore[arg-type]
        kernel=reader.int_(pool_doc, "kernel", pool_path, bound="kernel"),
        stride=reader.int_(pool_doc, "stride", pool_path, bound="stride"),
        padding=padding,
        ceil_mode=ceil_mode,
        zero_fill=zero_fill,
    )
    if stem_pool is not None and pool.kind != "max":  # a named stem pool is a max pool's padding and rounding
        raise reader.error(f"{pool_path}.kind", pool.kind,
                           f"'max' under stem_pool {stem_pool.name!r} (a max pool's padding and rounding)")  # fmt: skip
    if 2 * pool.padding > pool.kernel:
        raise reader.error(f"{pool_path}.padding", pool.padding, f"at most half the kernel ({pool.kernel // 2})")
    return pool


def _resolve_stages(
    reader: _Reader, arch: Mapping[str, Any], name: str, in_channels: int, choices: _Choices
) -> tuple[Stage, ...]:
    stage_names = [k for k in arch if _STAGE_NAME.match(k)]
    if not stage_names:
        raise reader.error(name, sorted(arch), "at least one stage row named conv2_x, conv3_x, ...")
    reader.bounded(name, len(stage_names), "stages")
    total = 0
    for stage_name in stage_names:  # every repeat count is checked before a single block is made
        stage_doc = arch[stage_name]
        if isinstance(stage_doc, dict):
            total += reader.int_(stage_doc, "repeats", f"{name}.{stage_name}", bound="repeats")
    reader.bounded(f"{name}.<repeats summed over the stages>", total, "blocks")
    stages: list[Stage] = []
    channels = in_channels
    for index, stage_name in enumerate(stage_names):
        expected = f"conv{index + 2}_x"
        if stage_name != expected:
            raise reader.error(
                f"{name}.{stage_name}", stage_name, f"stage rows in order conv2_x, conv3_x, ...: {expected}"
            )
        stage = _resolve_stage(reader, arch[stage_name], f"{name}.{stage_name}", stage_name, channels, choices)
        stages.append(stage)
        channels = stage.out_channels
    return tuple(stages)


def _stride_index(reader: _Reader, cells: list[_Cell], path: str, raw: object, variant: StrideVariant) -> int:
    if variant.stride_on == "first":
        return 0
    spatial = [i for i, cell in enumerate(cells) if cell.kernel > 1]
    if not spatial:
        raise reader.error(
            f"{path}.block", raw, f"a conv larger than 1x1 to carry the stride of variant {variant.name}"
        )
    return spatial[0]


def _parse_bracket(reader: _Reader, doc: Mapping[str, Any], path: str) -> tuple[list[Any], list[_Cell]]:
    raw = doc.get("block", MISSING)
    if not isinstance(raw, list) or not raw or len(raw) > BOUNDS["convs"]:
        raise reader.error(
            f"{path}.block",
            raw,
            f"a non-empty list of at most {BOUNDS['convs']} conv cells like ['3x3, 64', '3x3, 64']",
        )
    cells = [_parse_conv_cell(reader, cell, f"{path}.block[{i}]") for i, cell in enumerate(raw)]
    for i, cell in enumerate(cells):
        if cell.kernel % 2 == 0:
            raise reader.error(f"{path}.block[{i}]", raw[i], "an odd kernel, so that (k-1)/2 padding keeps the size")
    return raw, cells


def _resolve_stage(reader: _Reader, doc: object, path: str, name: str, in_channels: int, choices: _Choices) -> Stage:
    if not isinstance(doc, dict):
        raise reader.error(path, doc, "a table with block, repeats, stride (and output)")
    reader.only_keys(doc, _STAGE_KEYS, path)
    raw, cells = _parse_bracket(reader, doc, path)
    repeats = reader.int_(doc, "repeats", path, bound="repeats")
    stride = reader.int_(doc, "stride", path, bound="stride")
    stride_index = _stride_index(reader, cells, path, raw, choices.variant)
    shortcut = choices.shortcut
    prefix = name[: -len("_x")]
    blocks: list[Block] = []
    channels = in_channels
    for index in range(repeats):
        block_stride = stride if index == 0 else 1
        convs: list[Conv] = []
        conv_in = channels
        for i, cell in enumerate(cells):
            if conv_in % cell.groups:
                raise reader.error(f"{path}.block[{i}]", raw[i], f"groups dividing the conv's {conv_in} input channels")
            conv_stride = block_stride if i == stride_index and choices.anti_alias is None else 1
            convs.append(Conv(cell.kernel, conv_in, cell.channels, conv_stride, same_padding(cell.kernel), cell.groups))
            conv_in = cell.channels
        block_out = cells[-1].channels
        changes = block_stride != 1 or block_out != channels
        kind = shortcut.on_change if changes else shortcut.otherwise
        if kind == "zero_pad" and block_out < channels:
            raise reader.error(
                f"{path}.block[{len(cells) - 1}]",
                raw[-1],
                f"at least {channels} output channels: option {shortcut.name} zero-pads the shortcut and cannot drop "
                f"channels (block {prefix}_{index + 1} takes {channels})",
            )
        se_channels = _se_channels(reader, path, raw, block_out, choices.se_reduction, choices.se_divisor)
        rule = choices.eca
        eca = rule if rule is None or isinstance(rule, int) else eca_kernel(block_out, *rule)
        alias = choices.alias(block_stride)
        if alias is not None and stride_index == len(cells) - 1:
            expected = "a conv before the last to carry the stride: anti_alias follows its BN and ReLU"
            raise reader.error(f"{path}.block", raw, expected)
        block = Block(f"{prefix}_{index + 1}", tuple(convs), kind, block_stride, choices.order, se_channels, eca)  # type: ignore[arg-type]
        if choices.selective_kernel is not None:
            at, unit = _selective_unit(reader, path, raw, cells, convs, choices.selective_kernel)
            block = replace(block, selective_kernel=unit, selective_at=at)
        if alias is not None:
            block = replace(block, anti_alias=alias, anti_alias_at=stride_index)
        if alias is not None and choices.alias_shortcut and kind == "projection":
            block = replace(block, shortcut_alias=alias)
        blocks.append(block)
        channels = block_out
    groups = tuple(cell.groups for cell in cells)
    layers = tuple((cell.kernel, cell.channels) for cell in cells)
    return Stage(name, layers, repeats, stride, reader.optional_int(doc, "output", path), tuple(blocks), groups)


def _selective_unit(
    reader: _Reader, path: str, raw: list[Any], cells: list[_Cell], convs: list[Conv],
    rule: tuple[tuple[int, ...], int, int, bool],
) -> tuple[int, SelectiveKernel]:  # fmt: skip
    """The selective-kernel unit of a block: in place of its first conv with a kernel over 1 (a basic block's first
    3x3, a bottleneck's 3x3), never its last (the unit's paths end in BN and ReLU); d = max(C / r, L) (Li et al.
    2019, Eq. 4), r dividing the conv's C output channels; with a split input, the paths dividing its input."""
    dilations, reduction, min_width, split = rule
    at = next((i for i, cell in enumerate(cells) if cell.kernel > 1), None)
    if at is None or at == len(cells) - 1:
        expected = "a conv with a kernel over 1 before the last, for the selective-kernel unit (sk_dilations)"
        raise reader.error(f"{path}.block", raw, expected)
    conv = convs[at]
    if conv.out_channels % reduction:
        raise reader.error(f"{path}.block[{at}]", raw[at], f"output channels divisible by sk_reduction {reduction}")
    paths = len(dilations)
    if split and (conv.in_channels % paths or (conv.in_channels // paths) % conv.groups):
        expected = f"input channels {conv.in_channels} that split into {paths} paths of whole groups (sk_split)"
        raise reader.error(f"{path}.block[{at}]", raw[at], expected)
    return at, SelectiveKernel(dilations, max(conv.out_channels // reduction, min_width), split)


def _se_channels(
    reader: _Reader, path: str, raw: list[Any], channels: int, reduction: int | None, divisor: int | None
) -> int | None:
    """Squeeze-and-excitation's reduced width: C/r (Hu et al. 2018, Sec. 3.2), r dividing the block's output; with
    a divisor d, C/r rounded to the nearest multiple of d (halves up) and at least d, as timm's SEModule
    (``make_divisible(C / r, d, round_limit=0)``: ``max(d, int(C / r + d / 2) // d * d)``)."""
    if reduction is None:
        return None
    if divisor is not None:
        return max(divisor, (2 * channels + divisor * reduction) // (2 * reduction) // divisor * divisor)
    if channels % reduction:
        raise reader.error(
            f"{path}.block[{len(raw) - 1}]", raw[-1], f"output channels divisible by se_reduction {reduction}"
        )
    return channels // reduction


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
    last_stem = "conv1" if len(spec.stem.convs) == 1 else f"conv1[{len(spec.stem.convs) - 1}]"
    declared = {"conv1": (spec.stem.output, f"{stem_path}.{last_stem}.output")}
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
