"""``waferscope hub export-labels``: reviewed wafers as training data.

**Format: the WM-811K ``.npz`` layout** (``maps`` flat uint8 0/1/2, ``shapes``, ``offsets``,
``label`` index into ``class_names``), because

* the trainer reads it on its fast path (``protocols.datasets.load_labelled_arrays``: arrays, no
  per-map objects) and can concatenate it with the public WM-811K files it already trains on;
* ``protocols.formats.read_maps`` reads it back as WaferMaps whose ``labels`` are the reviewed
  pattern, so any other tool that speaks protocols sees the ground truth;
* it is compact (one flat uint8 array, deflated) where CSV or E142 would repeat every die.

Maps are the stored ``CompactWaferMap`` grids: the canonical orientation the engine saw. The class
list is the nine WM-811K classes in their usual order, followed by any other label reviewers used.
What the layout has no key for rides along as extra arrays that readers ignore: ``root_cause`` /
``root_cause_names`` (the reviewed root cause as an index), and one string per map of
``result_id``, ``lot_id``, ``wafer_id``, ``tester_id``, ``labelled_by``, ``labelled_at``.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import BinaryIO

import numpy as np
from sqlalchemy import select

from waferscope.hub.blobs import BlobStore
from waferscope.hub.db.engine import Database
from waferscope.hub.db.schema import Label, Result, Wafer
from waferscope.hub.mapcodec import decode_map
from waferscope.hub.store.queries import PATTERN_CLASSES
from waferscope.protocols.messages import unpack_states


@dataclass(frozen=True, slots=True)
class ExportSummary:
    wafers: int
    skipped: int  # labelled wafers whose map is missing
    class_counts: dict[str, int]


def export_labels(
    db: Database,
    blobs: BlobStore,
    out: Path | BinaryIO,
    *,
    since: datetime | None = None,
) -> ExportSummary:
    stmt = (
        select(Label, Wafer.map_blob, Result.lot_id, Result.wafer_id, Result.tester_id)
        .join(Wafer, Wafer.id == Label.wafer_ref)
        .join(Result, Result.result_id == Label.result_id)
        .order_by(Label.labelled_at, Label.wafer_ref)
    )
    if since is not None:
        stmt = stmt.where(Label.labelled_at >= since)
    grids: list[np.ndarray] = []
    labels: list[str] = []
    causes: list[str] = []
    meta: dict[str, list[str]] = {
        k: []
        for k in ("result_id", "lot_id", "wafer_id", "tester_id", "labelled_by", "labelled_at")
    }
    skipped = 0
    with db.session() as s:
        rows = s.execute(stmt).all()
    for label, map_blob, lot, wafer, tester in rows:
        if not map_blob:
            skipped += 1
            continue
        grid = unpack_states(decode_map(blobs.get(map_blob)))
        if grid.size == 0:
            skipped += 1
            continue
        grids.append(grid)
        labels.append(label.pattern)
        causes.append(label.root_cause or "")
        meta["result_id"].append(label.result_id)
        meta["lot_id"].append(lot)
        meta["wafer_id"].append(wafer)
        meta["tester_id"].append(tester)
        meta["labelled_by"].append(label.labelled_by)
        meta["labelled_at"].append(label.labelled_at.isoformat())
    extra = sorted(set(labels) - set(PATTERN_CLASSES))
    class_names = [*PATTERN_CLASSES, *extra]
    cause_names = sorted(set(causes))
    shapes = np.array([g.shape for g in grids], dtype=np.int32).reshape(-1, 2)
    offsets = np.zeros(len(grids) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([g.size for g in grids])
    flat = (
        np.concatenate([g.reshape(-1) for g in grids]).astype(np.uint8)
        if grids
        else np.zeros(0, dtype=np.uint8)
    )
    arrays: dict[str, np.ndarray] = {
        "maps": flat,  # first member: readers sniff the layout from it
        "shapes": shapes,
        "offsets": offsets,
        "label": np.array([class_names.index(p) for p in labels], dtype=np.int8),
        "class_names": np.array(class_names),
        "root_cause": np.array([cause_names.index(c) for c in causes], dtype=np.int16),
        "root_cause_names": np.array(cause_names or [""]),
    }
    for key, values in meta.items():
        arrays[key] = np.array(values or [""])[: len(values)]
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)  # type: ignore[arg-type]
    data = buffer.getvalue()
    if isinstance(out, Path):
        tmp = out.with_name(out.name + ".part")
        tmp.write_bytes(data)
        tmp.replace(out)
    else:
        out.write(data)
    counts: dict[str, int] = {}
    for p in labels:
        counts[p] = counts.get(p, 0) + 1
    return ExportSummary(len(grids), skipped, counts)
