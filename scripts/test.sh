#!/usr/bin/env bash
# Installs everything and runs the whole suite: lint, format, types, tests (slow ones too).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh --test
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
.venv/bin/pytest "$@"
