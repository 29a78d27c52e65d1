"""Fallback, balancing and health of upstream pools, against respx-mocked upstreams.

Before the first token, a connect error, a timeout, a 429 or a 5xx moves a request to the
model's next upstream, then to the next model of its `fallbacks`; after it, never. Each
hop is an event (the metric and `x-mia-fallback`: tests/app/test_upstream_routes.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import httpx
import pytest
import respx

from pipelines.config import UpstreamConfig, UpstreamModelConfig
from pipelines.errors import InvalidRequest, UpstreamError
from pipelines.events import EventBus, FallbackTriggered, GenerationCancelled, GenerationCompleted, GenerationStarted
from pipelines.types import Tool
from pipelines.upstream import UpstreamFailure, UpstreamPool, UpstreamStateChanged, run_probes
from tests.support.harness import Harness
from tests.support.upstream import (
    BEFORE_FIRST_TOKEN,
    CHAIN,
    KINDS,
    STUB_CHAT,
    UP1,
    UP2,
    UP3,
    answer,
    dies_after,
    fail,
    hops,
    pool_of,
    remote_model,
    routes,
)

HarnessFactory = Callable[..., Harness]


# -- the matrix -------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
async def test_a_failing_upstream_falls_back_to_the_next_upstream(
    make_harness: HarnessFactory, respx_mock: respx.MockRouter, kind: str
) -> None:
    up1, up2, up3 = routes(respx_mock)
    fail(up1, kind)
    up2.mock(return_value=answer("from", " two"))
    h = make_harness(CHAIN)
    gen, _ = await h.run(h.request("a"))
    reason = BEFORE_FIRST_TOKEN[kind][1]
    assert gen.model_id == "a" and gen.result is not None and gen.result.content == "from two"
    assert [str(hop) for hop in gen.hops] == [f"a->a:{reason}"]
    assert hops(h, gen.request_id) == [("a", "a", reason)]
    assert (up1.call_count, up2.call_count, up3.call_count) == (1, 1, 0)
    assert len(h.of(GenerationStarted, gen.request_id)) == 1
    assert len(h.of(GenerationCompleted, gen.request_id)) == 1


@pytest.mark.parametrize("kind", KINDS)
async def test_when_every_upstream_fails_the_next_model_serves(
    make_harness: HarnessFactory, respx_mock: respx.MockRouter, kind: str
) -> None:
    up1, up2, up3 = routes(respx_mock)
    fail(up1, kind)
    fail(up2, kind)
    up3.mock(return_value=answer("from", " b"))
    h = make_harness(CHAIN)
    gen, _ = await h.run(h.request("a"))
    reason = BEFORE_FIRST_TOKEN[kind][1]
    assert gen.model_id == "b" and gen.result is not None and gen.result.content == "from b"
    assert [str(hop) for hop in gen.hops] == [f"a->a:{reason}", f"a->b:{reason}"]
    assert hops(h, gen.request_id) == [("a", "a", reason), ("a", "b", reason)]
    (done,) = h.of(GenerationCompleted, gen.request_id)
    assert done.model_id == "b"


async def test_a_local_model_can_be_the_fallback(make_harness: HarnessFactory, respx_mock: respx.MockRouter) -> None:
    respx_mock.post(f"{UP1}/chat/completions").mock(return_value=httpx.Response(500))
    h = make_harness(remote_model("a", (UP1,), fallbacks=["stub-chat"]) + STUB_CHAT)
    gen, deltas = await h.run(h.request("a"))
    assert gen.model_id == "stub-chat" and deltas
    assert [str(hop) for hop in gen.hops] == ["a->stub-chat:server_error"]
    (done,) = h.of(GenerationCompleted, gen.request_id)
    assert done.stub is True and done.stop_reason == "stub"


async def test_a_fallback_that_cannot_serve_the_request_is_skipped(
    make_harness: HarnessFactory, respx_mock: respx.MockRouter
) -> None:
    up1, _, up3 = routes(respx_mock)
    up1.mock(return_value=httpx.Response(500))
    up3.mock(return_value=answer("ok"))
    toml = (
        remote_model("a", (UP1,), fallbacks=["stub-chat", "c"], tools=True)
        + STUB_CHAT
        + remote_model("c", (UP3,), tools=True)
    )
    h = make_harness(toml)
    # the stub's chat template has no tools
    gen, _ = await h.run(h.request("a", tools=(Tool(name="f"),), tool_choice="auto"))
    assert gen.model_id == "c"
    assert [str(hop) for hop in gen.hops] == ["a->stub-chat:server_error", "stub-chat->c:unsupported"]


async def test_a_bad_request_is_not_retried_anywhere(
    make_harness: HarnessFactory, respx_mock: respx.MockRouter
) -> None:
    up1, up2, up3 = routes(respx_mock)
    up1.mock(return_value=httpx.Response(400, json={"error": {"message": "no", "param": "messages"}}))
    h = make_harness(CHAIN)
    with pytest.raises(UpstreamFailure) as info:
        await h.start(h.request("a"))
    assert (info.value.status, info.value.param) == (400, "messages")
    with pytest.raises(InvalidRequest):
        await h.start(h.request("a", preset="no-such-preset"))  # ours, before any upstream
    assert (up1.call_count, up2.call_count, up3.call_count) == (1, 0, 0)
    assert not h.of(FallbackTriggered)


@pytest.mark.parametrize("status", [401, 403, 404])
async def test_an_upstream_that_refuses_us_is_a_502_without_fallback(
    make_harness: HarnessFactory, respx_mock: respx.MockRouter, status: int
) -> None:
    up1, up2, _ = routes(respx_mock)
    up1.mock(return_value=httpx.Response(status, json={"error": {"message": "nope"}}))
    h = make_harness(CHAIN)
    with pytest.raises(UpstreamFailure) as info:
        await h.start(h.request("a"))
    assert info.value.status == 502 and info.value.code == "upstream_error"
    assert up2.call_count == 0


# -- after the first token: never for a stream ------------------------------------


async def test_an_upstream_dying_mid_stream_is_not_retried(
    make_harness: HarnessFactory, respx_mock: respx.MockRouter
) -> None:
    up1, up2, up3 = routes(respx_mock)
    up1.mock(return_value=dies_after("Hello", " wor"))
    h = make_harness(CHAIN)
    gen = await h.start(h.request("a", stream=True))
    got: list[str] = []
    with pytest.raises(UpstreamError) as info:
        async for delta in gen.deltas():
            got.append(delta.text)
    assert got == ["Hello", " wor"]
    assert info.value.status == 502
    (cancelled,) = h.of(GenerationCancelled, gen.request_id)
    assert cancelled.reason == "upstream_error" and cancelled.completion_tokens == 2
    assert not h.of(GenerationCompleted, gen.request_id)
    assert (up2.call_count, up3.call_count) == (0, 0)
    assert pool_of(h, "a").upstreams[0].consecutive_failures == 1


# -- ... but a non-stream answer has not reached the client until it ends -----------


async def test_a_non_stream_request_fails_cleanly_when_the_whole_chain_dies_part_way(
    make_harness: HarnessFactory, respx_mock: respx.MockRouter
) -> None:
    for route in routes(respx_mock):
        route.mock(side_effect=lambda _: dies_after("Hello"))
    h = make_harness(CHAIN)
    gen = await h.start(h.request("a"))
    with pytest.raises(UpstreamFailure) as info:
        await gen.collect()
    assert info.value.status == 502 and "'b'" in info.value.message
    assert len(h.of(GenerationCancelled)) == len(h.of(GenerationStarted)) == 3
    assert h.gateway.service.live == 0


# -- balancing --------------------------------------------------------------------


async def test_the_upstream_with_fewest_requests_in_flight_is_chosen(
    make_harness: HarnessFactory, respx_mock: respx.MockRouter
) -> None:
    up1, up2, _ = routes(respx_mock)
    up1.mock(side_effect=lambda _: answer("one"))
    up2.mock(side_effect=lambda _: answer("two"))
    h = make_harness(remote_model("a", (UP1, UP2), slots=2))
    pool = pool_of(h, "a")
    held = [await h.start(h.request("a")) for _ in range(3)]  # started, first piece read, not finished
    assert [u.in_flight for u in pool.upstreams] == [2, 1]
    for gen in held[1:]:
        await gen.aclose()
    assert [u.in_flight for u in pool.upstreams] == [1, 0]
    gen, _ = await h.run(h.request("a"))
    assert gen.result is not None and gen.result.content == "two"
    await held[0].aclose()
    assert [u.in_flight for u in pool.upstreams] == [0, 0]
    # with nothing in flight, sequential requests take the upstreams in turn
    served = [(await h.run(h.request("a")))[0].result.content for _ in range(4)]  # type: ignore[union-attr]
    assert sorted(served) == ["one", "one", "two", "two"]


# -- ejection ---------------------------------------------------------------------


async def test_a_success_clears_the_failure_count(make_harness: HarnessFactory, respx_mock: respx.MockRouter) -> None:
    up1, _, _ = routes(respx_mock)
    up1.mock(side_effect=[httpx.Response(500), httpx.Response(500), answer("ok"), httpx.Response(500)])
    h = make_harness(remote_model("a", (UP1,), eject_after=3))
    for _ in range(2):
        with pytest.raises(UpstreamFailure):
            await h.start(h.request("a"))
    assert pool_of(h, "a").upstreams[0].consecutive_failures == 2
    await h.run(h.request("a"))
    assert pool_of(h, "a").upstreams[0].consecutive_failures == 0
    with pytest.raises(UpstreamFailure):
        await h.start(h.request("a"))
    assert not h.of(UpstreamStateChanged)


async def test_when_all_upstreams_are_ejected_they_are_still_tried(
    make_harness: HarnessFactory, respx_mock: respx.MockRouter
) -> None:
    up1, up2, _ = routes(respx_mock)
    up1.mock(side_effect=[httpx.ConnectError("refused"), answer("back")])
    up2.mock(side_effect=[httpx.ConnectError("refused"), httpx.ConnectError("refused")])
    h = make_harness(remote_model("a", (UP1, UP2), eject_after=1, eject_seconds=60))
    with pytest.raises(UpstreamFailure):
        await h.start(h.request("a"))
    assert {u.state for u in pool_of(h, "a").upstreams} == {"ejected"}
    gen, _ = await h.run(h.request("a"))
    assert gen.result is not None and gen.result.content == "back"


# -- active probes ----------------------------------------------------------------


async def test_probes_count_towards_ejection_but_do_not_cut_it_short(
    make_harness: HarnessFactory, respx_mock: respx.MockRouter
) -> None:
    health1 = respx_mock.get(f"{UP1}/models").mock(return_value=httpx.Response(200, json={"data": []}))
    health2 = respx_mock.get("http://up2.test/health").mock(return_value=httpx.Response(503))
    h = make_harness(remote_model("a", (UP1, UP2), eject_after=2, eject_seconds=60))
    entry = h.gateway.manager.get("a")
    assert entry is not None
    pool = pool_of(h, "a")
    pool.upstreams[1].health_url = "http://up2.test/health"  # what `health_path = "/health"` gives
    await pool.probe_once()
    assert health1.call_count == health2.call_count == 0  # not loaded yet: no client to probe with
    await h.gateway.manager.ensure_loaded(entry)
    await pool.probe_once()
    await pool.probe_once()
    assert [u.state for u in pool.upstreams] == ["healthy", "ejected"]
    (event,) = h.of(UpstreamStateChanged)
    assert event.reason == "probe_failed"
    health2.mock(return_value=httpx.Response(200))
    await pool.probe_once()
    up2 = pool.upstreams[1]
    assert (up2.state, up2.consecutive_failures) == ("ejected", 0)


def test_health_urls_and_labels() -> None:
    ups = [UpstreamConfig(base_url="http://h:8000/v1"), UpstreamConfig(base_url="http://h:8000/v1/")]
    cases = [(None, "http://h:8000/v1/models"), ("/health", "http://h:8000/health"), ("ping", "http://h:8000/v1/ping")]
    for path, url in cases:
        pool = UpstreamPool(UpstreamModelConfig(id="m", upstreams=ups, health_path=path), EventBus())
        assert [u.health_url for u in pool.upstreams] == [url, url]
        # host:port, made unique: bounded by the configuration
        assert [u.label for u in pool.upstreams] == ["h:8000", "h:8000#1"]


async def test_run_probes_probes_every_pool_periodically(
    make_harness: HarnessFactory, respx_mock: respx.MockRouter
) -> None:
    health = respx_mock.get(f"{UP1}/models").mock(return_value=httpx.Response(200, json={"data": []}))
    h = make_harness(remote_model("a", (UP1,), probe_seconds=0.05) + STUB_CHAT)
    await h.gateway.manager.load_all()
    task = asyncio.create_task(run_probes(e.provider for e in h.gateway.manager.entries))
    # periodic: a third probe comes (the bound is a hang guard, not a speed claim)
    async with asyncio.timeout(60):
        while health.call_count < 3:
            await asyncio.sleep(0.01)
    assert not task.done()  # and it goes on probing until cancelled
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    # nothing to probe: it returns at once, without ever waiting on anything
    idle = run_probes([])
    with pytest.raises(StopIteration):
        idle.send(None)
