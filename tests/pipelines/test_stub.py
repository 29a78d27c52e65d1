"""The deterministic stub (ADR-0015): output from the request alone, never empty, the
cap honoured, Harmony-shaped for Harmony models, `stop_reason=stub` in events while the
wire keeps OpenAI's `finish_reason`."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from pipelines.config import StubModelConfig
from pipelines.errors import CancelReason
from pipelines.events import GenerationCompleted
from pipelines.providers.base import CancelToken, DecodeParams, Prompt
from pipelines.providers.stub import StubProvider
from pipelines.types import DeltaKind, Message, StopReason
from tests.support.harness import Harness

CHAT = StubModelConfig(id="c", format="chat")
HARMONY = StubModelConfig(id="h", format="harmony", role="primary")
HELLO = Prompt(messages=(Message(role="user", content="Hello"),))


async def pieces(
    config: StubModelConfig, prompt: Prompt = HELLO, *, max_tokens: int = 1000, seed: int | None = None
) -> list[bytes]:
    provider = StubProvider(config)
    await provider.load()
    return [
        p.data async for p in provider.generate(prompt, DecodeParams(max_tokens=max_tokens, seed=seed), CancelToken())
    ]


# --- the provider -----------------------------------------------------------------


async def test_the_same_request_gives_the_same_bytes() -> None:
    assert await pieces(CHAT) == await pieces(CHAT)
    assert await pieces(HARMONY) == await pieces(HARMONY)
    # a fresh provider for the same model agrees too: nothing depends on instance state
    assert await pieces(StubModelConfig(id="c", format="chat")) == await pieces(CHAT)


async def test_a_different_request_gives_different_bytes() -> None:
    other = Prompt(messages=(Message(role="user", content="Goodbye"),))
    assert await pieces(CHAT, other) != await pieces(CHAT)
    # the role is part of the request too
    as_system = Prompt(messages=(Message(role="system", content="Hello"),))
    assert await pieces(CHAT, as_system) != await pieces(CHAT)
    # and so is Harmony's rendered text
    assert await pieces(HARMONY, Prompt(text="a")) != await pieces(HARMONY, Prompt(text="b"))


async def test_the_seed_changes_the_output_and_a_repeated_seed_repeats_it() -> None:
    unseeded = await pieces(CHAT)
    one, two = await pieces(CHAT, seed=1), await pieces(CHAT, seed=2)
    assert len({b"".join(unseeded), b"".join(one), b"".join(two)}) == 3
    assert await pieces(CHAT, seed=1) == one


async def test_output_is_space_delimited_words_of_the_configured_count() -> None:
    config = StubModelConfig(id="c", stub_words=7)
    out = await pieces(config)
    assert len(out) == 7
    assert all(p.endswith(b" ") for p in out[:-1])
    assert not out[-1].endswith(b" ")
    assert all(p.strip() and b" " not in p.strip() for p in out)


@pytest.mark.parametrize("words", [1, 2, 24])
@pytest.mark.parametrize("max_tokens", [1, 3, 1000])
async def test_a_chat_stub_is_never_empty(words: int, max_tokens: int) -> None:
    config = StubModelConfig(id="c", stub_words=words)
    out = await pieces(config, max_tokens=max_tokens)
    assert b"".join(out).strip()
    assert len(out) == min(words, max_tokens)


async def test_the_cap_is_honoured_piece_by_piece() -> None:
    for cap in (1, 2, 5, 23, 24, 25):
        assert len(await pieces(CHAT, max_tokens=cap)) == min(cap, CHAT.stub_words)
    # a capped answer is a prefix of the uncapped one
    full = await pieces(CHAT)
    assert await pieces(CHAT, max_tokens=5) == full[:5]


async def test_a_cancelled_stub_stops() -> None:
    provider = StubProvider(CHAT)
    cancel = CancelToken()
    out = []
    async for piece in provider.generate(HELLO, DecodeParams(max_tokens=1000), cancel):
        out.append(piece)
        if len(out) == 3:
            cancel.cancel(CancelReason.CLIENT_DISCONNECT)
    assert len(out) == 3


async def test_a_harmony_stub_speaks_harmony() -> None:
    provider = StubProvider(HARMONY)
    out = [p async for p in provider.generate(Prompt(text="x"), DecodeParams(max_tokens=1000), CancelToken())]
    special = [p.data for p in out if p.special]
    assert special == [
        b"<|channel|>",
        b"<|message|>",
        b"<|end|>",
        b"<|start|>",
        b"<|channel|>",
        b"<|message|>",
        b"<|return|>",
    ]
    text = b"".join(p.data for p in out)
    assert text.startswith(b"<|channel|>analysis<|message|>")
    assert b"<|end|><|start|>assistant<|channel|>final<|message|>" in text
    assert text.endswith(b"<|return|>")


async def test_a_harmony_stub_answers_a_call_its_prompt_opened_with_a_call() -> None:
    opened = Prompt(text="<|start|>assistant<|channel|>commentary to=functions.f <|constrain|>json<|message|>")
    out = [p async for p in StubProvider(HARMONY).generate(opened, DecodeParams(max_tokens=8), CancelToken())]
    assert [(p.data, p.special) for p in out] == [(b"{}", False), (b"<|call|>", True)]


# --- through the pipelines ------------------------------------------------------------


async def test_harmony_stub_gives_reasoning_then_content(harness: Harness) -> None:
    gen, deltas = await harness.run(harness.request("stub-harmony"))
    kinds = [d.kind for d in deltas]
    assert DeltaKind.REASONING in kinds and DeltaKind.CONTENT in kinds
    first_content = kinds.index(DeltaKind.CONTENT)
    assert all(k is DeltaKind.REASONING for k in kinds[:first_content])
    assert all(k is DeltaKind.CONTENT for k in kinds[first_content:])
    result = gen.result
    assert result is not None
    assert result.content.strip() and result.reasoning.strip()
    assert result.content != result.reasoning
    for text in (result.content, result.reasoning):
        # Harmony's framing (special tokens, channel names) never reaches the text
        assert "<|" not in text
        assert not text.startswith(("analysis", "assistant", "final"))
    assert result.usage.reasoning_tokens > 0
    assert result.finish_reason == "stop"
    assert result.stop_reason is StopReason.STUB


async def test_chat_stub_gives_content_only(harness: Harness) -> None:
    gen, deltas = await harness.run(harness.request("stub-chat"))
    assert deltas and all(d.kind is DeltaKind.CONTENT for d in deltas)
    assert gen.result is not None and gen.result.reasoning == ""
    assert len(gen.result.content.split()) == 24


@pytest.mark.parametrize("model", ["stub-chat", "stub-harmony"])
async def test_same_request_same_answer_through_the_gateway(harness: Harness, model: str) -> None:
    a, _ = await harness.run(harness.request(model, "What is up?"))
    b, _ = await harness.run(harness.request(model, "What is up?"))
    c, _ = await harness.run(harness.request(model, "What is down?"))
    d, _ = await harness.run(harness.request(model, "What is up?", seed=3))
    assert a.result is not None and b.result is not None and c.result is not None and d.result is not None
    assert (a.result.content, a.result.reasoning) == (b.result.content, b.result.reasoning)
    assert a.result.content != c.result.content
    assert a.result.content != d.result.content


@pytest.mark.parametrize("model", ["stub-chat", "stub-harmony"])
async def test_the_cap_gives_length_on_the_wire_and_stub_in_the_event(harness: Harness, model: str) -> None:
    req = harness.request(model, max_tokens=5)
    gen, _ = await harness.run(req)
    result = gen.result
    assert result is not None
    assert result.usage.completion_tokens == 5
    assert result.finish_reason == "length"
    assert result.stop_reason is StopReason.STUB
    [done] = harness.of(GenerationCompleted, req.request_id)
    assert done.stop_reason == "stub"
    assert done.stub is True
    assert done.result_summary["finish_reason"] == "length"


async def test_an_uncapped_stub_ends_with_stop_on_the_wire_and_stub_in_the_event(harness: Harness) -> None:
    req = harness.request("stub-chat")
    gen, _ = await harness.run(req)
    assert gen.result is not None and gen.result.finish_reason == "stop"
    [done] = harness.of(GenerationCompleted, req.request_id)
    assert done.stop_reason == "stub"


async def test_a_stop_sequence_on_a_stub_ends_with_stop(harness: Harness) -> None:
    full, _ = await harness.run(harness.request("stub-chat", "stops"))
    assert full.result is not None
    third = full.result.content.split()[2]
    req = harness.request("stub-chat", "stops", stop=(f" {third}",))
    gen, _ = await harness.run(req)
    assert gen.result is not None
    assert gen.result.content == " ".join(full.result.content.split()[:2])
    assert gen.result.finish_reason == "stop"
    assert gen.result.stop_reason is StopReason.STUB


@pytest.mark.parametrize("max_tokens", [1, 2, 3])
async def test_a_harmony_stub_is_never_empty_even_under_a_tiny_cap(
    make_harness: Callable[..., Harness], max_tokens: int
) -> None:
    harness = make_harness()
    gen, deltas = await harness.run(harness.request("stub-harmony", max_tokens=max_tokens))
    assert gen.result is not None
    assert (gen.result.content + gen.result.reasoning).strip()
    assert deltas
