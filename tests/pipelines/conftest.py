"""The generation side built from a settings TOML, with every event recorded: pipelines,
providers, router and service as `serve` assembles them, with no HTTP layer around."""

from __future__ import annotations

import json
import tomllib
from collections.abc import Callable

import msgspec
import pytest

from pipelines.assembly import GenerationLimits, Generations, assemble
from pipelines.config import Preset, model_config
from tests.support.configs import STUB_MODELS
from tests.support.harness import Harness


def with_server(toml: str, **values: object) -> str:
    """`toml` with these keys set in its `[server]` table (replaced where present)."""
    head, sep, rest = toml.partition("[server]\n")
    assert sep, "these settings have no [server] table"
    table, nxt, tail = rest.partition("\n[")
    lines = [line for line in table.splitlines() if line.split("=")[0].strip() not in values]
    lines += [f"{key} = {json.dumps(value)}" for key, value in values.items()]
    return head + sep + "\n".join(lines) + nxt + tail


def generations(toml: str) -> Generations:
    """What `serve` would build from these settings (their models, presets and the
    generation side's `[server]` keys), with a fixed date for Harmony prompts."""
    raw = tomllib.loads(toml)
    server = {k: v for k, v in raw.get("server", {}).items() if k in GenerationLimits.__struct_fields__}
    return assemble(
        [model_config(**m) for m in raw.get("models", [])],
        {name: msgspec.convert(table, Preset) for name, table in raw.get("presets", {}).items()},
        msgspec.convert(server, GenerationLimits),
        current_date="2025-09-01",
    )


@pytest.fixture
def make_harness() -> Callable[..., Harness]:
    """`make_harness(toml=STUB_MODELS, chunks=True)`: the generation side of these settings."""

    def make(toml: str = STUB_MODELS, *, chunks: bool = True) -> Harness:
        harness = Harness(generations(toml))
        harness.gateway.bus.subscribe(harness.events.append, chunks=chunks)
        return harness

    return make


@pytest.fixture
def harness(make_harness: Callable[..., Harness]) -> Harness:
    return make_harness()
