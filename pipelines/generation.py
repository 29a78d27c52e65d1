"""One started generation's life, and its events: `GenerationStarted`, a `GenerationChunk`
per delta, then exactly one `GenerationCompleted` or `GenerationCancelled`."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pipelines.choices import merged_choices
from pipelines.errors import Cancelled, CancelReason, GenerationFailed, UpstreamError
from pipelines.events import EventBus, GenerationCancelled, GenerationChunk, GenerationCompleted, GenerationStarted
from pipelines.result import PipelineResult, combine_results
from pipelines.structured.outcome import checked_outputs
from pipelines.types import Delta, DeltaKind, Output
from pipelines.upstream import UpstreamFailure

if TYPE_CHECKING:
    from pipelines.fallback import FallbackChain, Hop
    from pipelines.holds import Holds
    from pipelines.pipeline import GenerationPipeline, PipelineContext

__all__ = ["Attempt", "Generation"]


@dataclass
class Attempt:
    """One try at serving a request: prepared and admitted on a model."""

    ctx: PipelineContext
    pipeline: GenerationPipeline
    stack: Holds
    """What the attempt holds (the model in use, its admission slot, its stream)."""
    queue_seconds: float
    output: AsyncGenerator[Output, None] | None = None
    """Its output, already opened and primed by the fallback chain; None: not opened yet."""


class Generation:
    """A started generation holding its model and admission slot until it ends.

    A non-stream generation with a fallback chain may change attempts part-way (see
    `collect`): `ctx`, `pipeline` and `model_id` then describe the one that served."""

    def __init__(
        self,
        attempt: Attempt,
        bus: EventBus,
        *,
        timeout: float | None,
        live: set[Generation],
        chain: FallbackChain | None = None,
    ) -> None:
        self._bus = bus
        self._timeout = timeout
        self._live = live
        self._chain = chain
        """The rest of the fallback chain, for a non-stream generation that may still move on."""
        self._resume(attempt)

    def _resume(self, attempt: Attempt) -> None:
        self._attempt = attempt
        self.ctx = attempt.ctx
        self.pipeline = attempt.pipeline
        self.result: PipelineResult | None = None
        self.choices: list[PipelineContext] = [attempt.ctx]
        """The contexts of the request's choices (more than one with `n` > 1)."""
        self._ended: dict[int, PipelineResult] = {}
        """Choices (by index) already finalized as they ended (`n` > 1)."""
        self._closed = False
        self._live.add(self)

    @property
    def hops(self) -> list[Hop]:
        """The fallback hops this request took (oldest first)."""
        return self._chain.hops if self._chain is not None else []

    @property
    def instant(self) -> bool:
        """Its provider answers in microseconds (a stub): watching the client's connection
        for a disconnect would cost more than the whole answer."""
        return self.ctx.provider.instant

    @property
    def model_id(self) -> str:
        return self.ctx.model.id

    @property
    def request_id(self) -> str:
        return self.ctx.request.request_id

    def _finalize_choice(self, ctx: PipelineContext) -> PipelineResult:
        result = self._ended[ctx.index] = self.pipeline.finalize(ctx)
        return result

    def _stream(self) -> AsyncGenerator[Delta, None]:
        ctx = self.ctx
        if ctx.request.n > 1:
            self.choices = self.pipeline.fork(ctx)
            return merged_choices(self.pipeline, self.choices, self._finalize_choice)
        output = self._attempt.output or ctx.provider.generate(ctx.prompt, ctx.params, ctx.cancel)
        return self.pipeline.stream(ctx, output)

    async def deltas(self) -> AsyncIterator[Delta]:
        ctx = self.ctx
        bus = self._bus
        timer = None
        if self._timeout is not None:
            timer = asyncio.get_running_loop().call_later(self._timeout, ctx.cancel.cancel, CancelReason.TIMEOUT)
        bus.emit(
            GenerationStarted(
                request_id=self.request_id,
                model_id=self.model_id,
                pipeline=self.pipeline.name,
                stub=ctx.stub,
                stream=ctx.request.stream,
                sampling=ctx.sampling.as_dict(),
                queue_seconds=self._attempt.queue_seconds,
            )
        )
        finished = False
        stream = self._stream()
        try:
            async for delta in stream:
                if bus.wants_chunks and delta.kind is not DeltaKind.FINISH and delta.kind is not DeltaKind.PROMPT:
                    bus.emit(
                        GenerationChunk(
                            request_id=self.request_id,
                            model_id=self.model_id,
                            channel=delta.kind.value,
                            text=delta.text,
                            choice=delta.choice,
                        )
                    )
                yield delta
            if ctx.cancel.cancelled:
                self._cancelled(ctx.cancel.reason or CancelReason.ERROR)
            else:
                self._completed()
            finished = True
        except (GeneratorExit, asyncio.CancelledError):
            ctx.cancel.cancel(CancelReason.CLIENT_DISCONNECT)
            raise
        except UpstreamError:
            ctx.cancel.cancel(CancelReason.UPSTREAM_ERROR)
            raise
        except BaseException:
            ctx.cancel.cancel(CancelReason.ERROR)
            raise
        finally:
            # Closed here, after the cancel reason is set and before the model slot goes back:
            # the provider has let go of the generation by the time the next one is admitted.
            await stream.aclose()
            if timer is not None:
                timer.cancel()
            if not finished:
                self._cancelled(ctx.cancel.reason or CancelReason.ERROR)
            await self.aclose()

    async def collect(self) -> PipelineResult:
        """Runs the generation to its end (non-stream requests).

        Nothing of a non-stream answer reaches the client before its end, so with a
        fallback chain an upstream that fails part-way is replaced by the chain's next
        attempt: the failed generation ends in its `GenerationCancelled`, a new one starts."""
        while True:
            try:
                async for _ in self.deltas():
                    pass
                break
            except UpstreamFailure as failure:
                if self._chain is None or not failure.retryable:
                    raise
                # raises the last error once the chain has nothing left to try
                self._resume(await self._chain.next(failure))
        if self.result is None:
            reason = self.ctx.cancel.reason
            if reason is None or reason is CancelReason.ERROR:
                raise GenerationFailed(f"Generation was cancelled ({reason or CancelReason.ERROR}).")
            raise Cancelled(reason)  # cut short from outside: told as the stream tells it
        return self.result

    def _completed(self) -> None:
        ended = self._ended
        self.result = combine_results([ended.get(c.index) or self.pipeline.finalize(c) for c in self.choices])
        self._bus.emit(
            GenerationCompleted(
                request_id=self.request_id,
                model_id=self.model_id,
                pipeline=self.pipeline.name,
                stub=self.ctx.stub,
                stop_reason=self.result.stop_reason.value,
                result_summary=self.result.summary(),
                token_gaps=self.result.token_gaps,
            )
        )
        for event in checked_outputs(self.ctx.request, self.result, model_id=self.model_id, stub=self.ctx.stub):
            self._bus.emit(event)

    def _cancelled(self, reason: CancelReason) -> None:
        self._bus.emit(
            GenerationCancelled(
                request_id=self.request_id,
                model_id=self.model_id,
                pipeline=self.pipeline.name,
                stub=self.ctx.stub,
                reason=reason.value,
                completion_tokens=sum(c.completion_tokens for c in self.choices),
            )
        )

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            try:
                await self._attempt.stack.aclose()
            finally:
                self._live.discard(self)
