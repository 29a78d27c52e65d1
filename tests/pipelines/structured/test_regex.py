"""Patterns: the grammar inside a JSON string, the automaton's matching, the shortest match."""

from __future__ import annotations

import json
import random
import re

import pytest

from pipelines.structured.automaton import matches
from pipelines.structured.regex import UnsupportedPattern, parse_pattern, pattern_gbnf, shortest_match
from tests.support.gbnf_regex import accepts

PATTERNS = [
    r"^[a-z]+$",
    r"^\d{3}-\d{4}$",
    r"^(foo|ba[rz])?x$",
    r"^[^\s]{2,5}$",
    r"^[A-Z]{2}-\d{3}$",
    r"^\w+@\w+\.com$",
    r"abc",
    r"^a.c$",
    r"^[\x41-\x43]+\.?$",
    r'^["\\]+$',
    r"^(?:ab|c){1,3}$",
    r"^(?P<year>\d{4})$",
]
SAMPLES = [
    "abc",
    "ab",
    "555-1234",
    "foox",
    "bazx",
    "x",
    "ab cd",
    "AB-123",
    "me@host.com",
    "a\nc",
    "a.c",
    'a"\\',
    '"\\"',
    "ABCC.",
    "abcabc",
    "cab",
    "2024",
    "",
    "xyzabcxyz",
    "ABC",
]


@pytest.mark.parametrize("pattern", PATTERNS)
def test_grammar_accepts_exactly_what_the_pattern_matches(pattern: str) -> None:
    gbnf = f"root ::= {pattern_gbnf(parse_pattern(pattern))}\n"
    for text in SAMPLES:
        inside = json.dumps(text)[1:-1]
        assert accepts(gbnf, inside) == bool(re.search(pattern, text)), (pattern, text)


@pytest.mark.parametrize("pattern", PATTERNS)
def test_automaton_agrees_with_re(pattern: str) -> None:
    rng = random.Random(pattern)
    texts = [*SAMPLES, *("".join(rng.choice("abcxyz-.019AZ@ ") for _ in range(rng.randint(0, 8))) for _ in range(300))]
    for text in texts:
        assert matches(pattern, text) == bool(re.search(pattern, text)), (pattern, text)


@pytest.mark.parametrize("pattern", PATTERNS)
def test_shortest_match_matches(pattern: str) -> None:
    for at_least in (0, 3, 7):
        assert re.search(pattern, shortest_match(parse_pattern(pattern), at_least))


@pytest.mark.parametrize(
    "pattern",
    [
        r"^(a*)*$",
        r"^(?=x)a$",
        r"^(a)\1$",
        r"\bword\b",
        r"^\p{L}+$",
        r"^a{1,100000}$",
        r"^a$|^b$",
        r"^(a",
        r"^a)$",
        "*a",
    ],
)
def test_outside_the_subset(pattern: str) -> None:
    with pytest.raises(UnsupportedPattern):
        parse_pattern(pattern)
    assert matches(pattern, "a") is None


def test_no_catastrophic_backtracking() -> None:
    # Python's re takes exponential time here; the automaton reads each character once
    assert matches(r"^(a+)+$", "a" * 5000 + "b") is False
    assert matches(r"^(a|a)+$", "a" * 5000) is True
