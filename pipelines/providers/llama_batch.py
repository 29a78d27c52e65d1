"""A local GGUF model decoding several generations at once (continuous batching).

One llama.cpp context holds `slots` sequences, and one scheduler thread owns it. Each
step decodes the next token of every decoding sequence in one batch, samples each with
its own sampler chain (its own parameters, seed, grammar) and hands the pieces to each
request's asyncio queue; then it reads a bounded chunk of newcomers' prompts. A batch of
four tokens costs far less than four single decodes (the weights are read once per step),
so four streams together decode faster than one alone.

Requests join at the next step and leave as soon as they finish or are cancelled. A slot
keeps the tokens its cells hold after its generation leaves: a newcomer whose prompt
starts the same way (a shared system prompt, the next turn of a chat) takes that slot and
evaluates only the rest of its prompt.

The choices of one request (`n > 1`) join as a group, once there is a slot for each: the
leader reads the prompt, and when it samples its first token every follower copies the
leader's cells and samples its own first token from the same logits. The prompt is
evaluated once, and each choice then decodes as a sequence of its own.

Prompt handling, sampler chains, logprobs and the context checks are the single-sequence
provider's (`llama_cpp.py`); with `slots = 1` and an empty cache both produce the same
tokens at temperature 0.
"""

from __future__ import annotations

import asyncio
import collections
import threading
import time
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipelines.errors import GenerationFailed, InvalidRequest, ModelUnavailable
from pipelines.events import EventBus, PromptProcessed
from pipelines.providers.base import CancelToken, DecodeParams, LoadFailure, Prompt
from pipelines.providers.llama_cpp import (
    DONE,
    FLASH_ATTENTION,
    Done,
    LlamaProviderBase,
    Plan,
    Tokenizer,
    build_sampler,
    free_sampler,
    make_piece,
)
from pipelines.types import Piece

if TYPE_CHECKING:
    from llama_cpp._internals import LlamaModel

    from pipelines.config import LlamaModelConfig

__all__ = ["PROMPT_CHUNK", "EngineStats", "LlamaBatchProvider", "PromptStats"]

PROMPT_CHUNK = 64
"""Prompt tokens a step may read while other sequences are decoding. Every running stream
waits for the whole step, so this bounds what a newcomer's prompt adds to their token gaps:
one chunk per step (about 0.2 s for 64 tokens on a 2-core CPU, where a whole 512-token
batch would stall them for 1.5-2 s), at the cost of a few decode steps more for the
newcomer's first token (docs/performance.md has the trade-off measured). With nothing
else decoding, prompts are read in whole batches (`batch_size`)."""

_MIN_CHUNK = 8
"""A prompt's chunks (but its last) have at least this many tokens: a decode call costs a
few milliseconds whatever its size."""

_LAST_READ = 2
"""A prompt's last chunk is at least this long, cached prefix or not: its last token's
logits give the first output, and a one-token decode of it is not bit-exact against the
same token read in a longer chunk (a 925-token prompt answered differently when all but
its last token came from the cache); two tokens or more reproduce a fresh read."""

_MIN_COPY = 16
"""Copying a busy slot's prefix moves its whole KV stream (tens of MB, a few ms): worth it
from this many more cached tokens on."""

_ACK_WAIT = 0.003
_FIRST_TOKEN_GRACE = 0.002
"""Then this long (seconds) more for the client to read it: once the next decode starts,
llama.cpp's threads hold both cores, and a client on the same machine waited up to a
scheduler slice (3-5 ms) to parse its first token. With the grace, the time from the
gateway's first piece to the SDK's first chunk was 0.6-0.8 ms in 11 of 11 requests,
against 0.6-5.4 ms without (mean TTFT 41.3 against 46.2 ms, SmolLM2, one client)."""
"""At most this long (seconds) the scheduler waits for the event loop to send a step's
first tokens: a busy loop must not hold decoding up."""

_KV_UNIFIED = False
"""One KV stream per sequence: each attends over its own cells only, which is faster than
one shared buffer when the sequences share no long prefix (llama.h's advice), and gives
each slot its full `context_length` out of `n_ctx = context_length * slots`."""


