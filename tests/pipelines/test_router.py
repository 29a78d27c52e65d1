"""Routing (ADR-0026): an id or alias -> (provider, pipeline class); an unknown id is a
`ModelNotFound` on `model`, never a silent fallback."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from pipelines.errors import ModelNotFound
from pipelines.events import ModelLoaded, ModelLoadFailed
from pipelines.formats import ChatTemplatePipeline, HarmonyPipeline
from pipelines.providers.stub import StubProvider
from tests.support.harness import Harness


def test_resolves_a_chat_model_by_id_to_the_lightweight_pipeline(harness: Harness) -> None:
    router = harness.gateway.router
    provider, pipeline = router.resolve("stub-chat")
    assert pipeline is ChatTemplatePipeline
    assert provider is harness.gateway.manager.get("stub-chat").provider  # type: ignore[union-attr]
    assert provider.config.id == "stub-chat"


def test_resolves_a_harmony_model_to_the_primary_pipeline(harness: Harness) -> None:
    provider, pipeline = harness.gateway.router.resolve("stub-harmony")
    assert pipeline is HarmonyPipeline
    assert provider.config.format == "harmony"


def test_an_alias_resolves_to_the_same_entry_as_its_id(harness: Harness) -> None:
    router = harness.gateway.router
    by_alias = router.resolve("stub-chat-alias")
    assert by_alias == router.resolve("stub-chat")
    assert router.entry("stub-chat-alias").config.id == "stub-chat"


@pytest.mark.parametrize("model", ["no-such-model", "STUB-CHAT", "stub-chat ", "", "stub"])
def test_an_unknown_id_is_model_not_found_on_param_model(harness: Harness, model: str) -> None:
    with pytest.raises(ModelNotFound) as info:
        harness.gateway.router.resolve(model)
    err = info.value
    assert err.param == "model"
    assert err.code == "model_not_found"
    assert repr(model) in err.message or f"'{model}'" in err.message
    assert err.status == 404


def test_an_unknown_id_does_not_fall_back_even_when_fallbacks_are_configured(
    make_harness: Callable[..., Harness],
) -> None:
    harness = make_harness(
        """
        [[models]]
        id = "a"
        provider = "stub"
        fallbacks = ["b"]

        [[models]]
        id = "b"
        provider = "stub"
        """
    )
    with pytest.raises(ModelNotFound):
        harness.gateway.router.resolve("c")


def test_pipeline_class_follows_the_format_not_the_role(make_harness: Callable[..., Harness]) -> None:
    harness = make_harness(
        """
        [[models]]
        id = "chat-primary"
        role = "primary"
        format = "chat"
        provider = "stub"

        [[models]]
        id = "harmony-light"
        role = "lightweight"
        format = "harmony"
        provider = "stub"
        """
    )
    router = harness.gateway.router
    assert router.resolve("chat-primary")[1] is ChatTemplatePipeline
    assert router.resolve("harmony-light")[1] is HarmonyPipeline


async def test_resolve_returns_the_stub_that_replaced_a_model_that_failed_to_load(
    make_harness: Callable[..., Harness], tmp_path: Path
) -> None:
    missing = tmp_path / "absent.gguf"
    harness = make_harness(
        f"""
        [server]
        cache_dir = "{tmp_path / "cache"}"

        [[models]]
        id = "real"
        aliases = ["real-alias"]
        provider = "llama_cpp"
        path = "{missing}"
        """
    )
    manager = harness.gateway.manager
    await manager.load_all()
    provider, pipeline = harness.gateway.router.resolve("real-alias")
    assert isinstance(provider, StubProvider)
    assert provider.stub and manager.get("real-alias").status == "loaded"  # type: ignore[union-attr]
    assert "missing_file" in (provider.stub_reason or "")
    assert pipeline is ChatTemplatePipeline
    failed, loaded = harness.of(ModelLoadFailed), harness.of(ModelLoaded)
    assert [(e.model_id, e.reason) for e in failed] == [("real", "missing_file")]
    assert [(e.model_id, e.stub) for e in loaded] == [("real", True)]
    assert harness.events.index(failed[0]) < harness.events.index(loaded[0])
