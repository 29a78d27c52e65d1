"""Prometheus metrics derived from events only, on an injected registry.

Names follow what dashboards already know from vLLM, under the `mia_` prefix; every
generation series carries `stub` so synthetic output never pollutes real figures.
Label values come from configured model ids and fixed vocabularies only, so a client
cannot mint series.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Generic, TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, multiprocess

from pipelines.errors import CancelReason
from pipelines.events import (
    AdmissionChanged,
    ConnectionsChanged,
    EmbeddingsCreated,
    Event,
    EventBus,
    FallbackTriggered,
    GenerationCancelled,
    GenerationCompleted,
    GenerationStarted,
    ModelLoaded,
    ModelLoadFailed,
    ModelUnloaded,
    PromptProcessed,
    RequestFinished,
    StorageOperation,
    StructuredOutputChecked,
    ToolsIgnored,
)
from pipelines.structured import KEYWORDS, OUTCOMES
from pipelines.upstream import RESULTS, UpstreamRequestFinished, UpstreamStateChanged, fleet_labels

if TYPE_CHECKING:
    from pipelines.config import ModelConfig

__all__ = ["GatewayMetrics", "install_metrics", "multiprocess_registry"]

TPS_BUCKETS = (1, 2, 5, 10, 20, 35, 50, 75, 100, 150, 200, 300, 500, 750, 1000, 2000, 3500, 5000)
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0, 30.0)
ITL_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 1.0, 2.5)
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
STORAGE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
"""A store operation takes well under a millisecond on loopback; a database down takes up to its `timeout`."""

_STOP_REASONS = frozenset({"eos", "length", "stop", "tool_call", "stub", "error"})
_REAL_STOP_REASONS = ("eos", "length", "stop", "tool_call", "error")
_STUB_STOP_REASONS = ("stub", "error")
_CANCEL_REASONS = frozenset(reason.value for reason in CancelReason)
_OUTCOMES = frozenset(OUTCOMES)
_TARGETS = frozenset({"response_format", "tool_arguments"})
_UNLOAD_REASONS = frozenset({"switch_heavy", "switch_heavy_to_lightweight", "explicit_unload", "idle", "shutdown"})
_OTHER = "other"
_TOKEN = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
MAX_CHILDREN = 4096
"""Most label children a metric keeps memoised. Label values are bounded already (configured
ids, fixed vocabularies, `other`), so this is a backstop: past it, `labels()` is called
as without the memo (same result, slower)."""

_M = TypeVar("_M", Counter, Gauge, Histogram)


def _bounded(value: str, allowed: frozenset[str]) -> str:
    return value if value in allowed else _OTHER


def _word(value: str) -> str:
    """A short snake_case code as is; anything else (free text) as `other`."""
    return value if _TOKEN.match(value) else _OTHER


def _stub(flag: bool) -> str:
    return "true" if flag else "false"


class _Children(Generic[_M]):
    """`metric.labels(*values)`, memoised per tuple of label values.

    `labels()` validates and converts its values and takes the metric's lock on every call
    (about 6% of a stub request's CPU); a child, once made, stays the same object for the
    metric's life (nothing here calls `remove()` or `clear()`, which would make the memo
    stale). A miss calls `labels()` exactly as before, so series appear when they did."""

    __slots__ = ("_cache", "_labels")

    def __init__(self, metric: _M) -> None:
        self._labels: Callable[..., _M] = metric.labels
        self._cache: dict[tuple[str, ...], _M] = {}

    def __call__(self, *values: str) -> _M:
        child = self._cache.get(values)
        if child is None:
            child = self._labels(*values)
            if len(self._cache) < MAX_CHILDREN:
                self._cache[values] = child
        return child


class GatewayMetrics:
    """Every series the gateway exports, updated by `handle(event)`."""

    def __init__(
        self, registry: CollectorRegistry, model_ids: list[str], upstreams: dict[str, list[str]] | None = None
    ) -> None:
        self._models = frozenset(model_ids)
        self._upstreams = frozenset((m, u) for m, labels in (upstreams or {}).items() for u in labels)
        """(model, upstream label) pairs of the configuration: the only upstream series."""
        gen = ("model", "stub")
        self.decode_tps = Histogram(
            "mia_decode_tokens_per_second",
            "Decode speed of one generation (tokens after the first / their seconds).",
            gen,
            buckets=TPS_BUCKETS,
            registry=registry,
        )
        self.ttft = Histogram(
            "mia_time_to_first_token_seconds",
            "Seconds from generation start to its first token.",
            gen,
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.itl = Histogram(
            "mia_inter_token_latency_seconds",
            "Seconds between consecutive tokens.",
            gen,
            buckets=ITL_BUCKETS,
            registry=registry,
        )
        self.queue = Histogram(
            "mia_request_queue_seconds",
            "Seconds a generation waited for admission.",
            gen,
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.prompt_tokens = Counter("mia_prompt_tokens", "Prompt tokens processed.", gen, registry=registry)
        self.generation_tokens = Counter("mia_generation_tokens", "Tokens generated.", gen, registry=registry)
        self.prompt_cache_hits = Counter(
            "mia_prompt_cache_hit_tokens",
            "Prompt tokens read from a slot's cached prefix instead of evaluated, llama.cpp "
            "models only (hit rate: divide by mia_prompt_processed_tokens_total).",
            gen,
            registry=registry,
        )
        self.prompt_processed = Counter(
            "mia_prompt_processed_tokens",
            "Prompt tokens of the prompts a llama.cpp model read, cached or evaluated (the "
            "denominator of the prompt cache hit rate).",
            gen,
            registry=registry,
        )
        self.generations = Counter(
            "mia_generations_completed",
            "Generations that completed, by stop reason.",
            (*gen, "reason"),
            registry=registry,
        )
        self.cancellations = Counter(
            "mia_generations_cancelled",
            "Generations cancelled, by reason.",
            (*gen, "reason"),
            registry=registry,
        )
        self.embedding_inputs = Counter(
            "mia_embedding_inputs",
            "Inputs embedded (their tokens count in mia_prompt_tokens_total).",
            gen,
            registry=registry,
        )
        self.requests = Counter("mia_requests", "HTTP requests answered.", ("endpoint", "status"), registry=registry)
        self.tools_ignored = Counter(
            "mia_hosted_tools_ignored",
            "Hosted tools (web_search, code_interpreter, ...) requests named and the gateway left out of the prompt.",
            ("tool",),
            registry=registry,
        )
        self.storage_seconds = Histogram(
            "mia_storage_operation_seconds",
            "Response store operations (put, get, delete, input_items, evict), failed ones included.",
            ("operation", "backend"),
            buckets=STORAGE_BUCKETS,
            registry=registry,
        )
        self.storage_errors = Counter(
            "mia_storage_errors",
            "Response store operations that failed: the store was unavailable.",
            ("operation", "backend"),
            registry=registry,
        )
        self.structured = Counter(
            "mia_structured_output",
            "Structured outputs checked against their full JSON Schema, by target (response_format, "
            "tool_arguments) and outcome (valid, invalid, unparseable, truncated).",
            (*gen, "target", "outcome"),
            registry=registry,
        )
        self.unenforced = Counter(
            "mia_structured_output_unenforced",
            "Checked structured outputs whose schema held a keyword the grammar does not enforce, by keyword.",
            ("model", "keyword"),
            registry=registry,
        )
        self.request_duration = Histogram(
            "mia_request_duration_seconds",
            "HTTP request duration (for streams: until the last byte).",
            ("endpoint",),
            buckets=DURATION_BUCKETS,
            registry=registry,
        )
        self.running = Gauge(
            "mia_num_requests_running",
            "Slots in use: generations decoding (n choices count n).",
            ("model",),
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.waiting = Gauge(
            "mia_num_requests_waiting",
            "Generations queued for a slot.",
            ("model",),
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.connections = Gauge(
            "mia_http_connections", "HTTP connections open now.", registry=registry, multiprocess_mode="livesum"
        )
        self.model_loaded = Gauge(
            "mia_model_loaded",
            "1 while the model is loaded (stub or real).",
            ("model",),
            registry=registry,
            multiprocess_mode="livemax",
        )
        self.model_stub = Gauge(
            "mia_model_stub",
            "1 while the model id is served by the stub.",
            ("model",),
            registry=registry,
            multiprocess_mode="livemax",
        )
        self.loads = Counter(
            "mia_model_loads", "Model loads by result (ok, failed, stub).", ("model", "result"), registry=registry
        )
        self.unloads = Counter("mia_model_unloads", "Model unloads by reason.", ("model", "reason"), registry=registry)
        self.fallbacks = Counter(
            "mia_fallbacks",
            "Fallback hops, by from/to model and reason.",
            ("from_model", "to_model", "reason"),
            registry=registry,
        )
        ups = ("model", "upstream")
        self.upstream_healthy = Gauge(
            "mia_upstream_healthy",
            "1 while the upstream takes traffic, 0 while ejected (under --workers: in every worker).",
            ups,
            registry=registry,
            multiprocess_mode="livemin",
        )
        self.upstream_ejections = Counter(
            "mia_upstream_ejections",
            "Times the upstream was ejected after consecutive failures.",
            ups,
            registry=registry,
        )
        self.upstream_requests = Counter(
            "mia_upstream_requests", "Requests sent to the upstream, by result.", (*ups, "result"), registry=registry
        )
        for model, upstream in sorted(self._upstreams):
            self.upstream_healthy.labels(model, upstream).set(1)
            self.upstream_ejections.labels(model, upstream)
        for model in sorted(self._models):
            # Series exist from the start, so dashboards show zeros rather than gaps.
            self.running.labels(model).set(0)
            self.waiting.labels(model).set(0)
            self.model_loaded.labels(model).set(0)
            self.model_stub.labels(model).set(0)
        # Memoised `labels()` of every metric an event touches (see `_Children`).
        self._decode_tps = _Children(self.decode_tps)
        self._ttft = _Children(self.ttft)
        self._itl = _Children(self.itl)
        self._queue = _Children(self.queue)
        self._prompt_tokens = _Children(self.prompt_tokens)
        self._generation_tokens = _Children(self.generation_tokens)
        self._prompt_cache_hits = _Children(self.prompt_cache_hits)
        self._prompt_processed = _Children(self.prompt_processed)
        self._generations = _Children(self.generations)
        self._cancellations = _Children(self.cancellations)
        self._requests = _Children(self.requests)
        self._request_duration = _Children(self.request_duration)
        self._running = _Children(self.running)
        self._waiting = _Children(self.waiting)
        self._upstream_requests = _Children(self.upstream_requests)
        self._handlers: dict[type, Callable[[Event], None] | None] = {}
        """Event type -> its `_on_…` method (None: not a metrics event); one entry per type."""

    def _model(self, model_id: str | None) -> str:
        return model_id if model_id in self._models else _OTHER

    def handle(self, event: Event) -> None:
        cls = type(event)
        try:
            handler = self._handlers[cls]
        except KeyError:
            handler = self._handlers[cls] = getattr(self, f"_on_{cls.__name__}", None)
        if handler is not None:
            handler(event)

    def _on_GenerationStarted(self, e: GenerationStarted) -> None:  # noqa: N802
        self._queue(self._model(e.model_id), _stub(e.stub)).observe(e.queue_seconds)

    def _on_GenerationCompleted(self, e: GenerationCompleted) -> None:  # noqa: N802
        labels = (self._model(e.model_id), _stub(e.stub))
        summary = e.result_summary
        usage = summary.get("usage", {})
        self._prompt_tokens(*labels).inc(usage.get("prompt_tokens", 0))
        self._generation_tokens(*labels).inc(usage.get("completion_tokens", 0))
        self._generations(*labels, _bounded(e.stop_reason, _STOP_REASONS)).inc()
        ttft = summary.get("first_token_seconds")
        if ttft is not None:
            self._ttft(*labels).observe(ttft)
        tps = summary.get("decode_tokens_per_second")
        if tps is not None:
            self._decode_tps(*labels).observe(tps)
        if e.token_gaps:
            itl = self._itl(*labels)
            for gap in e.token_gaps:
                itl.observe(gap)

    def _on_GenerationCancelled(self, e: GenerationCancelled) -> None:  # noqa: N802
        labels = (self._model(e.model_id), _stub(e.stub))
        self._cancellations(*labels, _bounded(e.reason, _CANCEL_REASONS)).inc()
        # Tokens decoded before the cancel were still generated (and cost decode time).
        if e.completion_tokens:
            self._generation_tokens(*labels).inc(e.completion_tokens)

    def _on_EmbeddingsCreated(self, e: EmbeddingsCreated) -> None:  # noqa: N802
        labels = (self._model(e.model_id), _stub(e.stub))
        self.embedding_inputs.labels(*labels).inc(e.inputs)
        self._prompt_tokens(*labels).inc(e.prompt_tokens)

    def _on_PromptProcessed(self, e: PromptProcessed) -> None:  # noqa: N802
        # Only real llama.cpp engines emit it (a stub reads no prompt).
        labels = (self._model(e.model_id), _stub(False))
        self._prompt_cache_hits(*labels).inc(e.cached_tokens)
        self._prompt_processed(*labels).inc(e.prompt_tokens)

    def _on_AdmissionChanged(self, e: AdmissionChanged) -> None:  # noqa: N802
        model = self._model(e.model_id)
        self._running(model).set(e.running)
        self._waiting(model).set(e.waiting)

    def _on_ModelLoaded(self, e: ModelLoaded) -> None:  # noqa: N802
        model = self._model(e.model_id)
        self.model_loaded.labels(model).set(1)
        self.model_stub.labels(model).set(1 if e.stub else 0)
        self.loads.labels(model, "stub" if e.stub else "ok").inc()
        # Create the model's generation series at zero now: `rate()` then counts its very
        # first generation, and dashboards show zeros rather than gaps.
        labels = (model, _stub(e.stub))
        for metric in (
            self.decode_tps,
            self.ttft,
            self.itl,
            self.queue,
            self.prompt_tokens,
            self.prompt_cache_hits,
            self.prompt_processed,
            self.generation_tokens,
        ):
            metric.labels(*labels)
        for reason in _STUB_STOP_REASONS if e.stub else _REAL_STOP_REASONS:
            self.generations.labels(*labels, reason)
        for reason in sorted(_CANCEL_REASONS):
            self.cancellations.labels(*labels, reason)
        for outcome in OUTCOMES:
            self.structured.labels(*labels, "response_format", outcome)

    def _on_ModelLoadFailed(self, e: ModelLoadFailed) -> None:  # noqa: N802
        self.loads.labels(self._model(e.model_id), "failed").inc()

    def _on_ModelUnloaded(self, e: ModelUnloaded) -> None:  # noqa: N802
        model = self._model(e.model_id)
        self.model_loaded.labels(model).set(0)
        self.model_stub.labels(model).set(0)
        self.unloads.labels(model, _bounded(e.reason, _UNLOAD_REASONS)).inc()

    def _on_ConnectionsChanged(self, e: ConnectionsChanged) -> None:  # noqa: N802
        self.connections.set(e.open)

    def _on_ToolsIgnored(self, e: ToolsIgnored) -> None:  # noqa: N802
        # the names come from the wire's closed set of hosted tool types: a bounded label
        for tool in e.tools:
            self.tools_ignored.labels(tool).inc()

    def _on_StorageOperation(self, e: StorageOperation) -> None:  # noqa: N802
        # both labels come from closed sets of ours (the store's methods and backends)
        self.storage_seconds.labels(e.operation, e.backend).observe(e.seconds)
        if not e.ok:
            self.storage_errors.labels(e.operation, e.backend).inc()

    def _on_StructuredOutputChecked(self, e: StructuredOutputChecked) -> None:  # noqa: N802
        model = self._model(e.model_id)
        target = _bounded(e.target, _TARGETS)
        self.structured.labels(model, _stub(e.stub), target, _bounded(e.outcome, _OUTCOMES)).inc()
        for keyword in e.unenforced:
            self.unenforced.labels(model, _bounded(keyword, KEYWORDS)).inc()

    def _on_RequestFinished(self, e: RequestFinished) -> None:  # noqa: N802
        self._requests(e.endpoint, str(e.status)).inc()
        self._request_duration(e.endpoint).observe(e.duration_seconds)

    def _on_FallbackTriggered(self, e: FallbackTriggered) -> None:  # noqa: N802
        self.fallbacks.labels(self._model(e.from_model), self._model(e.to_model), _word(e.reason)).inc()

    def _upstream(self, model_id: str, upstream: str) -> tuple[str, str]:
        pair = (model_id, upstream)
        return pair if pair in self._upstreams else (self._model(model_id), _OTHER)

    def _on_UpstreamRequestFinished(self, e: UpstreamRequestFinished) -> None:  # noqa: N802
        self._upstream_requests(*self._upstream(e.model_id, e.upstream), _bounded(e.result, RESULTS)).inc()

    def _on_UpstreamStateChanged(self, e: UpstreamStateChanged) -> None:  # noqa: N802
        labels = self._upstream(e.model_id, e.upstream)
        self.upstream_healthy.labels(*labels).set(1 if e.state == "healthy" else 0)
        if e.state == "ejected":
            self.upstream_ejections.labels(*labels).inc()


def multiprocess_registry(folder: Path) -> CollectorRegistry:
    """A registry that sums, at each scrape, the series every worker of `serve --workers N`
    wrote to `folder` (gauges as each one's `multiprocess_mode` says)."""
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, str(folder))
    return registry


def install_metrics(registry: CollectorRegistry, bus: EventBus, models: Sequence[ModelConfig]) -> GatewayMetrics:
    """The gateway's metrics on `registry`, fed by every event on `bus`."""
    metrics = GatewayMetrics(registry, [m.id for m in models], fleet_labels(models))
    bus.subscribe(metrics.handle)
    return metrics
