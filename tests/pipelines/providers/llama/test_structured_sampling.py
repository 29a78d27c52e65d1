"""Each enforced JSON Schema keyword on the real SmolLM2 through llama.cpp, sampled at
temperature 1.0: every answer that finished is valid against the full schema (the grammar
held the model to it), over several seeds per keyword."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from pipelines.providers.base import CancelToken, DecodeParams, Prompt
from pipelines.providers.llama import LlamaProvider
from pipelines.structured import schema_conversion, validate_text
from pipelines.types import Message, Piece, ResponseFormat
from tests.support.configs import smollm2_config

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]

SAMPLES = 3
NAME = {"type": "string", "minLength": 2, "maxLength": 8}
KEYWORDS: dict[str, dict[str, Any]] = {
    "integer bounds": {
        "type": "object",
        "properties": {
            "age": {"type": "integer", "minimum": 18, "maximum": 150},
            "delta": {"type": "integer", "exclusiveMinimum": -5, "exclusiveMaximum": 5},
        },
        "required": ["age", "delta"],
    },
    "zod int": {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "type": "object",
        "properties": {"n": {"type": "integer", "minimum": -9007199254740991, "maximum": 9007199254740991}},
        "required": ["n"],
        "additionalProperties": False,
    },
    "lengths and pattern": {
        "type": "object",
        "properties": {"name": NAME, "code": {"type": "string", "pattern": "^[A-Z]{2}-\\d{3}$"}},
        "required": ["name", "code"],
    },
    "formats": {
        "type": "object",
        "properties": {"day": {"type": "string", "format": "date"}, "id": {"type": "string", "format": "uuid"}},
        "required": ["day", "id"],
    },
    "items, enum, const": {
        "type": "array",
        "items": {"enum": ["red", "green", "blue"]},
        "minItems": 2,
        "maxItems": 3,
    },
    "refs, anyOf, allOf": {
        "$defs": {
            "Pet": {
                "type": "object",
                "properties": {"name": NAME, "kind": {"const": "cat"}},
                "required": ["name", "kind"],
            }
        },
        "type": "object",
        "properties": {
            "pet": {"$ref": "#/$defs/Pet"},
            "age": {"anyOf": [{"type": "integer", "minimum": 0, "maximum": 30}, {"type": "null"}]},
            "tag": {"allOf": [{"type": "string"}, {"maxLength": 4}]},
        },
        "required": ["pet", "age", "tag"],
    },
}


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def smol(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[LlamaProvider]:
    provider = LlamaProvider(smollm2_config(slots=1), cache_dir=Path(tmp_path_factory.mktemp("sampling-cache")))
    await provider.load()
    yield provider
    await provider.unload()


@pytest.mark.parametrize("keyword", list(KEYWORDS))
async def test_enforced_keywords_give_only_valid_output(smol: LlamaProvider, keyword: str) -> None:
    schema = KEYWORDS[keyword]
    assert schema_conversion(schema).unenforced == frozenset()
    prompt = Prompt(messages=(Message(role="user", content="Give an example as JSON."),))
    finished = 0
    for seed in range(SAMPLES):
        params = DecodeParams(
            max_tokens=120,
            temperature=1.0,
            seed=seed,
            response_format=ResponseFormat(type="json_schema", schema=schema),
        )
        pieces = [p async for p in smol.generate(prompt, params, CancelToken()) if isinstance(p, Piece)]
        text = b"".join(p.data for p in pieces).decode()
        verdict = validate_text(text, schema, truncated=len(pieces) >= params.max_tokens)
        assert verdict.outcome in ("valid", "truncated"), (text, verdict)
        finished += verdict.outcome == "valid"
        if verdict.outcome == "valid":
            json.loads(text)
    assert finished >= SAMPLES - 1
