"""`waferscope classify`: every format protocols reads, JSON Lines, explanations, clean errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

WAFERSCOPE = str(Path(sys.executable).parent / "waferscope")
KEYS = {
    "source",
    "index",
    "lot_id",
    "wafer_id",
    "pattern",
    "confidence",
    "probabilities",
    "root_cause",
    "review",
    "timings",
}


def classify(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [WAFERSCOPE, "classify", *args], capture_output=True, text=True, timeout=300, check=False
    )


def test_every_tester_format_as_json_lines(
    bundle_dir: Path, tester_dir: Path, tmp_path: Path
) -> None:
    files = [
        tester_dir / "stdf/a595.stdf.gz",
        tester_dir / "stdf/lot2.stdf.gz",
        tester_dir / "tsk/001.QR2352-D5U278-CP-1.gz",
        tester_dir / "klarf/CPS3TwithoutReview.001",
    ]
    # E142 and CSV: written from a real file with protocols' own writers
    for target, suffix in (("e142", "xml"), ("csv", "csv")):
        out = tmp_path / f"a595.{suffix}"
        subprocess.run(
            [WAFERSCOPE, "convert", str(files[0]), "--to", target, "-o", str(out)],
            check=True,
            timeout=120,
            capture_output=True,
        )
        files.append(out)
    proc = classify("--model", str(bundle_dir), "--json", *map(str, files))
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert len(rows) == 3 + 1 + 1 + 1 + 3 + 3
    formats = {r["format"] for r in rows}
    assert {"stdf", "tsk", "klarf", "e142", "csv"} <= formats
    for row in rows:
        assert row.keys() >= KEYS
        assert abs(sum(row["probabilities"].values()) - 1) < 1e-3
        assert row["confidence"] == max(row["probabilities"].values())
        assert row["review"] == (row["confidence"] < 0.6)
        assert row["timings"]["infer_ms"] > 0
    tsk = next(r for r in rows if r["format"] == "tsk")
    assert tsk["die_count"] == 49631 and tsk["lot_id"]


def test_dataset_npz_streams_and_explains(bundle_dir: Path, data_dir: Path, tmp_path: Path) -> None:
    proc = classify("--model", str(bundle_dir), "--json", str(data_dir / "mixedwm38/val.npz"))
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 5703
    first = json.loads(lines[0])
    assert first["index"] == 0 and first["format"] == "mixedwm38"

    out = tmp_path / "explain"
    proc = classify(
        "--model",
        str(bundle_dir),
        "--json",
        "--explain",
        str(out),
        str(data_dir / "tester/stdf/a595.stdf.gz"),
    )
    assert proc.returncode == 0, proc.stderr
    row = json.loads(proc.stdout.splitlines()[1])
    overlay = Path(row["explain"]["overlay"])
    assert overlay.read_bytes().startswith(b"\x89PNG")
    heat = np.load(row["explain"]["heatmap"])
    assert heat.shape == (64, 64) and heat.dtype == np.uint8 and heat.max() == 255
    regions = json.loads(Path(row["explain"]["regions"]).read_text())
    assert all(len(r["box"]) == 4 and r["dies"] for r in regions)


def test_bad_inputs_are_named_and_the_rest_still_classified(
    bundle_dir: Path, tester_dir: Path, tmp_path: Path
) -> None:
    broken = tmp_path / "broken.stdf"
    broken.write_bytes((tester_dir / "stdf/a595.stdf.gz").read_bytes()[:300])
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"\x00\x01not a wafer map" * 10)
    proc = classify(
        "--model", str(bundle_dir), str(junk), str(tester_dir / "stdf/a595.stdf.gz"), str(broken)
    )
    assert proc.returncode == 1
    assert "junk.bin" in proc.stderr and "broken.stdf" in proc.stderr
    assert len(proc.stdout.splitlines()) == 3
    assert "Traceback" not in proc.stderr


def test_refused_bundle_is_one_clear_line(bundle_copy: Path, tester_dir: Path) -> None:
    (bundle_copy / "head.npz").write_bytes(b"changed")
    proc = classify("--model", str(bundle_copy), str(tester_dir / "stdf/a595.stdf.gz"))
    assert proc.returncode == 1
    assert proc.stderr.startswith("waferscope: error:") and "head.npz" in proc.stderr
