"""The tools of a Responses request as the model is offered them: `function` and `custom`
tools as functions (a custom tool's free text as one string argument, `input`), `namespace`
tools as namespaced functions (Harmony renders them natively), hosted tools left out (or
refused), wherever they come: in `tools` or in `additional_tools` input items."""

from __future__ import annotations

from typing import Any

from compat.responses_wire.request import (
    AdditionalToolsItem,
    CustomTool,
    FunctionTool,
    NamespaceTool,
    ResponsesRequest,
    ToolWire,
)
from pipelines.errors import InvalidRequest, Unsupported
from pipelines.structured import check_schema
from pipelines.types import Tool, ToolNamespace

__all__ = ["OfferedTools", "flat_name"]

_FUNCTIONS = "functions"
"""Harmony's own namespace: a client's namespace of that name holds plain functions."""


def _custom_parameters() -> dict[str, Any]:
    """A `custom` (free-text) tool as the model sees it: a function of one string (a fresh
    schema each time: the caller owns it)."""
    return {
        "type": "object",
        "properties": {"input": {"type": "string", "description": "The tool's free-text input."}},
        "required": ["input"],
        "additionalProperties": False,
    }


def flat_name(namespace: str | None, name: str) -> str:
    """The name the model knows a function by: `NAMESPACE.NAME` in a namespace, except
    Harmony's own `functions`, whose functions have their plain names."""
    return f"{namespace}.{name}" if namespace and namespace != _FUNCTIONS else name


class OfferedTools:
    """The functions offered to the model, the hosted tools left out, the namespaced and the custom names."""

    def __init__(self, req: ResponsesRequest, *, refuse_hosted: bool = False) -> None:
        self.tools: list[Tool] = []
        self.ignored: list[str] = []
        self.namespaces: dict[str, tuple[str, str]] = {}
        self.custom: set[str] = set()
        self._refuse_hosted = refuse_hosted
        for i, t in enumerate(req.tools or ()):
            self._offer(t, f"tools[{i}]")
        for i, item in enumerate(req.input if not isinstance(req.input, str) else ()):
            if isinstance(item, AdditionalToolsItem):
                for j, t in enumerate(item.tools):
                    self._offer(t, f"input[{i}].tools[{j}]")

    def _offer(self, t: ToolWire, where: str) -> None:
        if isinstance(t, NamespaceTool):
            # Harmony's own `functions` namespace holds plain functions (named as they are);
            # any other is a namespace of its own
            namespace = ToolNamespace(t.name, t.description) if t.name != _FUNCTIONS else None
            for j, f in enumerate(t.tools):
                flat = flat_name(t.name, f.name)
                self.namespaces[flat] = (t.name, f.name)
                self._add(f, flat, f"{where}.tools[{j}].parameters", namespace)
        elif isinstance(t, FunctionTool | CustomTool):
            self._add(t, t.name, f"{where}.parameters")
        else:
            kind = str(type(t).__struct_config__.tag)
            if self._refuse_hosted:
                raise Unsupported(
                    f"Tool type '{kind}' is a hosted tool this gateway cannot run (its setting "
                    "hosted_tools = 'refuse'); send the request without it.",
                    param=f"{where}.type",
                )
            self.ignored.append(kind)

    def _add(self, t: FunctionTool | CustomTool, name: str, where: str, namespace: ToolNamespace | None = None) -> None:
        if any(tool.name == name for tool in self.tools):
            raise InvalidRequest(f"Two tools are named '{name}'.", param="tools")
        parameters: dict[str, Any] | None = t.parameters if isinstance(t, FunctionTool) else _custom_parameters()
        if isinstance(t, CustomTool):
            self.custom.add(name)
        strict = t.strict if isinstance(t, FunctionTool) else None
        if isinstance(t, FunctionTool) and t.parameters is not None:
            check_schema(t.parameters, param=where)  # a schema that is not JSON Schema: a 400
        self.tools.append(Tool(name, t.description, parameters, strict, namespace))
