"""The contract between providers served by upstream pools and the generation service."""

from __future__ import annotations

import abc
import asyncio
from collections.abc import AsyncGenerator, Iterable

from pipelines.providers.base import CancelToken, DecodeParams, Prompt, Provider
from pipelines.types import Piece
from pipelines.upstream.pool import Upstream, UpstreamPool

__all__ = ["UpstreamRouted", "run_probes"]


class UpstreamRouted(Provider):
    """A provider whose model lives on several upstream servers.

    The generation service tries `pool.candidates()` in order with `generate_via`, moving
    on while a failure is retryable and nothing has been yielded (the fallback loop lives
    there, with the model-level one). `generate` alone goes to the first candidate."""

    pool: UpstreamPool

    @abc.abstractmethod
    def generate_via(
        self, upstream: Upstream, prompt: Prompt, params: DecodeParams, cancel: CancelToken
    ) -> AsyncGenerator[Piece, None]:
        """Yield the pieces of one generation, decoded by `upstream`."""

    def generate(self, prompt: Prompt, params: DecodeParams, cancel: CancelToken) -> AsyncGenerator[Piece, None]:
        return self.generate_via(self.pool.candidates()[0], prompt, params, cancel)


async def run_probes(providers: Iterable[Provider]) -> None:
    """Runs the active health probes of every upstream pool until cancelled (the app's
    lifespan starts it); returns at once when no model has upstreams to probe."""
    pools = [p.pool for p in providers if isinstance(p, UpstreamRouted) and p.pool.probe_seconds > 0]
    if pools:
        await asyncio.gather(*(pool.probe_forever() for pool in pools))
