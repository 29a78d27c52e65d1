#!/usr/bin/env bash
# Installs the clients of the client-compatibility suite (tests/clients) into .clients/:
# each group of Python clients in a virtual environment of its own (their pins of the
# openai SDK differ from each other's and from the project's), the node clients with
# `npm ci` from the committed lock file. A group is reinstalled only when its
# requirements change (a stamp holds their hash). Called by `scripts/install.sh --test`.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
REQS=tests/clients/requirements
mkdir -p .clients

stamp_of() { sha256sum "$@" | sha256sum | cut -c1-16; }

for req in "$REQS"/*.txt; do
  group=$(basename "$req" .txt)
  env=".clients/$group"
  stamp=$(stamp_of "$req")
  if [ -x "$env/bin/python" ] && [ "$(cat "$env/.stamp" 2>/dev/null)" = "$stamp" ]; then
    continue
  fi
  echo "install_clients.sh: installing the $group clients into $env" >&2
  rm -rf "$env"
  "$PYTHON" -m venv "$env"
  "$env/bin/python" -m pip --disable-pip-version-check -q install -r "$req" \
    2> >(grep -v '^WARNING: Location' >&2)
  echo "$stamp" > "$env/.stamp"
done

node_dir=.clients/node
stamp=$(stamp_of tests/clients/node/package.json tests/clients/node/package-lock.json)
if [ ! -d "$node_dir/node_modules" ] || [ "$(cat "$node_dir/.stamp" 2>/dev/null)" != "$stamp" ]; then
  if ! command -v npm >/dev/null; then
    echo "install_clients.sh: the node clients need node and npm on PATH" >&2
    exit 1
  fi
  echo "install_clients.sh: installing the node clients into $node_dir" >&2
  rm -rf "$node_dir"
  mkdir -p "$node_dir"
  cp tests/clients/node/package.json tests/clients/node/package-lock.json "$node_dir/"
  (cd "$node_dir" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
  echo "$stamp" > "$node_dir/.stamp"
fi
