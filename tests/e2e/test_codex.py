"""Codex CLI (`@openai/codex`, installed by `scripts/install.sh --test`) against a served
gateway, as a user sets it up: a custom model provider with `wire_api = "responses"` in a
temporary CODEX_HOME, `codex exec`, its default toolset. A recording proxy between them keeps
what Codex really sends. Without the `codex` binary the tests fail rather than skip."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.recording_proxy import RecordingProxy, recording_proxy
from tests.support.responses import check_stream, events
from tests.support.served import ServedGateway, serve

pytestmark = pytest.mark.slow

DATA = Path(__file__).resolve().parents[1] / "data"
CAPTURED = DATA / "codex" / "exec-request-0.171.0.json"
"""The first request of `codex exec` 0.171.0 with a custom provider, as it came off the wire."""
CODEX_VERSION = "0.171.0"


def _config() -> str:
    harmony = DATA / "harmony"
    return f"""
[[models]]
id = "codex-stub"
role = "primary"
format = "harmony"
provider = "stub"
context_length = 65536

[[models]]
id = "codex-agent"
role = "primary"
format = "harmony"
provider = "replay"
context_length = 65536
replay_file = "{harmony / "codex_call.txt"}"
replay_after_tools = ["{harmony / "codex_answer.txt"}"]

# a model id Codex has in its catalogue: it then sends apply_patch as a `custom` tool
[[models]]
id = "gpt-5.5"
role = "primary"
format = "harmony"
provider = "replay"
context_length = 65536
replay_file = "{harmony / "codex_patch.txt"}"
replay_after_tools = ["{harmony / "codex_patched.txt"}"]
"""


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedGateway]:
    with serve(_config(), tmp_path_factory.mktemp("codex-gw")) as gw:
        yield gw


@pytest.fixture(scope="module")
def proxy(gateway: ServedGateway) -> Iterator[RecordingProxy]:
    with recording_proxy(gateway.base_url) as p:
        yield p


def _codex() -> str:
    found = shutil.which("codex", path=str(Path(sys.executable).parent))
    if found is None:
        pytest.fail("the `codex` CLI is not installed (scripts/install.sh --test installs it with npm)")
    version = subprocess.run([found, "--version"], capture_output=True, text=True, timeout=60, check=True)
    assert version.stdout.split() == ["codex-cli", CODEX_VERSION], version.stdout
    return found


def run_codex(
    tmp: Path, base_url: str, model: str, prompt: str, sandbox: str = "read-only"
) -> tuple[list[dict[str, Any]], str]:
    """`codex exec --json` in a fresh CODEX_HOME and work folder: its events and its last message."""
    home, work = tmp / "codex-home", tmp / "work"
    home.mkdir()
    work.mkdir()
    (home / "config.toml").write_text(
        f'model = "{model}"\n'
        'model_provider = "mia"\n\n'
        "[model_providers.mia]\n"
        'name = "mia-gateway"\n'
        f'base_url = "{base_url}/v1"\n'
        'wire_api = "responses"\n'
        'env_key = "MIA_CODEX_TEST_KEY"\n'
    )
    last = tmp / "last-message.txt"
    env = {**os.environ, "CODEX_HOME": str(home), "MIA_CODEX_TEST_KEY": "unused", "NO_COLOR": "1"}
    args = [_codex(), "exec", "--json", "--skip-git-repo-check", "--sandbox", sandbox, "-o", str(last), prompt]
    done = subprocess.run(
        args, cwd=work, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=240
    )
    assert done.returncode == 0, f"codex failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    return lines, last.read_text()


def test_codexs_captured_request_is_served_as_sent(gateway: ServedGateway) -> None:
    body = json.loads(CAPTURED.read_bytes())
    # what the issue lists Codex as sending, so that the captured file stays the real thing
    assert body["store"] is False and body["stream"] is True and body["include"] == ["reasoning.encrypted_content"]
    assert body["reasoning"] == {"summary": "auto"} and body["prompt_cache_key"] and body["client_metadata"]
    kinds = [t["type"] for t in body["tools"]]
    assert kinds.count("function") == 7 and kinds.count("namespace") == 1 and "web_search" in kinds
    body["model"] = "codex-stub"
    with httpx.stream("POST", f"{gateway.api_url}/responses", json=body, timeout=120) as r:
        assert r.status_code == 200, r.read()
        assert r.headers["x-mia-ignored-tools"] == "web_search"
        sent = events(r.read())
    final = check_stream(sent)
    assert final["status"] == "completed" and final["store"] is False
    assert [t["name"] for t in final["tools"]] == [t["name"] for t in body["tools"] if t["type"] != "web_search"]


@pytest.mark.parametrize(
    ("captured", "ignored"),
    [("exec-request-0.171.0-gpt-5.5.json", "tool_search,web_search"), ("exec-request-0.171.0-gpt-6-luna.json", None)],
)
def test_codexs_requests_for_the_models_it_knows_are_served(
    gateway: ServedGateway, captured: str, ignored: str | None
) -> None:
    """For models in its catalogue Codex sends other toolsets: `custom` apply_patch (a lark
    grammar) and `tool_search` (gpt-5.5), or every tool in an `additional_tools` input item,
    namespaces `functions`, `clock`, `collaboration` (gpt-6-luna)."""
    body = json.loads((DATA / "codex" / captured).read_bytes())
    body["model"] = "codex-stub"
    with httpx.stream("POST", f"{gateway.api_url}/responses", json=body, timeout=120) as r:
        assert r.status_code == 200, r.read()
        assert r.headers.get("x-mia-ignored-tools") == ignored
        final = check_stream(events(r.read()))
    assert final["status"] == "completed"


def test_codexs_captured_follow_up_is_served_as_sent(gateway: ServedGateway) -> None:
    """The second request of a turn in which the model called `exec_command`: the earlier
    reasoning, the call and Codex's output of it come back as input items."""
    body = json.loads((DATA / "codex" / "exec-follow-up-0.171.0.json").read_bytes())
    kinds = [item.get("type") for item in body["input"]]
    assert kinds[-3:] == ["reasoning", "function_call", "function_call_output"]
    body["model"] = "codex-stub"
    with httpx.stream("POST", f"{gateway.api_url}/responses", json=body, timeout=120) as r:
        assert r.status_code == 200, r.read()
        final = check_stream(events(r.read()))
    assert final["status"] == "completed"


