"""One generation's life, from routing to its terminal event.

`GenerationService.start` does everything that can fail with a clean client error
(routing, loading, prepare, admission) before the caller commits to a response;
`Generation.deltas` then streams, and ends in exactly one `GenerationCompleted` or
`GenerationCancelled`. For a model with upstreams or fallbacks, `start` also reads the
first piece, falling back along the upstreams and models until one attempt yields it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from typing import TYPE_CHECKING, NamedTuple

import msgspec

from pipelines.errors import (
    CancelReason,
    GatewayError,
    GenerationFailed,
    InvalidRequest,
    UpstreamError,
)
from pipelines.events import (
    AdmissionChanged,
    EventBus,
    FallbackTriggered,
    GenerationCancelled,
    GenerationChunk,
    GenerationCompleted,
    GenerationStarted,
    ModelRouted,
)
from pipelines.pipeline import GenerationPipeline, PipelineContext, PipelineResult
from pipelines.providers.base import CancelToken, DecodeParams, Prompt, Provider
from pipelines.types import Delta, DeltaKind, GenerationRequest, Piece
from pipelines.upstream import Upstream, UpstreamFailure, UpstreamRouted

if TYPE_CHECKING:
    from pipelines.admission import Admission
    from pipelines.manager import ModelEntry
    from pipelines.router import ModelRouter

__all__ = ["Generation", "GenerationService", "Hop", "admission_events"]

_log = logging.getLogger(__name__)

_STUB_SLOTS = 512


class Hop(msgspec.Struct, frozen=True):
    """One step of a fallback: the attempt on `from_model` failed for `reason`, and the
    request went on to `to_model` (the same model when it was another of its upstreams)."""

    from_model: str
    to_model: str
    reason: str

    def __str__(self) -> str:
        return f"{self.from_model}->{self.to_model}:{self.reason}"


class _Attempt(NamedTuple):
    """One try at serving a request: prepared and admitted on a model, and (on the
    fallback path) with its first piece already read."""

    ctx: PipelineContext
    pipeline: GenerationPipeline
    stack: contextlib.AsyncExitStack
    """What the attempt holds (the model in use, its admission slot, its stream)."""
    queue_seconds: float


class Generation:
    """A started generation holding its model and admission slot until it ends.

    A non-stream generation on the fallback path may change attempts part-way (see
    `collect`): `ctx`, `pipeline` and `model_id` then describe the one that served."""

    def __init__(
        self,
        attempt: _Attempt,
        bus: EventBus,
        *,
        timeout: float | None,
        live: set[Generation],
        hops: list[Hop] | None = None,
        chain: AsyncGenerator[_Attempt, UpstreamFailure] | None = None,
    ) -> None:
        self._bus = bus
        self._timeout = timeout
        self._live = live
        self.hops: list[Hop] = hops if hops is not None else []
        """The fallback hops this request took (oldest first)."""
        self._chain = chain
        """The rest of the fallback chain, for a non-stream generation that may still move on."""
        self._resume(attempt)

    def _resume(self, attempt: _Attempt) -> None:
        self.ctx = attempt.ctx
        self.pipeline = attempt.pipeline
        self._stack = attempt.stack
        self._queue_seconds = attempt.queue_seconds
        self.result: PipelineResult | None = None
        self.choices: list[PipelineContext] = [attempt.ctx]
        """The contexts of the request's choices (more than one with `n` > 1)."""
        self._ended: dict[int, PipelineResult] = {}
        """Choices (by index) already finalized as they ended (`n` > 1)."""
        self._closed = False
        self._live.add(self)

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
            timer = asyncio.get_running_loop().call_later(self._timeout, ctx.cancel.cancel, CancelReason.TIMEOUT)
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
        contexts = self.pipeline.fork(ctx) if ctx.request.n > 1 else [ctx]
        self.choices = contexts
        stream = self.pipeline.stream(ctx) if len(contexts) == 1 else self._merged(contexts)
        try:
            async for delta in stream:
                if bus.wants_chunks and delta.kind is not DeltaKind.FINISH:
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
                self._cancelled(ctx.cancel.reason or "error")
            else:
                ended = self._ended
                self.result = self.pipeline.combine([ended.get(c.index) or self.pipeline.finalize(c) for c in contexts])
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
                self._cancelled(ctx.cancel.reason or "error")
            await self.aclose()

    async def _merged(self, contexts: list[PipelineContext]) -> AsyncGenerator[Delta, None]:
        """The deltas of several choices as they come, each choice read by a task of its own."""
        ctx = contexts[0]
        sources = ctx.provider.generate_choices(ctx.prompt, [c.params for c in contexts], ctx.cancel)
        for c, source in zip(contexts, sources, strict=True):
            c.source = source
        queue: asyncio.Queue[Delta | BaseException | None] = asyncio.Queue()

        async def pump(c: PipelineContext) -> None:
            try:
                async for delta in self.pipeline.stream(c):
                    queue.put_nowait(delta)
                if not c.cancel.cancelled:
                    # a client reading the stream learns of each choice's end as it happens
                    result = self._ended[c.index] = self.pipeline.finalize(c)
                    queue.put_nowait(Delta(kind=DeltaKind.FINISH, choice=c.index, finish=result.finish_reason))
            except Exception as exc:
                queue.put_nowait(exc)
            finally:
                queue.put_nowait(None)

        tasks = [asyncio.ensure_future(pump(c)) for c in contexts]
        try:
            running = len(tasks)
            while running:
                item = await queue.get()
                if item is None:
                    running -= 1
                elif isinstance(item, BaseException):
                    raise item
                else:
                    yield item
        finally:
            # One choice failed or the reader left: the others end too.
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for source in sources:
                await source.aclose()  # a choice whose task never started still lets go

    async def collect(self) -> PipelineResult:
        """Runs the generation to its end (non-stream requests).

        Nothing of a non-stream answer reaches the client before its end, so on the
        fallback path an upstream that fails part-way is replaced by the next attempt of
        the chain: the failed generation ends in its `GenerationCancelled`, a new one starts."""
        try:
            while True:
                try:
                    async for _ in self.deltas():
                        pass
                    break
                except UpstreamFailure as failure:
                    if self._chain is None or not failure.retryable:
                        raise
                    # raises the last error once the chain has nothing left to try
                    self._resume(await self._chain.asend(failure))
        finally:
            if self._chain is not None:
                await self._chain.aclose()
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
                completion_tokens=sum(c.completion_tokens for c in self.choices),
            )
        )

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            try:
                await self._stack.aclose()
            finally:
                self._live.discard(self)


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
        entry = self._router.entry(req.model)
        # Several choices are not retried along a chain: each would need its own first piece.
        if (entry.config.upstreams or entry.config.fallbacks) and req.n == 1:
            return await self._start_chain(req, entry)
        stack = contextlib.AsyncExitStack()
        try:
            ctx, pipeline, queue_seconds = await self._admit(req, entry, stack)
        except BaseException:
            await stack.aclose()
            raise
        return Generation(
            _Attempt(ctx, pipeline, stack, queue_seconds), self._bus, timeout=self._timeout, live=self._live
        )

    async def _admit(
        self, req: GenerationRequest, entry: ModelEntry, stack: contextlib.AsyncExitStack
    ) -> tuple[PipelineContext, GenerationPipeline, float]:
        """Loads, prepares and admits on `entry`'s model; what it holds goes on `stack`."""
        provider = await stack.enter_async_context(self._router.manager.using(entry))
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
        slots = entry.config.slots
        if provider.stub:
            # A stub costs next to nothing per generation: it is not the scarce resource
            # admission control protects, so it gets many slots.
            slots = max(slots, _STUB_SLOTS)
        elif isinstance(provider, UpstreamRouted):
            # `slots` is what one upstream server takes at once; the fleet takes that many each.
            slots *= len(entry.config.upstreams)
        gate = self._admission.gate(entry.config.id, slots)
        # Each choice decodes as a sequence of its own: a request with n choices takes n slots.
        await stack.enter_async_context(gate.admit(req.n))
        return ctx, pipeline, time.perf_counter() - queued

    # -- fallback ---------------------------------------------------------------

    async def _start_chain(self, req: GenerationRequest, entry: ModelEntry) -> Generation:
        """Starts on the first attempt of the chain that yields a first piece.

        Reading that piece here, before the caller commits to a response, keeps every
        failure until then a clean HTTP error or a fallback. A stream is never retried
        after it (its first piece may reach the client at once); a non-stream generation
        keeps the rest of the chain (see `Generation.collect`). Models without upstreams
        or fallbacks never come this way: local generations pay nothing for it."""
        hops: list[Hop] = []
        chain = self._attempts(req, entry, hops)
        attempt = await anext(chain)
        if req.stream:
            await chain.aclose()
        return Generation(
            attempt,
            self._bus,
            timeout=self._timeout,
            live=self._live,
            hops=hops,
            chain=None if req.stream else chain,
        )

    async def _attempts(
        self, req: GenerationRequest, entry: ModelEntry, hops: list[Hop]
    ) -> AsyncGenerator[_Attempt, UpstreamFailure]:
        """Yields attempts along the model's upstreams, then each model of its fallbacks.

        An attempt that fails before its first piece with a retryable error (connect
        error, timeout, 429, 5xx, a busy or unloadable model) is followed by the next;
        so is a yielded one whose failure is sent back. Each step is a hop (an event and
        `hops`). A fallback model that cannot serve the request at all (a 400 of ours,
        e.g. no logprobs) is skipped as `unsupported`. When nothing is left, the last
        retryable error is raised."""
        failed: tuple[str, str] | None = None
        """(model, reason) of the attempt that just failed: the next attempt is its hop."""
        last_error: GatewayError | None = None
        for target in self._chain(entry):
            model_id = target.config.id
            upstreams: list[Upstream] | None = None
            """This model's order of tries, fixed at its first attempt."""
            tried = 0
            while upstreams is None or tried < len(upstreams):
                # Every attempt prepares and admits afresh (its stack is what the Generation
                # then owns): moving to another upstream gives the slot back and queues again.
                if failed is not None:
                    hops.append(self._hop(req, failed, model_id))
                    failed = None
                stack = contextlib.AsyncExitStack()
                try:
                    ctx, pipeline, queue_seconds = await self._admit(req, target, stack)
                except GatewayError as exc:
                    await stack.aclose()
                    reason = _retry_reason(exc)
                    if reason is not None:
                        last_error = exc
                    elif target is not entry and isinstance(exc, InvalidRequest):
                        reason = "unsupported"  # fine for the model asked for, not for this one
                    else:
                        raise
                    failed = (model_id, reason)
                    break  # a model-level failure: on to the next model
                except BaseException:
                    await stack.aclose()
                    raise
                provider = ctx.provider
                if upstreams is None:
                    upstreams = provider.pool.candidates() if isinstance(provider, UpstreamRouted) else []
                started = time.perf_counter()
                if isinstance(provider, UpstreamRouted) and upstreams:
                    gen = provider.generate_via(upstreams[tried], ctx.prompt, ctx.params, ctx.cancel)
                else:
                    gen = provider.generate(ctx.prompt, ctx.params, ctx.cancel)
                tried += 1
                try:
                    first: Piece | None = await anext(gen)
                except StopAsyncIteration:
                    first = None
                except GatewayError as exc:
                    await gen.aclose()
                    await stack.aclose()
                    reason = _retry_reason(exc)
                    if reason is None:
                        raise
                    last_error = exc
                    failed = (model_id, reason)
                except BaseException:
                    await gen.aclose()
                    await stack.aclose()
                    raise
                else:
                    # the stream is closed with the attempt, even if never read further
                    stack.push_async_callback(gen.aclose)
                    ctx.provider = _Primed(provider, ctx, first, gen, started)
                    failure = yield _Attempt(ctx, pipeline, stack, queue_seconds)
                    # sent back: the attempt failed part-way (its generation closed it)
                    last_error = failure
                    failed = (model_id, failure.reason)
                if not upstreams:
                    break  # a local model: one attempt
        assert last_error is not None  # the model asked for failed, or we would have raised
        raise last_error

    def _chain(self, entry: ModelEntry) -> list[ModelEntry]:
        """The model asked for, then its fallbacks, each once (the chain is not transitive:
        a fallback's own fallbacks are not followed)."""
        chain = [entry]
        for model_id in entry.config.fallbacks:
            fallback = self._router.entry(model_id)
            if all(fallback.config.id != e.config.id for e in chain):
                chain.append(fallback)
        return chain

    def _hop(self, req: GenerationRequest, failed: tuple[str, str], to_model: str) -> Hop:
        hop = Hop(from_model=failed[0], to_model=to_model, reason=failed[1])
        _log.info("request %s falls back %s", req.request_id, hop)
        self._bus.emit(
            FallbackTriggered(
                request_id=req.request_id, from_model=hop.from_model, to_model=to_model, reason=hop.reason
            )
        )
        return hop


