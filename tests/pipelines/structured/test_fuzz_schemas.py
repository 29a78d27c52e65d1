"""Thousands of generated and hostile schemas through the request-time check, the
converter, llama.cpp's own grammar parser, the stub's instance maker and the validator:
each is used or refused with a 400 code, nothing else ever happens."""

from __future__ import annotations

import collections
import json
from typing import Any

import pytest

from pipelines.errors import InvalidRequest
from pipelines.providers.llama.runtime import runtime
from pipelines.structured import (
    INVALID_SCHEMA,
    TOO_COMPLEX,
    check_gbnf,
    check_schema,
    minimal_instance,
    validate_text,
)
from tests.support.schemas import SchemaFuzzer

COUNT = 2500
HOSTILE = 300


def _use(schema: Any, outcomes: collections.Counter[str]) -> None:
    try:
        rules = check_schema(schema, param="p").rules
    except InvalidRequest as exc:
        assert exc.code in (INVALID_SCHEMA, TOO_COMPLEX) and exc.param == "p", exc.message
        outcomes[exc.code] += 1
        return
    check_gbnf(rules)
    # llama.cpp parses every grammar that passed (returns None instead of crashing if not)
    grammar = runtime().llama_grammar.LlamaGrammar.from_string(rules, verbose=False)
    assert grammar is not None
    instance = minimal_instance(schema, "alpha bravo")
    outcomes["instance_" + validate_text(json.dumps(instance), schema).outcome] += 1


@pytest.mark.slow
def test_generated_schemas_are_used_or_refused_with_a_code() -> None:
    fuzzer = SchemaFuzzer(14)
    outcomes: collections.Counter[str] = collections.Counter()
    for _ in range(COUNT):
        _use(fuzzer.schema(), outcomes)
    # most generated schemas are usable, and the stub's instances of them mostly valid
    assert outcomes["instance_valid"] > COUNT // 2, outcomes
    assert outcomes["instance_valid"] > 5 * outcomes["instance_invalid"], outcomes


@pytest.mark.slow
def test_hostile_schemas_are_used_or_refused_with_a_code() -> None:
    fuzzer = SchemaFuzzer(41)
    outcomes: collections.Counter[str] = collections.Counter()
    for _ in range(HOSTILE):
        _use(fuzzer.hostile(), outcomes)
    assert outcomes[TOO_COMPLEX] and outcomes[INVALID_SCHEMA], outcomes
