"""The HTTP/1.1 protocol the gateway is served with: uvicorn's httptools protocol plus
the two bounds it lacks, on the request line and headers.

- **Time**: uvicorn closes a keep-alive connection that stays idle, but once a request's
  first byte has arrived it waits for the rest of the headers for ever, and it never
  times out a fresh connection that sends nothing. Here a connection has `header_timeout`
  seconds from its opening, or from a request's first byte, to complete the request's
  headers: then a 408 in OpenAI's envelope (or, if nothing was sent, a plain close).
- **Size**: the request line and headers may hold at most `max_header_bytes`; past it a
  431 in the envelope, and the connection closes (uvicorn's httptools protocol took
  20 MB of headers here).
- **Connections**: while more than `max_connections` are open, a request that arrives
  is a 503 in the envelope (`Retry-After`) and its connection closes (uvicorn's own
  `limit_concurrency` answers in plain text).

Each refusal is a `RequestFinished` event like any answered request (its endpoint as far
as the request line told), so it is logged and counted; each connection opened or closed
is a `ConnectionsChanged` (the `mia_http_connections` gauge).
The body has its own bounds in the chat route (`max_body_bytes`, `body_timeout`).
"""

from __future__ import annotations

import asyncio
import resource
from typing import Any

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from app.context import endpoint_of, new_request_id
from compat.errors import from_gateway_error
from compat.refusals import HeadersTooLarge, Overloaded, RequestTimeout
from pipelines.errors import GatewayError
from pipelines.events import ConnectionsChanged, EventBus, RequestFinished

__all__ = ["BODY_COMPLETE", "BoundedHttpProtocol", "bounded_http_protocol", "fit_open_files_limit"]

BODY_COMPLETE = "mia.body_complete"
"""The scope extension set once the request's whole body has been received."""


class BoundedHttpProtocol(HttpToolsProtocol):
    header_timeout: float = 10.0
    max_header_bytes: int = 64 * 1024
    max_connections: int = 2048
    bus: EventBus | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._header_bytes = 0
        self._began = 0.0
        """Loop time of the request's first byte."""
        self._in_request = False
        """Bytes of the request in progress have arrived, its headers not all of them."""
        self._fresh = True
        """No byte of a request has arrived yet on this connection."""
        self._refused = False
        self._deadline: asyncio.TimerHandle | None = None
        super().connection_made(transport)
        self._arm()
        if self.bus is not None:
            self.bus.emit(ConnectionsChanged(open=len(self.connections)))

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)
        if self.bus is not None:
            self.bus.emit(ConnectionsChanged(open=len(self.connections)))

    def _arm(self) -> None:
        if self._deadline is None:
            self._deadline = self.loop.call_later(self.header_timeout, self._headers_late)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _headers_late(self) -> None:
        """The header clock ran out, or may have: one timer per connection, armed once and
        checked when it fires (arming and cancelling one per request cost 2 % of a stub
        request), so the request it was armed for may be long answered."""
        self._deadline = None
        if self.transport.is_closing():
            return
        if not self._in_request:
            if self._fresh:
                self.transport.close()  # opened, and nothing sent: nobody to answer
            return  # between requests: the keep-alive timeout's business; the next one re-arms
        left = self._began + self.header_timeout - self.loop.time()
        if left > 0:
            self._deadline = self.loop.call_later(left, self._headers_late)
            return
        if self.cycle is not None and not self.cycle.response_complete:
            # Pipelined bytes of the next request while this one's response runs: its
            # header clock starts once the connection is free for it.
            self._arm()
            return
        self._refuse(RequestTimeout("headers", self.header_timeout))

    def _refuse(self, refusal: GatewayError) -> None:
        """Answers the request in progress with `refusal` and closes; the parser's further
        callbacks for it are ignored (no request reaches the app)."""
        self._refused = True
        self._disarm()
        err = from_gateway_error(refusal)
        status = err.status
        body = err.encode()
        request_id = new_request_id()
        self.transport.write(
            b"".join(
                [
                    STATUS_LINE[status],
                    b"content-type: application/json\r\n",
                    b"content-length: " + str(len(body)).encode() + b"\r\n",
                    b"x-request-id: " + request_id.encode() + b"\r\n",
                    *(f"{name}: {value}\r\n".encode() for name, value in err.headers.items()),
                    b"connection: close\r\n\r\n",
                    body,
                ]
            )
        )
        self.transport.close()
        if self.bus is not None:
            self.bus.emit(
                RequestFinished(
                    request_id=request_id,
                    endpoint=self._endpoint(),
                    method=self._method(),
                    status=status,
                    duration_seconds=self.loop.time() - self._began,
                )
            )

    def _endpoint(self) -> str:
        """The endpoint label of the request's path, as far as it came (`endpoint_of` keeps
        labels bounded: a cut path is `other`, or the route it already names)."""
        url: bytes = getattr(self, "url", b"")
        return endpoint_of(url.partition(b"?")[0].decode("ascii", "replace")) if url else "other"

    def _method(self) -> str:
        try:
            return str(self.parser.get_method().decode("ascii"))
        except Exception:  # the request line has not come yet
            return ""

    def _count(self, n: int) -> bool:
        """Counts header bytes; False (and a 431) once they pass the bound."""
        self._header_bytes += n
        if self._header_bytes > self.max_header_bytes:
            self._refuse(HeadersTooLarge(self.max_header_bytes))
            return False
        return True

    # -- parser callbacks --------------------------------------------------------------

    def on_message_begin(self) -> None:
        if self._refused:
            return
        self._header_bytes = 0
        self._in_request = True
        self._fresh = False
        self._began = self.loop.time()
        self._arm()
        super().on_message_begin()

    def on_url(self, url: bytes) -> None:
        if not self._refused and self._count(len(url)):
            super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        if not self._refused and self._count(len(name) + len(value) + 4):
            super().on_header(name, value)

    def on_headers_complete(self) -> None:
        if self._refused:
            return
        self._in_request = False  # (the timer stays: see `_headers_late`)
        if len(self.connections) > self.max_connections:
            self._refuse(Overloaded())
            return
        super().on_headers_complete()
        cycle = self.cycle
        if cycle is not None:
            cycle.transport = _Corked(self.transport, self.loop)  # type: ignore[assignment]

    def on_body(self, body: bytes) -> None:
        if not self._refused:
            super().on_body(body)

    def on_message_complete(self) -> None:
        if not self._refused:
            # Tells the app the whole body is here (its reading cannot stall: no body
            # timeout to arm). Parsed before the request's task first runs when the
            # request came in one piece, as almost all do.
            self.scope.setdefault("extensions", {})[BODY_COMPLETE] = {}  # (ASGI extensions are dicts)
            super().on_message_complete()

    def data_received(self, data: bytes) -> None:
        if not self._refused:
            super().data_received(data)


