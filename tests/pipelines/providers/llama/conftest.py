"""Loaded SmolLM2 providers shared by a test module, at one slot and at four."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
import pytest_asyncio

from pipelines.events import Event, EventBus
from pipelines.providers.base import DecodeParams, Prompt
from pipelines.providers.llama import LlamaProvider
from tests.pipelines.providers.llama.helpers import collect, data
from tests.support.configs import smollm2_config

Fresh = Callable[[Prompt, DecodeParams], Awaitable[list[bytes]]]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def events() -> list[Event]:
    """Every event the `smol` providers emitted (PromptProcessed, mostly)."""
    return []


@pytest_asyncio.fixture(scope="module", loop_scope="module", params=[1, 4], ids=["slots1", "slots4"])
async def smol(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, events: list[Event]
) -> AsyncIterator[LlamaProvider]:
    """SmolLM2 with `slots` 1 and 4: every test that takes it runs at both."""
    bus = EventBus()
    bus.subscribe(events.append)
    provider = LlamaProvider(
        smollm2_config(slots=request.param), cache_dir=tmp_path_factory.mktemp("smol-cache"), bus=bus
    )
    await provider.load()
    yield provider
    await provider.unload()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def batched(tmp_path_factory: pytest.TempPathFactory, events: list[Event]) -> AsyncIterator[LlamaProvider]:
    """SmolLM2 with four slots, for what only several slots can do."""
    bus = EventBus()
    bus.subscribe(events.append)
    provider = LlamaProvider(smollm2_config(slots=4), cache_dir=tmp_path_factory.mktemp("batch-cache"), bus=bus)
    await provider.load()
    yield provider
    await provider.unload()


@pytest.fixture(scope="module")
def fresh(tmp_path_factory: pytest.TempPathFactory) -> Fresh:
    """`await fresh(prompt, params)`: the pieces' bytes of one generation by a newly loaded
    one-slot provider, its cache empty: the single-sequence run others must reproduce."""
    cache_dir = tmp_path_factory.mktemp("fresh-cache")

    async def run(prompt: Prompt, params: DecodeParams) -> list[bytes]:
        provider = LlamaProvider(smollm2_config(slots=1), cache_dir=cache_dir)
        await provider.load()
        try:
            return data(await collect(provider, prompt, params))
        finally:
            await provider.unload()

    return run