class PromptStats:
    """Sent through a request's queue before its first piece: how its prompt was read
    (`shared`: a follower's, copied whole from its leader, so all `cached`)."""

    __slots__ = ("cached", "evaluated", "shared", "slot")

    def __init__(self, *, cached: int, evaluated: int, slot: int, shared: bool = False) -> None:
        self.cached = cached
        self.evaluated = evaluated
        self.slot = slot
        self.shared = shared


class _Left:
    """Marks that a sequence has left the engine (its slot is free): resolves `left`."""


_LEFT = _Left()
_Item = Piece | Done | PromptStats | BaseException


@dataclass(eq=False)
class _Slot:
    """One llama.cpp sequence id and the tokens its KV cells hold, position by position."""

    seq_id: int
    tokens: list[int] = field(default_factory=list)
    user: _Sequence | None = None
    used_at: int = 0
    """The step it was last given up at (least recently used slots are taken first)."""


@dataclass(eq=False)
class _Sequence:
    """One generation inside the engine. Fields below `stop` belong to the scheduler thread."""

    plan: Plan
    sampler: Any
    cancel: CancelToken
    loop: asyncio.AbstractEventLoop
    queue: asyncio.Queue[_Item]
    left: asyncio.Future[None]
    stop: threading.Event = field(default_factory=threading.Event)
    """Set when the consumer has gone (closed the generator) or the model unloads."""
    slot: _Slot | None = None
    fed: int = 0
    """Prompt tokens in the KV cache (cached or evaluated)."""
    cached: int = 0
    pending: int = -1
    """The last sampled token, fed at the next step (-1: still reading the prompt)."""
    produced: int = 0
    out: int = -1
    """This step's output row in the batch (-1: none)."""
    group: _Group | None = None
    """The choices it was submitted with, until they have slots."""
    leader: _Sequence | None = None
    """A follower's leader, until the leader's prompt is read (it reads none of its own)."""
    followers: list[_Sequence] = field(default_factory=list)
    """A leader's followers that wait for its prompt."""
    shared: bool = False
    """Its prompt was copied from its leader's cells."""


@dataclass(eq=False)
class _Group:
    """Sequences submitted together (the choices of one request): they get slots together."""

    members: list[_Sequence]


@dataclass
class EngineStats:
    """Counters of the scheduler thread (read by tests and the benchmark)."""

    steps: int = 0
    decoded_tokens: int = 0
    prompt_tokens: int = 0
    cached_tokens: int = 0
    copied_prefixes: int = 0
    shared_prompts: int = 0
    """Followers that took their leader's prompt instead of reading it (not in `cached_tokens`)."""
    running: int = 0
    waiting: int = 0


