"""The continuous-batching engine: one llama.cpp context, `slots` sequences, one thread.

One scheduler thread owns the context. Each step decodes the next token of every
decoding sequence in one batch, samples each with its own sampler chain (its own
parameters, seed, grammar) and hands the pieces to each request's asyncio queue; then it
reads a bounded chunk of newcomers' prompts. A batch of four tokens costs far less than
four single decodes (the weights are read once per step), so four streams together decode
faster than one alone. With one slot it is a single-sequence decoder with a prefix cache.

Requests join at the next step and leave as soon as they finish or are cancelled. A slot
keeps the tokens its cells hold after its generation leaves: a newcomer whose prompt
starts the same way (a shared system prompt, the next turn of a chat) takes that slot and
evaluates only the rest of its prompt. With flash attention off (the default), cached prefixes,
chunked prompts and batched sequences reproduce a fresh single-sequence run on SmolLM2.

The choices of one request (`n > 1`) join as a group, once there is a slot for each: the
leader reads the prompt, and when it samples its first token every follower copies the
leader's cells and samples its own first token from the same logits. The prompt is
evaluated once, and each choice then decodes as a sequence of its own.
"""

from __future__ import annotations

import collections
import threading
import time
from typing import TYPE_CHECKING

from pipelines.errors import GenerationFailed, ModelUnavailable
from pipelines.providers.llama.echo import echo_report, read_prompt_logprobs, wants_prompt_logprobs
from pipelines.providers.llama.host_cache import HostCache
from pipelines.providers.llama.prefix import seat
from pipelines.providers.llama.runtime import make_piece, new_context, runtime
from pipelines.providers.llama.sampler import free_sampler
from pipelines.providers.llama.sequences import (
    DONE,
    LEFT,
    EngineStats,
    Group,
    Item,
    Outbox,
    PromptStats,
    Seq,
    Slot,
    decode_passes,
)
from pipelines.providers.llama.tuning import ACK_WAIT, FIRST_TOKEN_GRACE, KV_UNIFIED, MIN_CHUNK, PROMPT_CHUNK

if TYPE_CHECKING:
    from llama_cpp._internals import LlamaModel

__all__ = ["PROMPT_CHUNK", "Engine"]


