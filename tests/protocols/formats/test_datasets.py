"""WM-811K and MixedWM38 dataset readers and the array-level loader."""

from __future__ import annotations

import collections
import contextlib
import gzip
import hashlib
import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from waferscope.protocols.datasets import LabelledArrays, load_labelled_arrays
from waferscope.protocols.errors import FormatError, TruncatedError
from waferscope.protocols.formats.base import ReadOptions, Source
from waferscope.protocols.formats.datasets.reader import (
    MixedWm38Format,
    Wm811kFormat,
    maps_npy_shape,
)

WM811K_CLASSES = (
    "Center", "Donut", "Edge-Loc", "Edge-Ring", "Loc", "Near-full", "Random", "Scratch", "none"
)  # fmt: skip
MIXED_NAMES = ("Center", "Donut", "Edge-Loc", "Edge-Ring", "Loc", "Near-full", "Scratch", "Random")
# Class counts as published in the data README (not computed by the code under test).
README_COUNTS = {
    "train": [2576, 333, 3113, 5808, 2156, 89, 520, 716, 22037],
    "val": [859, 111, 1038, 1936, 718, 30, 173, 239, 7346],
}
README_MIXED_SIZES = {"train": 13_686, "val": 5_703}


# ------------------------------------------------------------------------ synthetic archives
def wm811k_bytes(
    grids: list[np.ndarray], labels: list[int], *, compressed: bool = True, **override: object
) -> bytes:
    arrays: dict[str, object] = {
        "maps": np.concatenate([m.ravel() for m in grids]).astype(np.uint8)
        if grids
        else np.zeros(0, np.uint8),
        "shapes": np.array([m.shape for m in grids], dtype=np.int32).reshape(-1, 2),
        "offsets": np.concatenate([[0], np.cumsum([m.size for m in grids])]).astype(np.int64),
        "label": np.array(labels, dtype=np.int8),
        "class_names": np.array(WM811K_CLASSES),
    }
    arrays.update(override)
    buf = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(buf, **arrays)  # type: ignore[operator]
    return buf.getvalue()


def mixed_bytes(maps: np.ndarray, labels: np.ndarray, *, compressed: bool = True) -> bytes:
    buf = io.BytesIO()
    save = np.savez_compressed if compressed else np.savez
    save(buf, maps=maps, labels=labels, label_names=np.array(MIXED_NAMES))
    return buf.getvalue()


def read_all(fmt: Wm811kFormat | MixedWm38Format, data: bytes) -> list:
    return list(fmt.read(Source.from_bytes(data, name="mem.npz"), ReadOptions()))


SMALL_MAPS = [
    np.array([[0, 1, 0], [1, 2, 1]], np.uint8),
    np.array([[1, 1], [2, 0], [0, 1], [1, 1]], np.uint8),
]


# ------------------------------------------------------------------------ sniffing
@pytest.mark.parametrize("compressed", [True, False])
def test_sniff_tells_the_layouts_apart(compressed: bool) -> None:
    flat = wm811k_bytes(SMALL_MAPS, [0, 8], compressed=compressed)
    cube = mixed_bytes(
        np.zeros((3, 5, 5), np.uint8), np.zeros((3, 8), np.uint8), compressed=compressed
    )
    assert maps_npy_shape(flat[:8192]) == (14,)
    assert maps_npy_shape(cube[:8192]) == (3, 5, 5)
    assert Wm811kFormat().sniff(flat[:8192]) and not MixedWm38Format().sniff(flat[:8192])
    assert MixedWm38Format().sniff(cube[:8192]) and not Wm811kFormat().sniff(cube[:8192])


def test_sniff_finds_maps_when_it_is_not_the_first_member() -> None:
    buf = io.BytesIO()
    np.savez(buf, label=np.zeros(2, np.int8), maps=np.zeros(4, np.uint8))
    assert maps_npy_shape(buf.getvalue()) == (4,)


@pytest.mark.parametrize(
    "head",
    [b"", b"PK\x03\x04", b"PK\x03\x04" + b"\x00" * 40, b"hello, world\n", b"\x93NUMPY\x01\x00"],
)
def test_sniff_rejects_other_content(head: bytes) -> None:
    assert not Wm811kFormat().sniff(head)
    assert not MixedWm38Format().sniff(head)


