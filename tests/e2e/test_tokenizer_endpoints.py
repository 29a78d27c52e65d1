"""The tokenizer endpoints (vLLM's `/tokenize`, `/detokenize`, `/tokenizer_info`) on served
gateways: SmolLM2's tokens against llama-cpp-python's own tokenizer, a chat prompt's tokens
against what a generation reports reading, the stub's byte tokens, and the refusals."""

from __future__ import annotations

from typing import Any

import httpx
import llama_cpp
import pytest

from tests.e2e.test_completions import _smol_path
from tests.support.served import ServedGateway

pytestmark = pytest.mark.slow

TEXT = "Hello <|im_end|> world, café"


def post(gw: ServedGateway, path: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(f"{gw.base_url}{path}", json=body, timeout=60)


@pytest.fixture(scope="module")
def vocab() -> llama_cpp.Llama:
    return llama_cpp.Llama(model_path=str(_smol_path()), vocab_only=True, verbose=False)


def test_info_names_the_special_tokens(default_gateway: ServedGateway) -> None:
    r = httpx.get(f"{default_gateway.base_url}/tokenizer_info", timeout=60)
    assert r.status_code == 200, r.text
    info = r.json()
    # the first model of the embedded default answers when none is named: SmolLM2
    assert (info["eos_token"], info["tokenizer_class"]) == ("<|im_end|>", "GGUF:gpt2")
    assert "<|im_start|>" in info["chat_template"] and info["model_max_length"] == 2048
    gemma = httpx.get(f"{default_gateway.base_url}/tokenizer_info", params={"model": "gemma-3-270m"}, timeout=60)
    assert gemma.json()["bos_token"] == "<bos>" and gemma.json()["add_bos_token"] is True


@pytest.mark.parametrize("add", [True, False])
def test_tokens_are_llama_cpps(default_gateway: ServedGateway, vocab: llama_cpp.Llama, add: bool) -> None:
    r = post(default_gateway, "/tokenize", {"prompt": TEXT, "add_special_tokens": add, "return_token_strs": True})
    assert r.status_code == 200, r.text
    out = r.json()
    expected = vocab.tokenize(TEXT.encode(), add_bos=add, special=True)
    assert out["tokens"] == expected and out["count"] == len(expected) and out["max_model_len"] == 2048
    assert 2 in out["tokens"]  # `<|im_end|>` read as the special token, as vLLM's tokenizers do
    assert out["token_strs"] == [vocab._model.token_get_text(t) for t in expected]
    back = post(default_gateway, "/detokenize", {"tokens": out["tokens"]}).json()["prompt"]
    assert back == TEXT


def test_gemma_adds_its_bos(default_gateway: ServedGateway) -> None:
    body = {"model": "gemma-3-270m", "prompt": "hi"}
    with_bos = post(default_gateway, "/tokenize", body).json()["tokens"]
    without = post(default_gateway, "/tokenize", {**body, "add_special_tokens": False}).json()["tokens"]
    assert with_bos[1:] == without and len(with_bos) == len(without) + 1


def test_chat_messages_count_as_a_generation_reads_them(default_gateway: ServedGateway) -> None:
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi <|im_end|> there"}]
    r = post(default_gateway, "/tokenize", {"model": "smollm2-135m-instruct", "messages": messages})
    assert r.status_code == 200, r.text
    chat = httpx.post(
        f"{default_gateway.api_url}/chat/completions",
        json={"model": "smollm2-135m-instruct", "messages": messages, "max_tokens": 1},
        timeout=60,
    ).json()
    assert r.json()["count"] == chat["usage"]["prompt_tokens"]
    # the template's turns are special tokens; the message's `<|im_end|>` stayed text
    assert r.json()["tokens"].count(2) == 2


def test_the_stubs_tokens_are_bytes(stub_gateway: ServedGateway) -> None:
    r = post(stub_gateway, "/tokenize", {"model": "stub-chat", "prompt": "hé", "return_token_strs": True})
    assert r.json()["tokens"] == list("hé".encode())
    assert post(stub_gateway, "/detokenize", {"model": "stub-chat", "tokens": list("hé".encode())}).json() == {
        "prompt": "hé"
    }
    info = httpx.get(f"{stub_gateway.base_url}/tokenizer_info", params={"model": "stub-harmony"}, timeout=30).json()
    assert info["vocab_size"] == 256 and "eos_token" in info


@pytest.mark.parametrize(
    ("path", "body", "status", "param", "code"),
    [
        ("/tokenize", {}, 400, "prompt", "invalid_value"),
        ("/tokenize", {"prompt": "a", "messages": [{"role": "user", "content": "b"}]}, 400, "prompt", "invalid_value"),
        ("/tokenize", {"prompt": "a", "model": "nope"}, 404, "model", "model_not_found"),
        (
            "/tokenize",
            {"messages": [{"role": "user", "content": "b"}], "continue_final_message": True},
            400,
            "continue_final_message",
            "unsupported_parameter",
        ),
        ("/detokenize", {"tokens": [1, 256]}, 400, "tokens[1]", "invalid_value"),
        ("/detokenize", {"tokens": "x"}, 400, "tokens", "invalid_value"),
    ],
)
def test_refusals(
    stub_gateway: ServedGateway, path: str, body: dict[str, Any], status: int, param: str, code: str
) -> None:
    r = post(stub_gateway, path, body)
    assert r.status_code == status, r.text
    assert (r.json()["error"]["param"], r.json()["error"]["code"]) == (param, code)
