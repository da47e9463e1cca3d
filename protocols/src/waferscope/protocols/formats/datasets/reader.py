"""The labelled wafer-map datasets WM-811K and MixedWM38, stored as numpy ``.npz`` archives.

Layouts (the keys of the archive; values 0 = no die, 1 = pass die, 2 = fail die):

* **WM-811K** (MIR-WM811K, Wu et al., IEEE Trans. Semicond. Manuf. 28(1), 2015): maps of many
  sizes concatenated into one flat ``maps`` (uint8); ``shapes`` (N, 2) rows and columns of each
  map; ``offsets`` (N + 1) so that map *i* is ``maps[offsets[i]:offsets[i + 1]]`` reshaped to
  ``shapes[i]``; ``label`` (N) an index into ``class_names`` (9 names, the last ``none``).
* **MixedWM38** (Wang et al., IEEE Trans. Semicond. Manuf., 2020): ``maps`` (N, 52, 52) uint8;
  ``labels`` (N, K) multi-hot in the order of ``label_names`` (K = 8); all zeros = normal.

Detection is by content. Both files are zip archives (the ``.npz`` container of
``numpy.savez``/``savez_compressed``) whose first member is ``maps.npy``. The first 8 KiB cannot
show the other member names when ``maps.npy`` is large and deflated, so :func:`maps_npy_shape`
inflates the start of that member (raw deflate, ``zlib.decompressobj(-15)``) and reads the
``.npy`` header (format described in ``numpy.lib.format``): a 1-D ``maps`` is the flat WM-811K
layout, a 3-D one is MixedWM38. Stored (uncompressed ``np.savez``) members are read directly.

Reading loads the arrays with ``allow_pickle=False``. A compressed (gzip, bzip2, xz) archive or
one without a file path is read into memory, up to ``ReadOptions.max_text_bytes``. The layout is
validated before anything is yielded; a violation is a :class:`FormatError` naming the key and
the index. Each map becomes one :class:`WaferMap` (``record_index`` = its index) whose
``labels`` are:

* WM-811K: ``(class_names[label],)``, e.g. ``("Edge-Ring",)`` or ``("none",)``;
* MixedWM38: the names of the set bits in ``label_names`` order, or ``("none",)`` when no bit is
  set (the WM-811K name for a normal wafer, so both datasets share it).

Datasets declare no wafer orientation: maps are kept as stored (row = y growing down, column = x
growing right) with the orientation mark unknown.

For training, :func:`waferscope.protocols.datasets.load_labelled_arrays` returns the arrays
themselves (views, no per-map objects) with the targets and a SHA-256 digest of the file.
"""

from __future__ import annotations

import io
import struct
import tokenize
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, ClassVar, Final

import numpy as np
import numpy.typing as npt

from waferscope.protocols.errors import FormatError, TruncatedError
from waferscope.protocols.formats.base import ReadOptions, Source
from waferscope.protocols.wafermap import FAIL_DIE, Orientation, Provenance, WaferInfo, WaferMap

__all__ = [
    "MIXEDWM38",
    "NORMAL_LABEL",
    "WM811K",
    "Dataset",
    "MixedWm38Format",
    "Wm811kFormat",
    "labels_of",
    "load_dataset",
    "maps_npy_shape",
]

NORMAL_LABEL: Final = "none"

_ZIP_LOCAL_HEADER: Final = b"PK\x03\x04"
_ZIP_STORED: Final = 0
_ZIP_DEFLATED: Final = 8
_MAPS_MEMBER: Final = b"maps.npy"
_NPY_MAGIC: Final = b"\x93NUMPY"

WM811K: Final = "wm811k"
MIXEDWM38: Final = "mixedwm38"


# --------------------------------------------------------------------------- sniffing
@dataclass(frozen=True, slots=True)
class _NpyHeader:
    shape: tuple[int, ...]
    dtype: np.dtype[Any]
    length: int  # bytes before the array data


