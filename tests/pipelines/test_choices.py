"""Several choices of one request (`n` > 1) on an in-process gateway of stub models:
one started generation, one terminal event, each choice its own seed and its own stream."""

from __future__ import annotations

import asyncio
from collections import defaultdict

import pytest

from pipelines.events import GenerationCancelled, GenerationChunk, GenerationCompleted, GenerationStarted
from pipelines.types import DeltaKind
from tests.pipelines.test_events import check_invariants
from tests.support.harness import Harness


async def test_each_choice_is_the_answer_to_its_own_seed(harness: Harness) -> None:
    gen = await harness.start(harness.request("stub-chat", seed=7, n=3))
    result = await gen.collect()
    singles = [await (await harness.start(harness.request("stub-chat", seed=7 + i))).collect() for i in range(3)]
    assert [c.index for c in result.all_choices] == [0, 1, 2]
    assert [c.content for c in result.all_choices] == [s.content for s in singles]
    assert len({c.content for c in result.all_choices}) == 3
    assert result.content == singles[0].content  # the top level is choice 0
    assert result.usage.completion_tokens == sum(s.usage.completion_tokens for s in singles)
    assert result.usage.prompt_tokens == singles[0].usage.prompt_tokens  # one prompt
    check_invariants(harness.events)


async def test_streamed_choices_interleave_and_reassemble(harness: Harness) -> None:
    gen, deltas = await harness.run(harness.request("stub-harmony", seed=1, n=3, stream=True))
    assert gen.result is not None
    text: dict[tuple[int, DeltaKind], list[str]] = defaultdict(list)
    for d in deltas:
        text[d.choice, d.kind].append(d.text)
    for choice in gen.result.all_choices:
        assert "".join(text[choice.index, DeltaKind.CONTENT]) == choice.content
        assert "".join(text[choice.index, DeltaKind.REASONING]) == choice.reasoning
        # the chunk events say which choice they belong to, too
        chunks = [e for e in harness.of(GenerationChunk) if e.choice == choice.index and e.channel == "content"]
        assert "".join(e.text for e in chunks) == choice.content
    started, completed = harness.of(GenerationStarted), harness.of(GenerationCompleted)
    assert len(started) == len(completed) == 1
    summary = completed[0].result_summary
    assert summary["choices"] == 3
    assert summary["usage"]["completion_tokens"] == sum(c.usage.completion_tokens for c in gen.result.all_choices)
    check_invariants(harness.events)


async def test_a_choice_that_stops_early_leaves_the_others_running(harness: Harness) -> None:
    free = await (await harness.start(harness.request("stub-chat", seed=3, max_tokens=24))).collect()
    word = free.content.split()[2]
    gen = await harness.start(harness.request("stub-chat", seed=3, n=2, max_tokens=24, stop=(word,)))
    result = await gen.collect()
    first, second = result.all_choices
    assert first.finish_reason == "stop" and word not in first.content
    assert second.content and second.index == 1


async def test_leaving_mid_stream_cancels_every_choice_once(harness: Harness) -> None:
    gen = await harness.start(harness.request("stub-chat", n=4, stream=True, max_tokens=64))
    stream = gen.deltas()
    await anext(stream)
    await stream.aclose()
    cancelled = harness.of(GenerationCancelled)
    assert [c.reason for c in cancelled] == ["client_disconnect"]
    assert harness.of(GenerationCompleted) == []
    assert harness.gateway.service.live == 0
    assert all(g.running == 0 and g.waiting == 0 for g in harness.gateway.admission.gates)
    check_invariants(harness.events, chunks=False)


async def test_many_requests_with_choices_at_once(harness: Harness) -> None:
    reqs = [harness.request("stub-chat", seed=i, n=1 + i % 3, stream=bool(i % 2)) for i in range(12)]
    gens = await asyncio.gather(*(harness.start(r) for r in reqs))
    results = await asyncio.gather(*(g.collect() for g in gens))
    assert [len(r.all_choices) for r in results] == [r.n for r in reqs]
    assert all(g.running == 0 and g.waiting == 0 for g in harness.gateway.admission.gates)
    check_invariants(harness.events)


@pytest.mark.parametrize("n", [1, 2])
async def test_one_choice_has_no_choices_list(harness: Harness, n: int) -> None:
    result = await (await harness.start(harness.request("stub-chat", n=n))).collect()
    assert len(result.all_choices) == n
    assert (result.choices == ()) is (n == 1)


async def test_each_streamed_choice_says_when_it_ends(harness: Harness) -> None:
    free = await (await harness.start(harness.request("stub-chat", seed=3, max_tokens=48))).collect()
    word = free.content.split()[2]
    gen, deltas = await harness.run(harness.request("stub-chat", seed=3, n=2, max_tokens=48, stop=(word,), stream=True))
    assert gen.result is not None
    finishes = [(i, d.choice, d.finish) for i, d in enumerate(deltas) if d.kind is DeltaKind.FINISH]
    assert sorted((choice, finish) for _, choice, finish in finishes) == [
        (c.index, c.finish_reason) for c in gen.result.all_choices
    ]
    # nothing of a choice comes after its end
    for at, choice, _ in finishes:
        assert all(d.choice != choice for d in deltas[at + 1 :])
    # the choice cut short by its stop sequence ended before the other one did
    ends = {choice: at for at, choice, _ in finishes}
    assert gen.result.all_choices[0].finish_reason == "stop" and ends[0] < ends[1]