def _retry_reason(exc: GatewayError) -> str | None:
    """Why another attempt may follow a failure before the first token (None: it may not)."""
    return exc.retry_reason


class _Primed(Provider):
    """What the pipeline reads from once the service has opened a generation and taken
    its first piece (so that a failure before it could still fall back): that piece,
    then the rest of the same generation. Everything else is the real provider's."""

    def __init__(
        self,
        inner: Provider,
        ctx: PipelineContext,
        first: Piece | None,
        rest: AsyncGenerator[Piece, None],
        started: float,
    ) -> None:
        super().__init__(inner.config)
        self.inner = inner
        self.kind = inner.kind
        self.stub = inner.stub
        self.stub_reason = inner.stub_reason
        self.status = inner.status
        self._ctx = ctx
        self._first = first
        self._rest = rest
        self._started = started

    @property
    def capabilities(self) -> dict[str, bool]:
        return self.inner.capabilities

    @property
    def context_length(self) -> int:
        return self.inner.context_length

    def count_tokens(self, prompt: Prompt) -> int | None:
        return self.inner.count_tokens(prompt)

    async def generate(self, prompt: Prompt, params: DecodeParams, cancel: CancelToken) -> AsyncGenerator[Piece, None]:
        # The serving attempt began before the pipeline started reading: time to first
        # token counts from when its request went out.
        self._ctx.started_at = self._started
        try:
            if self._first is not None:
                yield self._first
            async for piece in self._rest:
                yield piece
        finally:
            await self._rest.aclose()


def admission_events(bus: EventBus) -> Callable[[str, int, int], None]:
    """The admission callback that turns queue changes into events."""

    def changed(model_id: str, running: int, waiting: int) -> None:
        bus.emit(AdmissionChanged(model_id=model_id, running=running, waiting=waiting))

    return changed
