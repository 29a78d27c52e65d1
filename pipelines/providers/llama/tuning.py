"""The continuous-batching engine's measured settings, each with what decided it."""

from __future__ import annotations

__all__ = ["ACK_WAIT", "FIRST_TOKEN_GRACE", "KV_UNIFIED", "MIN_CHUNK", "PROMPT_CHUNK"]

PROMPT_CHUNK = 64
"""Prompt tokens a step may read while other sequences are decoding. Every running stream
waits for the whole step, so this bounds what a newcomer's prompt adds to their token gaps:
one chunk per step (about 0.2 s for 64 tokens on a 2-core CPU, where a whole 512-token
batch would stall them for 1.5-2 s), at the cost of a few decode steps more for the
newcomer's first token (docs/performance.md has the trade-off measured). With nothing
else decoding, prompts are read in whole batches (`batch_size`)."""

MIN_CHUNK = 8
"""A prompt's chunks (but its last) have at least this many tokens: a decode call costs a
few milliseconds whatever its size."""

ACK_WAIT = 0.003
"""At most this long (seconds) the scheduler waits for the event loop to send a step's
first tokens: a busy loop must not hold decoding up."""

FIRST_TOKEN_GRACE = 0.002
"""Then this long (seconds) more for the client to read it: once the next decode starts,
llama.cpp's threads hold both cores, and a client on the same machine waited up to a
scheduler slice (3-5 ms) to parse its first token. With the grace, the time from the
gateway's first piece to the SDK's first chunk was 0.6-0.8 ms in 11 of 11 requests,
against 0.6-5.4 ms without (mean TTFT 41.3 against 46.2 ms, SmolLM2, one client)."""

KV_UNIFIED = False
"""One KV stream per sequence: each attends over its own cells only, which is faster than
one shared buffer when the sequences share no long prefix (llama.h's advice), and gives
each slot its full `context_length` out of `n_ctx = context_length * slots`. llama.cpp then
batches only consecutive increasing sequence ids in one pass, so the engine's `_step` keeps id order (out
of order, 4 sequences took 1.45x as long per step: docs/performance.md). Unified was no
faster in order, and there every sequence attends over all slots' cells, cached ones too."""
