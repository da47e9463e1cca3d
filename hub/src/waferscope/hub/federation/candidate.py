"""A finished federated run's candidate bundle, signed and registered as a release at this hub.

The hub holds a release key certified by a trusted root ([federation] release_key and
release_delegation). The candidate is signed as the next version of its channel (one above the
highest registered) and goes through the same registry path as an uploaded release
(``releases.register_release``: verified against the hub's trusted roots, stored, audited), so a
federated engine reaches the fleet only through a rollout with its gates.
"""

from __future__ import annotations

import logging
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from waferscope.hub.blobs import BlobStore
from waferscope.hub.db.engine import Database
from waferscope.hub.federation.settings import FederationConfig
from waferscope.hub.releases import highest, register_release
from waferscope.protocols.bundle import read_manifest
from waferscope.protocols.release import build_release, load_private
from waferscope.protocols.release import envelope as release_envelope

log = logging.getLogger(__name__)
ACTOR = "federation"


class CandidateRegistrar:
    """Called with a run's bundle folder; answers the registered release id (None: not set up)."""

    def __init__(
        self,
        config: FederationConfig,
        db: Database,
        blobs: BlobStore,
        roots: dict[str, Ed25519PublicKey],
        *,
        max_bytes: int | None = None,
    ) -> None:
        self.config, self.db, self.blobs, self.roots = config, db, blobs, roots
        self.max_bytes = max_bytes

    def __call__(self, bundle: Path) -> str | None:
        cfg = self.config
        if cfg.release_key is None or cfg.release_delegation is None:
            log.warning(
                "candidate bundle ready at %s; set [federation] release_key and "
                "release_delegation to register it as a release",
                bundle,
            )
            return None
        with self.db.session() as s:
            top = highest(s, cfg.release_channel)
            version = int(top.version) + 1 if top is not None else 1
        delegation = cfg.release_delegation.read_bytes()
        with tempfile.TemporaryDirectory(prefix="ws-federated-") as tmp:
            out = Path(tmp) / f"federated-{version}.wsrelease"
            build_release(
                bundle,
                out,
                key=load_private(cfg.release_key),
                delegation=release_envelope.from_bytes(delegation, str(cfg.release_delegation)),
                channel=cfg.release_channel,
                version=version,
                expires=datetime.now(UTC) + timedelta(days=cfg.release_days),
                model_version=read_manifest(bundle).model_version,
            )
            data = out.read_bytes()
        with self.db.session(write=True) as s:
            row, _ = register_release(
                s, self.blobs, data, self.roots, actor=ACTOR, name=out.name,
                max_bytes=self.max_bytes,
            )  # fmt: skip
            release_id = row.release_id
        log.info(
            "federated candidate registered: release %s (%s %d)",
            release_id,
            cfg.release_channel,
            version,
        )
        return release_id
