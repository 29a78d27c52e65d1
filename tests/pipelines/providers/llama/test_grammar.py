"""grammar_for: response formats to llama.cpp grammars, and the schemas it refuses (no model needed)."""

from __future__ import annotations

import pytest

from pipelines.errors import InvalidRequest
from pipelines.providers.llama.grammar import grammar_for
from pipelines.types import ResponseFormat
from tests.support.configs import PERSON_SCHEMA


def test_grammar_for_text_is_none() -> None:
    assert grammar_for(ResponseFormat()) is None


def test_grammar_for_json_object_and_schema() -> None:
    assert grammar_for(ResponseFormat(type="json_object")) is not None
    assert grammar_for(ResponseFormat(type="json_schema", schema=PERSON_SCHEMA)) is not None


@pytest.mark.parametrize(
    ("schema", "construct"),
    [
        ({"type": "object", "properties": {"a": {"not": {"type": "string"}}}}, "'not'"),
        ({"type": "object", "properties": {"n": {"type": "integer", "minimum": 3}}}, "'minimum'"),
        ({"type": "array", "items": {"type": "string"}, "uniqueItems": True}, "'uniqueItems'"),
        ({"type": "string", "pattern": "[a-z]+"}, "pattern"),
        ({"type": "string", "format": "email"}, "'email'"),
        ({"type": "thing"}, "'thing'"),
        ({"$ref": "https://example.com/schema.json"}, "$ref"),
        ({"type": "object", "patternProperties": {"^x": {"type": "string"}}}, "'patternProperties'"),
    ],
)
def test_grammar_for_unsupported_schema_names_construct(schema: dict[str, object], construct: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        grammar_for(ResponseFormat(type="json_schema", schema=schema))
    assert construct in caught.value.message
    assert caught.value.param == "response_format.json_schema.schema"


def test_grammar_for_property_named_like_a_keyword_is_fine() -> None:
    schema = {"type": "object", "properties": {"not": {"type": "string"}, "minimum": {"type": "number"}}}
    assert grammar_for(ResponseFormat(type="json_schema", schema=schema)) is not None


def test_grammar_for_schema_missing() -> None:
    with pytest.raises(InvalidRequest):
        grammar_for(ResponseFormat(type="json_schema"))
