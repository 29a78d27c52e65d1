"""The contract between providers served by upstream pools and the generation service."""

from __future__ import annotations

import abc
import asyncio
import functools
from collections.abc import AsyncGenerator, Iterable
from typing import Any

from pipelines.providers.base import CancelToken, DecodeParams, Prompt, Provider, Source
from pipelines.types import Output
from pipelines.upstream.pool import Upstream, UpstreamPool

__all__ = ["UpstreamRouted", "run_probes"]


class UpstreamRouted(Provider):
    """A provider whose model lives on several upstream servers.

    Its `attempts` are the pool's candidates in order: the fallback chain moves on to the
    next while a failure is retryable and nothing has been yielded. `generate` alone goes
    to the first candidate. Admission lets `slots` generations run on each server."""

    pool: UpstreamPool

    @abc.abstractmethod
    def generate_via(
        self, upstream: Upstream, prompt: Prompt, params: DecodeParams, cancel: CancelToken
    ) -> AsyncGenerator[Output, None]:
        """Yield the output of one generation, decoded by `upstream`."""

    def generate(self, prompt: Prompt, params: DecodeParams, cancel: CancelToken) -> AsyncGenerator[Output, None]:
        return self.generate_via(self.pool.candidates()[0], prompt, params, cancel)

    def attempts(self) -> list[Source]:
        return [functools.partial(self.generate_via, upstream) for upstream in self.pool.candidates()]

    def admission_slots(self) -> int:
        return self.config.slots * len(self.pool.upstreams)

    def upstream_states(self) -> list[dict[str, Any]] | None:
        return [u.snapshot() for u in self.pool.upstreams]

    async def maintain(self) -> None:
        if self.pool.probe_seconds > 0:
            await self.pool.probe_forever()


async def run_probes(providers: Iterable[Provider]) -> None:
    """Runs every provider's background upkeep (upstream health probes) until cancelled;
    the app's lifespan starts it."""
    await asyncio.gather(*(p.maintain() for p in providers))
