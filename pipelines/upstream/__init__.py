"""Upstream pools: OpenAI-compatible backends of a model, balanced, ejected when they
fail, probed, and the wire spoken to them. The `openai_http` provider builds on this."""

from __future__ import annotations

from pipelines.upstream.errors import FAILURES, RESULTS, UpstreamFailure
from pipelines.upstream.events import UpstreamRequestFinished, UpstreamStateChanged
from pipelines.upstream.pool import Upstream, UpstreamPool, display_url, fleet_labels, upstream_labels
from pipelines.upstream.routed import UpstreamRouted, run_probes

__all__ = [
    "FAILURES",
    "RESULTS",
    "Upstream",
    "UpstreamFailure",
    "UpstreamPool",
    "UpstreamRequestFinished",
    "UpstreamRouted",
    "UpstreamStateChanged",
    "display_url",
    "fleet_labels",
    "run_probes",
    "upstream_labels",
]
