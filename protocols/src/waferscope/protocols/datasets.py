"""Labelled wafer-map datasets as plain arrays, for training without per-map objects.

:func:`load_labelled_arrays` loads WM-811K or MixedWM38 (the ``.npz`` layouts described in
:mod:`waferscope.protocols.formats.datasets.reader`, told apart by content, validated the same
way as the readers) and returns the maps as read-only 2-D views together with the targets, the class
names and the SHA-256 digest of the file, so that a trained model can name exactly what it saw.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from waferscope.protocols.errors import FormatError
from waferscope.protocols.formats.base import ReadOptions, Source
from waferscope.protocols.formats.datasets.reader import (
    MIXEDWM38,
    NORMAL_LABEL,
    WM811K,
    labels_of,
    load_dataset,
)

__all__ = ["MIXEDWM38", "NORMAL_LABEL", "WM811K", "LabelledArrays", "load_labelled_arrays"]


@dataclass(frozen=True, slots=True)
class LabelledArrays:
    """A whole labelled dataset as arrays.

    ``maps[i]`` is a read-only 2-D uint8 view (0 no die, 1 pass, 2 fail). ``targets`` is the class
    index per map, shape (N,) int64, when ``multi_label`` is false (WM-811K), or the multi-hot
    matrix, shape (N, K) uint8, when it is true (MixedWM38; an all-zero row is a normal wafer).
    ``stacked`` is the (N, rows, cols) array when the file stores one (MixedWM38), else None.
    ``sha256`` is the hex digest of the file's bytes as stored (compressed or not).
    """

    format: str
    maps: list[npt.NDArray[np.uint8]]
    targets: npt.NDArray[np.int64] | npt.NDArray[np.uint8]
    class_names: tuple[str, ...]
    multi_label: bool
    sha256: str
    source: str
    stacked: npt.NDArray[np.uint8] | None = None

    def __len__(self) -> int:
        return len(self.maps)

    def labels_of(self, i: int) -> tuple[str, ...]:
        """The class names of map ``i``, as the readers give them (``("none",)`` if normal)."""
        return labels_of(self.targets[i], self.class_names)


def load_labelled_arrays(
    path: str | os.PathLike[str], *, max_bytes: int = ReadOptions().max_text_bytes
) -> LabelledArrays:
    """Load a WM-811K or MixedWM38 ``.npz`` (optionally gzip/bzip2/xz compressed) as arrays.

    ``max_bytes`` caps what the archive's members (and a compressed file) may inflate to.
    Errors are :class:`FormatError` naming the file and, for layout problems, the key and index.
    """
    p = Path(path)
    try:
        with p.open("rb") as fh:
            digest = hashlib.file_digest(fh, "sha256").hexdigest()
    except OSError as exc:
        raise FormatError(f"cannot open: {exc.strerror or exc}", source=str(p)) from None
    with Source.open(p) as source:
        data = load_dataset(source, ReadOptions(max_text_bytes=max_bytes))
    return LabelledArrays(
        format=data.kind,
        maps=data.maps,
        targets=data.targets,
        class_names=data.class_names,
        multi_label=data.kind == MIXEDWM38,
        sha256=digest,
        source=str(p),
        stacked=data.stacked,
    )
