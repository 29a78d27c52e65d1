"""JSON Schema -> GBNF: the grammar that holds a model's output to a client's schema.

Written for this gateway (no llama.cpp import): llama-cpp-python's Python converter drops
integer bounds, and what it cannot express it drops silently. Here, each keyword is either
enforced by the grammar, or recorded in `Conversion.unenforced` (and left to the
validation of the finished output, `pipelines/structured/validate.py`); nothing is refused
for being hard to enforce. The grammar may be stricter than the schema where that keeps
output valid and short: objects with declared properties get no undeclared ones, JSON is
written compactly (at most one space between tokens), and prefix items are all written.

Enforced: `type`, `enum`/`const`, `properties`, `required`,
`additionalProperties` (a schema for undeclared keys of a map), `propertyNames`,
`minProperties`/`maxProperties` on maps, `items`/`prefixItems`, `minItems`/`maxItems`,
`minLength`/`maxLength`, `pattern` (the subset of `pipelines/structured/regex.py`), the
`format`s of `FORMAT_GRAMMARS`, integer `minimum`/`maximum`/`exclusiveMinimum`/
`exclusiveMaximum`, a `minimum` of 0 on numbers, `anyOf`/`oneOf` (as alternatives),
`allOf` (merged), local `$ref`s (recursive ones too).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec

from pipelines.structured.formats import FORMAT_GRAMMARS, FORMAT_SAMPLES
from pipelines.structured.gbnf import RuleSet, literal, repeat
from pipelines.structured.integers import MAX_DIGITS, integer_range
from pipelines.structured.primitives import DEPENDS, PRIMITIVES, bound, common_prefix, count, either, json_text, limit
from pipelines.structured.regex import UnsupportedPattern, parse_pattern, pattern_gbnf
from pipelines.structured.schema import ANNOTATIONS, KEYWORDS, Document, SchemaError, merge_all, schema_type

__all__ = ["MAX_DEPTH", "MAX_REPEAT", "MAX_VISITS", "Conversion", "TooComplex", "convert", "json_object_rules"]

MAX_REPEAT = 1000
"""The largest length or item count written into a grammar; a larger bound is validated only
(llama.cpp writes a bounded repetition out as that many rules)."""
MAX_DEPTH = 48
"""Deepest nesting of subschemas (through `$ref`s too) the converter follows."""
MAX_VISITS = 20000
"""Most subschemas one conversion visits (`$ref`s are visited once each)."""

_VALIDATED_ONLY = (
    "not",
    "if",
    "then",
    "else",
    "dependentRequired",
    "dependentSchemas",
    "dependencies",
    "unevaluatedProperties",
    "unevaluatedItems",
    "contains",
    "minContains",
    "maxContains",
    "uniqueItems",
    "multipleOf",
    "patternProperties",
    "$dynamicRef",
)


class TooComplex(ValueError):
    """The schema is beyond the bounds a grammar is built for (depth, size)."""


class Conversion(msgspec.Struct, frozen=True):
    """A schema's grammar (rules, the root one named as asked) and the keywords it does not enforce."""

    rules: str
    unenforced: frozenset[str]


