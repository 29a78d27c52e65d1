"""A gateway's generation side driven in process, with every event recorded."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pipelines.events import Event
from pipelines.types import Delta, GenerationRequest, Message, SamplingOverrides

if TYPE_CHECKING:
    from pipelines.service import Generation

__all__ = ["Harness"]

_ids = itertools.count()


@dataclass
class Harness:
    gateway: Any
    """The assembly under test (`pipelines.assembly.Generations`, or `app.gateway.Gateway`)."""
    events: list[Event] = field(default_factory=list)

    def request(
        self,
        model: str = "stub-chat",
        content: str = "Hello there",
        *,
        max_tokens: int | None = None,
        seed: int | None = None,
        **kwargs: Any,
    ) -> GenerationRequest:
        return GenerationRequest(
            request_id=f"req-{next(_ids)}",
            model=model,
            messages=(Message(role="user", content=content),),
            sampling=SamplingOverrides(max_tokens=max_tokens, seed=seed),
            **kwargs,
        )

    async def start(self, req: GenerationRequest) -> Generation:
        return await self.gateway.service.start(req)

    async def run(self, req: GenerationRequest) -> tuple[Generation, list[Delta]]:
        gen = await self.start(req)
        deltas = [d async for d in gen.deltas()]
        return gen, deltas

    def of(self, kind: type[Event], request_id: str | None = None) -> list[Any]:
        return [
            e
            for e in self.events
            if isinstance(e, kind) and (request_id is None or getattr(e, "request_id", None) == request_id)
        ]