def _npy_header_shape(prefix: bytes) -> _NpyHeader | None:
    """Shape, dtype and size of the header at the start of a ``.npy`` file, else None."""
    if not prefix.startswith(_NPY_MAGIC):
        return None
    stream = io.BytesIO(prefix)
    try:
        major, _minor = np.lib.format.read_magic(stream)
        if major == 1:
            shape, _fortran, dtype = np.lib.format.read_array_header_1_0(stream)
        elif major in (2, 3):
            shape, _fortran, dtype = np.lib.format.read_array_header_2_0(stream)
        else:
            return None
    except (
        ValueError,
        TypeError,
        SyntaxError,
        EOFError,
        struct.error,
        OverflowError,
        MemoryError,
        RecursionError,
        tokenize.TokenError,
    ):
        return None
    return _NpyHeader(tuple(int(n) for n in shape), dtype, stream.tell())


def _zip64_compressed_size(extra: bytes, head: bytes, pos: int) -> int | None:
    """The compressed size from a local header's ZIP64 extra field, if it holds one."""
    uncompressed_sentinel = struct.unpack_from("<I", head, pos + 22)[0] == 0xFFFFFFFF
    at = 0
    while at + 4 <= len(extra):
        tag, size = struct.unpack_from("<HH", extra, at)
        body = extra[at + 4 : at + 4 + size]
        if tag == 0x0001:
            skip = 8 if uncompressed_sentinel else 0
            if len(body) < skip + 8:
                return None
            return int(struct.unpack_from("<Q", body, skip)[0])
        at += 4 + size
    return None


def maps_npy_shape(head: bytes) -> tuple[int, ...] | None:
    """The shape of the ``maps.npy`` member of an npz archive, from its first bytes only.

    Walks the zip local file headers present in ``head`` (PKWARE APPNOTE 4.3.7) until it finds
    ``maps.npy``, inflates the beginning of that member when it is deflated, and parses the
    ``.npy`` header. Returns None for anything else (including non-uint8 maps).
    """
    pos = 0
    while head[pos : pos + 4] == _ZIP_LOCAL_HEADER and pos + 30 <= len(head):
        flags, method = struct.unpack_from("<HH", head, pos + 6)
        compressed_size = struct.unpack_from("<I", head, pos + 18)[0]
        name_len, extra_len = struct.unpack_from("<HH", head, pos + 26)
        name = head[pos + 30 : pos + 30 + name_len]
        data_start = pos + 30 + name_len + extra_len
        if name == _MAPS_MEMBER:
            prefix = head[data_start:]
            if method == _ZIP_DEFLATED:
                try:
                    prefix = zlib.decompressobj(-15).decompress(prefix, 4096)
                except zlib.error:
                    return None
            elif method != _ZIP_STORED:
                return None
            parsed = _npy_header_shape(prefix)
            if parsed is None or parsed.dtype != np.dtype(np.uint8):
                return None
            return parsed.shape
        # Skip to the next member when its size is known up front: not when a data descriptor
        # follows the data (flag bit 3); a ZIP64 size lives in extra field 0x0001 (APPNOTE 4.5.3).
        if flags & 0x08:
            return None
        if compressed_size == 0xFFFFFFFF:
            compressed_size = _zip64_compressed_size(
                head[pos + 30 + name_len : data_start], head, pos
            )
            if compressed_size is None:
                return None
        pos = data_start + compressed_size
    return None


# --------------------------------------------------------------------------- loading
@dataclass(frozen=True, slots=True)
class Dataset:
    """A validated dataset: one read-only 2-D uint8 view per map plus the targets.

    ``targets`` is the class index per map, (N,) int64, for WM-811K and the multi-hot matrix,
    (N, K) uint8, for MixedWM38; ``stacked`` is MixedWM38's (N, rows, cols) array.
    """

    kind: str
    maps: list[npt.NDArray[np.uint8]]
    stacked: npt.NDArray[np.uint8] | None
    targets: npt.NDArray[np.int64] | npt.NDArray[np.uint8]
    class_names: tuple[str, ...]


def _error(
    reason: str, fmt: str, source: str, *, key: str | None = None, index: int | None = None
) -> FormatError:
    record = None
    if key is not None:
        record = f"key {key!r}" + (f", index {index}" if index is not None else "")
    return FormatError(reason, format=fmt, source=source, record=record)


