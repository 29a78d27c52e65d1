"""Shared fixtures: one served stub gateway for the whole session."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.configs import STUB_MODELS
from tests.support.served import ServedGateway, serve

# openai-harmony as the reference renderer, for the Harmony tests of every layer; the tiny
# gpt-oss GGUF, for the real llama.cpp path of Harmony models
pytest_plugins = ["tests.support.harmony_reference", "tests.support.tiny_gpt_oss"]


@pytest.fixture(scope="session")
def stub_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedGateway]:
    with serve(STUB_MODELS, tmp_path_factory.mktemp("stub-gw")) as gw:
        yield gw


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def default_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedGateway]:
    """The embedded default, served as a user would run it: three real models and a stub."""
    with serve(None, tmp_path_factory.mktemp("default-gw")) as gw:
        yield gw
