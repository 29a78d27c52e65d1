"""Stored responses with the unmodified openai SDK against a served gateway: `retrieve`,
`delete`, `input_items.list`, `input_tokens.count` and `previous_response_id` chains, on the
stub models and on real SmolLM2; and SQLite's file outliving the gateway (restart, then
retrieve and continue). PostgreSQL shared by two gateways: test_responses_postgres.py."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from openai.types.responses import Response, ResponseOutputMessage

from tests.support.configs import STUB_MODELS
from tests.support.responses import check_stream, events
from tests.support.served import ServedGateway, serve

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def client(stub_gateway: ServedGateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=stub_gateway.api_url, api_key="unused", max_retries=0)


def explicit(*turns: tuple[Any, Response]) -> list[dict[str, Any]]:
    """A chain's conversation sent whole, as a stateless client would: each turn's input,
    then its output items."""
    items: list[dict[str, Any]] = []
    for given, out in turns:
        items += [{"role": "user", "content": given}] if isinstance(given, str) else given
        items += [item.model_dump(exclude_none=True) for item in out.output]
    return items


def test_a_response_is_stored_and_read_back(client: openai.OpenAI) -> None:
    out = client.responses.create(model="stub-harmony", input="Hello", metadata={"k": "v"})
    assert out.store is True
    again = client.responses.retrieve(out.id)
    assert again.model_dump() == out.model_dump()  # the very object the client was given
    assert again.metadata == {"k": "v"} and [i.type for i in again.output] == ["reasoning", "message"]
    with pytest.raises(openai.BadRequestError) as exc:  # replaying a response's events: not built
        client.responses.retrieve(out.id, stream=True)
    assert exc.value.param == "stream"
    scrape = httpx.get(f"{client.base_url}".removesuffix("/v1/") + "/metrics", timeout=10).text
    timed = {line.split()[0] for line in scrape.splitlines() if line.startswith("mia_storage_operation_seconds_count")}
    assert {
        f'mia_storage_operation_seconds_count{{backend="sqlite",operation="{op}"}}' for op in ("put", "get")
    } <= timed


def test_a_stream_is_stored_before_it_says_completed(client: openai.OpenAI, stub_gateway: ServedGateway) -> None:
    body = {"model": "stub-chat", "input": "Tell me something.", "stream": True}
    with httpx.stream("POST", f"{stub_gateway.api_url}/responses", json=body, timeout=60) as r:
        assert r.status_code == 200
        data = r.read()
    final = check_stream(events(data))
    assert final["store"] is True
    assert client.responses.retrieve(final["id"]).model_dump(mode="json") == Response.model_validate(final).model_dump(
        mode="json"
    )


def test_store_false_keeps_nothing(client: openai.OpenAI) -> None:
    out = client.responses.create(model="stub-chat", input="Hi", store=False)
    assert out.store is False
    with pytest.raises(openai.NotFoundError) as exc:
        client.responses.retrieve(out.id)
    assert exc.value.code == "response_not_found"
    with pytest.raises(openai.NotFoundError) as exc:
        client.responses.create(model="stub-chat", input="Hi", previous_response_id=out.id)
    assert exc.value.code == "previous_response_not_found" and exc.value.param == "previous_response_id"


def test_delete_then_404_everywhere(client: openai.OpenAI, stub_gateway: ServedGateway) -> None:
    out = client.responses.create(model="stub-chat", input="Hi")
    r = httpx.delete(f"{stub_gateway.api_url}/responses/{out.id}", timeout=10)
    assert r.status_code == 200 and r.json() == {"id": out.id, "object": "response.deleted", "deleted": True}
    other = client.responses.create(model="stub-chat", input="Hi")
    assert client.responses.delete(other.id) is None  # the SDK returns nothing on success
    for gone in (out.id, other.id):
        for name, call in (
            ("retrieve", client.responses.retrieve),
            ("delete", client.responses.delete),
            ("input_items", client.responses.input_items.list),
        ):
            with pytest.raises(openai.NotFoundError) as exc:
                call(gone)
            assert exc.value.code == "response_not_found", name
        r = httpx.post(
            f"{stub_gateway.api_url}/responses",
            json={"model": "stub-chat", "input": "x", "previous_response_id": gone},
            timeout=10,
        )
        assert r.status_code == 404 and r.json()["error"]["param"] == "previous_response_id"


def test_input_items_are_listed_and_paged_as_openai_pages_them(client: openai.OpenAI) -> None:
    given: list[Any] = [
        {"role": "developer", "content": "Be brief."},
        {"role": "user", "content": [{"type": "input_text", "text": "one"}]},
        {"role": "assistant", "content": "two"},
        {"type": "function_call", "call_id": "call_1", "name": "f", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "call_1", "output": "three"},
        {"role": "user", "content": "four"},
    ]
    out = client.responses.create(model="stub-chat", input=given)
    listed = client.responses.input_items.list(out.id, order="asc")
    assert [i.type for i in listed.data] == [
        "message",
        "message",
        "message",
        "function_call",
        "function_call_output",
        "message",
    ]
    assert all(i.id for i in listed.data) and len({i.id for i in listed.data}) == 6
    first = listed.data[1]
    assert first.type == "message" and first.role == "user" and first.content[0].text == "one"  # type: ignore[union-attr]
    assistant = listed.data[2]
    assert isinstance(assistant, ResponseOutputMessage) and assistant.content[0].text == "two"  # type: ignore[union-attr]
    # newest first by default; pages of two follow `after`, the SDK's iteration reads them all
    page = client.responses.input_items.list(out.id, limit=2)
    assert [i.id for i in page.data] == [i.id for i in reversed(listed.data)][:2] and page.has_more
    assert [i.id for i in page] == [i.id for i in reversed(listed.data)]
    raw = client.responses.input_items.with_raw_response.list(out.id, limit=2, after=page.data[1].id).parse()
    assert raw.first_id == listed.data[3].id and raw.last_id == listed.data[2].id and raw.has_more  # type: ignore[attr-defined]
    # a string input is one user message
    single = client.responses.create(model="stub-chat", input="just this")
    [item] = client.responses.input_items.list(single.id).data
    assert item.type == "message" and item.role == "user" and item.content[0].type == "input_text"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("query", "param"), [("limit=0", "limit"), ("limit=many", "limit"), ("order=up", "order"), ("after=nope", "after")]
)
def test_bad_paging_is_a_400_naming_it(
    client: openai.OpenAI, stub_gateway: ServedGateway, query: str, param: str
) -> None:
    out = client.responses.create(model="stub-chat", input="Hi")
    r = httpx.get(f"{stub_gateway.api_url}/responses/{out.id}/input_items?{query}", timeout=10)
    assert r.status_code == 400 and r.json()["error"]["param"] == param, r.text


def test_a_three_turn_chain_is_the_conversation_sent_whole(client: openai.OpenAI) -> None:
    """The stub's answer depends on its whole prompt: a chained turn and the same
    conversation sent explicitly count the same tokens and get the same answer."""
    model = "stub-harmony"
    one = client.responses.create(model=model, input="My name is Ada.", instructions="Be brief.")
    two = client.responses.create(model=model, input="I like maps.", previous_response_id=one.id)
    three = client.responses.create(model=model, input="What do I like?", previous_response_id=two.id)
    assert three.previous_response_id == two.id and three.instructions is None  # not carried over
    whole = [*explicit(("My name is Ada.", one), ("I like maps.", two)), {"role": "user", "content": "What do I like?"}]
    stateless = client.responses.create(model=model, input=whole, store=False)  # type: ignore[arg-type]
    assert three.usage is not None and stateless.usage is not None and two.usage is not None
    assert three.usage.input_tokens == stateless.usage.input_tokens > two.usage.input_tokens
    assert three.output_text == stateless.output_text
    counted = client.responses.input_tokens.count(model=model, input="What do I like?", previous_response_id=two.id)
    assert counted.object == "response.input_tokens" and counted.input_tokens == three.usage.input_tokens
    # the chain's input items are each response's own
    assert [i.content[0].text for i in client.responses.input_items.list(three.id).data] == ["What do I like?"]  # type: ignore[union-attr]


def test_a_function_call_is_continued_by_its_output_alone(client: openai.OpenAI) -> None:
    tools: list[Any] = [{"type": "function", "name": "get_weather", "parameters": {"type": "object"}}]
    first = client.responses.create(
        model="stub-harmony", input="Weather?", tools=tools, tool_choice={"type": "function", "name": "get_weather"}
    )
    [call] = [i for i in first.output if i.type == "function_call"]
    second = client.responses.create(
        model="stub-harmony",
        tools=tools,
        previous_response_id=first.id,
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "sunny"}],  # type: ignore[union-attr]
    )
    assert second.status == "completed" and second.output_text
    assert not [i for i in second.output if i.type == "function_call"]


def test_real_smollm2_chain_answers_as_the_whole_conversation(default_gateway: ServedGateway) -> None:
    real = openai.OpenAI(base_url=default_gateway.api_url, api_key="unused", max_retries=0)
    asked: dict[str, Any] = {"model": "smollm2-135m-instruct", "max_output_tokens": 12, "temperature": 0}
    one = real.responses.create(input="My name is Ada.", **asked)
    two = real.responses.create(input="I like old maps.", previous_response_id=one.id, **asked)
    three = real.responses.create(input="What is my name?", previous_response_id=two.id, **asked)
    whole = [
        *explicit(("My name is Ada.", one), ("I like old maps.", two)),
        {"role": "user", "content": "What is my name?"},
    ]
    stateless = real.responses.create(input=whole, store=False, **asked)  # type: ignore[arg-type]
    assert three.output_text and three.output_text == stateless.output_text  # greedy: the same prompt, the same answer
    assert three.usage is not None and stateless.usage is not None
    assert three.usage.input_tokens == stateless.usage.input_tokens
    assert real.responses.retrieve(three.id).output_text == three.output_text


def test_sqlite_outlives_the_gateway(tmp_path: Path) -> None:
    """Created, the gateway stopped and started again on the same data folder: the response
    is read back and continued, and the file is SQLite in WAL mode."""
    env = {"MIA_STORAGE_DATA_DIR": str(tmp_path / "data")}
    with serve(STUB_MODELS, tmp_path / "first", env=env) as gw:
        c = openai.OpenAI(base_url=gw.api_url, api_key="unused", max_retries=0)
        first = c.responses.create(model="stub-harmony", input="Remember this.")
    with serve(STUB_MODELS, tmp_path / "second", env=env) as gw:
        c = openai.OpenAI(base_url=gw.api_url, api_key="unused", max_retries=0)
        assert c.responses.retrieve(first.id).model_dump() == first.model_dump()
        second = c.responses.create(model="stub-harmony", input="And now?", previous_response_id=first.id)
        assert first.usage is not None and second.usage is not None
        assert second.status == "completed" and second.usage.input_tokens > first.usage.input_tokens
    with sqlite3.connect(tmp_path / "data" / "responses.sqlite3") as db:
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert {row[0] for row in db.execute("SELECT id FROM mia_responses")} == {first.id, second.id}


def _poll(check: Callable[[], bool], what: str, *, tries: int = 600, every: float = 0.05) -> None:
    """Waits for the gateway's evictor (which runs every 0.1 s here) to have done `what`."""
    for _ in range(tries):
        if check():
            return
        time.sleep(every)
    raise AssertionError(f"never {what}")


