"""Ground-truth labels of this edge's wafers: stored from the hub's reviews and the panel's checks.

A label comes from a reviewer at the hub (a ``WaferLabel`` on the edge's ``label`` topic) or from
an operator who confirms or corrects a result at the edge's panel; both go into the store's
``labels`` table, one row per result (the latest decision wins; a repeated delivery of the same
label id changes nothing). The wafer's map is copied in when the label is stored, so a label
outlives the pruning of its result. The labelled maps are the edge's federated training data
(``waferscope edge federated --store``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from google.protobuf.timestamp_pb2 import Timestamp

from waferscope.edge.store import Store
from waferscope.protocols import messages
from waferscope.protocols.errors import WaferscopeError
from waferscope.protocols.pb import label_pb2, result_pb2

SOURCES = {
    label_pb2.LABEL_SOURCE_HUB_REVIEW: "hub-review",
    label_pb2.LABEL_SOURCE_EDGE_PANEL: "edge-panel",
}


class LabelError(WaferscopeError):
    """A label cannot be stored (no pattern, unknown result at the panel, wrong device)."""


@dataclass(frozen=True, slots=True)
class LabelledWafer:
    """One labelled map as the trainer takes it: the 0/1/2 die grid and its pattern name."""

    result_id: str
    pattern: str
    grid: npt.NDArray[np.uint8]


def record_label(store: Store, label: label_pb2.WaferLabel) -> bool:
    """Store a label (and the wafer's map, when the result is still held); False for a repeat."""
    if not label.pattern.strip():
        raise LabelError(f"label {label.label_id} of result {label.result_id}: no pattern")
    source = SOURCES.get(label.source)
    if source is None:
        raise LabelError(f"label {label.label_id}: unknown source {label.source}")
    held = store.result(label.result_id)
    stored = store.reader().execute(
        "SELECT label_id FROM labels WHERE result_id = ?", (label.result_id,)
    )
    before = stored.fetchone()
    if before is not None and before[0] == label.label_id:
        return False
    compact = held[1].map if held is not None and held[1].HasField("map") else None
    labelled_at = (
        label.labelled_time.ToNanoseconds() / 1e9
        if label.HasField("labelled_time")
        else time.time()
    )
    with store.transaction() as conn:
        conn.execute(
            "INSERT OR REPLACE INTO labels (result_id, label_id, pattern, root_cause, action,"
            " labelled_by, source, labelled_at, received_at, lot_id, wafer_id, map)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                label.result_id,
                label.label_id,
                label.pattern.strip(),
                label.root_cause,
                label.action,
                label.labelled_by,
                source,
                labelled_at,
                time.time(),
                held[0]["lot_id"] if held is not None else "",
                held[0]["wafer_id"] if held is not None else "",
                compact.SerializeToString() if compact is not None else None,
            ),
        )
    return True


def panel_label(
    store: Store, device_id: str, result_id: str, pattern: str, *, operator: str
) -> label_pb2.WaferLabel:
    """An operator's confirmation (``pattern`` = the prediction) or correction at the panel."""
    held = store.result(result_id)
    if held is None:
        raise LabelError(f"panel label: no result {result_id} in this edge's store")
    pattern = pattern.strip()
    if not pattern:
        raise LabelError(f"panel label of result {result_id}: choose a pattern")
    predicted = held[1].pattern.name
    stamp = Timestamp()
    stamp.GetCurrentTime()
    label = label_pb2.WaferLabel(
        schema_version=messages.SCHEMA_VERSION,
        label_id=messages.new_message_id(),
        device_id=device_id,
        result_id=result_id,
        pattern=pattern,
        root_cause=held[1].root_cause.name,
        action="confirm" if pattern == predicted else "correct",
        labelled_by=operator,
        source=label_pb2.LABEL_SOURCE_EDGE_PANEL,
        labelled_time=stamp,
    )
    record_label(store, label)
    return label


def label_of(store: Store, result_id: str) -> dict[str, object] | None:
    """The stored label of one result (without the map), or None."""
    row = (
        store.reader()
        .execute(
            "SELECT result_id, label_id, pattern, root_cause, action, labelled_by, source,"
            " labelled_at FROM labels WHERE result_id = ?",
            (result_id,),
        )
        .fetchone()
    )
    return None if row is None else dict(row)


def label_counts(store: Store) -> dict[str, int]:
    """Labels held, by source, and how many carry their map (usable for training)."""
    conn = store.reader()
    counts = {
        str(r[0]): int(r[1])
        for r in conn.execute("SELECT source, COUNT(*) FROM labels GROUP BY source").fetchall()
    }
    counts["with_map"] = int(
        conn.execute("SELECT COUNT(*) FROM labels WHERE map IS NOT NULL").fetchone()[0]
    )
    return counts


def labelled_wafers(store: Store) -> list[LabelledWafer]:
    """Every label that carries its wafer's map, oldest first."""
    rows = store.reader().execute(
        "SELECT result_id, pattern, map FROM labels WHERE map IS NOT NULL ORDER BY labelled_at"
    )
    out = []
    for result_id, pattern, blob in rows.fetchall():
        compact = result_pb2.CompactWaferMap.FromString(blob)
        out.append(LabelledWafer(result_id, pattern, messages.unpack_states(compact)))
    return out
