#!/usr/bin/env bash
# Install everything, then run the seed demo (needs root).
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
bash "$here/scripts/setup.sh"
exec "$here/.venv/bin/vspan" demo
