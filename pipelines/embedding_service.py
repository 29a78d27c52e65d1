"""The embedding service: routes an embedding request to its model, loads it, admits it
through the model's gate like any generation, and hands back vectors of the length asked.

Only embedding models (`embedding = true` in the passport) take these requests: any other
model is a 400 naming `model`, as an embedding model is for chat. A model's `fallbacks` do
not apply: a vector from another model lives in another space, so it is no substitute."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from pipelines.embedding import EmbeddingRequest, EmbeddingResult, check_dimensions, shaped
from pipelines.errors import UnsupportedModel
from pipelines.events import EmbeddingsCreated, EventBus

if TYPE_CHECKING:
    from pipelines.admission import Admission
    from pipelines.router import ModelRouter

__all__ = ["EmbeddingService"]


class EmbeddingService:
    """Serves `/v1/embeddings` for the models of a router."""

    def __init__(self, router: ModelRouter, admission: Admission, bus: EventBus) -> None:
        self._router = router
        self._admission = admission
        self._bus = bus

    async def embed(self, req: EmbeddingRequest) -> EmbeddingResult:
        entry = self._router.entry(req.model)
        config = entry.config
        if not config.embedding:
            raise UnsupportedModel(
                f"The model '{config.id}' is not an embedding model; embeddings need a model with `embedding = true`."
            )
        async with self._router.manager.using(entry) as provider:
            length = provider.embedding_length
            if length is not None:
                check_dimensions(req.dimensions, length, matryoshka=config.matryoshka, model_id=config.id)
            gate = self._admission.gate(config.id, provider.admission_slots())
            async with gate.admit():
                started = time.perf_counter()
                out = await provider.embed(req)
                seconds = time.perf_counter() - started
        self._bus.emit(
            EmbeddingsCreated(
                request_id=req.request_id,
                model_id=config.id,
                inputs=len(req.inputs),
                prompt_tokens=out.prompt_tokens,
                stub=provider.stub,
                seconds=seconds,
            )
        )
        vectors = shaped(out.vectors, req.dimensions) if length is not None else out.vectors
        return EmbeddingResult(model_id=config.id, vectors=vectors, prompt_tokens=out.prompt_tokens, stub=provider.stub)
