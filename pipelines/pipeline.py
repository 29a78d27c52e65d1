"""The pipeline contract (ADR-0026): `prepare` -> `stream` -> `finalize`.

A pipeline owns one request's life between routing and the wire: it builds the prompt,
merges sampling, reads the provider's output, and assembles the result. What differs
between formats is how the prompt is built and how tokens become messages (the
pipeline's `TokenDecoder`); what messages mean is `pipelines/channels.py`, for every
format alike.
"""

from __future__ import annotations

import abc
import time
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import msgspec

from pipelines.channels import ChannelMapper
from pipelines.errors import ContextLengthExceeded, InvalidRequest, Unsupported
from pipelines.postprocess import EchoStripper, StopMatcher
from pipelines.providers.base import CancelToken, DecodeParams, Prompt, Provider
from pipelines.result import PipelineResult
from pipelines.sampling import SamplingSnapshot, merge_sampling
from pipelines.types import (
    Delta,
    DeltaKind,
    FinishReason,
    GenerationRequest,
    LogprobEntry,
    MessageEvent,
    Output,
    Piece,
    PromptToken,
    Report,
    ResponseFormat,
    StopReason,
    Text,
    Usage,
)

if TYPE_CHECKING:
    from pipelines.config import ModelConfig, Preset

__all__ = ["GenerationPipeline", "PipelineConfig", "PipelineContext", "TokenDecoder"]


class PipelineConfig(msgspec.Struct, frozen=True, kw_only=True):
    """Gateway-wide inputs to `prepare`: presets and the gateway's own output cap."""

    presets: dict[str, Preset] = {}
    gateway_max_output_tokens: int | None = None
    current_date: str | None = None
    """Fixed date for Harmony prompts (tests); None means today."""


class TokenDecoder(Protocol):
    """Turns one generation's token pieces into messages (a format's own grammar)."""

    reasoning_tokens: int
    """Tokens it saw spent on reasoning."""

    @property
    def stop(self) -> StopReason | None:
        """Set once the tokens said the answer is over."""

    def feed(self, piece: Piece) -> list[MessageEvent]: ...

    def finish(self) -> list[MessageEvent]:
        """What was still held back when the tokens ran out."""


@dataclass
class PipelineContext:
    """One request's state from `prepare` to `finalize` (one per choice with `n` > 1)."""

    request: GenerationRequest
    model: ModelConfig
    provider: Provider
    prompt: Prompt
    sampling: SamplingSnapshot
    params: DecodeParams
    prompt_tokens: int
    decoder: TokenDecoder
    channels: ChannelMapper
    cancel: CancelToken = field(default_factory=CancelToken)
    """Shared by all choices of one request: they end together when the client goes."""
    index: int = 0
    """Which choice (`n`) of the request this context decodes."""
    created: float = field(default_factory=time.time)
    started_at: float = 0.0
    """When the generation's request to the provider went out (0: when `stream` begins)."""
    first_token_at: float | None = None
    last_token_at: float | None = None
    completion_tokens: int = 0
    cached_tokens: int = 0
    """Prompt tokens the provider took from its prefix cache."""
    token_gaps: list[float] = field(default_factory=list)
    """Seconds between consecutive pieces (inter-token latency samples)."""
    content: list[str] = field(default_factory=list)
    reasoning: list[str] = field(default_factory=list)
    logprobs: list[LogprobEntry] = field(default_factory=list)
    prompt_echo: tuple[PromptToken, ...] = ()
    """The prompt's tokens as the provider read them (`echo`)."""
    stop_reason: StopReason | None = None
    reported_usage: Usage | None = None
    """Counts a backend reported itself (an upstream's `usage`); they win over ours."""
    notes: dict[str, Any] = field(default_factory=dict)
    """Pipeline-specific facts for the completion event (e.g. invalid tool JSON)."""

    @property
    def stub(self) -> bool:
        return self.provider.stub


