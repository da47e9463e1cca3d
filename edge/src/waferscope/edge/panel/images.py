"""A small cache of the panel's PNG pictures of stored results.

The pictures are drawn on demand by protocols (``result_map_png``, ``result_overlay_png`` in
:mod:`waferscope.protocols.inference.overlay`)."""

from __future__ import annotations

import threading
from collections import OrderedDict


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
