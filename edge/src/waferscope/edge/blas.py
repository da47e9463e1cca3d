"""Keep numpy's BLAS single-threaded in the agent.

The model-input encoding pools a map with two small matrix products per channel. OpenBLAS
splits even these across threads, and on a busy two-core edge box those threads wait for each
other: encoding the 254 x 265 prober map took 0.6 ms at the median but 12-100 ms at the 99th
percentile with two BLAS threads, 0.4 / 0.7 ms with one. The engine's own threads are
onnxruntime's (``model.threads``), not BLAS's.
"""

from __future__ import annotations

import ctypes
import logging
import sys
from pathlib import Path

log = logging.getLogger(__name__)

_SETTERS = (
    "scipy_openblas_set_num_threads64_",
    "scipy_openblas_set_num_threads",
    "openblas_set_num_threads64_",
    "openblas_set_num_threads",
)


def limit_blas_threads(threads: int = 1) -> str | None:
    """Set the thread count of the OpenBLAS numpy loaded; the library's path, or None."""
    import numpy  # noqa: F401 - make sure numpy's BLAS is loaded

    if not sys.platform.startswith("linux"):
        return None
    try:
        maps = Path("/proc/self/maps").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    libraries = sorted(
        {
            line.split()[-1]
            for line in maps.splitlines()
            if "openblas" in line.lower() and "/" in line
        }
    )
    for path in libraries:
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for name in _SETTERS:
            setter = getattr(lib, name, None)
            if setter is not None:
                setter(ctypes.c_int(threads))
                log.debug("BLAS threads set to %d in %s", threads, path)
                return path
    return None
