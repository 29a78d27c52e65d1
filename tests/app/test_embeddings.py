"""POST /v1/embeddings through the whole app on stub models: every input shape, both
encodings, `dimensions`, usage, and the 400s (wrong kind of model, mixed inputs, bounds)."""

from __future__ import annotations

import base64
import math
import struct
from collections.abc import Callable
from typing import Any

import pytest

from app.metrics import install_metrics
from pipelines.events import EmbeddingsCreated
from tests.support.app_client import asgi
from tests.support.configs import STUB_MODELS
from tests.support.harness import Harness

HarnessFactory = Callable[..., Harness]

MATRYOSHKA = """
[[models]]
id = "stub-matryoshka"
provider = "stub"
embedding = true
matryoshka = true
stub_dimensions = 16
"""


async def post(h: Harness, body: dict[str, Any], path: str = "/v1/embeddings") -> tuple[int, dict[str, Any]]:
    async with asgi(h) as client:
        r = await client.post(path, json=body)
    return r.status_code, r.json()


def norm(v: list[float]) -> float:
    return math.sqrt(sum(x * x for x in v))


async def test_a_string_gives_one_unit_vector_with_usage(make_app_harness: HarnessFactory) -> None:
    h = make_app_harness()
    status, body = await post(h, {"model": "stub-embed", "input": "the quick brown fox"})
    assert status == 200, body
    assert body["object"] == "list" and body["model"] == "stub-embed"
    [item] = body["data"]
    assert item["object"] == "embedding" and item["index"] == 0
    assert len(item["embedding"]) == 8 and abs(norm(item["embedding"]) - 1.0) < 1e-9
    assert body["usage"] == {"prompt_tokens": 4, "total_tokens": 4}
    # deterministic from the input alone
    _, again = await post(h, {"model": "stub-embed", "input": ["the quick brown fox", "another"]})
    assert again["data"][0]["embedding"] == item["embedding"]
    assert again["data"][1]["embedding"] != item["embedding"]


@pytest.mark.parametrize(
    ("inputs", "count", "tokens"),
    [
        (["a b", "c", "d e f"], 3, 6),
        ([5, 6, 7], 1, 3),
        ([[5, 6], [7], [8, 9, 10]], 3, 6),
    ],
)
async def test_every_input_shape_gives_one_vector_per_input_in_order(
    make_app_harness: HarnessFactory, inputs: list[Any], count: int, tokens: int
) -> None:
    status, body = await post(make_app_harness(), {"model": "stub-embed", "input": inputs})
    assert status == 200, body
    assert [d["index"] for d in body["data"]] == list(range(count))
    assert body["usage"]["prompt_tokens"] == tokens


async def test_base64_is_little_endian_float32_of_the_same_vectors(make_app_harness: HarnessFactory) -> None:
    h = make_app_harness()
    inputs = ["one", "two words"]
    _, floats = await post(h, {"model": "stub-embed", "input": inputs, "encoding_format": "float"})
    _, b64 = await post(h, {"model": "stub-embed", "input": inputs, "encoding_format": "base64"})
    for f, b in zip(floats["data"], b64["data"], strict=True):
        raw = base64.b64decode(b["embedding"])
        decoded = struct.unpack(f"<{len(raw) // 4}f", raw)
        assert len(decoded) == len(f["embedding"])
        assert all(abs(x - y) < 1e-7 for x, y in zip(decoded, f["embedding"], strict=True))
    assert b64["usage"] == floats["usage"]


async def test_dimensions_shortens_a_matryoshka_model_only(make_app_harness: HarnessFactory) -> None:
    h = make_app_harness(STUB_MODELS + MATRYOSHKA)
    _, full = await post(h, {"model": "stub-matryoshka", "input": "x"})
    status, short = await post(h, {"model": "stub-matryoshka", "input": "x", "dimensions": 4})
    assert status == 200, short
    vector = short["data"][0]["embedding"]
    prefix = full["data"][0]["embedding"][:4]
    assert len(vector) == 4 and abs(norm(vector) - 1.0) < 1e-9
    assert all(abs(a - b / norm(prefix)) < 1e-12 for a, b in zip(vector, prefix, strict=True))
    # the model's own length is always fine
    status, same = await post(h, {"model": "stub-embed", "input": "x", "dimensions": 8})
    assert status == 200 and len(same["data"][0]["embedding"]) == 8
    for model, dimensions in (("stub-embed", 4), ("stub-embed", 9), ("stub-matryoshka", 17)):
        status, body = await post(h, {"model": model, "input": "x", "dimensions": dimensions})
        assert status == 400, body
        assert body["error"]["param"] == "dimensions" and body["error"]["code"] == "unsupported_parameter"


async def test_a_chat_model_refuses_embeddings_and_an_embedding_model_refuses_chat(
    make_app_harness: HarnessFactory,
) -> None:
    h = make_app_harness()
    status, body = await post(h, {"model": "stub-chat", "input": "x"})
    assert status == 400 and body["error"]["code"] == "unsupported_model" and body["error"]["param"] == "model"
    chat = {"model": "stub-embed", "messages": [{"role": "user", "content": "hi"}]}
    for path, request in (("/v1/chat/completions", chat), ("/v1/responses", {"model": "stub-embed", "input": "hi"})):
        status, body = await post(h, request, path)
        assert status == 400, (path, body)
        assert body["error"]["code"] == "unsupported_model" and body["error"]["param"] == "model"
        assert "/v1/embeddings" in body["error"]["message"]
    status, body = await post(h, {"model": "nope", "input": "x"})
    assert status == 404 and body["error"]["code"] == "model_not_found"


