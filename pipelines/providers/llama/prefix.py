"""The prefix cache: which free slot a prompt takes, and how much of it that slot's cells
(or another slot's, copied over) already hold.

A slot keeps the tokens its cells hold after its generation leaves, so a newcomer whose
prompt starts the same way (a shared system prompt, the next turn of a chat) evaluates
only the rest of its prompt.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pipelines.providers.llama.runtime import runtime
from pipelines.providers.llama.sequences import EngineStats, Seq, Slot, shared_prefix

if TYPE_CHECKING:
    from pipelines.providers.llama.host_cache import HostCache

__all__ = ["LAST_READ", "seat"]

LAST_READ = 2
"""A prompt's last chunk is at least this long, cached prefix or not: its last token's
logits give the first output, and a one-token decode of it is not bit-exact against the
same token read in a longer chunk (a 925-token prompt answered differently when all but
its last token came from the cache); two tokens or more reproduce a fresh read."""

_MIN_COPY = 16
"""Copying another slot's prefix moves its whole KV stream (tens of MB, a few ms): worth it
from this many more cached tokens on."""

_MIN_RESTORE = 4
"""A state kept in host memory comes back in about the time its bytes take to copy (0.6 ms
for 18 SmolLM2 tokens), far less than evaluating a few tokens: worth it from this many
more cached tokens on."""


def seat(
    seq: Seq, free: list[Slot], slots: list[Slot], memory: Any, stats: EngineStats, host: HostCache | None = None
) -> Slot:
    """The free slot `seq` takes, its cells trimmed to the prefix they share with its
    prompt; `seq.fed` and `seq.cached` say how much of the prompt they hold.

    The slot sharing the longest prefix, when `seq` continues or repeats that slot's
    conversation. When it parts from it inside that slot's prompt (another user after a
    common system prompt), an empty slot, else the least recently used one, is emptied
    instead: trimming the best slot would throw away a conversation that may come back
    while an older or empty slot holds nothing as useful. Whenever another slot, free or
    busy, or a state kept in host memory (`host`) shares a much longer prefix than the
    chosen slot (the common system prompt; users of one arriving together; a
    conversation whose slot was taken), its cells are copied over instead of evaluated.
    What the chosen slot loses is kept in host memory first."""
    llama_cpp = runtime()
    tokens = seq.plan.tokens
    shared, slot = max(((shared_prefix(s.tokens, tokens), s) for s in free), key=lambda p: (p[0], -p[1].used_at))
    if shared < slot.prompt:
        victim = min(free, key=lambda s: (bool(s.tokens), s.used_at))
        if victim is not slot:
            slot, shared = victim, shared_prefix(victim.tokens, tokens)
    donor, donated = None, shared + _MIN_COPY - 1
    for other in slots:
        n = shared_prefix(other.tokens, tokens) if other is not slot else 0
        if n > donated:
            donor, donated = other, n
    stored, saved = host.best(tokens) if host is not None else (0, None)
    # The prompt's last tokens are read again: their logits give the first token.
    most = max(0, len(tokens) - LAST_READ)
    covered = donated if donor is not None else shared
    if host is not None and saved is not None and stored >= covered + _MIN_RESTORE:
        host.save(slot, 0)
        keep = _trim(memory, slot, min(stored, most)) if host.restore(saved, slot) else 0
    elif donor is not None:
        if host is not None:
            host.save(slot, 0)
        keep = min(donated, most)
        # Across KV streams llama.cpp copies whole sequences (at the next decode); the tail goes.
        llama_cpp.llama_memory_seq_cp(memory, donor.seq_id, slot.seq_id, -1, -1)
        llama_cpp.llama_memory_seq_rm(memory, slot.seq_id, keep, -1)
        slot.tokens = donor.tokens[:keep]
        stats.copied_prefixes += 1
    else:
        keep = min(shared, most)
        if keep < len(slot.tokens):
            if host is not None:
                host.save(slot, keep)
            keep = _trim(memory, slot, keep)
    seq.fed = seq.cached = keep
    return slot


def _trim(memory: Any, slot: Slot, keep: int) -> int:
    """Drops `slot`'s cells from `keep` on; all of them where llama.cpp refuses a partial
    removal. Returns how many it holds."""
    llama_cpp = runtime()
    if keep < len(slot.tokens) and not llama_cpp.llama_memory_seq_rm(memory, slot.seq_id, keep, -1):
        llama_cpp.llama_memory_seq_rm(memory, slot.seq_id, -1, -1)
        keep = 0
    del slot.tokens[keep:]
    return keep
