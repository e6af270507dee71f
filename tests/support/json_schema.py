"""A validator for the JSON Schema subset ``resnet_spec.verify.JSON_SCHEMA`` uses (no jsonschema dependency).

Keywords: type (one or a list), required, properties, additionalProperties (false), items, minItems, maxItems,
oneOf, enum, and $ref to "#/$defs/NAME".  Any other keyword in a schema is an error, so the subset cannot drift
silently from what the schema says.
"""

from __future__ import annotations

from typing import Any

_TYPES = {
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
    "array": lambda v: isinstance(v, list),
    "object": lambda v: isinstance(v, dict),
}
_KNOWN = {"$schema", "title", "$defs", "type", "required", "properties", "additionalProperties", "items", "minItems",
          "maxItems", "oneOf", "enum", "$ref"}  # fmt: skip


def errors(instance: Any, schema: dict[str, Any], root: dict[str, Any] | None = None, path: str = "$") -> list[str]:
    """Every way ``instance`` breaks ``schema`` (empty when it is valid), each with its JSON path."""
    root = schema if root is None else root
    unknown = set(schema) - _KNOWN
    if unknown:
        return [f"{path}: schema uses unsupported keywords {sorted(unknown)}"]
    if "$ref" in schema:
        name = schema["$ref"].removeprefix("#/$defs/")
        return errors(instance, root["$defs"][name], root, path)
    found: list[str] = []
    if "type" in schema:
        types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        if not any(_TYPES[t](instance) for t in types):
            return [f"{path}: expected {' or '.join(types)}, got {type(instance).__name__} {instance!r}"]
    if "enum" in schema and instance not in schema["enum"]:
        found.append(f"{path}: {instance!r} is not one of {schema['enum']}")
    if "oneOf" in schema:
        matching = [s for s in schema["oneOf"] if not errors(instance, s, root, path)]
        if len(matching) != 1:
            details = [e for s in schema["oneOf"] for e in errors(instance, s, root, path)][:5]
            found.append(f"{path}: matches {len(matching)} of the oneOf branches, expected 1 ({details})")
    if isinstance(instance, dict):
        for key in schema.get("required", ()):
            if key not in instance:
                found.append(f"{path}: missing key {key!r}")
        properties = schema.get("properties", {})
        for key, value in instance.items():
            if key in properties:
                found += errors(value, properties[key], root, f"{path}.{key}")
            elif schema.get("additionalProperties") is False:
                found.append(f"{path}: unexpected key {key!r}")
    if isinstance(instance, list):
        if len(instance) < schema.get("minItems", 0) or len(instance) > schema.get("maxItems", len(instance)):
            found.append(f"{path}: {len(instance)} items, outside [{schema.get('minItems')}, {schema.get('maxItems')}]")
        if "items" in schema:
            for i, item in enumerate(instance):
                found += errors(item, schema["items"], root, f"{path}[{i}]")
    return found


def assert_valid(instance: Any) -> None:
    """``instance`` is a valid `compare --format json` document (resnet_spec.verify.JSON_SCHEMA)."""
    from resnet_spec.verify import JSON_SCHEMA

    problems = errors(instance, JSON_SCHEMA)
    assert not problems, "JSON does not match the documented schema:\n" + "\n".join(problems)
