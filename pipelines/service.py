"""One generation's life, from routing to its terminal event.

`GenerationService.start` does everything that can fail with a clean client error
(routing, loading, prepare, admission) before the caller commits to a response;
`Generation.deltas` then streams, and ends in exactly one `GenerationCompleted` or
`GenerationCancelled`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING

from pipelines.errors import GenerationFailed
from pipelines.events import (
    AdmissionChanged,
    EventBus,
    GenerationCancelled,
    GenerationChunk,
    GenerationCompleted,
    GenerationStarted,
    ModelRouted,
)
from pipelines.pipeline import GenerationPipeline, PipelineContext, PipelineResult
from pipelines.types import Delta, GenerationRequest

if TYPE_CHECKING:
    from pipelines.admission import Admission
    from pipelines.router import ModelRouter

__all__ = ["Generation", "GenerationService", "admission_events"]

_STUB_SLOTS = 512


class Generation:
    """A started generation holding its model and admission slot until it ends."""

    def __init__(
        self,
        ctx: PipelineContext,
        pipeline: GenerationPipeline,
        stack: contextlib.AsyncExitStack,
        bus: EventBus,
        *,
        queue_seconds: float,
        timeout: float | None,
        on_close: Callable[[Generation], None] | None = None,
    ) -> None:
        self._on_close = on_close
        self.ctx = ctx
        self.pipeline = pipeline
        self._stack = stack
        self._bus = bus
        self._queue_seconds = queue_seconds
        self._timeout = timeout
        self.result: PipelineResult | None = None
        self._closed = False

    @property
    def model_id(self) -> str:
        return self.ctx.model.id

    @property
    def request_id(self) -> str:
        return self.ctx.request.request_id

    async def deltas(self) -> AsyncIterator[Delta]:
        ctx = self.ctx
        bus = self._bus
        timer = None
        if self._timeout is not None:
            timer = asyncio.get_running_loop().call_later(self._timeout, ctx.cancel.cancel, "timeout")
        bus.emit(
            GenerationStarted(
                request_id=self.request_id,
                model_id=self.model_id,
                pipeline=self.pipeline.name,
                stub=ctx.stub,
                stream=ctx.request.stream,
                sampling=ctx.sampling.as_dict(),
                queue_seconds=self._queue_seconds,
            )
        )
        finished = False
        try:
            async for delta in self.pipeline.stream(ctx):
                if bus.wants_chunks:
                    bus.emit(
                        GenerationChunk(
                            request_id=self.request_id,
                            model_id=self.model_id,
                            channel=delta.kind.value,
                            text=delta.text,
                        )
                    )
                yield delta
            if ctx.cancel.cancelled:
                self._cancelled(ctx.cancel.reason or "error")
            else:
                self.result = self.pipeline.finalize(ctx)
                bus.emit(
                    GenerationCompleted(
                        request_id=self.request_id,
                        model_id=self.model_id,
                        pipeline=self.pipeline.name,
                        stub=ctx.stub,
                        stop_reason=self.result.stop_reason.value,
                        result_summary=self.result.summary(),
                        token_gaps=self.result.token_gaps,
                    )
                )
            finished = True
        except (GeneratorExit, asyncio.CancelledError):
            ctx.cancel.cancel("client_disconnect")
            raise
        except BaseException:
            ctx.cancel.cancel("error")
            raise
        finally:
            if timer is not None:
                timer.cancel()
            if not finished:
                self._cancelled(ctx.cancel.reason or "error")
            await self.aclose()

    async def collect(self) -> PipelineResult:
        """Runs the generation to its end (non-stream requests)."""
        async for _ in self.deltas():
            pass
        if self.result is None:
            raise GenerationFailed(f"Generation was cancelled ({self.ctx.cancel.reason}).")
        return self.result

    def _cancelled(self, reason: str) -> None:
        self._bus.emit(
            GenerationCancelled(
                request_id=self.request_id,
                model_id=self.model_id,
                pipeline=self.pipeline.name,
                stub=self.ctx.stub,
                reason=reason,
                completion_tokens=self.ctx.completion_tokens,
            )
        )

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            try:
                await self._stack.aclose()
            finally:
                if self._on_close is not None:
                    self._on_close(self)


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
            gen.ctx.cancel.cancel("shutdown")
        deadline = loop.time() + 5.0
        while self._live and loop.time() < deadline:
            await asyncio.sleep(0.02)

    async def start(self, req: GenerationRequest) -> Generation:
        router = self._router
        entry = router.entry(req.model)
        stack = contextlib.AsyncExitStack()
        try:
            provider = await stack.enter_async_context(router.manager.using(entry))
            pipeline = self._pipelines[entry.config.format]
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
            # A stub costs next to nothing per generation: it is not the scarce resource
            # admission control protects, so it gets many slots.
            slots = entry.config.slots if not provider.stub else max(entry.config.slots, _STUB_SLOTS)
            gate = self._admission.gate(entry.config.id, slots)
            await stack.enter_async_context(gate.admit())
        except BaseException:
            await stack.aclose()
            raise
        gen = Generation(
            ctx,
            pipeline,
            stack,
            self._bus,
            queue_seconds=time.perf_counter() - queued,
            timeout=self._timeout,
            on_close=self._live.discard,
        )
        self._live.add(gen)
        return gen


def admission_events(bus: EventBus) -> Callable[[str, int, int], None]:
    """The admission callback that turns queue changes into events."""

    def changed(model_id: str, running: int, waiting: int) -> None:
        bus.emit(AdmissionChanged(model_id=model_id, running=running, waiting=waiting))

    return changed
