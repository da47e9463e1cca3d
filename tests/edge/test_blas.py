"""numpy's OpenBLAS can be pinned to one thread (the agent does, for steady encode latency)."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from waferscope.edge.blas import limit_blas_threads


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/maps")
def test_openblas_thread_count_can_be_set() -> None:
    path = limit_blas_threads(1)
    assert path is not None and "openblas" in path.lower()
    a = np.ones((64, 265), np.float32)
    assert float((a @ a.T)[0, 0]) == 265.0  # still computes
