"""The legacy completions wire without HTTP: prompts, refusals, the legacy logprobs shape
(offsets over control tokens and split characters), whole answers and streams."""

from __future__ import annotations

import json

import msgspec
import pytest

from compat.completions_wire import CompletionStreamEncoder, decode_completion_request, prompts_of, to_internal
from compat.completions_wire.encode import LegacyLogprobs, echo_text, to_completion
from pipelines.config import SamplingDefaults
from pipelines.errors import InvalidRequest, Unsupported
from pipelines.result import PipelineResult
from pipelines.sampling import merge_sampling
from pipelines.types import Delta, DeltaKind, LogprobEntry, PromptToken, SamplingOverrides, StopReason, Usage


def req(**fields: object) -> object:
    return decode_completion_request(json.dumps({"model": "m", "prompt": "x", **fields}).encode())


def entry(token: str, logprob: float) -> LogprobEntry:
    return LogprobEntry(token=token, logprob=logprob, bytes=list(token.encode()))


@pytest.mark.parametrize(
    ("prompt", "expected"),
    [
        ("hi", ["hi"]),
        (["a", "b"], ["a", "b"]),
        ([1, 2], [(1, 2)]),
        ([[1], [2, 3]], [(1,), (2, 3)]),
    ],
)
def test_prompt_shapes(prompt: object, expected: list[object]) -> None:
    assert prompts_of(req(prompt=prompt)) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize("prompt", [["a", 1], [[1], 2], [[1], []]])
def test_mixed_or_empty_prompts_are_400s(prompt: object) -> None:
    with pytest.raises(InvalidRequest) as caught:
        prompts_of(req(prompt=prompt))  # type: ignore[arg-type]
    assert caught.value.code == "invalid_value"


@pytest.mark.parametrize("bad", [{"prompt": []}, {"prompt": [-1]}, {"logprobs": 6}, {"max_tokens": -1}, {"n": 0}])
def test_types_refuse(bad: dict[str, object]) -> None:
    with pytest.raises(msgspec.ValidationError):
        req(**bad)


def test_internal_request() -> None:
    wire = req(prompt="hi", echo=True, logprobs=0, n=2, stop="\n", best_of=2)
    internal = to_internal(wire, "hi", "req_1")  # type: ignore[arg-type]
    assert (internal.prompt, internal.echo, internal.logprobs, internal.top_logprobs, internal.n) == (
        "hi",
        True,
        True,
        0,
        2,
    )
    assert internal.messages == () and internal.stop == ("\n",)
    assert internal.sampling.max_tokens == 16  # OpenAI's default for completions
    assert to_internal(req(max_tokens=0), "x", "r").sampling.max_tokens == 0  # type: ignore[arg-type]
    assert not to_internal(req(), "x", "r").logprobs  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("fields", "error", "param"),
    [
        ({"suffix": "end"}, Unsupported, "suffix"),
        ({"best_of": 2}, Unsupported, "best_of"),
        ({"best_of": 1, "n": 2}, InvalidRequest, "best_of"),
        ({"logit_bias": {"5": 1.0}}, Unsupported, "logit_bias"),
        ({"stream_options": {"include_usage": True}}, InvalidRequest, "stream_options"),
    ],
)
def test_refusals(fields: dict[str, object], error: type[Exception], param: str) -> None:
    with pytest.raises(error) as caught:
        to_internal(req(**fields), "x", "r")  # type: ignore[arg-type]
    assert isinstance(caught.value, InvalidRequest) and caught.value.param == param and caught.value.code


def test_offsets_skip_control_tokens_and_wait_for_whole_characters() -> None:
    legacy = LegacyLogprobs()
    legacy.prompt(
        [
            PromptToken(data=b"<s>", special=True),
            PromptToken(data=b"caf", logprob=entry("caf", -1.0)),
            PromptToken(data=b"\xc3", logprob=entry("\ufffd", -2.0)),
            PromptToken(data=b"\xa9!", logprob=entry("\ufffd!", -3.0)),
        ]
    )
    legacy.generated([entry(" ok", float("-inf"))])
    v = legacy.value
    assert v.tokens == ["<s>", "caf", "\ufffd", "\ufffd!", " ok"]
    assert v.text_offset == [0, 0, 3, 3, 5]  # "café!" then " ok"
    assert v.token_logprobs == [None, -1.0, -2.0, -3.0, -9999.0]
    assert v.top_logprobs[0] is None and v.top_logprobs[4] == {" ok": -9999.0}
    assert echo_text((1, 2), [PromptToken(data=b"<s>", special=True), PromptToken(data=b"hi")]) == "hi"
    assert echo_text("as sent", [PromptToken(data=b" as sent")]) == "as sent"


