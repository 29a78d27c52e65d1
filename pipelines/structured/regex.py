"""JSON Schema `pattern`s (ECMA-262 regular expressions), the subset a grammar can hold.

Read into a small tree (character sets, sequences, alternatives, bounded repetition), then
written as GBNF for the inside of a JSON string, or walked for the shortest match (the
stub's instances). Anything else (lookaround, backreferences, word boundaries, anchors
inside the pattern, Unicode property escapes, a repeated part that can match nothing, very
large counts, very deep nesting) raises `UnsupportedPattern`: the keyword is then left to
validation, never refused.
"""

from __future__ import annotations

from dataclasses import dataclass

from pipelines.structured.gbnf import MAX_CODE_POINT, char_class, literal, repeat

__all__ = [
    "Alternatives",
    "Chars",
    "Node",
    "Repeat",
    "Sequence",
    "UnsupportedPattern",
    "parse_pattern",
    "pattern_gbnf",
    "shortest_match",
]

MAX_COUNT = 256
"""The largest `{m,n}` count written into a grammar."""
MAX_NESTING = 16
MAX_NODES = 2000


class UnsupportedPattern(ValueError):
    """The pattern is outside what the grammar can enforce (or not a regular expression)."""


Ranges = tuple[tuple[int, int], ...]


@dataclass(frozen=True)
class Chars:
    ranges: Ranges


@dataclass(frozen=True)
class Sequence:
    items: tuple[Node, ...]


@dataclass(frozen=True)
class Alternatives:
    options: tuple[Node, ...]


@dataclass(frozen=True)
class Repeat:
    item: Node
    low: int
    high: int | None


Node = Chars | Sequence | Alternatives | Repeat

_DIGIT: Ranges = ((0x30, 0x39),)
_WORD: Ranges = ((0x30, 0x39), (0x41, 0x5A), (0x5F, 0x5F), (0x61, 0x7A))
_SPACE: Ranges = (
    (0x09, 0x0D),
    (0x20, 0x20),
    (0xA0, 0xA0),
    (0x1680, 0x1680),
    (0x2000, 0x200A),
    (0x2028, 0x2029),
    (0x202F, 0x202F),
    (0x205F, 0x205F),
    (0x3000, 0x3000),
    (0xFEFF, 0xFEFF),
)
_LINE_ENDS: Ranges = ((0x0A, 0x0A), (0x0D, 0x0D), (0x2028, 0x2029))
_SINGLE_ESCAPES = {"t": 0x09, "n": 0x0A, "r": 0x0D, "f": 0x0C, "v": 0x0B, "0": 0x00}


def _normalize(ranges: list[tuple[int, int]]) -> Ranges:
    merged: list[tuple[int, int]] = []
    for lo, hi in sorted(ranges):
        if merged and lo <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(merged[-1][1], hi))
        else:
            merged.append((lo, hi))
    return tuple(merged)


def _complement(ranges: Ranges) -> Ranges:
    out = []
    at = 0
    for lo, hi in _normalize(list(ranges)):
        if lo > at:
            out.append((at, lo - 1))
        at = hi + 1
    if at <= MAX_CODE_POINT:
        out.append((at, MAX_CODE_POINT))
    return tuple(out)


