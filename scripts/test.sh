#!/usr/bin/env bash
# Install everything, then run the whole test suite: lint, type check, unit,
# pipeline and system tests (system tests need root; they skip otherwise).
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
bash "$here/scripts/setup.sh"
cd "$here"
echo "== ruff"
.venv/bin/ruff check src tests bench
echo "== mypy --strict"
.venv/bin/mypy
# the suite runs twice: with the native fast path (the default when the C extension
# is built) and with the Python replay (VSPAN_FASTPATH=python), which must behave the same
rc=0
for fastpath in native python; do
  echo "== pytest (VSPAN_FASTPATH=$fastpath)"
  set +e
  VSPAN_FASTPATH=$fastpath .venv/bin/pytest -q -p no:cacheprovider "$@"
  one=$?
  set -e
  if [ "$one" -eq 5 ]; then
    echo "pytest collected no tests" >&2
    exit 1
  fi
  if [ "$one" -ne 0 ]; then
    rc=$one
  fi
done
exit "$rc"
