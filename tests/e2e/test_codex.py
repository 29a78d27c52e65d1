"""What Codex CLI sends, served: its request as captured off the wire."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.responses import check_stream, events
from tests.support.served import ServedGateway, serve

pytestmark = pytest.mark.slow

DATA = Path(__file__).resolve().parents[1] / "data"
CAPTURED = DATA / "codex" / "exec-request-0.171.0.json"
"""The first request of `codex exec` 0.171.0 with a custom provider, as it came off the wire."""


def _config() -> str:
    return """
[[models]]
id = "codex-stub"
role = "primary"
format = "harmony"
provider = "stub"
context_length = 65536
"""


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedGateway]:
    with serve(_config(), tmp_path_factory.mktemp("codex-gw")) as gw:
        yield gw


def test_codexs_captured_request_is_served_as_sent(gateway: ServedGateway) -> None:
    body = json.loads(CAPTURED.read_bytes())
    # what the issue lists Codex as sending, so that the captured file stays the real thing
    assert body["store"] is False and body["stream"] is True and body["include"] == ["reasoning.encrypted_content"]
    assert body["reasoning"] == {"summary": "auto"} and body["prompt_cache_key"] and body["client_metadata"]
    kinds = [t["type"] for t in body["tools"]]
    assert kinds.count("function") == 7 and kinds.count("namespace") == 1 and "web_search" in kinds
    body["model"] = "codex-stub"
    with httpx.stream("POST", f"{gateway.api_url}/responses", json=body, timeout=120) as r:
        assert r.status_code == 200, r.read()
        assert r.headers["x-mia-ignored-tools"] == "web_search"
        sent = events(r.read())
    final = check_stream(sent)
    assert final["status"] == "completed" and final["store"] is False
    assert [t["name"] for t in final["tools"]] == [t["name"] for t in body["tools"] if t["type"] != "web_search"]
