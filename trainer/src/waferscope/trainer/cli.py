"""`waferscope train`, `evaluate`, `export`, `quantize`, `bundle`, `trt-build`, `train-worker`,
`synth`: the trainer's commands, registered in the umbrella CLI (``waferscope.commands`` entry
points)."""

from __future__ import annotations

import json
import logging
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

DataOpt = Annotated[
    list[Path],
    typer.Option("--data", "-d", help="Labelled input (dataset npz or labelled wafer maps)."),
]


class Engine(StrEnum):
    INT8 = "int8"
    FP32 = "fp32"


class Method(StrEnum):
    MINMAX = "minmax"
    PERCENTILE = "percentile"
    ENTROPY = "entropy"


class Tta(StrEnum):
    NONE = "none"
    D4 = "d4"


def _logging(quiet: bool) -> None:
    logging.basicConfig(
        level=logging.WARNING if quiet else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def train(
    config: Annotated[Path, typer.Option("--config", "-c", help="Training config (TOML/JSON).")],
    overrides: Annotated[
        list[str] | None,
        typer.Option("--set", help="Override a config key: --set optim.epochs=3 (repeatable)."),
    ] = None,
    resume: Annotated[
        bool, typer.Option("--resume/--no-resume", help="Continue from the run's last.pt.")
    ] = True,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Warnings only.")] = False,
) -> int:
    """Train the pattern classifier; checkpoints go to <run.output_dir>/<name>/."""
    _logging(quiet)
    from waferscope.trainer.config import load_config
    from waferscope.trainer.train import train as run_training

    cfg = load_config(config, overrides or [])
    result = run_training(cfg, resume=resume)
    print(
        f"{result.run_dir}: best epoch {result.best_epoch}, "
        f"val {cfg.run.select_metric} {result.best_score:.4f} after {result.epochs_run} epochs"
        + (" (stopped early)" if result.stopped_early else "")
    )
    print(f"checkpoint: {result.run_dir / 'best.pt'}")
    return 0


def evaluate(
    model: Annotated[
        Path, typer.Option("--model", "-m", help="Bundle folder (or manifest.json, or a .pt).")
    ],
    data: DataOpt,
    engine: Annotated[
        Engine, typer.Option("--engine", help="Bundle engine: the INT8 one or the FP32 reference.")
    ] = Engine.INT8,
    as_json: Annotated[bool, typer.Option("--json", help="Print the metrics as JSON.")] = False,
    confusion_png: Annotated[
        Path | None, typer.Option("--confusion-png", help="Write the confusion matrix PNG here.")
    ] = None,
    threads: Annotated[int, typer.Option("--threads", min=1)] = 2,
) -> int:
    """Accuracy, per-class precision/recall/F1, macro-F1, confusion matrix and ECE."""
    from waferscope.trainer.evaluate import evaluate as run_eval
    from waferscope.trainer.metrics import confusion_png as draw

    result = run_eval(model, list(data), engine=engine.value, threads=threads)
    m = result.metrics
    if as_json:
        print(json.dumps({"model": result.model, "engine": result.engine, **m.to_dict()}))
    else:
        print(f"model {result.model} ({result.engine}) on {', '.join(str(p) for p in data)}")
        if result.skipped:
            print(f"skipped {result.skipped} wafers without a usable label")
        print(m.table())
    if confusion_png is not None and m.confusion is not None:
        confusion_png.write_bytes(draw(m.confusion, m.class_names, title=result.model))
    return 0


def export(
    checkpoint: Annotated[Path, typer.Option("--checkpoint", help="best.pt or last.pt.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="The FP32 .onnx to write.")],
    head: Annotated[
        Path | None, typer.Option("--head", help="Also write the head weights (.npz).")
    ] = None,
) -> int:
    """Export a checkpoint to FP32 ONNX (pattern, cause, feature map, embedding outputs)."""
    from waferscope.trainer.export import export_onnx, load_checkpoint

    lm = load_checkpoint(checkpoint)
    export_onnx(lm.model, lm.spec, output, opset=lm.config.export.opset)
    print(output)
    if head is not None:
        lm.model.head_weights().save(head)
        print(head)
    return 0


def quantize(
    model: Annotated[Path, typer.Option("--model", "-m", help="FP32 ONNX from `export`.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="The INT8 .onnx to write.")],
    calibration: Annotated[
        list[Path], typer.Option("--calibration", help="Training files to draw maps from.")
    ],
    samples: Annotated[int, typer.Option("--samples", min=8)] = 512,
    size: Annotated[int, typer.Option("--size", help="Encoding size of the model.")] = 64,
    method: Annotated[Method, typer.Option("--method")] = Method.MINMAX,
    seed: Annotated[int, typer.Option("--seed")] = 0,
) -> int:
    """INT8 static quantisation (QDQ) calibrated on training maps."""
    from waferscope.protocols.encoding import EncodingSpec
    from waferscope.trainer.data import load_labelled
    from waferscope.trainer.quantize import calibration_grids, calibration_tensor, quantize_int8

    data = load_labelled(list(calibration))
    x = calibration_tensor(calibration_grids(data, samples, seed), EncodingSpec(size=size))
    quantize_int8(model, output, x, method=method.value)
    print(output)
    return 0


def bundle(
    checkpoint: Annotated[Path, typer.Option("--checkpoint", help="best.pt of a run.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Bundle folder to (re)write.")],
    val: Annotated[
        list[Path] | None,
        typer.Option("--val", help="Validation files (default: the run's data.val)."),
    ] = None,
    calibration: Annotated[
        list[Path] | None,
        typer.Option("--calibration", help="Calibration files (default: the run's data.train)."),
    ] = None,
    include_fp32: Annotated[
        bool, typer.Option("--include-fp32", help="Ship the FP32 reference ONNX too.")
    ] = False,
    model_version: Annotated[str | None, typer.Option("--model-version")] = None,
    method: Annotated[Method, typer.Option("--method")] = Method.MINMAX,
    train_command: Annotated[
        str | None, typer.Option("--train-command", help="Training command for the model card.")
    ] = None,
    tta: Annotated[
        Tta | None,
        typer.Option(
            "--tta",
            help="Test-time augmentation baked into the engines: d4 averages the 8 quarter-turn "
            "and mirror views (8x the engine cost). Default: the run's export.tta.",
        ),
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q")] = False,
) -> int:
    """Export, quantise to INT8, check parity, measure, and write an engine bundle."""
    _logging(quiet)
    from waferscope.trainer.bundler import build_bundle

    result = build_bundle(
        checkpoint,
        output,
        val=list(val) if val else None,
        calibration=list(calibration) if calibration else None,
        include_fp32=include_fp32,
        model_version=model_version,
        method=method.value,
        command=train_command,
        tta=tta.value if tta else None,
    )
    if result.parity is not None:
        print(result.parity.text())
    print(
        f"{result.folder}: bundle {result.manifest.model_version}, {len(result.manifest.files)}"
        f" files, {result.seconds:.0f} s"
    )
    return 0


def trt_build(
    bundle_dir: Annotated[Path, typer.Option("--bundle", help="Bundle folder to add to.")],
    platform: Annotated[str, typer.Option("--platform", help="e.g. jetson-orin-trt10.")],
    fp16: Annotated[bool, typer.Option("--fp16/--no-fp16")] = True,
) -> int:
    """Build a TensorRT engine from the bundle's INT8 ONNX (needs TensorRT and a GPU)."""
    from waferscope.protocols import bundle as contract
    from waferscope.protocols.pb.bundle_pb2 import BundleFileRole
    from waferscope.trainer.tensorrt_build import TrtOptions, add_to_bundle, build_engine

    manifest = contract.verify(bundle_dir)
    spec = contract.encoding_of(manifest)
    onnx_path = bundle_dir / contract.file_for_role(
        manifest, BundleFileRole.BUNDLE_FILE_ROLE_ENGINE_ONNX
    )
    out = bundle_dir / f".{platform}.engine"
    build_engine(onnx_path, out, input_shape=spec.shape, options=TrtOptions(fp16=fp16))
    print(add_to_bundle(bundle_dir, out, platform))
    out.unlink(missing_ok=True)
    return 0


def train_worker(
    settings: Annotated[Path, typer.Option(help="Worker settings (TOML; see docs/trainer.md).")],
    once: Annotated[bool, typer.Option(help="Run at most one job, then exit.")] = False,
    poll_s: Annotated[float, typer.Option(help="Seconds between claims when idle.")] = 30.0,
    quiet: Annotated[bool, typer.Option("--quiet", "-q")] = False,
) -> None:
    """Take training jobs from the hub: fine-tune, gate, bundle, sign, register a candidate.

    The password may come from WAFERSCOPE_WORKER_PASSWORD instead of the settings file.
    """
    import os

    from waferscope.trainer.retrain import client_for, load_settings, work_forever, work_once

    _logging(quiet)
    cfg = load_settings(settings, os.environ.get("WAFERSCOPE_WORKER_PASSWORD"))
    client = client_for(cfg)
    if once:
        outcome = work_once(cfg, client)
        print(json.dumps(outcome or {"job": None}))
        if outcome is not None and outcome.get("state") != "succeeded":
            raise typer.Exit(1)
        return
    work_forever(cfg, client, poll_s)


def register(app: typer.Typer) -> None:
    app.command()(train)
    app.command()(evaluate)
    app.command()(export)
    app.command()(quantize)
    app.command()(bundle)
    app.command("trt-build")(trt_build)
    app.command("train-worker")(train_worker)
    from waferscope.trainer.synth.cli import register as register_synth

    register_synth(app)
