"""Continuous batching through the served gateway: SmolLM2 with `slots = 4` decodes four
OpenAI SDK streams at once, each exactly as it would alone, and reports its prompt-prefix
cache in events and metrics."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterator

import httpx
import openai
import pytest

from tests.support.configs import smollm2
from tests.support.logs import events
from tests.support.served import ServedGateway, serve

pytestmark = pytest.mark.slow

MODEL = "smol-batched"
SYSTEM = (
    "You are a guide at a maritime museum. Answer briefly and mention the gallery where the "
    "visitor can see what they ask about: ships, maps, navigation instruments or the harbour model."
)
QUESTIONS = ("Where are the old maps?", "Can I see a sextant?", "Is there a model of the harbour?", "Any ships?")


@pytest.fixture(scope="module")
def batched_gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedGateway]:
    config = "[server]\nrequest_timeout = 120\n\n" + smollm2(MODEL, slots=4, max_output_tokens=256)
    with serve(config, tmp_path_factory.mktemp("batched-gw")) as gw:
        yield gw


def client(gw: ServedGateway) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=gw.api_url, api_key="unused", max_retries=0)


async def stream(sdk: openai.AsyncOpenAI, question: str, **extra: object) -> tuple[str, int, int]:
    """(text, pieces, usage.completion_tokens) of one streamed answer."""
    chunks = await sdk.chat.completions.create(
        model=MODEL,
        messages=[{"role": "system", "content": SYSTEM}, {"role": "user", "content": question}],
        stream=True,
        stream_options={"include_usage": True},
        **extra,  # type: ignore[arg-type]
    )
    text: list[str] = []
    usage = 0
    async for chunk in chunks:
        if chunk.choices and chunk.choices[0].delta.content:
            text.append(chunk.choices[0].delta.content)
        if chunk.usage is not None:
            usage = chunk.usage.completion_tokens
    return "".join(text), len(text), usage


def metric(gw: ServedGateway, name: str) -> float:
    body = httpx.get(f"{gw.base_url}/metrics", timeout=10).text
    match = re.search(rf'^{name}{{model="{MODEL}",stub="false"}} (\S+)$', body, re.MULTILINE)
    assert match, f"{name} for {MODEL} not exported"
    return float(match.group(1))


async def test_four_streams_at_once_each_as_alone(batched_gw: ServedGateway) -> None:
    sdk = client(batched_gw)
    greedy = {"max_tokens": 24, "temperature": 0}
    seeded = {"max_tokens": 24, "temperature": 0.9, "top_p": 0.95, "seed": 7}
    asks = [(QUESTIONS[0], greedy), (QUESTIONS[1], seeded), (QUESTIONS[2], greedy), (QUESTIONS[3], seeded)]
    alone = [await stream(sdk, q, **kw) for q, kw in asks]
    together = await asyncio.gather(*(stream(sdk, q, **kw) for q, kw in asks))
    assert together == alone
    for text, pieces, usage in together:
        assert text and 0 < usage <= 24
        assert pieces == usage  # one streamed piece per decoded token (ASCII answers)
    await sdk.close()


def test_prefix_cache_hits_show_in_events_and_metrics(batched_gw: ServedGateway) -> None:
    sdk = openai.OpenAI(base_url=batched_gw.api_url, api_key="unused", max_retries=0)
    hits_before = metric(batched_gw, "mia_prompt_cache_hit_tokens_total")
    prompt_before = metric(batched_gw, "mia_prompt_tokens_total")
    answers = []
    for question in ("Where is the lighthouse lens?", "Where is the lighthouse lens?"):
        out = sdk.chat.completions.create(
            model=MODEL,
            messages=[{"role": "system", "content": SYSTEM}, {"role": "user", "content": question}],
            max_tokens=16,
            temperature=0,
        )
        answers.append((out.id, out.choices[0].message.content, out.usage))
    # The same question again: all of its prompt but the last two tokens comes from the cache,
    # and the answer is the same.
    assert answers[0][1] == answers[1][1]
    usage = answers[1][2]
    assert usage is not None
    processed = events(batched_gw.log(), "PromptProcessed")
    last = processed[-1]
    assert last["prompt_tokens"] == usage.prompt_tokens
    assert last["cached_tokens"] == usage.prompt_tokens - 2 and last["evaluated_tokens"] == 2
    assert metric(batched_gw, "mia_prompt_cache_hit_tokens_total") - hits_before >= usage.prompt_tokens - 2
    assert metric(batched_gw, "mia_prompt_tokens_total") - prompt_before == 2 * usage.prompt_tokens


def test_disconnected_streams_free_their_slots(batched_gw: ServedGateway) -> None:
    body = {
        "model": MODEL,
        "max_tokens": 256,
        "temperature": 0,
        "stream": True,
        "messages": [{"role": "user", "content": "Write a very long story about a dragon and a knight."}],
    }
    before = len(events(batched_gw.log(), "GenerationCancelled"))
    with httpx.Client(base_url=batched_gw.api_url, timeout=60) as http:
        # Twice as many as `slots`, one after the other: each must hand its slot back.
        for _ in range(8):
            with http.stream("POST", "/chat/completions", json=body) as response:
                lines = response.iter_lines()  # not a for-break: closing this iterator closes the connection
                while '"content":"' not in next(lines):
                    pass
    deadline = time.monotonic() + 10
    while len(cancelled := events(batched_gw.log(), "GenerationCancelled")[before:]) < 8:
        assert time.monotonic() < deadline, cancelled
        time.sleep(0.02)
    assert {e["reason"] for e in cancelled} == {"client_disconnect"}
    out = openai.OpenAI(base_url=batched_gw.api_url, api_key="unused", max_retries=0).chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Hi"}], max_tokens=4, temperature=0, timeout=30
    )
    assert out.choices[0].message.content


def museum(question: str) -> list[openai.types.chat.ChatCompletionMessageParam]:
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": question}]


def test_several_choices_share_one_prompt_evaluation(batched_gw: ServedGateway) -> None:
    sdk = openai.OpenAI(base_url=batched_gw.api_url, api_key="unused", max_retries=0)
    question = "Where can I see the ship in a bottle?"
    alone = sdk.chat.completions.create(model=MODEL, messages=museum(question), max_tokens=20, temperature=0)
    before = len(events(batched_gw.log(), "PromptProcessed"))
    processed_before = metric(batched_gw, "mia_prompt_processed_tokens_total")
    out = sdk.chat.completions.create(model=MODEL, messages=museum(question), max_tokens=20, temperature=0, n=3)
    assert [c.index for c in out.choices] == [0, 1, 2]
    assert [c.message.content for c in out.choices] == [alone.choices[0].message.content] * 3
    assert out.usage is not None and alone.usage is not None
    assert out.usage.completion_tokens == 3 * alone.usage.completion_tokens
    assert out.usage.prompt_tokens == alone.usage.prompt_tokens
    # the prompt was read once, for all three choices: one PromptProcessed, counted once
    [processed] = events(batched_gw.log(), "PromptProcessed")[before:]
    assert processed["prompt_tokens"] == out.usage.prompt_tokens and processed["evaluated_tokens"] >= 1
    assert metric(batched_gw, "mia_prompt_processed_tokens_total") - processed_before == out.usage.prompt_tokens


def test_each_choice_samples_with_its_own_seed(batched_gw: ServedGateway) -> None:
    sdk = openai.OpenAI(base_url=batched_gw.api_url, api_key="unused", max_retries=0)
    sampling = {"max_tokens": 16, "temperature": 1.0, "seed": 40}
    out = sdk.chat.completions.create(model=MODEL, messages=museum("Any ships?"), n=3, **sampling)  # type: ignore[call-overload]
    texts = [c.message.content for c in out.choices]
    for i, text in enumerate(texts):
        one = sdk.chat.completions.create(
            model=MODEL,
            messages=museum("Any ships?"),
            **{**sampling, "seed": 40 + i},  # type: ignore[call-overload]
        )
        assert one.choices[0].message.content == text
    assert len(set(texts)) > 1


async def test_several_choices_stream_side_by_side(batched_gw: ServedGateway) -> None:
    sdk = client(batched_gw)
    chunks = await sdk.chat.completions.create(
        model=MODEL, messages=museum("Can I see a sextant?"), max_tokens=12, temperature=0, n=2, stream=True
    )
    text: dict[int, str] = {0: "", 1: ""}
    finish: dict[int, str] = {}
    async for chunk in chunks:
        for c in chunk.choices:
            text[c.index] += c.delta.content or ""
            if c.finish_reason:
                finish[c.index] = c.finish_reason
    assert text[0] and text[0] == text[1]
    assert set(finish) == {0, 1}
    await sdk.close()


def test_more_choices_than_slots_is_a_clear_error(batched_gw: ServedGateway) -> None:
    sdk = openai.OpenAI(base_url=batched_gw.api_url, api_key="unused", max_retries=0)
    with pytest.raises(openai.BadRequestError) as info:
        sdk.chat.completions.create(model=MODEL, messages=museum("Any ships?"), max_tokens=4, n=5)
    body = info.value.body
    assert isinstance(body, dict) and body["param"] == "n" and "slots" in body["message"]
