"""API keys against real `mia-gateway serve` processes: `Authorization: Bearer` with a key
from `[server] api_keys` or `api_keys_file` passes, anything else is OpenAI's 401
(`code: invalid_api_key`); `/health` and `/ready` stay open, `/metrics` too unless
`metrics_require_key`; no key ever reaches the log or a response."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.support.configs import STUB_MODELS
from tests.support.logs import events
from tests.support.served import ServedGateway, serve

pytestmark = pytest.mark.slow

INLINE_KEY = "sk-inline-9f3b2c7d1e"
FILE_KEY = "sk-file-4a8e6d0c2b"
ENV_KEY = "sk-env-7c1d9e3f5a"
WRONG_KEY = "sk-wrong-0b1c2d3e4f"
ALL_SECRETS = (INLINE_KEY, FILE_KEY, ENV_KEY, WRONG_KEY)
CHAT = {"model": "stub-chat", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 3}


def _config(server_lines: str) -> str:
    return STUB_MODELS.replace("[server]\n", f"[server]\n{server_lines}\n", 1)


class Recorder:
    """Every response body and header seen, to prove no key is ever echoed."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    def add(self, r: httpx.Response) -> httpx.Response:
        self.seen.append(r.text)
        self.seen.append(json.dumps(dict(r.headers)))
        return r


@pytest.fixture(scope="module")
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture(scope="module")
def keyed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedGateway]:
    """Inline keys plus a keys file; metrics open (the default). Debug logging, the chattiest."""
    tmp = tmp_path_factory.mktemp("auth-keyed")
    keys_file = tmp / "keys.txt"
    keys_file.write_text(f"# one key per line\n\n  {FILE_KEY}  \n")
    cfg = _config(f'api_keys = ["{INLINE_KEY}"]\napi_keys_file = "{keys_file}"')
    with serve(cfg, tmp, extra_args=["--log-level", "debug"]) as gw:
        yield gw


@pytest.fixture(scope="module")
def metrics_locked(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedGateway]:
    """A key from the environment (`MIA_API_KEYS`) and `metrics_require_key = true`."""
    tmp = tmp_path_factory.mktemp("auth-metrics")
    with serve(_config("metrics_require_key = true"), tmp, env={"MIA_API_KEYS": f"{ENV_KEY}, "}) as gw:
        yield gw


def _get(recorder: Recorder, gw: ServedGateway, path: str, key: str | None = None, **headers: str) -> httpx.Response:
    if key is not None:
        headers["authorization"] = f"Bearer {key}"
    return recorder.add(httpx.get(f"{gw.base_url}{path}", headers=headers, timeout=10))


def _post(recorder: Recorder, gw: ServedGateway, key: str | None, body: Any = CHAT) -> httpx.Response:
    headers = {"content-type": "application/json"}
    if key is not None:
        headers["authorization"] = f"Bearer {key}"
    return recorder.add(
        httpx.post(f"{gw.api_url}/chat/completions", content=json.dumps(body), headers=headers, timeout=10)
    )


def assert_401(r: httpx.Response) -> None:
    assert r.status_code == 401, r.text
    assert r.headers["content-type"].startswith("application/json")
    assert r.headers.get("www-authenticate", "").lower().startswith("bearer")
    assert r.headers.get("x-request-id")
    body = r.json()
    assert set(body) == {"error"}
    err = body["error"]
    assert set(err) == {"message", "type", "param", "code"}
    assert err["code"] == "invalid_api_key"
    assert err["type"] == "invalid_request_error"
    assert err["param"] is None


# --- keys from settings and from a file --------------------------------------------------


