"""Structured output on llama.cpp: the grammar (GBNF) that holds output to a response format.

The grammar comes from the gateway's own converter (`pipelines/structured/`), which
enforces what a grammar can and leaves the rest to validation of the finished output;
every grammar is checked well-formed before llama.cpp reads it (a grammar llama.cpp fails
to parse crashes llama-cpp-python 0.3.36).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pipelines.errors import InvalidRequest
from pipelines.providers.llama.runtime import runtime
from pipelines.structured import GrammarProblem, check_gbnf, json_object_rules, schema_rules
from pipelines.types import ResponseFormat

if TYPE_CHECKING:
    from llama_cpp.llama_grammar import LlamaGrammar

__all__ = ["SCHEMA_PARAM", "gbnf_for", "grammar_for"]

SCHEMA_PARAM = "response_format.json_schema.schema"
"""The request field a grammar problem is reported against."""


def grammar_for(response_format: ResponseFormat) -> LlamaGrammar | None:
    """The grammar that constrains output to `response_format` (None for plain text).

    Raises `InvalidRequest` (a 400 with a code) when the schema cannot be used."""
    gbnf = gbnf_for(response_format)
    if gbnf is None:
        return None
    grammar: LlamaGrammar = runtime().llama_grammar.LlamaGrammar.from_string(gbnf, verbose=False)
    return grammar


def gbnf_for(response_format: ResponseFormat) -> str | None:
    """The GBNF text of `grammar_for` (what llama.cpp's grammar sampler takes), checked."""
    if response_format.type == "json_object":
        gbnf = json_object_rules()
    elif response_format.type == "json_schema":
        if response_format.schema is None:
            raise InvalidRequest(
                "response_format json_schema needs a schema", param=SCHEMA_PARAM, code="missing_required_parameter"
            )
        gbnf = schema_rules(response_format.schema, param=SCHEMA_PARAM)
    else:
        return None
    try:
        check_gbnf(gbnf)
    except GrammarProblem as exc:  # our own converter's output: a bug, still never a crash
        raise InvalidRequest(f"response_format: no safe grammar for the schema: {exc}", param=SCHEMA_PARAM) from None
    return gbnf