class _Corked:
    """A request's view of its connection that gathers what the response writes during one
    loop turn and sends it with one system call at the turn's end: a JSON answer's head
    and body (two packets before), the events of a stream that come together (an
    upstream's read holding several). A write and its send were a fifth of a stub
    request's time; what is held waits at most until the loop's next turn."""

    __slots__ = ("_held", "_loop", "_scheduled", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._held: list[bytes] = []
        self._scheduled = False

    def write(self, data: bytes) -> None:
        self._held.append(data)
        if not self._scheduled:
            self._scheduled = True
            self._loop.call_soon(self._send)

    def _send(self) -> None:
        self._scheduled = False
        held, self._held = self._held, []
        if held and not self._transport.is_closing():
            self._transport.write(held[0] if len(held) == 1 else b"".join(held))

    def close(self) -> None:
        self._send()
        self._transport.close()

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


_SPARE_FILES = 256
"""Open files the gateway needs beside its client connections (model files, logs, upstream
sockets, the listening socket)."""


def fit_open_files_limit(max_connections: int) -> str | None:
    """Raises this process's soft limit on open files (up to its hard limit) so that
    `max_connections` clients can be held: past the soft limit, `accept` fails (EMFILE)
    before a request can be answered with the 503. Returns a warning when the hard limit
    is too low, None when the limit fits."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = max_connections + _SPARE_FILES
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return None
    target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    if target < needed:
        return (
            f"[server].max_connections = {max_connections} needs about {needed} open files, but this process "
            f"may open at most {hard} (RLIMIT_NOFILE); past that, new connections fail before they can be "
            "answered. Lower max_connections or raise the limit (ulimit -n)."
        )
    return None


def bounded_http_protocol(
    *, header_timeout: float, max_header_bytes: int, max_connections: int, bus: EventBus | None = None
) -> type[BoundedHttpProtocol]:
    """The protocol class with the server's bounds (and the bus its refusals are reported
    on), for `uvicorn.Config(http=...)`."""
    attrs: dict[str, Any] = {
        "header_timeout": header_timeout,
        "max_header_bytes": max_header_bytes,
        "max_connections": max_connections,
        "bus": bus,
    }
    return type("BoundedHttpProtocol", (BoundedHttpProtocol,), attrs)
