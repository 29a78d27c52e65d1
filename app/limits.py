"""Bounds on what one request may ask for; each breach is a 400 naming the field."""

from __future__ import annotations

import msgspec

from app.settings import ServerSettings
from pipelines.embedding import EmbeddingRequest
from pipelines.errors import InvalidRequest
from pipelines.types import GenerationRequest

__all__ = ["check_embedding_limits", "check_limits"]


def check_limits(req: GenerationRequest, limits: ServerSettings) -> None:
    if len(req.messages) > limits.max_messages:
        raise InvalidRequest(
            f"Too many messages: {len(req.messages)} (at most {limits.max_messages}).", param="messages"
        )
    chars = sum(len(m.content) + len(m.reasoning or "") for m in req.messages)
    if chars > limits.max_prompt_chars:
        raise InvalidRequest(
            f"The messages hold {chars} characters, more than the {limits.max_prompt_chars} allowed.",
            param="messages",
        )
    # a completion's prompt: its characters, or its token ids (each at least a character)
    if req.prompt is not None and len(req.prompt) > limits.max_prompt_chars:
        raise InvalidRequest(
            f"The prompt holds {len(req.prompt)} characters or tokens, more than the {limits.max_prompt_chars} allowed.",
            param="prompt",
            code="invalid_value",
        )
    if len(req.stop) > limits.max_stop:
        raise InvalidRequest(f"Too many stop sequences: {len(req.stop)} (at most {limits.max_stop}).", param="stop")
    for i, s in enumerate(req.stop):
        if len(s) > limits.max_stop_chars:
            raise InvalidRequest(
                f"Stop sequence {i} is {len(s)} characters long (at most {limits.max_stop_chars}).", param=f"stop[{i}]"
            )
    if req.n > limits.max_choices:
        raise InvalidRequest(f"Too many choices: n = {req.n} (at most {limits.max_choices}).", param="n")
    if len(req.tools) > limits.max_tools:
        raise InvalidRequest(f"Too many tools: {len(req.tools)} (at most {limits.max_tools}).", param="tools")
    for i, tool in enumerate(req.tools):
        if tool.parameters is not None:
            size = len(msgspec.json.encode(tool.parameters))
            if size > limits.max_tool_schema_bytes:
                raise InvalidRequest(
                    f"The parameters schema of tool '{tool.name}' is {size} bytes (at most "
                    f"{limits.max_tool_schema_bytes}).",
                    param=f"tools[{i}].function.parameters",
                )


def check_embedding_limits(req: EmbeddingRequest, limits: ServerSettings) -> None:
    if len(req.inputs) > limits.max_embedding_inputs:
        raise InvalidRequest(
            f"Too many inputs: {len(req.inputs)} (at most {limits.max_embedding_inputs}, `max_embedding_inputs`).",
            param="input",
        )
    size = sum(len(item) for item in req.inputs)
    if size > limits.max_prompt_chars:
        raise InvalidRequest(
            f"The inputs hold {size} characters and token ids, more than the {limits.max_prompt_chars} allowed "
            "(`max_prompt_chars`).",
            param="input",
        )
