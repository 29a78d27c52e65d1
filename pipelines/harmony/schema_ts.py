"""JSON Schema -> the TypeScript-like text gpt-oss reads inside `namespace functions`.

The output must be byte-identical to openai-harmony's renderer, because that is the text
the model was trained on. So this follows its quirks on purpose: `anyOf` and a missing
`type` render as `any`, property order is the schema's own order, a property's `oneOf`
becomes a `|` list on separate lines, an enum's string default is written unquoted, and a
nested object keeps the indentation of its parent's key. Numbers in defaults are written
the way serde_json (ryu) writes them, not the way Python does.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

__all__ = ["json_value_text", "namespace_section", "schema_to_typescript", "tool_lines"]

_EMPTY: Mapping[str, Any] = {}


def schema_to_typescript(schema: Any, indent: str = "") -> str:
    """Render one JSON Schema as a TypeScript-like type expression."""
    node = _as_mapping(schema)
    one_of = node.get("oneOf")
    if isinstance(one_of, list):
        return _union_expression(one_of, indent)
    type_ = node.get("type")
    if isinstance(type_, list):
        names = ["number" if t == "integer" else t for t in type_ if isinstance(t, str)]
        if names:
            return " | ".join(names)
    if not isinstance(type_, str):
        return "any"
    if type_ == "object":
        return _object_type(node, indent)
    if type_ == "string":
        enum = node.get("enum")
        literals = [f'"{v}"' for v in enum if isinstance(v, str)] if isinstance(enum, list) else []
        return " | ".join(literals) if literals else "string"
    if type_ in ("number", "integer"):
        return "number"
    if type_ == "boolean":
        return "boolean"
    if type_ == "array":
        return f"{schema_to_typescript(node['items'], indent)}[]" if "items" in node else "Array<any>"
    return "any"


def tool_lines(name: str, description: str | None, parameters: Mapping[str, Any] | None) -> list[str]:
    """The lines of one function inside `namespace functions { ... }`."""
    lines = [f"// {line}" for line in _rust_lines(description or "")]
    if parameters is None:
        lines.append(f"type {name} = () => any;\n")
    else:
        lines.append(f"type {name} = (_: {schema_to_typescript(parameters)}) => any;\n")
    return lines


def namespace_section(name: str, description: str, functions: list[list[str]]) -> str:
    """One `## NAME` section of `# Tools`: the namespace's description as comments, then
    `namespace NAME { ... }` around the `tool_lines` of its functions."""
    lines = [f"## {name}\n", *(f"// {line}" for line in _rust_lines(description)), f"namespace {name} {{\n"]
    for function in functions:
        lines += function
    lines.append(f"}} // namespace {name}")
    return "\n".join(lines)


def json_value_text(value: Any) -> str:
    """Compact JSON as serde_json's `Display` writes it (ryu floats, no ASCII escaping)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        # serde_json keeps integers that fit 64 bits; bigger ones were parsed as f64.
        return str(value) if -(2**63) <= value < 2**64 else _ryu(float(value))
    if isinstance(value, float):
        return _ryu(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, Mapping):
        items = (f"{json.dumps(str(k), ensure_ascii=False)}:{json_value_text(v)}" for k, v in value.items())
        return "{" + ",".join(items) + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(json_value_text(v) for v in value) + "]"
    return json.dumps(str(value), ensure_ascii=False)


def _as_mapping(value: Any) -> Mapping[str, Any]:
    # serde's `Value::get` on a non-object yields nothing, so a non-object schema behaves like `{}`.
    return value if isinstance(value, Mapping) else _EMPTY


def _union_expression(variants: list[Any], indent: str) -> str:
    out: list[str] = []
    for raw in variants:
        variant = _as_mapping(raw)
        out.append(f"\n{indent} | {_nullable(variant, schema_to_typescript(variant, indent + '   '))}")
        comments: list[str] = []
        description = variant.get("description")
        if isinstance(description, str):
            comments.append(description)
        if "default" in variant:
            comments.append(_default_text(variant, raw_enum_string=False))
        if comments:
            out.append(f" // {' '.join(comments)}")
    return "".join(out)


def _object_type(node: Mapping[str, Any], indent: str) -> str:
    out: list[str] = []
    description = node.get("description")
    if isinstance(description, str):
        out.append(f"{indent}// {description}\n")
    out.append("{\n")
    properties = node.get("properties")
    if isinstance(properties, Mapping):
        required_raw = node.get("required")
        required = {r for r in required_raw if isinstance(r, str)} if isinstance(required_raw, list) else set()
        for key, raw in properties.items():
            out.append(_property(str(key), _as_mapping(raw), indent, optional=key not in required))
    out.append(f"{indent}}}")
    return "".join(out)


