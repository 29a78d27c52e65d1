"""The Responses route under settings of its own: hosted tools refused instead of left out."""

from __future__ import annotations

from collections.abc import Callable

from tests.support.app_client import asgi
from tests.support.configs import STUB_MODELS
from tests.support.harness import Harness

HOSTED = [{"type": "function", "name": "f", "parameters": {"type": "object"}}, {"type": "web_search"}]


async def test_refused_hosted_tools_are_a_400_naming_the_tool(make_app_harness: Callable[..., Harness]) -> None:
    h = make_app_harness(STUB_MODELS.replace("[server]\n", '[server]\nhosted_tools = "refuse"\n', 1))
    async with asgi(h) as client:
        r = await client.post("/v1/responses", json={"model": "stub-harmony", "input": "hi", "tools": HOSTED})
    assert r.status_code == 400
    err = r.json()["error"]
    assert (err["param"], err["code"], err["type"]) == (
        "tools[1].type",
        "unsupported_parameter",
        "invalid_request_error",
    )
    assert "web_search" in err["message"] and "hosted_tools" in err["message"]
    assert not h.events or all(type(e).__name__ != "GenerationStarted" for e in h.events)


async def test_by_default_they_are_left_out_and_the_request_is_served(make_app_harness: Callable[..., Harness]) -> None:
    h = make_app_harness(STUB_MODELS)
    async with asgi(h) as client:
        r = await client.post("/v1/responses", json={"model": "stub-harmony", "input": "hi", "tools": HOSTED})
    assert r.status_code == 200, r.text
    assert r.headers["x-mia-ignored-tools"] == "web_search"
    [ignored] = [e for e in h.events if type(e).__name__ == "ToolsIgnored"]
    assert ignored.tools == ["web_search"] and ignored.request_id == r.headers["x-request-id"]