def _open_npz(source: Source, options: ReadOptions, fmt: str) -> _Archive:
    """The archive, from the file itself when possible, else from memory."""
    loaded: object
    try:
        if source.path is not None and source.compression is None:
            loaded = np.load(source.path, allow_pickle=False)
        else:
            data = source.read_all(options.max_text_bytes)
            if source.truncated:
                raise TruncatedError(
                    f"the {source.compression} stream ends early", format=fmt, source=source.name
                )
            loaded = np.load(io.BytesIO(data), allow_pickle=False)
    except FormatError:
        raise
    except _LOAD_ERRORS as exc:
        raise _error(f"not a readable npz archive ({exc})", fmt, source.name) from None
    if not isinstance(loaded, np.lib.npyio.NpzFile):
        raise _error("not an npz archive (a single array or pickle)", fmt, source.name)
    return _Archive(loaded, source.name, options.max_text_bytes)


_LOAD_ERRORS: Final = (
    tokenize.TokenError,
    RecursionError,
    struct.error,
    OSError,
    ValueError,
    EOFError,
    KeyError,
    RuntimeError,
    NotImplementedError,
    MemoryError,
    zipfile.BadZipFile,
    zlib.error,
)


class _Archive:
    """An open npz archive plus the byte budget its members may still inflate to."""

    def __init__(self, npz: np.lib.npyio.NpzFile, source: str, budget: int) -> None:
        if npz.zip is None:
            raise _error("the npz archive is closed", "npz", source)
        self.npz = npz
        self.zip: zipfile.ZipFile = npz.zip
        self.source = source
        self.budget = budget

    def header(self, key: str, fmt: str) -> _NpyHeader:
        """Shape and dtype of one member, from its ``.npy`` header only."""
        if key not in self.npz.files:
            raise _error(
                f"missing array {key!r} (has {', '.join(self.npz.files)})",
                fmt,
                self.source,
                key=key,
            )
        try:
            with self.zip.open(f"{key}.npy") as member:
                parsed = _npy_header_shape(member.read(4096))
        except _LOAD_ERRORS as exc:
            raise _error(f"cannot read array ({exc})", fmt, self.source, key=key) from None
        if parsed is None:
            raise _error("not a valid .npy member", fmt, self.source, key=key)
        return parsed

    def array(self, key: str, fmt: str) -> npt.NDArray[Any]:
        """One member, once its declared size is known to match what the archive holds."""
        header = self.header(key, fmt)
        if header.dtype.hasobject:
            raise _error("object arrays are not allowed", fmt, self.source, key=key)
        try:
            stored = self.zip.getinfo(f"{key}.npy").file_size
            declared = int(np.prod(header.shape, dtype=np.float64)) * header.dtype.itemsize
            if declared > stored - header.length:
                raise _error(
                    f"header declares {declared:,} bytes of data but the member holds "
                    f"{stored - header.length:,}",
                    fmt,
                    self.source,
                    key=key,
                )
            if stored > self.budget:
                raise _error("the arrays inflate past the size limit", fmt, self.source, key=key)
            self.budget -= stored
            arr: npt.NDArray[Any] = self.npz[key]
        except FormatError:
            raise
        except _LOAD_ERRORS as exc:
            raise _error(f"cannot load array ({exc})", fmt, self.source, key=key) from None
        return arr


def _names(arr: npt.NDArray[Any], key: str, fmt: str, source: str) -> tuple[str, ...]:
    if arr.ndim != 1 or arr.dtype.kind not in "US" or arr.size == 0:
        raise _error(
            f"expected a non-empty 1-D array of strings, got {arr.dtype} {arr.shape}",
            fmt,
            source,
            key=key,
        )
    if arr.dtype.kind == "S":
        return tuple(bytes(v).decode("utf-8", "replace") for v in arr)
    return tuple(str(v) for v in arr)


def _require_uint8(arr: npt.NDArray[Any], key: str, fmt: str, source: str) -> None:
    if arr.dtype != np.uint8:
        raise _error(f"expected uint8 map values, got {arr.dtype}", fmt, source, key=key)


