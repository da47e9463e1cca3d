"""Uploads run the edge's pipeline (protocols.inference) with the hub's copy of the engine."""

from __future__ import annotations

from pathlib import Path

import pytest
from hub_testing import add_role_users, bearer, hub_config
from litestar.testing import TestClient

from waferscope.hub.app import Hub
from waferscope.hub.upload import EngineClassifier

REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "edge" / "src" / "waferscope" / "edge" / "bundles" / "default"


@pytest.fixture
def engine_hub(tmp_path: Path):  # type: ignore[no-untyped-def]
    if not (SHIPPED / "manifest.json").is_file():
        pytest.skip("the shipped engine bundle is not in this checkout")
    hub = Hub(hub_config(tmp_path, engine={"bundle": str(SHIPPED), "threads": 1}))
    add_role_users(hub)
    yield hub
    hub.stop()


def test_uploaded_wafers_are_classified_like_on_an_edge(engine_hub, tester_dir: Path) -> None:  # type: ignore[no-untyped-def]
    from waferscope.protocols.inference import classify_source, load_model

    assert isinstance(engine_hub.classifier, EngineClassifier)
    path = tester_dir / "stdf" / "a595.stdf.gz"
    h = bearer(engine_hub, "reviewer")
    with TestClient(engine_hub.web_app()) as client:
        res = client.post(
            "/api/v1/uploads",
            headers=h,
            files={"data": (path.name, path.read_bytes(), "application/octet-stream")},
        )
        assert res.status_code == 201, res.text
        ids = res.json()["result_ids"]
        details = [client.get(f"/api/v1/results/{i}", headers=h).json() for i in ids]
        overlay = client.get(f"/ui/wafers/{ids[0]}/overlay.png", headers=h)
    direct = classify_source(load_model(SHIPPED, threads=1), path).classifications
    assert len(details) == len(direct) == 3
    manifest_version = direct[0].model_version
    for d, item in zip(details, direct, strict=True):
        assert d["origin"] == "upload" and d["model_version"] == manifest_version
        assert d["pattern"] == item.pattern.name
        assert d["confidence"] == pytest.approx(item.confidence, abs=1e-4)
        assert d["heatmap"]["method"] == "gradcam" and d["has_embedding"]
        assert len(d["probabilities"]["pattern"]) == 9
        assert d["queue"]["state"] == "open"
        assert d["wafer"]["source_name"] == path.name
    assert overlay.status_code == 200 and overlay.content[:4] == b"\x89PNG"
