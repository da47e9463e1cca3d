"""PNG pictures of stored results for the panel (drawn on demand, kept in a small cache)."""

from __future__ import annotations

import threading
from collections import OrderedDict

import numpy as np

from waferscope.edge.gradcam import HotRegion, die_relevance
from waferscope.edge.overlay import map_png, overlay_png
from waferscope.protocols.messages import unpack_states
from waferscope.protocols.pb import result_pb2


class PictureCache:
    def __init__(self, size: int = 256) -> None:
        self._items: OrderedDict[tuple[str, str], bytes] = OrderedDict()
        self._size = size
        self._lock = threading.Lock()

    def get(self, key: tuple[str, str], make: object) -> bytes:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        data: bytes = make()  # type: ignore[operator]
        with self._lock:
            self._items[key] = data
            while len(self._items) > self._size:
                self._items.popitem(last=False)
        return data


def result_map_png(result: result_pb2.WaferResult, max_px: int = 240) -> bytes:
    return map_png(unpack_states(result.map), max_px=max_px)


def result_overlay_png(result: result_pb2.WaferResult, max_px: int = 640) -> bytes:
    states = unpack_states(result.map)
    origin = (result.map.origin_x, result.map.origin_y)
    regions = [
        HotRegion(r.x_min, r.y_min, r.x_max, r.y_max, r.score, r.fail_count, ())
        for r in result.hot_regions
    ]
    hm = result.heatmap
    if hm.rows and hm.cols and len(hm.data) == hm.rows * hm.cols:
        heat = np.frombuffer(hm.data, dtype=np.uint8).reshape(hm.rows, hm.cols)
        relevance = die_relevance(heat, *states.shape)
    else:
        relevance = np.zeros(states.shape, dtype=np.float32)
    title = f"{result.pattern.name} {result.confidence:.0%}"
    return overlay_png(states, relevance, regions, origin, max_px=max_px, title=title)
