"""The client-compatibility suite: each client as its users use it, in its own
environment, against one served gateway (real SmolLM2 and Gemma 3, Harmony replays).

What each case needs of the gateway: JSON Schema bounds enforced by the grammar
(structured outputs), `tool_choice` required/any with several tools on Harmony models,
and forced calls on chat-template models. LlamaIndex (legacy completions) and lm-eval have
their own tests (tests/e2e/test_llamaindex.py, test_lm_eval.py), in their own environments."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import openai
import pytest
from pydantic import BaseModel, Field

from tests.support.clients import run_client
from tests.support.configs import smollm2
from tests.support.served import ServedGateway, serve

pytestmark = pytest.mark.slow

DATA = Path(__file__).resolve().parents[1] / "data" / "clients"


def _replay(model_id: str, name: str) -> str:
    return (
        f'[[models]]\nid = "{model_id}"\nrole = "primary"\nformat = "harmony"\nprovider = "replay"\n'
        f'replay_file = "{DATA / name}"\n\n'
    )


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedGateway]:
    config = (
        smollm2("smollm2")
        + _replay("replay-weather", "pick_city_tool.txt")
        + _replay("replay-output", "final_result.txt")
    )
    with serve(config, tmp_path_factory.mktemp("clients")) as gw:
        yield gw


def test_langchain_structured_output_with_a_bounded_model(gateway: ServedGateway) -> None:
    result = run_client("python", "langchain_clients.py", "structured", "smollm2", api_url=gateway.api_url)
    person = result["person"]
    assert isinstance(person["name"], str)
    assert isinstance(person["age"], int) and 0 <= person["age"] <= 150


def test_langchain_bind_tools_any_with_two_tools_on_harmony(gateway: ServedGateway) -> None:
    result = run_client("python", "langchain_clients.py", "tools_any", "replay-weather", api_url=gateway.api_url)
    assert result["tool_calls"] == [{"name": "get_weather", "args": {"city": "Paris"}}]


def test_pydantic_ai_agent_with_a_tool_and_structured_output_on_harmony(gateway: ServedGateway) -> None:
    result = run_client("python", "pydantic_ai_clients.py", "replay-output", api_url=gateway.api_url)
    assert result["output"] == {"city": "Paris", "country": "France", "population_millions": 2}


@pytest.mark.parametrize("mode", ["tools", "json_schema"])
def test_instructor_modes(gateway: ServedGateway, mode: str) -> None:
    result = run_client("python", "instructor_clients.py", mode, "smollm2", api_url=gateway.api_url)
    user = result["user"]
    assert isinstance(user["name"], str)
    assert 0 <= user["age"] <= 150


@pytest.mark.parametrize("wire", ["chat", "responses"])
def test_vercel_ai_sdk_generate_object_with_an_int(gateway: ServedGateway, wire: str) -> None:
    result = run_client("node", "vercel_generate_object.mjs", wire, "smollm2", api_url=gateway.api_url)
    obj = result["object"]
    assert isinstance(obj["name"], str)
    assert isinstance(obj["age"], int) and 0 <= obj["age"] <= 150


class _Person(BaseModel):
    name: str = Field(max_length=40)
    age: int = Field(ge=0, le=150)


def test_openai_sdk_parse_with_bounds(gateway: ServedGateway) -> None:
    client = openai.OpenAI(base_url=gateway.api_url, api_key="unused", max_retries=0)
    completion = client.chat.completions.parse(
        model="smollm2",
        messages=[{"role": "user", "content": "Extract the person: Alice is 31 years old."}],
        response_format=_Person,
        temperature=0,
    )
    person = completion.choices[0].message.parsed
    assert isinstance(person, _Person)
    assert 0 <= person.age <= 150
