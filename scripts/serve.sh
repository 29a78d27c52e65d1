#!/usr/bin/env bash
# Installs (if needed) and serves the embedded default on http://127.0.0.1:8000/v1.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
exec .venv/bin/mia-gateway serve "$@"
