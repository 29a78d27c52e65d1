"""The benchmarks' statistics: one percentile, and the summaries built on it.

`percentile` is the nearest-rank percentile: the smallest observed value with at least
q % of the values at or below it. It always returns a value that was measured (no
interpolation between two requests), and it has no rounding to argue about: p50 of four
values is the second, p95 of sixteen the sixteenth.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Request", "covered", "ms", "percentile", "summarise", "summary"]


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank q-th percentile (0 < q <= 100) of `values`, in any order; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1000


def summary(values: list[float]) -> dict[str, float | None]:
    """p50/p95/p99, mean and max of `values` (seconds, rounded to 0.1 ms); all None when empty."""
    if not values:
        return {"p50": None, "p95": None, "p99": None, "mean": None, "max": None}

    def rounded(value: float | None) -> float | None:
        return None if value is None else round(value, 4)

    return {
        "p50": rounded(percentile(values, 50)),
        "p95": rounded(percentile(values, 95)),
        "p99": rounded(percentile(values, 99)),
        "mean": rounded(sum(values) / len(values)),
        "max": rounded(max(values)),
    }


@dataclass
class Request:
    """One streamed request: when it was sent (or arrived, for the direct runs) and when
    each content chunk came."""

    sent: float
    stamps: list[float] = field(default_factory=list)
    finish: str | None = None
    error: str | None = None


def covered(intervals: list[tuple[float, float]]) -> float:
    """Seconds during which at least one request was decoding (after its first token): a
    request's own wait and prompt are not decode time, another's running stream is."""
    total, end = 0.0, float("-inf")
    for start, stop in sorted(intervals):
        if stop > end:
            total += stop - max(start, end)
            end = stop
    return total


def summarise(requests: list[Request], wall: float) -> dict[str, Any]:
    """One concurrency level of streamed requests: aggregate decode and output tokens/s,
    time to first token and inter-token latency percentiles (ms), errors, finish reasons."""
    done = [r for r in requests if r.stamps]
    decode_tokens = sum(len(r.stamps) - 1 for r in done)
    span = covered([(r.stamps[0], r.stamps[-1]) for r in done])
    gaps = [b - a for r in done for a, b in zip(r.stamps, r.stamps[1:], strict=False)]
    ttft = [r.stamps[0] - r.sent for r in done]
    finishes: dict[str, int] = {}
    for r in requests:
        key = r.finish or ("error" if r.error else "none")
        finishes[key] = finishes.get(key, 0) + 1
    return {
        "requests": len(requests),
        "errors": sum(1 for r in requests if r.error or not r.stamps),
        "tokens": sum(len(r.stamps) for r in done),
        "decode_tps": decode_tokens / span if span > 0 else None,
        "output_tps": sum(len(r.stamps) for r in done) / wall if wall > 0 else None,
        "ttft_p50_ms": ms(percentile(ttft, 50)),
        "ttft_p95_ms": ms(percentile(ttft, 95)),
        "itl_p50_ms": ms(percentile(gaps, 50)),
        "itl_p95_ms": ms(percentile(gaps, 95)),
        "wall_s": wall,
        "finish": finishes,
        "error_detail": sorted({r.error for r in requests if r.error})[:3],
    }
