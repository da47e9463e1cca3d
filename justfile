# waferscope's front door. `just` alone lists the recipes.
set shell := ["bash", "-euo", "pipefail", "-c"]

venv := env_var_or_default("WAFERSCOPE_VENV", ".venv")
bin := venv + "/bin/"

default:
    @just --list

# create or refresh the development environment (.venv)
setup:
    scripts/setup.sh

# the whole check: lint, types, import rule, tests (what CI runs); args go to pytest
test *args:
    scripts/test.sh {{args}}

# ruff, ruff format --check, mypy, import-linter
lint: setup
    scripts/lint.sh

# format the code in place
fmt: setup
    {{bin}}ruff format .
    {{bin}}ruff check --fix .

# regenerate the protobuf / gRPC code from protocols/proto
protos: setup
    scripts/protos.sh

# fail when the committed generated code is stale
protos-check: setup
    scripts/check-protos.sh

# the main job: inspect and picture real tester files (args: your own files)
main *files:
    scripts/main.sh {{files}}

# reproducible measurements (results recorded in benchmarks/README.md)
bench: setup
    {{bin}}pip install --quiet -c constraints.txt -r benchmarks/requirements-stdf.txt
    {{bin}}python benchmarks/stdf_parse.py

# remove build and test leftovers (keeps .venv)
clean:
    rm -rf out test-artifacts benchmarks/.work .pytest_cache .mypy_cache .ruff_cache .hypothesis
