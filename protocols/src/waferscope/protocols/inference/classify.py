"""Whole inputs through the pipeline: a file or a set of WaferMaps in, classifications out.

The short way for a caller that holds a :class:`~waferscope.protocols.inference.model.Model`
(the hub classifying an upload, ``waferscope classify``): wafers are prepared lazily and run
through the engine in batches of ``settings.max_batch``; a wafer that cannot be classified is
set aside as a :class:`~waferscope.protocols.inference.pipeline.WaferRejectedError` and the
others go on.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from waferscope.protocols.formats import ReadOptions, Source
from waferscope.protocols.inference.model import Model
from waferscope.protocols.inference.pipeline import (
    Classification,
    PipelineSettings,
    PreparedWafer,
    WaferRejectedError,
    batched,
    classify_batch,
    prepare,
    read_wafers,
)
from waferscope.protocols.wafermap import WaferMap

DEFAULT_SETTINGS = PipelineSettings()


@dataclass(slots=True)
class Classified:
    """What became of the wafers of one input, in input order."""

    classifications: list[Classification] = field(default_factory=list)
    rejected: list[WaferRejectedError] = field(default_factory=list)


def classify_batches(
    model: Model,
    wafers: Iterable[tuple[WaferMap, float]],
    settings: PipelineSettings = DEFAULT_SETTINGS,
    on_reject: Callable[[WaferRejectedError], None] | None = None,
) -> Iterator[list[Classification]]:
    """Classify (wafer, parse milliseconds) pairs lazily, one engine batch at a time.

    A wafer that cannot be classified goes to ``on_reject`` (dropped when it is None).
    """

    def prepared() -> Iterator[PreparedWafer]:
        encoding = model.bundle.encoding
        for wafer, parse_ms in wafers:
            try:
                yield prepare(wafer, encoding, parse_ms)
            except WaferRejectedError as exc:
                if on_reject is not None:
                    on_reject(exc)

    for chunk in batched(prepared(), settings.max_batch):
        yield classify_batch(chunk, model, settings)


def classify_wafers(
    model: Model, wafers: Iterable[WaferMap], settings: PipelineSettings = DEFAULT_SETTINGS
) -> Classified:
    """Classify WaferMaps already in memory."""
    out = Classified()
    pairs = ((wafer, 0.0) for wafer in wafers)
    for chunk in classify_batches(model, pairs, settings, out.rejected.append):
        out.classifications.extend(chunk)
    return out


def classify_source(
    model: Model,
    source: str | Path | Source,
    settings: PipelineSettings = DEFAULT_SETTINGS,
    *,
    options: ReadOptions | None = None,
    format: str | None = None,
) -> Classified:
    """Classify every wafer of one input (a path or in-memory bytes as a ``Source``).

    A file that cannot be read raises its FormatError (or OSError); ``format`` names the reader
    and skips detection.
    """
    out = Classified()
    wafers = read_wafers(str(source) if isinstance(source, Path) else source, options, format)
    for chunk in classify_batches(model, wafers, settings, out.rejected.append):
        out.classifications.extend(chunk)
    return out
