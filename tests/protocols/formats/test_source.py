"""Source: compression undone by magic bytes; truncated and corrupt containers handled."""

from __future__ import annotations

import bz2
import gzip
import lzma
from pathlib import Path

import pytest

from waferscope.protocols.errors import FormatError, UnknownFormatError
from waferscope.protocols.formats import detect, read_maps
from waferscope.protocols.formats.base import HEAD_SIZE, Source

PAYLOAD = bytes(range(256)) * 200  # 51,200 bytes, larger than the head


@pytest.mark.parametrize(
    ("codec", "pack"),
    [(None, lambda b: b), ("gzip", gzip.compress), ("bzip2", bz2.compress), ("xz", lzma.compress)],
)
def test_compression_is_undone_and_head_is_peeked(codec: str | None, pack: object) -> None:
    with Source.from_bytes(pack(PAYLOAD), name="x") as src:  # type: ignore[operator]
        assert src.compression == codec
        assert src.head == PAYLOAD[:HEAD_SIZE]
        assert src.stream.read() == PAYLOAD  # the head did not eat the stream
        assert not src.truncated


def test_truncated_gzip_reads_as_early_end_and_is_flagged() -> None:
    data = gzip.compress(PAYLOAD)[:-200]
    with Source.from_bytes(data, name="cut.gz") as src:
        got = src.stream.read()
        assert 0 < len(got) < len(PAYLOAD)
        assert src.truncated


def test_corrupt_gzip_is_a_format_error_naming_the_codec() -> None:
    data = bytearray(gzip.compress(PAYLOAD))
    data[40:60] = b"\x00" * 20
    with pytest.raises(FormatError) as exc, Source.from_bytes(bytes(data), name="bad.gz") as src:
        src.stream.read()
    assert "bad.gz" in str(exc.value) and "gzip" in str(exc.value)


def test_read_all_refuses_more_than_the_limit() -> None:
    with Source.from_bytes(PAYLOAD, name="big") as src, pytest.raises(FormatError, match="limit"):
        src.read_all(1000)


def test_missing_file_and_empty_and_unknown_content(tmp_path: Path) -> None:
    with pytest.raises(FormatError, match="cannot open"):
        list(read_maps(tmp_path / "nope.stdf"))
    empty = tmp_path / "empty.bin"
    empty.write_bytes(b"")
    with pytest.raises(UnknownFormatError, match="empty"):
        list(read_maps(empty))
    junk = tmp_path / "junk.stdf"  # the extension must not matter
    junk.write_bytes(b"\x00\x01\x02 this is not a wafer map \xff" * 10)
    with Source.open(junk) as src, pytest.raises(UnknownFormatError) as exc:
        detect(src)
    assert "junk.stdf" in str(exc.value) and "byte 0" in str(exc.value)


def test_retest_policies_on_one_die_list() -> None:
    from waferscope.protocols.formats.base import RetestPolicy, select_retests

    x = [0, 1, 0, 2, 0, 1]
    y = [0, 0, 0, 0, 0, 0]
    passed = [False, True, True, True, False, False]  # die (0,0): F, P, F; die (1,0): P, F
    keep, retested, extra = select_retests(x, y, passed, RetestPolicy.LAST)
    assert (keep.tolist(), retested, extra) == ([3, 4, 5], 2, 3)
    assert select_retests(x, y, passed, RetestPolicy.FIRST)[0].tolist() == [0, 1, 3]
    assert select_retests(x, y, passed, RetestPolicy.BEST)[0].tolist() == [1, 2, 3]
    assert select_retests(x, y, passed, RetestPolicy.ALL)[0].tolist() == list(range(6))
    assert select_retests([], [], [], RetestPolicy.LAST)[0].tolist() == []
