"""Each JSON Schema keyword: enforced ones accept exactly valid values (checked against
jsonschema on the same values); the others are accepted and reported as unenforced."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import pytest

from pipelines.structured import check_gbnf, json_object_rules, schema_conversion
from pipelines.structured.convert import MAX_REPEAT
from tests.support.gbnf_regex import accepts


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


# (keyword, schema, values to try): the grammar must accept exactly the valid ones
ENFORCED: list[tuple[str, dict[str, Any], list[Any]]] = [
    ("type", {"type": "boolean"}, [True, False, 0, "true", None]),
    ("type", {"type": ["integer", "null"]}, [1, -3, None, 1.5, "1"]),
    ("enum", {"enum": ["a", "ab", 1, None, {"k": [1]}]}, ["a", "ab", "b", 1, 2, None, {"k": [1]}, {"k": []}]),
    ("const", {"const": 'x"y'}, ['x"y', "xy"]),
    ("minimum", {"type": "integer", "minimum": 0, "maximum": 150}, [0, 150, 151, -1, 42]),
    ("exclusiveMinimum", {"type": "integer", "exclusiveMinimum": -5, "exclusiveMaximum": 5}, [-5, -4, 4, 5, 0]),
    (
        "maximum",
        {"type": "integer", "minimum": -9007199254740991, "maximum": 9007199254740991},
        [9007199254740991, 9007199254740992, -9007199254740992, 0],
    ),
    ("minimum", {"type": "number", "minimum": 0}, [0, 0.5, 3e5, -0.5, -1]),
    ("minLength", {"type": "string", "minLength": 2, "maxLength": 4}, ["a", "ab", "abcd", "abcde", "é\n"]),
    ("pattern", {"type": "string", "pattern": "^[A-Z]{2}-\\d{3}$"}, ["AB-123", "ab-123", "AB-1234"]),
    ("format", {"type": "string", "format": "date"}, ["2024-02-28", "2024-13-01", "2024-02-31", "1999-11-30", "x"]),
    ("format", {"type": "string", "format": "uuid"}, ["00000000-0000-4000-8000-000000000000", "0000"]),
    ("format", {"type": "string", "format": "email"}, ["a.b@example.com", "nope"]),
    ("format", {"type": "string", "format": "ipv4"}, ["192.168.0.1", "256.1.1.1", "1.2.3"]),
    (
        "minItems",
        {"type": "array", "items": {"type": "integer"}, "minItems": 1, "maxItems": 2},
        [[], [1], [1, 2], [1, 2, 3], ["a"]],
    ),
    (
        "prefixItems",
        {"type": "array", "prefixItems": [{"type": "integer"}, {"type": "string"}], "minItems": 2, "maxItems": 2},
        [[1, "a"], ["a", 1], [1]],
    ),
    (
        "items",
        {
            "$schema": "http://json-schema.org/draft-07/schema#",
            "type": "array",
            "items": [{"type": "integer"}],
            "additionalItems": False,
        },
        [[1], [1, 2]],
    ),
    (
        "required",
        {
            "type": "object",
            "properties": {"a": {"type": "integer"}, "b": {"type": "string"}},
            "required": ["a"],
            "additionalProperties": False,
        },
        [{"a": 1}, {"a": 1, "b": "x"}, {"b": "x"}, {}, {"a": "1"}],
    ),
    (
        "properties",
        {
            "type": "object",
            "properties": {"a": {"type": "boolean"}, "b": {"type": "boolean"}, "c": {"type": "boolean"}},
        },
        [{}, {"a": True}, {"b": True}, {"a": True, "c": False}, {"a": 1}],
    ),
    (
        "additionalProperties",
        {"type": "object", "additionalProperties": {"type": "integer"}, "maxProperties": 2},
        [{}, {"x": 1}, {"x": 1, "y": 2}, {"x": "1"}, {"a": 1, "b": 2, "c": 3}],
    ),
    (
        "propertyNames",
        {"type": "object", "propertyNames": {"pattern": "^[a-z]+$"}, "additionalProperties": {"type": "boolean"}},
        [{"ok": True}, {"OK": True}],
    ),
    ("anyOf", {"anyOf": [{"type": "integer", "minimum": 10}, {"type": "string", "maxLength": 1}]}, [10, 9, "a", "ab"]),
    (
        "allOf",
        {
            "allOf": [
                {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]},
                {"properties": {"b": {"type": "integer"}}, "required": ["b"]},
            ]
        },
        [{"a": 1, "b": 2}, {"a": 1}],
    ),
    (
        "$ref",
        {"$defs": {"P": {"type": "integer", "maximum": 3}}, "type": "array", "items": {"$ref": "#/$defs/P"}},
        [[1, 3], [4]],
    ),
]


@pytest.mark.parametrize(
    ("keyword", "schema", "values"), ENFORCED, ids=[f"{k}-{i}" for i, (k, _, _) in enumerate(ENFORCED)]
)
def test_enforced_keyword_accepts_exactly_valid_values(keyword: str, schema: dict[str, Any], values: list[Any]) -> None:
    conversion = schema_conversion(schema)
    assert keyword not in conversion.unenforced
    validator = jsonschema.validators.validator_for(schema)(schema, format_checker=jsonschema.FormatChecker())
    for value in values:
        assert accepts(conversion.rules, _compact(value)) == validator.is_valid(value), value


UNENFORCED: list[tuple[str, dict[str, Any]]] = [
    ("multipleOf", {"type": "integer", "multipleOf": 3}),
    ("maximum", {"type": "number", "maximum": 1.5}),
    ("exclusiveMinimum", {"type": "number", "exclusiveMinimum": 0}),
    ("uniqueItems", {"type": "array", "items": {"type": "integer"}, "uniqueItems": True}),
    ("not", {"type": "string", "not": {"const": "x"}}),
    ("if", {"type": "object", "if": {"required": ["a"]}, "then": {"required": ["b"]}}),
    ("patternProperties", {"type": "object", "patternProperties": {"^x": {"type": "string"}}}),
    ("dependentRequired", {"type": "object", "dependentRequired": {"a": ["b"]}}),
    ("contains", {"type": "array", "contains": {"type": "integer"}}),
    ("minProperties", {"type": "object", "properties": {"a": {"type": "integer"}}, "minProperties": 1}),
    ("pattern", {"type": "string", "pattern": "^(?!x).+$"}),
    ("format", {"type": "string", "format": "uri"}),
    ("maxLength", {"type": "string", "maxLength": MAX_REPEAT + 1}),
    ("oneOf", {"oneOf": [{"type": "integer"}, {"type": "number"}]}),
]


@pytest.mark.parametrize(("keyword", "schema"), UNENFORCED, ids=[k for k, _ in UNENFORCED])
def test_unenforced_keyword_is_accepted_and_reported(keyword: str, schema: dict[str, Any]) -> None:
    conversion = schema_conversion(schema)
    assert keyword in conversion.unenforced
    check_gbnf(conversion.rules)


def test_annotations_pydantic_and_zod_emit_are_accepted_silently() -> None:
    schema = {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "$id": "x",
        "$comment": "c",
        "title": "T",
        "description": "d",
        "type": "object",
        "properties": {
            "n": {"type": "integer", "default": 1, "examples": [1], "deprecated": True, "readOnly": True},
            "s": {"type": "string", "contentMediaType": "text/plain", "writeOnly": False},
        },
        "required": ["n"],
        "additionalProperties": False,
        "definitions": {},
    }
    assert schema_conversion(schema).unenforced == frozenset()


def test_recursive_schema_is_a_recursive_grammar() -> None:
    schema = {
        "$defs": {
            "Node": {"type": "object", "properties": {"kids": {"type": "array", "items": {"$ref": "#/$defs/Node"}}}}
        },
        "$ref": "#/$defs/Node",
    }
    rules = schema_conversion(schema).rules
    check_gbnf(rules)
    assert "ref-Node" in rules


def test_rules_under_another_root_name_can_join_a_grammar() -> None:
    rules = schema_conversion({"type": "integer", "minimum": 1}, root="answer").rules
    assert all(line.startswith("answer") for line in rules.splitlines())
    check_gbnf('root ::= "x" answer\n' + rules)


def test_big_enum_shares_prefixes() -> None:
    values = [f"item-{i:05d}" for i in range(5000)]
    rules = schema_conversion({"enum": values}).rules
    check_gbnf(rules)
    assert len(rules) < sum(len(v) for v in values)


def test_json_object_grammar_is_well_formed() -> None:
    check_gbnf(json_object_rules())
