"""App tests: whole gateways (the app's composition root) driven in process."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path

import pytest

from app.gateway import build_gateway
from app.settings import load_settings
from tests.support.configs import STUB_MODELS
from tests.support.harness import Harness

_files = itertools.count()


@pytest.fixture
def make_app_harness(tmp_path: Path) -> Callable[..., Harness]:
    """`make_app_harness(toml)`: the gateway `serve` would build from these settings (read
    from a real file, no environment overrides but the test's own data folder), with every
    event recorded."""

    def make(toml: str = STUB_MODELS) -> Harness:
        path = tmp_path / f"settings-{next(_files)}.toml"
        path.write_text(toml)
        harness = Harness(
            build_gateway(load_settings(path, env={"MIA_STORAGE_DATA_DIR": str(tmp_path)}), current_date="2025-09-01")
        )
        harness.gateway.bus.subscribe(harness.events.append, chunks=True)
        return harness

    return make
