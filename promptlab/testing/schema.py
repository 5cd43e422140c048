"""A valid example instance of a JSON schema, for unscripted structured replies."""

from __future__ import annotations

from typing import Any


def example_for(schema: dict[str, Any], root: dict[str, Any] | None = None) -> Any:
    """The simplest value that satisfies ``schema`` (objects, arrays, enums, unions, $ref).

    Example:
        ```python
        example_for({"type": "object", "properties": {"n": {"type": "integer"}}})  # {"n": 0}
        ```
    """
    root = root if root is not None else schema
    if "$ref" in schema:
        return example_for(_resolve(schema["$ref"], root), root)
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    if "default" in schema:
        return schema["default"]
    for key in ("anyOf", "oneOf"):
        if schema.get(key):
            options = [s for s in schema[key] if s.get("type") != "null"] or schema[key]
            return example_for(options[0], root)
    if schema.get("allOf"):
        merged: dict[str, Any] = {}
        for part in schema["allOf"]:
            merged.update(part)
        return example_for(merged, root)
    kind = schema.get("type", "object" if "properties" in schema else "string")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    return _by_type(kind, schema, root)


def _by_type(kind: str, schema: dict[str, Any], root: dict[str, Any]) -> Any:
    if kind == "object":
        properties: dict[str, Any] = schema.get("properties", {})
        return {name: example_for(sub, root) for name, sub in properties.items()}
    if kind == "array":
        items = schema.get("items", {})
        return [example_for(items, root) for _ in range(schema.get("minItems", 1))]
    if kind == "integer":
        return max(0, int(schema.get("minimum", 0)))
    if kind == "number":
        return float(max(0, schema.get("minimum", 0)))
    if kind == "boolean":
        return False
    if kind == "null":
        return None
    text = "a"
    return text * max(1, int(schema.get("minLength", 1)))


def _resolve(ref: str, root: dict[str, Any]) -> dict[str, Any]:
    node: Any = root
    for part in ref.removeprefix("#/").split("/"):
        node = node[part]
    assert isinstance(node, dict)
    return node
