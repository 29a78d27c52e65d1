"""Stored responses in a real PostgreSQL (started by the test, tests/support/postgres.py):
the backend's own checks, two gateway processes sharing it (created on one, continued on
the other), and the database stopped mid-test: 503 envelopes with Retry-After, then the
gateways recover by themselves once it is back."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import psycopg
import pytest

from compat.responses_store import PostgresStore
from tests.compat.test_responses_store import DAY, check_backend
from tests.support.configs import STUB_MODELS, smollm2
from tests.support.postgres import Postgres, postgres_server
from tests.support.served import ServedGateway, serve

pytestmark = pytest.mark.slow

CONFIG = STUB_MODELS + smollm2(threads=1, max_output_tokens=512)


@pytest.fixture(scope="module")
def pg() -> Iterator[Postgres]:
    with postgres_server() as server:
        yield server


@pytest.fixture(scope="module")
def pair(pg: Postgres, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServedGateway, ServedGateway]]:
    """Two gateways, one database (as two replicas behind a load balancer)."""
    env = {"MIA_STORAGE_URL": pg.url, "MIA_STORAGE_TIMEOUT": "2"}
    with (
        serve(CONFIG, tmp_path_factory.mktemp("replica-a"), env=env) as a,
        serve(CONFIG, tmp_path_factory.mktemp("replica-b"), env=env) as b,
    ):
        yield a, b


def sdk(gw: ServedGateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.api_url, api_key="unused", max_retries=0)


async def test_the_postgres_backend(pg: Postgres) -> None:
    # a database of its own: the replicas' responses must not count towards its size bound
    async with await psycopg.AsyncConnection.connect(pg.url, autocommit=True) as conn:
        await conn.execute("CREATE DATABASE backend")
    store = PostgresStore(
        pg.url.replace("/postgres", "/backend"), retention=DAY, max_bytes=40, timeout=5.0, pool_size=2
    )
    await store.open()
    try:
        await check_backend(store)
    finally:
        await store.close()


def test_created_on_one_replica_continued_on_the_other(pair: tuple[ServedGateway, ServedGateway]) -> None:
    a, b = (sdk(gw) for gw in pair)
    first = a.responses.create(model="stub-harmony", input="My name is Ada.")
    assert b.responses.retrieve(first.id).model_dump() == first.model_dump()
    second = b.responses.create(model="stub-harmony", input="I like maps.", previous_response_id=first.id)
    third = a.responses.create(model="stub-harmony", input="What do I like?", previous_response_id=second.id)
    assert third.status == "completed" and third.previous_response_id == second.id
    assert first.usage and second.usage and third.usage
    assert first.usage.input_tokens < second.usage.input_tokens < third.usage.input_tokens
    [item] = b.responses.input_items.list(third.id).data
    assert item.type == "message" and item.content[0].text == "What do I like?"  # type: ignore[union-attr]
    b.responses.delete(second.id)
    with pytest.raises(openai.NotFoundError):
        a.responses.retrieve(second.id)
    # the chain is broken where its middle went: continuing past it is the 404 naming the id asked
    with pytest.raises(openai.NotFoundError) as exc:
        a.responses.create(model="stub-harmony", input="More?", previous_response_id=third.id)
    assert exc.value.param == "previous_response_id"


def test_a_background_response_runs_on_one_replica_and_is_cancelled_on_the_other(
    pair: tuple[ServedGateway, ServedGateway],
) -> None:
    """B stores it `cancelled`; A's run reads that within a second, stops, and leaves it so."""
    a, b = pair
    queued = sdk(a).responses.create(
        model="smollm2-135m-instruct",
        input="Count from 1 to 1000, separated by commas.",
        max_output_tokens=512,
        temperature=0,
        background=True,
    )
    for _ in range(2400):
        if sdk(b).responses.retrieve(queued.id).status == "in_progress":
            break
        time.sleep(0.02)
    assert sdk(b).responses.cancel(queued.id).status == "cancelled"
    for _ in range(600):
        if any("GenerationCancelled" in line and '"reason":"cancelled"' in line for line in a.log().splitlines()):
            break
        time.sleep(0.05)
    else:
        raise AssertionError("replica A never stopped the run")
    assert sdk(a).responses.retrieve(queued.id).status == "cancelled"


def _assert_unavailable(r: httpx.Response) -> None:
    assert r.status_code == 503, r.text
    assert r.json()["error"]["code"] == "storage_unavailable" and set(r.json()["error"]) == {
        "message",
        "type",
        "param",
        "code",
    }
    assert int(r.headers["retry-after"]) >= 1


def test_the_database_stopped_mid_test(pg: Postgres, pair: tuple[ServedGateway, ServedGateway]) -> None:
    a, b = pair
    kept = sdk(a).responses.create(model="stub-chat", input="Before the outage.")
    pg.stop()
    try:
        for gw in (a, b):
            _assert_unavailable(httpx.get(f"{gw.api_url}/responses/{kept.id}", timeout=30))
            _assert_unavailable(httpx.delete(f"{gw.api_url}/responses/{kept.id}", timeout=30))
            _assert_unavailable(httpx.get(f"{gw.api_url}/responses/{kept.id}/input_items", timeout=30))
            body = {"model": "stub-chat", "input": "During it."}
            _assert_unavailable(httpx.post(f"{gw.api_url}/responses", json=body, timeout=30))
            _assert_unavailable(
                httpx.post(f"{gw.api_url}/responses", json={**body, "previous_response_id": kept.id}, timeout=30)
            )
            # a stream that cannot be stored ends in the error, never in `response.completed`
            with httpx.stream("POST", f"{gw.api_url}/responses", json={**body, "stream": True}, timeout=30) as r:
                text = r.read().decode()
            assert "event: error" in text and "storage_unavailable" in text and "response.completed" not in text
            # what needs no store still works
            r = httpx.post(f"{gw.api_url}/responses", json={**body, "store": False}, timeout=30)
            assert r.status_code == 200 and r.json()["store"] is False
    finally:
        pg.start()
    for gw in (a, b):
        # as any client does with a 503: again after its Retry-After (the SDK reads retry-after-ms)
        client = openai.OpenAI(base_url=gw.api_url, api_key="unused", max_retries=2)
        assert client.responses.retrieve(kept.id).output_text == kept.output_text
        after = client.responses.create(model="stub-chat", input="After it.", previous_response_id=kept.id)
        assert after.status == "completed"
    for gw in (a, b):
        assert "Traceback" not in gw.log()
        scrape = httpx.get(f"{gw.base_url}/metrics", timeout=10).text
        errors = [line for line in scrape.splitlines() if line.startswith("mia_storage_errors_total{")]
        assert any('backend="postgresql"' in line and float(line.split()[-1]) > 0 for line in errors), errors


def test_a_gateway_starts_while_its_database_is_down(tmp_path: Path, pg: Postgres) -> None:
    """Down at start: the gateway serves what needs no store, 503s the rest, and stores once it is back."""
    pg.stop()
    try:
        with serve(STUB_MODELS, tmp_path, env={"MIA_STORAGE_URL": pg.url, "MIA_STORAGE_TIMEOUT": "1"}) as gw:
            r = httpx.post(f"{gw.api_url}/responses", json={"model": "stub-chat", "input": "x"}, timeout=30)
            _assert_unavailable(r)
            pg.start()
            client = openai.OpenAI(base_url=gw.api_url, api_key="unused", max_retries=2)  # honours Retry-After
            out = client.responses.create(model="stub-chat", input="x")
            assert client.responses.retrieve(out.id).id == out.id
    finally:
        if not (pg.data / "postmaster.pid").exists():
            pg.start()
