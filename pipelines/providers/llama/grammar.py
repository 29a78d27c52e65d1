"""Structured output: the llama.cpp grammar (GBNF) that holds output to a response format.

A JSON schema is converted by llama-cpp-python's converter, which ignores what it cannot
express; such schemas are refused naming the construct, instead of silently loosened.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from pipelines.errors import InvalidRequest
from pipelines.providers.llama.runtime import runtime
from pipelines.types import ResponseFormat

if TYPE_CHECKING:
    from llama_cpp.llama_grammar import LlamaGrammar

__all__ = ["SCHEMA_PARAM", "gbnf_for", "grammar_for"]

SCHEMA_PARAM = "response_format.json_schema.schema"
"""The request field a grammar problem is reported against."""

# Keywords the JSON-schema-to-grammar converter ignores or cannot express: output would
# not be guaranteed to validate.
_UNSUPPORTED_KEYWORDS = (
    "not",
    "if",
    "then",
    "else",
    "patternProperties",
    "propertyNames",
    "dependentSchemas",
    "dependentRequired",
    "dependencies",
    "contains",
    "minContains",
    "maxContains",
    "uniqueItems",
    "unevaluatedProperties",
    "unevaluatedItems",
    "minProperties",
    "maxProperties",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "multipleOf",
)
_SCHEMA_TYPES = frozenset({"string", "number", "integer", "boolean", "object", "array", "null"})
_STRING_FORMATS = frozenset({"date", "time", "date-time", "uuid", "uuid1", "uuid2", "uuid3", "uuid4", "uuid5"})


def grammar_for(response_format: ResponseFormat) -> LlamaGrammar | None:
    """The grammar that constrains output to `response_format` (None for plain text).

    Raises `InvalidRequest` naming the construct when a JSON schema cannot be enforced.
    """
    gbnf = gbnf_for(response_format)
    if gbnf is None:
        return None
    grammar: LlamaGrammar = runtime().llama_grammar.LlamaGrammar.from_string(gbnf, verbose=False)
    return grammar


def gbnf_for(response_format: ResponseFormat) -> str | None:
    """The GBNF text of `grammar_for` (what llama.cpp's grammar sampler takes)."""
    llama_grammar = runtime().llama_grammar
    if response_format.type == "json_object":
        return str(llama_grammar.JSON_GBNF)
    if response_format.type != "json_schema":
        return None
    schema = response_format.schema
    if schema is None:
        raise InvalidRequest("response_format json_schema needs a schema", param=SCHEMA_PARAM)
    problem = _unsupported_construct(schema, "#")
    if problem is not None:
        raise InvalidRequest(f"response_format: JSON schema not supported: {problem}", param=SCHEMA_PARAM)
    try:
        return str(llama_grammar.json_schema_to_gbnf(json.dumps(schema)))
    except Exception as exc:  # the converter reports with asserts and ValueErrors alike
        raise InvalidRequest(
            f"response_format: JSON schema not supported: {type(exc).__name__}: {exc}", param=SCHEMA_PARAM
        ) from None


def _unsupported_construct(schema: object, where: str) -> str | None:
    """The first construct in `schema` the grammar converter cannot enforce, described."""
    if isinstance(schema, bool):
        return None
    if not isinstance(schema, dict):
        return f"{where} is not a schema object"
    for keyword in _UNSUPPORTED_KEYWORDS:
        if keyword in schema:
            return f"keyword {keyword!r} at {where}"
    types = schema.get("type")
    for type_name in types if isinstance(types, list) else [types]:
        if type_name is not None and type_name not in _SCHEMA_TYPES:
            return f"type {type_name!r} at {where}"
    fmt = schema.get("format")
    if fmt is not None and fmt not in _STRING_FORMATS:
        return f"format {fmt!r} at {where}"
    ref = schema.get("$ref")
    if ref is not None and not (isinstance(ref, str) and ref.startswith("#/")):
        return f"non-local $ref {ref!r} at {where}"
    pattern = schema.get("pattern")
    if pattern is not None and not (isinstance(pattern, str) and pattern.startswith("^") and pattern.endswith("$")):
        return f"pattern {pattern!r} at {where} (patterns must be anchored with ^ and $)"
    for sub_where, sub in _subschemas(schema, where):
        problem = _unsupported_construct(sub, sub_where)
        if problem is not None:
            return problem
    return None


def _subschemas(schema: dict[str, Any], where: str) -> list[tuple[str, object]]:
    found: list[tuple[str, object]] = []
    for keyword in ("properties", "$defs", "definitions"):
        members = schema.get(keyword)
        if isinstance(members, dict):
            found.extend((f"{where}/{keyword}/{name}", sub) for name, sub in members.items())
    for keyword in ("anyOf", "oneOf", "allOf", "prefixItems"):
        members = schema.get(keyword)
        if isinstance(members, list):
            found.extend((f"{where}/{keyword}/{i}", sub) for i, sub in enumerate(members))
    items = schema.get("items")
    if isinstance(items, list):
        found.extend((f"{where}/items/{i}", sub) for i, sub in enumerate(items))
    elif items is not None:
        found.append((f"{where}/items", items))
    additional = schema.get("additionalProperties")
    if isinstance(additional, dict):
        found.append((f"{where}/additionalProperties", additional))
    return found
