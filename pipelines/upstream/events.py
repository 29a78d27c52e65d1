"""Events of the upstream pools: what each upstream request came to, and health changes.

They live beside the pools rather than in `pipelines/events.py` because only the
`openai_http` provider emits them; they are ordinary `Event`s on the one bus, so the
metrics and the event log pick them up like any other.
"""

from __future__ import annotations

from typing import Literal

from pipelines.events import Event

__all__ = ["UpstreamRequestFinished", "UpstreamStateChanged"]


class UpstreamRequestFinished(Event, frozen=True, kw_only=True):
    """One request to one upstream ended; `result` is one of `pipelines.upstream.RESULTS`."""

    model_id: str
    upstream: str
    """The upstream's label: `host:port` (bounded by the configuration)."""
    result: str


class UpstreamStateChanged(Event, frozen=True, kw_only=True):
    """An upstream was ejected (`consecutive_failures` reached `eject_after`) or came back."""

    model_id: str
    upstream: str
    state: Literal["healthy", "ejected"]
    reason: str
    """Ejected: the result that tipped it (`connect_error`, `probe_failed`, …). Healthy: `cool_down_over`."""
    consecutive_failures: int = 0
