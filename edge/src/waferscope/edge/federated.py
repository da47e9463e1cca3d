"""``waferscope edge federated``: start this edge's Flower SuperNode for federated retraining.

The one edge module that uses trainer code (import rule in pyproject.toml): it needs the
``waferscope-edge[federated]`` extra, which brings the trainer (torch) and Flower. The SuperNode
trains the pattern classifier on the labelled maps this edge holds (``--data``: WM-811K style
``.npz`` archives or labelled wafer-map files) and sends only weights and metrics to the
SuperLink; maps never leave the edge. TLS and node authentication are on unless ``--insecure``.
A SuperNode that cannot connect or is refused activation (a restart within a minute of a crash)
is started again with growing pauses.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from waferscope.protocols.errors import WaferscopeError


class FederatedClientError(WaferscopeError):
    """The federated client was asked for but the waferscope-edge[federated] extra is missing."""


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
        list[Path], typer.Option("--data", help="Labelled maps of this edge (repeatable).")
    ],
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
    cmd, env = supernode_argv(superlink, port, data, ca_cert, key, threads)
    from waferscope.trainer.federated.deployment import supervise_supernode

    raise typer.Exit(supervise_supernode(cmd, env, retry_for=retry_for))
