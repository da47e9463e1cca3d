"""The inference core shared by the edge agent and the hub: bundle in, explained results out.

A verified bundle (:func:`load_bundle`) runs on a :class:`Runner`; :class:`OnnxRuntimeRunner`
is the one shipped here, and needs the optional ``inference`` extra
(``pip install 'waferscope-protocols[inference]'``, which adds onnxruntime). Nothing in this
package imports onnxruntime until a runner is made; without the extra that raises
:class:`InferenceExtraMissingError`. Services plug in other backends (the edge's native
TensorRT runner) through the same :class:`Runner` interface.

The short way::

    model = load_model(Path("bundle"))                      # verify, start onnxruntime, warm up
    done = classify_source(model, "lot7.stdf.gz", PipelineSettings(review_thresholds={...}))
    for item in done.classifications:
        item.pattern.name, item.confidence, item.review, item.heatmap, item.regions
        png = classification_overlay_png(item)
        message = wafer_result(item, result_id=..., device_id=..., sequence=0, ...)
    for rejected in done.rejected:
        rejected.index, rejected.code, str(rejected)

:func:`classify_wafers` does the same for WaferMaps in memory; :func:`classify_batches`,
:func:`prepare` and :func:`classify_batch` are the steps, for callers that batch themselves.
"""

from waferscope.protocols.inference.bundles import Bundle, load_bundle
from waferscope.protocols.inference.classify import (
    Classified,
    classify_batches,
    classify_source,
    classify_wafers,
)
from waferscope.protocols.inference.gradcam import (
    HotRegion,
    die_relevance,
    gradcam,
    gradcam_maps,
    hot_regions,
    upsample,
)
from waferscope.protocols.inference.model import Model, load_model, start_model
from waferscope.protocols.inference.onnx_runtime import (
    InferenceExtraMissingError,
    OnnxRuntimeRunner,
    available_providers,
)
from waferscope.protocols.inference.overlay import (
    classification_overlay_png,
    map_png,
    overlay_png,
    result_map_png,
    result_overlay_png,
)
from waferscope.protocols.inference.pipeline import (
    Classification,
    PipelineSettings,
    Prediction,
    PreparedWafer,
    StageTimes,
    WaferRejectedError,
    batched,
    classify_batch,
    prepare,
    read_wafers,
)
from waferscope.protocols.inference.results import summary, wafer_result
from waferscope.protocols.inference.runner import EngineOutputs, Runner, RunnerUnavailableError

__all__ = [
    "Bundle",
    "Classification",
    "Classified",
    "EngineOutputs",
    "HotRegion",
    "InferenceExtraMissingError",
    "Model",
    "OnnxRuntimeRunner",
    "PipelineSettings",
    "Prediction",
    "PreparedWafer",
    "Runner",
    "RunnerUnavailableError",
    "StageTimes",
    "WaferRejectedError",
    "available_providers",
    "batched",
    "classification_overlay_png",
    "classify_batch",
    "classify_batches",
    "classify_source",
    "classify_wafers",
    "die_relevance",
    "gradcam",
    "gradcam_maps",
    "hot_regions",
    "load_bundle",
    "load_model",
    "map_png",
    "overlay_png",
    "prepare",
    "read_wafers",
    "result_map_png",
    "result_overlay_png",
    "start_model",
    "summary",
    "upsample",
    "wafer_result",
]
