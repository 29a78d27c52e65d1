#!/usr/bin/env bash
# Builds llama.cpp's own `llama-server` and `llama-batched-bench` -- the peer and the ceiling
# that bench/compare.py measures the gateway against -- from the llama.cpp sources vendored
# in the llama-cpp-python sdist of the version installed in .venv, so that all three run the
# same llama.cpp. Portable flags as for the wheel (a -march=native build enables AMX, which
# faults in the VMs this runs on), linked statically. The two binaries land in
# ~/.cache/mia-gateway/llama-server-<version>/; a second run finds them and does nothing.
# A few minutes on 2 cores (MIA_BUILD_JOBS, default 2).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-.venv/bin/python}
VERSION=$("$PYTHON" -c 'import importlib.metadata as m; print(m.version("llama-cpp-python"))')
DEST="${MIA_LLAMA_SERVER_DIR:-$HOME/.cache/mia-gateway/llama-server-$VERSION}"
if [ -x "$DEST/llama-server" ] && [ -x "$DEST/llama-batched-bench" ]; then
  echo "build_llama_server.sh: already built in $DEST"
  exit 0
fi

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
# MIA_LLAMA_SDIST names an sdist already downloaded. `--no-binary` names the one package:
# with `:all:` pip would also build the sdist's build tools from source to read its metadata.
SDIST="${MIA_LLAMA_SDIST:-}"
if [ -z "$SDIST" ]; then
  "$PYTHON" -m pip --disable-pip-version-check -q download "llama-cpp-python==$VERSION" \
    --no-binary llama-cpp-python --no-deps -d "$WORK" 2> >(grep -v '^WARNING: Location' >&2)
  SDIST="$WORK/llama_cpp_python-$VERSION.tar.gz"
fi
tar -xzf "$SDIST" -C "$WORK"
SRC="$WORK/llama_cpp_python-$VERSION/vendor/llama.cpp"
echo "build_llama_server.sh: building llama-server $VERSION (a few minutes)" >&2
cmake -S "$SRC" -B "$WORK/build" -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF \
  -DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON \
  -DLLAMA_CURL=OFF -DLLAMA_BUILD_SERVER=ON -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
  >"$WORK/cmake.log" || { cat "$WORK/cmake.log" >&2; exit 1; }
cmake --build "$WORK/build" -j "${MIA_BUILD_JOBS:-2}" --target llama-server llama-batched-bench \
  >"$WORK/build.log" || { tail -50 "$WORK/build.log" >&2; exit 1; }

# Copy into a temporary sibling and rename, so an interrupted build never looks finished.
mkdir -p "$(dirname "$DEST")"
STAGE="$DEST.partial.$$"
rm -rf "$STAGE"
mkdir -p "$STAGE"
cp -a "$WORK"/build/bin/llama-server "$WORK"/build/bin/llama-batched-bench "$STAGE"/
rm -rf "$DEST"
mv "$STAGE" "$DEST"
echo "build_llama_server.sh: built $DEST/llama-server and llama-batched-bench"
