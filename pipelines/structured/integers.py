"""Integer bounds as grammar: the decimal spellings of exactly the integers in [lo, hi].

A range of non-negative integers splits by digit count; within one digit count, two
spellings share a prefix, then differ at one digit: below it the low end's tail up to
all nines, strictly between any tail, at the high end's digit all zeros up to its tail.
Each step recurses on one side only, so a 16-digit range is a few hundred alternatives.
Negative ranges are a `-` and the range of their magnitudes (never `-0`).
"""

from __future__ import annotations

from pipelines.structured.gbnf import char_class, literal

__all__ = ["DEFAULT_DIGITS", "MAX_DIGITS", "integer_range"]

DEFAULT_DIGITS = 16
"""Digits of an integer with no bound on a side (llama.cpp's converter writes 16 as well)."""
MAX_DIGITS = 40
"""Bounds with more digits than this are left to validation (their grammar grows as the square)."""


def _digits(lo: str, hi: str) -> str:
    return char_class([(ord(lo), ord(hi))])


def _any(n: int) -> str:
    if n == 0:
        return ""
    return " [0-9]" if n == 1 else f" [0-9]{{{n}}}"


def _same_length(x: str, y: str) -> str:
    """Spellings of the same length from `x` to `y` (`x` <= `y`, leading zeros kept)."""
    if x == y:
        return literal(x)
    i = 0
    while x[i] == y[i]:
        i += 1
    prefix, dx, dy, rx, ry = x[:i], x[i], y[i], x[i + 1 :], y[i + 1 :]
    n = len(rx)
    low_full = rx == "0" * n
    high_full = ry == "9" * n
    first = dx if low_full else chr(ord(dx) + 1)
    last = dy if high_full else chr(ord(dy) - 1)
    alternatives = []
    if not low_full:
        alternatives.append(f"{literal(dx)} ({_same_length(rx, '9' * n)})")
    if first <= last:
        alternatives.append(_digits(first, last) + _any(n))
    if not high_full:
        alternatives.append(f"{literal(dy)} ({_same_length('0' * n, ry)})")
    body = " | ".join(alternatives)
    if not prefix:
        return body
    return f"{literal(prefix)} ({body})" if len(alternatives) > 1 else f"{literal(prefix)} {body}"


def _non_negative(lo: int, hi: int) -> list[str]:
    alternatives = []
    for length in range(len(str(lo)), len(str(hi)) + 1):
        start = max(lo, 10 ** (length - 1) if length > 1 else 0)
        end = min(hi, 10**length - 1)
        if start <= end:
            alternatives.append(_same_length(str(start), str(end)))
    return alternatives


def integer_range(lo: int | None, hi: int | None) -> str | None:
    """A GBNF expression (alternatives, to be grouped) for the integers from `lo` to `hi`
    inclusive (None: unbounded on that side, up to `DEFAULT_DIGITS` digits); None when the
    range is empty."""
    widest = 10 ** max(DEFAULT_DIGITS, *(len(str(abs(b))) for b in (lo, hi) if b is not None)) - 1
    low = -widest if lo is None else lo
    high = widest if hi is None else hi
    if low > high:
        return None
    alternatives = []
    if low < 0:
        magnitudes = _non_negative(max(1, -high), -low)
        if magnitudes:
            alternatives.append(f'"-" ({" | ".join(magnitudes)})')
    if high >= 0:
        alternatives.extend(_non_negative(max(0, low), high))
    return " | ".join(alternatives)