def test_sniff_rejects_an_npz_whose_maps_are_not_uint8() -> None:
    buf = io.BytesIO()
    np.savez_compressed(buf, maps=np.zeros(10, np.float32))
    assert not Wm811kFormat().sniff(buf.getvalue()[:8192])


# ------------------------------------------------------------------------ reading synthetic
def test_wm811k_reader_yields_one_labelled_map_per_entry() -> None:
    maps = read_all(Wm811kFormat(), wm811k_bytes(SMALL_MAPS, [3, 8]))
    assert [m.labels for m in maps] == [("Edge-Ring",), ("none",)]
    for i, (wafer, grid) in enumerate(zip(maps, SMALL_MAPS, strict=True)):
        assert np.array_equal(wafer.to_dense(), grid[grid.any(axis=1)][:, grid.any(axis=0)])
        assert wafer.provenance.record_index == i and wafer.provenance.format == "wm811k"
        assert (wafer.info.grid_rows, wafer.info.grid_columns) == grid.shape
        assert wafer.orientation.mark is None
    # independent count: pass = value 1, fail = value 2
    assert (maps[0].pass_count, maps[0].fail_count) == (3, 1)
    assert (maps[1].pass_count, maps[1].fail_count) == (5, 1)


def test_mixedwm38_labels_are_the_set_bits_or_none() -> None:
    grids = np.zeros((3, 4, 4), np.uint8)
    grids[:, 1:3, 1:3] = 1
    grids[1, 1, 1] = 2
    labels = np.zeros((3, 8), np.uint8)
    labels[1, [0, 6]] = 1
    labels[2, 3] = 1
    maps = read_all(MixedWm38Format(), mixed_bytes(grids, labels))
    assert [m.labels for m in maps] == [("none",), ("Center", "Scratch"), ("Edge-Ring",)]
    assert maps[1].fail_count == 1 and maps[1].die_count == 4


def test_gzip_compressed_archive_is_read_from_memory() -> None:
    data = gzip.compress(wm811k_bytes(SMALL_MAPS, [0, 1]))
    source = Source.from_bytes(data, name="mem.npz.gz")
    assert Wm811kFormat().sniff(source.head)
    assert len(list(Wm811kFormat().read(source, ReadOptions()))) == 2


def test_cut_gzip_archive_is_a_truncated_error() -> None:
    data = gzip.compress(wm811k_bytes(SMALL_MAPS, [0, 1]))
    source = Source.from_bytes(data[: len(data) - 20], name="cut.npz.gz")
    with pytest.raises(FormatError):
        list(Wm811kFormat().read(source, ReadOptions()))


@pytest.mark.parametrize(
    ("override", "key", "index"),
    [
        ({"offsets": np.array([0, 6, 13], np.int64)}, "offsets", "index 1"),
        ({"offsets": np.array([1, 6, 14], np.int64)}, "offsets", "index 0"),
        ({"label": np.array([0, 9], np.int8)}, "label", "index 1"),
        ({"label": np.array([0, -1], np.int8)}, "label", "index 1"),
        ({"shapes": np.array([[2, 3], [0, 2]], np.int32)}, "shapes", "index 1"),
        ({"shapes": np.array([[2, 3]], np.int32)}, "shapes", None),
        (
            {"maps": np.array([0, 1, 0, 1, 2, 1, 1, 1, 2, 0, 0, 3, 1, 1], np.uint8)},
            "maps",
            "index 1",
        ),
        ({"maps": np.zeros(14, np.int16)}, "maps", None),
        ({"class_names": np.array([1, 2, 3])}, "class_names", None),
    ],
)
def test_layout_violations_name_the_key_and_index(
    override: dict[str, object], key: str, index: str | None
) -> None:
    data = wm811k_bytes(SMALL_MAPS, [0, 1], **override)
    with pytest.raises(FormatError) as info:
        read_all(Wm811kFormat(), data)
    record = info.value.location.record or ""
    assert f"key {key!r}" in record
    if index:
        assert index in record