class _Engine:
    """Owns the context and its scheduler thread; `submit` is the only way in."""

    def __init__(
        self, model: LlamaModel, *, name: str, slots: int, n_ctx_seq: int, n_batch: int, threads: int, chunk: int
    ) -> None:
        import llama_cpp

        self.model = model
        self._slots = [_Slot(i) for i in range(slots)]
        self._n_batch = max(n_batch, slots)
        self._chunk = max(1, min(chunk, self._n_batch))
        params = llama_cpp.llama_context_default_params()
        params.n_ctx = n_ctx_seq * slots
        params.n_batch = self._n_batch
        params.n_ubatch = min(self._n_batch, 512)
        params.n_seq_max = slots
        params.n_threads = threads
        params.n_threads_batch = threads
        params.kv_unified = _KV_UNIFIED
        params.swa_full = True  # a shorter SWA cache could not serve a cached prefix again
        params.flash_attn_type = (
            llama_cpp.LLAMA_FLASH_ATTN_TYPE_ENABLED if FLASH_ATTENTION else llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED
        )
        ctx = llama_cpp.llama_init_from_model(model.model, params)
        if not ctx:
            raise LoadFailure("load_error", f"llama.cpp could not create a context of {params.n_ctx} tokens")
        self._ctx = ctx
        self._memory = llama_cpp.llama_get_memory(ctx)
        # What one sequence may hold (llama.cpp may round the context up; the passport's length rules).
        self.n_ctx_seq = min(n_ctx_seq, llama_cpp.llama_n_ctx_seq(ctx))
        self._batch = llama_cpp.llama_batch_init(self._n_batch, 0, 1)
        self._vocab = llama_cpp.llama_model_get_vocab(model.model)
        self._n_vocab = llama_cpp.llama_vocab_n_tokens(self._vocab)
        self.stats = EngineStats()
        self._lock = threading.Lock()
        self._inbox: collections.deque[_Group] = collections.deque()
        self._closing = False
        self._wake = threading.Event()
        self._ack = threading.Event()
        self._first_tokens = False
        self._waiting: collections.deque[_Group] = collections.deque()
        self._running: list[_Sequence] = []
        self._outbox: dict[asyncio.AbstractEventLoop, list[tuple[_Sequence, _Item | _Left]]] = {}
        self._thread = threading.Thread(target=self._run, name=f"llama-batch-{name}", daemon=True)
        self._thread.start()

    # -- the loop's side ------------------------------------------------------------

    def submit(self, seqs: list[_Sequence]) -> None:
        """Queues `seqs` as one group: the first leads, the others share its prompt."""
        assert seqs, "an empty group would never leave the queue"
        group = _Group(list(seqs))
        for seq in seqs:
            seq.group = group
        with self._lock:
            if self._closing:
                raise ModelUnavailable("the model is unloading")
            self._inbox.append(group)
        self._wake.set()

    def poke(self) -> None:
        """Have the scheduler look at stop flags now (it might be idle)."""
        self._wake.set()

    def close(self) -> None:
        """Cuts off every generation and frees the context; returns once the thread is done."""
        with self._lock:
            self._closing = True
        self._wake.set()
        self._thread.join()

    @property
    def busy(self) -> bool:
        return bool(self._inbox or self._waiting or self._running)

    # -- the scheduler thread ---------------------------------------------------------

    def _run(self) -> None:
        import llama_cpp

        failure: BaseException | None = None
        try:
            while True:
                self._wake.clear()
                with self._lock:
                    closing = self._closing
                    while self._inbox:
                        self._waiting.append(self._inbox.popleft())
                if closing:
                    break
                self._drop_stopped()
                self._assign_slots()
                self.stats.running = len(self._running)
                self.stats.waiting = len(self._queued())
                if self._running:
                    self._step()
                first_tokens = self._first_tokens
                self._flush()
                if not self._running:
                    self._wake.wait()
                elif first_tokens:
                    # Let the event loop send a first token before the next decode starts:
                    # on two cores that decode's threads would otherwise take both cores
                    # and delay it by milliseconds (measured: 3-4 ms of time to first token).
                    self._ack.wait(_ACK_WAIT)
                    time.sleep(_FIRST_TOKEN_GRACE)
        except BaseException as exc:  # a bug here must not leave requests hanging forever
            failure = exc
        finally:
            cut_off = GenerationFailed(
                "the generation was cut off (model unloading)"
                if failure is None
                else f"llama.cpp batch engine failed: {type(failure).__name__}: {failure}"
            )
            with self._lock:
                self._closing = True
                self._waiting.extend(self._inbox)
                self._inbox.clear()
            for seq in [*self._running, *self._queued()]:
                self._leave(seq, cut_off)
            self._flush()
            llama_cpp.llama_batch_free(self._batch)
            llama_cpp.llama_free(self._ctx)

    def _queued(self) -> list[_Sequence]:
        return [seq for group in self._waiting for seq in group.members]

    def _drop_stopped(self) -> None:
        for seq in [*self._running, *self._queued()]:
            if seq.cancel.cancelled:
                self._leave(seq, DONE)
            elif seq.stop.is_set():
                self._leave(seq, None)  # nobody reads any more

    def _assign_slots(self) -> None:
        """Gives free slots to waiting groups, first come first served: a group that does
        not fit yet holds up the ones behind it (a single generation slipping past could
        keep a request of several choices waiting for ever).

        A group's leader takes the slot its prompt is best served from; its followers take
        the least recently used ones left and empty them at once: a follower gets its
        leader's cells later (or, promoted, reads the prompt from the start), and until
        then its slot offers no prefix to anyone."""
        import llama_cpp

        while self._waiting:
            group = self._waiting[0]
            for seq in [seq for seq in group.members if seq.plan.max_new <= 0]:
                self._leave(seq, DONE)  # the group's last one takes it out of `_waiting`
            if not group.members:
                continue
            free = [slot for slot in self._slots if slot.user is None]
            if len(free) < len(group.members):
                return
            self._waiting.popleft()
            leader, *followers = group.members
            free.remove(self._seat(leader, free))
            free.sort(key=lambda slot: slot.used_at)
            for seq, slot in zip(followers, free, strict=False):
                llama_cpp.llama_memory_seq_rm(self._memory, slot.seq_id, -1, -1)
                slot.tokens.clear()
                seq.leader = leader
                self._take(seq, slot)
            leader.followers = followers

    def _seat(self, seq: _Sequence, free: list[_Slot]) -> _Slot:
        """Gives `seq` the free slot sharing the longest prefix with its prompt (else the
        least recently used one); when a busy slot shares a much longer one (users of one
        system prompt arriving together), that slot's cells are copied over instead of
        evaluated again."""
        import llama_cpp

        tokens = seq.plan.tokens
        shared, slot = max(((_shared_prefix(s.tokens, tokens), s) for s in free), key=lambda p: (p[0], -p[1].used_at))
        donor, donated = None, shared + _MIN_COPY - 1
        for other in self._slots:
            n = _shared_prefix(other.tokens, tokens) if other.user is not None else 0
            if n > donated:
                donor, donated = other, n
        # The prompt's last tokens are read again: their logits give the first token.
        most = max(0, len(tokens) - _LAST_READ)
        if donor is not None:
            keep = min(donated, most)
            # Across KV streams llama.cpp copies whole sequences (at the next decode); the tail goes.
            llama_cpp.llama_memory_seq_cp(self._memory, donor.seq_id, slot.seq_id, -1, -1)
            llama_cpp.llama_memory_seq_rm(self._memory, slot.seq_id, keep, -1)
            slot.tokens = donor.tokens[:keep]
            self.stats.copied_prefixes += 1
        else:
            keep = min(shared, most)
            if keep < len(slot.tokens) and not llama_cpp.llama_memory_seq_rm(self._memory, slot.seq_id, keep, -1):
                llama_cpp.llama_memory_seq_rm(self._memory, slot.seq_id, -1, -1)  # partial removal refused
                keep = 0
            del slot.tokens[keep:]
        seq.fed = seq.cached = keep
        self._take(seq, slot)
        return slot

    def _take(self, seq: _Sequence, slot: _Slot) -> None:
        seq.slot = slot
        slot.user = seq
        self._running.append(seq)

    def _step(self) -> None:
        """One step: a token for every decoding sequence, then a bounded chunk of prompts.

        The decoding sequences share one decode call. Each prompt chunk gets a call of its
        own: a chunk that shares a call with other sequences' tokens is split by llama.cpp
        into differently shaped pieces, which changes its numerics (and greedy output);
        alone it reproduces a fresh single-sequence run exactly."""
        readers = [seq for seq in self._running if seq.pending < 0 and seq.leader is None]
        decoding = [seq for seq in self._running if seq.pending >= 0]
        self.stats.steps += 1
        if decoding:
            for n, seq in enumerate(decoding):
                assert seq.slot is not None
                self._put(n, seq.pending, len(seq.slot.tokens), seq.slot.seq_id, True)
                seq.out = n
            if self._decode(len(decoding), decoding):
                for seq in decoding:
                    assert seq.slot is not None
                    seq.slot.tokens.append(seq.pending)
                self.stats.decoded_tokens += len(decoding)
                for seq in decoding:
                    self._sample(seq)
        # Running streams wait for the whole step: while any decode, prompts get a chunk.
        budget = self._chunk if decoding else self._n_batch
        for seq in readers:
            if budget <= 0:
                break
            slot = seq.slot
            if slot is None:  # left during this step
                continue
            prompt = seq.plan.tokens
            take = min(len(prompt) - seq.fed, budget)
            if len(prompt) - seq.fed - take == 1:
                take -= 1  # leave the last chunk two tokens (see _LAST_READ)
            last = seq.fed + take == len(prompt)
            if take < _MIN_CHUNK and not last:
                break  # a sliver of budget: the next step gives this prompt a proper chunk
            budget -= take
            for n, j in enumerate(range(seq.fed, seq.fed + take)):
                # Only the prompt's last token needs logits: they give the first output.
                self._put(n, prompt[j], j, slot.seq_id, last and j == len(prompt) - 1)
            if not self._decode(take, [seq]):
                continue
            slot.tokens.extend(prompt[seq.fed : seq.fed + take])
            seq.fed += take
            self.stats.prompt_tokens += take
            if last:
                seq.out = take - 1
                self._sample(seq)

    def _put(self, n: int, token: int, position: int, seq_id: int, logits: bool) -> None:
        batch = self._batch
        batch.token[n] = token
        batch.pos[n] = position
        batch.n_seq_id[n] = 1
        batch.seq_id[n][0] = seq_id
        batch.logits[n] = logits

    def _decode(self, n: int, seqs: list[_Sequence]) -> bool:
        """Decodes the first `n` batch entries (tokens of `seqs`); on failure they end."""
        import llama_cpp

        self._batch.n_tokens = n
        status = llama_cpp.llama_decode(self._ctx, self._batch)
        if status != 0:
            self._fail_batch(seqs, status)
            return False
        return True

    def _sample(self, seq: _Sequence) -> None:
        import llama_cpp

        out, seq.out = seq.out, -1
        first = seq.pending < 0
        try:
            token = llama_cpp.llama_sampler_sample(seq.sampler, self._ctx, out)
            if first:
                slot = seq.slot
                assert slot is not None
                if not seq.shared:
                    self.stats.cached_tokens += seq.cached
                self._first_tokens = True
                stats = PromptStats(
                    cached=seq.cached, evaluated=seq.fed - seq.cached, slot=slot.seq_id, shared=seq.shared
                )
                self._send(seq, stats)
                if seq.followers:
                    self._share_prompt(seq, out)  # before this token may end the leader
            if llama_cpp.llama_vocab_is_eog(self._vocab, token):
                self._leave(seq, DONE)
                return
            seq.produced += 1
            self._send(seq, make_piece(self._vocab, token, self._ctx, out, self._n_vocab, seq.plan.params))
        except Exception as exc:
            self._leave(seq, GenerationFailed(f"llama.cpp sampling failed: {type(exc).__name__}: {exc}"))
            return
        if seq.produced >= seq.plan.max_new:
            self._leave(seq, DONE)  # the last token's successor is never needed
        else:
            seq.pending = token

    def _share_prompt(self, leader: _Sequence, out: int) -> None:
        """The leader has just read its prompt: each follower takes a copy of its cells and
        samples its first token from the same output row (so its logprobs too)."""
        import llama_cpp

        source = leader.slot
        assert source is not None
        followers, leader.followers = leader.followers, []
        for seq in followers:
            slot = seq.slot
            assert slot is not None
            # Across KV streams (`_KV_UNIFIED = False`) this resets the follower's cells at
            # once and copies the leader's whole stream at the next decode, before that
            # decode writes anything: the leader's cells are still the prompt's then.
            llama_cpp.llama_memory_seq_cp(self._memory, source.seq_id, slot.seq_id, -1, -1)
            slot.tokens = list(source.tokens)
            seq.fed = seq.cached = len(slot.tokens)
            seq.leader = None
            seq.shared = True
            seq.out = out
            self.stats.shared_prompts += 1
            self._sample(seq)

    def _fail_batch(self, seqs: list[_Sequence], status: int) -> None:
        """A failed decode may have left some of the batch in the cache: those sequences end, their cells go."""
        import llama_cpp

        error = GenerationFailed(f"llama.cpp decode failed (status {status})")
        for seq in seqs:
            slot = seq.slot
            if slot is not None:
                llama_cpp.llama_memory_seq_rm(self._memory, slot.seq_id, -1, -1)
                slot.tokens.clear()
            self._leave(seq, error)

    def _leave(self, seq: _Sequence, final: _Item | None) -> None:
        """Ends `seq`: its slot is free for the next step (its cells stay as a prefix cache).

        A leader leaving before its prompt is read hands the reading to its first follower
        (whose slot is empty: it reads the whole prompt); the others follow that one."""
        slot = seq.slot
        if slot is not None:
            slot.user = None
            slot.used_at = self.stats.steps
            seq.slot = None
            self._running.remove(seq)
            if seq.leader is not None:
                seq.leader.followers.remove(seq)
                seq.leader = None
            elif seq.followers:
                heir, *rest = seq.followers
                seq.followers = []
                heir.leader, heir.followers = None, rest
                for follower in rest:
                    follower.leader = heir
        elif seq.group is not None and seq in seq.group.members:
            seq.group.members.remove(seq)
            if not seq.group.members:
                self._waiting.remove(seq.group)
        free_sampler(seq.sampler)
        seq.sampler = None
        if final is not None:
            self._send(seq, final)
        self._send(seq, _LEFT)

    def _send(self, seq: _Sequence, item: _Item | _Left) -> None:
        self._outbox.setdefault(seq.loop, []).append((seq, item))

    def _flush(self) -> None:
        """Hands this step's items over: one wake-up per event loop, not one per piece;
        `_ack` is set once the loop has run the consumers they woke."""
        outbox, self._outbox = self._outbox, {}
        self._first_tokens = False
        self._ack.clear()
        for loop, items in outbox.items():
            try:
                loop.call_soon_threadsafe(_deliver, items, self._ack)
            except RuntimeError:  # the loop is closed: nobody is listening any more
                for seq, _ in items:
                    seq.stop.set()