def test_codex_exec_completes_a_turn(gateway: ServedGateway, proxy: RecordingProxy, tmp_path: Path) -> None:
    before = len(proxy.bodies)
    events_, last = run_codex(tmp_path, proxy.base_url, "codex-stub", "Say hello.")
    [sent] = [json.loads(b) for b in proxy.bodies[before:]]
    assert sent["model"] == "codex-stub" and sent["stream"] is True
    assert "namespace" in [t["type"] for t in sent["tools"]]
    messages = [
        e["item"]["text"] for e in events_ if e.get("type") == "item.completed" and e["item"]["type"] == "agent_message"
    ]
    assert messages and last.strip() == messages[-1].strip() and last.split()  # the stub's words
    assert events_[-1]["type"] == "turn.completed"


def test_codex_runs_the_models_shell_call_and_gets_the_answer(
    gateway: ServedGateway, proxy: RecordingProxy, tmp_path: Path
) -> None:
    before = len(proxy.bodies)
    events_, last = run_codex(tmp_path, proxy.base_url, "codex-agent", "Run the echo command.")
    first, follow_up = (json.loads(b) for b in proxy.bodies[before:])
    assert "exec_command" in [t.get("name") for t in first["tools"]]
    # Codex ran the call the model made, in a shell: $((6*7)) came back evaluated
    [ran] = [
        e["item"] for e in events_ if e.get("type") == "item.completed" and e["item"]["type"] == "command_execution"
    ]
    assert "echo mia-$((6*7))" in ran["command"] and "mia-42" in ran["aggregated_output"] and ran["exit_code"] == 0
    # and sent the gateway the call and its output with the rest of the turn
    kinds = [item.get("type") for item in follow_up["input"]]
    assert kinds[-2:] == ["function_call", "function_call_output"]
    call, output = follow_up["input"][-2:]
    assert call["name"] == "exec_command" and output["call_id"] == call["call_id"]
    assert "mia-42" in json.dumps(output["output"])
    # the reasoning came back sealed (Codex asks for encrypted content), for the gateway to open
    [reasoning] = [item for item in follow_up["input"] if item.get("type") == "reasoning"]
    assert reasoning["encrypted_content"].startswith("mia1.")
    assert last.strip() == "The command ran and printed its line."


def test_codex_applies_the_patch_a_model_sends_to_its_custom_tool(
    gateway: ServedGateway, proxy: RecordingProxy, tmp_path: Path
) -> None:
    """apply_patch is a `custom` (free-text) tool: the model sees a function of one string,
    and Codex gets a `custom_tool_call` whose input is the patch, which it applies."""
    before = len(proxy.bodies)
    events_, last = run_codex(tmp_path, proxy.base_url, "gpt-5.5", "Write greeting.txt.", sandbox="workspace-write")
    first, follow_up = (json.loads(b) for b in proxy.bodies[before:])
    assert {"type": "custom", "name": "apply_patch"}.items() <= next(
        t for t in first["tools"] if t.get("name") == "apply_patch"
    ).items()
    assert (tmp_path / "work" / "greeting.txt").read_text() == "hello from the gateway\n"
    call, output = follow_up["input"][-2:]
    assert call["type"] == "custom_tool_call" and call["input"].startswith(
        "*** Begin Patch\n*** Add File: greeting.txt"
    )
    assert output["type"] == "custom_tool_call_output" and "greeting.txt" in output["output"]
    assert [e["item"]["type"] for e in events_ if e.get("type") == "item.completed"][-2:] == [
        "file_change",
        "agent_message",
    ]
    assert last.strip() == "I wrote greeting.txt."