def test_missing_key_and_pickled_objects_are_format_errors() -> None:
    buf = io.BytesIO()
    np.savez(buf, maps=np.zeros(4, np.uint8), shapes=np.ones((1, 2), np.int32))
    with pytest.raises(FormatError, match="missing array 'offsets'"):
        read_all(Wm811kFormat(), buf.getvalue())
    buf = io.BytesIO()
    np.savez(buf, maps=np.zeros(4, np.uint8), label=np.array([object()], dtype=object))
    with pytest.raises(FormatError):
        read_all(Wm811kFormat(), buf.getvalue())


def test_mixed_labels_must_be_multi_hot() -> None:
    labels = np.zeros((2, 8), np.uint8)
    labels[1, 2] = 5
    with pytest.raises(FormatError, match="multi-hot") as info:
        read_all(MixedWm38Format(), mixed_bytes(np.zeros((2, 3, 3), np.uint8), labels))
    assert info.value.location.record == "key 'labels', index 1"


def test_declared_size_larger_than_the_member_is_refused() -> None:
    member = io.BytesIO()
    np.lib.format.write_array(member, np.zeros(14, np.uint8))
    lying = member.getvalue().replace(b"'shape': (14,)", b"'shape': (99,)")
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("maps.npy", lying)
    with pytest.raises(FormatError, match="declares"):
        read_all(Wm811kFormat(), archive.getvalue())


def test_member_budget_stops_zip_bombs() -> None:
    data = wm811k_bytes([np.zeros((400, 400), np.uint8)], [8])
    source = Source.from_bytes(data, name="bomb.npz")
    with pytest.raises(FormatError, match="size limit"):
        list(Wm811kFormat().read(source, ReadOptions(max_text_bytes=50_000)))


# ------------------------------------------------------------------------ array API
def test_load_labelled_arrays_on_a_synthetic_file(tmp_path: Path) -> None:
    path = tmp_path / "tiny.npz"
    path.write_bytes(wm811k_bytes(SMALL_MAPS, [2, 8]))
    arrays = load_labelled_arrays(path)
    assert isinstance(arrays, LabelledArrays)
    assert arrays.format == "wm811k" and not arrays.multi_label and len(arrays) == 2
    assert arrays.targets.tolist() == [2, 8]
    assert [m.shape for m in arrays.maps] == [(2, 3), (4, 2)]
    assert np.array_equal(arrays.maps[1], SMALL_MAPS[1])
    assert not arrays.maps[0].flags.writeable
    assert arrays.labels_of(0) == ("Edge-Loc",)
    assert arrays.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert arrays.stacked is None


def test_load_labelled_arrays_mixed_and_gzip(tmp_path: Path) -> None:
    grids = np.ones((2, 6, 6), np.uint8)
    labels = np.zeros((2, 8), np.uint8)
    labels[0, 1] = 1
    path = tmp_path / "mixed.npz.gz"
    path.write_bytes(gzip.compress(mixed_bytes(grids, labels)))
    arrays = load_labelled_arrays(path)
    assert arrays.format == "mixedwm38" and arrays.multi_label
    assert arrays.targets.shape == (2, 8) and arrays.stacked is not None
    assert arrays.labels_of(0) == ("Donut",) and arrays.labels_of(1) == ("none",)


def test_load_labelled_arrays_errors_are_format_errors(tmp_path: Path) -> None:
    with pytest.raises(FormatError, match="cannot open"):
        load_labelled_arrays(tmp_path / "missing.npz")
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not an archive")
    with pytest.raises(FormatError):
        load_labelled_arrays(bad)


# ------------------------------------------------------------------------ hostile bytes
HOSTILE = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@HOSTILE
@given(st.binary(max_size=600))
def test_random_bytes_raise_only_format_errors(data: bytes) -> None:
    for fmt in (Wm811kFormat(), MixedWm38Format()):
        fmt.sniff(data)
        for payload in (data, b"PK\x03\x04" + data):
            with contextlib.suppress(FormatError):
                read_all(fmt, payload)


_VALID = wm811k_bytes(SMALL_MAPS, [0, 1], compressed=False)
_VALID_DEFLATED = wm811k_bytes(SMALL_MAPS, [0, 1])


