"""The legacy completion request (`POST /v1/completions`) as OpenAI documents it, plus the
extensions the chat request has; and its translation to the internal request."""

from __future__ import annotations

from typing import Annotated

import msgspec
from msgspec import Meta

from compat.requests import StreamOptions
from compat.translate import sampling_overrides
from pipelines.errors import InvalidRequest, Unsupported
from pipelines.types import GenerationRequest, RawPrompt

__all__ = ["DEFAULT_MAX_TOKENS", "CompletionRequest", "decode_completion_request", "prompts_of", "to_internal"]

DEFAULT_MAX_TOKENS = 16
"""OpenAI's default `max_tokens` for legacy completions (vLLM's too)."""

Penalty = Annotated[float, Meta(ge=-2.0, le=2.0)]
TokenId = Annotated[int, Meta(ge=0)]


class CompletionRequest(msgspec.Struct, kw_only=True, omit_defaults=True):
    """POST /v1/completions. `prompt` is a string, a list of strings, a list of token ids
    or a list of such lists (each string or list of ids one prompt)."""

    model: str
    prompt: str | Annotated[list[str | TokenId | list[TokenId]], Meta(min_length=1)]
    best_of: Annotated[int, Meta(ge=1, le=128)] | None = None
    echo: bool | None = None
    frequency_penalty: Penalty | None = None
    logit_bias: dict[str, float] | None = None
    logprobs: Annotated[int, Meta(ge=0, le=5)] | None = None
    max_tokens: Annotated[int, Meta(ge=0)] | None = None
    n: Annotated[int, Meta(ge=1, le=128)] | None = None
    presence_penalty: Penalty | None = None
    seed: int | None = None
    stop: str | list[str] | None = None
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    suffix: str | None = None
    temperature: Annotated[float, Meta(ge=0.0, le=2.0)] | None = None
    top_p: Annotated[float, Meta(ge=0.0, le=1.0)] | None = None
    user: str | None = None
    # -- extensions: the chat request's, documented there (compat/requests.py) --
    preset: str | None = None
    top_k: Annotated[int, Meta(ge=0, description="Extension: top-k sampling (0 disables).")] | None = None
    min_p: Annotated[float, Meta(ge=0.0, le=1.0, description="Extension: min-p sampling.")] | None = None
    repeat_penalty: Annotated[float, Meta(gt=0.0, description="Extension: llama.cpp's repetition penalty.")] | None = (
        None
    )


_DECODER = msgspec.json.Decoder(CompletionRequest)


def decode_completion_request(body: bytes) -> CompletionRequest:
    """Decodes and validates a body; raises `msgspec.DecodeError` (with its `- at $.path`)."""
    return _DECODER.decode(body)


def prompts_of(req: CompletionRequest) -> list[RawPrompt]:
    """The request's prompts, each a string or a tuple of token ids."""
    prompt = req.prompt
    if isinstance(prompt, str):
        return [prompt]
    if all(isinstance(p, int) for p in prompt):
        return [tuple(p for p in prompt if isinstance(p, int))]
    if all(isinstance(p, str) for p in prompt):
        return [p for p in prompt if isinstance(p, str)]
    if all(isinstance(p, list) for p in prompt):
        out: list[RawPrompt] = []
        for i, p in enumerate(prompt):
            if isinstance(p, list):
                if not p:
                    raise InvalidRequest(
                        f"prompt[{i}] is an empty list of token ids.", param=f"prompt[{i}]", code="invalid_value"
                    )
                out.append(tuple(p))
        return out
    raise InvalidRequest(
        "prompt must be a string, a list of strings, a list of token ids or a list of lists of token ids (not a mix).",
        param="prompt",
        code="invalid_value",
    )


def _checked(req: CompletionRequest) -> None:
    """What the types cannot say."""
    if req.suffix:
        raise Unsupported("suffix (insertion) is not supported by this gateway.", param="suffix")
    n = req.n or 1
    if req.best_of is not None and req.best_of < n:
        raise InvalidRequest("best_of must be at least n.", param="best_of", code="invalid_value")
    if req.best_of is not None and req.best_of > n:
        raise Unsupported(
            "best_of greater than n (choosing among extra candidates) is not supported by this gateway.",
            param="best_of",
        )
    if req.logit_bias:
        raise Unsupported("logit_bias is not supported by this gateway.", param="logit_bias")
    if req.stream_options is not None and not req.stream:
        raise InvalidRequest(
            "stream_options is only allowed when stream is true.", param="stream_options", code="invalid_value"
        )


def to_internal(req: CompletionRequest, prompt: RawPrompt, request_id: str) -> GenerationRequest:
    """The internal request for one of the request's prompts (see `prompts_of`)."""
    _checked(req)
    stop: tuple[str, ...] = ()
    if isinstance(req.stop, str):
        stop = (req.stop,)
    elif req.stop:
        stop = tuple(req.stop)
    return GenerationRequest(
        request_id=request_id,
        model=req.model,
        messages=(),
        prompt=prompt,
        echo=bool(req.echo),
        sampling=sampling_overrides(
            req, max_tokens=req.max_tokens if req.max_tokens is not None else DEFAULT_MAX_TOKENS
        ),
        preset=req.preset,
        stop=stop,
        stream=bool(req.stream),
        logprobs=req.logprobs is not None,
        top_logprobs=req.logprobs or 0,
        n=req.n or 1,
    )
