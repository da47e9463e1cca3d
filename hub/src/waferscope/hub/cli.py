"""The hub's commands in the ``waferscope`` CLI: ``waferscope hub run|ingest|migrate|...``.

Registered through the ``waferscope.commands`` entry-point group (see hub/pyproject.toml).
"""

from __future__ import annotations

import getpass
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

ConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        help="Hub configuration (.toml or .yaml); default $WAFERSCOPE_HUB_CONFIG, else hub.toml "
        "if present, else the defaults.",
    ),
]


def _config_path(value: Path | None) -> Path | None:
    if value is not None:
        return value
    env = os.environ.get("WAFERSCOPE_HUB_CONFIG")
    if env:
        return Path(env)
    return Path("hub.toml") if Path("hub.toml").is_file() else None


def _load(config: Path | None):  # type: ignore[no-untyped-def]
    from waferscope.hub.config_loader import ConfigError, load_config

    try:
        return load_config(_config_path(config)).config
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        raise typer.Exit(2) from None


def _database(config: Path | None, *, migrate: bool = True):  # type: ignore[no-untyped-def]
    from waferscope.hub.db import migrate as migrations
    from waferscope.hub.db.engine import Database
    from waferscope.hub.runner import setup_logging

    cfg = _load(config)
    setup_logging(cfg)  # commands on the database log like the hub does (text or JSON)
    db = Database(cfg.database_url, cfg.database)
    if migrate:
        migrations.upgrade(db.engine)
    return cfg, db


app = typer.Typer(help="The central hub: ingest, storage, review UI, alerts.", no_args_is_help=True)
user_app = typer.Typer(help="Local users of the UI and API.", no_args_is_help=True)
app.add_typer(user_app, name="user")


@app.command()
def run(config: ConfigOpt = None) -> None:
    """Run the hub (web UI and API, ingest workers, notifications, rules) until SIGTERM."""
    from waferscope.hub.runner import run_hub

    _load(config)  # report configuration problems before anything starts
    raise typer.Exit(run_hub(_config_path(config)))


@app.command()
def ingest(
    config: ConfigOpt = None,
    worker: Annotated[int, typer.Option(help="Worker number (0 migrates the schema).")] = 0,
) -> None:
    """Run one ingest worker (no web server); several share the stream."""
    from waferscope.hub.runner import run_ingest

    _load(config)
    raise typer.Exit(run_ingest(_config_path(config), worker))


@app.command("validate-config")
def validate_config(
    config: Annotated[Path | None, typer.Argument(help="Configuration file to check.")] = None,
) -> None:
    """Check a configuration file and the environment overrides; name the line of each problem."""
    from waferscope.hub.config_loader import ConfigError, load_config

    path = _config_path(config)
    try:
        loaded = load_config(path)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        raise typer.Exit(1) from None
    cfg = loaded.config
    print(
        f"{path or '<defaults>'}: ok (database {cfg.database_url.split('://')[0]}, "
        f"blobs {cfg.blobs.backend}, broker {cfg.mqtt.host}:{cfg.mqtt.port})"
    )
    if loaded.overrides:
        print(f"environment overrides: {', '.join(loaded.overrides)}")


@app.command("config-reference")
def config_reference() -> None:
    """Print the configuration reference (Markdown, generated from the config model)."""
    from waferscope.hub.config_reference import reference_markdown

    sys.stdout.write(reference_markdown())


@app.command()
def migrate(
    config: ConfigOpt = None,
    revision: Annotated[str, typer.Option(help="Target revision.")] = "head",
) -> None:
    """Bring the database schema up to date (Alembic)."""
    from waferscope.hub.db import migrate as migrations

    _, db = _database(config, migrate=False)
    before = migrations.current_revision(db.engine)
    migrations.upgrade(db.engine, revision)
    after = migrations.current_revision(db.engine)
    print(f"database schema: {before or 'empty'} -> {after}")
    db.dispose()


@app.command("export-labels")
def export_labels(
    output: Annotated[Path, typer.Option("--output", "-o", help="The .npz file to write.")],
    config: ConfigOpt = None,
    since: Annotated[
        str | None, typer.Option(help="Only labels set at or after this time (ISO 8601).")
    ] = None,
) -> None:
    """Write every reviewed wafer with its label, in the WM-811K .npz layout the trainer reads."""
    from datetime import datetime

    from waferscope.hub.blobs import open_blob_store
    from waferscope.hub.export import export_labels as run_export
    from waferscope.hub.store.audit import audit

    cfg, db = _database(config)
    blobs = open_blob_store(cfg.blobs, cfg.blob_path)
    start = datetime.fromisoformat(since) if since else None
    summary = run_export(db, blobs, output, since=start)
    with db.session(write=True) as s:
        audit(
            s,
            f"cli:{getpass.getuser()}",
            "export.labels",
            str(output),
            {"wafers": summary.wafers, "classes": summary.class_counts, "since": since},
        )
    db.dispose()
    counts = ", ".join(f"{k} {v}" for k, v in sorted(summary.class_counts.items()))
    print(
        f"{output}: {summary.wafers} labelled wafers ({counts or 'none'})"
        + (f"; {summary.skipped} without a stored map skipped" if summary.skipped else "")
    )