def _rows(db_path: Path) -> dict[str, int]:
    with sqlite3.connect(db_path) as db:
        return dict(db.execute("SELECT id, size FROM mia_responses").fetchall())


def test_retention_and_the_size_bound_evict(tmp_path: Path) -> None:
    """Past `retention_days` a response is unreadable at once and deleted by the next
    eviction; past `max_bytes` the oldest go first."""
    db_path = tmp_path / "data" / "responses.sqlite3"
    env = {"MIA_STORAGE_DATA_DIR": str(tmp_path / "data"), "MIA_STORAGE_EVICT_INTERVAL": "0.1"}
    retention = {**env, "MIA_STORAGE_RETENTION_DAYS": str(4 / 86400)}  # four seconds
    with serve(STUB_MODELS, tmp_path / "retention", env=retention) as gw:
        c = openai.OpenAI(base_url=gw.api_url, api_key="unused", max_retries=0)
        out = c.responses.create(model="stub-chat", input="Soon gone.")
        assert out.id in _rows(db_path)

        def expired() -> bool:
            return httpx.get(f"{gw.api_url}/responses/{out.id}", timeout=10).status_code == 404

        _poll(expired, "expired", tries=400, every=0.1)
        _poll(lambda: out.id not in _rows(db_path), "evicted")
        assert "evicted 1 stored responses" in gw.log()
    bounded = {**env, "MIA_STORAGE_MAX_BYTES": "8000"}
    with serve(STUB_MODELS, tmp_path / "size", env=bounded) as gw:
        c = openai.OpenAI(base_url=gw.api_url, api_key="unused", max_retries=0)
        ids = [c.responses.create(model="stub-chat", input=f"Number {n}.").id for n in range(12)]
        _poll(lambda: sum(_rows(db_path).values()) <= 8000, "within the bound")
        kept = _rows(db_path)
        assert ids[-1] in kept and ids[0] not in kept
        # the oldest went first: what is kept is the newest, in order
        assert [i for i in ids if i in kept] == ids[len(ids) - len(kept) :]
        with pytest.raises(openai.NotFoundError):
            c.responses.retrieve(ids[0])


