"""POST /v1/completions (legacy text completions), streamed (SSE) and not: the client's raw
prompt, continued by the model with no template (`pipelines/formats/completion.py`).

A request with several prompts runs them one after another (each takes the model's slots
in turn), streamed or not; their choices are numbered prompt by prompt."""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator
from typing import Any

import msgspec
from litestar import Request
from litestar.response.base import ASGIResponse

from app.answers import Answer, JsonAnswer
from app.errors import error_asgi
from app.gateway import Gateway
from app.routes.generation import collect, event_stream, events, generation_headers, read_request, start
from compat.completions_wire import (
    DONE,
    CompletionRequest,
    CompletionStreamEncoder,
    decode_completion_request,
    prompts_of,
    to_completion,
    to_internal,
    total_usage,
)
from compat.errors import from_gateway_error
from compat.refusals import ClientGone, Draining
from pipelines.errors import GatewayError
from pipelines.generation import Generation
from pipelines.result import PipelineResult
from pipelines.types import GenerationRequest, RawPrompt, Usage

__all__ = ["create_completion"]

_KNOWN = frozenset(CompletionRequest.__struct_fields__)
_ENCODER = msgspec.json.Encoder()


async def create_completion(request: Request[Any, Any, Any], gateway: Gateway) -> Answer:
    wire = await read_request(request, gateway, decode_completion_request, _KNOWN)
    if isinstance(wire, ASGIResponse):
        return wire
    state = request.scope["state"]
    prompts = prompts_of(wire)
    reqs = [to_internal(wire, prompt, state["request_id"]) for prompt in prompts]
    first = await start(request, gateway, reqs[0])
    if isinstance(first, ASGIResponse):
        return first
    answer = _Answer(request, gateway, wire, prompts, reqs)
    if wire.stream:
        enc = answer.encoder(0, first)
        return event_stream(first, enc, generation_headers(first), chunks=answer.stream(first, enc))
    gen = first
    results: list[PipelineResult] = []
    for i in range(len(prompts)):
        if i:
            started = await start(request, gateway, reqs[i])
            if isinstance(started, ASGIResponse):
                return started
            gen = started
        try:
            results.append(await collect(gen, request.receive))
        except ClientGone as exc:
            return error_asgi(exc)
        # a non-stream generation may have moved on to another upstream or model part-way
        state["model_id"] = gen.model_id
    completion = to_completion(
        list(zip(prompts, results, strict=True)),
        completion_id=answer.completion_id,
        model=state["model_id"],
        created=answer.created,
        echo=bool(wire.echo),
        logprobs=wire.logprobs is not None,
        n=wire.n or 1,
    )
    headers = generation_headers(gen)
    return JsonAnswer(_ENCODER.encode(completion), headers)


class _Answer:
    """One request's completion: its id, and (streamed) the encoder of each prompt and the
    stream that runs them one after another."""

    def __init__(
        self,
        request: Request[Any, Any, Any],
        gateway: Gateway,
        wire: CompletionRequest,
        prompts: list[RawPrompt],
        reqs: list[GenerationRequest],
    ) -> None:
        self.request = request
        self.gateway = gateway
        self.wire = wire
        self.prompts = prompts
        self.reqs = reqs
        self.completion_id = f"cmpl-{request.scope['state']['request_id'].removeprefix('req_')}"
        self.created = int(time.time())

    def encoder(self, i: int, gen: Generation, carried: Usage | None = None) -> CompletionStreamEncoder:
        req = self.reqs[i]
        return CompletionStreamEncoder(
            completion_id=self.completion_id,
            model=gen.model_id,
            prompt=self.prompts[i],
            created=self.created,
            echo=req.echo,
            logprobs=req.logprobs,
            choices=req.n,
            include_usage=bool(self.wire.stream_options and self.wire.stream_options.include_usage),
            base=i * req.n,
            last=i == len(self.prompts) - 1,
            carried=carried,
        )

    async def stream(self, first: Generation, enc: CompletionStreamEncoder) -> AsyncGenerator[bytes, None]:
        """Every prompt's events (the first prompt's by `enc`), one generation after
        another; a failure (told in band) ends the stream."""
        gen = first
        done: list[Usage] = []
        for i in range(len(self.prompts)):
            if i:
                try:
                    started = await start(self.request, self.gateway, self.reqs[i])
                except GatewayError as exc:
                    yield CompletionStreamEncoder.failure(from_gateway_error(exc)) + DONE
                    return
                if isinstance(started, ASGIResponse):  # the gateway began draining
                    yield CompletionStreamEncoder.failure(from_gateway_error(Draining())) + DONE
                    return
                gen = started
            try:
                encoder = self.encoder(i, gen, total_usage(done)) if i else enc
                async for chunk in events(gen, encoder):
                    yield chunk
            finally:
                await gen.aclose()  # (the response closes only the first)
            if gen.result is None:
                if i < len(self.prompts) - 1:
                    yield DONE  # the failure was told; the last prompt's encoder did not end the stream
                return
            done.append(gen.result.usage)
