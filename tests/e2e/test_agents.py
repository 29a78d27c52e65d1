"""The openai-agents SDK with its default model (the Responses API) pointed at a served
gateway: an agent with one function tool runs to its final answer, streamed and not, on a
Harmony replay model scripted to call the tool, then answer from its result."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import agents
import pytest
from openai import AsyncOpenAI

from tests.support.recording_proxy import RecordingProxy, recording_proxy
from tests.support.served import ServedGateway, serve

pytestmark = pytest.mark.slow

HARMONY = Path(__file__).resolve().parents[1] / "data" / "harmony"
ANSWER = "It is 18 °C in Zürich right now."
"""What the replay model says once the prompt holds the tool's result (after_tool.txt)."""


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedGateway]:
    config = f"""
[[models]]
id = "weather-agent"
role = "primary"
format = "harmony"
provider = "replay"
replay_file = "{HARMONY / "tool_call.txt"}"
replay_after_tools = ["{HARMONY / "after_tool.txt"}"]
"""
    with serve(config, tmp_path_factory.mktemp("agents-gw")) as gw:
        yield gw


@pytest.fixture
def proxy(gateway: ServedGateway) -> Iterator[RecordingProxy]:
    with recording_proxy(gateway.base_url) as p:
        yield p


def _agent(proxy: RecordingProxy, asked: list[dict[str, str]]) -> agents.Agent:
    # the SDK's defaults, with only the client's base URL changed; tracing would upload to OpenAI
    agents.set_default_openai_client(AsyncOpenAI(base_url=f"{proxy.base_url}/v1", api_key="unused", max_retries=0))
    agents.set_tracing_disabled(True)

    @agents.function_tool
    def get_weather(location: str, unit: str = "celsius") -> str:
        """Current weather for a place."""
        asked.append({"location": location, "unit": unit})
        return json.dumps({"location": location, "temperature": 18, "unit": unit})

    return agents.Agent(
        name="Forecaster", instructions="Answer about the weather.", model="weather-agent", tools=[get_weather]
    )


def _check_wire(proxy: RecordingProxy, *, stream: bool) -> None:
    """Two calls to /v1/responses: the question, then the question, the call and its output."""
    first, second = (json.loads(b) for b in proxy.bodies)
    assert first["model"] == second["model"] == "weather-agent" and bool(first.get("stream")) is stream
    assert [t["name"] for t in first["tools"]] == ["get_weather"]
    kinds = [item.get("type") for item in second["input"]]
    assert kinds[-2:] == ["function_call", "function_call_output"]
    assert json.loads(second["input"][-1]["output"]) == {"location": "Zürich", "temperature": 18, "unit": "celsius"}


async def test_an_agent_runs_its_tool_to_the_final_answer(proxy: RecordingProxy) -> None:
    asked: list[dict[str, str]] = []
    result = await agents.Runner.run(_agent(proxy, asked), "What is the weather in Zürich?")
    assert asked == [{"location": "Zürich", "unit": "celsius"}]
    assert result.final_output == ANSWER
    kinds = [item.type for item in result.new_items]
    assert kinds == [
        "reasoning_item",
        "tool_call_item",
        "tool_call_output_item",
        "reasoning_item",
        "message_output_item",
    ]
    _check_wire(proxy, stream=False)


async def test_a_streamed_agent_run(proxy: RecordingProxy) -> None:
    asked: list[dict[str, str]] = []
    run = agents.Runner.run_streamed(_agent(proxy, asked), "What is the weather in Zürich?")
    raw: list[str] = []
    items: list[str] = []
    async for event in run.stream_events():
        if event.type == "raw_response_event":
            raw.append(event.data.type)
        elif event.type == "run_item_stream_event":
            items.append(event.item.type)
    assert asked == [{"location": "Zürich", "unit": "celsius"}]
    assert run.final_output == ANSWER and run.is_complete
    assert items == [
        "reasoning_item",
        "tool_call_item",
        "tool_call_output_item",
        "reasoning_item",
        "message_output_item",
    ]
    # the SDK read two whole streams, each from its first event to its last
    assert raw.count("response.created") == raw.count("response.completed") == 2
    assert "".join(raw).count("response.output_text.delta") > 1
    _check_wire(proxy, stream=True)