def _settled(client: openai.OpenAI, response_id: str) -> Response:
    """The response once its run has ended (polled as a client polls a background response)."""
    for _ in range(2400):
        out = client.responses.retrieve(response_id)
        if out.status not in ("queued", "in_progress"):
            return out
        time.sleep(0.05)
    raise AssertionError(f"{response_id} still {out.status}")


def test_a_background_response_is_queued_then_stored_completed(client: openai.OpenAI) -> None:
    queued = client.responses.create(model="stub-harmony", input="Hello", background=True)
    assert queued.status == "queued" and queued.background is True and queued.output == []
    done = _settled(client, queued.id)
    assert done.status == "completed" and done.background is True
    assert [i.type for i in done.output] == ["reasoning", "message"] and done.usage is not None
    same = client.responses.create(model="stub-harmony", input="Hello")  # the stub is deterministic
    assert done.output_text == same.output_text
    # a finished one cannot be cancelled; one that was not in the background neither
    for rid in (done.id, same.id):
        with pytest.raises(openai.BadRequestError) as exc:
            client.responses.cancel(rid)
        assert exc.value.code == "response_not_cancellable"
    with pytest.raises(openai.NotFoundError):
        client.responses.cancel("resp_nothing")
    # a chain continues a background response as any other
    more = client.responses.create(model="stub-harmony", input="More?", previous_response_id=done.id)
    assert more.status == "completed"


