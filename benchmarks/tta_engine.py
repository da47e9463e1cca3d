"""Test-time augmentation side by side: the single-view engine vs the 8-view (D4) engine.

From one bundle (default: the one shipped with the edge) it writes both variants as complete,
verifiable bundles under benchmarks/.work/tta/{single,d4} (the engine wrapped with
``waferscope.trainer.tta`` or unwrapped back to its single view; model.json and the manifest
rewritten), then measures for each, in one run on the same machine:

* validation metrics of the INT8 engine (macro-F1, accuracy or exact match, ECE, per-class F1)
  on WM-811K val (or ``--data``);
* onnxruntime latency of the engine at batch 1 and batch 64 (median, 1 intra-op thread).

Usage (from the repository root):

    .venv/bin/python benchmarks/tta_engine.py [--bundle FOLDER] [--data FILE] [--name tta]

The variant folders can be handed to the edge and appliance benchmarks with ``--bundle``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import onnx

from waferscope.protocols import bundle as contract
from waferscope.protocols.pb.bundle_pb2 import BundleFileRole
from waferscope.trainer.config import TtaMode
from waferscope.trainer.engine import OnnxEngine
from waferscope.trainer.evaluate import evaluate
from waferscope.trainer.tta import (
    add_dihedral_tta,
    describe,
    has_dihedral_tta,
    remove_dihedral_tta,
)

HERE = Path(__file__).resolve().parent
WORK = HERE / ".work"
sys.path.insert(0, str(HERE))
from edge_common import data_dir, default_bundle_path  # noqa: E402


def variant(source: Path, target: Path, mode: TtaMode) -> Path:
    """A verified copy of the bundle at ``source`` whose engine runs ``mode``."""
    manifest = contract.verify(source)
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(source, target)
    engine = contract.file_for_role(manifest, BundleFileRole.BUNDLE_FILE_ROLE_ENGINE_ONNX)
    model = onnx.load(str(target / engine))
    if mode == "d4" and not has_dihedral_tta(model):
        model = add_dihedral_tta(model)
    elif mode == "none" and has_dihedral_tta(model):
        model = remove_dihedral_tta(model)
    onnx.save(model, str(target / engine))
    model_json = target / "model.json"
    if model_json.is_file():
        doc = json.loads(model_json.read_text(encoding="utf-8"))
        doc["test_time_augmentation"] = describe(mode)
        model_json.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    manifest.model_version = f"{manifest.model_version}+{'d4' if mode == 'd4' else 'single'}"
    files = [(f.path, f.role) for f in manifest.files]
    del manifest.files[:]
    manifest.files.extend(contract.describe_file(target, rel, role) for rel, role in files)
    contract.write_manifest(target, manifest)
    contract.verify(target)
    return target


def latency_ms(engine: OnnxEngine, batch: int, repeats: int) -> float:
    x = np.random.default_rng(0).random((batch, 3, 64, 64), dtype=np.float32)
    engine.run(x)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        engine.run(x)
        times.append((time.perf_counter() - t0) * 1000.0)
    return statistics.median(times)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--bundle", type=Path, default=None, help="bundle folder (default: shipped)")
    ap.add_argument("--threads", type=int, default=1, help="onnxruntime intra-op threads")
    ap.add_argument(
        "--data",
        type=Path,
        default=None,
        help="labelled validation file (default: WM-811K val; MixedWM38 val for its bundle)",
    )
    ap.add_argument("--name", default="tta", help="work folder and result name")
    args = ap.parse_args()
    source = args.bundle or default_bundle_path()
    val = args.data or data_dir() / "wm811k" / "val.npz"
    if not val.is_file():
        print(f"no WM-811K validation maps at {val} (set WAFER_DATA_DIR)", file=sys.stderr)
        return 1
    rows = []
    for mode, name in (("none", "single"), ("d4", "d4")):
        folder = variant(source, WORK / args.name / name, mode)  # type: ignore[arg-type]
        t0 = time.monotonic()
        result = evaluate(folder, [val], threads=args.threads)
        eval_s = time.monotonic() - t0
        engine = OnnxEngine(folder / "model.int8.onnx", threads=args.threads)
        m = result.metrics
        row = {
            "variant": name,
            "bundle": str(folder),
            "model_version": result.model,
            "n": m.n,
            "macro_f1": round(m.macro_f1, 4),
            "macro_f1_without_none": round(m.macro_f1_defects, 4),
            "accuracy": round(m.accuracy, 4),
            "ece": round(m.ece, 4),
            "f1": {r.name: round(r.f1, 3) for r in m.per_class},
            "b1_ms": round(latency_ms(engine, 1, 200), 2),
            "b64_ms": round(latency_ms(engine, 64, 20), 1),
            "val_seconds": round(eval_s, 1),
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
    out = WORK / f"{args.name}_engine.json"
    out.write_text(json.dumps(rows, indent=2) + "\n")
    classes = list(rows[0]["f1"])  # type: ignore[arg-type]
    print()
    print(
        "| engine | macro-F1 | without none | accuracy (exact match) | ECE | b1 ms | b64 ms | "
        + " | ".join(classes)
        + " |"
    )
    print("| --- |" + " ---: |" * (6 + len(classes)))
    for r in rows:
        f1 = r["f1"]
        print(
            f"| {r['variant']} | {r['macro_f1']} | {r['macro_f1_without_none']} | {r['accuracy']} "
            f"| {r['ece']} | {r['b1_ms']} | {r['b64_ms']} | "
            + " | ".join(str(f1[c]) for c in classes)  # type: ignore[index]
            + " |"
        )
    print(f"\nwritten {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
