"""`LlamaProvider`: a local GGUF model through llama-cpp-python, for any number of slots.

llama.cpp calls block for milliseconds per token, so decoding runs on the engine's own
thread (engine.py) and each token crosses to the event loop as soon as it is sampled.
Sampling uses llama.cpp's sampler chain directly, so that the grammar is checked before
any decode work and logprobs can be read from the logits of the sampled position.
Everything that can fail with a client error (grammar, tokens, context size) happens on
the event loop before a generation takes a slot, so a bad request fails at once even
while others run.
"""

from __future__ import annotations

import asyncio
import functools
import os
import time
from collections.abc import AsyncGenerator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipelines.errors import InvalidRequest, ModelUnavailable
from pipelines.events import EventBus, PromptProcessed
from pipelines.harmony.vocab import harmony_vocab
from pipelines.model_files import missing_model_file
from pipelines.providers.base import CancelToken, DecodeParams, LoadFailure, Prompt, Provider
from pipelines.providers.llama.engine import PROMPT_CHUNK, Engine
from pipelines.providers.llama.harmony import check_vocabulary
from pipelines.providers.llama.placement import placement
from pipelines.providers.llama.prompt import Plan, PromptReader
from pipelines.providers.llama.runtime import QuietLog
from pipelines.providers.llama.sampler import build_sampler, free_sampler
from pipelines.providers.llama.sequences import Done, EngineStats, PromptStats, Seq
from pipelines.providers.llama.tokenizer import LlamaTokenizer
from pipelines.providers.llama.weights import open_model
from pipelines.types import Output, Report

if TYPE_CHECKING:
    from llama_cpp._internals import LlamaModel

    from pipelines.config import LlamaModelConfig
    from pipelines.tokenization import ModelTokenizer

__all__ = ["LlamaProvider"]


