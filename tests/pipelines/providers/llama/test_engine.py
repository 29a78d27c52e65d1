"""The engine under LlamaProvider against the real SmolLM2-135M GGUF: sequences decoding
side by side, prompts read in chunks beside running streams, the prefix cache (at one slot
too), and the choices of one request. No mocks.

Step counts (`provider.stats`) are exact and say what the scheduler did. The reference for
every exactness check is `fresh`: one generation by a newly loaded one-slot provider.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import json
import math
import statistics
import time
from pathlib import Path

import jsonschema
import pytest

from pipelines.errors import CancelReason, ContextLengthExceeded, InvalidRequest
from pipelines.events import Event
from pipelines.providers.base import CancelToken, DecodeParams, Prompt
from pipelines.providers.llama import LlamaProvider
from pipelines.providers.llama.engine import PROMPT_CHUNK
from pipelines.types import Piece, Report, ResponseFormat
from tests.pipelines.providers.llama.conftest import Fresh
from tests.pipelines.providers.llama.helpers import (
    FRANCE,
    GREEDY,
    RAINBOW,
    RAMBLE,
    SEA,
    SEEDED,
    ask,
    collect,
    data,
    module_loop,
    prompt_events,
    read_choices,
    text_of,
    wait_for,
)
from tests.support.configs import GEMMA_PATH, GEMMA_SHA256, PERSON_SCHEMA, smollm2_config

# --- the prefix cache, at one slot and at four ------------------------------------------------

SYSTEM = (
    "You are a careful assistant for a museum of natural history. Answer in one or two short "
    "sentences, name the exhibit hall when it helps, and never invent opening hours or prices. "
    "The museum has halls for dinosaurs, minerals, oceans, birds, insects and early humans."
)


@pytest.mark.slow
@module_loop
async def test_a_repeated_system_prompt_is_read_from_the_cache(
    smol: LlamaProvider, events: list[Event], fresh: Fresh
) -> None:
    """A second request sharing the first one's system prompt evaluates only the rest of
    its prompt (slots = 1 included), and answers as a fresh read would."""
    tag = f"s{smol.max_choices}"
    first = ask("Where are the whales?", system=SYSTEM, request_id=f"{tag}-first")
    second = ask("Where are the crystals?", system=SYSTEM, request_id=f"{tag}-second")
    await collect(smol, first, GREEDY)
    before = dataclasses.replace(smol.stats)
    reused = await collect(smol, second, GREEDY)
    [one] = prompt_events(events, f"{tag}-first")
    [two] = prompt_events(events, f"{tag}-second")
    n_system = smol.count_tokens(ask("", system=SYSTEM))
    assert one.cached_tokens + one.evaluated_tokens == smol.count_tokens(first)
    assert two.cached_tokens >= n_system - 8  # the system turn and the template's head
    assert two.evaluated_tokens == smol.count_tokens(second) - two.cached_tokens
    # With more slots the second conversation takes another one (its prefix copied over),
    # leaving the first one's cells for its next turn.
    assert (two.slot == one.slot) if smol.max_choices == 1 else (two.slot != one.slot)
    # The engine's own counters say the same: only the rest was evaluated.
    assert smol.stats.cached_tokens - before.cached_tokens == two.cached_tokens
    assert smol.stats.prompt_tokens - before.prompt_tokens == two.evaluated_tokens
    # On SmolLM2 the cached prefix leaves the output unchanged (not so on Gemma: FACTS.md).
    assert data(reused) == await fresh(second, GREEDY)
    # The generation itself says how much came from the cache (usage.cached_tokens).
    third = ask("Where are the pearls?", system=SYSTEM, request_id=f"{tag}-third")
    reports = [r async for r in smol.generate(third, GREEDY, CancelToken()) if isinstance(r, Report)]
    [three] = prompt_events(events, f"{tag}-third")
    assert reports == [Report(cached_tokens=three.cached_tokens)] and three.cached_tokens >= n_system - 8


@pytest.mark.slow
@module_loop
async def test_conversations_after_one_system_prompt_keep_a_slot_each(
    batched: LlamaProvider, events: list[Event]
) -> None:
    """Two users after one system prompt, one after the other: the second does not trim
    the first one's slot but takes another with the system prompt copied over, so each
    asked again reads only its last two tokens, and answers as the first time."""
    system = SYSTEM.replace("natural history", "modern art")
    questions = ["Where are the sculptures?", "Where is the video room?"]
    before = dataclasses.replace(batched.stats)
    answers = []
    for round_ in ("once", "again"):
        for i, question in enumerate(questions):
            answers.append(
                data(await collect(batched, ask(question, system=system, request_id=f"conv{i}-{round_}"), GREEDY))
            )
    [a1], [b1], [a2], [b2] = (prompt_events(events, f"conv{i}-{r}") for r in ("once", "again") for i in (0, 1))
    assert b1.slot != a1.slot and batched.stats.copied_prefixes > before.copied_prefixes
    assert b1.cached_tokens >= batched.count_tokens(ask("", system=system)) - 8  # the copied system prompt
    assert (a2.slot, a2.evaluated_tokens) == (a1.slot, 2) and (b2.slot, b2.evaluated_tokens) == (b1.slot, 2)
    assert answers[2:] == answers[:2]


@pytest.mark.slow
@module_loop
async def test_a_conversation_whose_slot_was_taken_comes_back_from_host_memory(
    smol: LlamaProvider, events: list[Event]
) -> None:
    """More conversations than slots: each newcomer trims the least recently used slot,
    whose state goes to host memory first. Asked again, the first conversation gets its
    cells back instead of evaluating them, and answers exactly as the first time."""
    tag = f"host{smol.max_choices}"
    topics = ["volcanoes", "glaciers", "tides", "comets", "forests"][: smol.max_choices + 1]

    def question(topic: str, when: str) -> Prompt:
        text = f"In four short numbered points, explain how {topic} form and change over long periods of time, for a curious child who likes maps."
        return ask(text, request_id=f"{tag}-{topic}-{when}")

    before = dataclasses.replace(smol.stats)
    first = [data(await collect(smol, question(topic, "once"), GREEDY)) for topic in topics]
    again = data(await collect(smol, question(topics[0], "again"), GREEDY))
    [once], [read] = prompt_events(events, f"{tag}-{topics[0]}-once"), prompt_events(events, f"{tag}-{topics[0]}-again")
    assert smol.stats.saved_prompts - before.saved_prompts >= 1
    assert smol.stats.restored_prompts - before.restored_prompts == 1
    assert (read.evaluated_tokens, read.cached_tokens) == (2, smol.count_tokens(question(topics[0], "")) - 2)
    assert once.evaluated_tokens > read.evaluated_tokens and again == first[0]
    assert 0 < smol.stats.host_bytes <= 512 << 20


@pytest.mark.slow
@module_loop
async def test_a_long_prompt_again_from_the_cache_answers_as_a_fresh_read(
    batched: LlamaProvider, events: list[Event], fresh: Fresh
) -> None:
    """A prompt read in chunks beside a running stream, then asked again: all of it but its
    last two tokens comes from the cache. Re-reading only the last token (one-token decode)
    answered this prompt differently from a fresh read (prefix.LAST_READ)."""
    text = " ".join(f"entry{i}" for i in range(240)) + " What is the original sentence?"
    reference = await fresh(ask(text), GREEDY)
    cancel = CancelToken()

    async def beside() -> None:
        async for _ in batched.generate(RAMBLE, DecodeParams(max_tokens=2000, temperature=0.0), cancel):
            pass

    running = asyncio.create_task(beside())
    await wait_for(lambda: batched.stats.running == 1)
    first = data(await collect(batched, ask(text, request_id="long-once"), GREEDY))
    cancel.cancel(CancelReason.CLIENT_DISCONNECT)
    await running
    again = data(await collect(batched, ask(text, request_id="long-again"), GREEDY))
    assert first == reference and again == reference
    [read] = prompt_events(events, "long-again")
    assert read.evaluated_tokens == 2 and read.cached_tokens == batched.count_tokens(ask(text)) - 2


@pytest.mark.slow
@module_loop
@pytest.mark.parametrize("slots", [1, 2])
async def test_gemma(tmp_path: Path, slots: int) -> None:
    """Gemma 3 270M (a sliding-window base model). Greedy output repeats with a prompt
    sharing its prefix in between; side by side (its numerics depend on how a batch is
    shaped: FACTS.md) only completion and counts are compared."""
    config = smollm2_config(id="gemma", path=GEMMA_PATH, sha256=GEMMA_SHA256, context_length=1024, slots=slots)
    provider = LlamaProvider(config, cache_dir=tmp_path)
    await provider.load()
    try:
        prompt = Prompt(text="The capital of France is")
        params = DecodeParams(max_tokens=12, temperature=0.0)
        first = await collect(provider, prompt, params)
        await collect(provider, Prompt(text="The capital of France is a city"), params)  # shares a prefix
        assert first and data(await collect(provider, prompt, params)) == data(first)
        prompts = [prompt, Prompt(text="Once upon a time, in a land far away,")]
        runs = await asyncio.gather(*(collect(provider, p, params) for p in prompts))
        assert [len(run) for run in runs] == [12, 12]
        assert all(text_of(run).strip() for run in runs)
        assert provider.context_length == 1024
    finally:
        await provider.unload()


# --- sequences decode together, each with its own sampling -------------------------------------


@pytest.mark.slow
@module_loop
async def test_four_at_once_match_each_alone(batched: LlamaProvider) -> None:
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
async def test_a_step_decodes_its_sequences_in_one_pass(batched: LlamaProvider) -> None:
    """With a KV stream per slot, llama.cpp batches only increasing consecutive ids in one
    pass. The second round takes the same slots as the first (each prompt is cached in its
    own) in the reverse order of joining, so one of the two joins out of slot order: each
    step's batch must still go in slot order, one pass per step."""
    prompts = [ask(f"Write a long story about {topic}.") for topic in ("a lighthouse", "a train", "a robot", "a map")]
    params = DecodeParams(max_tokens=12, temperature=0.0)
    for order in (prompts, prompts[::-1]):
        before = dataclasses.replace(batched.stats)
        runs = await asyncio.gather(*(collect(batched, prompt, params) for prompt in order))
        assert [len(run) for run in runs] == [12] * 4
        steps, passes = batched.stats.steps - before.steps, batched.stats.decode_passes - before.decode_passes
        assert 11 <= passes <= steps  # out of slot order, each step took up to four passes


