"""The registry: every entry of the shipped tables, keyed by name; a depth is a convenience that names one.

The shipped tables are ``spec_tables/*.toml`` (inside the installed package, or at the top of a checkout), or the
directory the environment variable ``RESNET_SPEC_TABLES`` names (a copy to extend without touching the install).
Any number of entries may share a depth; ``--depth N`` and :func:`residual_depths` resolve among the entries a
table marks ``canonical = true``.
"""

from __future__ import annotations

import difflib
import functools
import os
from pathlib import Path
from typing import Any

from ._loader import KNOBS, Variants, load_variants, read_toml, resolve_entry, resolve_table
from ._types import ResNetSpec, SpecError, unusual_characters

__all__ = [
    "TABLES_ENV",
    "as_spec",
    "families",
    "knob_options",
    "list_specs",
    "load_spec",
    "load_table",
    "residual_depths",
    "shortcut_names",
    "tables_dir",
    "variant_names",
    "variants",
]

TABLES_ENV = "RESNET_SPEC_TABLES"
_VARIANTS_FILE = "variants.toml"


def tables_dir() -> Path:
    """The directory holding the tables: ``$RESNET_SPEC_TABLES``, else the installed package's or the checkout's."""
    return _tables_dir(os.environ.get(TABLES_ENV) or None)


@functools.cache  # the registry asks at every lookup; the answer changes only with the environment variable
def _tables_dir(override: str | None) -> Path:
    if override is not None:
        path = Path(override)
        if not path.is_dir():
            raise FileNotFoundError(f"{TABLES_ENV}={override}: expected a directory of table files (*.toml)")
        return path
    from importlib import resources

    packaged = resources.files("resnet_spec") / "spec_tables"
    if packaged.is_dir():
        return Path(str(packaged))
    checkout = Path(__file__).resolve().parents[2] / "spec_tables"
    if checkout.is_dir():
        return checkout
    raise FileNotFoundError(
        f"resnet_spec cannot find its tables: neither {packaged} (installed wheel) nor {checkout} (source checkout) "
        "exists; reinstall the package"
    )


@functools.cache
def _variants_in(directory: Path) -> Variants:
    path = directory / _VARIANTS_FILE
    return load_variants(read_toml(path), str(path))


def variants() -> Variants:
    """The named deviations of the tables' ``variants.toml``."""
    return _variants_in(tables_dir())


def load_table(doc: Any, file: str = "<table>", **overrides: str) -> dict[str, ResNetSpec]:
    """Validate a table document (as parsed from TOML) and resolve every architecture in it, under ``overrides``.

    Raises :class:`~resnet_spec.spec.SpecError` for anything malformed.
    """
    return resolve_table(doc, file, variants(), **overrides)


@functools.cache
def _registry_in(directory: Path) -> dict[str, ResNetSpec]:
    registry: dict[str, ResNetSpec] = {}
    table_variants = _variants_in(directory)
    for path in sorted(p for p in directory.glob("*.toml") if p.name != _VARIANTS_FILE):
        for name, spec in resolve_table(_document(str(path)), str(path), table_variants).items():
            if name in registry:
                raise SpecError(str(path), name, name, f"a name not already defined in {registry[name].table_file}")
            registry[name] = spec
    return registry


def _registry() -> dict[str, ResNetSpec]:
    return _registry_in(tables_dir())


@functools.cache  # at most (entries x options of every knob), each a few kilobytes
def _resolution(
    file: str, directory: Path, name: str, overrides: tuple[tuple[str, str], ...]
) -> ResNetSpec | SpecError:
    """A shipped entry resolved under ``overrides``, or why it cannot be (cached either way: the shipped files do
    not change while we run, and the best-match search asks every option of every knob of every entry)."""
    try:
        return resolve_entry(_document(file), file, _variants_in(directory), name, **dict(overrides))
    except SpecError as e:
        return e


@functools.cache
def _document(file: str) -> Any:
    """A shipped table file, parsed (read once)."""
    return read_toml(Path(file))


def _resolved(file: str, directory: Path, name: str, overrides: tuple[tuple[str, str], ...]) -> ResNetSpec:
    """A shipped entry resolved under ``overrides``; raises its SpecError."""
    resolution = _resolution(file, directory, name, overrides)
    if isinstance(resolution, SpecError):
        raise SpecError(resolution.file, resolution.key_path, resolution.found, resolution.expected, resolution.hint)
    return resolution


def list_specs(family: str | None = None) -> list[str]:
    """Names of the architectures in the shipped tables (optionally of one family: 'imagenet', 'cifar10')."""
    return [name for name, spec in _registry().items() if family is None or spec.family == family]


def families() -> list[str]:
    """The families of the shipped tables, e.g. ['cifar10', 'imagenet']."""
    return sorted({spec.family for spec in _registry().values()})


