"""POST /v1/completions (legacy text completions), streamed (SSE) and not: the client's raw
prompt, continued by the model with no template (`pipelines/formats/completion.py`).

A request with several prompts runs them one after another (each takes the model's slots
in turn) and answers them together; their choices are numbered prompt by prompt."""

from __future__ import annotations

import time
from typing import Any

import msgspec
from litestar import Request, post
from litestar.di import NamedDependency
from litestar.response.base import ASGIResponse

from app import paths
from app.errors import error_asgi
from app.gateway import Gateway
from app.routes.generation import collect, event_stream, generation_headers, read_request, start
from compat.completions_wire import (
    CompletionRequest,
    CompletionStreamEncoder,
    decode_completion_request,
    prompts_of,
    to_completion,
    to_internal,
)
from compat.refusals import ClientGone
from pipelines.errors import Unsupported
from pipelines.result import PipelineResult
from pipelines.types import RawPrompt

__all__ = ["create_completion"]

_KNOWN = frozenset(CompletionRequest.__struct_fields__)
_ENCODER = msgspec.json.Encoder()


@post(paths.COMPLETIONS, operation_id="createCompletion", status_code=200, include_in_schema=False)
async def create_completion(request: Request[Any, Any, Any], gateway: NamedDependency[Gateway]) -> ASGIResponse:
    wire = await read_request(request, gateway, decode_completion_request, _KNOWN)
    if isinstance(wire, ASGIResponse):
        return wire
    state = request.scope["state"]
    prompts = prompts_of(wire)
    reqs = [to_internal(wire, prompt, state["request_id"]) for prompt in prompts]
    if wire.stream and len(prompts) > 1:
        raise Unsupported("Streaming several prompts in one request is not supported; send one prompt.", param="prompt")
    completion_id = f"cmpl-{state['request_id'].removeprefix('req_')}"
    created = int(time.time())
    answers: list[tuple[RawPrompt, PipelineResult]] = []
    headers: dict[str, str] = {}
    for prompt, req in zip(prompts, reqs, strict=True):
        gen = await start(request, gateway, req)
        if isinstance(gen, ASGIResponse):
            return gen
        if req.stream:
            enc = CompletionStreamEncoder(
                completion_id=completion_id,
                model=gen.model_id,
                prompt=prompt,
                created=created,
                echo=req.echo,
                logprobs=req.logprobs,
                choices=req.n,
                include_usage=bool(wire.stream_options and wire.stream_options.include_usage),
            )
            return event_stream(gen, enc, generation_headers(gen))
        try:
            result = await collect(gen, request.receive)
        except ClientGone as exc:
            return error_asgi(exc)
        # a non-stream generation may have moved on to another upstream or model part-way
        state["model_id"] = gen.model_id
        headers = generation_headers(gen)
        answers.append((prompt, result))
    completion = to_completion(
        answers,
        completion_id=completion_id,
        model=state["model_id"],
        created=created,
        echo=bool(wire.echo),
        logprobs=wire.logprobs is not None,
        n=wire.n or 1,
    )
    return ASGIResponse(body=_ENCODER.encode(completion), media_type="application/json", headers=headers)
