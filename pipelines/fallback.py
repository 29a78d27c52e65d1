"""The fallback chain: the attempts one request may make before its first piece.

A model's attempts are its provider's ways to run a generation (an `openai_http` model's
upstream servers, in the pool's order; one for any other model), then those of each model
in its `fallbacks`. An attempt that fails before its first piece with a retryable error
(its error's `retry_reason`: connect error, timeout, 429, 5xx, a busy or unloadable
model) is followed by the next; so
is one whose generation failed part-way and is handed back (`next(failure)`, non-stream
only). Each step is a hop: a `FallbackTriggered` event and a line of `hops`. A fallback
model that cannot serve the request at all (a 400 of ours, e.g. no logprobs) is skipped as
`unsupported`. When nothing is left, the last retryable error is raised.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import TYPE_CHECKING

import msgspec

from pipelines.errors import GatewayError, InvalidRequest
from pipelines.events import EventBus, FallbackTriggered
from pipelines.holds import Holds
from pipelines.upstream import UpstreamFailure

if TYPE_CHECKING:
    from pipelines.generation import Attempt
    from pipelines.manager import ModelEntry
    from pipelines.providers.base import Source
    from pipelines.types import GenerationRequest, Output

__all__ = ["Admit", "FallbackChain", "Hop"]

_log = logging.getLogger(__name__)

Admit = Callable[["GenerationRequest", "ModelEntry", Holds], Awaitable["Attempt"]]
"""Loads, prepares and admits a request on a model; what it holds goes on the stack."""


class Hop(msgspec.Struct, frozen=True):
    """One step of a fallback: the attempt on `from_model` failed for `reason`, and the
    request went on to `to_model` (the same model when it was another of its upstreams)."""

    from_model: str
    to_model: str
    reason: str

    def __str__(self) -> str:
        return f"{self.from_model}->{self.to_model}:{self.reason}"


class FallbackChain:
    """The attempts of one request along `models` (the model asked for first)."""

    def __init__(self, req: GenerationRequest, models: list[ModelEntry], admit: Admit, bus: EventBus) -> None:
        self._req = req
        self._models = models
        self._admit = admit
        self._bus = bus
        self.hops: list[Hop] = []
        """The hops taken so far (oldest first)."""
        self._model = 0
        """Index of the model being tried."""
        self._ways: list[Source] | None = None
        """That model's ways to run a generation, fixed at its first attempt."""
        self._way = 0
        self._failed: tuple[str, str] | None = None
        """(model, reason) of the attempt that just failed: the next attempt is its hop."""
        self._last_error: GatewayError | None = None
        self._serving: str | None = None
        """The model of the attempt last returned."""

    async def next(self, failure: UpstreamFailure | None = None) -> Attempt:
        """The next attempt that yields a first piece; `failure` is why the last one
        returned failed part-way. Raises the last error once nothing is left."""
        if failure is not None:
            assert self._serving is not None
            self._last_error = failure
            self._failed = (self._serving, failure.reason)
        while self._model < len(self._models):
            entry = self._models[self._model]
            if self._failed is not None:
                self._hop(entry.config.id)
            # Every attempt prepares and admits afresh (its stack is what the generation
            # then owns): moving to another upstream gives the slot back and queues again.
            stack = Holds()
            try:
                attempt = await self._admit(self._req, entry, stack)
            except GatewayError as exc:
                await stack.aclose()
                reason = exc.retry_reason
                if reason is None and self._model > 0 and isinstance(exc, InvalidRequest):
                    reason = "unsupported"  # fine for the model asked for, not for this one
                    self._failed = (entry.config.id, reason)
                elif reason is None:
                    raise
                else:
                    self._fail(exc, reason)
                self._next_model()  # a model-level failure: on to the next model
                continue
            except BaseException:
                await stack.aclose()
                raise
            if self._ways is None:
                self._ways = attempt.ctx.provider.attempts()
            way = self._ways[self._way]
            self._way += 1
            primed = await self._first_piece(attempt, way, stack)
            if primed is not None:
                return primed
        assert self._last_error is not None  # the model asked for failed, or we would have raised
        raise self._last_error

    async def _first_piece(self, attempt: Attempt, way: Source, stack: Holds) -> Attempt | None:
        """`attempt` with its output primed by its first piece, or None when it failed
        before it with a retryable error."""
        ctx = attempt.ctx
        started = time.perf_counter()
        gen = way(ctx.prompt, ctx.params, ctx.cancel)
        try:
            first: Output | None = await anext(gen)
        except StopAsyncIteration:
            first = None
        except GatewayError as exc:
            await gen.aclose()
            await stack.aclose()
            reason = exc.retry_reason
            if reason is None:
                raise
            self._fail(exc, reason)
            self._after_way()
            return None
        except BaseException:
            await gen.aclose()
            await stack.aclose()
            raise
        # the stream is closed with the attempt, even if never read further
        stack.push(gen.aclose)
        # time to first token counts from when the serving attempt's request went out
        ctx.started_at = started
        attempt.output = _primed(first, gen)
        self._serving = ctx.model.id
        self._after_way()
        return attempt

    def _fail(self, exc: GatewayError, reason: str) -> None:
        self._last_error = exc
        self._failed = (self._models[self._model].config.id, reason)

    def _after_way(self) -> None:
        assert self._ways is not None
        if self._way >= len(self._ways):
            self._next_model()

    def _next_model(self) -> None:
        self._model += 1
        self._ways = None
        self._way = 0

    def _hop(self, to_model: str) -> None:
        assert self._failed is not None
        hop = Hop(from_model=self._failed[0], to_model=to_model, reason=self._failed[1])
        self._failed = None
        self.hops.append(hop)
        _log.info("request %s falls back %s", self._req.request_id, hop)
        self._bus.emit(
            FallbackTriggered(
                request_id=self._req.request_id, from_model=hop.from_model, to_model=to_model, reason=hop.reason
            )
        )


async def _primed(first: Output | None, rest: AsyncGenerator[Output, None]) -> AsyncGenerator[Output, None]:
    """The first piece (already read), then the rest of the same generation."""
    try:
        if first is not None:
            yield first
        async for item in rest:
            yield item
    finally:
        await rest.aclose()
