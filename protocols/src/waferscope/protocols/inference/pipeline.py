"""The data path of one wafer, shared by the edge agent, ``waferscope classify`` and the hub.

parse (protocols.formats) → validate (protocols.quality) → normalise + encode (protocols) →
infer (the model's runner, in micro-batches) → explain (Grad-CAM from the engine outputs) →
route (review flag). Storing and publishing are the caller's business, not this module's; what
the caller configures comes in one :class:`PipelineSettings`.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

import numpy as np
import numpy.typing as npt

from waferscope.protocols.encoding import EncodingSpec, encode_dense
from waferscope.protocols.errors import WaferscopeError
from waferscope.protocols.formats import ReadOptions, Source, read_maps
from waferscope.protocols.inference.gradcam import (
    HotRegion,
    die_relevance,
    gradcam,
    hot_regions,
    to_uint8,
)
from waferscope.protocols.inference.model import Model
from waferscope.protocols.inference.runner import F32
from waferscope.protocols.normalize import normalize
from waferscope.protocols.quality import QualityReport, check
from waferscope.protocols.wafermap import WaferMap


@dataclass(frozen=True, slots=True)
class PipelineSettings:
    """How wafers are explained and routed; services build it from their own configuration.

    A wafer goes to review when its pattern confidence is below the pattern's threshold
    (``review_thresholds``, else ``default_threshold``), or else when its quality score is below
    ``min_quality_score``. ``explain`` turns Grad-CAM heatmaps and hot regions on; dies with a
    relevance of ``hot_threshold`` or more form hot regions, at most ``max_hot_regions`` a wafer.
    ``max_batch`` is the most wafers one engine call takes.
    """

    review_thresholds: Mapping[str, float] = field(default_factory=dict)
    default_threshold: float = 0.6
    min_quality_score: float = 0.5
    explain: bool = True
    hot_threshold: float = 0.5
    max_hot_regions: int = 5
    max_batch: int = 32

    def __post_init__(self) -> None:
        fractions = {
            "default_threshold": self.default_threshold,
            "min_quality_score": self.min_quality_score,
            "hot_threshold": self.hot_threshold,
            **{f"review_thresholds[{k!r}]": v for k, v in self.review_thresholds.items()},
        }
        for name, value in fractions.items():
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be within 0..1, got {value}")
        if self.max_hot_regions < 0 or self.max_batch < 1:
            raise ValueError("max_hot_regions must be >= 0 and max_batch >= 1")
        object.__setattr__(
            self, "review_thresholds", MappingProxyType(dict(self.review_thresholds))
        )

    def threshold_for(self, pattern: str) -> float:
        """The confidence below which a wafer predicted as ``pattern`` is flagged for review."""
        return self.review_thresholds.get(pattern, self.default_threshold)


class WaferRejectedError(WaferscopeError):
    """One wafer of a file cannot be classified (the others may be)."""

    def __init__(self, code: str, message: str, index: int = -1) -> None:
        self.code = code
        self.index = index  # the wafer's index in its source (-1: unknown)
        super().__init__(message)


@dataclass(slots=True)
class StageTimes:
    """Milliseconds per stage for one wafer (infer/explain are its share of its batch)."""

    parse_ms: float = 0.0
    validate_ms: float = 0.0
    encode_ms: float = 0.0
    infer_ms: float = 0.0
    explain_ms: float = 0.0
    store_ms: float = 0.0
    publish_ms: float = 0.0

    @property
    def total_ms(self) -> float:
        return (
            self.parse_ms
            + self.validate_ms
            + self.encode_ms
            + self.infer_ms
            + self.explain_ms
            + self.store_ms
            + self.publish_ms
        )

    def to_dict(self) -> dict[str, float]:
        names = ("parse", "validate", "encode", "infer", "explain", "store", "publish")
        out = {f"{n}_ms": round(getattr(self, f"{n}_ms"), 3) for n in names}
        out["total_ms"] = round(self.total_ms, 3)
        return out


@dataclass(slots=True)
class PreparedWafer:
    """A parsed, checked and encoded wafer waiting for the engine."""

    wafer: WaferMap
    normalized: WaferMap
    states: npt.NDArray[np.uint8]  # normalised dense 0/1/2 grid, rows = y
    origin: tuple[int, int]  # (x, y) of states[0, 0]
    quality: QualityReport
    encoding: EncodingSpec
    tensor: F32  # (C, S, S)
    times: StageTimes = field(default_factory=StageTimes)

    @property
    def index(self) -> int:
        return self.wafer.provenance.wafer_index


@dataclass(frozen=True, slots=True)
class Prediction:
    name: str
    index: int
    probability: float
    probabilities: tuple[float, ...]


@dataclass(slots=True)
class Classification:
    prepared: PreparedWafer
    pattern: Prediction
    cause: Prediction
    pattern_classes: tuple[str, ...]
    cause_classes: tuple[str, ...]
    confidence: float
    review: bool
    review_reason: str  # "", "low_confidence", "quality"
    review_detail: str
    heatmap: npt.NDArray[np.uint8] | None  # (S, S) on the model-input grid
    regions: list[HotRegion]
    embedding: F32
    model_version: str
    provider: str
    batch_size: int

    @property
    def times(self) -> StageTimes:
        return self.prepared.times

    @property
    def wafer(self) -> WaferMap:
        return self.prepared.wafer

    def relevance(self) -> F32:
        """Relevance (0..1) of every cell of the normalised dense map (zeros unexplained)."""
        states = self.prepared.states
        if self.heatmap is None:
            return np.zeros(states.shape, dtype=np.float32)
        return die_relevance(self.heatmap, *states.shape)


# --------------------------------------------------------------------------- parse
def read_wafers(
    source: str | Source, options: ReadOptions | None = None, format: str | None = None
) -> Iterator[tuple[WaferMap, float]]:
    """Every wafer of one input with the milliseconds its parsing took (FormatError if bad).

    ``format`` names the reader and skips detection (a gRPC ``format_hint``)."""
    it = read_maps(source, format=format, options=options)
    while True:
        start = time.perf_counter()
        try:
            wafer = next(it)
        except StopIteration:
            return
        yield wafer, (time.perf_counter() - start) * 1000.0


# --------------------------------------------------------------------------- validate + encode
def prepare(wafer: WaferMap, encoding: EncodingSpec, parse_ms: float = 0.0) -> PreparedWafer:
    """Check, normalise and encode one wafer (WaferRejectedError when it cannot be classified)."""
    times = StageTimes(parse_ms=parse_ms)
    start = time.perf_counter()
    if wafer.die_count == 0:
        raise WaferRejectedError(
            "invalid_wafer",
            f"{_name(wafer)}: the wafer holds no dies",
            wafer.provenance.wafer_index,
        )
    report = check(wafer)
    mid = time.perf_counter()
    normalized = normalize(wafer)
    states = normalized.to_dense("state").astype(np.uint8, copy=False)
    extent = normalized.extent or (0, 0, 0, 0)
    tensor = encode_dense(states, encoding)
    end = time.perf_counter()
    times.validate_ms = (mid - start) * 1000.0
    times.encode_ms = (end - mid) * 1000.0
    return PreparedWafer(
        wafer=wafer,
        normalized=normalized,
        states=states,
        origin=(extent[0], extent[1]),
        quality=report,
        encoding=encoding,
        tensor=tensor,
        times=times,
    )


def _name(wafer: WaferMap) -> str:
    return f"{wafer.provenance.source} wafer #{wafer.provenance.wafer_index}"


# --------------------------------------------------------------------------- infer + explain
def _softmax(logits: F32) -> F32:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    out: F32 = (e / e.sum(axis=1, keepdims=True)).astype(np.float32)
    return out


def _predictions(probs: F32, classes: tuple[str, ...]) -> list[Prediction]:
    top = probs.argmax(axis=1)
    return [
        Prediction(classes[int(i)], int(i), float(p[int(i)]), tuple(float(v) for v in p))
        for i, p in zip(top, probs, strict=True)
    ]


def classify_batch(
    batch: list[PreparedWafer], model: Model, settings: PipelineSettings
) -> list[Classification]:
    """Run the engine once on the batch, explain and route every wafer."""
    if not batch:
        return []
    bundle = model.bundle
    for item in batch:  # a hot swap may have changed the encoding since the wafer was prepared
        if item.encoding != bundle.encoding:
            start = time.perf_counter()
            item.tensor = encode_dense(item.states, bundle.encoding)
            item.encoding = bundle.encoding
            item.times.encode_ms += (time.perf_counter() - start) * 1000.0
    start = time.perf_counter()
    outputs = model.infer(np.stack([item.tensor for item in batch]))
    infer_ms = (time.perf_counter() - start) * 1000.0 / len(batch)
    patterns = _predictions(_softmax(outputs.pattern_logits), bundle.pattern_classes)
    causes = _predictions(_softmax(outputs.cause_logits), bundle.cause_classes)
    start = time.perf_counter()
    heatmaps = None
    if settings.explain:
        heatmaps = gradcam(outputs, bundle.head, [p.index for p in patterns], bundle.encoding.size)
    results = []
    for i, item in enumerate(batch):
        heat = None if heatmaps is None else to_uint8(heatmaps[i])
        regions: list[HotRegion] = []
        if heatmaps is not None:
            relevance = die_relevance(heatmaps[i], *item.states.shape)
            regions = hot_regions(
                relevance,
                item.states,
                item.origin,
                threshold=settings.hot_threshold,
                limit=settings.max_hot_regions,
            )
        pattern = patterns[i]
        confidence = pattern.probability
        threshold = settings.threshold_for(pattern.name)
        reason, detail = "", ""
        if confidence < threshold:
            reason = "low_confidence"
            detail = (
                f"confidence {confidence:.2f} is below the {pattern.name} threshold {threshold:.2f}"
            )
        elif item.quality.score < settings.min_quality_score:
            reason = "quality"
            codes = ", ".join(f.code.value for f in item.quality.findings)
            detail = f"quality score {item.quality.score:.2f} ({codes})"
        results.append(
            Classification(
                prepared=item,
                pattern=pattern,
                cause=causes[i],
                pattern_classes=bundle.pattern_classes,
                cause_classes=bundle.cause_classes,
                confidence=confidence,
                review=bool(reason),
                review_reason=reason,
                review_detail=detail,
                heatmap=heat,
                regions=regions,
                embedding=outputs.embedding[i],
                model_version=model.version,
                provider=model.runner.provider,
                batch_size=len(batch),
            )
        )
    explain_ms = (time.perf_counter() - start) * 1000.0 / len(batch)
    for item in batch:
        item.times.infer_ms = infer_ms
        item.times.explain_ms = explain_ms
    return results


def batched(items: Iterable[PreparedWafer], size: int) -> Iterator[list[PreparedWafer]]:
    chunk: list[PreparedWafer] = []
    for item in items:
        chunk.append(item)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
