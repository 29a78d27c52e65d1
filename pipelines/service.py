"""The generation service: routes, prepares and admits generations, and drains them at
shutdown. A started generation's life is `pipelines/generation.py`; the attempts of a
model with upstreams or fallbacks are `pipelines/fallback.py`."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from pipelines.errors import CancelReason, UnsupportedModel
from pipelines.events import AdmissionChanged, EventBus, ModelRouted
from pipelines.fallback import FallbackChain, Hop
from pipelines.generation import Attempt, Generation
from pipelines.holds import Holds
from pipelines.pipeline import GenerationPipeline
from pipelines.types import GenerationRequest

if TYPE_CHECKING:
    from pipelines.admission import Admission
    from pipelines.manager import ModelEntry
    from pipelines.router import ModelRouter

__all__ = ["COMPLETION", "Generation", "GenerationService", "Hop", "admission_events"]

COMPLETION = "completion"
"""The key of the pipeline that serves raw prompts (legacy completions) for every format."""


class GenerationService:
    """Routes, prepares and admits generations."""

    def __init__(
        self,
        router: ModelRouter,
        pipelines: dict[str, GenerationPipeline],
        admission: Admission,
        bus: EventBus,
        *,
        timeout: float | None = None,
    ) -> None:
        self._router = router
        self._pipelines = pipelines
        self._admission = admission
        self._bus = bus
        self._timeout = timeout
        self._live: set[Generation] = set()

    @property
    def live(self) -> int:
        return len(self._live)

    async def drain(self, grace: float) -> None:
        """Lets running generations finish for `grace` seconds, then cancels the rest
        (`GenerationCancelled reason=shutdown`)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        while self._live and loop.time() < deadline:
            await asyncio.sleep(0.05)
        for gen in list(self._live):
            gen.ctx.cancel.cancel(CancelReason.SHUTDOWN)
        deadline = loop.time() + 5.0
        while self._live and loop.time() < deadline:
            await asyncio.sleep(0.02)

    async def start(self, req: GenerationRequest) -> Generation:
        """Routes, loads, prepares and admits `req`: everything that can fail with a clean
        client error happens here, before the caller commits to a response."""
        entry = self._router.entry(req.model)
        # Several choices are not retried along a chain: each would need its own first piece.
        if entry.config.chained and req.n == 1:
            return await self._start_chain(req, entry)
        stack = Holds()
        try:
            attempt = await self._admit(req, entry, stack)
        except BaseException:
            await stack.aclose()
            raise
        return Generation(attempt, self._bus, timeout=self._timeout, live=self._live)

    async def count_prompt(self, req: GenerationRequest) -> int | None:
        """The prompt tokens `req` would read on its model (loaded if need be), without
        generating; None when the model cannot tell before decoding (an upstream)."""
        entry = self._router.entry(req.model)
        async with self._router.manager.using(entry) as provider:
            ctx = self._pipelines[entry.config.format].prepare(req, provider, entry.config)
            return ctx.prompt_tokens or provider.count_tokens(ctx.prompt)

    async def _start_chain(self, req: GenerationRequest, entry: ModelEntry) -> Generation:
        """Starts on the first attempt of the chain that yields a first piece.

        Reading that piece here keeps every failure until then a clean HTTP error or a
        fallback. A stream is never retried after it (its first piece may reach the client
        at once); a non-stream generation keeps the rest of the chain (`Generation.collect`).
        Models without upstreams or fallbacks never come this way: local generations pay
        nothing for it."""
        chain = FallbackChain(req, self._chain(entry), self._admit, self._bus)
        attempt = await chain.next()
        return Generation(attempt, self._bus, timeout=self._timeout, live=self._live, chain=chain)

    def _chain(self, entry: ModelEntry) -> list[ModelEntry]:
        """The model asked for, then its fallbacks, each once (the chain is not transitive:
        a fallback's own fallbacks are not followed)."""
        chain = [entry]
        for model_id in entry.config.fallbacks:
            fallback = self._router.entry(model_id)
            if all(fallback.config.id != e.config.id for e in chain):
                chain.append(fallback)
        return chain

    async def _admit(self, req: GenerationRequest, entry: ModelEntry, stack: Holds) -> Attempt:
        """Loads, prepares and admits on `entry`'s model; what it holds goes on `stack`."""
        if entry.config.embedding:
            # before loading: an embedding model is never loaded for a request it cannot serve
            raise UnsupportedModel(
                f"The model '{entry.config.id}' is an embedding model: it serves /v1/embeddings only."
            )
        provider = await stack.enter(self._router.manager.using(entry))
        pipeline = self._pipelines[COMPLETION if req.prompt is not None else entry.config.format]
        ctx = pipeline.prepare(req, provider, entry.config)
        self._bus.emit(
            ModelRouted(
                request_id=req.request_id,
                model_id=entry.config.id,
                pipeline=pipeline.name,
                stub=provider.stub,
                capabilities=provider.capabilities,
            )
        )
        queued = time.perf_counter()
        gate = self._admission.gate(entry.config.id, provider.admission_slots())
        # Each choice decodes as a sequence of its own: a request with n choices takes n slots.
        await stack.enter(gate.admit(req.n))
        return Attempt(ctx, pipeline, stack, time.perf_counter() - queued)


def admission_events(bus: EventBus) -> Callable[[str, int, int], None]:
    """The admission callback that turns queue changes into events."""

    def changed(model_id: str, running: int, waiting: int) -> None:
        bus.emit(AdmissionChanged(model_id=model_id, running=running, waiting=waiting))

    return changed
