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

# the Ansible roles for real: ansible-lint (production profile), then broker, hub and two edges
# provisioned on this machine, applied twice, started, and a wafer from an edge's hot folder to the hub
provision-test *args: setup
    cd ansible && {{absolute_path(venv)}}/bin/ansible-lint --offline --profile production
    {{bin}}python -m pytest -p no:cacheprovider tests/provision {{args}}

# the offline release the Ansible roles install (dist/wheelhouse: wheels + SHA256SUMS)
wheelhouse: setup
    scripts/build-wheelhouse.sh

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

# the main job: the whole appliance here (set-up, then `waferscope demo`; args go to the demo)
main *args:
    scripts/main.sh {{args}}

# `waferscope demo`: broker, hub and edge agents as processes, fed by the tester simulator
demo *args: setup
    {{bin}}waferscope demo {{args}}

# read, picture, classify and explain tester files once, without services (args: your own files)
classify-files *files:
    scripts/classify-files.sh {{files}}

# regenerate docs/troubleshooting.md from the code (tests/test_docs.py checks it is fresh)
docs: setup
    {{bin}}python scripts/gen_troubleshooting.py

# reproducible measurements (results recorded in benchmarks/README.md)
bench: setup
    {{bin}}pip install --quiet -c constraints.txt -r benchmarks/requirements-stdf.txt
    {{bin}}python benchmarks/stdf_parse.py

# the whole appliance: file to hub row (1 and 2 edges) and the 100,000-result drain (~15 min)
bench-appliance: setup
    {{bin}}python benchmarks/appliance_path.py --edges 1 --rates 25 50 100 150 --duration 30
    {{bin}}python benchmarks/appliance_path.py --edges 2 --rates 25 50 100 150 --duration 30
    {{bin}}python benchmarks/store_forward.py --results 100000 --encodings json protobuf --max-inflight 2000 --hub-workers 2

# a signed, offline-installable edge image (firmware_images/README.md); e.g.
# just image keys/release.key keys/release.delegation.json 12
image key delegation version out="out/waferscope-edge-image.tar": setup
    {{bin}}python firmware_images/build_image.py --key {{key}} --delegation {{delegation}} --version {{version}} -o {{out}}

# remove build and test leftovers (keeps .venv)
clean:
    rm -rf out test-artifacts benchmarks/.work .pytest_cache .mypy_cache .ruff_cache .hypothesis
