"""`openapi/openapi.json` is the committed API description: it must be exactly what the
code generates, and what the gateway serves at `/openapi.json`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest

from app.openapi import build_openapi
from tests.support.served import ServedGateway

REGENERATE = ".venv/bin/mia-gateway openapi > openapi/openapi.json"


def generated() -> Any:
    # through JSON, so tuples and lists (and key order) compare the way the file stores them
    return json.loads(msgspec.json.encode(build_openapi()))


@pytest.fixture(scope="module")
def committed(repo_root: Path) -> Any:
    path = repo_root / "openapi" / "openapi.json"
    assert path.is_file(), f"{path} is missing; generate it with `{REGENERATE}`"
    return json.loads(path.read_text(encoding="utf-8"))


def _differences(a: Any, b: Any, where: str = "$") -> list[str]:
    """Paths where two JSON values differ (for a readable failure)."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for key in sorted(set(a) | set(b)):
            if key not in a:
                out.append(f"{where}.{key}: only in the code")
            elif key not in b:
                out.append(f"{where}.{key}: only in the file")
            else:
                out += _differences(a[key], b[key], f"{where}.{key}")
        return out
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [d for i, (x, y) in enumerate(zip(a, b, strict=True)) for d in _differences(x, y, f"{where}[{i}]")]
    return [] if a == b else [f"{where}: differs"]


def test_the_committed_document_is_what_the_code_generates(committed: Any) -> None:
    current = generated()
    if committed != current:
        diffs = _differences(committed, current)
        pytest.fail(
            "openapi/openapi.json is out of date with app.openapi.build_openapi(). "
            f"Regenerate it from the repository root with:\n    {REGENERATE}\n"
            "and commit the result. First differences:\n    " + "\n    ".join(diffs[:20])
        )


def test_the_document_is_openapi_3_1_with_every_route(committed: Any) -> None:
    assert committed["openapi"].startswith("3.1")
    assert set(committed["paths"]) >= {
        "/v1/chat/completions",
        "/v1/responses",
        "/v1/models",
        "/v1/models/{model}",
        "/health",
        "/ready",
    }
    chat = committed["paths"]["/v1/chat/completions"]["post"]
    assert chat["operationId"] == "createChatCompletion"
    schemas = committed["components"]["schemas"]
    assert committed["paths"]["/v1/responses"]["post"]["operationId"] == "createResponse"
    for name in (
        "ChatCompletionRequest",
        "ChatCompletion",
        "ChatCompletionChunk",
        "ErrorEnvelope",
        "ModelList",
        "ResponsesRequest",
        "ResponseObject",
    ):
        assert name in schemas, name
    # every $ref points at a schema that exists
    refs = set(_refs(committed))
    assert refs
    for ref in refs:
        assert ref.startswith("#/components/schemas/"), ref
        assert ref.removeprefix("#/components/schemas/") in schemas, ref


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        own = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return own + [r for v in node.values() for r in _refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in _refs(v)]
    return []


@pytest.mark.slow
def test_the_served_document_is_the_committed_one(stub_gateway: ServedGateway, committed: Any) -> None:
    r = httpx.get(f"{stub_gateway.base_url}/openapi.json", timeout=10)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/json")
    assert r.json() == committed
