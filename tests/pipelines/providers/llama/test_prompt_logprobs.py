"""Raw prompts, echo and prompt logprobs (`/v1/completions`) on the real SmolLM2 engine:
every prompt position's logprob against llama-cpp-python's own `Llama` with all logits
kept, whatever the prefix cache or the prompt's chunking."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator

import pytest
import pytest_asyncio

from pipelines.errors import InvalidRequest
from pipelines.events import Event, EventBus, PromptProcessed
from pipelines.providers.base import CancelToken, DecodeParams, Prompt
from pipelines.providers.llama import LlamaProvider
from pipelines.types import Output, Piece, PromptToken, Report
from tests.pipelines.providers.llama.helpers import RAMBLE, collect, module_loop, wait_for
from tests.support.configs import smollm2_config
from tests.support.reference_logprobs import plain_prompt_logprobs

pytestmark = pytest.mark.slow

TEXT = "The capital of France is Paris, and the capital of Italy is Rome. The capital of Spain is"
ECHO = DecodeParams(max_tokens=3, temperature=0.0, logprobs=True, top_logprobs=2, echo=True)


def raw(text: str) -> Prompt:
    return Prompt(text=text, plain=((0, len(text)),), raw=True)


async def outputs(provider: LlamaProvider, prompt: Prompt, params: DecodeParams) -> list[Output]:
    return [item async for item in provider.generate(prompt, params, CancelToken())]


def echoed(items: list[Output]) -> tuple[PromptToken, ...]:
    [report] = [item for item in items if isinstance(item, Report) and item.prompt]
    return report.prompt


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def reference(smol: LlamaProvider) -> tuple[list[int], list[float]]:
    tokens = smol.prompts.tokens(raw(TEXT))
    assert smol.model_path is not None
    [values] = await asyncio.to_thread(plain_prompt_logprobs, smol.model_path, [tokens])
    return tokens, values


@module_loop
async def test_echo_reports_each_prompt_token_with_the_direct_logprob(
    smol: LlamaProvider, reference: tuple[list[int], list[float]]
) -> None:
    tokens, values = reference
    items = await outputs(smol, raw(TEXT), ECHO)
    prompt = echoed(items)
    # the report comes before the first token: a stream can echo the prompt first
    first_piece = next(i for i, item in enumerate(items) if isinstance(item, Piece))
    assert items.index(next(item for item in items if isinstance(item, Report) and item.prompt)) < first_piece
    assert len(prompt) == len(tokens)
    assert b"".join(t.data for t in prompt).decode() == TEXT
    assert prompt[0].logprob is None
    got = [t.logprob.logprob for t in prompt[1:] if t.logprob is not None]
    assert got == pytest.approx(values, abs=1e-3)
    for t in prompt[1:]:
        assert t.logprob is not None and len(t.logprob.top_logprobs) == 2
        assert t.logprob.top_logprobs[0].logprob >= t.logprob.logprob - 1e-9
    assert len([item for item in items if isinstance(item, Piece)]) == 3


@module_loop
async def test_a_cached_prefix_does_not_hide_prompt_positions(
    smol: LlamaProvider, events: list[Event], reference: tuple[list[int], list[float]]
) -> None:
    _, values = reference
    await collect(smol, raw(TEXT), DecodeParams(max_tokens=2, temperature=0.0))  # leaves the prompt cached
    before = len(events)
    prompt = echoed(await outputs(smol, raw(TEXT), ECHO))
    assert [t.logprob.logprob for t in prompt[1:] if t.logprob is not None] == pytest.approx(values, abs=1e-3)
    read = [e for e in events[before:] if isinstance(e, PromptProcessed)]
    assert read and read[0].cached_tokens == 0  # every position evaluated again, for its logits
    # echo without logprobs needs no logits: the cache serves it
    before = len(events)
    plain = echoed(await outputs(smol, raw(TEXT), DecodeParams(max_tokens=1, temperature=0.0, echo=True)))
    assert all(t.logprob is None for t in plain) and len(plain) == len(prompt)
    read = [e for e in events[before:] if isinstance(e, PromptProcessed)]
    assert read and read[0].cached_tokens > 0


@module_loop
async def test_max_tokens_zero_reads_the_prompt_and_stops(
    smol: LlamaProvider, reference: tuple[list[int], list[float]]
) -> None:
    _, values = reference
    items = await outputs(smol, raw(TEXT), DecodeParams(max_tokens=0, logprobs=True, echo=True))
    assert not [item for item in items if isinstance(item, Piece)]
    assert [t.logprob.logprob for t in echoed(items)[1:] if t.logprob is not None] == pytest.approx(values, abs=1e-3)


@module_loop
async def test_token_ids_are_read_as_given(smol: LlamaProvider, reference: tuple[list[int], list[float]]) -> None:
    tokens, values = reference
    prompt = echoed(await outputs(smol, Prompt(tokens=tuple(tokens), raw=True), ECHO))
    assert [t.logprob.logprob for t in prompt[1:] if t.logprob is not None] == pytest.approx(values, abs=1e-3)
    with pytest.raises(InvalidRequest) as caught:
        smol.count_tokens(Prompt(tokens=(1, 10**9), raw=True))
    assert caught.value.param == "prompt[1]"


def test_special_token_text_in_a_raw_prompt_stays_text(smol: LlamaProvider) -> None:
    im_end = smol.prompts.tok.tokenize(b"<|im_end|>", add_bos=False, special=True)
    assert len(im_end) == 1
    tokens = smol.prompts.tokens(raw("a<|im_end|>b"))
    assert im_end[0] not in tokens and len(tokens) > 3


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def chunked(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[tuple[LlamaProvider, list[Event]]]:
    """Two slots, prompts read eight tokens a step while another sequence decodes."""
    events: list[Event] = []
    bus = EventBus()
    bus.subscribe(events.append)
    provider = LlamaProvider(
        smollm2_config(slots=2), cache_dir=tmp_path_factory.mktemp("chunked"), bus=bus, prompt_chunk=8
    )
    await provider.load()
    yield provider, events
    await provider.unload()


@module_loop
async def test_prompt_logprobs_read_in_chunks_beside_a_decoding_stream(
    chunked: tuple[LlamaProvider, list[Event]], reference: tuple[list[int], list[float]]
) -> None:
    provider, _ = chunked
    _, values = reference
    long = provider.generate(RAMBLE, DecodeParams(max_tokens=200, temperature=0.0), CancelToken())
    try:
        await anext(long)  # decoding now: the echo's prompt is read a chunk per step
        steps = provider.stats.steps
        prompt = echoed(await outputs(provider, raw(TEXT), ECHO))
        assert provider.stats.steps - steps > 2
    finally:
        await long.aclose()
    assert [t.logprob.logprob for t in prompt[1:] if t.logprob is not None] == pytest.approx(values, abs=1e-3)


@module_loop
async def test_choices_with_nothing_to_generate_end(chunked: tuple[LlamaProvider, list[Event]]) -> None:
    provider, _ = chunked
    params = DecodeParams(max_tokens=0, logprobs=True, echo=True)
    streams = provider.generate_choices(raw(TEXT), [params, params], CancelToken())

    async def read(stream: AsyncGenerator[Output, None]) -> list[Output]:
        try:
            return [item async for item in stream]
        finally:
            await stream.aclose()

    # (a follower waiting for a leader that never samples would hang here)
    first, second = await asyncio.gather(*(read(s) for s in streams))
    assert echoed(first) and not [i for i in second if isinstance(i, Piece)]
    await wait_for(lambda: not provider.busy)
