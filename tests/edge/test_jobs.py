"""Job outcome codes come from the reader's error type, never from its message text."""

from __future__ import annotations

from pathlib import Path

import pytest

from waferscope.edge.jobs import JobOutcome, JobStatus, format_error_code
from waferscope.protocols.errors import FormatError, TruncatedError
from waferscope.protocols.formats import Source, read_maps


def _refusal(content: bytes, name: str) -> FormatError:
    with pytest.raises(FormatError) as caught:
        list(read_maps(Source.from_bytes(content, name)))
    return caught.value


@pytest.mark.parametrize(
    ("file", "cut", "code"),
    [
        ("stdf/a595.stdf.gz", 1500, "truncated"),
        ("klarf/jklarf_simple18.klarf", 400, "truncated"),
        ("klarf/jklarf_simple12.klarf", 400, "truncated"),
    ],
)
def test_a_cut_tester_file_is_truncated_by_type(
    tester_dir: Path, file: str, cut: int, code: str
) -> None:
    # a name without the word, so only the type can tell
    exc = _refusal((tester_dir / file).read_bytes()[:cut], "upload.bin")
    assert isinstance(exc, TruncatedError)
    assert format_error_code(exc) == code


def test_unknown_and_malformed_content_keep_their_codes(tester_dir: Path) -> None:
    junk = _refusal(b"\x00\x01\x02 nothing", "truncated-name.bin")
    assert format_error_code(junk) == "unknown_format"
    klarf = (tester_dir / "klarf/jklarf_simple12.klarf").read_text()
    first, rest = klarf.split("\n", 1)
    broken = f"{first}\n12345 ;\n{rest}".encode()
    exc = _refusal(broken, "truncated.klarf")  # the word in the name no longer decides
    assert not isinstance(exc, TruncatedError)
    assert format_error_code(exc) == "format_error"
    message = FormatError("the record is truncated", format="stdf", source="x.stdf")
    assert format_error_code(message) == "format_error"


def test_statuses_are_one_enum_that_reads_as_its_word() -> None:
    outcome = JobOutcome(JobStatus.PARTIAL)
    assert outcome.status is JobStatus("partial")
    assert f"status: {outcome.status}" == "status: partial"
    assert {s.value for s in JobStatus} == {
        "accepted",
        "partial",
        "rejected",
        "duplicate",
        "paused",
        "shutdown",
    }