def residual_depths(family: str) -> dict[int, str]:
    """Depth -> name of each canonical residual entry of one family of the shipped tables, in depth order.

    E.g. ``residual_depths("imagenet") == {18: "resnet18", ..., 152: "resnet152"}``.  Only entries marked
    ``canonical = true`` take part, so any number of other entries may share a depth.  Raises ``LookupError`` for an
    unknown family, or when two canonical entries of the family have the same depth (a depth would not name one).
    """
    if family not in families():
        raise LookupError(f"unknown family {family!r}; expected one of {', '.join(families())}")
    depths: dict[int, str] = {}
    for name in list_specs(family):
        spec = _registry()[name]
        if not spec.canonical or not spec.shortcut.residual:
            continue
        if spec.depth in depths:
            raise LookupError(
                f"{family}: canonical entries {depths[spec.depth]!r} and {name!r} both have depth {spec.depth}"
            )
        depths[spec.depth] = name
    return dict(sorted(depths.items()))


def knob_options() -> dict[str, tuple[str, ...]]:
    """Each named deviation (``variant``, ``shortcut``, ``stem_pool``) and its options, from ``variants.toml``."""
    table_variants = variants()
    return {knob: tuple(table_variants.options(knob)) for knob in KNOBS}


def knob_combinations(spec: ResNetSpec) -> list[dict[str, str]]:
    """Every choice of one option for each named deviation (:func:`knob_options`) to load ``spec``'s entry under, as
    :func:`load_spec` keywords.  A knob the entry leaves unnamed (a stem pool that pads as its own table says) may also
    stay unnamed, and that choice comes first.  Some choices form no network (``load_spec`` raises SpecError)."""
    combinations: list[dict[str, str]] = [{}]
    for knob, options in knob_options().items():
        choices: list[str | None] = [None] if knob not in spec.knobs else []
        choices += options
        combinations = [c if option is None else {**c, knob: option} for c in combinations for option in choices]
    return combinations


def variant_names() -> tuple[str, ...]:
    """The stride placements of variants.toml, e.g. ('v1', 'v1.5')."""
    return knob_options()["variant"]


def shortcut_names() -> tuple[str, ...]:
    """The shortcut options of variants.toml, e.g. ('A', 'B', 'C', 'D', 'none')."""
    return knob_options()["shortcut"]


def as_spec(spec: object, where: str) -> ResNetSpec:
    """``spec`` itself when it is a :class:`ResNetSpec`, else what :func:`load_spec` makes of a name or path.

    ``where`` names the function for the message; raises TypeError for anything else, SpecError for an unknown name.
    """
    if isinstance(spec, ResNetSpec):
        return spec
    if isinstance(spec, (str, Path)):
        return load_spec(spec)
    raise TypeError(f"{where}: expected spec a ResNetSpec, a spec name or a TOML path, got {type(spec).__name__}")


def load_spec(name_or_path: str | Path, **overrides: str) -> ResNetSpec:
    """Load one architecture.

    ``name_or_path`` is a shipped name (``"resnet50"``; see :func:`list_specs`), a TOML file holding one
    architecture, or ``"file.toml:name"``.  ``overrides`` name a deviation of ``variants.toml`` per knob:
    ``variant="v1" | "v1.5"`` (stride placement), ``shortcut="A" | "B" | "C" | "D" | "none"``,
    ``stem_pool="padded" | "caffe" | "zeros"``.  Raises :class:`~resnet_spec.spec.SpecError` for anything malformed
    or unknown.
    """
    text = str(name_or_path)
    if isinstance(name_or_path, Path) or text.endswith(".toml") or ".toml:" in text:
        file, colon, arch = text.partition(".toml:") if ".toml:" in text else (text, "", "")
        path = Path(file + ".toml" if colon else file)
        if colon and not arch:
            raise SpecError(str(path), "<name>", text, f"a name after the colon: '{path}:NAME'")
        specs = load_table(read_toml(path), str(path), **overrides)
        if not arch:
            if len(specs) != 1:
                raise SpecError(str(path), "<file>", sorted(specs), f"one architecture, or a name: '{path}:NAME'")
            return next(iter(specs.values()))
        if arch not in specs:
            raise SpecError(str(path), arch, arch, "one of " + ", ".join(sorted(specs)))
        return specs[arch]
    registry = _registry()
    if text not in registry:
        close = difflib.get_close_matches(text, list(registry), n=3, cutoff=0.75)
        hints = [unusual_characters(text), f"did you mean {' or '.join(map(repr, close))}?" if close else ""]
        raise SpecError("<registry>", "<name>", text, f"one of the {len(registry)} known entries (resnet-spec list)",
                        "; ".join(h for h in hints if h))  # fmt: skip
    if not overrides:
        return registry[text]
    return _resolved(registry[text].table_file, tables_dir(), text, tuple(sorted(overrides.items())))
