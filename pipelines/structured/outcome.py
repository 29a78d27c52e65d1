"""The finished output of a structured request, checked against its full schema: the
answer against `response_format`, each call's arguments against its tool's `parameters`.
Never a silent pass: every check has an outcome (`OUTCOMES`), which the generation turns
into a `StructuredOutputChecked` event (a log line and a metric)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import msgspec

from pipelines.errors import InvalidRequest
from pipelines.events import StructuredOutputChecked
from pipelines.structured.check import schema_conversion
from pipelines.structured.validate import Verdict, validate_text

if TYPE_CHECKING:
    from pipelines.result import PipelineResult
    from pipelines.types import GenerationRequest

__all__ = ["Check", "checked_outputs", "output_checks"]


class Check(msgspec.Struct, frozen=True):
    """One check of one choice: what was checked (`response_format` or `tool_arguments`),
    its verdict, and the schema keywords the grammar left to this check."""

    target: str
    choice: int
    verdict: Verdict
    unenforced: tuple[str, ...] = ()
    tool: str | None = None


def _unenforced(schema: object) -> tuple[str, ...]:
    try:
        return tuple(sorted(schema_conversion(schema).unenforced))
    except InvalidRequest:  # checked at the wire already; a schema only an upstream saw
        return ()


def output_checks(request: GenerationRequest, result: PipelineResult) -> list[Check]:
    """The checks `result` (all its choices) calls for; none for a plain-text request without tools."""
    checks: list[Check] = []
    rf = request.response_format
    tools = {t.name: t.parameters for t in request.tools if t.parameters is not None}
    if rf.type == "text" and not tools:
        return checks
    unenforced = _unenforced(rf.schema) if rf.type == "json_schema" else ()
    for choice in result.all_choices:
        if rf.type != "text" and not (choice.tool_calls and not choice.content.strip()):
            verdict = validate_text(choice.content, rf.schema, truncated=choice.finish_reason == "length")
            checks.append(Check("response_format", choice.index, verdict, unenforced))
        for call in choice.tool_calls:
            schema = tools.get(call.name)
            if schema is None:
                continue
            verdict = validate_text(call.arguments, schema, truncated=choice.finish_reason == "length")
            checks.append(Check("tool_arguments", choice.index, verdict, tool=call.name))
    return checks


def checked_outputs(
    request: GenerationRequest, result: PipelineResult, *, model_id: str, stub: bool
) -> list[StructuredOutputChecked]:
    """The events of `output_checks`, for a generation that completed on `model_id`."""
    return [
        StructuredOutputChecked(
            request_id=request.request_id,
            model_id=model_id,
            stub=stub,
            target=check.target,
            outcome=check.verdict.outcome,
            choice=check.choice,
            tool=check.tool,
            errors=list(check.verdict.errors),
            unenforced=list(check.unenforced),
        )
        for check in output_checks(request, result)
    ]
