"""The pipeline contract (ADR-0026): `prepare` -> `stream` -> `finalize`.

A pipeline owns one request's life between routing and the wire: it builds the prompt,
merges sampling, drives the provider, maps what the model says into deltas and
assembles the result. Subclasses say how pieces become deltas.
"""

from __future__ import annotations

import abc
import json
import time
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import msgspec

from pipelines.errors import ContextLengthExceeded, InvalidRequest, Unsupported
from pipelines.postprocess import EchoStripper, StopMatcher
from pipelines.providers.base import CancelToken, DecodeParams, Prompt, Provider
from pipelines.sampling import SamplingSnapshot, merge_sampling
from pipelines.types import (
    Delta,
    DeltaKind,
    FinishReason,
    GenerationRequest,
    LogprobEntry,
    Piece,
    StopReason,
    ToolCall,
    Usage,
)

if TYPE_CHECKING:
    from pipelines.config import ModelConfig, Preset

__all__ = ["GenerationPipeline", "PipelineConfig", "PipelineContext", "PipelineResult"]


class PipelineConfig(msgspec.Struct, frozen=True, kw_only=True):
    """Gateway-wide inputs to `prepare`: presets and the gateway's own output cap."""

    presets: dict[str, Preset] = {}
    gateway_max_output_tokens: int | None = None
    current_date: str | None = None
    """Fixed date for Harmony prompts (tests); None means today."""


@dataclass
class PipelineContext:
    """One request's state from `prepare` to `finalize`."""

    request: GenerationRequest
    model: ModelConfig
    provider: Provider
    prompt: Prompt
    sampling: SamplingSnapshot
    params: DecodeParams
    prompt_tokens: int
    cancel: CancelToken = field(default_factory=CancelToken)
    """Shared by all choices of one request: they end together when the client goes."""
    index: int = 0
    """Which choice (`n`) of the request this context decodes."""
    source: AsyncGenerator[Piece, None] | None = None
    """The pieces to read, when the caller opened the generation itself (several choices
    from one provider call); None: `stream` asks the provider."""
    created: float = field(default_factory=time.time)
    started_at: float = 0.0
    first_token_at: float | None = None
    last_token_at: float | None = None
    completion_tokens: int = 0
    token_gaps: list[float] = field(default_factory=list)
    """Seconds between consecutive pieces (inter-token latency samples)."""
    content: list[str] = field(default_factory=list)
    reasoning: list[str] = field(default_factory=list)
    tool_calls: list[ToolCall] = field(default_factory=list)
    logprobs: list[LogprobEntry] = field(default_factory=list)
    stop_reason: StopReason | None = None
    reported_usage: Usage | None = None
    """Counts a backend reported itself (an upstream's `usage`); they win over ours."""
    tool_args: dict[int, list[str]] = field(default_factory=dict)
    notes: dict[str, Any] = field(default_factory=dict)
    """Pipeline-specific facts for the completion event (e.g. invalid tool JSON)."""
    state: Any = None
    """The pipeline's own per-request decoding state (a parser, a UTF-8 decoder)."""

    @property
    def stub(self) -> bool:
        return self.provider.stub


