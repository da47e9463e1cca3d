"""``waferscope edge federated``: start this edge's Flower SuperNode for federated retraining.

The one edge module that uses trainer code (import rule in pyproject.toml): it needs the
``waferscope-edge[federated]`` extra, which brings the trainer (torch) and Flower. The SuperNode
trains the pattern classifier on the labelled maps this edge holds — the labels in its store
(``--store``: reviewers' labels sent back by the hub and operators' confirmations at the panel,
exported to the trainer's ``.npz`` layout when the SuperNode starts) and/or files (``--data``:
WM-811K style ``.npz`` archives or labelled wafer-map files) — and sends only weights and
metrics to the SuperLink; maps never leave the edge. TLS and node authentication are on
unless ``--insecure``.
A SuperNode that cannot connect or is refused activation (a restart within a minute of a crash)
is started again with growing pauses.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

from waferscope.protocols.errors import WaferscopeError

log = logging.getLogger("waferscope.edge.federated")


class FederatedClientError(WaferscopeError):
    """The federated client cannot start: the extra is missing, or it has no labelled maps."""


def export_store_labels(store_path: Path, out: Path, classes: tuple[str, ...]) -> int:
    """Write the store's labelled maps to ``out`` (the trainer's ``.npz``); the number written.

    The class list is the engine's (every node trains the same output layout); a label whose
    pattern is not in it is left out of the export (it stays in the store) and logged.
    """
    import numpy as np

    from waferscope.edge.labels import labelled_wafers
    from waferscope.edge.store import Store
    from waferscope.trainer.data import write_archive

    if not store_path.is_file():
        raise FederatedClientError(f"edge federated --store {store_path}: no such file")
    store = Store(store_path)
    try:
        wafers = labelled_wafers(store)
    finally:
        store.close()
    index = {name: i for i, name in enumerate(classes)}
    usable = [w for w in wafers if w.pattern in index]
    for w in wafers:
        if w.pattern not in index:
            log.warning(
                "label of %s: pattern %r is not an engine class; not exported",
                w.result_id,
                w.pattern,
            )
    if not usable:
        return 0
    out.parent.mkdir(parents=True, exist_ok=True)
    targets = np.array([index[w.pattern] for w in usable], np.int64)
    write_archive(out, [w.grid for w in usable], targets, classes)
    return len(usable)


def supernode_argv(
    superlink: str,
    port: int,
    data: list[Path],
    ca_cert: Path | None,
    key: Path | None,
    threads: int,
) -> tuple[list[str], dict[str, str]]:
    """The SuperNode command line and environment for this edge."""
    try:
        from waferscope.trainer.federated.deployment import process_env, supernode_command
    except ImportError as exc:
        raise FederatedClientError(
            f"edge federated: {exc.name or exc} is not installed; install the "
            "waferscope-edge[federated] extra and Flower (scripts/setup.sh does both)"
        ) from None
    for path in [*data, *(p for p in (ca_cert, key) if p is not None)]:
        if not path.is_file():
            raise FederatedClientError(f"edge federated: {path}: no such file")
    cmd = supernode_command(
        superlink, port, data, ca_cert=ca_cert, private_key=key, threads=threads
    )
    return cmd, process_env()


def federated(
    superlink: Annotated[str, typer.Option(help="SuperLink address HOST:PORT.")],
    data: Annotated[
        list[Path] | None,
        typer.Option("--data", help="Labelled map files of this edge (repeatable)."),
    ] = None,
    store: Annotated[
        Path | None,
        typer.Option(help="The edge's SQLite store: its labels are exported and trained on."),
    ] = None,
    classes_from: Annotated[
        Path | None,
        typer.Option(
            help="Engine bundle whose pattern classes label the export (default: shipped)."
        ),
    ] = None,
    ca_cert: Annotated[
        Path | None, typer.Option(help="CA certificate that signed the SuperLink's certificate.")
    ] = None,
    key: Annotated[
        Path | None, typer.Option(help="This edge's node key (OpenSSH EC private key).")
    ] = None,
    port: Annotated[int, typer.Option(help="Local port of the SuperNode's runtime API.")] = 9094,
    threads: Annotated[int, typer.Option(help="CPU threads for local training.")] = 1,
    insecure: Annotated[
        bool, typer.Option(help="No TLS and no node key (a lab only, never a fab).")
    ] = False,
    retry_for: Annotated[
        float | None,
        typer.Option(help="Seconds to keep reconnecting after a refused start (default: always)."),
    ] = None,
) -> None:
    """Join a federated retraining run: start this edge's SuperNode until it is stopped."""
    if not insecure and (ca_cert is None or key is None):
        raise typer.BadParameter("--ca-cert and --key are required (or --insecure in a lab)")
    if insecure:
        ca_cert = key = None
    files = list(data or [])
    if store is not None:
        from waferscope.edge.bundles import load_bundle

        exported = store.parent / "federated" / "store-labels.npz"
        classes = tuple(load_bundle(classes_from).pattern_classes)
        count = export_store_labels(store, exported, classes)
        typer.echo(f"exported {count} labelled maps from {store} to {exported}")
        if count:
            files.append(exported)
    if not files:
        raise FederatedClientError(
            "edge federated: no labelled maps (give --data, or --store with labels in it)"
        )
    cmd, env = supernode_argv(superlink, port, files, ca_cert, key, threads)
    from waferscope.trainer.federated.deployment import supervise_supernode

    raise typer.Exit(supervise_supernode(cmd, env, retry_for=retry_for))