class Engine:
    """Owns the context and its scheduler thread; `submit` is the only way in."""

    def __init__(
        self,
        model: LlamaModel,
        *,
        name: str,
        slots: int,
        n_ctx_seq: int,
        n_batch: int,
        threads: int,
        chunk: int,
        flash_attention: bool = False,
        prompt_cache_bytes: int = 0,
    ) -> None:
        self.model = model
        self._slots = [Slot(i) for i in range(slots)]
        self._n_batch = max(n_batch, slots)
        self._chunk = max(1, min(chunk, self._n_batch))
        self._ctx = new_context(
            model.model,
            n_ctx=n_ctx_seq * slots,
            n_batch=self._n_batch,
            n_seq=slots,
            threads=threads,
            unified=KV_UNIFIED,
            flash_attention=flash_attention,
        )
        llama_cpp = runtime()
        self._memory = llama_cpp.llama_get_memory(self._ctx)
        # What one sequence may hold (llama.cpp may round the context up; the passport's length rules).
        self.n_ctx_seq = min(n_ctx_seq, llama_cpp.llama_n_ctx_seq(self._ctx))
        self._batch = llama_cpp.llama_batch_init(self._n_batch, 0, 1)
        self._vocab = llama_cpp.llama_model_get_vocab(model.model)
        self._n_vocab = llama_cpp.llama_vocab_n_tokens(self._vocab)
        self.stats = EngineStats()
        self._host = HostCache(self._ctx, self._memory, prompt_cache_bytes, self.stats)
        self._lock = threading.Lock()
        self._inbox: collections.deque[Group] = collections.deque()
        self._closing = False
        self._wake = threading.Event()
        self._waiting: collections.deque[Group] = collections.deque()
        self._seating: Group | None = None
        """The group `_assign_slots` took off `_waiting` and is giving slots to."""
        self._running: list[Seq] = []
        self._outbox = Outbox()
        self._thread = threading.Thread(target=self._run, name=f"llama-{name}", daemon=True)
        self._thread.start()

    # -- the loop's side ------------------------------------------------------------

    def submit(self, seqs: list[Seq]) -> None:
        """Queues `seqs` as one group: the first leads, the others share its prompt."""
        assert seqs, "an empty group would never leave the queue"
        group = Group(list(seqs))
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
        llama_cpp = runtime()
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
                first_tokens = self._outbox.flush()
                if not self._running and not self._waiting:
                    # (Waiting groups fit now that nothing runs: the next pass seats them.)
                    self._wake.wait()
                elif first_tokens:
                    # Let the event loop send a first token before the next decode starts:
                    # on two cores that decode's threads would otherwise take both cores
                    # and delay it by milliseconds (measured: 3-4 ms of time to first token).
                    self._outbox.delivered.wait(ACK_WAIT)
                    time.sleep(FIRST_TOKEN_GRACE)
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
            # A failure while seating a group leaves members in no list: they end here too.
            stranded = [s for s in self._seating.members if s.slot is None] if self._seating else []
            for seq in [*self._running, *self._queued()]:
                self._leave(seq, cut_off)
            for seq in stranded:
                self._end(seq, cut_off)
            self._outbox.flush()
            llama_cpp.llama_batch_free(self._batch)
            llama_cpp.llama_free(self._ctx)

    def _queued(self) -> list[Seq]:
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
        while self._waiting:
            group = self._waiting[0]
            # Nothing to generate: gone at once, but for a leader that echoes its prompt.
            for seq in [
                s for i, s in enumerate(group.members) if s.plan.max_new <= 0 and (i or not s.plan.params.echo)
            ]:
                self._leave(seq, DONE)  # the group's last one takes it out of `_waiting`
            if not group.members:
                continue
            free = [slot for slot in self._slots if slot.user is None]
            if len(free) < len(group.members):
                return
            self._waiting.popleft()
            self._seating = group  # until each member holds a slot, only this names them
            leader, *followers = group.members
            free.remove(self._seat(leader, free))
            free.sort(key=lambda slot: slot.used_at)
            for seq, slot in zip(followers, free, strict=False):
                self._empty(slot)
                seq.leader = leader
                self._take(seq, slot)
            leader.followers = followers
            self._seating = None

    def _seat(self, seq: Seq, free: list[Slot]) -> Slot:
        if wants_prompt_logprobs(seq):
            # Every prompt position's logits are wanted: none may come from a cached prefix.
            slot = min(free, key=lambda s: s.used_at)
            self._empty(slot)
            seq.fed = seq.cached = 0
        else:
            slot = seat(seq, free, self._slots, self._memory, self.stats, self._host)
        self._take(seq, slot)
        return slot

    def _empty(self, slot: Slot) -> None:
        """Clears `slot`'s cells (what they held kept in host memory first)."""
        self._host.save(slot, 0)
        runtime().llama_memory_seq_rm(self._memory, slot.seq_id, -1, -1)
        slot.tokens.clear()

    def _take(self, seq: Seq, slot: Slot) -> None:
        seq.slot = slot
        slot.user = seq
        slot.prompt = len(seq.plan.tokens)
        self._running.append(seq)

    def _step(self) -> None:
        """One step: a token for every decoding sequence, then a bounded chunk of prompts.

        The decoding sequences share one decode call. Each prompt chunk gets a call of its
        own: a chunk that shares a call with other sequences' tokens is split by llama.cpp
        into differently shaped pieces, which changes its numerics (and greedy output);
        alone it reproduces a fresh single-sequence run exactly."""
        readers = [seq for seq in self._running if seq.pending < 0 and seq.leader is None]
        # In slot order: with a KV stream per slot, llama.cpp batches only increasing ids
        # together; in join order (prefix cache, recency) a step took several passes.
        decoding = sorted((seq for seq in self._running if seq.pending >= 0), key=_slot_id)
        self.stats.steps += 1
        if decoding:
            for n, seq in enumerate(decoding):
                assert seq.slot is not None
                self._put(n, seq.pending, len(seq.slot.tokens), seq.slot.seq_id, True)
                seq.out = n
            self.stats.decode_passes += 1 if KV_UNIFIED else decode_passes([_slot_id(s) for s in decoding])
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
                take -= 1  # leave the last chunk two tokens (see prefix.LAST_READ)
            last = seq.fed + take == len(prompt)
            if take < MIN_CHUNK and not last:
                break  # a sliver of budget: the next step gives this prompt a proper chunk
            budget -= take
            every = wants_prompt_logprobs(seq)
            for n, j in enumerate(range(seq.fed, seq.fed + take)):
                # Only the prompt's last token needs logits (they give the first output),
                # unless the prompt's own logprobs were asked for.
                self._put(n, prompt[j], j, slot.seq_id, every or (last and j == len(prompt) - 1))
            if not self._decode(take, [seq]):
                continue
            if every:
                read_prompt_logprobs(seq, take, self._vocab, self._ctx, self._n_vocab)
            slot.tokens.extend(prompt[seq.fed : seq.fed + take])
            seq.fed += take
            self.stats.prompt_tokens += take
            if last:
                self._prompt_read(seq, take - 1)

    def _prompt_read(self, seq: Seq, out: int) -> None:
        """`seq` has read its prompt: it echoes it when asked (for its followers too, which
        share it), then samples its first token from output `out` (or, with nothing to
        generate, leaves)."""
        if seq.plan.params.echo:
            echo = echo_report(seq, self._vocab)
            for reader in [seq, *seq.followers]:
                self._outbox.send(reader, echo)
        if seq.plan.max_new <= 0:
            assert seq.slot is not None
            self._outbox.send(seq, PromptStats(cached=seq.cached, evaluated=seq.fed - seq.cached, slot=seq.slot.seq_id))
            self._leave(seq, DONE)
            return
        seq.out = out
        self._sample(seq)

    def _put(self, n: int, token: int, position: int, seq_id: int, logits: bool) -> None:
        batch = self._batch
        batch.token[n] = token
        batch.pos[n] = position
        batch.n_seq_id[n] = 1
        batch.seq_id[n][0] = seq_id
        batch.logits[n] = logits

    def _decode(self, n: int, seqs: list[Seq]) -> bool:
        """Decodes the first `n` batch entries (tokens of `seqs`); on failure they end."""
        llama_cpp = runtime()
        self._batch.n_tokens = n
        status = llama_cpp.llama_decode(self._ctx, self._batch)
        if status != 0:
            self._fail_batch(seqs, status)
            return False
        return True

    def _sample(self, seq: Seq) -> None:
        llama_cpp = runtime()
        out, seq.out = seq.out, -1
        first = seq.pending < 0
        try:
            token = self._next_token(seq, out)
            if first:
                slot = seq.slot
                assert slot is not None
                if not seq.shared:
                    self.stats.cached_tokens += seq.cached
                self._outbox.first_tokens = True
                stats = PromptStats(
                    cached=seq.cached, evaluated=seq.fed - seq.cached, slot=slot.seq_id, shared=seq.shared
                )
                self._outbox.send(seq, stats)
                if seq.followers:
                    self._share_prompt(seq, out)  # before this token may end the leader
            if llama_cpp.llama_vocab_is_eog(self._vocab, token):
                self._leave(seq, DONE)
                return
            seq.produced += 1
            self._outbox.send(seq, make_piece(self._vocab, token, self._ctx, out, self._n_vocab, seq.plan.params))
        except Exception as exc:
            self._leave(seq, GenerationFailed(f"llama.cpp sampling failed: {type(exc).__name__}: {exc}"))
            return
        if seq.produced >= seq.plan.max_new:
            self._leave(seq, DONE)  # the last token's successor is never needed
        else:
            seq.pending = token

    def _next_token(self, seq: Seq, out: int) -> int:
        """The token `seq` samples from output row `out` of the last decode."""
        token: int = runtime().llama_sampler_sample(seq.sampler, self._ctx, out)
        return token

    def _share_prompt(self, leader: Seq, out: int) -> None:
        """The leader has just read its prompt: each follower takes a copy of its cells and
        samples its first token from the same output row (so its logprobs too)."""
        llama_cpp = runtime()
        source = leader.slot
        assert source is not None
        followers, leader.followers = leader.followers, []
        for seq in followers:
            slot = seq.slot
            assert slot is not None
            # Across KV streams (`KV_UNIFIED = False`) this resets the follower's cells at
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

    def _fail_batch(self, seqs: list[Seq], status: int) -> None:
        """A failed decode may have left some of the batch in the cache: those sequences end, their cells go."""
        llama_cpp = runtime()
        error = GenerationFailed(f"llama.cpp decode failed (status {status})")
        for seq in seqs:
            slot = seq.slot
            if slot is not None:
                llama_cpp.llama_memory_seq_rm(self._memory, slot.seq_id, -1, -1)
                slot.tokens.clear()
            self._leave(seq, error)

    def _leave(self, seq: Seq, final: Item | None) -> None:
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
        self._end(seq, final)

    def _end(self, seq: Seq, final: Item | None) -> None:
        """The last of `seq`: its sampler freed, `final` (if any) and LEFT sent."""
        free_sampler(seq.sampler)
        seq.sampler = None
        if final is not None:
            self._outbox.send(seq, final)
        self._outbox.send(seq, LEFT)


def _slot_id(seq: Seq) -> int:
    assert seq.slot is not None
    return seq.slot.seq_id
