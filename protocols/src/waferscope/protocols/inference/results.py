"""From a :class:`~waferscope.protocols.inference.pipeline.Classification` to its messages.

``wafer_result`` builds the ``WaferResult`` protobuf the outbox stores and MQTT carries;
``summary`` builds the JSON object ``waferscope classify`` prints (one line per wafer).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from waferscope.protocols import messages
from waferscope.protocols.inference.pipeline import Classification, Prediction, StageTimes
from waferscope.protocols.pb import common_pb2, result_pb2
from waferscope.protocols.quality import Severity
from waferscope.protocols.wafermap import WaferMap

_SEVERITY = {
    Severity.INFO: common_pb2.SEVERITY_INFO,
    Severity.WARNING: common_pb2.SEVERITY_WARNING,
    Severity.ERROR: common_pb2.SEVERITY_ERROR,
}
_REVIEW = {
    "": result_pb2.REVIEW_REASON_UNSPECIFIED,
    "low_confidence": result_pb2.REVIEW_REASON_LOW_CONFIDENCE,
    "quality": result_pb2.REVIEW_REASON_QUALITY,
}


def identity(
    wafer: WaferMap, *, tester_id: str | None = None, extra: Mapping[str, str] | None = None
) -> common_pb2.WaferIdentity:
    info = wafer.info
    ident = common_pb2.WaferIdentity(
        lot_id=info.lot_id or "",
        wafer_id=info.wafer_id or "",
        tester_id=info.tester_id or tester_id or "",
        program=info.program or "",
        part_type=info.part_type or "",
        source_name=wafer.provenance.source.replace("\\", "/").rsplit("/", 1)[-1],
        source_format=wafer.provenance.format,
        wafer_index=wafer.provenance.wafer_index,
    )
    if info.start_time is not None:
        ident.test_start_time.FromDatetime(_utc(info.start_time))
    if info.end_time is not None:
        ident.test_end_time.FromDatetime(_utc(info.end_time))
    ident.extra.update({str(k): str(v) for k, v in info.extra.items()})
    if extra:
        ident.extra.update(extra)
    return ident


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _prediction(pred: Prediction, classes: tuple[str, ...]) -> result_pb2.Prediction:
    return result_pb2.Prediction(
        name=pred.name,
        index=pred.index,
        probability=pred.probability,
        distribution=[
            result_pb2.ClassProbability(name=name, probability=p)
            for name, p in zip(classes, pred.probabilities, strict=True)
        ],
    )


def timings(times: StageTimes) -> common_pb2.StageTimings:
    return common_pb2.StageTimings(
        parse_ms=times.parse_ms,
        validate_ms=times.validate_ms,
        encode_ms=times.encode_ms,
        infer_ms=times.infer_ms,
        explain_ms=times.explain_ms,
        store_ms=times.store_ms,
        publish_ms=times.publish_ms,
        total_ms=times.total_ms,
    )


def wafer_result(
    item: Classification,
    *,
    result_id: str,
    device_id: str,
    sequence: int,
    correlation_id: str,
    received: datetime,
    tester_id: str | None = None,
    extra: Mapping[str, str] | None = None,
    include_embedding: bool = False,
) -> result_pb2.WaferResult:
    """The WaferResult of one classified wafer (without publish timing, which comes later)."""
    wafer = item.wafer
    prepared = item.prepared
    result = result_pb2.WaferResult(
        result_id=result_id,
        device_id=device_id,
        sequence=sequence,
        correlation_id=correlation_id,
        wafer=identity(wafer, tester_id=tester_id, extra=extra),
        die_count=wafer.die_count,
        pass_count=wafer.pass_count,
        fail_count=wafer.fail_count,
        yield_fraction=wafer.yield_fraction or 0.0,
        map=messages.pack_states(prepared.states, origin=prepared.origin),
        pattern=_prediction(item.pattern, item.pattern_classes),
        confidence=item.confidence,
        root_cause=_prediction(item.cause, item.cause_classes),
        review_required=item.review,
        review_reason=_REVIEW[item.review_reason],
        review_detail=item.review_detail,
        model_version=item.model_version,
        encoding_version=prepared.encoding.version,
        runtime_provider=item.provider,
        quality_findings=[
            common_pb2.QualityFinding(
                code=f.code.value, severity=_SEVERITY[f.severity], message=f.message, count=f.count
            )
            for f in prepared.quality.findings
        ],
        quality_score=prepared.quality.score,
        hot_regions=[
            result_pb2.HotRegion(
                x_min=r.x_min,
                y_min=r.y_min,
                x_max=r.x_max,
                y_max=r.y_max,
                score=r.score,
                fail_count=r.fail_count,
            )
            for r in item.regions
        ],
        timings=timings(item.times),
    )
    result.received_time.FromDatetime(_utc(received))
    result.classified_time.FromDatetime(datetime.now(UTC))
    if item.heatmap is not None:
        rows, cols = item.heatmap.shape
        result.heatmap.CopyFrom(
            result_pb2.Heatmap(
                rows=rows,
                cols=cols,
                data=item.heatmap.tobytes(),
                target_class=item.pattern.name,
                method="gradcam",
            )
        )
    if include_embedding:
        result.embedding.extend(float(v) for v in item.embedding)
    return result


def summary(item: Classification, *, regions: bool = True) -> dict[str, Any]:
    """The JSON object of one classified wafer (``waferscope classify`` prints one a line)."""
    wafer = item.wafer
    out: dict[str, Any] = {
        **wafer.identity_dict(),
        "die_count": wafer.die_count,
        "fail_count": wafer.fail_count,
        "pattern": item.pattern.name,
        "confidence": round(item.confidence, 6),
        "probabilities": {
            name: round(p, 6)
            for name, p in zip(item.pattern_classes, item.pattern.probabilities, strict=True)
        },
        "root_cause": {"name": item.cause.name, "probability": round(item.cause.probability, 6)},
        "review": item.review,
        "review_reason": item.review_reason or None,
        "review_detail": item.review_detail or None,
        "quality_score": round(item.prepared.quality.score, 4),
        "model_version": item.model_version,
        "runtime_provider": item.provider,
        "timings": item.times.to_dict(),
    }
    if regions:
        out["hot_regions"] = [
            {
                "box": [r.x_min, r.y_min, r.x_max, r.y_max],
                "score": round(r.score, 4),
                "fail_count": r.fail_count,
                "die_count": len(r.dies),
            }
            for r in item.regions
        ]
    if wafer.labels:
        out["labels"] = list(wafer.labels)
    return out
