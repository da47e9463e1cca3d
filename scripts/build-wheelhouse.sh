#!/usr/bin/env bash
# Build the offline install set for the Ansible roles: waferscope's own wheels (protocols, edge,
# hub) plus every dependency wheel, pinned by constraints.txt, into one folder (default
# dist/wheelhouse), with the SHA256SUMS list the roles verify on each host before installing.
# Run it where PyPI is reachable; copy the folder into the fab. With
# WAFERSCOPE_WHEELHOUSE_KEEP_DEPS=1 and a wheelhouse already there, only waferscope's own wheels
# are rebuilt (the provisioning test does that: the dependency download takes minutes).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${WAFERSCOPE_VENV:-.venv}
OUT=${1:-dist/wheelhouse}
mkdir -p "$OUT"
"$VENV/bin/python" -m pip wheel --quiet --no-deps --wheel-dir "$OUT" ./protocols ./edge ./hub
if [ "${WAFERSCOPE_WHEELHOUSE_KEEP_DEPS:-0}" != 1 ] || [ ! -f "$OUT/SHA256SUMS" ]; then
  "$VENV/bin/python" -m pip download --quiet -c constraints.txt --dest "$OUT" \
    --find-links "$OUT" --only-binary :all: waferscope-edge waferscope-hub 2>&1 \
    | { grep -v "^WARNING: Location" || true; }
fi
(cd "$OUT" && sha256sum -- *.whl > SHA256SUMS)
echo "wheels in $OUT: $(ls "$OUT"/*.whl | wc -l)"