def _property(key: str, prop: Mapping[str, Any], indent: str, *, optional: bool) -> str:
    out: list[str] = []
    mark = "?" if optional else ""
    title = prop.get("title")
    if isinstance(title, str):
        out.append(f"{indent}// {title}\n{indent}//\n")
    description = prop.get("description")
    has_one_of = "oneOf" in prop
    if not has_one_of and isinstance(description, str):
        out.append(f"{indent}// {description}\n")
    examples = prop.get("examples")
    if isinstance(examples, list) and examples:
        out.append(f"{indent}// Examples:\n")
        out.extend(f'{indent}// - "{ex}"\n' for ex in examples if isinstance(ex, str))
    one_of = prop.get("oneOf")
    if isinstance(one_of, list):
        out.append(_one_of_property(key, prop, one_of, indent, mark))
        return "".join(out)
    out.append(f"{indent}{key}{mark}: {_nullable(prop, schema_to_typescript(prop, indent + '    '))},")
    if not has_one_of and "default" in prop:
        out.append(f" // {_default_text(prop, raw_enum_string=True)}")
    out.append("\n")
    return "".join(out)


def _one_of_property(key: str, prop: Mapping[str, Any], variants: list[Any], indent: str, mark: str) -> str:
    out: list[str] = []
    description = prop.get("description")
    prop_desc = description if isinstance(description, str) else None
    first = _as_mapping(variants[0]) if variants else _EMPTY
    # The property's description is not repeated when the first variant already says it.
    desc_above = prop_desc is not None and first.get("description") != prop_desc
    if desc_above:
        out.append(f"{indent}// {prop_desc}\n")
    if "default" in prop:
        out.append(f"{indent}// {_default_text(prop, raw_enum_string=True)}\n")
    out.append(f"{indent}{key}{mark}:\n")
    for i, raw in enumerate(variants):
        variant = _as_mapping(raw)
        out.append(f"{indent} | {_nullable(variant, schema_to_typescript(variant, indent + '   '))}")
        comments: list[str] = []
        variant_desc = variant.get("description")
        if not (i == 0 and desc_above) and isinstance(variant_desc, str) and variant_desc != prop_desc:
            comments.append(variant_desc)
        if "default" in variant:
            comments.append(_default_text(variant, raw_enum_string=True))
        if comments:
            out.append(f" // {' '.join(comments)}")
        out.append("\n")
    out.append(f"{indent},\n")
    return "".join(out)


def _nullable(node: Mapping[str, Any], type_text: str) -> str:
    if node.get("nullable") is True and "null" not in type_text:
        return f"{type_text} | null"
    return type_text


def _default_text(node: Mapping[str, Any], *, raw_enum_string: bool) -> str:
    default = node["default"]
    if isinstance(default, str):
        enum = node.get("enum")
        if not (isinstance(enum, list) and enum):
            return f'default: "{default}"'
        if raw_enum_string:
            return f"default: {default}"
    return f"default: {json_value_text(default)}"


def _rust_lines(text: str) -> list[str]:
    # Rust's `str::lines`: split on "\n" only, drop one trailing "\r", no final empty line.
    if not text:
        return []
    parts = text.split("\n")
    if parts[-1] == "":
        parts.pop()
    return [p.removesuffix("\r") for p in parts]


def _ryu(value: float) -> str:
    if not math.isfinite(value):
        return "null"
    if value == 0:
        return "-0.0" if math.copysign(1.0, value) < 0 else "0.0"
    sign = "-" if value < 0 else ""
    # repr gives the shortest round-trip digits, the same ones ryu picks; only the layout differs.
    _, digit_tuple, exponent = Decimal(repr(abs(value))).normalize().as_tuple()
    assert isinstance(exponent, int)
    digits = "".join(map(str, digit_tuple))
    length = len(digits)
    point = length + exponent
    if exponent >= 0 and point <= 16:
        body = digits + "0" * exponent + ".0"
    elif 0 < point <= 16:
        body = f"{digits[:point]}.{digits[point:]}"
    elif -5 < point <= 0:
        body = "0." + "0" * -point + digits
    elif length == 1:
        body = f"{digits}e{point - 1}"
    else:
        body = f"{digits[0]}.{digits[1:]}e{point - 1}"
    return sign + body
