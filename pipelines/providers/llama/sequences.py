"""What the engine keeps per slot and per generation, and what it hands back to requests."""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass, field
from typing import Any

from pipelines.providers.base import CancelToken
from pipelines.providers.llama.prompt import Plan
from pipelines.types import LogprobEntry, Piece, Report

__all__ = [
    "DONE",
    "LEFT",
    "Done",
    "EngineStats",
    "Group",
    "Item",
    "Left",
    "Outbox",
    "PromptStats",
    "Seq",
    "Slot",
    "decode_passes",
    "shared_prefix",
]


class Done:
    """End of a generation, sent through its queue after the last piece."""


DONE = Done()


class Left:
    """Marks that a sequence has left the engine (its slot is free): resolves `Seq.left`."""


LEFT = Left()


class PromptStats:
    """Sent through a request's queue before its first piece: how its prompt was read
    (`shared`: a follower's, copied whole from its leader, so all `cached`)."""

    __slots__ = ("cached", "evaluated", "shared", "slot")

    def __init__(self, *, cached: int, evaluated: int, slot: int, shared: bool = False) -> None:
        self.cached = cached
        self.evaluated = evaluated
        self.slot = slot
        self.shared = shared


Item = Piece | Report | Done | PromptStats | BaseException


@dataclass(eq=False)
class Slot:
    """One llama.cpp sequence id and the tokens its KV cells hold, position by position."""

    seq_id: int
    tokens: list[int] = field(default_factory=list)
    user: Seq | None = None
    used_at: int = 0
    """The step it was last given up at (least recently used slots are taken first)."""
    prompt: int = 0
    """How many of `tokens` were its last user's prompt: a newcomer that parts from them
    before that is another conversation (prefix.seat)."""


@dataclass(eq=False)
class Seq:
    """One generation inside the engine. Fields below `stop` belong to the scheduler thread."""

    plan: Plan
    sampler: Any
    cancel: CancelToken
    loop: asyncio.AbstractEventLoop
    queue: asyncio.Queue[Item]
    left: asyncio.Future[None]
    stop: threading.Event = field(default_factory=threading.Event)
    """Set when the consumer has gone (closed the generator) or the model unloads."""
    slot: Slot | None = None
    fed: int = 0
    """Prompt tokens in the KV cache (cached or evaluated)."""
    cached: int = 0
    pending: int = -1
    """The last sampled token, fed at the next step (-1: still reading the prompt)."""
    produced: int = 0
    out: int = -1
    """This step's output row in the batch (-1: none)."""
    group: Group | None = None
    """The choices it was submitted with, until they have slots."""
    leader: Seq | None = None
    """A follower's leader, until the leader's prompt is read (it reads none of its own)."""
    followers: list[Seq] = field(default_factory=list)
    """A leader's followers that wait for its prompt."""
    shared: bool = False
    """Its prompt was copied from its leader's cells."""
    prompt_logprobs: list[LogprobEntry] = field(default_factory=list)
    """With `echo` and `logprobs`: the logprob of each prompt token after the first, read
    from every prompt position's logits as the prompt is evaluated."""


@dataclass(eq=False)
class Group:
    """Sequences submitted together (the choices of one request): they get slots together."""

    members: list[Seq]


@dataclass
class EngineStats:
    """Counters of the scheduler thread (read by tests and the benchmark)."""

    steps: int = 0
    decoded_tokens: int = 0
    """Tokens fed back after sampling (one per decoding sequence and step)."""
    prompt_tokens: int = 0
    """Prompt tokens evaluated."""
    cached_tokens: int = 0
    """Prompt tokens a slot's cached (or copied) prefix held instead."""
    copied_prefixes: int = 0
    """Prefixes copied over from another slot (free or busy)."""
    saved_prompts: int = 0
    """Slot states kept in host memory before their cells were trimmed (`HostCache`)."""
    restored_prompts: int = 0
    """Kept states put back into a slot."""
    host_bytes: int = 0
    """Bytes of the states kept in host memory."""
    shared_prompts: int = 0
    """Followers that took their leader's prompt instead of reading it (not in `cached_tokens`)."""
    decode_passes: int = 0
    """Passes llama.cpp split the steps' decode batches into (see `decode_passes`)."""
    running: int = 0
    """Sequences holding a slot, at the last step."""
    waiting: int = 0
    """Sequences waiting for one, at the last step."""


def decode_passes(seq_ids: list[int]) -> int:
    """The passes (ubatches) llama.cpp splits a batch of one token per sequence into, with
    a KV stream per sequence: a pass takes, in batch order, only the ids one above the last
    it took (`split_equal(sequential)` in llama-batch.cpp). Ids 0,1,2,3 make one pass,
    2,0,3,1 three, and 0,1,3 two, whatever their order."""
    passes, left = 0, seq_ids
    while left:
        passes += 1
        last, rest = left[0], []
        for seq_id in left[1:]:
            if seq_id == last + 1:
                last = seq_id
            else:
                rest.append(seq_id)
        left = rest
    return passes


def shared_prefix(a: list[int], b: list[int]) -> int:
    """How many leading tokens `a` and `b` have in common."""
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


class Outbox:
    """A step's items for the requests' event loops, handed over together by `flush`: one
    wake-up per event loop, not one per piece."""

    __slots__ = ("_items", "delivered", "first_tokens")

    def __init__(self) -> None:
        self._items: dict[asyncio.AbstractEventLoop, list[tuple[Seq, Item | Left]]] = {}
        self.delivered = threading.Event()
        """Set once the loops have run the consumers the last flush woke."""
        self.first_tokens = False
        """Some request's first token is among the items."""

    def send(self, seq: Seq, item: Item | Left) -> None:
        self._items.setdefault(seq.loop, []).append((seq, item))

    def flush(self) -> bool:
        """Hands the items over; says whether a first token was among them."""
        items, self._items = self._items, {}
        first_tokens, self.first_tokens = self.first_tokens, False
        self.delivered.clear()
        for loop, batch in items.items():
            try:
                loop.call_soon_threadsafe(_deliver, batch, self.delivered)
            except RuntimeError:  # the loop is closed: nobody is listening any more
                for seq, _ in batch:
                    seq.stop.set()
        return first_tokens


def _deliver(items: list[tuple[Seq, Item | Left]], delivered: threading.Event) -> None:
    for seq, item in items:
        if isinstance(item, Left):
            if not seq.left.done():
                seq.left.set_result(None)
        else:
            seq.queue.put_nowait(item)
    # Callbacks run first in, first out: this one runs after the consumers just woken.
    asyncio.get_running_loop().call_soon(delivered.set)
