"""Test data for the hub: WaferResult messages built from real WM-811K maps through protocols.

The maps and their labels are real (../shared/data/wm811k/val.npz). What an edge adds around
them is made up deterministically here, since the hub tests run without the edge's engine: the
"prediction" is the map's true label (every seventh one swapped, so that reviews have something to
correct), the confidence is spread over 0.35..0.98, the heatmap stand-in is the encoding's fail
density channel, and the embedding is that density pooled to 8 x 8.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from pathlib import Path

import numpy as np

from waferscope.hub.store.queries import PATTERN_CLASSES
from waferscope.protocols import messages
from waferscope.protocols.datasets import load_labelled_arrays
from waferscope.protocols.encoding import EncodingSpec, encode_dense
from waferscope.protocols.pb import common_pb2, result_pb2
from waferscope.protocols.pb.result_pb2 import WaferResult

CLASSES = PATTERN_CLASSES
CAUSES = ("probe-card", "etch-nonuniformity", "particles", "handling", "none")
T0 = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(days=2)


@lru_cache(maxsize=2)
def _arrays(path: str):  # type: ignore[no-untyped-def]
    return load_labelled_arrays(path)


def real_grids(data_dir: Path, count: int, start: int = 0) -> list[tuple[np.ndarray, str]]:
    """(dense 0/1/2 grid, true label) of real maps, cycling through val.npz."""
    arrays = _arrays(str(data_dir / "wm811k" / "val.npz"))
    n = len(arrays)
    out = []
    for i in range(start, start + count):
        j = (i * 7919) % n  # spread over every class, deterministically
        out.append((np.asarray(arrays.maps[j]), arrays.labels_of(j)[0]))
    return out


def _distribution(top: str, p: float, names: tuple[str, ...]) -> list[result_pb2.ClassProbability]:
    rest = (1.0 - p) / (len(names) - 1)
    return [result_pb2.ClassProbability(name=n, probability=p if n == top else rest) for n in names]


def make_result(
    grid: np.ndarray,
    label: str,
    i: int,
    *,
    device_id: str = "edge-01",
    tester: str | None = None,
    lot: str | None = None,
    sequence: int | None = None,
    confidence: float | None = None,
    pattern: str | None = None,
    heatmap: bool = True,
    embedding: bool = True,
    when: datetime | None = None,
    model_version: str = "2026.03.1",
) -> WaferResult:
    grid = np.asarray(grid, dtype=np.uint8)
    predicted = pattern or (label if i % 7 else CLASSES[(CLASSES.index(label) + 1) % 9])
    conf = confidence if confidence is not None else 0.35 + ((i * 37) % 64) / 100
    cause = CAUSES[i % len(CAUSES)]
    die = int(np.count_nonzero(grid))
    fail = int(np.count_nonzero(grid == 2))
    when = when or (T0 + timedelta(seconds=30 * i))
    msg = WaferResult(
        result_id=messages.new_message_id(),
        device_id=device_id,
        sequence=sequence if sequence is not None else i + 1,
        correlation_id=f"file-{i // 25}",
        wafer=common_pb2.WaferIdentity(
            lot_id=lot or f"LOT{i // 25:04d}",
            wafer_id=f"{i % 25 + 1:02d}",
            tester_id=tester or "T-01",
            source_name=f"LOT{i // 25:04d}.stdf",
            source_format="wm811k",
            wafer_index=i % 25,
        ),
        die_count=die,
        pass_count=die - fail,
        fail_count=fail,
        yield_fraction=(die - fail) / die if die else 0.0,
        map=messages.pack_states(grid, origin=(0, 0)),
        pattern=result_pb2.Prediction(
            name=predicted,
            index=CLASSES.index(predicted),
            probability=conf,
            distribution=_distribution(predicted, conf, CLASSES),
        ),
        confidence=conf,
        root_cause=result_pb2.Prediction(
            name=cause,
            index=CAUSES.index(cause),
            probability=0.5,
            distribution=_distribution(cause, 0.5, CAUSES),
        ),
        review_required=conf < 0.6,
        review_reason=result_pb2.REVIEW_REASON_LOW_CONFIDENCE
        if conf < 0.6
        else result_pb2.REVIEW_REASON_UNSPECIFIED,
        model_version=model_version,
        encoding_version=1,
        runtime_provider="CPUExecutionProvider",
        quality_score=1.0,
    )
    msg.classified_time.FromDatetime(when)
    msg.received_time.FromDatetime(when - timedelta(milliseconds=80))
    if heatmap or embedding:
        enc = encode_dense(grid, EncodingSpec(size=64))
        if heatmap:
            data = (np.clip(enc[1] * 4, 0, 1) * 255).astype(np.uint8)
            msg.heatmap.CopyFrom(
                result_pb2.Heatmap(
                    rows=64, cols=64, data=data.tobytes(), target_class=predicted, method="gradcam"
                )
            )
            msg.hot_regions.add(
                x_min=0,
                y_min=0,
                x_max=grid.shape[1] // 2,
                y_max=grid.shape[0] // 2,
                score=0.7,
                fail_count=fail // 4,
            )
        if embedding:
            pooled = enc[1].reshape(8, 8, 8, 8).mean(axis=(1, 3))
            msg.embedding.extend(pooled.ravel().tolist())
    if i % 11 == 0:
        msg.quality_findings.add(
            code="missing_dies",
            severity=common_pb2.SEVERITY_WARNING,
            message="3 dies inside the wafer outline have no result",
            count=3,
        )
        msg.quality_score = 0.9
    return msg


def results(data_dir: Path, count: int, start: int = 0, **kwargs: object) -> Iterator[WaferResult]:
    for k, (grid, label) in enumerate(real_grids(data_dir, count, start)):
        yield make_result(grid, label, start + k, **kwargs)  # type: ignore[arg-type]
