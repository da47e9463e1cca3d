#!/usr/bin/env bash
# Train the wider backbones on one GPU in at most 9 minutes (issue 16; benchmarks/gpu_train.py).
#
#   benchmarks/gpu_train.sh prep      # HERE, once: wheels the device lacks (.whl) and the data (.gpudata)
#   benchmarks/gpu_train.sh run       # ON THE DEVICE: checks, installs the wheels, trains, bundles into $OUT
#   benchmarks/gpu_train.sh rehearse  # HERE: the same code path on the CPU with a tiny setting
#
# The device machine has no network: it must bring torch, timm, onnx, onnxruntime and numpy
# (its image does) and gets the rest as wheels for its Python (3.12) from `prep`. The device tool
# sends the git working tree plus the carried paths, so the run is
#   run(command="bash benchmarks/gpu_train.sh run", carry=[".whl", ".gpudata"], timeout_s=600)
# and $OUT comes back: <model>.bundle.tar for resnet18, efficientnet_b0, efficientnet_b3,
# metrics.json and train.log.
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-}
DATA_SRC=${WAFER_DATA_DIR:-../shared/data}
PYVER=${GPU_PYTHON_VERSION:-3.12}
# Pure-Python or manylinux wheels the device image lacks (its pip list: docs in benchmarks/README.md).
WHEELS=(pydantic==2.14.4 pydantic-core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5
        defusedxml==0.7.1 protobuf==7.36.2)

case "$mode" in
  prep)
    for ignored in /.whl/ /.gpudata/; do
      grep -qxF "$ignored" .git/info/exclude 2>/dev/null || echo "$ignored" >> "$(git rev-parse --git-path info/exclude)"
    done
    rm -rf .whl && mkdir -p .whl .gpudata/wm811k
    python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version "$PYVER" \
      --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
      --platform manylinux2014_x86_64 --platform any -d .whl "${WHEELS[@]}"
    # train and val only: the test split stays apart (../shared/data/README.md)
    cp "$DATA_SRC/wm811k/train.npz" "$DATA_SRC/wm811k/val.npz" .gpudata/wm811k/
    (cd .gpudata && sha256sum wm811k/train.npz wm811k/val.npz > SHA256SUMS)
    du -sh .whl .gpudata
    ;;
  run)
    OUT=${OUT:?run on the device machine, where OUT names the folder that comes back}
    command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
    (cd .gpudata && sha256sum --check --quiet SHA256SUMS) || { echo "gpu_train: data checksum mismatch" >&2; exit 2; }
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
      --target /tmp/site .whl/*.whl
    export PYTHONPATH=/tmp/site:$PWD/protocols/src:$PWD/trainer/src PYTHONUNBUFFERED=1
    python3 -c 'import torch, timm, onnx, onnxruntime; assert torch.cuda.is_available(), "no CUDA"; print("torch", torch.__version__, "timm", timm.__version__, "onnxruntime", onnxruntime.__version__)'
    exec timeout 570 python3 benchmarks/gpu_train.py --data .gpudata --out "$OUT" --minutes "${GPU_MINUTES:-8.5}"
    ;;
  rehearse)
    VENV=${WAFERSCOPE_VENV:-.venv}
    exec "$VENV/bin/python" benchmarks/gpu_train.py --data "$DATA_SRC" --out "${OUT:-benchmarks/.work/gpu_train}" \
      --tiny --device cpu --minutes 1.5 --bundle-minutes 0.5 "${@:2}"
    ;;
  *)
    sed -n '2,14p' "$0" >&2
    exit 64
    ;;
esac
