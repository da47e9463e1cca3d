"""Every registered reader, through the registry: detection by content, and only typed errors.

Each format's own tests go deep; this file holds the contract every reader shares.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from waferscope.protocols.errors import FormatError
from waferscope.protocols.formats import Source, detect, list_formats, read_maps
from waferscope.protocols.formats.base import WaferFormat, WaferWriter

REAL_FILES = {
    "stdf/lot2.stdf.gz": "stdf",
    "stdf/a595.stdf.gz": "stdf",
    "tsk/001.QR2352-D5U278-CP-1.gz": "tsk",
    "klarf/CPS3TwithoutReview.001": "klarf",
    "klarf/impro02_QUU_NUU.000": "klarf",
    "klarf/impro02_klarf_no_defect.000": "klarf",
    "klarf/jklarf_klarf12DefectListExample.klarf": "klarf",
    "klarf/jklarf_klarf12Example.klarf": "klarf",
    "klarf/jklarf_klarfWithImagelist.klarf": "klarf",
    "klarf/jklarf_simple12.klarf": "klarf",
    "klarf/jklarf_simple18.klarf": "klarf",
    "klarf/jklarf_wierdKlarfWithNAs.klarf": "klarf",
}
NAMES = [f.name for f in list_formats()]


def test_registry_lists_every_format_once_with_the_protocol() -> None:
    assert NAMES == ["wm811k", "mixedwm38", "stdf", "e142", "klarf", "tsk", "csv"]
    for fmt in list_formats():
        assert isinstance(fmt, WaferFormat)
        assert fmt.title
    writers = {f.name for f in list_formats() if isinstance(f, WaferWriter) and hasattr(f, "write")}
    assert {"stdf", "tsk", "e142", "csv"} <= writers


@pytest.mark.parametrize(("rel", "expected"), sorted(REAL_FILES.items()))
def test_real_files_are_detected_by_content(tester_dir: Path, rel: str, expected: str) -> None:
    with Source.open(tester_dir / rel) as src:
        assert detect(src).name == expected
    maps = list(read_maps(tester_dir / rel))
    assert maps
    for w in maps:
        assert w.provenance.format == expected
        assert w.provenance.source.endswith(Path(rel).name)


def test_datasets_are_detected(data_dir: Path) -> None:
    for rel, name in (("wm811k/val.npz", "wm811k"), ("mixedwm38/val.npz", "mixedwm38")):
        with Source.open(data_dir / rel) as src:
            assert detect(src).name == name


def test_the_text_datalog_is_not_taken_for_a_wafer_map(tester_dir: Path) -> None:
    with (
        Source.open(tester_dir / "stdf/a595_ascii_datalog.data.gz") as src,
        pytest.raises(FormatError, match="matches no known"),
    ):
        detect(src)


def _only_typed_errors(data: bytes, fmt: str | None) -> None:
    try:
        for w in read_maps(Source.from_bytes(data, name="fuzz"), format=fmt):
            assert w.die_count >= 0
    except FormatError as exc:
        assert "fuzz" in str(exc)  # noqa: PT017 - the error must name the source


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.binary(min_size=0, max_size=2048), fmt=st.sampled_from([None, *NAMES]))
def test_random_bytes_raise_only_format_errors(data: bytes, fmt: str | None) -> None:
    _only_typed_errors(data, fmt)


@pytest.fixture(scope="module")
def real_payloads(tester_dir: Path) -> list[bytes]:
    out = []
    for rel in (
        "stdf/a595.stdf.gz",
        "tsk/001.QR2352-D5U278-CP-1.gz",
        "klarf/jklarf_simple18.klarf",
    ):
        raw = (tester_dir / rel).read_bytes()
        out.append(gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw)
    return out


@settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    which=st.integers(0, 2),
    cut=st.floats(0.0, 1.0),
    flips=st.lists(st.tuples(st.floats(0.0, 1.0), st.integers(0, 255)), max_size=8),
)
def test_mutated_and_truncated_real_files_raise_only_format_errors(
    real_payloads: list[bytes], which: int, cut: float, flips: list[tuple[float, int]]
) -> None:
    data = bytearray(real_payloads[which])
    for pos, value in flips:
        data[int(pos * (len(data) - 1))] = value
    _only_typed_errors(bytes(data[: max(1, int(cut * len(data)))]), None)
