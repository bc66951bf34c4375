#!/usr/bin/env bash
# Install everything, then run the whole test suite: lint, type check, unit,
# pipeline and system tests (system tests need root; they skip otherwise).
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
cd "$here"
# setup.sh reinstalls pip and vspan (rebuilding the C extensions) every time: skip it when
# nothing it depends on changed since the last successful run (VSPAN_SETUP=always forces it)
stamp=.venv/.vspan-setup-stamp
inputs="$( (cat pyproject.toml setup.py scripts/setup.sh scripts/install-system.sh
            find src -name '*.c' -o -name '*.h' | LC_ALL=C sort | xargs cat) | sha256sum)"
if [ "${VSPAN_SETUP:-}" != always ] && [ -x .venv/bin/python ] && [ -f "$stamp" ] \
   && [ "$(cat "$stamp")" = "$inputs" ]; then
  echo "== setup: unchanged since the last install, skipped (VSPAN_SETUP=always forces it)"
else
  bash "$here/scripts/setup.sh"
  echo "$inputs" > "$stamp"
fi
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