@pytest.mark.parametrize(
    ("inputs", "param"),
    [
        (["a", 1], "input"),
        ([[1], 2], "input"),
        ([], "input"),
        ("", "input"),
        ([[]], "input[0]"),
        ([-1], "input[0]"),
        (["ok", ""], "input[1]"),
        ({"text": "x"}, "input"),
    ],
)
async def test_malformed_inputs_are_400s_naming_the_input(
    make_app_harness: HarnessFactory, inputs: Any, param: str
) -> None:
    status, body = await post(make_app_harness(), {"model": "stub-embed", "input": inputs})
    assert status == 400, body
    assert body["error"]["param"] == param and body["error"]["code"], body


async def test_the_bounds_on_inputs_are_400s_naming_the_limit(make_app_harness: HarnessFactory) -> None:
    h = make_app_harness(
        STUB_MODELS.replace("[server]\n", "[server]\nmax_embedding_inputs = 3\nmax_prompt_chars = 20\n")
    )
    status, body = await post(h, {"model": "stub-embed", "input": ["a", "b", "c"]})
    assert status == 200
    status, body = await post(h, {"model": "stub-embed", "input": ["a", "b", "c", "d"]})
    assert status == 400 and "max_embedding_inputs" in body["error"]["message"] and body["error"]["param"] == "input"
    status, body = await post(h, {"model": "stub-embed", "input": "x" * 21})
    assert status == 400 and "max_prompt_chars" in body["error"]["message"] and body["error"]["param"] == "input"
    status, body = await post(h, {"model": "stub-embed", "input": list(range(21))})
    assert status == 400 and "max_prompt_chars" in body["error"]["message"]


async def test_the_model_card_says_embedding(make_app_harness: HarnessFactory) -> None:
    h = make_app_harness()
    async with asgi(h) as client:
        card = (await client.get("/v1/models/stub-embed")).json()
        chat = (await client.get("/v1/models/stub-chat")).json()
    assert card["pipeline"] == "embedding" and card["capabilities"]["embeddings"] is True
    assert chat["capabilities"]["embeddings"] is False


async def test_an_embedding_model_without_its_file_is_served_by_the_stub(make_app_harness: HarnessFactory) -> None:
    toml = (
        STUB_MODELS
        + '[[models]]\nid = "gone"\nprovider = "llama_cpp"\nembedding = true\npath = "/nonexistent/model.gguf"\n'
    )
    h = make_app_harness(toml)
    status, body = await post(h, {"model": "gone", "input": ["a", "b"]})
    assert status == 200, body
    assert [len(d["embedding"]) for d in body["data"]] == [384, 384]
    async with asgi(h) as client:
        card = (await client.get("/v1/models/gone")).json()
    assert card["stub"] is True and "does not exist" in card["stub_reason"]


@pytest.mark.parametrize(
    ("content", "content_type", "status"),
    [
        (b'{"model": "stub-embed", "input": [[[1]]]}', "application/json", 400),
        (b'{"model": "stub-embed", "input": [99999999999999999999999]}', "application/json", 400),
        (b'{"model": "stub-embed", "input": [1.5]}', "application/json", 400),
        (b'{"model": "stub-embed", "input": [NaN]}', "application/json", 400),
        (b'{"model": "stub-embed", "input": "x", "dimensions": 0}', "application/json", 400),
        (b'{"model": "stub-embed", "input": "x", "encoding_format": "int8"}', "application/json", 400),
        (b'{"model": "stub-embed", "input": "x", "dimensions": 1e400}', "application/json", 400),
        (b'{"model": 5, "input": "x"}', "application/json", 400),
        (b'{"input": "x"}', "application/json", 400),
        (b'{"model": "stub-embed", "input": "\xff"}', "application/json", 400),
        (b"[" * 100_000, "application/json", 400),
        (b'{"model": "stub-embed", "input": "x"}', "text/plain", 415),
    ],
)
async def test_hostile_bodies_are_4xx_in_the_envelope(
    make_app_harness: HarnessFactory, content: bytes, content_type: str, status: int
) -> None:
    async with asgi(make_app_harness()) as client:
        r = await client.post("/v1/embeddings", content=content, headers={"content-type": content_type})
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["code"]


async def test_embeddings_are_counted_and_logged_as_one_event(make_app_harness: HarnessFactory) -> None:
    h = make_app_harness()
    install_metrics(h.gateway.registry, h.gateway.bus, h.gateway.settings.models)
    await post(h, {"model": "stub-embed", "input": ["a b", "c"]})
    await post(h, {"model": "stub-embed", "input": [[1, 2, 3]]})
    await post(h, {"model": "stub-chat", "input": "refused"})
    [first, second] = [e for e in h.events if isinstance(e, EmbeddingsCreated)]
    assert (first.model_id, first.inputs, first.prompt_tokens, first.stub) == ("stub-embed", 2, 3, True)
    assert (second.inputs, second.prompt_tokens) == (1, 3) and first.seconds >= 0
    sample = h.gateway.registry.get_sample_value
    labels = {"model": "stub-embed", "stub": "true"}
    assert sample("mia_embedding_inputs_total", labels) == 3
    assert sample("mia_prompt_tokens_total", labels) == 6
    assert sample("mia_requests_total", {"endpoint": "/v1/embeddings", "status": "200"}) == 2
    assert sample("mia_requests_total", {"endpoint": "/v1/embeddings", "status": "400"}) == 1
