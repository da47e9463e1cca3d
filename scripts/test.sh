#!/usr/bin/env bash
# Set up if needed, then run every check: lint, format, types, the import rule, and the tests.
# Extra arguments go to pytest (e.g. scripts/test.sh tests/protocols -k stdf).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
VENV=${WAFERSCOPE_VENV:-.venv}
export PATH="$PWD/$VENV/bin:$PATH"
if [ $# -eq 0 ]; then
  scripts/lint.sh
  # The Ansible apply test (tests/provision, ~20 min) is its own job: `just provision-test`.
  set -- --ignore=tests/provision
fi
exec python -m pytest -p no:cacheprovider -n "${WAFERSCOPE_TEST_WORKERS:-2}" "$@"
