"""Upstreams for tests: OpenAI-compatible streams as respx answers them, the settings of
models served by upstreams, and the ways an upstream fails."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterable
from typing import Any

import httpx
import respx

from pipelines.events import FallbackTriggered
from pipelines.providers.openai_http import OpenAIHTTPProvider
from pipelines.upstream import UpstreamPool
from tests.support.harness import Harness

UP1 = "http://up1.test/v1"


UP2 = "http://up2.test/v1"


UP3 = "http://up3.test/v1"


SSE = {"content-type": "text/event-stream"}


def remote_model(model_id: str = "remote", upstreams: Iterable[str] = (UP1,), **extra: Any) -> str:
    """A `[[models]]` table for an `openai_http` model (no probes unless asked)."""
    ups = ", ".join(f'{{ base_url = "{u}", model = "there-{i}" }}' for i, u in enumerate(upstreams))
    fields: dict[str, Any] = {"max_output_tokens": 64, "probe_seconds": 0, **extra}
    lines = [
        "[[models]]",
        f'id = "{model_id}"',
        'provider = "openai_http"',
        'format = "chat"',
        f"upstreams = [{ups}]",
        *(f"{k} = {json.dumps(v)}" for k, v in fields.items()),
    ]
    return "\n".join(lines) + "\n"


STUB_CHAT = """
[[models]]
id = "stub-chat"
provider = "stub"
format = "chat"
max_output_tokens = 64
"""


def chunk(
    content: str | None = None,
    *,
    reasoning_content: str | None = None,
    reasoning: str | None = None,
    tool_calls: list[dict[str, Any]] | None = None,
    finish: str | None = None,
    logprobs: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    delta: dict[str, Any] = {}
    for key, value in (
        ("content", content),
        ("reasoning_content", reasoning_content),
        ("reasoning", reasoning),
        ("tool_calls", tool_calls),
    ):
        if value is not None:
            delta[key] = value
    choice: dict[str, Any] = {"index": 0, "delta": delta, "finish_reason": finish}
    if logprobs is not None:
        choice["logprobs"] = {"content": logprobs}
    return {"id": "chatcmpl-up", "object": "chat.completion.chunk", "model": "there", "choices": [choice]}


def usage(prompt: int, completion: int, reasoning: int | None = None) -> dict[str, Any]:
    u: dict[str, Any] = {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}
    if reasoning is not None:
        u["completion_tokens_details"] = {"reasoning_tokens": reasoning}
    return {"id": "chatcmpl-up", "object": "chat.completion.chunk", "choices": [], "usage": u}


def sse_bytes(*events: dict[str, Any] | str, done: bool = True) -> bytes:
    out = b"".join(b"data: " + (e if isinstance(e, str) else json.dumps(e)).encode() + b"\n\n" for e in events)
    return out + (b"data: [DONE]\n\n" if done else b"")


def answer(*words: str, prompt_tokens: int | None = 7) -> httpx.Response:
    """A well-formed upstream stream: a role chunk, one chunk per word, stop, usage."""
    events: list[dict[str, Any]] = [chunk("")]
    events += [chunk(w) for w in words]
    events.append(chunk(finish="stop"))
    if prompt_tokens is not None:
        events.append(usage(prompt_tokens, len(words)))
    return httpx.Response(200, headers=SSE, content=sse_bytes(*events))


class BrokenStream(httpx.AsyncByteStream):
    """Sends `parts`, then fails the way a dying upstream does."""

    def __init__(self, parts: Iterable[bytes], exc: Exception) -> None:
        self._parts = list(parts)
        self._exc = exc

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for part in self._parts:
            yield part
        raise self._exc


def dies_after(*words: str) -> httpx.Response:
    """An upstream that streams `words` and then loses its connection."""
    parts = [sse_bytes(chunk(""), done=False), *(sse_bytes(chunk(w), done=False) for w in words)]
    return httpx.Response(200, headers=SSE, stream=BrokenStream(parts, httpx.ReadError("connection reset")))


def body_of(route: respx.Route, call: int = -1) -> dict[str, Any]:
    return json.loads(route.calls[call].request.content)


CHAT = {"model": "remote", "messages": [{"role": "user", "content": "Hello"}]}


CHAIN = remote_model("a", (UP1, UP2), fallbacks=["b"]) + remote_model("b", (UP3,))


# what goes wrong -> (the hop's reason, the client's status once nothing is left to try)
BEFORE_FIRST_TOKEN: dict[str, tuple[Any, str, int]] = {
    "connect_error": (httpx.ConnectError("connection refused"), "connect_error", 502),
    "connect_timeout": (httpx.ConnectTimeout("timed out"), "timeout", 504),
    "read_timeout": (httpx.ReadTimeout("timed out"), "timeout", 504),
    "429": (httpx.Response(429, json={"error": {"message": "busy"}}), "rate_limited", 429),
    "500": (httpx.Response(500, json={"error": {"message": "boom"}}), "server_error", 502),
    "503": (httpx.Response(503, text="overloaded"), "server_error", 502),
}


KINDS = sorted(BEFORE_FIRST_TOKEN)


def fail(route: respx.Route, kind: str) -> respx.Route:
    effect = BEFORE_FIRST_TOKEN[kind][0]
    return route.mock(side_effect=effect) if isinstance(effect, Exception) else route.mock(return_value=effect)


def routes(respx_mock: respx.MockRouter) -> tuple[respx.Route, respx.Route, respx.Route]:
    return (
        respx_mock.post(f"{UP1}/chat/completions"),
        respx_mock.post(f"{UP2}/chat/completions"),
        respx_mock.post(f"{UP3}/chat/completions"),
    )


def hops(h: Harness, request_id: str) -> list[tuple[str, str, str]]:
    return [(e.from_model, e.to_model, e.reason) for e in h.of(FallbackTriggered, request_id)]


def pool_of(h: Harness, model_id: str) -> UpstreamPool:
    entry = h.gateway.manager.get(model_id)
    assert entry is not None and isinstance(entry.provider, OpenAIHTTPProvider)
    return entry.provider.pool
