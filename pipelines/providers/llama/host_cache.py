"""Prompt states kept in host memory once their slot is taken for another prompt.

A slot's cells are the prefix cache, but there are only `slots` of them: with more
conversations than slots, each newcomer trims one away. Before that, the slot's state
(`llama_state_seq_get_data`: its cells' keys and values, position by position) is copied
into host memory, and a later prompt that starts the same way gets it back
(`llama_state_seq_set_data`) instead of evaluating it again. The bytes are the cells'
own, so a restored prefix answers exactly as a prefix that never left its slot.

Bounded by the passport's `prompt_cache_mib`; least recently used states go first. All
of it runs on the engine's scheduler thread.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass
from typing import Any

from pipelines.providers.llama.runtime import runtime
from pipelines.providers.llama.sequences import EngineStats, Slot, shared_prefix

__all__ = ["MIN_SAVED", "HostCache"]

MIN_SAVED = 32
"""Fewer tokens than this to lose are not worth a copy: they read again in one chunk."""


@dataclass(eq=False)
class _Saved:
    tokens: list[int]
    data: Any
    """The state's bytes (a ctypes array, as llama.cpp reads and writes them)."""
    size: int


class HostCache:
    """Slot states by their tokens, at most `budget` bytes of them."""

    def __init__(self, ctx: Any, memory: Any, budget: int, stats: EngineStats) -> None:
        self._ctx = ctx
        self._memory = memory
        self._budget = budget
        self._stats = stats
        self._saved: list[_Saved] = []  # least recently used first

    @property
    def size(self) -> int:
        return sum(saved.size for saved in self._saved)

    def save(self, slot: Slot, keep: int) -> None:
        """Before `slot`'s cells past `keep` go: keeps its state unless what goes is short
        or a state already kept holds it (the same conversation, as long or longer)."""
        tokens = slot.tokens
        if self._budget <= 0 or len(tokens) - keep < MIN_SAVED:
            return
        for saved in self._saved:
            if _starts(saved.tokens, tokens):
                self._touch(saved)
                return
        llama_cpp = runtime()
        size = int(llama_cpp.llama_state_seq_get_size(self._ctx, slot.seq_id))
        if size <= 0 or size > self._budget:
            return
        data = (ctypes.c_uint8 * size)()
        if int(llama_cpp.llama_state_seq_get_data(self._ctx, data, size, slot.seq_id)) != size:
            return
        # An earlier turn of this conversation is a prefix of this one: this one serves it.
        self._saved = [s for s in self._saved if not _starts(tokens, s.tokens)]
        self._saved.append(_Saved(list(tokens), data, size))
        while self.size > self._budget:
            self._saved.pop(0)
        self._stats.saved_prompts += 1
        self._stats.host_bytes = self.size

    def best(self, tokens: list[int]) -> tuple[int, _Saved | None]:
        """The kept state sharing the longest prefix with `tokens`, and that length."""
        shared, best = 0, None
        for saved in self._saved:
            n = shared_prefix(saved.tokens, tokens)
            if n > shared:
                shared, best = n, saved
        return shared, best

    def restore(self, saved: _Saved, slot: Slot) -> bool:
        """Puts `saved` into `slot`'s cells (empty first); False if llama.cpp refused,
        with the slot left empty."""
        llama_cpp = runtime()
        llama_cpp.llama_memory_seq_rm(self._memory, slot.seq_id, -1, -1)
        if int(llama_cpp.llama_state_seq_set_data(self._ctx, saved.data, saved.size, slot.seq_id)) != saved.size:
            llama_cpp.llama_memory_seq_rm(self._memory, slot.seq_id, -1, -1)
            slot.tokens = []
            if saved in self._saved:
                self._saved.remove(saved)
                self._stats.host_bytes = self.size
            return False
        slot.tokens = list(saved.tokens)
        self._touch(saved)
        self._stats.restored_prompts += 1
        return True

    def _touch(self, saved: _Saved) -> None:
        # (Gone already when saving the slot it is restored into made room.)
        if saved in self._saved:
            self._saved.remove(saved)
            self._saved.append(saved)


def _starts(tokens: list[int], prefix: list[int]) -> bool:
    return len(prefix) <= len(tokens) and tokens[: len(prefix)] == prefix
