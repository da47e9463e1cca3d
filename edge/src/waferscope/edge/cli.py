"""The edge's commands in the ``waferscope`` CLI: ``edge run|validate-config|...`` and ``classify``.

Registered through the ``waferscope.commands`` entry-point group (see edge/pyproject.toml).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Literal

import typer

from waferscope.protocols.formats import ReadOptions, RetestPolicy

ConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        help="Agent configuration (.toml or .yaml); default $WAFERSCOPE_EDGE_CONFIG or edge.toml.",
    ),
]


def _config_path(value: Path | None) -> Path:
    if value is not None:
        return value
    return Path(os.environ.get("WAFERSCOPE_EDGE_CONFIG", "edge.toml"))


def run(config: ConfigOpt = None) -> None:
    """Run the edge agent until SIGTERM/SIGINT (one process per tester)."""
    from waferscope.edge.app import run_agent

    raise typer.Exit(run_agent(_config_path(config)))


def validate_config(
    config: Annotated[Path | None, typer.Argument(help="Configuration file to check.")] = None,
) -> None:
    """Check a configuration file (and the environment overrides); name the line of each problem."""
    from waferscope.edge.config_loader import ConfigError, load_config

    path = _config_path(config)
    try:
        loaded = load_config(path)
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"{problem}", file=sys.stderr)
        raise typer.Exit(1) from None
    cfg = loaded.config
    print(f"{path}: ok (device {cfg.device_id}, site {cfg.site or '-'})")
    if loaded.overrides:
        print(f"environment overrides: {', '.join(loaded.overrides)}")


def config_reference() -> None:
    """Print the configuration reference (Markdown, generated from the config model)."""
    from waferscope.edge.config_reference import reference_markdown

    sys.stdout.write(reference_markdown())


def check_bundle(
    bundle: Annotated[
        Path | None, typer.Argument(help="Bundle folder; default: the shipped one.")
    ] = None,
) -> None:
    """Verify an engine bundle (manifest, sha256 of every file, encoding, class lists, head)."""
    from waferscope.edge.bundles import load_bundle

    b = load_bundle(bundle)
    print(
        f"{b.folder}: ok — model {b.model_version}, encoding v{b.encoding.version} "
        f"{b.encoding.size}px, {len(b.pattern_classes)} patterns, {len(b.cause_classes)} causes"
    )


def install_release(
    release: Annotated[Path, typer.Argument(help="The signed release file (.wsrelease).")],
    config: ConfigOpt = None,
) -> None:
    """Verify a signed release and install it into the inactive engine slot (offline path)."""
    from waferscope.edge.release_command import install_release_file

    done = install_release_file(_config_path(config), release)
    print(
        f"release {done.version} ({done.model_version}) installed in slot {done.slot}: "
        f"{done.state.value}; golden max |diff| {done.golden_max_abs_diff:.4f}, "
        f"{done.latency_ms:.1f} ms per wafer. The agent runs it from its next start."
    )


def classify(
    files: Annotated[list[Path], typer.Argument(help="Tester or dataset files (any format).")],
    model: Annotated[
        Path | None, typer.Option("--model", "-m", help="Engine bundle folder (default: shipped).")
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="JSON Lines: one object per wafer.")
    ] = False,
    explain: Annotated[
        Path | None,
        typer.Option("--explain", help="Write overlay PNG, heatmap and hot regions here."),
    ] = None,
    batch: Annotated[
        int, typer.Option("--batch", min=1, max=1024, help="Wafers per engine call.")
    ] = 32,
    threads: Annotated[int, typer.Option("--threads", min=0, help="CPU threads (0: auto).")] = 0,
    runner: Annotated[
        str, typer.Option("--runner", help="onnxruntime or tensorrt.")
    ] = "onnxruntime",
    retest: Annotated[
        RetestPolicy, typer.Option("--retest", help="Which result counts for a retested die.")
    ] = RetestPolicy.LAST,
    review_threshold: Annotated[
        float, typer.Option("--review-threshold", min=0.0, max=1.0, help="Flag below this.")
    ] = 0.6,
) -> None:
    """Classify wafer maps once with the edge pipeline, without running the agent."""
    from waferscope.edge.classify_command import classify_files
    from waferscope.edge.config import ModelConfig, ReviewConfig

    if runner not in ("onnxruntime", "tensorrt"):
        raise typer.BadParameter("must be onnxruntime or tensorrt", param_hint="--runner")
    backend: Literal["onnxruntime", "tensorrt"] = (
        "tensorrt" if runner == "tensorrt" else "onnxruntime"
    )
    settings = ModelConfig(
        runner=backend, max_batch=batch, threads=threads, warmup_runs=1, explain=explain is not None
    )
    rc = classify_files(
        files,
        model_path=model,
        settings=settings,
        review=ReviewConfig(threshold=review_threshold),
        as_json=as_json,
        explain_dir=explain,
        options=ReadOptions(retest=retest),
    )
    raise typer.Exit(rc)


def panel_token_hash() -> None:
    """Read an operator token from stdin (or a prompt) and print its panel.auth hash."""
    from waferscope.edge.panel.operator_auth import hash_token

    token = (
        typer.prompt("Operator token", hide_input=True, confirmation_prompt=True)
        if sys.stdin.isatty()
        else sys.stdin.readline().strip()
    )
    if len(token) < 8:
        typer.echo("the operator token needs 8 characters or more", err=True)
        raise typer.Exit(2)
    print(hash_token(token))


def register(app: typer.Typer) -> None:
    edge = typer.Typer(
        name="edge",
        help="The edge agent: run it, check its configuration and bundles.",
        no_args_is_help=True,
    )
    edge.command("run")(run)
    edge.command("validate-config")(validate_config)
    edge.command("config-reference")(config_reference)
    edge.command("check-bundle")(check_bundle)
    edge.command("install-release")(install_release)
    edge.command("panel-token-hash")(panel_token_hash)
    from waferscope.edge.federated import federated

    edge.command("federated")(federated)
    app.add_typer(edge, name="edge")
    app.command("classify")(classify)