def test_a_background_response_on_real_smollm2_is_cancelled(default_gateway: ServedGateway) -> None:
    """Cancelled while it decodes (a 512-token count takes seconds here): the run stops, the
    response is stored `cancelled`, and cancelling it again answers the same."""
    real = openai.OpenAI(base_url=default_gateway.api_url, api_key="unused", max_retries=0)
    queued = real.responses.create(
        model="smollm2-135m-instruct",
        input="Count from 1 to 1000, separated by commas.",
        max_output_tokens=512,
        temperature=0,
        background=True,
    )
    for _ in range(2400):
        if real.responses.retrieve(queued.id).status == "in_progress":
            break
        time.sleep(0.02)
    cancelled = real.responses.cancel(queued.id)
    assert cancelled.status == "cancelled" and cancelled.id == queued.id
    assert real.responses.retrieve(queued.id).status == "cancelled"
    assert real.responses.cancel(queued.id).status == "cancelled"
    lines = [line for line in default_gateway.log().splitlines() if "GenerationCancelled" in line]
    assert any('"reason":"cancelled"' in line for line in lines), lines[-3:]


def test_an_sqlite_store_that_cannot_be_opened_is_a_503_until_it_can(tmp_path: Path) -> None:
    """The data folder cannot be made (a file stands in its way): what needs the store is a
    503 `storage_unavailable` with Retry-After, the rest is served; once it can, it works."""
    blocker = tmp_path / "blocker"
    blocker.write_text("")
    with serve(STUB_MODELS, tmp_path / "gw", env={"MIA_STORAGE_DATA_DIR": str(blocker / "data")}) as gw:
        body = {"model": "stub-chat", "input": "Hi"}
        for r in (
            httpx.post(f"{gw.api_url}/responses", json=body, timeout=30),
            httpx.get(f"{gw.api_url}/responses/resp_1", timeout=30),
        ):
            assert r.status_code == 503 and r.json()["error"]["code"] == "storage_unavailable", r.text
            assert r.headers["retry-after"] == "1"
        assert httpx.post(f"{gw.api_url}/responses", json={**body, "store": False}, timeout=30).status_code == 200
        blocker.unlink()
        c = openai.OpenAI(base_url=gw.api_url, api_key="unused", max_retries=0)
        out = c.responses.create(model="stub-chat", input="Hi")
        assert c.responses.retrieve(out.id).id == out.id
        assert "Traceback" not in gw.log()