async def _let_go(engine: _Engine, seq: _Sequence) -> None:
    """Has `seq` leave within one step, and returns only then: the slot is free for the next
    request by the time the caller's admission slot is. `wait` never cancels the future,
    so a second cancel here cannot lose the slot."""
    if not seq.left.done():
        seq.stop.set()
        engine.poke()
        await asyncio.wait({seq.left})


class _Choice(AsyncGenerator[Piece, None]):
    """One stream of `generate_choices`. Its sequence is in the engine before the first
    read, and closing a bare async generator that never started runs none of its code:
    this one lets go of its sequence however it ends."""

    __slots__ = ("_engine", "_pieces", "_seq")

    def __init__(self, engine: _Engine, seq: _Sequence, pieces: AsyncGenerator[Piece, None]) -> None:
        self._engine = engine
        self._seq = seq
        self._pieces = pieces

    async def asend(self, value: None) -> Piece:
        return await self._pieces.asend(value)

    async def athrow(self, *args: Any) -> Piece:
        return await self._pieces.athrow(*args)

    async def aclose(self) -> None:
        try:
            await self._pieces.aclose()
        finally:
            await _let_go(self._engine, self._seq)


def _deliver(items: list[tuple[_Sequence, _Item | _Left]], ack: threading.Event) -> None:
    for seq, item in items:
        if isinstance(item, _Left):
            if not seq.left.done():
                seq.left.set_result(None)
        else:
            seq.queue.put_nowait(item)
    # Callbacks run first in, first out: this one runs after the consumers just woken.
    asyncio.get_running_loop().call_soon(ack.set)


