"""Optional API keys (`Authorization: Bearer`), compared in constant time."""

from __future__ import annotations

import hmac
from pathlib import Path
from typing import TYPE_CHECKING

from app import paths
from app.settings import SettingsError
from compat.errors import from_gateway_error
from compat.refusals import InvalidApiKey

if TYPE_CHECKING:
    from litestar.types import ASGIApp, Receive, Scope, Send

    from app.settings import ServerSettings

__all__ = ["ApiKeyMiddleware", "load_keys"]

_OPEN = frozenset({paths.HEALTH, paths.READY})


def load_keys(server: ServerSettings) -> tuple[bytes, ...]:
    """The accepted keys: `api_keys` plus one per line of `api_keys_file` (blank lines and
    `#` comments skipped). A keys file that cannot be read, or holds no key, is a settings
    error: the operator asked for keys, so the gateway must not start open."""
    keys = [k.strip() for k in server.api_keys if k.strip()]
    if server.api_keys_file:
        path = Path(server.api_keys_file).expanduser()
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise SettingsError(
                f"invalid setting 'server.api_keys_file': cannot read {path}: {exc.strerror or exc}"
            ) from None
        except UnicodeDecodeError:
            raise SettingsError(f"invalid setting 'server.api_keys_file': {path} is not UTF-8") from None
        from_file = [s for s in (line.strip() for line in text.splitlines()) if s and not s.startswith("#")]
        if not from_file:
            raise SettingsError(f"invalid setting 'server.api_keys_file': {path} holds no key")
        keys += from_file
    return tuple(k.encode() for k in keys)


class ApiKeyMiddleware:
    """Rejects requests without a valid key with OpenAI's 401. Never logs or echoes keys."""

    def __init__(self, app: ASGIApp, keys: tuple[bytes, ...], *, protect_metrics: bool) -> None:
        self._app = app
        self._keys = keys
        self._open = _OPEN if protect_metrics else _OPEN | {paths.METRICS}
        refusal = from_gateway_error(InvalidApiKey())
        self._status = refusal.status
        self._headers = [
            (b"content-type", b"application/json"),
            (b"www-authenticate", b"Bearer"),
            *((k.encode(), v.encode()) for k, v in refusal.headers.items()),
        ]
        self._body = refusal.encode()

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
        await send({"type": "http.response.start", "status": self._status, "headers": self._headers})
        await send({"type": "http.response.body", "body": self._body, "more_body": False})
