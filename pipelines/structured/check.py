"""What a client's JSON Schema must be before it is used: bounded in size and depth, JSON
Schema by its metaschema, readable (local `$ref`s that lead somewhere, some value that
satisfies it), and its grammar one llama.cpp can be given. Each failure is a 400 with a
code and the field it came from; nothing a schema holds reaches llama.cpp unchecked."""

from __future__ import annotations

from typing import Any

from pipelines.errors import InvalidRequest
from pipelines.structured.convert import Conversion, TooComplex, convert
from pipelines.structured.schema import SchemaError
from pipelines.structured.validate import fits, metaschema_problem, root_validator
from pipelines.structured.wellformed import GrammarProblem, check_gbnf

__all__ = [
    "INVALID_SCHEMA",
    "MAX_SCHEMA_DEPTH",
    "MAX_SCHEMA_NODES",
    "TOO_COMPLEX",
    "check_schema",
    "schema_conversion",
    "schema_rules",
]

INVALID_SCHEMA = "invalid_json_schema"
"""The code of a 400 for a schema that is not JSON Schema, or that no value satisfies."""
TOO_COMPLEX = "json_schema_too_complex"
"""The code of a 400 for a schema beyond the bounds below."""
MAX_SCHEMA_DEPTH = 64
"""Deepest nesting of JSON objects and arrays in a schema document."""
MAX_SCHEMA_NODES = 50_000
"""Most JSON values (objects, arrays, strings, numbers...) in a schema document."""


def _shape_problem(schema: Any) -> str | None:
    """Why the document is too deep or too large (walked without recursion, so that a
    hostile depth cannot exhaust the stack), or None."""
    stack: list[tuple[Any, int]] = [(schema, 1)]
    nodes = 0
    while stack:
        value, depth = stack.pop()
        nodes += 1
        if nodes > MAX_SCHEMA_NODES:
            return f"the schema has over {MAX_SCHEMA_NODES} values"
        if isinstance(value, dict | list):
            if depth > MAX_SCHEMA_DEPTH:
                return f"the schema nests over {MAX_SCHEMA_DEPTH} levels deep"
            children = value.values() if isinstance(value, dict) else value
            stack.extend((child, depth + 1) for child in children)
    return None


def schema_conversion(schema: Any, root: str = "root", *, param: str | None = None) -> Conversion:
    """The schema's grammar (rules under `root`, checked well-formed) and what it leaves
    unenforced; a 400 (`InvalidRequest` naming `param`) when there can be none."""
    problem = _shape_problem(schema)
    if problem is not None:
        raise InvalidRequest(f"JSON schema too complex: {problem}.", param=param, code=TOO_COMPLEX)
    try:
        validator = root_validator(schema)
        conversion = convert(schema, root, fits=lambda value, sub: fits(value, sub, validator))
        check_gbnf(conversion.rules, root=root)
    except SchemaError as exc:
        raise InvalidRequest(f"Invalid JSON schema: {exc}.", param=param, code=INVALID_SCHEMA) from None
    except (TooComplex, GrammarProblem, RecursionError) as exc:
        raise InvalidRequest(f"JSON schema too complex: {exc}.", param=param, code=TOO_COMPLEX) from None
    return conversion


def schema_rules(schema: Any, root: str = "root", *, param: str | None = None) -> str:
    """GBNF rules for values valid against `schema`: the top rule is named `root` and every
    other one starts with `root-`, so the rules can be appended to a grammar of one's own
    (a Harmony header before the JSON) that refers to `root`. Checked well-formed on their
    own; a grammar they are joined into is checked again with `check_gbnf`."""
    return schema_conversion(schema, root, param=param).rules


def check_schema(schema: Any, *, param: str) -> Conversion:
    """Raises a 400 naming `param` unless `schema` is a JSON Schema the gateway can hold
    output to; returns its grammar."""
    if not isinstance(schema, dict | bool):
        raise InvalidRequest("Invalid JSON schema: a schema is an object.", param=param, code=INVALID_SCHEMA)
    problem = _shape_problem(schema)
    if problem is None:
        invalid = metaschema_problem(schema)
        if invalid is not None:
            raise InvalidRequest(f"Invalid JSON schema: {invalid}.", param=param, code=INVALID_SCHEMA)
    return schema_conversion(schema, param=param)
