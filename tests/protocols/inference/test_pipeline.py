"""The shared pipeline end to end: a file or WaferMaps in, explained results and messages out."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from sample_wafers import dataset_wafers

from waferscope.protocols import messages
from waferscope.protocols.formats import Source, get_writer
from waferscope.protocols.inference import (
    Model,
    PipelineSettings,
    classification_overlay_png,
    classify_source,
    classify_wafers,
    load_model,
    result_map_png,
    result_overlay_png,
    summary,
    wafer_result,
)
from waferscope.protocols.pb import result_pb2
from waferscope.protocols.wafermap import Provenance, WaferMap

PNG = b"\x89PNG"


@pytest.fixture(scope="module")
def model(bundle_dir: Path) -> Model:
    return load_model(bundle_dir, threads=1)


def _stdf(wafers: list[WaferMap]) -> bytes:
    buf = io.BytesIO()
    get_writer("stdf").write(wafers, buf)
    return buf.getvalue()


def test_a_file_gives_results_heatmaps_overlays_and_messages(
    model: Model, val_npz: Path, artifacts_dir: Path
) -> None:
    wafers = list(dataset_wafers(val_npz, 12, start=300))
    done = classify_source(
        model, Source.from_bytes(_stdf(wafers), "lot.stdf"), PipelineSettings(max_batch=5)
    )
    assert not done.rejected
    assert [c.wafer.provenance.wafer_index for c in done.classifications] == list(range(12))
    assert {c.batch_size for c in done.classifications} == {5, 2}
    # the same wafers from memory get the same answers
    direct = classify_wafers(model, wafers)
    assert [c.pattern.name for c in direct.classifications] == [
        c.pattern.name for c in done.classifications
    ]
    for item in done.classifications:
        assert item.pattern.name in model.bundle.pattern_classes
        assert item.cause.name in model.bundle.cause_classes
        assert 0.0 < item.confidence <= 1.0
        assert item.heatmap is not None and item.heatmap.shape == (64, 64)
        assert item.heatmap.dtype == np.uint8
        assert item.relevance().shape == item.prepared.states.shape
        assert item.model_version == model.version
        assert item.provider == "CPUExecutionProvider"
        assert summary(item)["pattern"] == item.pattern.name
    first = done.classifications[0]
    png = classification_overlay_png(first)
    assert png.startswith(PNG)
    (artifacts_dir / "inference-overlay.png").write_bytes(png)

    result = wafer_result(
        first,
        result_id=messages.new_message_id(),
        device_id="hub",
        sequence=1,
        correlation_id="upload-1",
        received=datetime.now(UTC),
        include_embedding=True,
    )
    again = messages.decode(messages.encode(result), result_pb2.WaferResult)
    assert again.pattern.name == first.pattern.name
    assert again.wafer.lot_id == first.wafer.info.lot_id
    assert again.heatmap.rows == 64 and again.heatmap.target_class == first.pattern.name
    assert len(again.hot_regions) == len(first.regions)
    assert len(again.embedding) == first.embedding.shape[0]
    np.testing.assert_array_equal(messages.unpack_states(again.map), first.prepared.states)
    assert result_overlay_png(again).startswith(PNG)
    assert result_map_png(again).startswith(PNG)


def test_a_wafer_without_dies_is_set_aside_and_the_others_classified(
    model: Model, val_npz: Path
) -> None:
    good = next(dataset_wafers(val_npz, 1))
    empty = WaferMap.from_dense(
        np.zeros((5, 5), dtype=np.uint8), provenance=Provenance("upload.csv", "csv", 3)
    )
    done = classify_wafers(model, [empty, good])
    assert len(done.classifications) == 1
    [rejected] = done.rejected
    assert (rejected.code, rejected.index) == ("invalid_wafer", 3)
    assert "no dies" in str(rejected)


def test_review_routing_and_explanation_follow_the_settings(model: Model, val_npz: Path) -> None:
    wafers = list(dataset_wafers(val_npz, 6, start=40))
    strict = classify_wafers(model, wafers, PipelineSettings(default_threshold=1.0))
    assert all(c.review and c.review_reason == "low_confidence" for c in strict.classifications)

    lenient = PipelineSettings(default_threshold=0.0, min_quality_score=0.0, explain=False)
    relaxed = classify_wafers(model, wafers, lenient)
    assert not any(c.review for c in relaxed.classifications)
    assert all(c.heatmap is None and not c.regions for c in relaxed.classifications)
    assert classification_overlay_png(relaxed.classifications[0]).startswith(PNG)

    one = relaxed.classifications[0].pattern.name
    picky = PipelineSettings(
        review_thresholds={one: 1.0}, default_threshold=0.0, min_quality_score=0.0
    )
    flagged = classify_wafers(model, wafers, picky)
    assert [c.review for c in flagged.classifications] == [
        c.pattern.name == one for c in flagged.classifications
    ]


def test_settings_are_checked_and_frozen() -> None:
    thresholds = {"Scratch": 0.8}
    settings = PipelineSettings(review_thresholds=thresholds)
    thresholds["Scratch"] = 0.1
    assert settings.threshold_for("Scratch") == 0.8
    assert settings.threshold_for("Loc") == settings.default_threshold
    with pytest.raises(TypeError):
        settings.review_thresholds["Loc"] = 0.5  # type: ignore[index]
    with pytest.raises(ValueError, match="Donut"):
        PipelineSettings(review_thresholds={"Donut": 1.5})
    with pytest.raises(ValueError, match="max_batch"):
        PipelineSettings(max_batch=0)
