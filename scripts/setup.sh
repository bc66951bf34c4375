#!/usr/bin/env bash
# Install everything vspan needs: Debian packages and a Python venv in .venv
# with vspan and its development tools. Idempotent.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
bash "$here/scripts/install-system.sh"
PY="${PYTHON:-python3}"
if [ ! -x "$here/.venv/bin/python" ]; then
  "$PY" -m venv "$here/.venv"
fi
"$here/.venv/bin/pip" install -q --upgrade pip
"$here/.venv/bin/pip" install -q -e "$here[dev]"
echo "setup: ready ($here/.venv)"
