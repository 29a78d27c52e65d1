"""A check of GBNF text before llama.cpp reads it: llama-cpp-python 0.3.36 segfaults on a
grammar that fails to parse and aborts on an end-of-generation token inside one, so no
grammar reaches it unchecked.

The parser follows llama.cpp's (`llama-grammar.cpp`): rules `name ::= alternatives` ended
by a newline outside parentheses, literals with `\\x`/`\\u`/`\\U`/`\\t`/`\\r`/`\\n`/`\\\\`/
`\\"`/`\\[`/`\\]` escapes, classes, `.`, groups, `* + ? {m} {m,} {m,n}`, `#` comments, token
references `<[id]>`/`<|name|>` (only those the caller allows). Beyond parsing, it refuses
what llama.cpp refuses or mishandles: an undefined or doubly defined rule, no `root`, left
recursion (llama.cpp's grammar stacks would recurse forever; it refuses them too), a
repeated part that can be empty under `*`/`+`/`{m,}`, empty classes and reversed ranges;
and it bounds size, nesting and repetition counts so a grammar cannot exhaust memory.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass, field

__all__ = ["MAX_GRAMMAR_CHARS", "GrammarProblem", "check_gbnf"]

MAX_GRAMMAR_CHARS = 1_000_000
MAX_RULES = 50_000
MAX_NESTING = 64
MAX_COUNT = 2000
"""Largest `{m,n}` count (llama.cpp writes repetitions out as copies)."""

_NAME = re.compile(r"[a-zA-Z0-9-]+")
_LITERAL = re.compile(r'"((?:[^"\\]|\\.)*)"', re.DOTALL)
_BAD_ESCAPE = re.compile(r"\\(?!x[0-9a-fA-F]{2}|u[0-9a-fA-F]{4}|U[0-9a-fA-F]{8}|[trn\\\"\[\]])")
_SPACE = re.compile(r"(?:[ \t]|#[^\r\n]*)*")
_SPACE_NEWLINES = re.compile(r"(?:[ \t\r\n]|#[^\r\n]*)*")
_WORD = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-")
_HEX = frozenset("0123456789abcdefABCDEF")
_ESCAPES = {"t", "r", "n", "\\", '"', "[", "]"}
_HEX_ESCAPES = {"x": 2, "u": 4, "U": 8}


class GrammarProblem(ValueError):
    """The grammar is not one llama.cpp can be given safely; says why and where."""


@dataclass
class _Item:
    kind: str
    """`t` terminal, `r` rule reference, `g` group, `rep` repetition."""
    name: str = ""
    alternatives: list[list[_Item]] = field(default_factory=list)
    low: int = 0
    high: int | None = None


class _Parser:
    def __init__(self, text: str, tokens: Collection[str]) -> None:
        self.text = text
        self.at = 0
        self.tokens = tokens
        self.rules: dict[str, list[list[_Item]]] = {}
        self.refs: set[str] = set()

    def fail(self, why: str) -> GrammarProblem:
        line = self.text.count("\n", 0, self.at) + 1
        return GrammarProblem(f"{why} (line {line})")

    def peek(self, offset: int = 0) -> str:
        i = self.at + offset
        return self.text[i] if i < len(self.text) else ""

    def space(self, newlines: bool) -> None:
        pattern = _SPACE_NEWLINES if newlines else _SPACE
        self.at = pattern.match(self.text, self.at).end()  # type: ignore[union-attr]

    def name(self) -> str:
        found = _NAME.match(self.text, self.at)
        if found is None:
            raise self.fail("expecting a name")
        self.at = found.end()
        return found.group()

    def grammar(self) -> None:
        self.space(True)
        while self.at < len(self.text):
            name = self.name()
            self.space(False)
            if self.text[self.at : self.at + 3] != "::=":
                raise self.fail(f"expecting ::= after {name!r}")
            self.at += 3
            self.space(True)
            if name in self.rules:
                raise self.fail(f"rule {name!r} is defined twice")
            self.rules[name] = self.alternatives(0)
            if len(self.rules) > MAX_RULES:
                raise self.fail("too many rules")
            ch = self.peek()
            if ch == "\r":
                self.at += 1
                ch = self.peek()
            if ch == "\n":
                self.at += 1
            elif ch:
                raise self.fail(f"expecting the end of the line, found {ch!r}")
            self.space(True)

    def alternatives(self, depth: int) -> list[list[_Item]]:
        if depth > MAX_NESTING:
            raise self.fail("groups nest too deep")
        out = [self.sequence(depth)]
        while self.peek() == "|":
            self.at += 1
            self.space(True)
            out.append(self.sequence(depth))
        return out

    def sequence(self, depth: int) -> list[_Item]:
        items: list[_Item] = []
        nested = depth > 0
        while True:
            ch = self.peek()
            if ch == '"':
                found = _LITERAL.match(self.text, self.at)
                if found is None:
                    raise self.fail("unterminated literal")
                bad = _BAD_ESCAPE.search(found.group(1))
                if bad is not None:
                    self.at += 1 + bad.start()
                    self.char()  # raises, saying which escape is wrong
                self.at = found.end()
                items.append(_Item("t"))
            elif ch == "[":
                self.at += 1
                if self.peek() == "^":
                    self.at += 1
                count = 0
                while self.peek() != "]":
                    if not self.peek():
                        raise self.fail("unterminated character class")
                    start = self.char()
                    if self.peek() == "-" and self.peek(1) not in ("]", ""):
                        self.at += 1
                        end = self.char()
                        if end < start:
                            raise self.fail("a character range out of order")
                    count += 1
                if count == 0:
                    raise self.fail("an empty character class")
                self.at += 1
                items.append(_Item("t"))
            elif ch and ch in _WORD:
                name = self.name()
                self.refs.add(name)
                items.append(_Item("r", name=name))
            elif ch == "(":
                self.at += 1
                self.space(True)
                inner = self.alternatives(depth + 1)
                if self.peek() != ")":
                    raise self.fail("expecting )")
                self.at += 1
                items.append(_Item("g", alternatives=inner))
            elif ch == ".":
                self.at += 1
                items.append(_Item("t"))
            elif ch in ("<", "!"):
                items.append(self.token())
            elif ch in ("*", "+", "?", "{"):
                if not items:
                    raise self.fail(f"{ch!r} repeats nothing")
                items[-1] = self.repetition(items[-1])
            else:
                return items
            self.space(nested)

    def token(self) -> _Item:
        start = self.at
        if self.peek() == "!":
            self.at += 1
        if self.peek() != "<":
            raise self.fail("expecting a token reference")
        end = self.text.find(">", self.at)
        if end < 0:
            raise self.fail("unterminated token reference")
        self.at = end + 1
        ref = self.text[start : self.at]
        if ref.removeprefix("!") not in self.tokens:
            raise self.fail(f"token {ref!r} is not allowed in this grammar")
        return _Item("t")

    def repetition(self, item: _Item) -> _Item:
        ch = self.peek()
        self.at += 1
        if ch == "*":
            return _Item("rep", alternatives=[[item]], low=0, high=None)
        if ch == "+":
            return _Item("rep", alternatives=[[item]], low=1, high=None)
        if ch == "?":
            return _Item("rep", alternatives=[[item]], low=0, high=1)
        self.space(False)
        low = self.integer()
        self.space(False)
        high: int | None = low
        if self.peek() == ",":
            self.at += 1
            self.space(False)
            high = self.integer() if self.peek().isdigit() else None
            self.space(False)
        if self.peek() != "}":
            raise self.fail("expecting }")
        self.at += 1
        if (high is not None and high < low) or low > MAX_COUNT or (high is not None and high > MAX_COUNT):
            raise self.fail("a repetition count out of bounds")
        return _Item("rep", alternatives=[[item]], low=low, high=high)

    def integer(self) -> int:
        start = self.at
        while self.peek().isdigit() and self.peek().isascii():
            self.at += 1
        if self.at == start or self.at - start > 6:
            raise self.fail("expecting a repetition count")
        return int(self.text[start : self.at])

    def char(self) -> int:
        ch = self.peek()
        if ch == "\\":
            kind = self.peek(1)
            if kind in _HEX_ESCAPES:
                width = _HEX_ESCAPES[kind]
                digits = self.text[self.at + 2 : self.at + 2 + width]
                if len(digits) != width or not set(digits) <= _HEX:
                    raise self.fail(f"expecting {width} hex digits after \\{kind}")
                self.at += 2 + width
                return int(digits, 16)
            if kind in _ESCAPES:
                self.at += 2
                return ord(kind)
            raise self.fail(f"unknown escape \\{kind}")
        if not ch:
            raise self.fail("unexpected end of grammar")
        self.at += 1
        return ord(ch)


def _nullable(items: list[_Item], empty: set[str]) -> bool:
    return all(_item_nullable(i, empty) for i in items)


def _item_nullable(item: _Item, empty: set[str]) -> bool:
    if item.kind == "t":
        return False
    if item.kind == "r":
        return item.name in empty
    if item.kind == "g":
        return any(_nullable(a, empty) for a in item.alternatives)
    return item.low == 0 or _nullable(item.alternatives[0], empty)


def _leftmost(items: list[_Item], empty: set[str], out: set[str]) -> None:
    """Adds the rules `items` may begin with (through empty prefixes) to `out`."""
    for item in items:
        if item.kind == "r":
            out.add(item.name)
        elif item.kind in ("g", "rep"):
            for alternative in item.alternatives:
                _leftmost(alternative, empty, out)
        if not _item_nullable(item, empty):
            return


def _empty_repeats(items: list[_Item], empty: set[str]) -> bool:
    for item in items:
        if item.kind == "rep" and item.high is None and _nullable(item.alternatives[0], empty):
            return True
        if item.kind in ("g", "rep") and any(_empty_repeats(a, empty) for a in item.alternatives):
            return True
    return False


def check_gbnf(text: str, *, root: str = "root", tokens: Collection[str] = ()) -> None:
    """Raises `GrammarProblem` unless llama.cpp can be given `text` safely; `tokens` are
    the token references (`<|channel|>`, `<[200005]>`) it may name (never an end token)."""
    if len(text) > MAX_GRAMMAR_CHARS:
        raise GrammarProblem(f"the grammar is over {MAX_GRAMMAR_CHARS} characters")
    if "\x00" in text:
        raise GrammarProblem("the grammar holds a NUL character")
    parser = _Parser(text, frozenset(tokens))
    parser.grammar()
    rules = parser.rules
    if root not in rules:
        raise GrammarProblem(f"the grammar has no {root!r} rule")
    undefined = parser.refs - rules.keys()
    if undefined:
        raise GrammarProblem(f"undefined rule {sorted(undefined)[0]!r}")
    empty: set[str] = set()
    changed = True
    while changed:
        changed = False
        for name, alternatives in rules.items():
            if name not in empty and any(_nullable(a, empty) for a in alternatives):
                empty.add(name)
                changed = True
    edges: dict[str, set[str]] = {}
    for name, alternatives in rules.items():
        if any(_empty_repeats(a, empty) for a in alternatives):
            raise GrammarProblem(f"rule {name!r} repeats a part that can be empty")
        out: set[str] = set()
        for alternative in alternatives:
            _leftmost(alternative, empty, out)
        edges[name] = out
    _no_cycle(edges)


def _no_cycle(edges: dict[str, set[str]]) -> None:
    state: dict[str, int] = {}  # 1: on the path, 2: done
    for start in edges:
        if start in state:
            continue
        stack = [(start, iter(sorted(edges[start])))]
        state[start] = 1
        while stack:
            node, children = stack[-1]
            child = next(children, None)
            if child is None:
                state[node] = 2
                stack.pop()
            elif state.get(child) == 1:
                raise GrammarProblem(f"left recursion through rule {child!r}")
            elif child not in state:
                state[child] = 1
                stack.append((child, iter(sorted(edges[child]))))
