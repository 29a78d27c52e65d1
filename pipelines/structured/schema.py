"""A client's JSON Schema as the converter and the stub read it: local `$ref`s, `allOf`
merged where that is exact enough, and the vocabulary of keywords by what becomes of them."""

from __future__ import annotations

import urllib.parse
from typing import Any

__all__ = [
    "ANNOTATIONS",
    "KEYWORDS",
    "TYPES",
    "Document",
    "SchemaError",
    "merge_all",
    "schema_type",
]

TYPES = ("object", "array", "string", "integer", "number", "boolean", "null")

ANNOTATIONS = frozenset(
    {
        "$schema",
        "$id",
        "$anchor",
        "$dynamicAnchor",
        "$comment",
        "$vocabulary",
        "$defs",
        "definitions",
        "title",
        "description",
        "default",
        "examples",
        "example",
        "deprecated",
        "readOnly",
        "writeOnly",
        "contentMediaType",
        "contentEncoding",
        "contentSchema",
        "discriminator",
        "strict",
        "id",
        "nullable",
    }
)
"""Keywords that say something about a value without constraining it (pydantic's and
zod's titles, descriptions, defaults, examples, `$schema`)."""

KEYWORDS = frozenset(
    {
        "type",
        "enum",
        "const",
        "properties",
        "required",
        "additionalProperties",
        "patternProperties",
        "propertyNames",
        "minProperties",
        "maxProperties",
        "dependentRequired",
        "dependentSchemas",
        "dependencies",
        "unevaluatedProperties",
        "items",
        "prefixItems",
        "additionalItems",
        "contains",
        "minContains",
        "maxContains",
        "minItems",
        "maxItems",
        "uniqueItems",
        "unevaluatedItems",
        "minLength",
        "maxLength",
        "pattern",
        "format",
        "minimum",
        "maximum",
        "exclusiveMinimum",
        "exclusiveMaximum",
        "multipleOf",
        "anyOf",
        "oneOf",
        "allOf",
        "not",
        "if",
        "then",
        "else",
        "$ref",
        "$dynamicRef",
    }
    | ANNOTATIONS
)
"""Every keyword the gateway knows: the bounded vocabulary of what it reports as unenforced."""


class SchemaError(ValueError):
    """The schema cannot be read (a `$ref` that leads nowhere, a cycle of `$ref`s)."""


def _unescape(token: str) -> str:
    return urllib.parse.unquote(token).replace("~1", "/").replace("~0", "~")


class Document:
    """The whole schema a request sent, to resolve its local `$ref`s against."""

    def __init__(self, root: Any) -> None:
        self.root = root

    def resolve(self, ref: str) -> Any:
        """The subschema a local `$ref` (`#`, `#/$defs/Name`, ...) points at."""
        if not ref.startswith("#"):
            raise SchemaError(f"$ref {ref!r} points outside the schema; only local references (#/...) are supported")
        pointer = ref[1:]
        node = self.root
        if pointer == "":
            return node
        if not pointer.startswith("/"):
            raise SchemaError(f"$ref {ref!r} is not a JSON pointer into the schema")
        for raw in pointer[1:].split("/"):
            token = _unescape(raw)
            if isinstance(node, dict) and token in node:
                node = node[token]
            elif isinstance(node, list) and token.isdigit() and int(token) < len(node):
                node = node[int(token)]
            else:
                raise SchemaError(f"$ref {ref!r} points at nothing in the schema")
        return node

    def deref(self, schema: Any, limit: int = 64) -> Any:
        """`schema` with a `$ref` that is its only constraint followed (sibling annotations
        dropped), repeatedly."""
        seen = 0
        while isinstance(schema, dict) and isinstance(schema.get("$ref"), str):
            rest = {k: v for k, v in schema.items() if k != "$ref" and k not in ANNOTATIONS}
            target = self.resolve(schema["$ref"])
            if rest:
                return merge_all([target, rest], self)
            schema = target
            seen += 1
            if seen > limit:
                raise SchemaError("a cycle of $refs that never reaches a schema")
        return schema


def schema_type(schema: dict[str, Any]) -> list[str] | None:
    """The types a schema allows (None: any), from `type` or, without it, from the
    keywords only one type has (`properties` means an object)."""
    declared = schema.get("type")
    if isinstance(declared, str):
        return [declared]
    if isinstance(declared, list):
        return [t for t in declared if isinstance(t, str)]
    if any(k in schema for k in ("properties", "required", "additionalProperties", "patternProperties")):
        return ["object"]
    if any(k in schema for k in ("items", "prefixItems", "minItems", "maxItems")):
        return ["array"]
    if any(k in schema for k in ("minLength", "maxLength", "pattern", "format")):
        return ["string"]
    if any(k in schema for k in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf")):
        return ["number"]
    return None


_STRICTER_MIN = ("minimum", "exclusiveMinimum", "minLength", "minItems", "minProperties")
_STRICTER_MAX = ("maximum", "exclusiveMaximum", "maxLength", "maxItems", "maxProperties")


def merge_all(schemas: list[Any], doc: Document, depth: int = 0) -> Any:
    """One schema for all of `schemas` (an `allOf`), exact for what objects, bounds, types,
    enums and `required` say; where two say different things that cannot be combined
    (two patterns, say), the first is kept and `allOf` is added to `x-unmerged` for the
    converter to report."""
    if depth > 32:
        raise SchemaError("allOf nests too deep")
    merged: dict[str, Any] = {}
    for raw in schemas:
        schema = doc.deref(raw)
        if schema is True or schema == {}:
            continue
        if schema is False:
            return False
        if not isinstance(schema, dict):
            continue
        if "allOf" in schema and isinstance(schema["allOf"], list):
            rest = {k: v for k, v in schema.items() if k != "allOf"}
            schema = merge_all([*schema["allOf"], rest], doc, depth + 1)
            if not isinstance(schema, dict):
                if schema is False:
                    return False
                continue
        for key, value in schema.items():
            if key in ANNOTATIONS and key not in ("$defs", "definitions"):
                merged.setdefault(key, value)
            elif key not in merged:
                merged[key] = value
            elif merged[key] == value:
                continue
            elif key == "properties" and isinstance(value, dict) and isinstance(merged[key], dict):
                props = dict(merged[key])
                for name, sub in value.items():
                    props[name] = merge_all([props[name], sub], doc, depth + 1) if name in props else sub
                merged[key] = props
            elif key == "required" and isinstance(value, list) and isinstance(merged[key], list):
                merged[key] = [*merged[key], *(n for n in value if n not in merged[key])]
            elif key in _STRICTER_MIN and _number(value) and _number(merged[key]):
                merged[key] = max(merged[key], value)
            elif key in _STRICTER_MAX and _number(value) and _number(merged[key]):
                merged[key] = min(merged[key], value)
            elif key == "type":
                both = _types(merged[key]) & _types(value)
                if not both:
                    return False
                merged[key] = next(iter(both)) if len(both) == 1 else sorted(both)
            elif key == "enum" and isinstance(value, list) and isinstance(merged[key], list):
                merged[key] = [v for v in merged[key] if v in value]
            else:
                merged.setdefault("x-unmerged", [])
                merged["x-unmerged"] = [*merged["x-unmerged"], key]
    return merged


def _types(value: Any) -> set[str]:
    """The types a `type` value allows (an integer is a number)."""
    declared = {t for t in (value if isinstance(value, list) else [value]) if isinstance(t, str)}
    return declared | ({"integer"} if "number" in declared else set())


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