@pytest.mark.parametrize("key", [INLINE_KEY, FILE_KEY])
def test_a_right_key_passes(keyed: ServedGateway, recorder: Recorder, key: str) -> None:
    r = _post(recorder, keyed, key)
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["message"]["content"]
    assert _get(recorder, keyed, "/v1/models", key).status_code == 200


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "",
        "Bearer",
        f"Bearer {WRONG_KEY}",
        f"Bearer {INLINE_KEY}x",
        f"Bearer {INLINE_KEY[:-1]}",
        f"Basic {INLINE_KEY}",
        INLINE_KEY,
        f"Bearer {INLINE_KEY.upper()}",
        "# one key per line",
        "Bearer # one key per line",
    ],
)
def test_a_wrong_or_missing_key_is_401(keyed: ServedGateway, recorder: Recorder, authorization: str | None) -> None:
    headers = {"content-type": "application/json"}
    if authorization is not None:
        headers["authorization"] = authorization
    r = recorder.add(
        httpx.post(f"{keyed.api_url}/chat/completions", content=json.dumps(CHAT), headers=headers, timeout=10)
    )
    assert_401(r)


def test_the_scheme_is_case_insensitive_and_spaces_tolerated(keyed: ServedGateway, recorder: Recorder) -> None:
    for value in (f"bearer {INLINE_KEY}", f"BEARER {FILE_KEY}", f"Bearer   {INLINE_KEY}"):
        r = recorder.add(httpx.get(f"{keyed.base_url}/v1/models", headers={"authorization": value}, timeout=10))
        assert r.status_code == 200, (value, r.text)


def test_non_ascii_and_oversized_credentials_are_401(keyed: ServedGateway, recorder: Recorder) -> None:
    for raw in ("Bearer ключ".encode(), b"Bearer " + b"k" * 6000, b"Bearer\t" + INLINE_KEY.encode()):
        r = recorder.add(httpx.get(f"{keyed.base_url}/v1/models", headers=[(b"authorization", raw)], timeout=10))
        assert_401(r)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/models"),
        ("GET", "/v1/models/stub-chat"),
        ("POST", "/admin/unload/stub-chat"),
        ("GET", "/openapi.json"),
        ("GET", "/no-such-route"),
        ("POST", "/v1/chat/completions"),
    ],
)
def test_every_other_route_needs_the_key(keyed: ServedGateway, recorder: Recorder, method: str, path: str) -> None:
    # unknown routes too: without a key nobody learns which routes exist
    r = recorder.add(httpx.request(method, f"{keyed.base_url}{path}", timeout=10))
    assert_401(r)


def _status(recorder: Recorder, gw: ServedGateway, model: str) -> str:
    r = _get(recorder, gw, f"/v1/models/{model}", INLINE_KEY)
    assert r.status_code == 200, r.text
    status: str = r.json()["status"]
    return status


def _unloads(gw: ServedGateway, model: str) -> list[str]:
    return [e["reason"] for e in events(gw.log(), "ModelUnloaded") if e["model_id"] == model]


def test_the_admin_unload_route_needs_the_key_and_then_unloads(keyed: ServedGateway, recorder: Recorder) -> None:
    assert _post(recorder, keyed, INLINE_KEY).status_code == 200  # stub-chat is in use, so loaded
    assert _status(recorder, keyed, "stub-chat") == "loaded"
    before = _unloads(keyed, "stub-chat")
    url = f"{keyed.base_url}/admin/unload/stub-chat"
    assert_401(recorder.add(httpx.post(url, timeout=10)))
    assert_401(recorder.add(httpx.post(url, headers={"authorization": f"Bearer {WRONG_KEY}"}, timeout=10)))
    # refused: nothing was unloaded
    assert _status(recorder, keyed, "stub-chat") == "loaded"
    assert _unloads(keyed, "stub-chat") == before
    r = recorder.add(httpx.post(url, headers={"authorization": f"Bearer {FILE_KEY}"}, timeout=10))
    assert r.status_code == 200, r.text
    assert r.json() == {"id": "stub-chat", "unloaded": True, "status": "unloaded"}
    assert _status(recorder, keyed, "stub-chat") == "unloaded"
    assert _unloads(keyed, "stub-chat") == [*before, "explicit_unload"]
    # it loads again on its next use
    assert _post(recorder, keyed, FILE_KEY).status_code == 200
    assert _status(recorder, keyed, "stub-chat") == "loaded"


@pytest.mark.parametrize("path", ["/health", "/ready"])
def test_health_and_ready_are_open(keyed: ServedGateway, recorder: Recorder, path: str) -> None:
    assert _get(recorder, keyed, path).status_code == 200
    assert _get(recorder, keyed, path, WRONG_KEY).status_code == 200


