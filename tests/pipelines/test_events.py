"""The event ordering invariants of DESIGN.md, observed on a real in-process gateway
(`build_gateway` + `service.start` + `deltas()`, stub models from a settings file):

- `ModelLoaded` precedes any generation event of that model;
- `ModelRouted` follows `prepare` and precedes `GenerationStarted`;
- a streamed generation emits at least one `GenerationChunk` between
  `GenerationStarted` and its end (when something listens for chunks);
- every `GenerationStarted` ends in exactly one `GenerationCompleted` or
  `GenerationCancelled`;
- `GenerationStarted.sampling == GenerationCompleted.result_summary["sampling"]`.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import random
from collections import defaultdict
from collections.abc import Callable, Sequence

import pytest

from pipelines.errors import InvalidRequest, Unsupported
from pipelines.events import (
    Event,
    GenerationCancelled,
    GenerationChunk,
    GenerationCompleted,
    GenerationStarted,
    ModelLoaded,
    ModelRouted,
)
from pipelines.types import DeltaKind, Tool
from tests.pipelines.conftest import with_server
from tests.support.configs import STUB_MODELS
from tests.support.harness import Harness

_GENERATION = (ModelRouted, GenerationStarted, GenerationChunk, GenerationCompleted, GenerationCancelled)
_TERMINAL = (GenerationCompleted, GenerationCancelled)


def check_invariants(events: Sequence[Event], *, chunks: bool = True) -> None:
    """Asserts every ordering invariant over a recorded event stream (requests may interleave)."""
    loaded: set[str] = set()
    per_request: dict[str, list[Event]] = defaultdict(list)
    for e in events:
        if isinstance(e, ModelLoaded):
            loaded.add(e.model_id)
        elif isinstance(e, _GENERATION):
            assert e.model_id in loaded, f"{type(e).__name__} of {e.model_id} before its ModelLoaded"
            per_request[e.request_id].append(e)
    for rid, evs in per_request.items():
        names = [type(e).__name__ for e in evs]
        assert names[0] == "ModelRouted", (rid, names)
        assert names.count("ModelRouted") == 1, (rid, names)
        if "GenerationStarted" not in names:
            continue
        assert names.count("GenerationStarted") == 1, (rid, names)
        assert names[1] == "GenerationStarted", (rid, names)
        terminals = [e for e in evs if isinstance(e, _TERMINAL)]
        assert len(terminals) == 1, (rid, names)
        assert evs[-1] is terminals[0], f"{rid}: events after the terminal one: {names}"
        between = names[2:-1]
        assert set(between) <= {"GenerationChunk"}, (rid, names)
        if chunks and isinstance(terminals[0], GenerationCompleted):
            assert between, f"{rid}: no GenerationChunk between start and end"


# --- one generation -----------------------------------------------------------------


@pytest.mark.parametrize("model", ["stub-chat", "stub-harmony"])
async def test_one_stream_in_order(harness: Harness, model: str) -> None:
    await harness.gateway.manager.load_all()
    req = harness.request(model, stream=True)
    gen, deltas = await harness.run(req)
    check_invariants(harness.events)
    mine = [e for e in harness.events if getattr(e, "request_id", None) == req.request_id]
    assert isinstance(mine[0], ModelRouted) and isinstance(mine[1], GenerationStarted)
    assert isinstance(mine[-1], GenerationCompleted)
    chunks = [e for e in mine if isinstance(e, GenerationChunk)]
    # one chunk per delta, same text, same channel
    assert [(c.channel, c.text) for c in chunks] == [(d.kind.value, d.text) for d in deltas]
    assert gen.result is not None
    assert "".join(c.text for c in chunks if c.channel == "content") == gen.result.content
    assert "".join(c.text for c in chunks if c.channel == "reasoning") == gen.result.reasoning


async def test_a_model_loaded_on_first_use_is_announced_before_it_is_routed(harness: Harness) -> None:
    req = harness.request("stub-harmony")
    await harness.run(req)
    names = [type(e).__name__ for e in harness.events if not type(e).__name__.startswith("Admission")]
    assert names[0] == "ModelLoaded"
    assert harness.of(ModelLoaded)[0].model_id == "stub-harmony"
    assert harness.of(ModelLoaded)[0].stub is True
    # only the model that was used got loaded
    assert [e.model_id for e in harness.of(ModelLoaded)] == ["stub-harmony"]
    check_invariants(harness.events)


async def test_routed_carries_the_pipeline_and_capabilities(harness: Harness) -> None:
    await harness.run(harness.request("stub-harmony"))
    await harness.run(harness.request("stub-chat-alias"))
    harmony, chat = harness.of(ModelRouted)
    assert (harmony.model_id, harmony.pipeline, harmony.stub) == ("stub-harmony", "primary", True)
    assert harmony.capabilities["reasoning"] is True and harmony.capabilities["tool_calls"] is True
    # an alias is routed under the canonical id
    assert (chat.model_id, chat.pipeline) == ("stub-chat", "lightweight")
    assert chat.capabilities["reasoning"] is False


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"preset": "no-such-preset"}, InvalidRequest),
        # a chat model whose template has no tools
        ({"tools": (Tool(name="f"),), "tool_choice": "auto"}, Unsupported),
    ],
)
async def test_a_request_that_prepare_rejects_is_never_routed(
    harness: Harness, kwargs: dict[str, object], error: type[Exception]
) -> None:
    with pytest.raises(error):
        await harness.start(harness.request("stub-chat", **kwargs))
    assert harness.of(ModelRouted) == []
    assert harness.of(GenerationStarted) == []
    # and it holds no slot: the next request goes straight through
    assert all(g.running == 0 and g.waiting == 0 for g in harness.gateway.admission.gates)
    assert harness.gateway.service.live == 0
    await harness.run(harness.request("stub-chat"))
    check_invariants(harness.events)


async def test_non_stream_collect_completes_once(harness: Harness) -> None:
    req = harness.request("stub-harmony")
    gen = await harness.start(req)
    result = await gen.collect()
    assert [type(e) for e in harness.events if isinstance(e, _TERMINAL)] == [GenerationCompleted]
    [done] = harness.of(GenerationCompleted)
    assert done.result_summary["usage"]["completion_tokens"] == result.usage.completion_tokens
    check_invariants(harness.events)


async def test_interleaved_generations_keep_every_invariant(harness: Harness) -> None:
    rng = random.Random(7)
    reqs = [
        harness.request(rng.choice(["stub-chat", "stub-harmony", "stub-chat-alias"]), f"q{i}", stream=True)
        for i in range(24)
    ]
    results = await asyncio.gather(*(harness.run(r) for r in reqs))
    assert all(gen.result is not None for gen, _ in results)
    check_invariants(harness.events)
    assert len(harness.of(GenerationStarted)) == len(harness.of(GenerationCompleted)) == 24
    # the chunks of concurrent generations interleave, but each keeps its own order
    for gen, deltas in results:
        texts = [c.text for c in harness.of(GenerationChunk, gen.request_id)]
        assert texts == [d.text for d in deltas]


async def test_without_a_chunk_listener_no_chunk_event_is_made(make_harness: Callable[..., Harness]) -> None:
    harness = make_harness(chunks=False)
    _, deltas = await harness.run(harness.request("stub-chat", stream=True))
    assert deltas
    assert not harness.gateway.bus.wants_chunks
    assert harness.of(GenerationChunk) == []
    check_invariants(harness.events, chunks=False)


async def test_a_failing_listener_does_not_break_the_generation(harness: Harness) -> None:
    def broken(event: Event) -> None:
        raise RuntimeError("listener bug")

    harness.gateway.bus.subscribe(broken, chunks=True)
    gen, deltas = await harness.run(harness.request("stub-chat"))
    assert deltas and gen.result is not None
    check_invariants(harness.events)


async def test_a_tightly_capped_harmony_stream_still_emits_a_chunk(harness: Harness) -> None:
    await harness.run(harness.request("stub-harmony", max_tokens=1, stream=True))
    check_invariants(harness.events)


# --- ending early ---------------------------------------------------------------------


@pytest.mark.parametrize("model", ["stub-chat", "stub-harmony"])
async def test_a_consumer_that_stops_early_cancels_exactly_once(harness: Harness, model: str) -> None:
    req = harness.request(model, stream=True)
    gen = await harness.start(req)
    stream = gen.deltas()
    first = [await anext(stream), await anext(stream)]
    assert all(d.text for d in first)
    await stream.aclose()
    await stream.aclose()  # closing twice changes nothing
    await gen.aclose()
    cancelled = harness.of(GenerationCancelled, req.request_id)
    assert [(e.reason, e.model_id) for e in cancelled] == [("client_disconnect", model)]
    assert cancelled[0].completion_tokens >= 2
    assert harness.of(GenerationCompleted, req.request_id) == []
    assert gen.result is None
    assert gen.ctx.cancel.reason == "client_disconnect"
    check_invariants(harness.events)
    # the slot went back
    assert harness.gateway.service.live == 0
    assert all(g.running == 0 for g in harness.gateway.admission.gates)


async def test_a_consumer_task_cancelled_mid_stream_cancels_exactly_once(harness: Harness) -> None:
    req = harness.request("stub-chat", stream=True)
    gen = await harness.start(req)
    got_one = asyncio.Event()
    never = asyncio.Event()

    async def consume() -> None:
        async with contextlib.aclosing(gen.deltas()) as stream:
            async for _ in stream:
                got_one.set()
                await never.wait()

    task = asyncio.create_task(consume())
    await got_one.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert [e.reason for e in harness.of(GenerationCancelled, req.request_id)] == ["client_disconnect"]
    assert harness.of(GenerationCompleted, req.request_id) == []
    check_invariants(harness.events)
    assert harness.gateway.service.live == 0


async def test_an_abandoned_stream_is_still_cancelled_exactly_once(harness: Harness) -> None:
    """A consumer that drops its iterator without closing it: the event loop's async-generator
    finalizer closes it, and the generation still ends in one `GenerationCancelled`."""
    req = harness.request("stub-chat", stream=True)
    gen = await harness.start(req)
    stream = gen.deltas()
    await anext(stream)
    del stream
    gc.collect()
    for _ in range(20):
        if harness.of(GenerationCancelled, req.request_id):
            break
        await asyncio.sleep(0)
    assert [e.reason for e in harness.of(GenerationCancelled, req.request_id)] == ["client_disconnect"]
    assert harness.of(GenerationCompleted, req.request_id) == []
    check_invariants(harness.events)
    assert harness.gateway.service.live == 0


async def test_a_generation_past_its_deadline_is_cancelled_once_with_timeout(
    make_harness: Callable[..., Harness],
) -> None:
    harness = make_harness(with_server(STUB_MODELS, request_timeout=0.1))
    req = harness.request("stub-chat", stream=True)
    gen = await harness.start(req)
    seen = []
    async for delta in gen.deltas():
        seen.append(delta)
        if len(seen) == 1:
            await asyncio.sleep(0.15)  # a slow consumer outlives the deadline
    assert 1 <= len(seen) < 24
    assert [e.reason for e in harness.of(GenerationCancelled, req.request_id)] == ["timeout"]
    assert harness.of(GenerationCompleted, req.request_id) == []
    assert gen.result is None
    check_invariants(harness.events)


# --- the sampling snapshot -------------------------------------------------------------

GATEWAY_CAPPED = with_server(STUB_MODELS, max_output_tokens=16)


@pytest.mark.parametrize(
    ("toml", "model", "kwargs", "cap"),
    [
        (STUB_MODELS, "stub-chat", {"max_tokens": 10}, (10, 10, False, "request")),
        (STUB_MODELS, "stub-chat", {"max_tokens": 1000}, (64, 1000, True, "passport")),
        (STUB_MODELS, "stub-chat", {}, (64, None, True, "passport")),
        (STUB_MODELS, "stub-harmony", {"preset": "precise"}, (8, 8, False, "preset")),
        (STUB_MODELS, "stub-harmony", {"preset": "precise", "max_tokens": 12}, (12, 12, False, "request")),
        (GATEWAY_CAPPED, "stub-harmony", {"max_tokens": 100}, (16, 100, True, "gateway")),
        (GATEWAY_CAPPED, "stub-harmony", {}, (16, None, True, "gateway")),
    ],
)
async def test_started_and_completed_carry_the_same_sampling(
    make_harness: Callable[..., Harness],
    toml: str,
    model: str,
    kwargs: dict[str, object],
    cap: tuple[int, int | None, bool, str],
) -> None:
    harness = make_harness(toml)
    max_tokens = kwargs.pop("max_tokens", None)
    req = harness.request(model, max_tokens=max_tokens, stream=True, **kwargs)  # type: ignore[arg-type]
    await harness.run(req)
    [started] = harness.of(GenerationStarted, req.request_id)
    [done] = harness.of(GenerationCompleted, req.request_id)
    assert started.sampling == done.result_summary["sampling"]
    s = started.sampling
    assert (s["max_tokens"], s["requested_max_tokens"], s["cap_applied"], s["cap_source"]) == cap
    assert done.result_summary["usage"]["completion_tokens"] <= s["max_tokens"]


async def test_sampling_snapshot_reflects_the_layers(harness: Harness) -> None:
    req = harness.request("stub-harmony", preset="precise", seed=5)
    await harness.run(req)
    [started] = harness.of(GenerationStarted, req.request_id)
    s = started.sampling
    # stub-harmony's passport says temperature 0.5, effort low; `precise` says 0.0 and top_p 1.0
    assert (s["temperature"], s["top_p"], s["reasoning_effort"], s["seed"], s["preset"]) == (
        0.0,
        1.0,
        "low",
        5,
        "precise",
    )


async def test_a_cancelled_generation_still_started_with_its_sampling(harness: Harness) -> None:
    req = harness.request("stub-chat", max_tokens=20, stream=True)
    gen = await harness.start(req)
    stream = gen.deltas()
    assert (await anext(stream)).kind is DeltaKind.CONTENT
    await stream.aclose()
    [started] = harness.of(GenerationStarted, req.request_id)
    assert started.sampling["max_tokens"] == 20 and started.sampling["cap_source"] == "request"
