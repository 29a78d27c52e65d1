"""The `openai_http` provider against a real HTTP/1.1 server on loopback (an asyncio server
in the test, playing the outside world): keep-alive connections are reused, an upstream
that holds its body open after `[DONE]` costs its connection but not the answer, and
events cut anywhere by the network read the same."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator, Callable

import pytest

from pipelines.providers.openai_http import OpenAIHTTPProvider
from tests.support.harness import Harness
from tests.support.upstream import chunk, remote_model, sse_bytes, usage

HarnessFactory = Callable[..., Harness]

WORDS = ("one", " two", " three")
STREAM = sse_bytes(chunk(""), *(chunk(w) for w in WORDS), chunk(finish="stop"), usage(5, 3))


class LoopbackUpstream:
    """Answers every POST with `parts` of a chunked event stream, one HTTP chunk each.

    `linger`: the body is left open after the last part (until the client hangs up);
    `set_cookie`: each answer sets a cookie. `heads` holds every request's head."""

    def __init__(self, parts: list[bytes], *, linger: bool = False, set_cookie: bool = False) -> None:
        self.parts = parts
        self.linger = linger
        self.set_cookie = set_cookie
        self.heads: list[bytes] = []
        self.connections = 0
        self.requests = 0
        self.server: asyncio.Server | None = None

    @property
    def base_url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}/v1"

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                self.heads.append(head)
                length = re.search(rb"(?i)content-length: *(\d+)", head)
                await reader.readexactly(int(length.group(1)) if length else 0)
                self.requests += 1
                cookie = b"set-cookie: session=one-users-secret; Path=/\r\n" if self.set_cookie else b""
                writer.write(
                    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n%stransfer-encoding: chunked\r\n\r\n"
                    % cookie
                )
                for part in self.parts:
                    writer.write(b"%x\r\n%s\r\n" % (len(part), part))
                    await writer.drain()
                if self.linger:
                    await reader.read()  # until the client gives up on the connection
                    return
                writer.write(b"0\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@contextlib.asynccontextmanager
async def loopback(
    parts: list[bytes], *, linger: bool = False, set_cookie: bool = False
) -> AsyncIterator[LoopbackUpstream]:
    upstream = LoopbackUpstream(parts, linger=linger, set_cookie=set_cookie)
    upstream.server = await asyncio.start_server(upstream.handle, "127.0.0.1", 0)
    async with upstream.server:
        yield upstream


async def relay(make_harness: HarnessFactory, upstream: LoopbackUpstream, requests: int) -> list[str]:
    h = make_harness(remote_model(upstreams=(upstream.base_url,)))
    contents = []
    for _ in range(requests):
        gen, _ = await h.run(h.request("remote"))
        assert gen.result is not None
        assert (gen.result.finish_reason, gen.result.usage.completion_tokens) == ("stop", 3)
        contents.append(gen.result.content)
    entry = h.gateway.manager.get("remote")
    assert entry is not None and isinstance(entry.provider, OpenAIHTTPProvider)
    (up,) = entry.provider.pool.upstreams
    assert (up.in_flight, up.consecutive_failures) == (0, 0)
    await h.gateway.manager.unload("remote")
    return contents


async def test_requests_one_after_another_share_one_upstream_connection(make_harness: HarnessFactory) -> None:
    async with loopback([STREAM]) as upstream:
        assert await relay(make_harness, upstream, 4) == ["one two three"] * 4
    assert (upstream.requests, upstream.connections) == (4, 1)


async def test_an_upstream_holding_its_body_open_after_done_loses_the_connection_not_the_answer(
    make_harness: HarnessFactory,
) -> None:
    async with loopback([STREAM], linger=True) as upstream:
        assert await relay(make_harness, upstream, 3) == ["one two three"] * 3
    assert (upstream.requests, upstream.connections) == (3, 3)


@pytest.mark.parametrize("size", [1, 5, 64])
@pytest.mark.parametrize("newline", [b"\n", b"\r\n"], ids=["lf", "crlf"])
async def test_events_cut_anywhere_by_the_network_read_the_same(
    make_harness: HarnessFactory, size: int, newline: bytes
) -> None:
    stream = STREAM.replace(b"\n", newline)
    parts = [stream[i : i + size] for i in range(0, len(stream), size)]
    async with loopback(parts) as upstream:
        assert await relay(make_harness, upstream, 2) == ["one two three"] * 2
    assert upstream.connections == 1


async def test_cookies_an_upstream_sets_are_never_sent_back(make_harness: HarnessFactory) -> None:
    # One client serves every user of the gateway: a cookie kept from one answer would ride
    # on everyone's next request.
    async with loopback([STREAM], set_cookie=True) as upstream:
        assert await relay(make_harness, upstream, 3) == ["one two three"] * 3
    assert len(upstream.heads) == 3
    assert not [head for head in upstream.heads if b"\ncookie:" in head.lower()]
