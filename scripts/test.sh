#!/usr/bin/env bash
# Install everything the test suite needs and run all of it: lint, types, tests.
# Usage: scripts/test.sh [extra pytest args]
#        scripts/test.sh --fast [extra pytest args]   the fast layer alone (< 2 min, all cores):
#          no service start, no browser, no subprocess servers; what needs a missing
#          PostgreSQL or Redis skips (CI=0)
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = "--fast" ]; then
  shift
  [ -x .venv/bin/python ] || "${PYTHON:-python3}" -m venv .venv
  .venv/bin/python -c "import authgate, xdist" 2>/dev/null || .venv/bin/pip install -q -e '.[test,bench]'
  .venv/bin/ruff check .
  # every core; a module's tests stay on one worker (module-scoped servers start once)
  CI=${CI:-0} exec .venv/bin/pytest -m fast -q -n auto --dist loadscope "$@"
fi
# A full run is a CI run unless told otherwise (CI=0): a missing PostgreSQL, Redis, browser,
# nginx or node then fails the run instead of quietly skipping its tests.
export CI=${CI:-true}

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/pip install -q --upgrade pip >/dev/null
.venv/bin/pip install -q -e '.[test,bench]'

bash scripts/services.sh      # PostgreSQL and Redis (already running on most machines)
bash scripts/install-browser.sh
bash scripts/install-tools.sh

echo "== ruff"; .venv/bin/ruff check .
echo "== mypy"; .venv/bin/mypy
echo "== pytest"
# every core (PYTEST_WORKERS overrides; 0 = in this process); a module's tests stay on one
# worker (module-scoped servers start once). Each test has its own database, Redis prefix
# and ports, so the workers share nothing.
.venv/bin/pytest -n "${PYTEST_WORKERS:-auto}" --dist loadscope "$@"
echo "== benchmark smoke run (keeps bench/ from rotting; timings are not asserted)"
.venv/bin/python bench/run.py --smoke
