"""Structured output: JSON Schema as clients write it (pydantic, zod, hand-written).

- `check_schema`: the request-time check (a 400 with a code for a schema that is not
  JSON Schema, or too large to hold output to);
- `schema_rules` / `schema_conversion` / `json_object_rules`: the GBNF grammar for a
  schema (pure Python), and which keywords it leaves to validation;
- `check_gbnf`: the check every grammar passes before llama.cpp reads it;
- `validate_text`: finished output against the full schema (`Verdict`, `OUTCOMES`);
- `minimal_instance`: a small value valid for a schema (the stub's answers).
"""

from __future__ import annotations

from pipelines.structured.check import INVALID_SCHEMA, TOO_COMPLEX, check_schema, schema_conversion, schema_rules
from pipelines.structured.convert import Conversion, json_object_rules
from pipelines.structured.instance import minimal_instance
from pipelines.structured.schema import KEYWORDS
from pipelines.structured.validate import OUTCOMES, Verdict, validate_text
from pipelines.structured.wellformed import GrammarProblem, check_gbnf

__all__ = [
    "INVALID_SCHEMA",
    "KEYWORDS",
    "OUTCOMES",
    "TOO_COMPLEX",
    "Conversion",
    "GrammarProblem",
    "Verdict",
    "check_gbnf",
    "check_schema",
    "json_object_rules",
    "minimal_instance",
    "schema_conversion",
    "schema_rules",
    "validate_text",
]
