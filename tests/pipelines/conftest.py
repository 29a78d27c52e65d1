"""An in-process gateway built from a settings TOML, with every event recorded."""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from app.gateway import Gateway, build_gateway
from app.settings import load_settings
from pipelines.events import Event
from pipelines.service import Generation
from pipelines.types import Delta, GenerationRequest, Message, SamplingOverrides
from tests.support.configs import STUB_MODELS

_ids = itertools.count()


def with_server(toml: str, **values: object) -> str:
    """`toml` with these keys set in its `[server]` table (replaced where present)."""
    head, sep, rest = toml.partition("[server]\n")
    assert sep, "these settings have no [server] table"
    table, nxt, tail = rest.partition("\n[")
    lines = [line for line in table.splitlines() if line.split("=")[0].strip() not in values]
    lines += [f"{key} = {json.dumps(value)}" for key, value in values.items()]
    return head + sep + "\n".join(lines) + nxt + tail


@dataclass
class Harness:
    gateway: Gateway
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


@pytest.fixture
def make_harness(tmp_path: Path) -> Callable[..., Harness]:
    """`make_harness(toml=STUB_MODELS, chunks=True)`: settings loaded from a real file
    (no environment overrides), the gateway built the way `serve` builds it."""

    def make(toml: str = STUB_MODELS, *, chunks: bool = True) -> Harness:
        path = tmp_path / f"settings-{next(_ids)}.toml"
        path.write_text(toml)
        harness = Harness(build_gateway(load_settings(path, env={}), current_date="2025-09-01"))
        harness.gateway.bus.subscribe(harness.events.append, chunks=chunks)
        return harness

    return make


@pytest.fixture
def harness(make_harness: Callable[..., Harness]) -> Harness:
    return make_harness()
