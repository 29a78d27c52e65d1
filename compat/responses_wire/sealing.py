"""Reasoning sealed for clients that keep it themselves.

Codex and other stateless clients send `store: false` with
`include: ["reasoning.encrypted_content"]`: each reasoning item then carries its text
sealed in `encrypted_content`, and the client passes the item back on its next request,
where it is opened and rendered into the conversation again (gpt-oss keeps its reasoning
while a tool-call chain runs). No server state is needed, so any replica that holds the
same key can continue the chain.

The seal is AES-256-GCM (`cryptography`'s AESGCM: authenticated, so a changed byte or
another key opens nothing) with a random 96-bit nonce per item. The key is derived with
HKDF-SHA256 from `[server] reasoning_key` (`MIA_REASONING_KEY`); without one, each process
draws a random key of its own: sealed reasoning then opens only in the process that sealed
it. A token reads `mia1.` + unpadded URL-safe base64 of nonce + ciphertext + tag.

Content that does not open (another key, a restart with no key set, OpenAI's own
ciphertext, a change in transit) is never an error: the item falls back to the text it
carries in the clear, if any, and is otherwise left out; the route names the count."""

from __future__ import annotations

import base64
import binascii
import os
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

__all__ = ["ReasoningSeal"]

_PREFIX: Final = "mia1."
_INFO: Final = b"mia-gateway responses reasoning v1"
"""HKDF's `info` and GCM's associated data: a key or token made for anything else does not fit."""
_NONCE_BYTES: Final = 12


class ReasoningSeal:
    """Seals reasoning text into `encrypted_content` and opens it again."""

    def __init__(self, secret: str | None = None) -> None:
        if secret is None:
            key = AESGCM.generate_key(bit_length=256)
        else:
            key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_INFO).derive(secret.encode())
        self._aead = AESGCM(key)
        self.ephemeral = secret is None
        """Whether the key was drawn for this process (no `reasoning_key` set)."""

    def seal(self, text: str) -> str:
        nonce = os.urandom(_NONCE_BYTES)
        sealed = nonce + self._aead.encrypt(nonce, text.encode(), _INFO)
        return _PREFIX + base64.urlsafe_b64encode(sealed).decode().rstrip("=")

    def open(self, token: str) -> str | None:
        """The text sealed in `token`, or None when it was not sealed with this key (or changed since)."""
        if not token.startswith(_PREFIX):
            return None
        body = token[len(_PREFIX) :]
        try:
            sealed = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
            return self._aead.decrypt(sealed[:_NONCE_BYTES], sealed[_NONCE_BYTES:], _INFO).decode()
        except (binascii.Error, ValueError, InvalidTag):
            # ValueError: a padding or length error from base64, or bytes that are not UTF-8
            return None
