"""A finished federated run's bundle becomes a signed candidate release in the hub's registry."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hub_testing import hub_config
from release_keys import make_signer

from waferscope.hub.app import Hub
from waferscope.hub.releases import list_releases
from waferscope.protocols.release import delegate, envelope
from waferscope.protocols.release.errors import ReleaseError


def _delegation(folder: Path, signer) -> Path:  # type: ignore[no-untyped-def]
    doc = delegate(
        signer.root, signer.release.public_key(), expires=datetime.now(UTC) + timedelta(days=9)
    )
    path = folder / "release.delegation.json"
    path.write_bytes(envelope.to_bytes(doc))
    return path


def test_a_run_bundle_is_signed_and_registered_as_the_next_candidate(
    tmp_path: Path, bundle_dir: Path
) -> None:
    signer = make_signer(tmp_path / "keys")
    delegation = _delegation(tmp_path / "keys", signer)
    hub = Hub(
        hub_config(
            tmp_path / "hub",
            releases={"trusted_root_keys": [str(signer.root_pub)]},
            federation={
                "release_key": str(tmp_path / "keys" / "release.key"),
                "release_delegation": str(delegation),
            },
        )
    )
    try:
        first = hub.federation.candidate_registrar(bundle_dir)
        second = hub.federation.candidate_registrar(bundle_dir)
        with hub.db.session() as s:
            rows = list_releases(s, channel="candidate")
            got = sorted((r.version, r.release_id, r.registered_by) for r in rows)
        assert got == [(1, first, "federation"), (2, second, "federation")]
    finally:
        hub.stop()


def test_without_a_key_the_bundle_stays_and_a_foreign_key_is_refused(
    tmp_path: Path, bundle_dir: Path
) -> None:
    trusted = make_signer(tmp_path / "trusted")
    stranger = make_signer(tmp_path / "stranger")
    delegation = _delegation(tmp_path / "stranger", stranger)
    roots = {"trusted_root_keys": [str(trusted.root_pub)]}
    plain = Hub(hub_config(tmp_path / "plain", releases=roots))
    try:
        assert plain.federation.candidate_registrar(bundle_dir) is None
    finally:
        plain.stop()
    foreign = Hub(
        hub_config(
            tmp_path / "foreign",
            releases=roots,
            federation={
                "release_key": str(tmp_path / "stranger" / "release.key"),
                "release_delegation": str(delegation),
            },
        )
    )
    try:
        with pytest.raises(ReleaseError, match="unknown key"):
            foreign.federation.candidate_registrar(bundle_dir)
        with foreign.db.session() as s:
            assert list_releases(s) == []
    finally:
        foreign.stop()