class PipelineResult(msgspec.Struct, frozen=True, kw_only=True):
    content: str
    reasoning: str
    tool_calls: tuple[ToolCall, ...]
    finish_reason: FinishReason
    stop_reason: StopReason
    usage: Usage
    sampling: SamplingSnapshot
    logprobs: tuple[LogprobEntry, ...] = ()
    first_token_seconds: float | None = None
    decode_seconds: float = 0.0
    token_gaps: tuple[float, ...] = ()
    notes: dict[str, Any] = {}
    index: int = 0
    choices: tuple[PipelineResult, ...] = ()
    """With `n` > 1: every choice's own result (the top level is choice 0's output with the
    request's totals: usage summed, decode time from the first token to the last of any)."""

    @property
    def all_choices(self) -> tuple[PipelineResult, ...]:
        return self.choices or (self,)

    @property
    def decode_tokens_per_second(self) -> float | None:
        """Tokens after each choice's first over the time they took; None with fewer than two."""
        n = self.usage.completion_tokens - len(self.all_choices)
        if n < 1 or self.decode_seconds <= 0:
            return None
        return n / self.decode_seconds

    def summary(self) -> dict[str, Any]:
        return {
            "sampling": self.sampling.as_dict(),
            "usage": {
                "prompt_tokens": self.usage.prompt_tokens,
                "completion_tokens": self.usage.completion_tokens,
                "reasoning_tokens": self.usage.reasoning_tokens,
            },
            "finish_reason": self.finish_reason,
            "tool_calls": len(self.tool_calls),
            "first_token_seconds": self.first_token_seconds,
            "decode_seconds": self.decode_seconds,
            "decode_tokens_per_second": self.decode_tokens_per_second,
            **({"choices": len(self.choices)} if self.choices else {}),
            **self.notes,
        }


