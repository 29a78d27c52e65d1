"""`LlamaEmbeddingProvider`: a local GGUF embedding model through llama.cpp's embedding mode.

An embedding model serves nothing else, so it gets one llama.cpp context with embeddings
on and the pooling its GGUF names (mean for sentence-transformers' BERTs), and no
generation engine. A request's inputs are tokenized and read on a worker thread, in
batches of up to `_SEQUENCES` sequences and `n_batch` tokens, one request at a time per
context (admission holds the others, as for any model: `slots`). Each pooled vector is
scaled to unit length, as OpenAI's and sentence-transformers' (its `Normalize` module) are.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipelines.embedding import EmbeddingInput, EmbeddingRequest, Embeddings, normalized
from pipelines.errors import ContextLengthExceeded, GenerationFailed, InvalidRequest, ModelUnavailable, UnsupportedModel
from pipelines.model_files import missing_model_file
from pipelines.providers.base import CancelToken, DecodeParams, LoadFailure, Prompt, Provider
from pipelines.providers.llama.placement import placement
from pipelines.providers.llama.runtime import QuietLog, new_context, runtime
from pipelines.providers.llama.weights import open_model
from pipelines.types import Output

if TYPE_CHECKING:
    from llama_cpp._internals import LlamaModel

    from pipelines.config import LlamaModelConfig

__all__ = ["Embedder", "LlamaEmbeddingProvider"]

_SEQUENCES = 32
"""Inputs read in one decode call at most (short inputs share a batch)."""


class Embedder:
    """An embedding context of `model`. `embed` blocks (call it on a worker thread); calls
    are taken one at a time."""

    def __init__(self, model: LlamaModel, *, n_ctx_seq: int, n_batch: int, threads: int) -> None:
        llama_cpp = runtime()
        self.model = model
        # A position table longer than the model was trained on means nothing: the passport's
        # context length is cut to the GGUF's.
        self.n_ctx_seq = min(n_ctx_seq, int(llama_cpp.llama_model_n_ctx_train(model.model)))
        self._n_batch = max(n_batch, self.n_ctx_seq)
        # One cell pool for all sequences (`unified`): a batch's sequences together fill it.
        self._ctx = new_context(
            model.model,
            n_ctx=self._n_batch,
            n_batch=self._n_batch,
            n_seq=_SEQUENCES,
            threads=threads,
            unified=True,
            embeddings=True,
        )
        try:
            if llama_cpp.llama_pooling_type(self._ctx) == llama_cpp.LLAMA_POOLING_TYPE_NONE:
                raise LoadFailure("load_error", "the GGUF names no pooling: it gives no vector per input")
        except BaseException:
            llama_cpp.llama_free(self._ctx)
            raise
        self.length = int(llama_cpp.llama_model_n_embd(model.model))
        self._vocab = llama_cpp.llama_model_get_vocab(model.model)
        self._n_vocab = int(llama_cpp.llama_vocab_n_tokens(self._vocab))
        self._memory = llama_cpp.llama_get_memory(self._ctx)
        self._batch = llama_cpp.llama_batch_init(self._n_batch, 0, 1)
        self._lock = threading.Lock()
        self._closed = False

    def close(self) -> None:
        """Frees the context once the call under way (if any) is done; later calls get 503."""
        llama_cpp = runtime()
        with self._lock:
            self._closed = True
            llama_cpp.llama_batch_free(self._batch)
            llama_cpp.llama_free(self._ctx)

    def tokens(self, index: int, item: EmbeddingInput) -> list[int]:
        """The tokens `item` is read as: text with the model's own special tokens around it
        (text that spells a special token stays text), token ids as given; a 400 naming the
        input when they do not fit or name no token."""
        if isinstance(item, str):
            tokens: list[int] = self.model.tokenize(item.encode(), add_bos=True, special=False)
        else:
            tokens = list(item)
            bad = next((t for t in tokens if t >= self._n_vocab), None)
            if bad is not None:
                raise InvalidRequest(
                    f"Input {index} holds token id {bad}; the model's vocabulary has {self._n_vocab} tokens.",
                    param=f"input[{index}]",
                    code="invalid_value",
                )
        if len(tokens) > self.n_ctx_seq:
            raise ContextLengthExceeded(
                f"Input {index} is {len(tokens)} tokens long; this model reads at most {self.n_ctx_seq}.",
                param=f"input[{index}]",
            )
        return tokens

    def embed(self, inputs: tuple[EmbeddingInput, ...]) -> Embeddings:
        vectors: list[list[float]] = []
        with self._lock:
            # under the lock: a request that was waiting for it while the model unloaded
            # (gateway shutdown) must not touch the freed context or model
            if self._closed:
                raise ModelUnavailable("The model unloaded; try again.")
            every = [self.tokens(i, item) for i, item in enumerate(inputs)]
            group: list[list[int]] = []
            size = 0
            for tokens in every:
                if group and (len(group) == _SEQUENCES or size + len(tokens) > self._n_batch):
                    vectors += self._read(group)
                    group, size = [], 0
                group.append(tokens)
                size += len(tokens)
            vectors += self._read(group)
        return Embeddings(vectors=vectors, prompt_tokens=sum(map(len, every)))

    def _read(self, group: list[list[int]]) -> list[list[float]]:
        """One decode call for `group` (sequence i gets id i); their pooled vectors."""
        llama_cpp = runtime()
        if self._memory:
            llama_cpp.llama_memory_clear(self._memory, True)  # a causal model's cells of the last batch
        batch = self._batch
        n = 0
        for seq_id, tokens in enumerate(group):
            for position, token in enumerate(tokens):
                batch.token[n] = token
                batch.pos[n] = position
                batch.n_seq_id[n] = 1
                batch.seq_id[n][0] = seq_id
                batch.logits[n] = True
                n += 1
        batch.n_tokens = n
        status = llama_cpp.llama_decode(self._ctx, batch)
        if status != 0:
            raise GenerationFailed(f"llama.cpp could not read the inputs (status {status}).")
        vectors = []
        for seq_id in range(len(group)):
            pointer = llama_cpp.llama_get_embeddings_seq(self._ctx, seq_id)
            if not pointer:
                raise GenerationFailed("llama.cpp gave no vector for an input.")
            vectors.append(normalized(pointer[: self.length]))
        return vectors


class LlamaEmbeddingProvider(Provider):
    """Serves one GGUF embedding model (`embedding = true`)."""

    kind = "llama_cpp"
    holds_weights = True
    config: LlamaModelConfig

    def __init__(self, config: LlamaModelConfig, *, cache_dir: Path) -> None:
        super().__init__(config)
        self.cache_dir = cache_dir
        self.model_path: Path | None = None
        self._quiet = QuietLog()
        self._embedder: Embedder | None = None
        self._placement: dict[str, Any] | None = None

    @property
    def capabilities(self) -> dict[str, bool]:
        return {**super().capabilities, "tool_calls": False, "streaming": False}

    @property
    def context_length(self) -> int:
        return self._embedder.n_ctx_seq if self._embedder is not None else self.config.context_length

    @property
    def embedding_length(self) -> int:
        return self._loaded().length

    def foreseen_failure(self) -> LoadFailure | None:
        return missing_model_file(self.config, cache_dir=self.cache_dir)

    def placement(self) -> dict[str, Any] | None:
        return self._placement

    async def load(self) -> None:
        if self._embedder is None:
            self._embedder = await asyncio.to_thread(self._load_blocking)

    def _load_blocking(self) -> Embedder:
        model, path = open_model(self.config, cache_dir=self.cache_dir, quiet=self._quiet)
        try:
            embedder = Embedder(
                model,
                n_ctx_seq=self.config.context_length,
                n_batch=self.config.batch_size,
                threads=self.config.threads or os.cpu_count() or 1,
            )
        except BaseException:
            model.close()
            raise
        self.model_path = path
        self._placement = placement(self.config, model)
        return embedder

    async def unload(self) -> None:
        embedder, self._embedder = self._embedder, None
        self._placement = None
        if embedder is not None:
            await asyncio.to_thread(embedder.close)
            await asyncio.to_thread(embedder.model.close)
        self._quiet.remove()

    def _loaded(self) -> Embedder:
        if self._embedder is None:
            raise ModelUnavailable(f"model {self.config.id!r} is not loaded")
        return self._embedder

    async def embed(self, request: EmbeddingRequest) -> Embeddings:
        return await asyncio.to_thread(self._loaded().embed, request.inputs)

    async def generate(self, prompt: Prompt, params: DecodeParams, cancel: CancelToken) -> AsyncGenerator[Output, None]:
        raise UnsupportedModel(f"The model '{self.config.id}' is an embedding model: it serves /v1/embeddings only.")
        yield  # an async generator, as the contract has it: never reached
