#!/usr/bin/env bash
# Check that the committed generated protobuf/gRPC code is fresh.
#
#   scripts/check-protos.sh [COMMITTED_PB_DIR]
#
# Regenerates every .proto into a temporary folder with scripts/protos.sh and compares the result,
# file by file, with the committed code (default protocols/src/waferscope/protocols/pb). Prints
# one line per stale, missing or orphaned generated file and exits 1 when there is any; exits 0
# and prints nothing else when everything matches. Fix with `just protos` (scripts/protos.sh).
set -euo pipefail

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
committed=${1:-"$repo_root/protocols/src/waferscope/protocols/pb"}

python="${PYTHON:-}"
if [[ -z "$python" ]]; then
    if [[ -x "$repo_root/.venv/bin/python" ]]; then
        python="$repo_root/.venv/bin/python"
    else
        python=python3
    fi
fi
export PYTHON="$python"

if [[ ! -d "$committed" ]]; then
    echo "check-protos: committed generated code not found: $committed" >&2
    exit 1
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/waferscope-protos.XXXXXX")
trap 'rm -rf "$work"' EXIT
"$repo_root/scripts/protos.sh" "$work"
fresh="$work/waferscope/protocols/pb"

show() {  # a path relative to the repository when it lies inside it
    local path=$1
    echo "${path#"$repo_root"/}"
}

is_generated='(_pb2|_pb2_grpc)\.pyi?$'
problems=0
while IFS= read -r name; do
    if [[ ! -f "$committed/$name" ]]; then
        echo "missing: $(show "$committed/$name") (its .proto has no committed generated code)"
        problems=$((problems + 1))
    elif ! cmp -s "$fresh/$name" "$committed/$name"; then
        echo "stale: $(show "$committed/$name") differs from what its .proto generates"
        problems=$((problems + 1))
    fi
done < <(cd "$fresh" && find . -maxdepth 1 -type f | sed 's|^\./||' | grep -E "$is_generated" | LC_ALL=C sort)

while IFS= read -r name; do
    if [[ ! -f "$fresh/$name" ]]; then
        echo "orphan: $(show "$committed/$name") (no .proto generates it any more)"
        problems=$((problems + 1))
    fi
done < <(cd "$committed" && find . -maxdepth 1 -type f | sed 's|^\./||' | grep -E "$is_generated" | LC_ALL=C sort)

if [[ $problems -eq 0 ]]; then
    exit 0
fi

echo "check-protos: $problems generated file(s) out of date; run \`just protos\` (scripts/protos.sh) and commit the result."
# The usual cause when the .proto files did not change: different generator versions.
constraints="$repo_root/constraints.txt"
if [[ -f "$constraints" ]]; then
    for dist in grpcio-tools protobuf mypy-protobuf; do
        pinned=$(sed -n -E "s/^${dist}==([^[:space:]#]+).*/\1/p" "$constraints" | head -n 1)
        installed=$("$python" -c "import importlib.metadata as m, sys
try:
    print(m.version(sys.argv[1]))
except m.PackageNotFoundError:
    print('not installed')" "$dist")
        if [[ -n "$pinned" && "$pinned" != "$installed" ]]; then
            echo "check-protos: $dist $installed is installed but constraints.txt pins $pinned;" \
                "install the pinned version (pip install -c constraints.txt ...) before regenerating."
        fi
    done
fi
exit 1