class LlamaProvider(Provider):
    """Serves one GGUF file to up to `slots` generations at once (continuous batching;
    with one slot, one generation at a time)."""

    kind = "llama_cpp"
    holds_weights = True
    config: LlamaModelConfig

    def __init__(
        self,
        config: LlamaModelConfig,
        *,
        cache_dir: Path,
        bus: EventBus | None = None,
        prompt_chunk: int = PROMPT_CHUNK,
        engine: type[Engine] = Engine,
    ) -> None:
        """`engine`: the scheduler class (bench/token_ceiling.py passes one whose decode
        returns at once, to measure what the gateway itself sustains)."""
        super().__init__(config)
        self._engine_type = engine
        self.cache_dir = cache_dir
        self.model_path: Path | None = None
        self._bus = bus
        self._prompt_chunk = prompt_chunk
        self._quiet = QuietLog()
        self._model: LlamaModel | None = None
        self._engine: Engine | None = None
        self._prompts: PromptReader | None = None
        self._placement: dict[str, Any] | None = None

    @functools.cached_property
    def capabilities(self) -> dict[str, bool]:
        return {**super().capabilities, "json_schema": True, "logprobs": True, "constrained_decoding": True}

    @property
    def threads(self) -> int:
        return self.config.threads or os.cpu_count() or 1

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

    @property
    def max_choices(self) -> int:
        return self.config.slots

    @property
    def prompts(self) -> PromptReader:
        """The loaded model's prompt reader; raises `ModelUnavailable` when not loaded."""
        if self._prompts is None:
            raise ModelUnavailable(f"model {self.config.id!r} is not loaded")
        return self._prompts

    def foreseen_failure(self) -> LoadFailure | None:
        return missing_model_file(self.config, cache_dir=self.cache_dir)

    def tokenizer(self) -> ModelTokenizer:
        engine, prompts = self._loaded()
        assert self._model is not None
        return LlamaTokenizer(prompts, self._model.metadata(), engine.n_ctx_seq)

    def count_tokens(self, prompt: Prompt) -> int:
        """Prompt tokens exactly as `generate` will feed them; needs the model loaded."""
        return len(self.prompts.tokens(prompt))

    # -- loading ----------------------------------------------------------------------

    def placement(self) -> dict[str, Any] | None:
        return self._placement

    @property
    def loaded(self) -> bool:
        """The weights and the engine are in memory."""
        return self._engine is not None

    async def load(self) -> None:
        if self._engine is not None:
            return
        try:
            model, engine, prompts = await asyncio.to_thread(self._load_blocking)
        except BaseException:
            # llama.cpp keeps only a raw pointer to the quiet log's callback: left installed
            # by a provider that is then dropped, the next log line calls freed memory.
            self._quiet.remove()
            raise
        self._model, self._engine, self._prompts = model, engine, prompts

    def _load_blocking(self) -> tuple[LlamaModel, Engine, PromptReader]:
        model, path = open_model(self.config, cache_dir=self.cache_dir, quiet=self._quiet)
        try:
            harmony = None
            if self.config.format == "harmony":
                harmony = harmony_vocab()
                check_vocabulary(model.model, harmony)
            prompts = PromptReader(model, model.metadata(), harmony)
            engine = self._engine_type(
                model,
                name=self.config.id,
                slots=self.config.slots,
                n_ctx_seq=self.config.context_length,
                n_batch=self.config.batch_size,
                threads=self.threads,
                chunk=self._prompt_chunk,
                flash_attention=self.config.flash_attention,
                prompt_cache_bytes=self.config.prompt_cache_mib << 20,
            )
        except BaseException:
            model.close()
            raise
        self.model_path = path
        self._placement = placement(self.config, model)
        return model, engine, prompts

    async def unload(self) -> None:
        engine, model = self._engine, self._model
        self._engine = self._model = self._prompts = None
        self._placement = None
        if engine is not None:
            await asyncio.to_thread(engine.close)  # running generations end with GenerationFailed
        if model is not None:
            await asyncio.to_thread(model.close)
        self._quiet.remove()

    def _loaded(self) -> tuple[Engine, PromptReader]:
        if self._engine is None or self._prompts is None:
            raise ModelUnavailable(f"model {self.config.id!r} is not loaded")
        return self._engine, self._prompts

    # -- generating ---------------------------------------------------------------------

    async def generate(self, prompt: Prompt, params: DecodeParams, cancel: CancelToken) -> AsyncGenerator[Output, None]:
        engine, prompts = self._loaded()
        # Everything that can fail with a client error happens here, before a slot is taken.
        plan = prompts.plan(prompt, params, engine.n_ctx_seq)
        [seq] = self._submit(engine, [plan], cancel)
        pieces = self._pieces(engine, prompt, seq, time.perf_counter())
        try:
            async for piece in pieces:
                yield piece
        finally:
            await pieces.aclose()

    def generate_choices(
        self, prompt: Prompt, params: Sequence[DecodeParams], cancel: CancelToken
    ) -> list[AsyncGenerator[Output, None]]:
        """The choices decode side by side from one reading of the prompt (see engine.py).
        Called on the event loop; client errors raise here, before any choice is
        submitted. The choices are in the engine on return: each stream must be closed."""
        if len(params) <= 1:
            return [self.generate(prompt, p, cancel) for p in params]
        engine, prompts = self._loaded()
        if len(params) > self.max_choices:
            raise InvalidRequest(f"at most {self.max_choices} choices decode at once (`slots`)", param="n")
        # The prompt's tokens are tokenized once (the reader remembers them).
        plans = [prompts.plan(prompt, p, engine.n_ctx_seq) for p in params]
        seqs = self._submit(engine, plans, cancel)
        submitted = time.perf_counter()
        return [_Choice(engine, seq, self._pieces(engine, prompt, seq, submitted)) for seq in seqs]

    def _submit(self, engine: Engine, plans: list[Plan], cancel: CancelToken) -> list[Seq]:
        """One sequence per plan, submitted together (the first one leads)."""
        loop = asyncio.get_running_loop()
        seqs: list[Seq] = []
        try:
            for plan in plans:
                sampler = build_sampler(engine.model.model, plan.params, plan.gbnf)
                seqs.append(
                    Seq(
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

    async def _pieces(self, engine: Engine, prompt: Prompt, seq: Seq, submitted: float) -> AsyncGenerator[Output, None]:
        report: Report | None = None
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
                        report = Report(cached_tokens=item.cached)
                    continue
                if isinstance(item, BaseException):
                    raise item
                yield item
                if report is not None:
                    # after the first token, so that a reader's first item is the model's
                    yield report
                    report = None
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


async def _let_go(engine: Engine, seq: Seq) -> None:
    """Has `seq` leave within one step, and returns only then: the slot is free for the next
    request by the time the caller's admission slot is. `wait` never cancels the future,
    so a second cancel here cannot lose the slot."""
    if not seq.left.done():
        seq.stop.set()
        engine.poke()
        await asyncio.wait({seq.left})


class _Choice(AsyncGenerator[Output, None]):
    """One stream of `generate_choices`. Its sequence is in the engine before the first
    read, and closing a bare async generator that never started runs none of its code:
    this one lets go of its sequence however it ends."""

    __slots__ = ("_engine", "_pieces", "_seq")

    def __init__(self, engine: Engine, seq: Seq, pieces: AsyncGenerator[Output, None]) -> None:
        self._engine = engine
        self._seq = seq
        self._pieces = pieces

    async def asend(self, value: None) -> Output:
        return await self._pieces.asend(value)

    async def athrow(self, *args: Any) -> Output:
        return await self._pieces.athrow(*args)

    async def aclose(self) -> None:
        try:
            await self._pieces.aclose()
        finally:
            await _let_go(self._engine, self._seq)