@pytest.mark.slow
@module_loop
async def test_seeds_differ_and_repeat_side_by_side(batched: LlamaProvider) -> None:
    other = DecodeParams(max_tokens=32, temperature=0.9, top_p=0.95, top_k=40, seed=99)
    a, b, a_again = await asyncio.gather(
        collect(batched, SEA, SEEDED), collect(batched, SEA, other), collect(batched, SEA, SEEDED)
    )
    assert data(a) == data(a_again)
    assert data(a) != data(b)


@pytest.mark.slow
@module_loop
async def test_grammar_and_logprobs_per_sequence(batched: LlamaProvider) -> None:
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


# --- slots taken and freed ---------------------------------------------------------------


@pytest.mark.slow
@module_loop
async def test_a_cancelled_sequence_frees_its_slot_within_one_step(batched: LlamaProvider) -> None:
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
            if isinstance(piece, Piece):  # not the prompt-cache report
                first_at.append(batched.stats.steps)
                out.append(piece)
        return out

    late = asyncio.create_task(newcomer())
    await wait_for(lambda: batched.stats.waiting == 1)  # every slot is taken: it waits
    waited_from = batched.stats.steps
    await wait_for(lambda: batched.stats.steps >= waited_from + 3)
    assert not first_at and batched.stats.waiting == 1  # the others decode on; it still waits
    cancels[0].cancel(CancelReason.CLIENT_DISCONNECT)
    cancelled_at = batched.stats.steps
    await runners[0]
    assert len(await late) == 4
    # The cancel is seen at the next step, which also reads the newcomer's prompt (a few
    # tokens past the slot's cached prefix) and samples its first token.
    assert first_at[0] - cancelled_at <= 2
    for cancel in cancels[1:]:
        cancel.cancel(CancelReason.CLIENT_DISCONNECT)
    await asyncio.gather(*runners)
    assert not batched.busy


