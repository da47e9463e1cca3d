"""Coverage-guided fuzzing (atheris) of every format reader, for a bounded time, in a subprocess.

Seeds are the heads of the real tester files (read at test time, never copied into the project)
and small files the writers produce from a real wafer; libFuzzer mutates them, guided by the
readers' coverage. Every input must read or raise a ``WaferscopeError``; a crash fails the test
and names the saved input (``python tests/protocols/fuzz_readers_target.py CRASH`` replays it).
"""

from __future__ import annotations

import gzip
import io
import subprocess
import sys
from pathlib import Path

import pytest

from waferscope.protocols.formats import get_writer, list_formats, read_maps

pytest.importorskip("atheris")
pytestmark = pytest.mark.slow

TARGET = Path(__file__).with_name("fuzz_readers_target.py")
FUZZ_SECONDS = 40
SEED_BYTES = 16_384  # head of each real file; libFuzzer's -max_len is a little above
REAL_FORMATS = {"stdf": "stdf", "klarf": "klarf", "tsk": "tsk"}  # folder -> reader


def _seed(fmt: str, content: bytes) -> bytes:
    names = [f.name for f in list_formats()]
    return bytes([names.index(fmt)]) + content


def _corpus(tester_dir: Path) -> list[bytes]:
    seeds: list[bytes] = []
    for folder, fmt in REAL_FORMATS.items():
        for path in sorted((tester_dir / folder).iterdir()):
            raw = path.read_bytes()
            content = gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw
            seeds.append(_seed(fmt, content[:SEED_BYTES]))
    # one real wafer, cut to its first dies, written by every writer (small, whole files)
    wafer = next(read_maps(tester_dir / "stdf" / "a595.stdf.gz"))
    small = wafer.with_(dies=wafer.dies.take(list(range(min(40, len(wafer.dies))))))
    for fmt in ("stdf", "e142", "tsk", "csv"):
        out = io.BytesIO()
        get_writer(fmt).write([small], out)
        seeds.append(_seed(fmt, out.getvalue()))
        if fmt == "csv":  # the decompression layer under a reader
            seeds.append(_seed(fmt, gzip.compress(out.getvalue())))
    return seeds


def test_every_reader_survives_coverage_guided_fuzzing(tester_dir: Path, tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for i, seed in enumerate(_corpus(tester_dir)):
        (corpus / f"seed-{i:03d}").write_bytes(seed)
    crashes = tmp_path / "crashes"
    crashes.mkdir()
    proc = subprocess.run(
        [
            sys.executable,
            str(TARGET),
            str(corpus),
            f"-max_total_time={FUZZ_SECONDS}",
            f"-max_len={SEED_BYTES + 1024}",
            "-seed=1",
            "-rss_limit_mb=2048",
            "-timeout=20",
            f"-artifact_prefix={crashes}/",
        ],
        check=False,
        capture_output=True,
        text=True,
        timeout=FUZZ_SECONDS + 120,
    )
    saved = sorted(crashes.iterdir())
    tail = proc.stderr[-4000:]
    assert proc.returncode == 0 and not saved, (
        f"a reader crashed (exit {proc.returncode}); input saved as {[str(p) for p in saved]}\n"
        f"{tail}"
    )
    assert "Done" in proc.stderr, tail  # libFuzzer ran to its time bound
