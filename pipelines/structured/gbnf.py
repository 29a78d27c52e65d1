"""Writing GBNF (llama.cpp's grammar language): literals, character classes, rule sets.

Every literal and class is written with escapes for anything outside printable ASCII, so
no text of a client's (a property name, an enum value, a pattern) can break out of its
quotes or brackets, or spell a special token.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

__all__ = ["MAX_CODE_POINT", "RuleSet", "char_class", "group", "literal", "repeat"]

MAX_CODE_POINT = 0x10FFFF
_NAME_JUNK = re.compile(r"[^a-zA-Z0-9-]+")
_PLAIN = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 !#$%&'()*+,./:;<=>?@_`{|}~")
"""Characters written as themselves inside a literal (the rest are escaped)."""
_PLAIN_IN_CLASS = _PLAIN - frozenset("^")


def _escape(cp: int) -> str:
    if cp <= 0xFF:
        return f"\\x{cp:02X}"
    if cp <= 0xFFFF:
        return f"\\u{cp:04X}"
    return f"\\U{cp:08X}"


def literal(text: str) -> str:
    """A GBNF string literal that matches exactly `text`."""
    return '"' + "".join(ch if ch in _PLAIN else _escape(ord(ch)) for ch in text) + '"'


def char_class(ranges: Iterable[tuple[int, int]]) -> str:
    """A GBNF class matching one code point in any of the (inclusive) `ranges` (non-empty)."""
    parts = []
    for lo, hi in ranges:
        a = chr(lo) if chr(lo) in _PLAIN_IN_CLASS else _escape(lo)
        if lo == hi:
            parts.append(a)
        else:
            b = chr(hi) if chr(hi) in _PLAIN_IN_CLASS else _escape(hi)
            parts.append(f"{a}-{b}")
    if not parts:
        raise ValueError("an empty character class matches nothing")
    return "[" + "".join(parts) + "]"


def group(expr: str) -> str:
    """`expr` as one item of a sequence."""
    return f"({expr})"


def repeat(item: str, low: int, high: int | None) -> str:
    """`item` (one item: a name, literal, class or group) `low` to `high` times (None: no bound)."""
    if high is None:
        if low == 0:
            return f"{item}*"
        if low == 1:
            return f"{item}+"
        return f"{item}{{{low},}}"
    if (low, high) == (0, 1):
        return f"{item}?"
    if (low, high) == (1, 1):
        return item
    if low == high:
        return f"{item}{{{low}}}"
    return f"{item}{{{low},{high}}}"


class RuleSet:
    """Named rules of one grammar; every name starts with `prefix` so that grammars built
    for different roots can be joined without clashes."""

    def __init__(self, prefix: str) -> None:
        self.prefix = _NAME_JUNK.sub("-", prefix).strip("-") or "g"
        self.rules: dict[str, str] = {}

    def name(self, hint: str) -> str:
        """A fresh rule name for `hint` (not yet defined)."""
        base = f"{self.prefix}-{_NAME_JUNK.sub('-', hint).strip('-')}".rstrip("-")
        if base not in self.rules:
            return base
        i = 2
        while f"{base}{i}" in self.rules:
            i += 1
        return f"{base}{i}"

    def add(self, hint: str, body: str) -> str:
        """Defines a rule for `body` (reusing one with the same body and hint) and returns its name."""
        base = f"{self.prefix}-{_NAME_JUNK.sub('-', hint).strip('-')}".rstrip("-")
        if self.rules.get(base) == body:
            return base
        name = self.name(hint)
        self.rules[name] = body
        return name

    def define(self, name: str, body: str) -> None:
        """Sets the body of a name `name` returned earlier (rules that refer to themselves)."""
        self.rules[name] = body

    def text(self) -> str:
        return "".join(f"{name} ::= {body}\n" for name, body in self.rules.items())