class _Reader:
    def __init__(self, text: str) -> None:
        self.text = text
        self.at = 0
        self.nodes = 0

    def peek(self) -> str | None:
        return self.text[self.at] if self.at < len(self.text) else None

    def take(self) -> str:
        if self.at >= len(self.text):
            raise UnsupportedPattern("the pattern ends inside a construct")
        ch = self.text[self.at]
        self.at += 1
        return ch

    def node(self, node: Node) -> Node:
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise UnsupportedPattern("the pattern is too long to enforce")
        return node

    def alternatives(self, depth: int) -> Node:
        if depth > MAX_NESTING:
            raise UnsupportedPattern("groups nest too deep")
        options = [self.sequence(depth)]
        while self.peek() == "|":
            self.take()
            options.append(self.sequence(depth))
        return options[0] if len(options) == 1 else self.node(Alternatives(tuple(options)))

    def sequence(self, depth: int) -> Node:
        items: list[Node] = []
        while self.peek() not in (None, "|", ")"):
            atom = self.atom(depth)
            items.append(self.quantified(atom))
        return items[0] if len(items) == 1 else self.node(Sequence(tuple(items)))

    def quantified(self, atom: Node) -> Node:
        ch = self.peek()
        bounds: tuple[int, int | None] | None = None
        if ch == "*":
            bounds = (0, None)
        elif ch == "+":
            bounds = (1, None)
        elif ch == "?":
            bounds = (0, 1)
        elif ch == "{":
            bounds = self.braces()
            if bounds is None:
                return atom
            self.at -= 1  # braces() consumed the quantifier; the common step below takes one char
        if bounds is None:
            return atom
        self.take()
        if self.peek() == "?":  # lazy: the same language
            self.take()
        if self.peek() in ("*", "+", "?", "{") and self.braces_or_symbol():
            raise UnsupportedPattern("a quantifier follows a quantifier")
        low, high = bounds
        if high is not None and high < low:
            raise UnsupportedPattern("a {m,n} count with n < m")
        if low > MAX_COUNT or (high is not None and high > MAX_COUNT):
            raise UnsupportedPattern("a repetition count too large to enforce")
        if _nullable(atom):
            raise UnsupportedPattern("a repeated part that can match the empty string")
        return self.node(Repeat(atom, low, high))

    def braces_or_symbol(self) -> bool:
        if self.peek() != "{":
            return True
        saved = self.at
        found = self.braces() is not None
        self.at = saved
        return found

    def braces(self) -> tuple[int, int | None] | None:
        """`{m}`, `{m,}`, `{m,n}` at the reader (consumed); None (nothing consumed) when the
        brace is a literal, as ECMA-262's web grammar reads it."""
        text, start = self.text, self.at
        end = text.find("}", start)
        if end < 0:
            return None
        inside = text[start + 1 : end]
        low, comma, high = inside.partition(",")
        if not low.isdigit() or not (high.isdigit() or high == ""):
            return None
        self.at = end + 1
        if len(low) > 6 or len(high) > 6:
            raise UnsupportedPattern("a repetition count too large to enforce")
        if not comma:
            return int(low), int(low)
        return int(low), (int(high) if high else None)

    def atom(self, depth: int) -> Node:
        ch = self.take()
        if ch == "(":
            if self.peek() == "?":
                self.take()
                kind = self.take()
                if kind == ":":
                    pass
                elif kind == "<" and self.peek() not in ("=", "!"):
                    self._skip_name(">")
                elif kind == "P" and self.peek() == "<":
                    self.take()
                    self._skip_name(">")
                else:
                    raise UnsupportedPattern("lookaround and inline flags are not enforced")
            inner = self.alternatives(depth + 1)
            if self.take() != ")":
                raise UnsupportedPattern("unbalanced parentheses")
            return inner
        if ch == "[":
            return self.node(Chars(self.char_class()))
        if ch == ".":
            return self.node(Chars(_complement(_LINE_ENDS)))
        if ch == "\\":
            return self.node(Chars(self.escape(in_class=False)))
        if ch == ")":
            raise UnsupportedPattern("unbalanced parentheses")
        if ch in "^$":
            raise UnsupportedPattern("anchors inside the pattern are not enforced")
        if ch in "*+?":
            raise UnsupportedPattern("a quantifier with nothing to repeat")
        return self.node(Chars(((ord(ch), ord(ch)),)))

    def _skip_name(self, end: str) -> None:
        while self.take() != end:
            pass

    def escape(self, *, in_class: bool) -> Ranges:
        ch = self.take()
        if ch == "d":
            return _DIGIT
        if ch == "D":
            return _complement(_DIGIT)
        if ch == "w":
            return _WORD
        if ch == "W":
            return _complement(_WORD)
        if ch == "s":
            return _SPACE
        if ch == "S":
            return _complement(_SPACE)
        if ch == "b" and in_class:
            return ((0x08, 0x08),)
        if ch in _SINGLE_ESCAPES and not (ch == "0" and (self.peek() or "").isdigit()):
            cp = _SINGLE_ESCAPES[ch]
            return ((cp, cp),)
        if ch in "xu":
            width = 2 if ch == "x" else 4
            digits = self.text[self.at : self.at + width]
            if len(digits) == width and all(c in "0123456789abcdefABCDEF" for c in digits):
                self.at += width
                cp = int(digits, 16)
                return ((cp, cp),)
            raise UnsupportedPattern(f"an escape \\{ch} this gateway does not read")
        if ch.isalnum():
            # \b \B \1 \p{..} \k<..> \c: boundaries, backreferences, properties, controls
            raise UnsupportedPattern(f"the escape \\{ch} is not enforced")
        return ((ord(ch), ord(ch)),)

    def char_class(self) -> Ranges:
        negate = self.peek() == "^"
        if negate:
            self.take()
        ranges: list[tuple[int, int]] = []
        first = True
        while True:
            ch = self.take()
            if ch == "]" and not first:
                break
            if ch == "]":
                # `[]` matches nothing and `[^]` anything in ECMA-262
                return _complement(()) if negate else ()
            first = False
            item = self.escape(in_class=True) if ch == "\\" else ((ord(ch), ord(ch)),)
            if self.peek() == "-" and len(item) == 1 and item[0][0] == item[0][1]:
                saved = self.at
                self.take()
                nxt = self.peek()
                if nxt is not None and nxt != "]":
                    end_ch = self.take()
                    end = self.escape(in_class=True) if end_ch == "\\" else ((ord(end_ch), ord(end_ch)),)
                    if len(end) != 1 or end[0][0] != end[0][1]:
                        raise UnsupportedPattern("a class range ends in a class escape")
                    if end[0][0] < item[0][0]:
                        raise UnsupportedPattern("a class range out of order")
                    ranges.append((item[0][0], end[0][0]))
                    continue
                self.at = saved
            ranges.extend(item)
        normalized = _normalize(ranges)
        return _complement(normalized) if negate else normalized


