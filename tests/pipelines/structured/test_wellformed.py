"""The GBNF check: what llama.cpp would fail to parse, or mishandle, never reaches it."""

from __future__ import annotations

import pytest

from pipelines.structured.wellformed import GrammarProblem, check_gbnf

GOOD = [
    'root ::= "a"\n',
    'root ::= x | "b" # comment\nx ::= [a-z]+ ("," [0-9]{1,3})?\n',
    'root ::= (\n  "a" |\n  "b"\n)\n',
    'root ::= "\\x41\\u00e9\\U0001F600\\n\\"\\\\"\n',
    'root ::= [^"\\x5C\\x00-\\x1F]*\n',
    'root ::= x\nx ::= "(" x? ")"\n',
]
BAD = [
    ("", "no 'root'"),
    ('root ::= "a\n', "unterminated"),
    ("root ::= [ab\n", "unterminated"),
    ('root ::= "\\q"\n', "unknown escape"),
    ('root ::= "\\x4"\n', "hex"),
    ("root ::= x\n", "undefined"),
    ('root ::= "a"\nroot ::= "b"\n', "twice"),
    ('root ::= root "a" | "b"\n', "left recursion"),
    ('root ::= x "a"\nx ::= "b"? root\n', "left recursion"),
    ('root ::= ("a"?)*\n', "empty"),
    ("root ::= []\n", "empty character class"),
    ("root ::= [z-a]\n", "out of order"),
    ('root ::= "a"{5,2}\n', "out of bounds"),
    ('root ::= "a"{0,100000}\n', "count"),
    ('root ::= * "a"\n', "repeats nothing"),
    ('root ::= "a" <|end|>\n', "not allowed"),
    ('root ::= "a" <[200002]>\n', "not allowed"),
    ("root ::= " + "(" * 100 + '"a"' + ")" * 100 + "\n", "nest"),
    ('root ::= "a" )\n', "end of the line"),
]


@pytest.mark.parametrize("text", GOOD)
def test_good_grammars_pass(text: str) -> None:
    check_gbnf(text)


@pytest.mark.parametrize(("text", "why"), BAD)
def test_bad_grammars_are_refused_saying_why(text: str, why: str) -> None:
    with pytest.raises(GrammarProblem) as caught:
        check_gbnf(text)
    assert why in str(caught.value)


def test_allowed_tokens_pass() -> None:
    check_gbnf('root ::= <|channel|> "final" <[200008]>\n', tokens={"<|channel|>", "<[200008]>"})
