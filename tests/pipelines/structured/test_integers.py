"""Integer bounds as grammar: exactly the integers of the range, spelled as JSON spells them."""

from __future__ import annotations

import random
import re

import pytest

from pipelines.structured.integers import integer_range
from tests.support.gbnf_regex import to_regex


def _language(lo: int | None, hi: int | None) -> re.Pattern[str]:
    expr = integer_range(lo, hi)
    assert expr is not None
    return re.compile(to_regex(f"root ::= ({expr})\n"))


@pytest.mark.parametrize(
    ("lo", "hi"),
    [(0, 150), (-20, -3), (-150, 150), (7, 7), (0, 0), (-1, 0), (99, 1001), (-1000, -999), (123, 4567)],
)
def test_exactly_the_range_is_accepted(lo: int, hi: int) -> None:
    language = _language(lo, hi)
    for n in range(lo - 300, hi + 300):
        assert bool(language.fullmatch(str(n))) == (lo <= n <= hi), n
    for spelling in ("-0", "00", "01", "+1", "1.0", " 1", ""):
        assert not language.fullmatch(spelling)


def test_zods_safe_integer_bounds() -> None:
    limit = 9007199254740991
    language = _language(-limit, limit)
    rng = random.Random(5)
    for n in [limit, -limit, 0, 1, -1, *(rng.randint(-limit, limit) for _ in range(2000))]:
        assert language.fullmatch(str(n)), n
    for n in [limit + 1, -limit - 1, 10**16, 99999999999999999]:
        assert not language.fullmatch(str(n)), n


def test_one_sided_bounds() -> None:
    at_least = _language(5, None)
    at_most = _language(None, -3)
    for n in range(-500, 500):
        assert bool(at_least.fullmatch(str(n))) == (n >= 5)
        assert bool(at_most.fullmatch(str(n))) == (n <= -3)
    assert at_least.fullmatch("9" * 16) and not at_least.fullmatch("1" + "0" * 16)


def test_empty_range_is_none() -> None:
    assert integer_range(5, 4) is None
