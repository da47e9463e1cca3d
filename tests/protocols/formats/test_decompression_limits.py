"""Decompression bombs: gzip, bzip2 and xz inputs are refused past a size or ratio limit."""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import pickle
from collections.abc import Callable
from pathlib import Path

import pytest

from waferscope.protocols.errors import DecompressionLimitError, FormatError
from waferscope.protocols.formats import Source, read_maps
from waferscope.protocols.formats import base as formats_base

CODECS: dict[str, Callable[[bytes], bytes]] = {
    "gzip": gzip.compress,
    "bzip2": bz2.compress,
    "xz": lzma.compress,
}


def csv_bomb(size: int) -> bytes:
    """A valid-looking CSV die list that repeats one row up to ``size`` bytes."""
    row = b"3,4,1\n"
    return b"x,y,bin\n" + row * (size // len(row))


@pytest.mark.parametrize("codec", list(CODECS))
def test_size_limit_refuses_a_stream_that_expands_too_far(codec: str) -> None:
    bomb = CODECS[codec](b"\0" * (4 << 20))
    source = Source("bomb", io.BytesIO(bomb), max_decompressed=1 << 20)
    with pytest.raises(DecompressionLimitError) as info:
        source.stream.read()
    err = info.value
    assert err.format == codec and err.location.source == "bomb"
    assert "1,048,576-byte limit" in str(err)
    assert isinstance(err, FormatError)  # the edge and the CLI treat it as a bad file


def test_ratio_limit_refuses_a_bomb_before_the_size_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(formats_base, "RATIO_FLOOR_BYTES", 1 << 20)
    path = tmp_path / "lot.csv.gz"
    path.write_bytes(gzip.compress(csv_bomb(16 << 20), compresslevel=9))
    with pytest.raises(DecompressionLimitError, match=r"times .* past the 200x limit"):
        list(read_maps(path))


def test_real_bomb_through_the_reader_is_one_typed_error(tmp_path: Path) -> None:
    """Default limits: a die list of 80 MiB in ~250 KB of gzip stops at the ratio check."""
    path = tmp_path / "bomb.csv.gz"
    path.write_bytes(gzip.compress(csv_bomb(80 << 20), compresslevel=9))
    assert path.stat().st_size < 1_000_000
    with pytest.raises(DecompressionLimitError) as info:
        list(read_maps(path))
    assert info.value.location.source == str(path)
    restored = pickle.loads(pickle.dumps(info.value))  # crosses process pools unchanged
    assert type(restored) is DecompressionLimitError and str(restored) == str(info.value)


def test_real_compressed_tester_files_stay_within_the_limits(tester_dir: Path) -> None:
    for rel in ("stdf/lot2.stdf.gz", "stdf/a595.stdf.gz", "tsk/001.QR2352-D5U278-CP-1.gz"):
        maps = list(read_maps(tester_dir / rel))
        assert maps, rel
