"""GatewayMetrics: every event maps to the right series, on an injected registry."""

from __future__ import annotations

import math
from collections.abc import AsyncGenerator
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
from prometheus_client.parser import text_string_to_metric_families as parse_text

import app.metrics
from app.gateway import build_gateway
from app.metrics import TPS_BUCKETS, GatewayMetrics, install_metrics
from app.settings import Settings
from pipelines.config import ModelConfig, StubModelConfig
from pipelines.events import (
    AdmissionChanged,
    ConnectionsChanged,
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
from pipelines.providers.base import CancelToken, DecodeParams, Prompt, Provider
from pipelines.providers.stub import StubProvider
from pipelines.types import GenerationRequest, Message, Piece
from tests.support.served import ServedGateway

REAL = "real-m"
STUB = "stub-m"


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def metrics(registry: CollectorRegistry) -> GatewayMetrics:
    return GatewayMetrics(registry, [REAL, STUB])


def value(registry: CollectorRegistry, name: str, **labels: str) -> float:
    """A sample's value; 0 when the series does not exist."""
    v = registry.get_sample_value(name, labels)
    return 0.0 if v is None else v


def samples(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in registry.collect()
        for s in family.samples
        if not s.name.endswith("_created")
    }


def loaded(model: str, *, stub: bool) -> ModelLoaded:
    return ModelLoaded(
        model_id=model, provider="stub" if stub else "llama_cpp", role="lightweight", metadata={"stub": stub}
    )


def started(model: str = REAL, *, stub: bool = False, queue: float = 0.002) -> GenerationStarted:
    return GenerationStarted(
        request_id="r", model_id=model, pipeline="lightweight", stub=stub, stream=True, sampling={}, queue_seconds=queue
    )


def completed(
    model: str = REAL,
    *,
    stub: bool = False,
    stop: str = "eos",
    prompt: int = 7,
    tokens: int = 10,
    ttft: float | None = 0.05,
    tps: float | None = 90.0,
    gaps: tuple[float, ...] = (0.011,) * 9,
) -> GenerationCompleted:
    return GenerationCompleted(
        request_id="r",
        model_id=model,
        pipeline="lightweight",
        stub=stub,
        stop_reason=stop,
        result_summary={
            "usage": {"prompt_tokens": prompt, "completion_tokens": tokens, "reasoning_tokens": 0},
            "first_token_seconds": ttft,
            "decode_tokens_per_second": tps,
        },
        token_gaps=gaps,
    )


def cancelled(model: str = REAL, *, stub: bool = False, reason: str = "client_disconnect", tokens: int = 3) -> Any:
    return GenerationCancelled(
        request_id="r", model_id=model, pipeline="lightweight", stub=stub, reason=reason, completion_tokens=tokens
    )


# --- one event, its series -------------------------------------------------------


def test_configured_models_start_at_zero(registry: CollectorRegistry, metrics: GatewayMetrics) -> None:
    for model in (REAL, STUB):
        for name in ("mia_num_requests_running", "mia_num_requests_waiting", "mia_model_loaded", "mia_model_stub"):
            assert registry.get_sample_value(name, {"model": model}) == 0.0, (name, model)


def test_model_loaded_real(registry: CollectorRegistry, metrics: GatewayMetrics) -> None:
    metrics.handle(loaded(REAL, stub=False))
    assert value(registry, "mia_model_loaded", model=REAL) == 1
    assert value(registry, "mia_model_stub", model=REAL) == 0
    assert value(registry, "mia_model_loads_total", model=REAL, result="ok") == 1
    assert value(registry, "mia_model_loads_total", model=REAL, result="stub") == 0
    # its generation series exist at zero under its own stub value only
    gen = {"model": REAL, "stub": "false"}
    assert registry.get_sample_value("mia_decode_tokens_per_second_count", gen) == 0.0
    assert registry.get_sample_value("mia_generation_tokens_total", gen) == 0.0
    assert registry.get_sample_value("mia_decode_tokens_per_second_count", {**gen, "stub": "true"}) is None
    # and its outcome series, so that rate() sees the first stop or cancel of each kind
    for reason in ("eos", "length", "stop", "tool_call", "error"):
        assert registry.get_sample_value("mia_generations_completed_total", {**gen, "reason": reason}) == 0.0
    assert registry.get_sample_value("mia_generations_completed_total", {**gen, "reason": "stub"}) is None
    for reason in ("client_disconnect", "timeout", "shutdown", "upstream_error", "error", "cancelled"):
        assert registry.get_sample_value("mia_generations_cancelled_total", {**gen, "reason": reason}) == 0.0


def test_model_loaded_as_stub_after_a_failed_load(registry: CollectorRegistry, metrics: GatewayMetrics) -> None:
    metrics.handle(ModelLoadFailed(model_id=REAL, provider="llama_cpp", reason="missing_file", detail="/nope.gguf"))
    assert value(registry, "mia_model_loads_total", model=REAL, result="failed") == 1
    assert value(registry, "mia_model_loaded", model=REAL) == 0
    metrics.handle(loaded(REAL, stub=True))
    assert value(registry, "mia_model_loads_total", model=REAL, result="stub") == 1
    assert value(registry, "mia_model_loads_total", model=REAL, result="failed") == 1
    assert value(registry, "mia_model_loaded", model=REAL) == 1
    assert value(registry, "mia_model_stub", model=REAL) == 1
    stub = {"model": REAL, "stub": "true"}
    assert registry.get_sample_value("mia_decode_tokens_per_second_count", stub) == 0.0
    assert registry.get_sample_value("mia_generations_completed_total", {**stub, "reason": "stub"}) == 0.0
    assert registry.get_sample_value("mia_generations_completed_total", {**stub, "reason": "eos"}) is None


def test_model_unloaded(registry: CollectorRegistry, metrics: GatewayMetrics) -> None:
    metrics.handle(loaded(STUB, stub=True))
    metrics.handle(ModelUnloaded(model_id=STUB, reason="explicit_unload"))
    assert value(registry, "mia_model_loaded", model=STUB) == 0
    assert value(registry, "mia_model_stub", model=STUB) == 0
    assert value(registry, "mia_model_unloads_total", model=STUB, reason="explicit_unload") == 1
    metrics.handle(ModelUnloaded(model_id=STUB, reason="because I said so"))
    assert value(registry, "mia_model_unloads_total", model=STUB, reason="other") == 1


def test_generation_started_observes_the_queue_wait(registry: CollectorRegistry, metrics: GatewayMetrics) -> None:
    metrics.handle(started(queue=0.3))
    labels = {"model": REAL, "stub": "false"}
    assert value(registry, "mia_request_queue_seconds_count", **labels) == 1
    assert value(registry, "mia_request_queue_seconds_sum", **labels) == pytest.approx(0.3)
    assert value(registry, "mia_request_queue_seconds_bucket", **labels, le="0.25") == 0
    assert value(registry, "mia_request_queue_seconds_bucket", **labels, le="0.5") == 1


def test_generation_completed(registry: CollectorRegistry, metrics: GatewayMetrics) -> None:
    metrics.handle(started())
    metrics.handle(completed(stop="length", prompt=7, tokens=10, ttft=0.05, tps=90.0, gaps=(0.011,) * 9))
    labels = {"model": REAL, "stub": "false"}
    assert value(registry, "mia_prompt_tokens_total", **labels) == 7
    assert value(registry, "mia_generation_tokens_total", **labels) == 10
    assert value(registry, "mia_generations_completed_total", **labels, reason="length") == 1
    assert value(registry, "mia_time_to_first_token_seconds_count", **labels) == 1
    assert value(registry, "mia_time_to_first_token_seconds_sum", **labels) == pytest.approx(0.05)
    assert value(registry, "mia_decode_tokens_per_second_count", **labels) == 1
    assert value(registry, "mia_decode_tokens_per_second_sum", **labels) == pytest.approx(90.0)
    assert value(registry, "mia_decode_tokens_per_second_bucket", **labels, le="75.0") == 0
    assert value(registry, "mia_decode_tokens_per_second_bucket", **labels, le="100.0") == 1
    assert value(registry, "mia_inter_token_latency_seconds_count", **labels) == 9
    assert value(registry, "mia_inter_token_latency_seconds_sum", **labels) == pytest.approx(0.099)
    assert value(registry, "mia_generations_cancelled_total", **labels, reason="client_disconnect") == 0


def test_decode_speed_buckets_span_1_to_5000() -> None:
    assert TPS_BUCKETS[0] == 1 and TPS_BUCKETS[-1] == 5000
    assert list(TPS_BUCKETS) == sorted(TPS_BUCKETS)


def test_a_one_token_generation_has_no_speed_or_gaps(registry: CollectorRegistry, metrics: GatewayMetrics) -> None:
    metrics.handle(completed(tokens=1, ttft=0.02, tps=None, gaps=()))
    labels = {"model": REAL, "stub": "false"}
    assert value(registry, "mia_generation_tokens_total", **labels) == 1
    assert value(registry, "mia_time_to_first_token_seconds_count", **labels) == 1
    assert value(registry, "mia_decode_tokens_per_second_count", **labels) == 0
    assert value(registry, "mia_inter_token_latency_seconds_count", **labels) == 0


def test_cancelled_generation(registry: CollectorRegistry, metrics: GatewayMetrics) -> None:
    metrics.handle(started())
    metrics.handle(cancelled(reason="timeout", tokens=4))
    labels = {"model": REAL, "stub": "false"}
    assert value(registry, "mia_generations_cancelled_total", **labels, reason="timeout") == 1
    assert value(registry, "mia_generation_tokens_total", **labels) == 4  # decoded before the cancel
    assert value(registry, "mia_decode_tokens_per_second_count", **labels) == 0
    completed_total = sum(v for (name, _), v in samples(registry).items() if name == "mia_generations_completed_total")
    assert completed_total == 0


def test_admission_changes_set_running_and_waiting(registry: CollectorRegistry, metrics: GatewayMetrics) -> None:
    metrics.handle(AdmissionChanged(model_id=REAL, running=2, waiting=3))
    assert value(registry, "mia_num_requests_running", model=REAL) == 2
    assert value(registry, "mia_num_requests_waiting", model=REAL) == 3
    metrics.handle(AdmissionChanged(model_id=REAL, running=1, waiting=0))
    assert value(registry, "mia_num_requests_running", model=REAL) == 1
    assert value(registry, "mia_num_requests_waiting", model=REAL) == 0


def test_requests_by_endpoint_and_status(registry: CollectorRegistry, metrics: GatewayMetrics) -> None:
    for status in (200, 200, 404):
        metrics.handle(
            RequestFinished(
                request_id="r", endpoint="/v1/chat/completions", method="POST", status=status, duration_seconds=0.2
            )
        )
    ep = "/v1/chat/completions"
    assert value(registry, "mia_requests_total", endpoint=ep, status="200") == 2
    assert value(registry, "mia_requests_total", endpoint=ep, status="404") == 1
    assert value(registry, "mia_request_duration_seconds_count", endpoint=ep) == 3
    assert value(registry, "mia_request_duration_seconds_sum", endpoint=ep) == pytest.approx(0.6)


def processed(model: str = REAL, *, prompt: int = 40, cached: int = 30) -> PromptProcessed:
    return PromptProcessed(
        request_id="r",
        model_id=model,
        prompt_tokens=prompt,
        cached_tokens=cached,
        evaluated_tokens=prompt - cached,
        slot=0,
        seconds=0.01,
    )


def test_prompt_processed_counts_cached_and_all_prompt_tokens(
    registry: CollectorRegistry, metrics: GatewayMetrics
) -> None:
    metrics.handle(loaded(REAL, stub=False))
    gen = {"model": REAL, "stub": "false"}
    # both series exist at zero from the load, so a hit rate has data before the first prompt
    assert registry.get_sample_value("mia_prompt_cache_hit_tokens_total", gen) == 0.0
    assert registry.get_sample_value("mia_prompt_processed_tokens_total", gen) == 0.0
    metrics.handle(processed(prompt=40, cached=0))
    metrics.handle(processed(prompt=50, cached=36))
    assert value(registry, "mia_prompt_cache_hit_tokens_total", **gen) == 36
    assert value(registry, "mia_prompt_processed_tokens_total", **gen) == 90
    # the hit rate the dashboard draws: cached over processed prompt tokens
    assert value(registry, "mia_prompt_cache_hit_tokens_total", **gen) / value(
        registry, "mia_prompt_processed_tokens_total", **gen
    ) == pytest.approx(0.4)
    # completed generations' prompt tokens are a separate series, untouched by it
    assert value(registry, "mia_prompt_tokens_total", **gen) == 0
    metrics.handle(processed("mystery", prompt=8, cached=8))
    other = {"model": "other", "stub": "false"}
    assert value(registry, "mia_prompt_processed_tokens_total", **other) == 8
    assert value(registry, "mia_prompt_cache_hit_tokens_total", **other) == 8


def test_fallbacks(registry: CollectorRegistry, metrics: GatewayMetrics) -> None:
    metrics.handle(FallbackTriggered(request_id="r", from_model=REAL, to_model=STUB, reason="upstream_error"))
    metrics.handle(FallbackTriggered(request_id="r", from_model=REAL, to_model=STUB, reason="HTTP 502 from x.y"))
    assert value(registry, "mia_fallbacks_total", from_model=REAL, to_model=STUB, reason="upstream_error") == 1
    assert value(registry, "mia_fallbacks_total", from_model=REAL, to_model=STUB, reason="other") == 1


# --- stub vs real, bounded labels ------------------------------------------------


def test_a_stub_generation_never_moves_a_real_series(registry: CollectorRegistry, metrics: GatewayMetrics) -> None:
    metrics.handle(loaded(REAL, stub=False))
    metrics.handle(started())
    metrics.handle(completed())
    before = samples(registry)
    real_before = {k: v for k, v in before.items() if ("stub", "false") in k[1]}
    assert real_before

    metrics.handle(loaded(STUB, stub=True))
    metrics.handle(started(STUB, stub=True))
    metrics.handle(completed(STUB, stub=True, stop="stub", tps=250_000.0, ttft=0.0001, gaps=(0.00001,) * 9))
    metrics.handle(started(STUB, stub=True))
    metrics.handle(cancelled(STUB, stub=True))

    after = samples(registry)
    assert {k: v for k, v in after.items() if ("stub", "false") in k[1]} == real_before
    stub = {"model": STUB, "stub": "true"}
    assert value(registry, "mia_decode_tokens_per_second_count", **stub) == 1
    assert value(registry, "mia_decode_tokens_per_second_bucket", **stub, le="5000.0") == 0  # above every bucket
    assert value(registry, "mia_generations_completed_total", **stub, reason="stub") == 1
    assert value(registry, "mia_generations_cancelled_total", **stub, reason="client_disconnect") == 1


def test_an_unknown_model_lands_under_other(registry: CollectorRegistry, metrics: GatewayMetrics) -> None:
    metrics.handle(loaded("mystery", stub=False))
    metrics.handle(started("mystery"))
    metrics.handle(completed("mystery"))
    metrics.handle(cancelled("mystery"))
    metrics.handle(AdmissionChanged(model_id="mystery", running=1, waiting=0))
    metrics.handle(ModelUnloaded(model_id="mystery", reason="idle"))
    other = {"model": "other", "stub": "false"}
    assert value(registry, "mia_prompt_tokens_total", **other) == 7
    assert value(registry, "mia_generations_completed_total", **other, reason="eos") == 1
    assert value(registry, "mia_generations_cancelled_total", **other, reason="client_disconnect") == 1
    assert value(registry, "mia_num_requests_running", model="other") == 1
    assert value(registry, "mia_model_unloads_total", model="other", reason="idle") == 1
    assert value(registry, "mia_model_loads_total", model="other", result="ok") == 1
    assert not [k for k in samples(registry) if ("model", "mystery") in k[1]]


def test_free_text_reasons_do_not_mint_series(registry: CollectorRegistry, metrics: GatewayMetrics) -> None:
    metrics.handle(completed(stop="the model got bored"))
    metrics.handle(cancelled(reason="client said 'stop' at 12:01"))
    labels = {"model": REAL, "stub": "false"}
    assert value(registry, "mia_generations_completed_total", **labels, reason="other") == 1
    assert value(registry, "mia_generations_cancelled_total", **labels, reason="other") == 1


def test_names_prefix_units_and_total(registry: CollectorRegistry, metrics: GatewayMetrics) -> None:
    metrics.handle(loaded(REAL, stub=False))
    metrics.handle(completed())
    metrics.handle(cancelled())
    metrics.handle(RequestFinished(request_id="r", endpoint="/health", method="GET", status=200, duration_seconds=0.1))
    families = {f.name: f for f in registry.collect()}
    assert families and all(name.startswith("mia_") for name in families)
    text = generate_latest(registry).decode()
    types = dict(line.split()[2:4] for line in text.splitlines() if line.startswith("# TYPE "))
    for name, kind in types.items():
        if kind == "counter":
            assert name.endswith("_total"), name
        else:
            assert not name.endswith("_total"), name
    for family in parse_text(text):
        if family.type == "histogram":
            assert family.name.endswith(("_seconds", "_per_second")), family.name
        for s in family.samples:
            if "stub" in s.labels:
                assert s.labels["stub"] in ("true", "false")
                assert "model" in s.labels
    generation = [f for f in families.values() if f.name.split("_")[1] in ("decode", "time", "inter", "prompt")]
    assert len(generation) == 6  # prompt_tokens, prompt_cache_hit_tokens, prompt_processed_tokens: "prompt"
    for f in generation:
        assert {"model", "stub"} <= {k for s in f.samples for k in s.labels}, f.name


# --- memoised label children -------------------------------------------------------


def test_label_children_are_memoised_and_bounded(
    registry: CollectorRegistry, metrics: GatewayMetrics, monkeypatch: pytest.MonkeyPatch
) -> None:
    memo = metrics._queue
    assert memo(REAL, "false") is memo(REAL, "false") is metrics.queue.labels(REAL, "false")
    # past the bound a child is still right, just not kept
    monkeypatch.setattr(app.metrics, "MAX_CHILDREN", 2)
    for model in (REAL, STUB, "mystery"):
        metrics.handle(started(model, queue=0.1))
        metrics.handle(started(model, queue=0.1))
    assert len(memo._cache) == 2
    for model in (REAL, STUB, "other"):
        assert value(registry, "mia_request_queue_seconds_count", model=model, stub="false") == 2


def test_a_series_appears_only_when_its_event_touches_it(registry: CollectorRegistry, metrics: GatewayMetrics) -> None:
    # the memo creates nothing ahead: a queue wait makes the queue series, and only it
    metrics.handle(started(REAL, queue=0.1))
    gen = {"model": REAL, "stub": "false"}
    assert registry.get_sample_value("mia_request_queue_seconds_count", gen) == 1
    assert registry.get_sample_value("mia_time_to_first_token_seconds_count", gen) is None
    assert registry.get_sample_value("mia_prompt_tokens_total", gen) is None


# --- through the real service: cancelled and failed generations count once -------


class _Boom(StubProvider):
    """Yields one piece, then fails like a broken decoder."""

    async def generate(self, prompt: Prompt, params: DecodeParams, cancel: CancelToken) -> AsyncGenerator[Piece, None]:
        yield Piece(data=b"one ")
        raise RuntimeError("decoder exploded")


def _factory(config: ModelConfig) -> Provider:
    return _Boom(config) if config.id == "boom" else StubProvider(config)


def _req(model: str, rid: str, *, stream: bool) -> GenerationRequest:
    return GenerationRequest(
        request_id=rid, model=model, messages=(Message(role="user", content="Count to ten."),), stream=stream
    )


async def test_each_generation_ends_in_exactly_one_terminal_metric() -> None:
    settings = Settings(models=[StubModelConfig(id="stub-chat", stub_words=12), StubModelConfig(id="boom")])
    registry = CollectorRegistry()
    gw = build_gateway(settings, registry=registry, provider_factory=_factory)
    install_metrics(gw.registry, gw.bus, gw.settings.models)
    await gw.manager.load_all()
    stub = {"model": "stub-chat", "stub": "true"}

    # completed (non-stream)
    result = await (await gw.service.start(_req("stub-chat", "r1", stream=False))).collect()
    assert result.usage.completion_tokens == 12
    # the client goes away after the first delta
    gen = await gw.service.start(_req("stub-chat", "r2", stream=True))
    deltas = gen.deltas()
    await anext(deltas)
    await deltas.aclose()
    await gen.aclose()
    # the decoder fails mid-stream
    gen = await gw.service.start(_req("boom", "r3", stream=True))
    with pytest.raises(RuntimeError, match="exploded"):
        async for _ in gen.deltas():
            pass

    assert value(registry, "mia_generations_completed_total", **stub, reason="stub") == 1
    assert value(registry, "mia_generations_cancelled_total", **stub, reason="client_disconnect") == 1
    boom = {"model": "boom", "stub": "true"}
    assert value(registry, "mia_generations_cancelled_total", **boom, reason="error") == 1
    started_n = sum(v for (n, _), v in samples(registry).items() if n == "mia_request_queue_seconds_count")
    ended_n = sum(
        v
        for (n, _), v in samples(registry).items()
        if n in ("mia_generations_completed_total", "mia_generations_cancelled_total")
    )
    assert started_n == ended_n == 3
    assert value(registry, "mia_generation_tokens_total", **stub) == 12 + 1  # the cancelled one decoded one word
    assert value(registry, "mia_num_requests_running", model="stub-chat") == 0
    assert value(registry, "mia_num_requests_running", model="boom") == 0
    assert value(registry, "mia_model_loads_total", model="stub-chat", result="stub") == 1


# --- GET /metrics on the served stub gateway ---------------------------------------


def _chat(gw: ServedGateway) -> None:
    r = httpx.post(
        f"{gw.api_url}/chat/completions",
        json={"model": "stub-chat", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 8},
        timeout=10.0,
    )
    assert r.status_code == 200, r.text


@pytest.mark.slow
def test_metrics_endpoint_speaks_prometheus_text_by_default(stub_gateway: ServedGateway) -> None:
    _chat(stub_gateway)
    r = httpx.get(f"{stub_gateway.base_url}/metrics", timeout=10.0)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
    assert "# TYPE mia_requests_total counter" in r.text
    assert "# EOF" not in r.text
    families = {f.name: f for f in parse_text(r.text)}
    tps = families["mia_decode_tokens_per_second"]
    counts = {"true": 0.0, "false": 0.0}
    for s in tps.samples:
        if s.name.endswith("_count"):
            counts[s.labels["stub"]] += s.value
    assert counts["true"] >= 1
    assert counts["false"] == 0  # a stub-only gateway never moves a real series
    loaded = {s.labels["model"]: s.value for s in families["mia_model_loaded"].samples}
    assert loaded == {"stub-chat": 1.0, "stub-harmony": 1.0, "stub-embed": 1.0}


@pytest.mark.slow
def test_metrics_endpoint_speaks_openmetrics_when_asked(stub_gateway: ServedGateway) -> None:
    _chat(stub_gateway)
    r = httpx.get(
        f"{stub_gateway.base_url}/metrics",
        headers={"accept": "application/openmetrics-text; version=1.0.0; charset=utf-8"},
        timeout=10.0,
    )
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/openmetrics-text; version=1.0.0")
    assert r.text.endswith("# EOF\n")
    assert "# TYPE mia_requests counter" in r.text
    families = {f.name: f for f in parse_openmetrics(r.text)}
    assert families["mia_requests"].type == "counter"
    assert families["mia_decode_tokens_per_second"].type == "histogram"
    chat = [
        s
        for s in families["mia_requests"].samples
        if s.name == "mia_requests_total" and s.labels["endpoint"] == "/v1/chat/completions"
    ]
    assert chat and all(math.isfinite(s.value) for s in chat)


def test_open_connections_follow_the_connection_events(registry: CollectorRegistry, metrics: GatewayMetrics) -> None:
    assert value(registry, "mia_http_connections") == 0
    for open_ in (1, 2, 1):
        metrics.handle(ConnectionsChanged(open=open_))
    assert value(registry, "mia_http_connections") == 1


def test_ignored_hosted_tools_are_counted_by_type(registry: CollectorRegistry, metrics: GatewayMetrics) -> None:
    metrics.handle(ToolsIgnored(request_id="r1", tools=["web_search", "code_interpreter"]))
    metrics.handle(ToolsIgnored(request_id="r2", tools=["web_search"]))
    assert value(registry, "mia_hosted_tools_ignored_total", tool="web_search") == 2
    assert value(registry, "mia_hosted_tools_ignored_total", tool="code_interpreter") == 1


def test_storage_operations_are_timed_and_failures_counted(
    registry: CollectorRegistry, metrics: GatewayMetrics
) -> None:
    metrics.handle(StorageOperation(operation="put", backend="sqlite", seconds=0.0004, ok=True))
    metrics.handle(StorageOperation(operation="get", backend="postgresql", seconds=2.0, ok=False))
    assert value(registry, "mia_storage_operation_seconds_count", operation="put", backend="sqlite") == 1
    assert value(registry, "mia_storage_operation_seconds_bucket", operation="put", backend="sqlite", le="0.0005") == 1
    assert value(registry, "mia_storage_errors_total", operation="get", backend="postgresql") == 1
    assert value(registry, "mia_storage_errors_total", operation="put", backend="sqlite") == 0


def test_structured_outputs_are_counted_by_target_and_outcome(
    registry: CollectorRegistry, metrics: GatewayMetrics
) -> None:
    def checked(outcome: str, target: str = "response_format", **kw: object) -> StructuredOutputChecked:
        return StructuredOutputChecked(request_id="r", model_id=REAL, stub=False, target=target, outcome=outcome, **kw)

    metrics.handle(checked("valid"))
    metrics.handle(checked("invalid", unenforced=["multipleOf", "x-made-up"]))
    metrics.handle(checked("valid", target="tool_arguments", tool="f"))
    metrics.handle(checked("made-up-outcome"))
    labels = {"model": REAL, "stub": "false"}
    assert value(registry, "mia_structured_output_total", target="response_format", outcome="valid", **labels) == 1
    assert value(registry, "mia_structured_output_total", target="response_format", outcome="invalid", **labels) == 1
    assert value(registry, "mia_structured_output_total", target="tool_arguments", outcome="valid", **labels) == 1
    assert value(registry, "mia_structured_output_total", target="response_format", outcome="other", **labels) == 1
    assert value(registry, "mia_structured_output_unenforced_total", model=REAL, keyword="multipleOf") == 1
    assert value(registry, "mia_structured_output_unenforced_total", model=REAL, keyword="other") == 1