def _load_wm811k(archive: _Archive) -> Dataset:
    fmt, source = WM811K, archive.source
    flat = archive.array("maps", fmt)
    shapes = archive.array("shapes", fmt)
    offsets = archive.array("offsets", fmt)
    label = archive.array("label", fmt)
    names = _names(archive.array("class_names", fmt), "class_names", fmt, source)
    if flat.ndim != 1:
        raise _error(f"expected a flat 1-D array, got shape {flat.shape}", fmt, source, key="maps")
    for key, arr, ndim in (("shapes", shapes, 2), ("offsets", offsets, 1), ("label", label, 1)):
        if arr.dtype.kind not in "iu" or arr.ndim != ndim:
            raise _error(
                f"expected a {ndim}-D integer array, got {arr.dtype} {arr.shape}",
                fmt,
                source,
                key=key,
            )
    n = int(label.shape[0])
    if shapes.shape != (n, 2):
        raise _error(f"expected shape ({n}, 2), got {shapes.shape}", fmt, source, key="shapes")
    if offsets.shape != (n + 1,):
        raise _error(f"expected shape ({n + 1},), got {offsets.shape}", fmt, source, key="offsets")
    shapes64 = shapes.astype(np.int64)
    offsets64 = offsets.astype(np.int64)
    bad = np.flatnonzero((shapes64 <= 0).any(axis=1))
    if bad.size:
        i = int(bad[0])
        raise _error(
            f"map shape {tuple(int(v) for v in shapes64[i])} is not positive",
            fmt,
            source,
            key="shapes",
            index=i,
        )
    if n and int(offsets64[0]) != 0:
        raise _error("offsets must start at 0", fmt, source, key="offsets", index=0)
    sizes = shapes64[:, 0] * shapes64[:, 1]
    bad = np.flatnonzero(np.diff(offsets64) != sizes)
    if bad.size:
        i = int(bad[0])
        raise _error(
            f"offsets[{i + 1}] - offsets[{i}] = {int(offsets64[i + 1] - offsets64[i])} "
            f"but shapes[{i}] = {tuple(int(v) for v in shapes64[i])} holds {int(sizes[i])} cells",
            fmt,
            source,
            key="offsets",
            index=i,
        )
    if int(offsets64[-1]) != flat.shape[0]:
        raise _error(
            f"offsets end at {int(offsets64[-1])} but maps holds {flat.shape[0]} values",
            fmt,
            source,
            key="offsets",
            index=n,
        )
    bad = np.flatnonzero((label < 0) | (label >= len(names)))
    if bad.size:
        i = int(bad[0])
        raise _error(
            f"label {int(label[i])} is outside 0..{len(names) - 1} (class_names)",
            fmt,
            source,
            key="label",
            index=i,
        )
    _require_uint8(flat, "maps", fmt, source)
    if flat.size and int(flat.max()) > FAIL_DIE:
        pos = int(np.argmax(flat > FAIL_DIE))
        i = int(np.searchsorted(offsets64, pos, side="right")) - 1
        raise _error(
            f"map {i} holds value {int(flat[pos])}; only 0, 1, 2 are allowed",
            fmt,
            source,
            key="maps",
            index=i,
        )
    flat.flags.writeable = False
    bounds = offsets64.tolist()
    rows_cols = shapes64.tolist()
    views = [
        flat[bounds[i] : bounds[i + 1]].reshape(rows_cols[i][0], rows_cols[i][1]) for i in range(n)
    ]
    targets = label.astype(np.int64)
    targets.flags.writeable = False
    return Dataset(WM811K, views, None, targets, names)


