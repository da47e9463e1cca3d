#!/usr/bin/env bash
# ruff (lint + format check), mypy (strict for protocols), and the import-independence rule.
# One command per line: under `set -e` a failure inside an `a && b && c` list does not stop the
# script (only the last command of such a list counts), so every check stands on its own.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${WAFERSCOPE_VENV:-.venv}
export PATH="$PWD/$VENV/bin:$PATH"
echo "lint: ruff"
ruff check --quiet .
ruff format --check --quiet .
echo "lint: mypy"
mypy --no-error-summary protocols/src edge/src hub/src trainer/src appliance/src
echo "lint: import rules"
lint-imports --no-cache >/dev/null
echo "lint: ok"
