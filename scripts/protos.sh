#!/usr/bin/env bash
# Generate the Python code of the waferscope .proto contracts.
#
#   scripts/protos.sh             regenerate protocols/src/waferscope/protocols/pb/ in place
#   scripts/protos.sh OUT_ROOT    write the generated tree under OUT_ROOT instead
#                                 (OUT_ROOT/waferscope/protocols/pb/...; check-protos.sh uses it)
#
# Sources: protocols/proto/waferscope/protocols/pb/*.proto (the path mirrors the Python package,
# so generated imports read `from waferscope.protocols.pb import common_pb2`).
# Output per .proto: <name>_pb2.py and <name>_pb2.pyi (mypy-protobuf stubs); for files that
# declare a service also <name>_pb2_grpc.py and <name>_pb2_grpc.pyi.
#
# The output depends on the versions of grpcio-tools (protoc + protobuf runtime checks),
# mypy-protobuf and protobuf; constraints.txt pins the ones the committed code was made with.
# Python: $PYTHON if set, else the repository's .venv, else python3 on PATH.
set -euo pipefail

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
proto_root="$repo_root/protocols/proto"
package_dir="waferscope/protocols/pb"

python="${PYTHON:-}"
if [[ -z "$python" ]]; then
    if [[ -x "$repo_root/.venv/bin/python" ]]; then
        python="$repo_root/.venv/bin/python"
    else
        python=python3
    fi
fi

in_place=1
out_root="$repo_root/protocols/src"
if [[ $# -ge 1 ]]; then
    in_place=0
    mkdir -p "$1"
    out_root=$(cd "$1" && pwd)  # absolute: protoc runs from the proto folder
fi

# The mypy-protobuf plugins live next to the interpreter (virtualenv bin/) or on PATH.
bin_dir=$("$python" -c 'import os, sys; print(os.path.dirname(sys.executable))')
plugin() {
    local name=$1
    if [[ -x "$bin_dir/$name" ]]; then
        echo "$bin_dir/$name"
    elif command -v "$name" >/dev/null 2>&1; then
        command -v "$name"
    else
        echo "protos.sh: $name not found next to $python nor on PATH (pip install mypy-protobuf)" >&2
        exit 1
    fi
}
mypy_plugin=$(plugin protoc-gen-mypy)
mypy_grpc_plugin=$(plugin protoc-gen-mypy_grpc)

cd "$proto_root"
mapfile -t all_protos < <(find "$package_dir" -maxdepth 1 -name '*.proto' | LC_ALL=C sort)
if [[ ${#all_protos[@]} -eq 0 ]]; then
    echo "protos.sh: no .proto files under $proto_root/$package_dir" >&2
    exit 1
fi
mapfile -t service_protos < <(grep -l -E '^[[:space:]]*service[[:space:]]' "${all_protos[@]}" | LC_ALL=C sort)

mkdir -p "$out_root/$package_dir"
if [[ $in_place -eq 1 ]]; then
    # Drop what earlier runs generated so that a removed .proto leaves no orphan module behind.
    find "$out_root/$package_dir" -maxdepth 1 -type f \
        \( -name '*_pb2.py' -o -name '*_pb2.pyi' -o -name '*_pb2_grpc.py' -o -name '*_pb2_grpc.pyi' \) \
        -delete
fi

"$python" -m grpc_tools.protoc \
    -I "$proto_root" \
    --plugin=protoc-gen-mypy="$mypy_plugin" \
    --python_out="$out_root" \
    --mypy_out=quiet:"$out_root" \
    "${all_protos[@]}"

if [[ ${#service_protos[@]} -gt 0 ]]; then
    "$python" -m grpc_tools.protoc \
        -I "$proto_root" \
        --plugin=protoc-gen-mypy_grpc="$mypy_grpc_plugin" \
        --grpc_python_out="$out_root" \
        --mypy_grpc_out=quiet:"$out_root" \
        "${service_protos[@]}"
fi