class GenerationPipeline(abc.ABC):
    """Base of the pipelines; `name` is what events and metrics call it."""

    name: ClassVar[str]

    def __init__(self, config: PipelineConfig) -> None:
        self.config = config

    # -- prepare ----------------------------------------------------------------

    def prepare(self, req: GenerationRequest, provider: Provider, model: ModelConfig) -> PipelineContext:
        self.check_supported(req, provider)
        preset = None
        if req.preset is not None:
            preset = self.config.presets.get(req.preset)
            if preset is None:
                raise InvalidRequest(
                    f"Unknown preset '{req.preset}'. Known: {sorted(self.config.presets) or 'none'}.", param="preset"
                )
        sampling = merge_sampling(
            model.sampling,
            req.preset,
            preset,
            req.sampling,
            passport_cap=model.max_output_tokens,
            gateway_cap=self.config.gateway_max_output_tokens,
        )
        prompt = self.build_prompt(req, sampling)
        prompt_tokens = provider.count_tokens(prompt) or 0
        ctx_len = provider.context_length
        if prompt_tokens >= ctx_len:
            raise ContextLengthExceeded(
                f"This model's maximum context length is {ctx_len} tokens, but the prompt is "
                f"{prompt_tokens} tokens. Shorten the messages.",
                param="messages",
            )
        params = DecodeParams(
            max_tokens=sampling.max_tokens,
            temperature=sampling.temperature,
            top_p=sampling.top_p,
            top_k=sampling.top_k,
            min_p=sampling.min_p,
            presence_penalty=sampling.presence_penalty,
            frequency_penalty=sampling.frequency_penalty,
            repeat_penalty=sampling.repeat_penalty,
            seed=sampling.seed,
            response_format=req.response_format,
            logprobs=req.logprobs,
            top_logprobs=req.top_logprobs,
        )
        return PipelineContext(
            request=req,
            model=model,
            provider=provider,
            prompt=prompt,
            sampling=sampling,
            params=params,
            prompt_tokens=prompt_tokens,
        )

    def fork(self, ctx: PipelineContext) -> list[PipelineContext]:
        """The contexts of all `n` choices of a prepared request (choice 0 is `ctx`).

        They share the prompt, its token count and the cancel token; each has its own seed
        (the request's seed plus its index, so a seeded request stays reproducible)."""
        contexts = [ctx]
        for i in range(1, ctx.request.n):
            seed = ctx.params.seed + i if ctx.params.seed is not None else None
            contexts.append(
                PipelineContext(
                    request=ctx.request,
                    model=ctx.model,
                    provider=ctx.provider,
                    prompt=ctx.prompt,
                    sampling=ctx.sampling,
                    params=msgspec.structs.replace(ctx.params, seed=seed),
                    prompt_tokens=ctx.prompt_tokens,
                    cancel=ctx.cancel,
                    index=i,
                )
            )
        return contexts

    def check_supported(self, req: GenerationRequest, provider: Provider) -> None:
        caps = provider.capabilities
        most = provider.max_choices
        if most is not None and req.n > most:
            raise Unsupported(
                f"Model '{req.model}' decodes at most {most} choice{'s' if most != 1 else ''} of one request "
                f"at once (its `slots`); n = {req.n} asks for more.",
                param="n",
            )
        if req.response_format.type != "text" and not caps.get("json_schema"):
            raise Unsupported(
                f"Model '{req.model}' cannot constrain output to {req.response_format.type}.",
                param="response_format",
            )
        if req.logprobs and not caps.get("logprobs"):
            raise Unsupported(f"Model '{req.model}' does not return logprobs.", param="logprobs")

    @abc.abstractmethod
    def build_prompt(self, req: GenerationRequest, sampling: SamplingSnapshot) -> Prompt: ...

    # -- stream -----------------------------------------------------------------

    @abc.abstractmethod
    def map_piece(self, ctx: PipelineContext, piece: Piece) -> list[Delta]:
        """Deltas for one piece; set `ctx.stop_reason` when the model has finished."""

    def flush(self, ctx: PipelineContext) -> list[Delta]:
        """Deltas still held back when the provider stops."""
        return []

    async def stream(self, ctx: PipelineContext) -> AsyncGenerator[Delta, None]:
        ctx.started_at = time.perf_counter()
        stops = StopMatcher(ctx.request.stop)
        echo = EchoStripper(_last_user_text(ctx.request)) if ctx.model.strip_echo else None
        gen = ctx.source if ctx.source is not None else ctx.provider.generate(ctx.prompt, ctx.params, ctx.cancel)
        try:
            async for piece in gen:
                now = time.perf_counter()
                if ctx.first_token_at is None:
                    ctx.first_token_at = now
                elif ctx.last_token_at is not None:
                    ctx.token_gaps.append(now - ctx.last_token_at)
                ctx.last_token_at = now
                ctx.completion_tokens += piece.tokens
                if piece.logprob is not None:
                    ctx.logprobs.append(piece.logprob)
                if piece.usage is not None:
                    ctx.reported_usage = piece.usage
                if piece.stop is not None:
                    ctx.stop_reason = piece.stop
                deltas = [piece.delta] if piece.delta is not None else self.map_piece(ctx, piece)
                for delta in deltas:
                    out = self._post(ctx, delta, stops, echo)
                    if out is not None:
                        yield out
                if stops.matched is not None:
                    ctx.stop_reason = StopReason.STOP
                if ctx.stop_reason is not None:
                    break
        finally:
            await gen.aclose()
        for delta in self.flush(ctx):
            out = self._post(ctx, delta, stops, echo)
            if out is not None:
                yield out
        tail = stops.feed(echo.flush() if echo else "") + stops.flush()
        if tail:
            ctx.content.append(tail)
            yield Delta(kind=DeltaKind.CONTENT, text=tail, choice=ctx.index)
        if stops.matched is not None:
            ctx.stop_reason = StopReason.STOP

    def _post(self, ctx: PipelineContext, delta: Delta, stops: StopMatcher, echo: EchoStripper | None) -> Delta | None:
        """What of `delta` reaches the client (after echo stripping and stop sequences),
        marked with its choice; recorded in `ctx` for the result."""
        if delta.kind is DeltaKind.REASONING:
            ctx.reasoning.append(delta.text)
        elif delta.kind is DeltaKind.TOOL_CALL:
            _aggregate_tool_call(ctx, delta)
        else:
            text = echo.feed(delta.text) if echo else delta.text
            text = stops.feed(text)
            if not text and not delta.logprobs:
                return None
            ctx.content.append(text)
            delta = Delta(kind=DeltaKind.CONTENT, text=text, logprobs=delta.logprobs)
        return msgspec.structs.replace(delta, choice=ctx.index) if ctx.index else delta

    # -- finalize ---------------------------------------------------------------

    def finalize(self, ctx: PipelineContext) -> PipelineResult:
        stop = ctx.stop_reason
        hit_cap = ctx.completion_tokens >= ctx.params.max_tokens
        if stop is None:
            stop = StopReason.LENGTH if hit_cap else StopReason.EOS
        if stop is StopReason.TOOL_CALL or (ctx.tool_calls and stop is not StopReason.LENGTH):
            finish: FinishReason = "tool_calls"
        elif stop is StopReason.LENGTH:
            finish = "length"
        else:
            finish = "stop"
        if ctx.stub and stop is not StopReason.ERROR:
            stop = StopReason.STUB
        tool_calls = [
            ToolCall(id=c.id, name=c.name, arguments="".join(ctx.tool_args.get(i, ())))
            for i, c in enumerate(ctx.tool_calls)
        ]
        invalid = [c.name for c in tool_calls if not _is_json(c.arguments)]
        if invalid:
            # passed on as produced; the completion event records it
            ctx.notes["invalid_tool_arguments"] = invalid
        usage = ctx.reported_usage or Usage(
            prompt_tokens=ctx.prompt_tokens,
            completion_tokens=ctx.completion_tokens,
            reasoning_tokens=self.reasoning_tokens(ctx),
        )
        end = ctx.last_token_at or time.perf_counter()
        first = ctx.first_token_at
        return PipelineResult(
            content="".join(ctx.content),
            reasoning="".join(ctx.reasoning),
            tool_calls=tuple(tool_calls),
            finish_reason=finish,
            stop_reason=stop,
            usage=usage,
            sampling=ctx.sampling,
            logprobs=tuple(ctx.logprobs),
            first_token_seconds=(first - ctx.started_at) if first is not None else None,
            decode_seconds=(end - first) if first is not None else 0.0,
            token_gaps=tuple(ctx.token_gaps),
            notes=dict(ctx.notes),
            index=ctx.index,
        )

    @staticmethod
    def combine(results: Sequence[PipelineResult]) -> PipelineResult:
        """One result for a request's `n` choices (see `PipelineResult.choices`)."""
        if len(results) == 1:
            return results[0]
        first = results[0]
        usage = Usage(
            prompt_tokens=first.usage.prompt_tokens,  # one prompt, read once
            completion_tokens=sum(r.usage.completion_tokens for r in results),
            reasoning_tokens=sum(r.usage.reasoning_tokens for r in results),
        )
        starts = [r.first_token_seconds for r in results if r.first_token_seconds is not None]
        ends = [r.first_token_seconds + r.decode_seconds for r in results if r.first_token_seconds is not None]
        notes: dict[str, Any] = {}
        for r in results:
            for key, value in r.notes.items():
                notes.setdefault(key, value if not isinstance(value, list) else [])
                if isinstance(value, list):
                    notes[key].extend(value)
        return msgspec.structs.replace(
            first,
            usage=usage,
            first_token_seconds=min(starts) if starts else None,
            decode_seconds=(max(ends) - min(starts)) if starts else 0.0,
            token_gaps=tuple(gap for r in results for gap in r.token_gaps),
            notes=notes,
            choices=tuple(results),
        )

    def reasoning_tokens(self, ctx: PipelineContext) -> int:
        return 0


def _aggregate_tool_call(ctx: PipelineContext, delta: Delta) -> None:
    """Collects a streamed tool call into `ctx.tool_calls` (arguments joined at the end)."""
    i = delta.tool_index
    if i not in ctx.tool_args:
        ctx.tool_args[i] = []
        ctx.tool_calls.append(ToolCall(id=delta.tool_id or f"call_{i}", name=delta.tool_name or "", arguments=""))
    if delta.text:
        ctx.tool_args[i].append(delta.text)


def _is_json(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


def _last_user_text(req: GenerationRequest) -> str:
    for m in reversed(req.messages):
        if m.role == "user":
            return m.content
    return ""
