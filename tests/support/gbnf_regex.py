"""A GBNF grammar without recursion as a Python regular expression, so tests can check
exactly which strings a grammar accepts without a model (llama.cpp's sampler is the
other judge, in the provider tests)."""

from __future__ import annotations

import re

_NAME = re.compile(r"[a-zA-Z0-9-]+")


def _literal(body: str) -> str:
    text = re.sub(
        r"\\(x[0-9A-Fa-f]{2}|u[0-9A-Fa-f]{4}|U[0-9A-Fa-f]{8}|.)",
        lambda m: (
            chr(int(m.group(1)[1:], 16))
            if len(m.group(1)) > 1
            else {"n": "\n", "t": "\t", "r": "\r"}.get(m.group(1), m.group(1))
        ),
        body,
    )
    return re.escape(text)


def to_regex(gbnf: str, root: str = "root", depth: int = 0) -> str:
    rules = {}
    for line in gbnf.splitlines():
        if line.strip():
            name, _, body = line.partition(" ::= ")
            rules[name.strip()] = body
    return _expr(rules[root], rules, depth)


def _expr(body: str, rules: dict[str, str], depth: int) -> str:
    if depth > 50:
        raise ValueError("recursive grammar")
    out = []
    i = 0
    while i < len(body):
        ch = body[i]
        if ch == '"':
            j = i + 1
            while body[j] != '"':
                j += 2 if body[j] == "\\" else 1
            out.append(f"(?:{_literal(body[i + 1 : j])})")
            i = j + 1
        elif ch == "[":
            j = i + 1
            while body[j] != "]":
                j += 2 if body[j] == "\\" else 1
            cls = body[i : j + 1]
            cls = re.sub(r"\\U([0-9A-Fa-f]{8})", lambda m: "\\U" + m.group(1), cls)
            out.append(cls)
            i = j + 1
        elif ch == "(":
            out.append("(?:")
            i += 1
        elif ch in ")|*+?":
            out.append(ch)
            i += 1
        elif ch == "{":
            j = body.index("}", i)
            out.append(body[i : j + 1])
            i = j + 1
        elif ch == " ":
            i += 1
        else:
            m = _NAME.match(body, i)
            assert m, body[i:]
            out.append(f"(?:{_expr(rules[m.group(0)], rules, depth + 1)})")
            i = m.end()
    return "".join(out)


def accepts(gbnf: str, text: str, root: str = "root") -> bool:
    return re.fullmatch(to_regex(gbnf, root), text, re.DOTALL) is not None
