"""The model registry: a real bundle verified, archived in the blob store, listed, audited."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest
from hub_engine import build_bundle
from hub_testing import bearer
from litestar.testing import TestClient
from sqlalchemy import select

from waferscope.hub.db.schema import AuditEntry
from waferscope.hub.registry import RegistryError, pack, register


def test_register_a_bundle(hub, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    folder = build_bundle(tmp_path / "bundle")
    assert pack(folder) == pack(folder)  # deterministic: same bundle, same archive
    with hub.db.session(write=True) as s:
        row = register(s, hub.blobs, folder, actor="engineer1")
        key, digest = row.bundle_blob, row.sha256
    with hub.db.session(write=True) as s:  # registering again is a no-op
        assert register(s, hub.blobs, folder, actor="engineer1").sha256 == digest
    with tarfile.open(fileobj=io.BytesIO(hub.blobs.get(key)), mode="r:gz") as tar:
        names = sorted(tar.getnames())
        manifest = json.loads(tar.extractfile("manifest.json").read())  # type: ignore[union-attr]
    assert names == ["manifest.json", "model.int8.onnx"]
    assert manifest["modelVersion"] == "test-engine-1"
    other = build_bundle(tmp_path / "other")  # the same version, other content
    (other / "notes.txt").write_text("x")
    manifest_path = other / "manifest.json"
    doc = json.loads(manifest_path.read_text())
    doc["producer"] = "someone else"
    manifest_path.write_text(json.dumps(doc))
    with pytest.raises(RegistryError), hub.db.session(write=True) as s:
        register(s, hub.blobs, other, actor="engineer1")
    (other / "model.int8.onnx").write_bytes(b"tampered")
    with pytest.raises(RegistryError), hub.db.session(write=True) as s:
        register(s, hub.blobs, other, actor="engineer1")
    with hub.db.session() as s:
        actions = list(s.scalars(select(AuditEntry.action).where(AuditEntry.actor == "engineer1")))
    assert actions == ["model.register"]
    with TestClient(hub.web_app()) as client:
        models = client.get("/api/v1/models", headers=bearer(hub, "operator")).json()["models"]
    assert [m["model_version"] for m in models] == ["test-engine-1"]
    assert models[0]["sha256"] == digest and len(models[0]["pattern_classes"]) == 9