def _shared_prefix(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


class LlamaBatchProvider(LlamaProviderBase):
    """Serves one GGUF file to up to `slots` generations at once (continuous batching)."""

    def __init__(
        self,
        config: LlamaModelConfig,
        *,
        cache_dir: Path,
        bus: EventBus | None = None,
        prompt_chunk: int = PROMPT_CHUNK,
    ) -> None:
        super().__init__(config, cache_dir=cache_dir)
        self._bus = bus
        self._prompt_chunk = prompt_chunk
        self._model: LlamaModel | None = None
        self._engine: _Engine | None = None

    @property
    def busy(self) -> bool:
        """Some generation still holds (or waits for) a slot."""
        return self._engine is not None and self._engine.busy

    @property
    def stats(self) -> EngineStats:
        return self._engine.stats if self._engine is not None else EngineStats()

    @property
    def context_length(self) -> int:
        return self._engine.n_ctx_seq if self._engine is not None else self.config.context_length

    async def load(self) -> None:
        if self._engine is not None:
            return
        self.status = "loading"
        try:
            model, engine = await asyncio.to_thread(self._load_blocking)
        except BaseException:
            self.status = "unloaded"
            raise
        self._model, self._engine = model, engine
        self.status = "loaded"

    def _load_blocking(self) -> tuple[LlamaModel, _Engine]:
        path = self._model_file()
        import llama_cpp
        from llama_cpp._internals import LlamaModel

        try:
            # verbose=True: False would point the process's stdout and stderr at /dev/null
            # while the model loads (log lines of every thread lost); llama.cpp's own log is
            # silenced by the hook `_model_file` installed, and LlamaModel prints nothing.
            model = LlamaModel(path_model=str(path), params=llama_cpp.llama_model_default_params(), verbose=True)
        except Exception as exc:
            raise LoadFailure("load_error", f"{type(exc).__name__}: {exc}") from exc
        try:
            engine = _Engine(
                model,
                name=self.config.id,
                slots=self.config.slots,
                n_ctx_seq=self.config.context_length,
                n_batch=self.config.batch_size,
                threads=self.threads,
                chunk=self._prompt_chunk,
            )
        except BaseException:
            model.close()
            raise
        self._read_vocab(model.metadata(), model.model)
        self.model_path = path
        return model, engine

    async def unload(self) -> None:
        engine, model = self._engine, self._model
        self._engine = self._model = None
        self._forget_vocab()
        if engine is not None:
            await asyncio.to_thread(engine.close)  # running generations end with GenerationFailed
        if model is not None:
            await asyncio.to_thread(model.close)
        self._restore_llama_log()
        self.status = "unloaded"

    def _loaded(self) -> _Engine:
        if self._engine is None:
            raise ModelUnavailable(f"model {self.config.id!r} is not loaded")
        return self._engine

    def _tokenizer(self) -> Tokenizer:
        return self._loaded().model

    @property
    def max_choices(self) -> int:
        return self.config.slots

    async def generate(self, prompt: Prompt, params: DecodeParams, cancel: CancelToken) -> AsyncGenerator[Piece, None]:
        engine = self._loaded()
        # Everything that can fail with a client error happens here, before a slot is taken.
        plan = self._plan(engine.model, prompt, params, engine.n_ctx_seq)
        [seq] = self._submit(engine, [plan], cancel)
        pieces = self._pieces(engine, prompt, seq, time.perf_counter())
        try:
            async for piece in pieces:
                yield piece
        finally:
            await pieces.aclose()

    def generate_choices(
        self, prompt: Prompt, params: Sequence[DecodeParams], cancel: CancelToken
    ) -> list[AsyncGenerator[Piece, None]]:
        """The choices decode side by side from one reading of the prompt (see the module's
        docstring). Called on the event loop; client errors raise here, before any choice is
        submitted. The choices are in the engine on return: each stream must be closed."""
        if len(params) <= 1:
            return [self.generate(prompt, p, cancel) for p in params]
        engine = self._loaded()
        if len(params) > self.max_choices:
            raise InvalidRequest(f"at most {self.max_choices} choices decode at once (`slots`)", param="n")
        # The prompt's tokens are tokenized once (`_prompt_tokens` remembers them).
        plans = [self._plan(engine.model, prompt, p, engine.n_ctx_seq) for p in params]
        seqs = self._submit(engine, plans, cancel)
        submitted = time.perf_counter()
        return [_Choice(engine, seq, self._pieces(engine, prompt, seq, submitted)) for seq in seqs]

    def _submit(self, engine: _Engine, plans: list[Plan], cancel: CancelToken) -> list[_Sequence]:
        """One sequence per plan, submitted together (the first one leads)."""
        loop = asyncio.get_running_loop()
        seqs: list[_Sequence] = []
        try:
            for plan in plans:
                sampler = build_sampler(engine.model.model, plan)
                seqs.append(
                    _Sequence(
                        plan=plan,
                        sampler=sampler,
                        cancel=cancel,
                        loop=loop,
                        queue=asyncio.Queue(),
                        left=loop.create_future(),
                    )
                )
            engine.submit(seqs)
        except BaseException:
            for seq in seqs:
                free_sampler(seq.sampler)
            raise
        return seqs

    async def _pieces(
        self, engine: _Engine, prompt: Prompt, seq: _Sequence, submitted: float
    ) -> AsyncGenerator[Piece, None]:
        try:
            while True:
                item = await seq.queue.get()
                if isinstance(item, Done) or seq.cancel.cancelled:
                    return  # pieces still queued after a cancel are nobody's business
                if isinstance(item, PromptStats):
                    # One event per reading of a prompt: a follower read none (the
                    # metrics' cache hits are a share of the request's prompt tokens).
                    if not item.shared:
                        self._report(prompt, seq.plan, item, time.perf_counter() - submitted)
                    continue
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            await _let_go(engine, seq)

    def _report(self, prompt: Prompt, plan: Plan, stats: PromptStats, seconds: float) -> None:
        if self._bus is None:
            return
        self._bus.emit(
            PromptProcessed(
                request_id=prompt.request.request_id if prompt.request is not None else None,
                model_id=self.config.id,
                prompt_tokens=len(plan.tokens),
                cached_tokens=stats.cached,
                evaluated_tokens=stats.evaluated,
                slot=stats.slot,
                seconds=seconds,
            )
        )
