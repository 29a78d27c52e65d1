"""Seeded generators of JSON Schemas for fuzzing: well-formed ones built from every keyword
pydantic, zod and hand-written schemas use, and hostile ones (wrong keyword types, deep
nesting, huge enums and counts, `$ref` loops, names that try to break out of a grammar's
quotes or spell special tokens)."""

from __future__ import annotations

import random
from typing import Any

NASTY_TEXT = [
    'quote"inside',
    "back\\slash",
    "new\nline",
    "tab\tand\x00nul",
    "]bracket[",
    "a ::= b",
    "<|end|>",
    "<|im_end|>",
    "<|return|>",
    "<[200002]>",
    "# comment",
    "émoji 😀",
    "\u2028sep",
    "",
    " ",
    "|",
    "\\x41",
    "\ud800",
]
PATTERNS = [
    "^[a-z]{1,5}$",
    "^\\d{3}-\\d{2}$",
    "^(a|bc)+$",
    "[A-Z]",
    "^(?!x).*$",
    "^(a+)+$",
    "^\\p{L}+$",
    "^a{2,1}$",
    "(",
    '^[^"\\\\]{0,3}$',
    "^.{2}$",
    "^\\w+@\\w+$",
    "\\bx",
    "^(a*)*$",
    "^x{0,99999}$",
]
FORMATS = ["date", "time", "date-time", "uuid", "email", "ipv4", "uri", "hostname", "password", "made-up"]


class SchemaFuzzer:
    """`schema()`: a random schema; `hostile()`: a random hostile one; both seeded."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)

    def text(self) -> str:
        rng = self.rng
        if rng.random() < 0.3:
            return rng.choice(NASTY_TEXT)
        return "".join(rng.choice("abcxyz_") for _ in range(rng.randint(1, 6)))

    def scalar(self) -> Any:
        return self.rng.choice([self.text(), self.rng.randint(-5, 5), 1.5, True, False, None])

    def schema(self, depth: int = 0) -> Any:
        rng = self.rng
        if depth > 3 or rng.random() < 0.15:
            return rng.choice([True, {}, {"type": "string"}, {"type": "integer"}, {"type": "null"}])
        kind = rng.choice(
            ["object", "array", "string", "integer", "number", "boolean", "enum", "const", "union", "ref", "allOf"]
        )
        s: dict[str, Any] = {}
        if rng.random() < 0.3:
            s.update({"title": self.text(), "description": self.text()})
        if kind == "object":
            s["type"] = "object"
            props = {self.text(): self.schema(depth + 1) for _ in range(rng.randint(0, 4))}
            s["properties"] = props
            if props and rng.random() < 0.7:
                s["required"] = rng.sample(sorted(props), rng.randint(0, len(props)))
            s["additionalProperties"] = rng.choice([False, True, {"type": "integer"}, None])
            if s["additionalProperties"] is None:
                del s["additionalProperties"]
            for key in ("minProperties", "maxProperties", "patternProperties", "propertyNames", "dependentRequired"):
                if rng.random() < 0.08:
                    s[key] = {
                        "minProperties": 1,
                        "maxProperties": 2,
                        "patternProperties": {"^x": {"type": "string"}},
                        "propertyNames": {"pattern": "^[a-z]+$"},
                        "dependentRequired": {"a": ["b"]},
                    }[key]
        elif kind == "array":
            s["type"] = "array"
            s["items"] = self.schema(depth + 1)
            if rng.random() < 0.5:
                s["minItems"] = rng.randint(0, 3)
            if rng.random() < 0.5:
                s["maxItems"] = rng.randint(s.get("minItems", 0), 4)
            if rng.random() < 0.15:
                s["prefixItems"] = [self.schema(depth + 1) for _ in range(rng.randint(1, 2))]
            if rng.random() < 0.1:
                s["uniqueItems"] = True
        elif kind == "string":
            s["type"] = "string"
            if rng.random() < 0.4:
                s["minLength"] = rng.randint(0, 4)
            if rng.random() < 0.4:
                s["maxLength"] = rng.randint(s.get("minLength", 0), 12)
            if rng.random() < 0.25:
                s["pattern"] = rng.choice(PATTERNS)
            if rng.random() < 0.25:
                s["format"] = rng.choice(FORMATS)
        elif kind in ("integer", "number"):
            s["type"] = kind
            bounds = [-9007199254740991, -10, -1, 0, 1, 7, 150, 9007199254740991, 2.5, 10**30]
            for key in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf"):
                if rng.random() < 0.3:
                    s[key] = rng.choice(bounds) if key != "multipleOf" else rng.choice([1, 2, 0.5])
        elif kind == "boolean":
            s["type"] = "boolean"
        elif kind == "enum":
            s["enum"] = [self.scalar() for _ in range(rng.randint(1, 5))]
        elif kind == "const":
            s["const"] = self.scalar()
        elif kind == "union":
            s[rng.choice(["anyOf", "oneOf"])] = [self.schema(depth + 1) for _ in range(rng.randint(1, 3))]
        elif kind == "allOf":
            s["allOf"] = [self.schema(depth + 1) for _ in range(rng.randint(1, 2))]
        else:
            s["$defs"] = {"D": self.schema(depth + 1)}
            s["$ref"] = "#/$defs/D"
        for key in ("not", "if"):
            if rng.random() < 0.04:
                s[key] = self.schema(depth + 1)
        return s

    def hostile(self) -> Any:
        rng = self.rng
        choice = rng.randrange(12)
        if choice == 0:
            deep: Any = {"type": "string"}
            for _ in range(rng.choice([50, 70, 200, 2000])):
                deep = {"type": "array", "items": deep}
            return deep
        if choice == 1:
            return {"enum": [f"value-{i}-{self.text()}" for i in range(rng.choice([1000, 5000]))]}
        if choice == 2:
            return {"type": "string", "minLength": rng.choice([10**6, 10**12]), "maxLength": 10**15}
        if choice == 3:
            return {"type": "array", "minItems": 10**9, "items": {"type": "integer"}}
        if choice == 4:
            return {"$defs": {"a": {"$ref": "#/$defs/b"}, "b": {"$ref": "#/$defs/a"}}, "$ref": "#/$defs/a"}
        if choice == 5:
            return {"anyOf": [{"$ref": "#"}, {"type": "string"}]}
        if choice == 6:
            key = rng.choice(["type", "required", "properties", "enum", "minimum", "items", "pattern", "$ref", "anyOf"])
            return {key: rng.choice([3, "x", [1], {"a": 1}, None, True, -1, 1.5])}
        if choice == 7:
            return {"type": "object", "properties": {t: {"const": t} for t in NASTY_TEXT}, "required": NASTY_TEXT}
        if choice == 8:
            return {
                "type": "integer",
                "minimum": rng.choice([1e308, -1e308, 10**50]),
                "maximum": rng.choice([5, 10**60]),
            }
        if choice == 9:
            return {
                "anyOf": [
                    {"type": "object", "properties": {f"p{i}": {"type": "integer"}}}
                    for i in range(rng.choice([10, 3000]))
                ]
            }
        if choice == 10:
            return {"type": "string", "pattern": rng.choice(PATTERNS) * rng.choice([1, 50])}
        return rng.choice([[], "string", 3, None, {"$ref": "http://example.com/x.json"}, {"$ref": "#/nowhere"}])
