"""The JSON grammar's building blocks and the small readings of keyword values the converter shares."""

from __future__ import annotations

import json
import math
from typing import Any

__all__ = ["DEPENDS", "PRIMITIVES", "bound", "common_prefix", "count", "either", "is_number", "json_text", "limit"]

PRIMITIVES = {
    "ws": '(" " | "\\n" [ \\t]{0,20})?',
    "char": '[^"\\x5C\\x00-\\x1F] | "\\x5C" (["\\x5C/bfnrt] | "u" ([0-9a-cA-Ce-fE-F] [0-9a-fA-F]{3} | [dD] [0-7] [0-9a-fA-F]{2}))',
    "string": '"\\x22" {char}* "\\x22" {ws}',
    "number": '"-"? ("0" | [1-9] [0-9]{{0,15}}) ("." [0-9]{{1,16}})? ([eE] [-+]? [0-9]{{1,3}})? {ws}',
    "unsigned": '("0" | [1-9] [0-9]{{0,15}}) ("." [0-9]{{1,16}})? ([eE] [-+]? [0-9]{{1,3}})? {ws}',
    "integer": '"-"? ("0" | [1-9] [0-9]{{0,15}}) {ws}',
    "boolean": '("true" | "false") {ws}',
    "null": '"null" {ws}',
    "value": "{object} | {array} | {string} | {number} | {boolean} | {null}",
    "object": '"{{" {ws} ({string} ":" {ws} {value} ("," {ws} {string} ":" {ws} {value})*)? "}}" {ws}',
    "array": '"[" {ws} ({value} ("," {ws} {value})*)? "]" {ws}',
}
"""The JSON grammar's building blocks; `{name}` refers to another of them."""
DEPENDS = {
    "string": ("char", "ws"),
    "number": ("ws",),
    "unsigned": ("ws",),
    "integer": ("ws",),
    "boolean": ("ws",),
    "null": ("ws",),
    "value": ("object", "array", "string", "number", "boolean", "null"),
    "object": ("ws", "string", "value"),
    "array": ("ws", "value"),
}


def json_text(value: Any) -> str:
    try:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    except UnicodeEncodeError:
        return json.dumps(value, separators=(",", ":"))


def common_prefix(texts: list[str]) -> str:
    first, last = min(texts), max(texts)
    i = 0
    while i < len(first) and i < len(last) and first[i] == last[i]:
        i += 1
    return first[:i]


def count(value: Any) -> int:
    """A `min…` keyword's value as a count (0 when absent or not a count)."""
    if not is_number(value) or value <= 0:
        return 0
    return math.ceil(value)


def limit(value: Any) -> int | None:
    """A `max…` keyword's value as a count (None when absent or not a count)."""
    if not is_number(value):
        return None
    return max(0, math.floor(value))


def either(written: str, skipped: str) -> str:
    """Alternatives: a property written, or skipped (`skipped` may be nothing)."""
    return f"{written} | {skipped}" if skipped else f"({written})?"


def bound(schema: dict[str, Any], inclusive: str, exclusive: str, *, lower: bool) -> int | None:
    """The integer bound on one side, from the inclusive and exclusive keywords (draft 4's
    boolean `exclusiveMinimum` too)."""
    found: list[int] = []
    value: Any = schema.get(inclusive)
    flag: Any = schema.get(exclusive)
    if is_number(value):
        if flag is True:
            found.append(math.floor(value) + 1 if lower else math.ceil(value) - 1)
        else:
            found.append(math.ceil(value) if lower else math.floor(value))
    if is_number(flag):
        found.append(math.floor(flag) + 1 if lower else math.ceil(flag) - 1)
    if not found:
        return None
    return max(found) if lower else min(found)


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