def _load_mixedwm38(archive: _Archive) -> Dataset:
    fmt, source = MIXEDWM38, archive.source
    maps = archive.array("maps", fmt)
    labels = archive.array("labels", fmt)
    names = _names(archive.array("label_names", fmt), "label_names", fmt, source)
    if maps.ndim != 3:
        raise _error(f"expected shape (N, rows, cols), got {maps.shape}", fmt, source, key="maps")
    n = int(maps.shape[0])
    if labels.dtype.kind not in "iub" or labels.shape != (n, len(names)):
        raise _error(
            f"expected integer shape ({n}, {len(names)}), got {labels.dtype} {labels.shape}",
            fmt,
            source,
            key="labels",
        )
    bad = np.flatnonzero(((labels != 0) & (labels != 1)).any(axis=1))
    if bad.size:
        i = int(bad[0])
        raise _error("multi-hot labels must be 0 or 1", fmt, source, key="labels", index=i)
    _require_uint8(maps, "maps", fmt, source)
    if maps.size and int(maps.max()) > FAIL_DIE:
        i = int(np.argmax((maps > FAIL_DIE).any(axis=(1, 2))))
        raise _error(f"map {i} holds a value other than 0, 1, 2", fmt, source, key="maps", index=i)
    maps.flags.writeable = False
    targets = labels.astype(np.uint8)
    targets.flags.writeable = False
    return Dataset(MIXEDWM38, list(maps), maps, targets, names)


def _load(archive: _Archive, kind: str) -> Dataset:
    return _load_wm811k(archive) if kind == WM811K else _load_mixedwm38(archive)


def load_dataset(source: Source, options: ReadOptions, kind: str | None = None) -> Dataset:
    """Load and validate a WM-811K or MixedWM38 archive (``kind`` None: tell by content)."""
    archive = _open_npz(source, options, kind or "npz")
    with archive.npz:
        return _load(archive, kind or _kind_of(archive))


def _kind_of(archive: _Archive) -> str:
    """WM-811K or MixedWM38, from the declared shape of ``maps`` (the rule sniffing uses)."""
    shape = archive.header("maps", "npz").shape
    if len(shape) == 1:
        return WM811K
    if len(shape) == 3:
        return MIXEDWM38
    raise _error(
        f"maps has shape {shape}: neither the flat WM-811K layout (1-D) nor MixedWM38 (3-D)",
        "npz",
        archive.source,
        key="maps",
    )


# --------------------------------------------------------------------------- readers
class DatasetFormat:
    name: ClassVar[str]
    title: ClassVar[str]
    _ndim: ClassVar[int]

    def sniff(self, head: bytes) -> bool:
        shape = maps_npy_shape(head)
        return shape is not None and len(shape) == self._ndim

    def read(self, source: Source, options: ReadOptions) -> Iterator[WaferMap]:
        data = load_dataset(source, options, self.name)
        orientation = Orientation()
        for i, grid in enumerate(data.maps):
            if grid.size > options.max_dies:  # the limit is per wafer: a dataset holds many
                raise _error(
                    f"map of {grid.size:,} cells exceeds the limit of {options.max_dies:,} dies",
                    self.name,
                    source.name,
                    key="maps",
                    index=i,
                )
            yield WaferMap.from_dense(
                grid,
                provenance=Provenance(
                    source=source.name, format=self.name, wafer_index=i, record_index=i
                ),
                info=WaferInfo(
                    wafer_id=str(i), grid_rows=int(grid.shape[0]), grid_columns=int(grid.shape[1])
                ),
                orientation=orientation,
                labels=labels_of(data.targets[i], data.class_names),
            )


class Wm811kFormat(DatasetFormat):
    """WM-811K labelled maps (flat npz layout, one class per map)."""

    name: ClassVar[str] = WM811K
    title: ClassVar[str] = "WM-811K labelled wafer maps (npz: maps, shapes, offsets, label)"
    _ndim: ClassVar[int] = 1


class MixedWm38Format(DatasetFormat):
    """MixedWM38 mixed-type maps (N x 52 x 52 npz, multi-hot labels)."""

    name: ClassVar[str] = MIXEDWM38
    title: ClassVar[str] = "MixedWM38 mixed-type wafer maps (npz: maps, labels, label_names)"
    _ndim: ClassVar[int] = 3


def labels_of(target: npt.NDArray[Any], class_names: tuple[str, ...]) -> tuple[str, ...]:
    """Class names of one target: a class index (WM-811K) or a multi-hot row (MixedWM38).

    A multi-hot row without a set bit is a normal wafer, named :data:`NORMAL_LABEL`.
    """
    if target.ndim == 0:
        return (class_names[int(target)],)
    return tuple(class_names[int(b)] for b in np.flatnonzero(target)) or (NORMAL_LABEL,)
