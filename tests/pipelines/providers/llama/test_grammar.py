"""grammar_for: response formats to llama.cpp grammars (checked, then parsed by llama.cpp
itself), and the schemas that are a 400 with a code (no model needed)."""

from __future__ import annotations

from typing import Any

import pytest

from pipelines.errors import InvalidRequest
from pipelines.providers.llama.grammar import gbnf_for, grammar_for
from pipelines.types import ResponseFormat
from tests.pipelines.structured.test_convert import ENFORCED, UNENFORCED
from tests.support.configs import PERSON_SCHEMA


def test_grammar_for_text_is_none() -> None:
    assert grammar_for(ResponseFormat()) is None


def test_grammar_for_json_object_and_schema() -> None:
    assert grammar_for(ResponseFormat(type="json_object")) is not None
    assert grammar_for(ResponseFormat(type="json_schema", schema=PERSON_SCHEMA)) is not None


@pytest.mark.parametrize("schema", [s for _, s, _ in ENFORCED] + [s for _, s in UNENFORCED])
def test_llama_cpp_parses_every_grammar_of_the_keyword_corpus(schema: dict[str, Any]) -> None:
    # what the client schemas of the unit tests become is what llama.cpp reads: it parses them all
    assert grammar_for(ResponseFormat(type="json_schema", schema=schema)) is not None


@pytest.mark.parametrize(
    ("schema", "code"),
    [
        ({"type": "integer", "minimum": 5, "maximum": 3}, "invalid_json_schema"),
        ({"$ref": "https://example.com/schema.json"}, "invalid_json_schema"),
        ({"$ref": "#/$defs/missing"}, "invalid_json_schema"),
        ({"$ref": "#"}, "json_schema_too_complex"),
    ],
)
def test_schema_without_a_grammar_is_a_400_with_a_code(schema: dict[str, Any], code: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        gbnf_for(ResponseFormat(type="json_schema", schema=schema))
    assert caught.value.code == code
    assert caught.value.param == "response_format.json_schema.schema"


def test_property_named_like_a_keyword_is_fine() -> None:
    schema = {"type": "object", "properties": {"not": {"type": "string"}, "minimum": {"type": "number"}}}
    assert grammar_for(ResponseFormat(type="json_schema", schema=schema)) is not None


def test_grammar_for_schema_missing() -> None:
    with pytest.raises(InvalidRequest):
        grammar_for(ResponseFormat(type="json_schema"))
