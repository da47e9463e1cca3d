"""SHAP over wafer regions on a real ONNX engine (onnxruntime), through the module and the UI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hub_data import make_result, real_grids
from hub_engine import build_bundle
from hub_testing import add_role_users, bearer, feed, hub_config
from litestar.testing import TestClient

from waferscope.hub.app import Hub
from waferscope.hub.config import EngineConfig
from waferscope.hub.explain import ShapExplainer, region_index
from waferscope.protocols import messages


@pytest.fixture(scope="module")
def engine_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_bundle(tmp_path_factory.mktemp("engine") / "bundle")


def centre_wafer(data_dir: Path) -> np.ndarray:
    for grid, label in real_grids(data_dir, 400):
        if label == "Center" and np.count_nonzero(grid == 2) > 30:
            return grid
    raise AssertionError("no Center wafer in the sample")


def test_regions_follow_the_encoding_square() -> None:
    regions = region_index((10, 20), 4)
    assert regions.shape == (10, 20)
    assert regions[0, 0] == 4  # a 10-row map sits 5 rows down in its 20 x 20 square
    assert regions[-1, -1] == 11
    assert set(np.unique(regions)) == set(range(4, 12))


def test_shap_points_at_the_centre(engine_bundle: Path, data_dir: Path) -> None:
    explainer = ShapExplainer(EngineConfig(bundle=engine_bundle, shap_grid=8, shap_samples=300))
    grid = centre_wafer(data_dir)
    compact = messages.pack_states(grid)
    result = explainer.explain(compact)
    assert result.target == "Center" and result.model_version == "test-engine-1"
    assert result.values.shape == (8, 8)
    # efficiency: the values add up to f(wafer) - f(baseline)
    assert result.values.sum() == pytest.approx(result.probability - result.base_value, abs=0.02)
    top_row, top_col, top_value = result.top_regions(1)[0]
    assert 2 <= top_row <= 5 and 2 <= top_col <= 5 and top_value > 0
    other = explainer.explain(compact, target="none")
    assert other.target == "none" and other.values.sum() < 0


def test_shap_on_the_wafer_page(tmp_path: Path, engine_bundle: Path, data_dir: Path) -> None:
    cfg = hub_config(tmp_path, engine={"bundle": str(engine_bundle), "shap_samples": 128})
    hub = Hub(cfg)
    add_role_users(hub)
    try:
        msg = make_result(centre_wafer(data_dir), "Center", 1)
        feed(hub, [msg])
        with TestClient(hub.web_app()) as client:
            page = client.get(f"/ui/wafers/{msg.result_id}", headers=bearer(hub, "reviewer"))
            assert "shap-button" in page.text
            frag = client.get(f"/ui/wafers/{msg.result_id}/shap", headers=bearer(hub, "reviewer"))
            assert frag.status_code == 200 and "data:image/png;base64," in frag.text
            api = client.post(
                f"/api/v1/results/{msg.result_id}/shap", headers=bearer(hub, "reviewer")
            )
            assert api.status_code == 200 and api.json()["target"] == "Center"
            assert len(api.json()["values"]) == 8
            assert (
                client.post(
                    f"/api/v1/results/{msg.result_id}/shap", headers=bearer(hub, "operator")
                ).status_code
                == 403
            )
    finally:
        hub.stop()
