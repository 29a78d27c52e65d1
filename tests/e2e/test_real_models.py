"""Real inference through the served gateway: the embedded default's real models,
the stub fallback with its reason, and heavy/lightweight switching (ADR-0015)."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import httpx
import llama_cpp
import numpy as np
import openai
import pytest

from tests.support.bert_reference import minilm
from tests.support.configs import SMOLLM2_SHA256, gemma, smollm2
from tests.support.logs import events
from tests.support.served import ServedGateway, serve

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def client(default_gateway: ServedGateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=default_gateway.api_url, api_key="unused", max_retries=0)


def test_default_serves_two_real_models_and_an_honest_stub(client: openai.OpenAI) -> None:
    cards = {m.id: (m.model_extra or {}) for m in client.models.list()}
    assert cards["smollm2-135m-instruct"]["stub"] is False
    assert cards["gemma-3-270m"]["stub"] is False
    assert cards["all-minilm-l6-v2"]["stub"] is False and cards["all-minilm-l6-v2"]["pipeline"] == "embedding"
    assert cards["gpt-oss-20b"]["stub"] is True
    assert "missing_file" in cards["gpt-oss-20b"]["stub_reason"]


def test_the_shipped_embedding_model_through_the_openai_sdk(client: openai.OpenAI) -> None:
    texts = ["How do I reset my password?", "What are the steps to change my login password?", "The stock market fell."]
    out = client.embeddings.create(model="all-minilm-l6-v2", input=texts)  # the SDK asks for base64, and decodes it
    vectors = [np.array(d.embedding) for d in out.data]
    assert out.model == "all-minilm-l6-v2" and [d.index for d in out.data] == [0, 1, 2]
    reference = minilm()
    assert out.usage.prompt_tokens == out.usage.total_tokens == sum(len(reference.tokens(t)) for t in texts)
    for text, vector in zip(texts, vectors, strict=True):
        assert vector.shape == (384,) and abs(float(np.linalg.norm(vector)) - 1.0) < 1e-5
        assert float(vector @ reference.embed(text)) > 0.99999
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2] + 0.3
    # the same inputs (a vector's last bits depend on what shares its batch), by the alias, as numbers
    floats = client.embeddings.create(model="all-MiniLM-L6-v2", input=texts, encoding_format="float")
    for number, vector in zip(floats.data, vectors, strict=True):
        assert float(np.abs(np.array(number.embedding) - vector).max()) < 1e-7
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model="all-minilm-l6-v2", messages=[{"role": "user", "content": "Hi"}])
    assert err.value.code == "unsupported_model"


def test_a_loaded_model_card_says_where_it_runs(client: openai.OpenAI) -> None:
    client.chat.completions.create(
        model="smollm2-135m-instruct", messages=[{"role": "user", "content": "Hi"}], max_tokens=1
    )
    cards = {m.id: (m.model_extra or {}) for m in client.models.list()}
    gpu = bool(llama_cpp.llama_supports_gpu_offload())  # the same build the served gateway loads
    where = {"backend": "gpu" if gpu else "cpu", "layers": 30, "gpu_layers": 30 if gpu else 0}
    assert cards["smollm2-135m-instruct"]["placement"] == where
    assert cards["gpt-oss-20b"]["placement"] is None  # a stub holds no weights


@pytest.mark.parametrize("model", ["smollm2-135m-instruct", "gemma-3-270m"])
def test_real_tokens_stream_and_match_usage(client: openai.OpenAI, model: str) -> None:
    stream = client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": "Name three colors of the rainbow."}],
        max_tokens=24,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    pieces = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    usage = chunks[-1].usage
    assert usage is not None and usage.prompt_tokens > 5
    # one streamed piece per decoded token (ASCII output: no token is held back for UTF-8)
    assert len(pieces) == usage.completion_tokens > 0
    if model.startswith("smollm2"):
        text = "".join(pieces).lower()
        assert any(color in text for color in ("red", "orange", "yellow", "green", "blue", "violet"))


def test_a_shared_prompt_start_is_reported_as_cached_tokens(client: openai.OpenAI) -> None:
    system = "You are a terse assistant for a museum of old maps. " * 8
    usages = []
    for question in ("Which map is oldest?", "Which map is largest?"):
        out = client.chat.completions.create(
            model="smollm2-135m-instruct",
            messages=[{"role": "system", "content": system}, {"role": "user", "content": question}],
            max_tokens=4,
            temperature=0,
        )
        assert out.usage is not None and out.usage.prompt_tokens_details is not None
        usages.append(out.usage)
    # the second reads the system turn from the first one's cells: it is counted, not hidden
    cached = usages[1].prompt_tokens_details.cached_tokens  # type: ignore[union-attr]
    assert cached is not None and usages[1].prompt_tokens // 2 < cached < usages[1].prompt_tokens


def test_a_conversation_whose_slot_was_taken_comes_back_as_cached_tokens(client: openai.OpenAI) -> None:
    """More conversations than the embedded SmolLM2's four slots: the first one's cells
    are kept in host memory when its slot is taken, so asked again all of its prompt but
    the last two tokens is cached (usage says so), and the answer is the same."""

    def ask(topic: str) -> tuple[str, int, int]:
        out = client.chat.completions.create(
            model="smollm2-135m-instruct",
            messages=[{"role": "user", "content": f"In three short points, explain how {topic} shape a coastline."}],
            max_tokens=24,
            temperature=0,
        )
        usage = out.usage
        assert usage is not None and usage.prompt_tokens_details is not None
        return out.choices[0].message.content or "", usage.prompt_tokens, usage.prompt_tokens_details.cached_tokens or 0

    topics = ["waves", "tides", "storms", "rivers", "glaciers", "winds"]
    first, prompt_tokens, _ = ask(topics[0])
    for topic in topics[1:]:
        ask(topic)
    again, _, cached = ask(topics[0])
    assert cached == prompt_tokens - 2 and again == first


def test_greedy_output_is_repeatable(client: openai.OpenAI) -> None:
    def ask() -> str:
        out = client.chat.completions.create(
            model="smollm2-135m-instruct",
            messages=[{"role": "user", "content": "What is the capital of France?"}],
            max_tokens=16,
            temperature=0,
        )
        return out.choices[0].message.content or ""

    assert ask() == ask()


def test_wrong_checksum_and_missing_file_serve_stub(tmp_path: Path) -> None:
    bad_sha = "0" * 64
    config = (
        smollm2("bad-checksum", sha256=bad_sha)
        + smollm2("missing-file", path=str(tmp_path / "nope.gguf"))
        + smollm2("good", sha256=SMOLLM2_SHA256)
        + smollm2("missing-later", path=str(tmp_path / "later.gguf"), preload=False)
        + smollm2("good-later", sha256=SMOLLM2_SHA256, preload=False)
    )
    with serve(config, tmp_path / "gw") as gw:
        cards = {m["id"]: m for m in httpx.get(f"{gw.api_url}/models").json()["data"]}
        assert cards["bad-checksum"]["stub"] is True and "checksum_mismatch" in cards["bad-checksum"]["stub_reason"]
        assert cards["missing-file"]["stub"] is True and "missing_file" in cards["missing-file"]["stub_reason"]
        assert cards["good"]["stub"] is False
        # never loaded yet: a missing file already shows (without loading), a present one is real
        later = cards["missing-later"]
        assert (later["stub"], later["status"]) == (True, "unloaded")
        assert later["stub_reason"] == f"missing_file: {tmp_path / 'later.gguf'} does not exist"
        assert (cards["good-later"]["stub"], cards["good-later"]["status"]) == (False, "unloaded")
        client = openai.OpenAI(base_url=gw.api_url, api_key="x", max_retries=0)
        out = client.chat.completions.create(model="bad-checksum", messages=[{"role": "user", "content": "hi"}])
        assert out.choices[0].message.content
        log = gw.log()
    failed = {e["model_id"]: e["reason"] for e in events(log, "ModelLoadFailed")}
    assert failed == {"bad-checksum": "checksum_mismatch", "missing-file": "missing_file"}
    loaded = [e for e in events(log, "ModelLoaded") if e["model_id"] in failed]
    assert all(e["metadata"]["stub"] is True for e in loaded)
    completed = [e for e in events(log, "GenerationCompleted") if e["model_id"] == "bad-checksum"]
    assert completed and completed[0]["stop_reason"] == "stub"


def test_switching_unloads_with_reasons_in_order(tmp_path: Path) -> None:
    config = (
        smollm2("heavy-a", heavy=True) + gemma("heavy-b", heavy=True, preload=False) + smollm2("light-c", preload=False)
    )
    with serve(config, tmp_path / "gw") as gw:
        client = openai.OpenAI(base_url=gw.api_url, api_key="x", max_retries=0)
        for model in ("heavy-b", "light-c", "heavy-a"):
            client.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}], max_tokens=2)
        status = {m["id"]: m["status"] for m in httpx.get(f"{gw.api_url}/models").json()["data"]}
        r = httpx.post(f"{gw.base_url}/admin/unload/light-c")
        assert r.status_code == 200 and r.json()["unloaded"] is True
        time.sleep(0.05)
        log = gw.log()
    seq = [
        (e["event"], e["model_id"], e.get("reason"))
        for e in events(log, "ModelLoaded", "ModelUnloaded")
        if e.get("reason") != "shutdown"
    ]
    assert seq == [
        ("ModelLoaded", "heavy-a", None),
        ("ModelUnloaded", "heavy-a", "switch_heavy"),
        ("ModelLoaded", "heavy-b", None),
        ("ModelUnloaded", "heavy-b", "switch_heavy_to_lightweight"),
        ("ModelLoaded", "light-c", None),
        ("ModelLoaded", "heavy-a", None),
        ("ModelUnloaded", "light-c", "explicit_unload"),
    ]
    assert status == {"heavy-a": "loaded", "heavy-b": "unloaded", "light-c": "loaded"}
    # ModelLoaded precedes every generation event of its model
    loaded_at: dict[str, int] = {}
    for i, e in enumerate(events(log)):
        if e["event"] == "ModelLoaded":
            loaded_at.setdefault(e["model_id"], i)
        if e["event"].startswith("Generation"):
            assert loaded_at.get(e["model_id"], 10**9) < i


def _waiting(gw: ServedGateway, model: str) -> float:
    for line in httpx.get(f"{gw.base_url}/metrics").text.splitlines():
        if line.startswith(f'mia_num_requests_waiting{{model="{model}"}}'):
            return float(line.split()[-1])
    return 0.0


def test_a_disconnect_frees_the_model_for_the_next_request_at_once(tmp_path: Path) -> None:
    # Gemma 270M is a base model: it rambles on instead of stopping, so the stream is long
    config = "[server]\nqueue_size = 4\n" + gemma("solo", slots=1, max_output_tokens=2000)
    second_out: list[str] = []
    with serve(config, tmp_path / "gw") as gw, httpx.Client(base_url=gw.api_url, timeout=60) as http:
        body = {"model": "solo", "max_tokens": 2000, "temperature": 0.8}
        story = {**body, "stream": True, "messages": [{"role": "user", "content": "Tell a long story."}]}
        with http.stream("POST", "/chat/completions", json=story) as first:
            lines = first.iter_lines()  # not a for-break: closing this iterator closes the connection
            while not ('"content":"' in (line := next(lines)) and '"content":""' not in line):
                pass  # until decoding has begun
            hello = {**body, "max_tokens": 8, "messages": [{"role": "user", "content": "Hi"}]}
            url = f"{gw.api_url}/chat/completions"
            t = threading.Thread(target=lambda: second_out.append(httpx.post(url, json=hello, timeout=60).text))
            t.start()  # the next request queues behind the one decoding
            deadline = time.monotonic() + 10
            while _waiting(gw, "solo") < 1:
                assert time.monotonic() < deadline, "the second request never queued"
                time.sleep(0.01)
        # leaving the `with` closed the first stream mid-way: its client is gone
        t.join(60)
        log = gw.log()
    assert second_out and '"finish_reason"' in second_out[0]
    cancelled = events(log, "GenerationCancelled")
    assert [e["reason"] for e in cancelled] == ["client_disconnect"]
    [completed] = events(log, "GenerationCompleted")
    started = next(e for e in events(log, "GenerationStarted") if e["request_id"] == completed["request_id"])
    [first_started] = [e for e in events(log, "GenerationStarted") if e["request_id"] == cancelled[0]["request_id"]]
    # The cancel is emitted once the decode thread has stopped and the model is free: the
    # queued request starts after it (not after the story's 2000 tokens), and the two start
    # in order with nothing of the first generation in between.
    order = [
        (e["event"], e["request_id"])
        for e in events(log, "GenerationStarted", "GenerationCancelled", "GenerationCompleted")
    ]
    first_rid, second_rid = cancelled[0]["request_id"], completed["request_id"]
    assert order == [
        ("GenerationStarted", first_rid),
        ("GenerationCancelled", first_rid),
        ("GenerationStarted", second_rid),
        ("GenerationCompleted", second_rid),
    ], order
    assert 0 < cancelled[0]["completion_tokens"] < 2000
    # "at once", measured against this run: the queued request waited less after the cancel
    # than the story had been decoding before it (decoding was the only thing in its way)
    assert started["ts"] - cancelled[0]["ts"] < cancelled[0]["ts"] - first_started["ts"]
    assert completed["result_summary"]["usage"]["completion_tokens"] > 0


PERSON_SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 20},
        "age": {"type": "integer"},
        "colors": {"type": "array", "items": {"type": "string", "enum": ["red", "green", "blue"]}, "maxItems": 3},
    },
    "required": ["name", "age", "colors"],
    "additionalProperties": False,
}


def test_json_schema_output_validates(client: openai.OpenAI) -> None:
    import jsonschema

    out = client.chat.completions.create(
        model="smollm2-135m-instruct",
        messages=[{"role": "user", "content": "Describe a person as JSON."}],
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "person", "schema": PERSON_SCHEMA, "strict": True},
        },
        temperature=0,
        max_tokens=120,
    )
    assert out.choices[0].finish_reason == "stop"
    jsonschema.validate(json.loads(out.choices[0].message.content or ""), PERSON_SCHEMA)


def test_a_schema_that_is_not_json_schema_is_a_400_with_a_code(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(
            model="smollm2-135m-instruct",
            messages=[{"role": "user", "content": "x"}],
            response_format={
                "type": "json_schema",
                "json_schema": {"name": "n", "schema": {"type": "object", "required": "a"}},
            },
        )
    body = info.value.body
    assert isinstance(body, dict) and body["code"] == "invalid_json_schema"
    assert body["param"] == "response_format.json_schema.schema"


@pytest.mark.parametrize("stream", [False, True])
def test_logprobs_have_openai_shape(client: openai.OpenAI, stream: bool) -> None:
    kw = {
        "model": "smollm2-135m-instruct",
        "messages": [{"role": "user", "content": "Say hello."}],
        "logprobs": True,
        "top_logprobs": 3,
        "max_tokens": 8,
        "temperature": 0,
    }
    if stream:
        entries = []
        text = ""
        tokens = -1
        for chunk in client.chat.completions.create(stream=True, stream_options={"include_usage": True}, **kw):  # type: ignore[call-overload]
            if chunk.choices and chunk.choices[0].logprobs and chunk.choices[0].logprobs.content:
                entries += chunk.choices[0].logprobs.content
            if chunk.choices:
                text += chunk.choices[0].delta.content or ""
            if chunk.usage is not None:
                tokens = chunk.usage.completion_tokens
    else:
        out = client.chat.completions.create(**kw)  # type: ignore[call-overload]
        assert out.choices[0].logprobs is not None and out.choices[0].logprobs.content is not None
        entries = out.choices[0].logprobs.content
        text = out.choices[0].message.content or ""
        assert out.usage is not None
        tokens = out.usage.completion_tokens
    # one entry per generated token, and together they spell the answer
    assert text and "".join(e.token for e in entries) == text
    assert len(entries) == tokens > 0, (len(entries), tokens)
    for e in entries:
        assert e.logprob <= 0 and len(e.top_logprobs) == 3
        assert e.bytes == list(e.token.encode())
        assert e.top_logprobs[0].logprob >= e.top_logprobs[-1].logprob


def test_a_keyword_the_grammar_cannot_enforce_is_validated_and_reported(
    client: openai.OpenAI, default_gateway: ServedGateway
) -> None:
    schema = {
        "type": "object",
        "properties": {"n": {"type": "integer", "minimum": 0, "maximum": 99, "multipleOf": 5}},
        "required": ["n"],
        "additionalProperties": False,
    }
    out = client.chat.completions.create(
        model="smollm2-135m-instruct",
        messages=[{"role": "user", "content": "Pick a number as JSON."}],
        response_format={"type": "json_schema", "json_schema": {"name": "n", "schema": schema}},
        temperature=0,
        max_tokens=40,
    )
    value = json.loads(out.choices[0].message.content or "")
    outcome = "valid" if value["n"] % 5 == 0 else "invalid"
    # the log line says what the check found and which keyword only it held the output to
    lines = [json.loads(line) for line in default_gateway.log().splitlines() if '"StructuredOutputChecked"' in line]
    assert lines[-1]["outcome"] == outcome and lines[-1]["unenforced"] == ["multipleOf"]
    metrics = httpx.get(f"{default_gateway.base_url}/metrics").text
    assert 'mia_structured_output_unenforced_total{keyword="multipleOf",model="smollm2-135m-instruct"}' in metrics