@pytest.mark.slow
@module_loop
async def test_a_long_prompt_joins_without_stalling_running_streams(batched: LlamaProvider) -> None:
    arrivals: list[float] = []

    async def running() -> None:
        async for _ in batched.generate(RAMBLE, DecodeParams(max_tokens=600, temperature=0.0), CancelToken()):
            arrivals.append(time.perf_counter())

    stream = asyncio.create_task(running())
    await wait_for(lambda: len(arrivals) >= 25)
    # ~1,000 prompt tokens no slot (and no state kept in host memory) has cached.
    newcomer = ask(" ".join(f"record{i}" for i in range(270)) + " Which record comes last?")
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
    # running stream, and no step took more than PROMPT_CHUNK prompt tokens.
    assert len(during) >= n_prompt // PROMPT_CHUNK - 1, (len(during), n_prompt)
    # Timing, within the same run: the running stream's worst gap while the prompt joined is
    # one chunked step, a small part of the newcomer's prompt time (without chunking it
    # would be all of it).
    alone = [b - a for a, b in itertools.pairwise(arrivals[5:before])]
    gaps = [b - a for a, b in itertools.pairwise(arrivals[before - 1 :]) if b <= first]
    prompt_seconds = first - joined
    assert max(gaps) < prompt_seconds / 3, (max(gaps), prompt_seconds, statistics.median(alone), max(alone))