def test_a_harmony_tool_chain_round_trips_through_the_store(tmp_path: Path) -> None:
    """gpt-oss transcripts replayed (tests/data/harmony/): reasoning and a function call
    stored, then continued by the call's output alone, and the model's answer comes back
    (that the stored items make the same prompt as the conversation sent whole is
    `test_a_three_turn_chain_is_the_conversation_sent_whole`, on the Harmony stub)."""
    data = Path(__file__).resolve().parents[1] / "data" / "harmony"
    models = "".join(
        f'[[models]]\nid = "{name}"\nrole = "primary"\nformat = "harmony"\nprovider = "replay"\n'
        f'replay_file = "{data / (file + ".txt")}"\n\n'
        for name, file in (("call", "tool_call"), ("answer", "after_tool"))
    )
    weather: list[Any] = [
        {"type": "function", "name": "get_weather", "parameters": {"type": "object", "properties": {}}}
    ]
    with serve(models, tmp_path) as gw:
        c = openai.OpenAI(base_url=gw.api_url, api_key="unused", max_retries=0)
        first = c.responses.create(model="call", input="Weather in Zürich?", tools=weather)
        reasoning, call = first.output
        assert reasoning.type == "reasoning" and call.type == "function_call"
        assert json.loads(call.arguments) == {"location": "Zürich", "unit": "celsius"}
        second = c.responses.create(
            model="answer",
            tools=weather,
            previous_response_id=first.id,
            input=[{"type": "function_call_output", "call_id": call.call_id, "output": '{"celsius": 18}'}],
        )
        assert second.status == "completed" and second.output_text == "It is 18 °C in Zürich right now."
        [given] = c.responses.input_items.list(second.id).data
        assert given.type == "function_call_output" and given.call_id == call.call_id  # type: ignore[union-attr]
