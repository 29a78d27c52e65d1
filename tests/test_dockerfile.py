"""Static checks of the Dockerfile: what can be known about the image without building it."""

from __future__ import annotations

import json
import re
import shlex
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCKERFILE = REPO / "Dockerfile"


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        if line.strip():
            keyword, _, args = line.strip().partition(" ")
            out.append((keyword.upper(), args.strip()))
    return out


def _args(keyword: str) -> list[str]:
    return [args for kw, args in _instructions() if kw == keyword]


@pytest.fixture(scope="module")
def stages() -> list[tuple[str, str | None]]:
    """(image, stage name) of every FROM."""
    out = []
    for args in _args("FROM"):
        words = [w for w in args.split() if not w.startswith("--")]
        name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else None
        out.append((words[0], name))
    return out


def test_it_is_multi_stage(stages: list[tuple[str, str | None]]) -> None:
    assert len(stages) >= 2
    names = [name for _, name in stages if name]
    assert len(names) == len(set(names))
    copies_from = [m.group(1) for args in _args("COPY") for m in [re.search(r"--from=(\S+)", args)] if m]
    assert copies_from and set(copies_from) <= set(names), "the runtime stage copies from a named build stage"


def test_base_images_are_pinned_by_tag(stages: list[tuple[str, str | None]]) -> None:
    earlier: set[str] = set()
    for image, name in stages:
        if image in earlier:
            continue  # a previous stage, not a base image
        # the tag follows the last path part's colon (a registry may have a port: host:5000/img)
        tag = image.split("@", 1)[0].rsplit("/", 1)[-1].partition(":")[2]
        assert tag, f"{image}: no tag (that means :latest)"
        assert tag != "latest", f"{image}: pinned to latest"
        assert re.search(r"\d", tag), f"{image}: tag names no version"
        if name:
            earlier.add(name)


def test_runs_as_a_non_root_user() -> None:
    users = _args("USER")
    assert users, "no USER: the container would run as root"
    user = users[-1].split(":", 1)[0]
    assert user not in ("root", "0")


def test_exposes_a_port_and_checks_health() -> None:
    (expose,) = _args("EXPOSE")
    assert all(p.split("/")[0].isdigit() for p in expose.split())
    (check,) = _args("HEALTHCHECK")
    assert check.split()[0] != "NONE"
    assert "/health" in check
    assert f":{expose.split()[0].split('/')[0]}/health" in check, "the health check probes the exposed port"


def test_the_entrypoint_is_the_console_script() -> None:
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert "mia-gateway" in scripts
    (entry,) = _args("ENTRYPOINT")
    argv = json.loads(entry) if entry.startswith("[") else shlex.split(entry)
    assert argv[0] == "mia-gateway"
    (cmd,) = _args("CMD")
    assert json.loads(cmd)[0] == "serve"


def test_no_model_files_go_into_the_image() -> None:
    for kw in ("COPY", "ADD"):
        for args in _args(kw):
            assert ".gguf" not in args.lower(), f"{kw} {args}"
            if "--from=" in args:
                continue
            sources = [w for w in shlex.split(args) if not w.startswith("--")][:-1]
            for src in sources:
                path = REPO / src
                found = list(path.rglob("*.gguf")) if path.is_dir() else [path] if src.endswith(".gguf") else []
                assert not found, f"{kw} {src} would copy {found}"
