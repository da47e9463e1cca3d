"""The umbrella CLI: real files in, readable summaries / JSON Lines / pictures out, clean errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from waferscope.protocols.cli.main import main
from waferscope.protocols.formats import read_maps


def run(args: list[str]) -> subprocess.CompletedProcess[str]:
    """The installed console script, as a user runs it."""
    exe = Path(sys.executable).parent / "waferscope"
    return subprocess.run(
        [str(exe), *args], capture_output=True, text=True, timeout=120, check=False
    )


def test_help_everywhere() -> None:
    top = run(["--help"])
    assert top.returncode == 0
    for command in ("inspect", "convert", "formats"):
        assert command in top.stdout
        sub = run([command, "--help"])
        assert sub.returncode == 0, sub.stderr
        assert "Usage" in sub.stdout


def test_inspect_real_files_text(tester_dir: Path) -> None:
    proc = run(
        [
            "inspect",
            str(tester_dir / "stdf/a595.stdf.gz"),
            str(tester_dir / "tsk" / "001.QR2352-D5U278-CP-1.gz"),
        ]
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("[stdf #") == 3
    assert "dies 49,631  fail 2,704" in proc.stdout


def test_inspect_json_lines_match_the_library(tester_dir: Path) -> None:
    path = tester_dir / "stdf/lot2.stdf.gz"
    proc = run(["inspect", "--json", str(path)])
    assert proc.returncode == 0, proc.stderr
    docs = [json.loads(line) for line in proc.stdout.splitlines()]
    wafer = next(read_maps(path))
    assert len(docs) == 1
    doc = docs[0]
    assert doc["die_count"] == wafer.die_count == 1456
    assert doc["fail_count"] == wafer.fail_count
    assert doc["lot_id"] == wafer.info.lot_id
    assert doc["hard_bins"]["1"] == 1389
    assert (
        {"code", "severity", "message", "count"} <= set(doc["findings"][0])
        if doc["findings"]
        else True
    )


def test_bad_input_is_one_line_on_stderr_and_nonzero(tmp_path: Path, tester_dir: Path) -> None:
    junk = tmp_path / "junk.stdf"
    junk.write_bytes(b"\x00garbage\xff" * 50)
    proc = run(["inspect", str(junk), str(tester_dir / "stdf/a595.stdf.gz")])
    assert proc.returncode == 1
    err = proc.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("waferscope: error:") and "junk.stdf" in err[0]
    assert "Traceback" not in proc.stderr
    assert proc.stdout.count("[stdf #") == 3  # the good file after the bad one is still read

    missing = run(["convert", str(tmp_path / "nope.csv"), "--to", "csv"])
    assert missing.returncode == 1 and "cannot open" in missing.stderr
    usage = run(["convert", str(junk), "--to", "pdf"])
    assert usage.returncode == 2 and "Traceback" not in usage.stderr


def test_convert_to_png_csv_e142_round_trip(tmp_path: Path, tester_dir: Path) -> None:
    src = tester_dir / "stdf/a595.stdf.gz"
    assert main(["convert", str(src), "--to", "png", "-o", str(tmp_path / "pics")]) == 0
    pics = sorted((tmp_path / "pics").glob("*.png"))
    assert len(pics) == 3
    img = cv2.imread(str(pics[0]))
    assert img is not None and img.shape[0] > 200

    originals = list(read_maps(src))
    for target, name in (("csv", "a595.csv"), ("e142", "a595.xml")):
        out = tmp_path / name
        assert main(["convert", str(src), "--to", target, "-o", str(out)]) == 0
        back = list(read_maps(out))
        assert [w.die_count for w in back] == [w.die_count for w in originals]
        for a, b in zip(originals, back, strict=True):
            assert a.fail_count == b.fail_count
            np.testing.assert_array_equal(np.sort(a.dies.hard_bin), np.sort(b.dies.hard_bin))


@pytest.mark.parametrize("fmt", ["stdf", "tsk", "klarf", "csv", "e142"])
def test_forced_format_on_wrong_content_is_a_clean_error(tmp_path: Path, fmt: str) -> None:
    bad = tmp_path / "x.bin"
    bad.write_bytes(b"FileVersion 1 2;\n" + bytes(range(256)))
    assert main(["inspect", "--format", fmt, str(bad)]) == 1