def _nullable(node: Node) -> bool:
    if isinstance(node, Chars):
        return False
    if isinstance(node, Sequence):
        return all(_nullable(i) for i in node.items)
    if isinstance(node, Alternatives):
        return any(_nullable(o) for o in node.options)
    return node.low == 0 or _nullable(node.item)


def parse_pattern(pattern: str) -> Node:
    """The pattern as a tree matching whole strings: an unanchored start or end becomes
    "any characters" there (`pattern` matches anywhere in a string)."""
    text = pattern
    anchored_start = text.startswith("^")
    if anchored_start:
        text = text[1:]
    anchored_end = text.endswith("$") and not _escaped_at(text, len(text) - 1)
    if anchored_end:
        text = text[:-1]
    reader = _Reader(text)
    body = reader.alternatives(0)
    if reader.at != len(text):
        raise UnsupportedPattern("unbalanced parentheses")
    anything = Repeat(Chars(_complement(())), 0, None)
    items = [*([] if anchored_start else [anything]), body, *([] if anchored_end else [anything])]
    return body if len(items) == 1 else Sequence(tuple(items))


def _escaped_at(text: str, index: int) -> bool:
    slashes = 0
    while index - 1 - slashes >= 0 and text[index - 1 - slashes] == "\\":
        slashes += 1
    return slashes % 2 == 1


_JSON_SHORT = {0x22: '\\"', 0x5C: "\\\\", 0x0A: "\\n", 0x0D: "\\r", 0x09: "\\t", 0x08: "\\b", 0x0C: "\\f"}


def _json_chars(ranges: Ranges) -> str:
    """GBNF for one character of `ranges` as it appears inside a JSON string: raw where
    JSON allows it, else its escape (control characters without a short escape are left out)."""
    raw: list[tuple[int, int]] = []
    escaped = []
    for lo, hi in ranges:
        at = lo
        for special in sorted(s for s in (*range(0, 0x20), 0x22, 0x5C) if lo <= s <= hi):
            if special > at:
                raw.append((at, special - 1))
            if special in _JSON_SHORT:
                escaped.append(literal(_JSON_SHORT[special]))
            at = special + 1
        if at <= hi:
            raw.append((at, hi))
    options = ([char_class(raw)] if raw else []) + escaped
    if not options:
        raise UnsupportedPattern("the pattern needs characters a JSON string cannot hold unescaped")
    return options[0] if len(options) == 1 else "(" + " | ".join(options) + ")"


def pattern_gbnf(node: Node) -> str:
    """GBNF for the characters of a JSON string's inside that the tree matches."""
    if isinstance(node, Chars):
        return _json_chars(node.ranges)
    if isinstance(node, Sequence):
        return "(" + " ".join(pattern_gbnf(i) for i in node.items) + ")" if node.items else '""'
    if isinstance(node, Alternatives):
        return "(" + " | ".join(pattern_gbnf(o) for o in node.options) + ")"
    return repeat(_item(pattern_gbnf(node.item)), node.low, node.high)


def _item(expr: str) -> str:
    return expr if expr.startswith("(") and expr.endswith(")") else f"({expr})"


_PREFERRED = [ord(c) for c in "a0A_ -."]


def _pick(ranges: Ranges) -> str:
    for cp in _PREFERRED:
        if any(lo <= cp <= hi for lo, hi in ranges):
            return chr(cp)
    for lo, hi in ranges:
        for cp in range(lo, min(hi, lo + 0x100) + 1):
            if cp >= 0x20 and cp not in (0x22, 0x5C) and not 0xD800 <= cp <= 0xDFFF:
                return chr(cp)
    return chr(ranges[0][0])


def shortest_match(node: Node, at_least: int = 0) -> str:
    """A short string the tree matches (its repetitions at their least, the shortest
    alternative), padded by unbounded repetitions towards `at_least` characters."""
    text = _shortest(node)
    if len(text) < at_least:
        text = _shortest(node, pad=at_least - len(text))
    return text


def _shortest(node: Node, pad: int = 0) -> str:
    if isinstance(node, Chars):
        return _pick(node.ranges) if node.ranges else ""
    if isinstance(node, Sequence):
        out = []
        for item in node.items:
            part = _shortest(item, pad)
            pad = max(0, pad - max(0, len(part) - len(_shortest(item))))
            out.append(part)
        return "".join(out)
    if isinstance(node, Alternatives):
        return min((_shortest(o) for o in node.options), key=len)
    one = _shortest(node.item)
    times = node.low
    if pad and one:
        extra = -(-pad // len(one))
        times = times + extra if node.high is None else min(node.high, times + extra)
    return one * times
