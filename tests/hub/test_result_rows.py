"""The pure result mapping (message to rows) and the ingest handler's blob and review step."""

from __future__ import annotations

from pathlib import Path

from hub_data import make_result, real_grids

from waferscope.hub.blobs import DirectoryBlobStore
from waferscope.hub.config import ReviewConfig
from waferscope.hub.db.engine import utcnow
from waferscope.hub.ingest.handler import store_result_blobs, stored_result_rows
from waferscope.hub.mapcodec import decode_heatmap, decode_map
from waferscope.hub.review_policy import QueueDecision, UncertaintyFirst
from waferscope.hub.store.ingest import (
    BlobKeys,
    heatmap_payload,
    map_payload,
    result_rows,
)

SELECTOR = UncertaintyFirst(ReviewConfig(threshold=0.6, sample_rate=0.1))


def test_result_rows_is_a_pure_mapping(data_dir: Path, tmp_path: Path) -> None:
    ((grid, label),) = real_grids(data_dir, 1)
    msg = make_result(grid, label, 3, confidence=0.2)
    now = utcnow()
    bare = result_rows(msg, now=now)
    assert bare == result_rows(msg, now=now)  # same message, same rows
    assert bare.wafer["map_blob"] is None and bare.heatmap is None and bare.queue is None
    assert bare.result["result_id"] == msg.result_id
    assert bare.result["pattern"] == msg.pattern.name
    assert abs(bare.result["confidence"] - 0.2) < 1e-6
    assert bare.wafer["map_rows"] == msg.map.rows and bare.wafer["die_count"] == msg.die_count
    keyed = result_rows(
        msg,
        now=now,
        blob_keys=BlobKeys(map_blob="maps/abc", heatmap_blob="heatmaps/def"),
        queue_decision=QueueDecision(priority=3.8, reason="low_confidence"),
    )
    assert keyed.wafer["map_blob"] == "maps/abc"
    assert keyed.heatmap is not None and keyed.heatmap["blob"] == "heatmaps/def"
    assert keyed.heatmap["rows"] == msg.heatmap.rows
    assert keyed.queue is not None
    assert (keyed.queue["priority"], keyed.queue["reason"], keyed.queue["state"]) == (
        3.8,
        "low_confidence",
        "open",
    )
    assert not (tmp_path / "blobs").exists()  # nothing written by the mapping


def test_the_handler_step_writes_blobs_and_decides_review(data_dir: Path, tmp_path: Path) -> None:
    (g0, g1) = real_grids(data_dir, 2)
    unsure = make_result(*g0, 0, confidence=0.2)
    sure = make_result(*g1, 1, confidence=0.99, heatmap=False)
    blobs = DirectoryBlobStore(tmp_path / "blobs")
    keys = store_result_blobs(unsure, blobs)
    assert keys.map_blob is not None and keys.heatmap_blob is not None
    assert decode_map(blobs.get(keys.map_blob)).rows == unsure.map.rows
    assert decode_heatmap(blobs.get(keys.heatmap_blob))[:2] == (
        unsure.heatmap.rows,
        unsure.heatmap.cols,
    )
    assert store_result_blobs(unsure, blobs) == keys  # content-addressed: a redelivery, same keys
    assert map_payload(sure) is not None and heatmap_payload(sure) is None
    now = utcnow()
    rows = stored_result_rows(unsure, blobs=blobs, selector=SELECTOR, now=now)
    assert rows.wafer["map_blob"] == keys.map_blob and rows.heatmap is not None
    assert rows.queue is not None and rows.queue["reason"] == "low_confidence"
    confident = stored_result_rows(sure, blobs=blobs, selector=SELECTOR, now=now)
    assert confident.heatmap is None