# --- several choices of one request (n > 1) -----------------------------------------------


@pytest.mark.slow
@module_loop
async def test_greedy_choices_read_the_prompt_once(batched: LlamaProvider, events: list[Event], fresh: Fresh) -> None:
    assert batched.max_choices == 4
    prompt = ask("Why do cats purr when they are happy?", request_id="greedy-choices")
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
    assert [data(choice) for choice in choices] == [await fresh(prompt, GREEDY)] * 3
    assert not batched.busy


@pytest.mark.slow
@module_loop
async def test_choice_edge_cases(batched: LlamaProvider) -> None:
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
async def test_seeded_choices_differ_and_each_repeats_alone(batched: LlamaProvider, fresh: Fresh) -> None:
    prompt = ask("Describe a walk in an autumn forest.")
    params = [DecodeParams(max_tokens=24, temperature=1.0, seed=seed) for seed in (41, 42, 43)]
    choices = await read_choices(batched.generate_choices(prompt, params, CancelToken()))
    assert len({tuple(data(choice)) for choice in choices}) >= 2
    for choice, p in zip(choices, params, strict=True):
        assert data(choice) == await fresh(prompt, p)


@pytest.mark.slow
@module_loop
async def test_logprobs_of_followers(batched: LlamaProvider) -> None:
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
async def test_a_closed_choice_leaves_at_once_and_a_cancel_ends_all(batched: LlamaProvider) -> None:
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
    cancel.cancel(CancelReason.CLIENT_DISCONNECT)
    assert [piece async for piece in streams[0]] == []
    assert [piece async for piece in streams[2]] == []
    for stream in streams:
        await stream.aclose()
    assert not batched.busy


@pytest.mark.slow
@module_loop
async def test_choices_closed_before_their_first_read_leave(batched: LlamaProvider) -> None:
    streams = batched.generate_choices(RAMBLE, [DecodeParams(max_tokens=400, temperature=0.0)] * 2, CancelToken())
    await wait_for(lambda: batched.stats.running == 2)
    for stream in streams:
        await stream.aclose()
    assert not batched.busy


@pytest.mark.slow
@module_loop
async def test_a_leader_gone_before_its_prompt_is_read_hands_it_on(
    batched: LlamaProvider, events: list[Event], fresh: Fresh
) -> None:
    got: list[Piece] = []

    async def running() -> None:
        async for piece in batched.generate(RAMBLE, DecodeParams(max_tokens=600, temperature=0.0), CancelToken()):
            got.append(piece)

    # A stream decoding meanwhile makes the prompt go in chunks, so it takes many steps.
    stream = asyncio.create_task(running())
    await wait_for(lambda: len(got) >= 2)
    prompt = ask(" ".join(f"note{i}" for i in range(120)) + " Which note comes first?", request_id="promoted")
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
    assert data(choices[0]) == await fresh(prompt, params)
    assert not batched.busy


@pytest.mark.slow
@module_loop
async def test_a_group_waits_for_enough_slots_first_come_first_served(batched: LlamaProvider) -> None:
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
    cancels[0].cancel(CancelReason.CLIENT_DISCONNECT)
    choices = await group
    assert [len(choice) for choice in choices] == [4, 4, 4]
    assert len(await late) == 4
    cancels[1].cancel(CancelReason.CLIENT_DISCONNECT)
    await asyncio.gather(*runners)
    assert not batched.busy