@HOSTILE
@given(
    st.sampled_from([_VALID, _VALID_DEFLATED]),
    st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), max_size=6),
    st.integers(0, 10_000),
)
def test_mutated_and_truncated_archives_raise_only_format_errors(
    base: bytes, flips: list[tuple[int, int]], cut: int
) -> None:
    data = bytearray(base)
    for position, value in flips:
        data[position % len(data)] = value
    for payload in (bytes(data), bytes(data[: cut % len(data)])):
        Wm811kFormat().sniff(payload[:8192])
        try:
            maps = read_all(Wm811kFormat(), payload)
        except FormatError:
            continue
        assert all(m.die_count >= 0 for m in maps)


# ------------------------------------------------------------------------ real data
def test_real_heads_are_sniffed(data_dir: Path) -> None:
    for path, fmt in (
        (data_dir / "wm811k" / "train.npz", Wm811kFormat()),
        (data_dir / "mixedwm38" / "val.npz", MixedWm38Format()),
    ):
        with Source.open(path) as source:
            other = MixedWm38Format() if isinstance(fmt, Wm811kFormat) else Wm811kFormat()
            assert fmt.sniff(source.head) and not other.sniff(source.head)


@pytest.mark.parametrize("split", ["train", "val"])
def test_wm811k_arrays_match_the_published_class_counts(data_dir: Path, split: str) -> None:
    path = data_dir / "wm811k" / f"{split}.npz"
    arrays = load_labelled_arrays(path)
    assert arrays.class_names == WM811K_CLASSES
    assert np.bincount(arrays.targets, minlength=9).tolist() == README_COUNTS[split]
    # an independent look at the same file: map i is maps[offsets[i]:offsets[i+1]]
    with np.load(path) as raw:
        offsets, shapes, flat = raw["offsets"], raw["shapes"], raw["maps"]
        for i in (0, 1234, len(arrays) - 1):
            expected = flat[offsets[i] : offsets[i + 1]].reshape(shapes[i])
            assert np.array_equal(arrays.maps[i], expected)
    assert arrays.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("split", ["train", "val"])
def test_mixedwm38_arrays_match_the_published_sizes(data_dir: Path, split: str) -> None:
    arrays = load_labelled_arrays(data_dir / "mixedwm38" / f"{split}.npz")
    assert len(arrays) == README_MIXED_SIZES[split]
    assert arrays.class_names == MIXED_NAMES
    assert arrays.stacked is not None and arrays.stacked.shape == (len(arrays), 52, 52)


def test_wm811k_val_reader_counts_match_the_readme(data_dir: Path) -> None:
    path = data_dir / "wm811k" / "val.npz"
    with Source.open(path) as source:
        counts = collections.Counter(
            m.labels[0] for m in Wm811kFormat().read(source, ReadOptions())
        )
    assert [counts[name] for name in WM811K_CLASSES] == README_COUNTS["val"]


def test_mixedwm38_reader_yields_every_val_map(data_dir: Path) -> None:
    path = data_dir / "mixedwm38" / "val.npz"
    with np.load(path) as raw:
        first = raw["maps"][0]
        first_bits = raw["labels"][0]
    with Source.open(path) as source:
        maps = list(MixedWm38Format().read(source, ReadOptions()))
    assert len(maps) == README_MIXED_SIZES["val"]
    assert maps[0].die_count == int(np.count_nonzero(first))
    assert maps[0].fail_count == int(np.count_nonzero(first == 2))
    assert maps[0].labels == tuple(n for n, b in zip(MIXED_NAMES, first_bits, strict=True) if b)


@pytest.mark.slow
def test_wm811k_train_reader_counts_match_the_readme(data_dir: Path) -> None:
    with Source.open(data_dir / "wm811k" / "train.npz") as source:
        counts = collections.Counter(
            m.labels[0] for m in Wm811kFormat().read(source, ReadOptions())
        )
    assert [counts[name] for name in WM811K_CLASSES] == README_COUNTS["train"]


def test_truncated_error_is_a_format_error() -> None:
    assert issubclass(TruncatedError, FormatError)
