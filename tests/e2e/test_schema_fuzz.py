"""Generated and hostile JSON Schemas and tool lists through a served gateway (issue 14,
"Done when"): on the stubs (chat and Harmony) a thousand and more, on SmolLM2 through
llama.cpp a few hundred with a small output cap. Zero crashes: every answer is a 200 or a
400 in OpenAI's envelope with a code, and the gateway is healthy at the end."""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.configs import STUB_MODELS, smollm2
from tests.support.schemas import NASTY_TEXT, SchemaFuzzer
from tests.support.served import ServedGateway, serve

pytestmark = pytest.mark.slow

STUB_REQUESTS = 1200
LLAMA_REQUESTS = 200
RESPONSES_REQUESTS = 300


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedGateway]:
    toml = STUB_MODELS + smollm2("smol", slots=2)
    with serve(toml, tmp_path_factory.mktemp("schema-fuzz")) as gw:
        yield gw


def _tools(fuzzer: SchemaFuzzer, rng: random.Random) -> list[Any]:
    if rng.random() < 0.15:  # hostile lists
        return rng.choice(
            [
                [{"type": "function", "function": {"name": "f"}}] * 2,
                [{"type": "function", "function": {"name": rng.choice(NASTY_TEXT) or "x y"}}],
                [
                    {"type": "function", "function": {"name": f"t{i}", "parameters": fuzzer.schema()}}
                    for i in range(300)
                ],
                [{"type": "function", "function": {"name": "f", "parameters": fuzzer.hostile()}}],
                [{"type": "function", "function": {"name": "f", "parameters": []}}],
                [{"type": "function"}],
            ]
        )
    return [
        {
            "type": "function",
            "function": {
                "name": f"tool_{i}",
                "description": fuzzer.text(),
                "parameters": fuzzer.schema(),
                "strict": True,
            },
        }
        for i in range(rng.randint(1, 3))
    ]


def _body(fuzzer: SchemaFuzzer, rng: random.Random, model: str, max_tokens: int) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": model,
        "messages": [{"role": "user", "content": rng.choice(["Answer in JSON.", "<|end|>{", "Call a tool."])}],
        "max_tokens": max_tokens,
        "temperature": 1.0,
    }
    kind = rng.random()
    if kind < 0.55:
        schema = fuzzer.schema() if rng.random() < 0.8 else fuzzer.hostile()
        body["response_format"] = {"type": "json_schema", "json_schema": {"name": "out", "schema": schema}}
    elif kind < 0.65:
        body["response_format"] = {"type": "json_object"}
    else:
        body["tools"] = _tools(fuzzer, rng)
        body["tool_choice"] = rng.choice(
            ["auto", "required", "none", {"type": "function", "function": {"name": "tool_0"}}]
        )
    if rng.random() < 0.2:
        body["logprobs"] = True
        body["top_logprobs"] = rng.randint(0, 3)
    return body


def _send(client: httpx.Client, body: dict[str, Any], outcomes: Counter[str]) -> None:
    try:
        content = json.dumps(body).encode()
    except (ValueError, RecursionError):  # too deep for Python's json: send msgspec's bytes instead
        return
    response = client.post("/v1/chat/completions", content=content, headers={"content-type": "application/json"})
    if response.status_code == 200:
        outcomes["200"] += 1
        return
    assert response.status_code == 400, (response.status_code, response.text[:500])
    error = response.json()["error"]
    assert error["code"], error
    outcomes[error["code"]] += 1


def _run(gateway: ServedGateway, models: list[str], count: int, seed: int, max_tokens: int) -> Counter[str]:
    fuzzer, rng = SchemaFuzzer(seed), random.Random(seed)
    outcomes: Counter[str] = Counter()
    with httpx.Client(base_url=gateway.base_url, timeout=120.0) as client:
        for _ in range(count):
            _send(client, _body(fuzzer, rng, rng.choice(models), max_tokens), outcomes)
        assert client.get("/health").status_code == 200
    return outcomes


def test_stub_models_take_thousands_of_schemas_and_tool_lists(gateway: ServedGateway) -> None:
    outcomes = _run(gateway, ["stub-chat", "stub-harmony"], STUB_REQUESTS, 7, 64)
    assert outcomes["200"] > STUB_REQUESTS // 3, outcomes
    assert outcomes["invalid_json_schema"] and outcomes["json_schema_too_complex"], outcomes
    # each structured answer was checked and counted: the stubs' answers are valid
    metrics = httpx.get(f"{gateway.base_url}/metrics").text
    valid = [
        float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line.startswith("mia_structured_output_total{") and 'outcome="valid"' in line and 'stub="true"' in line
    ]
    assert sum(valid) > STUB_REQUESTS // 4, metrics


def test_llama_cpp_takes_hundreds_of_schemas_without_a_crash(gateway: ServedGateway) -> None:
    outcomes = _run(gateway, ["smol"], LLAMA_REQUESTS, 11, 4)
    assert outcomes["200"] > LLAMA_REQUESTS // 3, outcomes
    assert gateway.proc.poll() is None
    assert "Segmentation" not in Path(gateway.log_path).read_text(errors="replace")


def test_the_responses_wire_takes_the_same_schemas(gateway: ServedGateway) -> None:
    fuzzer, rng = SchemaFuzzer(23), random.Random(23)
    outcomes: Counter[str] = Counter()
    with httpx.Client(base_url=gateway.base_url, timeout=120.0) as client:
        for _ in range(RESPONSES_REQUESTS):
            schema = fuzzer.schema() if rng.random() < 0.8 else fuzzer.hostile()
            body: dict[str, Any] = {"model": rng.choice(["stub-chat", "stub-harmony"]), "input": "Answer in JSON."}
            if rng.random() < 0.6:
                body["text"] = {"format": {"type": "json_schema", "name": "out", "schema": schema}}
            else:
                body["tools"] = [{"type": "function", "name": "f", "parameters": schema}]
                body["tool_choice"] = rng.choice(["auto", "required", {"type": "function", "name": "f"}])
            try:
                content = json.dumps(body).encode()
            except (ValueError, RecursionError):
                continue
            response = client.post("/v1/responses", content=content, headers={"content-type": "application/json"})
            if response.status_code == 200:
                outcomes["200"] += 1
                continue
            assert response.status_code == 400, (response.status_code, response.text[:500])
            assert response.json()["error"]["code"], response.text[:500]
            outcomes[response.json()["error"]["code"]] += 1
    assert outcomes["200"] > RESPONSES_REQUESTS // 3, outcomes
