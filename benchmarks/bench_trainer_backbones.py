"""Backbone comparison for the pattern classifier: size, CPU latency, training cost, accuracy.

For every backbone variant: parameters and multiply-adds at 64 px, FP32 and INT8 ONNX size,
onnxruntime CPU latency at batch 1 and batch 64 with 1 and 2 threads (INT8 and FP32), training
throughput (samples/s of a full training step, batch 128, one torch thread, the precision the
default config uses), and — when a trained checkpoint of that variant exists — macro-F1 of the
FP32 and INT8 engines on the WM-811K validation split, of the INT8 engine with the 8-view
test-time augmentation (``waferscope.trainer.tta``, and its batch-1 latency), and the run's
measured training time.

Usage (from the repository root):

    .venv/bin/python benchmarks/bench_trainer_backbones.py [--only NAME ...] [--quick]

Writes ``benchmarks/.work/trainer_backbones.json`` and prints a markdown table; the recorded
results are in ``benchmarks/trainer_backbones.md``. Checkpoints are looked up as
``trainer/runs/<run>/best.pt`` (run names below).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from waferscope.protocols.encoding import EncodingSpec
from waferscope.trainer.config import ModelConfig, RunConfig
from waferscope.trainer.data import load_labelled
from waferscope.trainer.engine import OnnxEngine
from waferscope.trainer.export import export_onnx, load_checkpoint
from waferscope.trainer.metrics import compute_metrics
from waferscope.trainer.model import WaferNet
from waferscope.trainer.quantize import calibration_grids, calibration_tensor, quantize_int8
from waferscope.trainer.runtime import resolve_runtime
from waferscope.trainer.tta import tta_file

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "wm811k"
WORK = REPO / "benchmarks" / ".work"


@dataclass
class Variant:
    name: str
    run: str  # trainer/runs/<run>/best.pt when trained
    model: dict[str, Any] = field(default_factory=dict)


VARIANTS = [
    Variant(
        "resnet18 slim (32-64-96-128), OS 8",
        "wm811k-long",
        {
            "backbone": "resnet18",
            "backbone_kwargs": {"channels": [32, 64, 96, 128]},
            "output_stride": 8,
            "hidden": [128],
        },
    ),
    Variant(
        "resnet18 half (32-64-128-256), OS 8",
        "wm811k-half",
        {
            "backbone": "resnet18",
            "backbone_kwargs": {"channels": [32, 64, 128, 256]},
            "output_stride": 8,
            "hidden": [128],
        },
    ),
    Variant(
        "resnet18, OS 8",
        "wm811k-resnet18",
        {"backbone": "resnet18", "output_stride": 8, "hidden": [128]},
    ),
    Variant(
        "mobilenetv3_large_100, stem stride 1",
        "wm811k-mobilenetv3",
        {
            "backbone": "mobilenetv3_large_100",
            "output_stride": None,
            "stem_stride": 1,
            "hidden": [128],
        },
    ),
    Variant(
        "efficientnet_b0, OS 8",
        "wm811k-efficientnet-b0",
        {"backbone": "efficientnet_b0", "output_stride": 8, "hidden": [128]},
    ),
    Variant(
        "efficientnet_b3, OS 8",
        "wm811k-efficientnet-b3",
        {"backbone": "efficientnet_b3", "output_stride": 8, "hidden": [128]},
    ),
]


def _median_time(fn: Any, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def macs(model: WaferNet, spec: EncodingSpec) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.zeros((1, *spec.shape)))
    return counter.get_total_flops() / 2


def train_throughput(model: WaferNet, spec: EncodingSpec, steps: int) -> float:
    rt = resolve_runtime(RunConfig(threads=1))
    model.train()
    opt = torch.optim.AdamW(model.parameters())
    x = torch.rand((128, *spec.shape))
    y = torch.randint(0, 9, (128,))

    def step() -> None:
        with rt.autocast():
            out = model(x)
        loss = torch.nn.functional.cross_entropy(out[0].float(), y) + out[1].float().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()

    seconds = _median_time(step, steps)
    model.eval()
    return 128 / seconds


def latency_ms(
    engine_path: Path, spec: EncodingSpec, batch: int, threads: int, repeats: int
) -> float:
    engine = OnnxEngine(engine_path, threads=threads)
    x = np.random.default_rng(0).random((batch, *spec.shape), dtype=np.float32)
    return 1000 * _median_time(lambda: engine.run(x), repeats)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", help="substrings of variant names to run")
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    parser.add_argument("--no-eval", action="store_true", help="skip validation metrics")
    args = parser.parse_args()
    spec = EncodingSpec(size=64)
    train = load_labelled([DATA / "train.npz"])
    calib = calibration_tensor(calibration_grids(train, 256, 0), spec)
    val = None if args.no_eval else load_labelled([DATA / "val.npz"])
    WORK.mkdir(parents=True, exist_ok=True)
    rows = []
    for v in VARIANTS:
        if args.only and not any(s in v.name for s in args.only):
            continue
        torch.manual_seed(0)
        ckpt = REPO / "trainer" / "runs" / v.run / "best.pt"
        trained = ckpt.is_file()
        model = load_checkpoint(ckpt).model if trained else WaferNet(ModelConfig(**v.model), 9, 7)
        model.eval()
        row: dict[str, Any] = {"variant": v.name, "run": v.run, "trained": trained}
        row["params_m"] = sum(p.numel() for p in model.parameters()) / 1e6
        row["mmacs"] = macs(model, spec) / 1e6
        with torch.no_grad():
            fmap = model(torch.zeros((1, *spec.shape))).feature_map
        row["feature_map"] = f"{fmap.shape[1]}x{fmap.shape[2]}x{fmap.shape[3]}"
        with tempfile.TemporaryDirectory(dir=WORK) as tmp:
            fp32 = Path(tmp) / "fp32.onnx"
            int8 = Path(tmp) / "int8.onnx"
            export_onnx(model, spec, fp32)
            quantize_int8(fp32, int8, calib)
            row["fp32_mb"] = fp32.stat().st_size / 1e6
            row["int8_mb"] = int8.stat().st_size / 1e6
            reps1, reps64 = (20, 3) if args.quick else (100, 10)
            for threads in (1, 2):
                for kind, path in (("int8", int8), ("fp32", fp32)):
                    row[f"{kind}_b1_t{threads}_ms"] = latency_ms(path, spec, 1, threads, reps1)
                    row[f"{kind}_b64_t{threads}_ms"] = latency_ms(path, spec, 64, threads, reps64)
            if trained and val is not None:
                int8_d4 = Path(tmp) / "int8_d4.onnx"
                tta_file(int8, int8_d4, "d4")
                row["int8_d4_b1_t1_ms"] = latency_ms(int8_d4, spec, 1, 1, reps1)
                for kind, path in (("fp32", fp32), ("int8", int8), ("int8_d4", int8_d4)):
                    probs, _ = OnnxEngine(path, threads=2).predict(
                        val.grids, spec, multi_label=False
                    )
                    m = compute_metrics(val.targets, probs, val.class_names, False)
                    row[f"{kind}_macro_f1"] = m.macro_f1
        row["train_samples_per_s"] = train_throughput(model, spec, 3 if args.quick else 6)
        summary = ckpt.parent / "summary.json"
        if trained and summary.is_file():
            doc = json.loads(summary.read_text())
            row["train_minutes"] = (
                sum(doc["epoch_train_seconds"]) + sum(doc["epoch_eval_seconds"])
            ) / 60
            row["epochs"] = doc["epochs_run"]
        rows.append(row)
        print(json.dumps(row), file=sys.stderr, flush=True)
    out = WORK / "trainer_backbones.json"
    out.write_text(json.dumps(rows, indent=2) + "\n")
    print(table(rows))
    return 0


def _f(value: Any, fmt: str) -> str:
    return "—" if value is None else format(value, fmt)


def table(rows: list[dict[str, Any]]) -> str:
    head = (
        "| backbone | params (M) | MMACs | last map | FP32 MB | INT8 MB "
        "| INT8 b1 1t / 2t (ms) | INT8 b64 1t / 2t (ms) | FP32 b1 1t (ms) | FP32 b64 1t (ms) "
        "| train samples/s | macro-F1 FP32 / INT8 | INT8 D4: macro-F1, b1 1t (ms) "
        "| training time |"
    )
    lines = [head, "|" + " --- |" * 14]
    for r in rows:
        f1 = (
            f"{_f(r.get('fp32_macro_f1'), '.4f')} / {_f(r.get('int8_macro_f1'), '.4f')}"
            if r.get("trained")
            else "not trained"
        )
        d4 = (
            f"{_f(r.get('int8_d4_macro_f1'), '.4f')}, {_f(r.get('int8_d4_b1_t1_ms'), '.2f')}"
            if r.get("trained")
            else "—"
        )
        minutes = r.get("train_minutes")
        took = "—" if minutes is None else f"{minutes:.0f} min ({r.get('epochs')} epochs)"
        lines.append(
            f"| {r['variant']} | {r['params_m']:.2f} | {r['mmacs']:.0f} | {r['feature_map']} "
            f"| {r['fp32_mb']:.2f} | {r['int8_mb']:.2f} "
            f"| {r['int8_b1_t1_ms']:.2f} / {r['int8_b1_t2_ms']:.2f} "
            f"| {r['int8_b64_t1_ms']:.1f} / {r['int8_b64_t2_ms']:.1f} "
            f"| {r['fp32_b1_t1_ms']:.2f} | {r['fp32_b64_t1_ms']:.1f} "
            f"| {r['train_samples_per_s']:.0f} | {f1} | {d4} "
            f"| {took} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
