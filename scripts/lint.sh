#!/usr/bin/env bash
# ruff (lint + format check), mypy (strict for protocols), and the import-independence rule.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${WAFERSCOPE_VENV:-.venv}
export PATH="$PWD/$VENV/bin:$PATH"
# one command per line: `set -e` does not stop at a failure inside an `a && b && c` list
echo "lint: ruff"
ruff check --quiet .
ruff format --check --quiet .
echo "lint: mypy"
mypy --no-error-summary protocols/src edge/src hub/src trainer/src appliance/src
echo "lint: import rules"
lint-imports --no-cache >/dev/null
echo "lint: ok"