class GenerationPipeline(abc.ABC):
    """Base of the pipelines; `name` is what events, metrics and model cards call it."""

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
        prompt = self.build_prompt(req, sampling, provider)
        prompt_tokens = provider.count_tokens(prompt) or 0
        ctx_len = provider.context_length
        if prompt_tokens >= ctx_len:
            raise ContextLengthExceeded(
                f"This model's maximum context length is {ctx_len} tokens, but the prompt is "
                f"{prompt_tokens} tokens. Shorten the {req.prompt_param}.",
                param=req.prompt_param,
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
            response_format=self.response_format(req, provider),
            logprobs=req.logprobs,
            top_logprobs=req.top_logprobs,
            echo=req.echo,
        )
        return PipelineContext(
            request=req,
            model=model,
            provider=provider,
            prompt=prompt,
            sampling=sampling,
            params=params,
            prompt_tokens=prompt_tokens,
            decoder=self.new_decoder(req, provider),
            channels=_channels(req),
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
                    decoder=self.new_decoder(ctx.request, ctx.provider),
                    channels=_channels(ctx.request),
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

    def response_format(self, req: GenerationRequest, provider: Provider) -> ResponseFormat:
        """What the output is held to (the request's `response_format`, unless the format
        holds it to something else)."""
        return req.response_format

    @abc.abstractmethod
    def build_prompt(self, req: GenerationRequest, sampling: SamplingSnapshot, provider: Provider) -> Prompt: ...

    @abc.abstractmethod
    def new_decoder(self, req: GenerationRequest, provider: Provider) -> TokenDecoder:
        """A fresh token decoder for one choice of `req`."""

    def opening(self, prompt: Prompt) -> list[Piece]:
        """Pieces the prompt already holds of the answer (a call it opened): the decoder
        reads them before the model's own."""
        return []

    # -- stream -----------------------------------------------------------------

    async def stream(self, ctx: PipelineContext, output: AsyncGenerator[Output, None]) -> AsyncGenerator[Delta, None]:
        """The deltas of one choice, read from `output` (which this closes)."""
        if not ctx.started_at:
            ctx.started_at = time.perf_counter()
        post = _Post(ctx)
        for piece in self.opening(ctx.prompt):
            for delta in post.events(ctx.decoder.feed(piece)):
                yield delta
        try:
            async for item in output:
                if isinstance(item, Piece):
                    events = self._token(ctx, item)
                elif isinstance(item, Report):
                    if item.usage is not None:
                        ctx.reported_usage = item.usage
                    if item.stop is not None:
                        ctx.stop_reason = item.stop
                    if item.cached_tokens is not None:
                        ctx.cached_tokens = item.cached_tokens
                    if item.prompt:
                        ctx.prompt_echo = item.prompt
                        yield Delta(kind=DeltaKind.PROMPT, prompt=item.prompt, choice=ctx.index)
                    continue
                else:
                    events = self._message(ctx, item)
                for delta in post.events(events):
                    yield delta
                if post.stops.matched is not None:
                    ctx.stop_reason = StopReason.STOP
                elif ctx.channels.over:
                    ctx.stop_reason = StopReason.TOOL_CALL  # one call per turn was asked for
                if ctx.stop_reason is not None:
                    break
        finally:
            await output.aclose()
        for delta in post.events(ctx.decoder.finish()):
            yield delta
        for delta in post.deltas(ctx.channels.finish()):
            yield delta
        tail = post.tail()
        if tail is not None:
            yield tail
        if ctx.channels.has_calls and ctx.stop_reason is None and ctx.completion_tokens < ctx.params.max_tokens:
            ctx.stop_reason = StopReason.TOOL_CALL

    @staticmethod
    def _tick(ctx: PipelineContext, tokens: int) -> None:
        now = time.perf_counter()
        if ctx.first_token_at is None:
            ctx.first_token_at = now
        elif ctx.last_token_at is not None:
            ctx.token_gaps.append(now - ctx.last_token_at)
        ctx.last_token_at = now
        ctx.completion_tokens += tokens

    def _token(self, ctx: PipelineContext, piece: Piece) -> list[MessageEvent]:
        self._tick(ctx, piece.tokens)
        if piece.logprob is not None:
            ctx.logprobs.append(piece.logprob)
        events = ctx.decoder.feed(piece)
        stop = ctx.decoder.stop
        if stop is not None:
            ctx.stop_reason = stop
        return events

    def _message(self, ctx: PipelineContext, event: MessageEvent) -> list[MessageEvent]:
        if isinstance(event, Text) and event.tokens:
            self._tick(ctx, event.tokens)
            ctx.logprobs.extend(event.logprobs)
        return [event]

    # -- finalize ---------------------------------------------------------------

    def finalize(self, ctx: PipelineContext) -> PipelineResult:
        stop = ctx.stop_reason
        hit_cap = ctx.completion_tokens >= ctx.params.max_tokens
        if stop is None:
            stop = StopReason.LENGTH if hit_cap else StopReason.EOS
        channels = ctx.channels
        if stop is StopReason.TOOL_CALL or (channels.has_calls and stop is not StopReason.LENGTH):
            finish: FinishReason = "tool_calls"
        elif stop is StopReason.LENGTH:
            finish = "length"
        else:
            finish = "stop"
        if ctx.stub and stop is not StopReason.ERROR:
            stop = StopReason.STUB
        invalid = channels.invalid_calls()
        if invalid:
            # passed on as produced; the completion event records it
            ctx.notes["invalid_tool_arguments"] = invalid
        usage = ctx.reported_usage or Usage(
            prompt_tokens=ctx.prompt_tokens,
            completion_tokens=ctx.completion_tokens,
            reasoning_tokens=ctx.decoder.reasoning_tokens + channels.reasoning_tokens,
            cached_tokens=ctx.cached_tokens,
        )
        end = ctx.last_token_at or time.perf_counter()
        first = ctx.first_token_at
        return PipelineResult(
            content="".join(ctx.content),
            reasoning="".join(ctx.reasoning),
            tool_calls=tuple(channels.tool_calls),
            finish_reason=finish,
            stop_reason=stop,
            usage=usage,
            sampling=ctx.sampling,
            logprobs=tuple(ctx.logprobs),
            prompt=ctx.prompt_echo,
            first_token_seconds=(first - ctx.started_at) if first is not None else None,
            decode_seconds=(end - first) if first is not None else 0.0,
            token_gaps=tuple(ctx.token_gaps),
            notes=dict(ctx.notes),
            index=ctx.index,
        )


class _Post:
    """What of one choice's messages reaches the client: deltas from the channel mapping,
    after echo stripping and stop sequences, marked with the choice; recorded in the
    context for the result."""

    __slots__ = ("ctx", "echo", "plain", "stops")

    def __init__(self, ctx: PipelineContext) -> None:
        self.ctx = ctx
        self.stops = StopMatcher(ctx.request.stop)
        strip = ctx.model.strip_echo and ctx.request.prompt is None  # a completion has no user turn
        self.echo = EchoStripper(_last_user_text(ctx.request)) if strip else None
        self.plain = self.echo is None and not self.stops.active and not ctx.index
        """Content passes as it is (no echo to strip, no stop sequence, choice 0)."""

    def events(self, events: list[MessageEvent]) -> list[Delta]:
        if len(events) == 1:  # most tokens: one text event
            delta = self.ctx.channels.feed(events[0])
            if delta is None:
                return []
            out = self._delta(delta)
            return [out] if out is not None else []
        return self.deltas([d for d in map(self.ctx.channels.feed, events) if d is not None])

    def deltas(self, deltas: list[Delta]) -> list[Delta]:
        return [d for d in map(self._delta, deltas) if d is not None]

    def _delta(self, delta: Delta) -> Delta | None:
        ctx = self.ctx
        if delta.kind is DeltaKind.REASONING:
            ctx.reasoning.append(delta.text)
        elif delta.kind is DeltaKind.CONTENT:
            if self.plain:
                ctx.content.append(delta.text)
                return delta
            text = self.echo.feed(delta.text) if self.echo else delta.text
            text = self.stops.feed(text)
            if not text and not delta.logprobs:
                return None
            ctx.content.append(text)
            delta = Delta(kind=DeltaKind.CONTENT, text=text, logprobs=delta.logprobs)
        return msgspec.structs.replace(delta, choice=ctx.index) if ctx.index else delta

    def tail(self) -> Delta | None:
        """Content held back for stop sequences or echo stripping, once the output ended."""
        tail = self.stops.feed(self.echo.flush() if self.echo else "") + self.stops.flush()
        if self.stops.matched is not None:
            self.ctx.stop_reason = StopReason.STOP
        if not tail:
            return None
        self.ctx.content.append(tail)
        return Delta(kind=DeltaKind.CONTENT, text=tail, choice=self.ctx.index)


def _channels(req: GenerationRequest) -> ChannelMapper:
    return ChannelMapper(max_calls=None if req.parallel_tool_calls else 1)


def _last_user_text(req: GenerationRequest) -> str:
    for m in reversed(req.messages):
        if m.role == "user":
            return m.content
    return ""