def test_metrics_are_open_by_default(keyed: ServedGateway, recorder: Recorder) -> None:
    r = _get(recorder, keyed, "/metrics")
    assert r.status_code == 200
    assert "mia_requests_total" in r.text


def test_the_openai_sdk_with_the_right_key(keyed: ServedGateway) -> None:
    client = openai.OpenAI(base_url=keyed.api_url, api_key=FILE_KEY, max_retries=0)
    assert {m.id for m in client.models.list()} == {"stub-chat", "stub-harmony", "stub-embed"}
    out = client.chat.completions.create(model="stub-chat", messages=[{"role": "user", "content": "hi"}], max_tokens=4)
    assert out.choices[0].message.content
    stream = client.chat.completions.create(
        model="stub-harmony", messages=[{"role": "user", "content": "hi"}], stream=True
    )
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices)


def test_the_openai_sdk_with_a_wrong_key(keyed: ServedGateway) -> None:
    client = openai.OpenAI(base_url=keyed.api_url, api_key=WRONG_KEY, max_retries=0)
    with pytest.raises(openai.AuthenticationError) as info:
        client.chat.completions.create(model="stub-chat", messages=[{"role": "user", "content": "hi"}])
    body = info.value.body
    assert isinstance(body, dict) and body["code"] == "invalid_api_key"
    assert WRONG_KEY not in str(info.value)


# --- keys from the environment; metrics protected ----------------------------------------


def test_an_environment_key_passes(metrics_locked: ServedGateway, recorder: Recorder) -> None:
    assert _post(recorder, metrics_locked, ENV_KEY).status_code == 200
    assert_401(_post(recorder, metrics_locked, INLINE_KEY))


def test_metrics_protected_when_asked(metrics_locked: ServedGateway, recorder: Recorder) -> None:
    assert_401(_get(recorder, metrics_locked, "/metrics"))
    assert_401(_get(recorder, metrics_locked, "/metrics", WRONG_KEY))
    r = _get(recorder, metrics_locked, "/metrics", ENV_KEY)
    assert r.status_code == 200 and "mia_requests_total" in r.text
    # the refusals were counted, under a bounded endpoint label
    assert 'mia_requests_total{endpoint="/metrics",status="401"}' in r.text
    assert _get(recorder, metrics_locked, "/health").status_code == 200
    assert _get(recorder, metrics_locked, "/ready").status_code == 200


# --- no key anywhere ---------------------------------------------------------------------


def test_no_key_in_any_response_or_log_line(
    keyed: ServedGateway, metrics_locked: ServedGateway, recorder: Recorder
) -> None:
    # runs last in this module: every response above was recorded
    assert len(recorder.seen) > 40
    for text in recorder.seen:
        for secret in ALL_SECRETS:
            assert secret not in text
    for gw in (keyed, metrics_locked):
        log = gw.log()
        assert "RequestFinished" in log  # the log is being written
        for secret in ALL_SECRETS:
            assert secret not in log, f"a key leaked into {gw.log_path}"


# --- a key file that yields no key must not silently open the gateway --------------------


@pytest.mark.parametrize("content", ["", "# only a comment\n\n   \n"])
def test_an_empty_keys_file_refuses_to_start(tmp_path: Path, content: str) -> None:
    keys_file = tmp_path / "keys.txt"
    keys_file.write_text(content)
    with pytest.raises(RuntimeError) as info, serve(_config(f'api_keys_file = "{keys_file}"'), tmp_path):
        pass
    message = str(info.value)
    assert "exited with 2" in message
    assert "api_keys_file" in message and "Traceback" not in message


def test_a_missing_keys_file_refuses_to_start(tmp_path: Path) -> None:
    missing = tmp_path / "nope.txt"
    with pytest.raises(RuntimeError) as info, serve(_config(f'api_keys_file = "{missing}"'), tmp_path):
        pass
    message = str(info.value)
    assert "exited with 2" in message
    assert "api_keys_file" in message and str(missing) in message and "Traceback" not in message
