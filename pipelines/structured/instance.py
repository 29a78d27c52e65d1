"""A small value valid for a JSON Schema: what the stub answers a structured request with
(and a forced tool call's arguments), deterministic for a schema and a fill word.

Required properties only (more when `minProperties` asks), the fewest items, numbers at 0
or their nearest bound, strings from the fill word cut to their lengths, a pattern's
shortest match, a format's sample. Candidates are checked against the full schema and the
first valid one is taken; where none is (a `not` that rules them all out, say), the best
guess is returned and the validation of the output reports it.
"""

from __future__ import annotations

import math
from typing import Any

from pipelines.structured.formats import FORMAT_SAMPLES
from pipelines.structured.primitives import bound, count, is_number, limit
from pipelines.structured.regex import UnsupportedPattern, parse_pattern, shortest_match
from pipelines.structured.schema import Document, SchemaError, merge_all, schema_type
from pipelines.structured.validate import fits, root_validator

__all__ = ["minimal_instance"]

_MAX_DEPTH = 24
_MAX_CANDIDATES = 32
"""Most candidates tried for one subschema (an `anyOf` of thousands is not walked whole)."""
_MAX_SIZE = 1000
"""Longest string, most items or properties an instance gets: a larger minimum is left
unmet (the stub's answer is then reported invalid) rather than built."""
_PREFERENCE = ("object", "string", "integer", "number", "boolean", "array", "null")


class _Maker:
    def __init__(self, root: Any, fill: str) -> None:
        self.root = root
        self.doc = Document(root)
        self.fill = fill or "stub"
        self.validator = root_validator(root)

    def valid(self, value: Any, schema: Any) -> bool:
        return fits(value, schema, self.validator)

    def value(self, schema: Any, depth: int) -> Any:
        if depth > _MAX_DEPTH or schema is True or schema is False or not isinstance(schema, dict):
            return None
        try:
            schema = self.doc.deref(schema)
            if isinstance(schema, dict) and isinstance(schema.get("allOf"), list):
                rest = {k: v for k, v in schema.items() if k != "allOf"}
                schema = merge_all([*schema["allOf"], rest], self.doc)
        except SchemaError:
            return None
        if not isinstance(schema, dict):
            return None
        first: Any = None
        for n, candidate in enumerate(self.candidates(schema, depth)):
            if self.valid(candidate, schema):
                return candidate
            if n == 0:
                first = candidate
            if n >= _MAX_CANDIDATES:
                break
        return first

    def candidates(self, schema: dict[str, Any], depth: int) -> Any:
        if "const" in schema:
            yield schema["const"]
            return
        if isinstance(schema.get("enum"), list):
            yield from schema["enum"]
            return
        branches = schema.get("anyOf") if isinstance(schema.get("anyOf"), list) else schema.get("oneOf")
        if isinstance(branches, list):
            rest = {k: v for k, v in schema.items() if k not in ("anyOf", "oneOf")}
            for branch in branches:
                try:
                    merged = merge_all([branch, rest], self.doc) if rest else branch
                except SchemaError:
                    continue
                yield self.value(merged, depth + 1)
            return
        types = schema_type(schema) or ["object"]
        for kind in sorted(types, key=lambda t: _PREFERENCE.index(t) if t in _PREFERENCE else len(_PREFERENCE)):
            yield from self.typed(kind, schema, depth)

    def typed(self, kind: str, schema: dict[str, Any], depth: int) -> Any:
        if kind == "null":
            yield None
        elif kind == "boolean":
            yield from (True, False)
        elif kind == "integer":
            yield from self.integers(schema)
        elif kind == "number":
            yield from self.numbers(schema)
        elif kind == "string":
            yield from self.strings(schema)
        elif kind == "array":
            yield self.array(schema, depth)
        elif kind == "object":
            yield self.object(schema, depth)

    def integers(self, schema: dict[str, Any]) -> Any:
        low = bound(schema, "minimum", "exclusiveMinimum", lower=True)
        high = bound(schema, "maximum", "exclusiveMaximum", lower=False)
        step: Any = schema.get("multipleOf")
        start = 0 if (low is None or low <= 0) and (high is None or high >= 0) else (low if low is not None else high)
        assert start is not None
        if is_number(step) and step > 0 and float(step).is_integer():
            m = int(step)
            yield math.ceil(start / m) * m if low is not None and start == low else (start // m) * m
        yield start

    def numbers(self, schema: dict[str, Any]) -> Any:
        yield from self.integers(schema)
        low: Any = schema.get("exclusiveMinimum")
        high: Any = schema.get("exclusiveMaximum")
        if is_number(low):
            yield low + 0.5 if not is_number(high) else (low + high) / 2
        if is_number(high):
            yield high - 0.5

    def strings(self, schema: dict[str, Any]) -> Any:
        low, high = min(count(schema.get("minLength")), _MAX_SIZE), limit(schema.get("maxLength"))
        pattern = schema.get("pattern")
        if isinstance(pattern, str):
            try:
                yield shortest_match(parse_pattern(pattern), low)
            except UnsupportedPattern:
                pass
        fmt = schema.get("format")
        if isinstance(fmt, str) and fmt in FORMAT_SAMPLES:
            yield FORMAT_SAMPLES[fmt]
        text = self.fill
        while len(text) < low:
            text = f"{text} {self.fill}"
        yield text[: high if high is not None else None].ljust(low, "a")

    def array(self, schema: dict[str, Any], depth: int) -> list[Any]:
        prefix = schema.get("prefixItems")
        items = schema.get("items", True)
        if isinstance(items, list):
            prefix, items = items, schema.get("additionalItems", True)
        low = min(count(schema.get("minItems")), _MAX_SIZE)
        out = [self.value(s, depth + 1) for s in (prefix if isinstance(prefix, list) else [])][: max(low, 0) or None]
        if isinstance(prefix, list) and len(out) < len(prefix) and low <= len(out):
            out = out[:low]
        if isinstance(schema.get("contains"), dict):
            out.append(self.value(schema["contains"], depth + 1))
        while len(out) < low:
            out.append(self.value(items if isinstance(items, dict) else {}, depth + 1))
        return out

    def object(self, schema: dict[str, Any], depth: int) -> dict[str, Any]:
        properties = schema.get("properties") if isinstance(schema.get("properties"), dict) else {}
        assert isinstance(properties, dict)
        required = [n for n in schema.get("required", ()) if isinstance(n, str)]
        extra = schema.get("additionalProperties")
        out: dict[str, Any] = {}
        for name in [*(n for n in properties if n in required), *(n for n in required if n not in properties)]:
            sub = properties.get(name, extra if isinstance(extra, dict) else {})
            out[name] = self.value(sub, depth + 1)
        least = min(count(schema.get("minProperties")), _MAX_SIZE)
        for name, sub in properties.items():
            if len(out) >= least:
                break
            out.setdefault(name, self.value(sub, depth + 1))
        while len(out) < least and extra is not False:
            out[f"{self.fill}{len(out)}"] = self.value(extra if isinstance(extra, dict) else {}, depth + 1)
        return out


def minimal_instance(schema: Any, fill: str = "stub") -> Any:
    """A small value valid for `schema` where one can be found (see the module docstring);
    `fill` is the text strings are made of."""
    if schema is True or schema == {}:
        return {}
    return _Maker(schema, fill).value(schema, 0)