@app.command("drift")
def drift(config: ConfigOpt = None) -> None:
    """Run the drift job once now (as worker 0 does every drift.interval_s) and print it."""
    from waferscope.hub.drift.job import DriftMonitor

    cfg, db = _database(config)
    rows = DriftMonitor(db, cfg.drift).run_once()
    db.dispose()
    for r in rows:
        figures = (
            f"class p {r['class_p_adjusted']:.2g} PSI {r['psi']:.3f}"
            if r["class_p_adjusted"] is not None
            else "class p -"
        )
        if r["mmd_p_adjusted"] is not None:
            figures += f", MMD² {r['mmd2']:.4f} p {r['mmd_p_adjusted']:.2g}"
        print(
            f"{r['device_id']} / {r['model_version']}: {r['status']} "
            f"(reference {r['reference_n']}, current {r['current_n']}; {figures})"
        )
    print(f"{len(rows)} device/model pairs; alerts go through the hub's deliveries")


@user_app.command("add")
def user_add(
    username: str,
    role: Annotated[str, typer.Option(help="operator, reviewer, engineer or admin.")] = "reviewer",
    password: Annotated[
        str | None, typer.Option(help="Password; default: $WAFERSCOPE_HUB_PASSWORD or a prompt.")
    ] = None,
    config: ConfigOpt = None,
) -> None:
    """Add a local user."""
    from waferscope.hub.auth import AuthError
    from waferscope.hub.store.users import add_user

    secret = password or os.environ.get("WAFERSCOPE_HUB_PASSWORD") or getpass.getpass("Password: ")
    _, db = _database(config)
    try:
        with db.session(write=True) as s:
            add_user(s, username, secret, role, actor=f"cli:{getpass.getuser()}")
    except AuthError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise typer.Exit(1) from None
    finally:
        db.dispose()
    print(f"user {username} added ({role})")


@user_app.command("list")
def user_list(config: ConfigOpt = None) -> None:
    """List the local users."""
    from waferscope.hub.store.users import list_users

    _, db = _database(config)
    with db.session() as s:
        for u in list_users(s):
            print(f"{u.username}\t{u.role}\t{'active' if u.active else 'disabled'}")
    db.dispose()


@user_app.command("password")
def user_password(username: str, config: ConfigOpt = None) -> None:
    """Set a user's password (prompted, or $WAFERSCOPE_HUB_PASSWORD)."""
    from waferscope.hub.auth import AuthError
    from waferscope.hub.store.users import set_password

    secret = os.environ.get("WAFERSCOPE_HUB_PASSWORD") or getpass.getpass("New password: ")
    _, db = _database(config)
    try:
        with db.session(write=True) as s:
            set_password(s, username, secret, actor=f"cli:{getpass.getuser()}")
    except AuthError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise typer.Exit(1) from None
    finally:
        db.dispose()
    print(f"password of {username} changed")


@user_app.command("token")
def user_token(
    username: str,
    days: Annotated[int, typer.Option(help="Validity in days.")] = 30,
    config: ConfigOpt = None,
) -> None:
    """Print a long-lived API token for a (script) user."""
    from waferscope.hub.auth import TokenIssuer, load_or_create_secret
    from waferscope.hub.store.audit import audit
    from waferscope.hub.store.users import get_user

    cfg, db = _database(config)
    with db.session(write=True) as s:
        user = get_user(s, username)
        if user is None or not user.active:
            print(f"error: no active user {username!r}", file=sys.stderr)
            raise typer.Exit(1)
        role = user.role
        audit(s, f"cli:{getpass.getuser()}", "token.issue", username, {"days": days})
    db.dispose()
    secret = (
        cfg.auth.jwt_secret.get_secret_value()
        if cfg.auth.jwt_secret
        else load_or_create_secret(cfg.data_dir / "jwt.secret")
    )
    print(TokenIssuer(secret, cfg.auth.token_ttl_s).issue(username, role, ttl_s=days * 86400))


@app.command("register-model")
def register_model(
    bundle_dir: Annotated[Path, typer.Argument(help="Engine bundle folder (manifest.json, ...).")],
    config: ConfigOpt = None,
) -> None:
    """Verify an engine bundle and keep it in the model registry (blob store + database)."""
    from waferscope.hub.blobs import open_blob_store
    from waferscope.hub.registry import RegistryError, register

    cfg, db = _database(config)
    blobs = open_blob_store(cfg.blobs, cfg.blob_path)
    try:
        with db.session(write=True) as s:
            row = register(s, blobs, bundle_dir, actor=f"cli:{getpass.getuser()}")
            version, digest, size = row.model_version, row.sha256, row.size_bytes
    except RegistryError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise typer.Exit(1) from None
    finally:
        db.dispose()
    print(f"model {version}: {size} bytes, sha256 {digest}")


@app.command("edge-credentials")
def edge_credentials(
    device_ids: Annotated[list[str], typer.Argument(help="Edge device ids.")],
    password_file: Annotated[Path, typer.Option(help="Mosquitto password file to update.")],
    acl_file: Annotated[Path, typer.Option(help="Mosquitto ACL file to (re)write.")],
    hub_user: Annotated[str, typer.Option(help="The hub's own MQTT user name.")] = "waferscope-hub",
) -> None:
    """Give each edge its own MQTT password; write the broker's password and ACL files."""
    from waferscope.hub.mqtt_auth import issue_edge_credentials

    issued = issue_edge_credentials(device_ids, password_file, acl_file, hub_user=hub_user)
    for device_id, password in issued.items():
        print(f"{device_id}\t{password}")


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="hub")
