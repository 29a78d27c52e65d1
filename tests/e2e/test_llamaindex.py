"""LlamaIndex's `OpenAILike` with its defaults, which speaks legacy completions: `complete`,
`stream_complete`, and `chat` turned into a completion prompt, against served gateways.
LlamaIndex needs openai < 3, so its client runs in a virtual environment of its own
(tests/e2e/clients/llamaindex_client.py; scripts/install.sh --test makes it)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.support.logs import events
from tests.support.served import REPO, ServedGateway

pytestmark = pytest.mark.slow

PYTHON = REPO / ".venv" / "clients" / "llamaindex" / "bin" / "python"
CLIENT = Path(__file__).parent / "clients" / "llamaindex_client.py"


def _run(gw: ServedGateway, model: str) -> dict[str, Any]:
    assert PYTHON.exists(), "LlamaIndex's environment is missing: run `bash scripts/install.sh --test`"
    run = subprocess.run(
        [str(PYTHON), str(CLIENT), gw.api_url, model], capture_output=True, text=True, timeout=300, check=False
    )
    assert run.returncode == 0, run.stderr[-3000:]
    result: dict[str, Any] = json.loads(run.stdout.strip().splitlines()[-1])
    return result


def _completions(gw: ServedGateway) -> int:
    return len([e for e in events(gw.log(), "RequestFinished") if e["endpoint"] == "/v1/completions"])


def test_complete_stream_and_chat_go_through_completions(stub_gateway: ServedGateway) -> None:
    before = _completions(stub_gateway)
    out = _run(stub_gateway, "stub-chat")
    assert out["is_chat_model"] is False  # the default: completions
    assert out["complete"] and len(out["complete"].split()) == 16  # OpenAI's default max_tokens
    assert out["stream_complete"] == out["complete"]
    assert out["chat"]
    assert _completions(stub_gateway) - before == 4


def test_a_real_model_completes(default_gateway: ServedGateway) -> None:
    assert "Paris" in _run(default_gateway, "smollm2-135m-instruct")["greedy"]
