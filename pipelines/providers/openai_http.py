"""The `openai_http` provider: a model served by OpenAI-compatible servers (vLLM,
llama.cpp's server, another mia-gateway) over HTTP.

Every request goes upstream streamed (`stream: true`, usage included), whatever the
client asked: pieces are relayed as they arrive, and a non-stream client gets them
collected by the pipeline as for a local model. Chat format only: the pipeline hands
over messages (and the request, for tools, stop, response format); raw Harmony
renders are not sent upstream. A legacy completion's raw prompt goes to the upstream's
own `/completions`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import http.cookiejar
import os
from collections.abc import AsyncGenerator
from typing import TYPE_CHECKING, cast

import httpx
import msgspec

from pipelines.embedding import EmbeddingRequest, Embeddings
from pipelines.events import EventBus
from pipelines.providers.base import CancelToken, DecodeParams, LoadFailure, Prompt
from pipelines.types import Output
from pipelines.upstream.completions import CompletionChunkReader, completion_body
from pipelines.upstream.embeddings import embed_via
from pipelines.upstream.errors import UpstreamFailure, from_status, from_transport
from pipelines.upstream.pool import Upstream, UpstreamPool
from pipelines.upstream.routed import UpstreamRouted
from pipelines.upstream.wire import ChunkReader, SSEDecoder, chat_body

if TYPE_CHECKING:
    from pipelines.config import UpstreamModelConfig

__all__ = ["OpenAIHTTPProvider"]

_ENCODER = msgspec.json.Encoder()
_USER_AGENT = "mia-gateway"
_DRAIN_SECONDS = 0.2
"""How long the end of a body may lag behind its `[DONE]` before the connection is given up."""


async def _drain(received: AsyncGenerator[bytes, None]) -> None:
    """Reads what follows `[DONE]` (the end of the chunked body, normally already here).

    httpx puts a connection back in its pool only once its response was read to the
    end; a stream left at `[DONE]` closes it, and the next request to that upstream
    opened a new connection (a TCP and, over https, a TLS handshake). An upstream that
    keeps the body open after `[DONE]` loses its connection instead."""
    with contextlib.suppress(httpx.HTTPError, TimeoutError):
        async with asyncio.timeout(_DRAIN_SECONDS):
            async for _ in received:
                pass


class OpenAIHTTPProvider(UpstreamRouted):
    """One pooled `httpx.AsyncClient` per upstream, opened at load, closed at unload."""

    kind = "openai_http"
    stub = False
    config: UpstreamModelConfig

    def __init__(self, config: UpstreamModelConfig, *, bus: EventBus) -> None:
        super().__init__(config)
        self.pool = UpstreamPool(config, bus)

    @functools.cached_property
    def capabilities(self) -> dict[str, bool]:
        # Passed through: the upstream decides; an upstream that cannot do one says so
        # with a 400, which reaches the client as it was. Not the prompt's own tokens: a
        # completion stream does not say which of its tokens were the prompt's.
        return {
            "tool_calls": True,
            "reasoning": True,
            "json_schema": True,
            "logprobs": True,
            "streaming": True,
            "embeddings": self.config.embedding,
            "prompt_tokens": False,
        }

    def _api_keys(self) -> dict[int, str]:
        """Each keyed upstream's key, by upstream index; `LoadFailure` when the model cannot
        be served (a format other than chat, a key variable that is not set)."""
        config = self.config
        if config.format != "chat":
            raise LoadFailure(
                "unsupported_format", f"openai_http serves chat-format models only (model {config.id!r}: format chat)"
            )
        keys: dict[int, str] = {}
        for i, up in enumerate(config.upstreams):
            if up.api_key_env is None:
                continue
            key = os.environ.get(up.api_key_env)
            if not key:
                raise LoadFailure("missing_api_key", f"environment variable {up.api_key_env} is not set")
            keys[i] = key
        return keys

    def foreseen_failure(self) -> LoadFailure | None:
        try:
            self._api_keys()
        except LoadFailure as failure:
            return failure
        return None

    async def load(self) -> None:
        config = self.config
        keys = self._api_keys()
        timeout = httpx.Timeout(
            connect=config.connect_timeout,
            read=config.read_timeout,
            write=config.read_timeout,
            pool=config.read_timeout,
        )
        # Admission control bounds how many requests run at once, so the pool need not.
        limits = httpx.Limits(max_connections=None, max_keepalive_connections=64)

        def client(up: Upstream) -> httpx.AsyncClient:
            headers = {"user-agent": _USER_AGENT}
            if up.index in keys:
                headers["authorization"] = f"Bearer {keys[up.index]}"
            # One client carries every user's requests: a cookie an upstream sets must not
            # ride on anyone's next request (a jar whose policy accepts none).
            jar = http.cookiejar.CookieJar(policy=http.cookiejar.DefaultCookiePolicy(allowed_domains=[]))
            return httpx.AsyncClient(timeout=timeout, limits=limits, headers=headers, cookies=jar)

        self.pool.open(client)

    async def unload(self) -> None:
        await self.pool.aclose()

    async def embed(self, request: EmbeddingRequest) -> Embeddings:
        """Relayed to the upstreams in the pool's order: a retryable failure moves on to
        the next one; the last failure is raised when none answered."""
        failure: UpstreamFailure | None = None
        for upstream in self.pool.candidates():
            where = f"Upstream {upstream.label} of model '{self.config.id}'"
            try:
                return await embed_via(self.pool, upstream, request, upstream.config.model or self.config.id, where)
            except UpstreamFailure as exc:
                if not exc.retryable:
                    raise
                failure = exc
        assert failure is not None  # a pool has at least one upstream
        raise failure

    async def generate_via(
        self, upstream: Upstream, prompt: Prompt, params: DecodeParams, cancel: CancelToken
    ) -> AsyncGenerator[Output, None]:
        where = f"Upstream {upstream.label} of model '{self.config.id}'"
        remote_model = upstream.config.model or self.config.id
        client = upstream.client
        if client is None:
            raise UpstreamFailure(f"{where} is not open (model unloaded).", reason="connect_error", retryable=True)
        # a raw prompt (a legacy completion) goes to the upstream's own /completions
        if prompt.raw:
            path, body = "completions", completion_body(remote_model, prompt, params)
            reader: ChunkReader = CompletionChunkReader(where)
        else:
            path, body, reader = "chat/completions", chat_body(remote_model, prompt, params), ChunkReader(where)
        headers = {"content-type": "application/json", "accept": "text/event-stream"}
        if prompt.request is not None:
            headers["x-request-id"] = prompt.request.request_id
        result = "bad_response"
        upstream.in_flight += 1
        try:
            try:
                async with client.stream(
                    "POST", f"{upstream.base_url}/{path}", content=_ENCODER.encode(body), headers=headers
                ) as response:
                    if response.status_code != 200:
                        raise from_status(response.status_code, await response.aread(), where, remote_model)
                    ctype = response.headers.get("content-type", "")
                    if not ctype.startswith("text/event-stream"):
                        snippet = (await response.aread())[:200]
                        raise UpstreamFailure(
                            f"{where} answered {ctype or 'no content type'}, not an event stream: {snippet!r}",
                            reason="bad_response",
                            retryable=True,
                        )
                    sse = SSEDecoder()
                    # closed here, not whenever it is collected (httpx types it as a bare iterator)
                    received = cast("AsyncGenerator[bytes, None]", response.aiter_bytes())
                    async with contextlib.aclosing(received):
                        async for data in received:
                            for event in sse.feed(data):
                                for piece in reader.pieces(event):
                                    yield piece
                                if reader.done or cancel.cancelled:
                                    break
                            if reader.done or cancel.cancelled:
                                break
                        else:
                            last = sse.flush()  # a last event without its blank line
                            if last is not None:
                                for piece in reader.pieces(last):
                                    yield piece
                        if reader.done and not cancel.cancelled:
                            await _drain(received)
                    if cancel.cancelled:
                        result = "cancelled"
                        return
                    if not reader.finished:
                        raise UpstreamFailure(
                            f"{where} ended its stream before finishing.", reason="network_error", retryable=True
                        )
                    final = reader.final()
                    if final is not None:
                        yield final
                    result = "ok"
            except httpx.TransportError as exc:
                raise from_transport(exc, where) from exc
            except httpx.HTTPError as exc:  # a body that would not decode, and the like
                raise UpstreamFailure(
                    f"{where} sent a bad response: {exc}", reason="bad_response", retryable=True
                ) from exc
        except UpstreamFailure as failure:
            result = failure.reason
            raise
        except GeneratorExit:
            # the pipeline stopped reading: the client left, or a stop sequence matched here
            result = "cancelled" if cancel.cancelled else "ok"
            raise
        except asyncio.CancelledError:
            result = "cancelled"
            raise
        finally:
            upstream.in_flight -= 1
            self.pool.record(upstream, result)