def _result(content: str, prompt: tuple[PromptToken, ...] = (), index: int = 0) -> PipelineResult:
    sampling = merge_sampling(SamplingDefaults(), None, None, SamplingOverrides(), passport_cap=16, gateway_cap=None)
    return PipelineResult(
        content=content,
        reasoning="",
        tool_calls=(),
        finish_reason="length",
        stop_reason=StopReason.LENGTH,
        usage=Usage(prompt_tokens=2, completion_tokens=1),
        sampling=sampling,
        logprobs=(entry(content, -0.5),),
        prompt=prompt,
        index=index,
    )


PROMPT = (PromptToken(data=b"A"), PromptToken(data=b"B", logprob=entry("B", -1.5)))


def test_whole_completion_numbers_choices_prompt_by_prompt() -> None:
    first = _result("x", PROMPT)
    second = _result("y")
    out = to_completion(
        [("AB", first), ("AB", second)], completion_id="cmpl-1", model="m", created=1, echo=True, logprobs=True, n=1
    )
    assert [c.index for c in out.choices] == [0, 1]
    c = out.choices[0]
    assert c.text == "ABx" and c.logprobs is not None
    assert c.logprobs.tokens == ["A", "B", "x"] and c.logprobs.text_offset == [0, 1, 2]
    assert c.logprobs.token_logprobs == [None, -1.5, -0.5]
    assert out.usage is not None and (out.usage.prompt_tokens, out.usage.completion_tokens) == (4, 2)


def _events(raw: bytes) -> list[dict[str, object]]:
    return [json.loads(line[6:]) for line in raw.decode().splitlines() if line.startswith("data: {")]


def test_stream_echoes_first_then_text_then_the_end() -> None:
    enc = CompletionStreamEncoder(
        completion_id="c", model="m", prompt="AB", echo=True, logprobs=True, include_usage=True
    )
    out = enc.first() + enc.delta(Delta(kind=DeltaKind.PROMPT, prompt=PROMPT))
    out += enc.delta(Delta(kind=DeltaKind.CONTENT, text="x", logprobs=(entry("x", -0.5),)))
    out += enc.final(_result("x", PROMPT)) + enc.done()
    events = _events(out)
    texts = [e["choices"][0]["text"] for e in events if e["choices"]]  # type: ignore[index]
    assert texts == ["AB", "x", ""]
    assert events[1]["choices"][0]["logprobs"]["text_offset"] == [2]  # type: ignore[index]
    assert events[-1]["usage"]["total_tokens"] == 3  # type: ignore[index]
    assert out.endswith(b"data: [DONE]\n\n")


def test_stream_echoes_a_text_prompt_without_a_report() -> None:
    enc = CompletionStreamEncoder(completion_id="c", model="m", prompt="AB", echo=True)
    out = enc.delta(Delta(kind=DeltaKind.CONTENT, text="x")) + enc.delta(Delta(kind=DeltaKind.CONTENT, text="y"))
    assert [e["choices"][0]["text"] for e in _events(out)] == ["AB", "x", "y"]  # type: ignore[index]


def test_a_later_prompts_stream_numbers_its_choices_after_the_earlier_and_ends_it() -> None:
    earlier = Usage(prompt_tokens=5, completion_tokens=7, cached_tokens=1)
    first = CompletionStreamEncoder(
        completion_id="c", model="m", prompt="AB", choices=2, last=False, include_usage=True
    )
    out = first.delta(Delta(kind=DeltaKind.CONTENT, text="x", choice=1)) + first.final(_result("x")) + first.done()
    assert b"[DONE]" not in out and all(e["usage"] is None for e in _events(out))
    assert [c["index"] for e in _events(out) for c in e["choices"]] == [1, 0]  # type: ignore[index]
    last = CompletionStreamEncoder(
        completion_id="c", model="m", prompt="AB", choices=2, base=2, carried=earlier, include_usage=True
    )
    out = last.delta(Delta(kind=DeltaKind.CONTENT, text="y", choice=1)) + last.final(_result("y")) + last.done()
    events = _events(out)
    assert [c["index"] for e in events for c in e["choices"]] == [3, 2]  # type: ignore[index]
    assert events[-1]["usage"]["prompt_tokens"] == 7 and events[-1]["usage"]["completion_tokens"] == 8  # type: ignore[index]
    assert out.endswith(b"data: [DONE]\n\n")
