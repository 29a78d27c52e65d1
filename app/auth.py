"""Optional API keys (`Authorization: Bearer`), compared in constant time."""

from __future__ import annotations

import hmac
from pathlib import Path
from typing import TYPE_CHECKING

from compat.errors import http_error

if TYPE_CHECKING:
    from litestar.types import ASGIApp, Receive, Scope, Send

    from app.settings import ServerSettings

__all__ = ["ApiKeyMiddleware", "load_keys"]

_OPEN = frozenset({"/health", "/ready"})


def load_keys(server: ServerSettings) -> tuple[bytes, ...]:
    keys = list(server.api_keys)
    if server.api_keys_file:
        text = Path(server.api_keys_file).expanduser().read_text(encoding="utf-8")
        keys += [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]
    return tuple(k.encode() for k in keys)


class ApiKeyMiddleware:
    """Rejects requests without a valid key with OpenAI's 401. Never logs or echoes keys."""

    def __init__(self, app: ASGIApp, keys: tuple[bytes, ...], *, protect_metrics: bool) -> None:
        self._app = app
        self._keys = keys
        self._open = _OPEN if protect_metrics else _OPEN | {"/metrics"}
        self._body = http_error(
            401,
            "Incorrect API key provided. Send it as 'Authorization: Bearer <key>'.",
            code="invalid_api_key",
        ).encode()

    def _valid(self, presented: bytes) -> bool:
        ok = False
        for key in self._keys:  # no early exit: every key is compared, every time
            ok |= hmac.compare_digest(presented, key)
        return ok

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self._open:
            await self._app(scope, receive, send)
            return
        presented = b""
        for name, value in scope["headers"]:
            if name == b"authorization":
                scheme, _, token = value.partition(b" ")
                if scheme.lower() == b"bearer":
                    presented = token.strip()
                break
        if presented and self._valid(presented):
            await self._app(scope, receive, send)
            return
        await send(
            {
                "type": "http.response.start",
                "status": 401,
                "headers": [(b"content-type", b"application/json"), (b"www-authenticate", b"Bearer")],
            }
        )
        await send({"type": "http.response.body", "body": self._body, "more_body": False})
