"""JSON Schema validation with the `jsonschema` library: a client's schema against the
metaschema (a 400 when it is not JSON Schema), and finished output against the schema.

Patterns are matched by this gateway's own automaton (`pipelines/structured/regex.py`),
in time linear in the text: Python's `re` backtracks, and a client's pattern could then
hold the event loop for ever. Patterns outside that subset are not matched. Formats are checked where `jsonschema` has a
checker (date, email, ipv4, uuid, ...; without optional packages not date-time or time).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator
from typing import Any

import jsonschema
import jsonschema.validators
import jsonschema_rs
import msgspec

from pipelines.structured.automaton import matches

__all__ = ["OUTCOMES", "Verdict", "fits", "metaschema_problem", "root_validator", "validate_text"]

OUTCOMES = ("valid", "invalid", "unparseable", "truncated")
"""What a check of finished output can say (a bounded metric label)."""

_FORMATS = jsonschema.FormatChecker()
_MAX_ERRORS = 3


class Verdict(msgspec.Struct, frozen=True):
    """The outcome of checking one output; `errors` says where it failed (a few)."""

    outcome: str
    errors: tuple[str, ...] = ()


def _pattern(validator: Any, pattern: Any, instance: Any, schema: Any) -> Iterator[jsonschema.ValidationError]:
    if not validator.is_type(instance, "string") or not isinstance(pattern, str):
        return
    if matches(pattern, instance) is False:
        yield jsonschema.ValidationError(f"{instance!r} does not match {pattern!r}")


def _pattern_properties(
    validator: Any, patterns: Any, instance: Any, schema: Any
) -> Iterator[jsonschema.ValidationError]:
    if not validator.is_type(instance, "object") or not isinstance(patterns, dict):
        return
    for pattern, subschema in patterns.items():
        for name, value in instance.items():
            if matches(pattern, name):
                yield from validator.descend(value, subschema, path=name, schema_path=pattern)


def _validator_class(schema: Any) -> Any:
    return _extended(jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator))


@functools.lru_cache(maxsize=8)
def _extended(base: Any) -> Any:
    """`base` with our own pattern matching (made once per draft: a class per request cost ms)."""
    return jsonschema.validators.extend(base, {"pattern": _pattern, "patternProperties": _pattern_properties})


_KNOWN_METASCHEMAS = frozenset(
    f"{scheme}://json-schema.org/{path}{tail}"
    for scheme in ("http", "https")
    for path in (
        "draft-04/schema",
        "draft-06/schema",
        "draft-07/schema",
        "draft/2019-09/schema",
        "draft/2020-12/schema",
    )
    for tail in ("", "#")
)


def metaschema_problem(schema: Any) -> str | None:
    """Why `schema` is not a JSON Schema by its `$schema`'s metaschema (2020-12 without a
    known one), or None when it is one.

    Checked by `jsonschema_rs` (the same metaschemas, in Rust): `jsonschema`'s own 2020-12
    metaschema check took 4 s for a 200 KB schema here, `jsonschema_rs` 12 ms. A `$schema`
    it does not know would make it fetch one over the network: such a schema is checked as
    2020-12, as `jsonschema` validates it."""
    if isinstance(schema, dict) and "$schema" in schema and schema["$schema"] not in _KNOWN_METASCHEMAS:
        schema = {k: v for k, v in schema.items() if k != "$schema"}
    try:
        jsonschema_rs.meta.validate(schema)
    except jsonschema_rs.ValidationError as exc:
        where = "/".join(str(p) for p in exc.instance_path)
        return f"{exc.message} (at #/{where})" if where else str(exc.message)
    except Exception as exc:  # a metaschema reference it cannot follow: not JSON Schema we can read
        return f"{type(exc).__name__}: {str(exc)[:200]}"
    return None


def root_validator(root: Any) -> Any:
    """A validator for the document `root`, for `fits` to check its subschemas with."""
    return _validator_class(root)(root, format_checker=_FORMATS)


def fits(value: Any, schema: Any, validator: Any) -> bool:
    """Whether `value` is valid against `schema`, a subschema of the document `validator`
    (`root_validator`) was made for (its `$ref`s resolve there)."""
    try:
        return bool(validator.evolve(schema=schema).is_valid(value))
    except Exception:  # an unresolvable $ref, a recursion: keep the value, validation tells later
        return True


def validate_text(text: str, schema: Any, *, truncated: bool = False) -> Verdict:
    """Checks finished output `text` against `schema` (None: any JSON object)."""
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        return Verdict("truncated" if truncated else "unparseable")
    if schema is None:
        return Verdict("valid") if isinstance(value, dict) else Verdict("invalid", ("not an object",))
    try:
        validator = _validator_class(schema)(schema, format_checker=_FORMATS)
        errors = [e.message[:200] for _, e in zip(range(_MAX_ERRORS), validator.iter_errors(value), strict=False)]
    except RecursionError:
        return Verdict("invalid", ("the output nests too deep to check",))
    except Exception as exc:  # a schema the validator cannot follow ($ref nowhere): not a pass
        return Verdict("invalid", (f"validation failed: {type(exc).__name__}: {exc}"[:200],))
    return Verdict("invalid", tuple(errors)) if errors else Verdict("valid")