class _Converter:
    def __init__(self, doc: Document, root: str, fits: Callable[[Any, Any], bool]) -> None:
        self.doc = doc
        self.root = root
        self.rules = RuleSet(root)
        self.fits = fits
        self.unenforced: set[str] = set()
        self.refs: dict[str, str] = {}
        self.prims: dict[str, str] = {}
        self.visits = 0

    def note(self, keyword: str) -> None:
        self.unenforced.add(keyword if keyword in KEYWORDS else "other")

    def prim(self, name: str) -> str:
        """The rule of a building block (defined with what it uses on first use)."""
        known = self.prims.get(name)
        if known is not None:
            return known
        rule = self.rules.name(name)
        self.prims[name] = rule
        self.rules.define(rule, "")
        names = {dep: self.prim(dep) for dep in DEPENDS.get(name, ())}
        body = PRIMITIVES[name]
        self.rules.define(rule, body.format(**names) if names or "{{" in body else body)
        return rule

    # -- dispatch ------------------------------------------------------------------

    def visit(self, schema: Any, hint: str, depth: int) -> str | None:
        """A GBNF expression for the values `schema` allows (None: none)."""
        self.visits += 1
        if self.visits > MAX_VISITS or depth > MAX_DEPTH:
            raise TooComplex(f"the schema is too large or too deeply nested (over {MAX_DEPTH} levels)")
        if schema is True or schema == {}:
            return self.prim("value")
        if schema is False:
            return None
        if not isinstance(schema, dict):
            raise SchemaError("a schema is an object or a boolean")
        for keyword in schema.get("x-unmerged", ()):
            self.note(keyword)
        if isinstance(schema.get("$ref"), str):
            rest = {k: v for k, v in schema.items() if k != "$ref" and k not in ANNOTATIONS}
            if not rest:
                return self.ref(schema["$ref"], depth)
            return self.visit(self.doc.deref(schema), hint, depth + 1)
        if isinstance(schema.get("allOf"), list):
            rest = {k: v for k, v in schema.items() if k != "allOf"}
            return self.visit(merge_all([*schema["allOf"], rest], self.doc), hint, depth + 1)
        for keyword in _VALIDATED_ONLY:
            if keyword in schema:
                self.note(keyword)
        branches = schema.get("anyOf") if isinstance(schema.get("anyOf"), list) else schema.get("oneOf")
        if isinstance(branches, list):
            return self.union(schema, branches, hint, depth)
        if "const" in schema or isinstance(schema.get("enum"), list):
            return self.literals(schema, hint)
        types = schema_type(schema) or []
        if not types:
            return self.prim("value")
        if "number" in types and "integer" in types:
            types = [t for t in types if t != "integer"]
        alternatives = [a for a in (self.typed(t, schema, f"{hint}-{t}", depth) for t in types) if a is not None]
        if not alternatives:
            return None
        return alternatives[0] if len(alternatives) == 1 else self.rules.add(hint, " | ".join(alternatives))

    def ref(self, ref: str, depth: int) -> str:
        known = self.refs.get(ref)
        if known is not None:
            return known
        name = self.rules.name("ref-" + ref.rsplit("/", 1)[-1])
        self.refs[ref] = name
        self.rules.define(name, "")
        body = self.visit(self.doc.resolve(ref), f"{name}-v", depth + 1)
        if body is None:
            raise SchemaError(f"no value satisfies the schema at $ref {ref!r}")
        self.rules.define(name, body)
        return name

    def union(self, schema: dict[str, Any], branches: list[Any], hint: str, depth: int) -> str | None:
        if "oneOf" in schema:
            self.note("oneOf")  # exactly one: the grammar allows any of them
        rest = {k: v for k, v in schema.items() if k not in ("anyOf", "oneOf") and k not in ANNOTATIONS}
        alternatives = []
        for i, branch in enumerate(branches):
            sub = merge_all([branch, rest], self.doc) if rest else branch
            expr = self.visit(sub, f"{hint}-{i}", depth + 1)
            if expr is not None and expr not in alternatives:
                alternatives.append(expr)
        if not alternatives:
            return None
        return self.rules.add(hint, " | ".join(alternatives))

    def literals(self, schema: dict[str, Any], hint: str) -> str | None:
        values = [schema["const"]] if "const" in schema else list(schema["enum"])
        rest = {k: v for k, v in schema.items() if k not in ("const", "enum") and k not in ANNOTATIONS}
        if set(rest) <= {"type"}:  # the common case, told without a validator per value
            types = schema_type(rest)
            values = [v for v in values if types is None or any(_is_type(v, t) for t in types)]
        else:
            values = [v for v in values if self.fits(v, rest)]
        texts = list(dict.fromkeys(json_text(v) for v in values))
        if not texts:
            return None
        return self.rules.add(hint, f"({self.trie(texts, hint)}) {self.prim('ws')}")

    def trie(self, texts: list[str], hint: str) -> str:
        """Alternatives for `texts` sharing their common prefixes, so that llama.cpp
        follows one grammar stack per distinct next character, not one per value."""
        groups: dict[str, list[str]] = {}
        for text in texts:
            groups.setdefault(text[0], []).append(text[1:])
        alternatives = []
        for first, rests in groups.items():
            if len(rests) == 1:
                alternatives.append(literal(first + rests[0]))
                continue
            common = common_prefix(rests)
            tails = [r[len(common) :] for r in rests]
            optional = "" in tails
            sub = self.rules.add(f"{hint}-e", self.trie([t for t in tails if t], hint))
            alternatives.append(f"{literal(first + common)} {sub}{'?' if optional else ''}")
        return " | ".join(alternatives)

    def typed(self, kind: str, schema: dict[str, Any], hint: str, depth: int) -> str | None:
        if kind in ("null", "boolean"):
            return self.prim(kind)
        if kind == "string":
            return self.string(schema, hint)
        if kind == "integer":
            return self.integer(schema, hint)
        if kind == "number":
            return self.number(schema)
        if kind == "object":
            return self.object(schema, hint, depth)
        if kind == "array":
            return self.array(schema, hint, depth)
        raise SchemaError(f"unknown type {kind!r}")

    # -- scalars -------------------------------------------------------------------

    def string(self, schema: dict[str, Any], hint: str) -> str | None:
        quote = literal('"')
        fmt, pattern = schema.get("format"), schema.get("pattern")
        lengths = [k for k in ("minLength", "maxLength") if k in schema]
        if isinstance(pattern, str):
            try:
                body = pattern_gbnf(parse_pattern(pattern))
            except UnsupportedPattern:
                self.note("pattern")
            else:
                for keyword in [*lengths, *(["format"] if fmt in FORMAT_SAMPLES else [])]:
                    self.note(keyword)
                return self.rules.add(hint, f"{quote} {body} {quote} {self.prim('ws')}")
        if isinstance(fmt, str) and fmt in FORMAT_GRAMMARS:
            for keyword in lengths:
                self.note(keyword)
            return self.rules.add(f"format-{fmt}", f"{quote} {FORMAT_GRAMMARS[fmt]} {quote} {self.prim('ws')}")
        if fmt in FORMAT_SAMPLES:
            self.note("format")
        low, high = self.counts(schema, "minLength", "maxLength")
        if high is not None and low > high:
            return None
        if low == 0 and high is None:
            return self.prim("string")
        chars = repeat(self.prim("char"), low, high)
        return self.rules.add(hint, f"{quote} {chars} {quote} {self.prim('ws')}")

    def integer(self, schema: dict[str, Any], hint: str) -> str | None:
        low = bound(schema, "minimum", "exclusiveMinimum", lower=True)
        high = bound(schema, "maximum", "exclusiveMaximum", lower=False)
        for keyword, value in (("minimum", low), ("maximum", high)):
            if value is not None and len(str(abs(value))) > MAX_DIGITS:
                self.note(keyword)
        low = low if low is None or len(str(abs(low))) <= MAX_DIGITS else None
        high = high if high is None or len(str(abs(high))) <= MAX_DIGITS else None
        if low is None and high is None:
            return self.prim("integer")
        expr = integer_range(low, high)
        if expr is None:
            return None
        return self.rules.add(hint, f"({expr}) {self.prim('ws')}")

    def number(self, schema: dict[str, Any]) -> str:
        bounds = [k for k in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum") if k in schema]
        if bounds == ["minimum"] and schema["minimum"] == 0 and not isinstance(schema["minimum"], bool):
            return self.prim("unsigned")  # the common `ge=0`: a number without its sign
        for keyword in bounds:
            self.note(keyword)
        return self.prim("number")

    # -- containers ----------------------------------------------------------------

    def object(self, schema: dict[str, Any], hint: str, depth: int) -> str | None:
        ws = self.prim("ws")
        properties = schema.get("properties")
        declared: dict[str, Any] = properties if isinstance(properties, dict) else {}
        required = [n for n in schema.get("required", ()) if isinstance(n, str)]
        extra_schema = schema.get("additionalProperties")
        fields: list[tuple[str, Any, bool]] = [(n, s, n in required) for n, s in declared.items()]
        fields += [
            (n, extra_schema if isinstance(extra_schema, dict) else True, True) for n in required if n not in declared
        ]
        pairs: list[tuple[str, bool]] = []
        for i, (name, sub, needed) in enumerate(fields):
            value = self.visit(sub, f"{hint}-{i}", depth + 1)
            if value is None:
                if needed:
                    return None
                continue
            pairs.append((f"{literal(json_text(name))} {ws} {literal(':')} {ws} {value}", needed))
        extra = None
        if extra_schema is not False and ((isinstance(extra_schema, dict) and extra_schema != {}) or not declared):
            extra = self.visit(extra_schema if isinstance(extra_schema, dict) else True, f"{hint}-extra", depth + 1)
        counts = [k for k in ("minProperties", "maxProperties") if k in schema]
        comma = f"{literal(',')} {ws}"
        if extra is not None:
            names = schema.get("propertyNames")
            key = self.string(names, f"{hint}-key") if isinstance(names, dict) else self.prim("string")
            extra = None if key is None else self.rules.add(f"{hint}-pair", f"{key} {literal(':')} {ws} {extra}")
        # tails[i] = (first, rest): the properties from i on, with nothing yet written
        # (`first`) or after a written one (`rest`), as rules, so optional ones do not
        # multiply the grammar's size
        if extra is not None and not pairs:
            low, high = self.counts(schema, "minProperties", "maxProperties")
            if high is not None and low > high:
                return None
            body = self._separated(extra, low, high, comma)
            return self.rules.add(hint, f"{literal('{')} {ws} {body} {literal('}')} {ws}")
        for keyword in counts:
            self.note(keyword)
        first = f"({extra} ({comma} {extra})*)?" if extra is not None else ""
        rest = f"({comma} {extra})*" if extra is not None else ""
        for i in range(len(pairs) - 1, -1, -1):
            pair, needed = pairs[i]
            written_rest = f"{comma} {pair} {rest}".rstrip()
            written_first = f"{pair} {rest}".rstrip()
            rest_body = written_rest if needed else either(written_rest, rest)
            first_body = written_first if needed else either(written_first, first)
            rest = self.rules.add(f"{hint}-r{i}", rest_body)
            first = self.rules.add(f"{hint}-f{i}", first_body)
        return self.rules.add(hint, f"{literal('{')} {ws} {first} {literal('}')} {ws}".replace("  ", " "))

    def array(self, schema: dict[str, Any], hint: str, depth: int) -> str | None:
        ws = self.prim("ws")
        comma = f"{literal(',')} {ws}"
        prefix_items = schema.get("prefixItems")
        items = schema.get("items", True)
        if isinstance(items, list):  # the tuple form of draft 2019-09 and before
            prefix_items, items = items, schema.get("additionalItems", True)
        prefix_items = prefix_items if isinstance(prefix_items, list) else []
        low, high = self.counts(schema, "minItems", "maxItems")
        if high is not None and (low > high or len(prefix_items) > high):
            if low > high:
                return None
            prefix_items = prefix_items[:high]
        written = []
        for i, sub in enumerate(prefix_items):
            value = self.visit(sub, f"{hint}-{i}", depth + 1)
            if value is None:
                if i < low:
                    return None
                items, high = False, i
                break
            written.append(value)
        head = f" {comma} ".join(written)
        more_low = max(0, low - len(written))
        more_high = None if high is None else high - len(written)
        item = self.visit(items, f"{hint}-item", depth + 1) if items is not False and more_high != 0 else None
        if item is None:
            if more_low:
                return None
            body = head
        elif written:
            body = f"{head} {repeat(f'({comma} {item})', more_low, more_high)}"
        else:
            body = self._separated(item, low, high, comma)
        return self.rules.add(hint, f"{literal('[')} {ws} {body} {literal(']')} {ws}".replace("  ", " "))

    def counts(self, schema: dict[str, Any], least: str, most: str) -> tuple[int, int | None]:
        """A length or count's bounds; one beyond `MAX_REPEAT` is left to validation."""
        low, high = count(schema.get(least)), limit(schema.get(most))
        if high is not None and high > MAX_REPEAT:
            self.note(most)
            high = None
        if low > MAX_REPEAT:
            self.note(least)
            low = 0
        return low, high

    @staticmethod
    def _separated(item: str, low: int, high: int | None, comma: str) -> str:
        """`item`s separated by commas, `low` to `high` of them."""
        if high == 0:
            return ""
        tail = repeat(f"({comma} {item})", max(0, low - 1), None if high is None else high - 1)
        return f"{item} {tail}" if low >= 1 else f"({item} {tail})?"


def _is_type(value: Any, kind: str) -> bool:
    if kind == "integer":
        return isinstance(value, int | float) and not isinstance(value, bool) and float(value).is_integer()
    if kind == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    kinds = {"string": str, "boolean": bool, "null": type(None), "object": dict, "array": list}
    return kind in kinds and isinstance(value, kinds[kind])


def convert(schema: Any, root: str = "root", *, fits: Callable[[Any, Any], bool] | None = None) -> Conversion:
    """The grammar for `schema`, its top rule named `root` (every other rule's name starts
    with `root-`). `fits(value, schema)` filters `enum`/`const` values by the rest of their
    schema (default: keep them all). Raises `SchemaError` for a schema no value satisfies
    or that points outside itself, `TooComplex` beyond the bounds."""
    converter = _Converter(Document(schema), root, fits or (lambda _value, _schema: True))
    expr = converter.visit(schema, "v", 0)
    if expr is None:
        raise SchemaError("no JSON value satisfies the schema")
    return Conversion(rules=f"{root} ::= {expr}\n{converter.rules.text()}", unenforced=frozenset(converter.unenforced))


def json_object_rules(root: str = "root") -> str:
    """The grammar of any JSON object (`response_format: json_object`)."""
    converter = _Converter(Document({}), root, lambda _value, _schema: True)
    return f"{root} ::= {converter.prim('object')}\n{converter.rules.text()}"
