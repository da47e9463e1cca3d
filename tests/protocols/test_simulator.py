"""The tester simulator: real maps out as real tester files, read back by protocols' own readers;
fresh ids; atomic delivery; a drift-free schedule; the CLI; clean errors."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from waferscope.protocols.cli.main import main
from waferscope.protocols.datasets import load_labelled_arrays
from waferscope.protocols.errors import FormatError, SimulatorError
from waferscope.protocols.formats import read_maps
from waferscope.protocols.simulator import (
    MIXED,
    Output,
    WrittenFile,
    delivery,
    writable_formats,
)
from waferscope.protocols.simulator import (
    TesterSimulator as Sim,  # (aliased: pytest would try to collect a class named Test*)
)
from waferscope.protocols.wafermap import Side, WaferMap


class FakeClock:
    """A monotonic clock that moves only when slept on, plus a little per reading (the work)."""

    def __init__(self, tick: float = 0.0005) -> None:
        self.now = 0.0
        self.tick = tick
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        self.now += self.tick
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def read_one(path: Path) -> WaferMap:
    wafers = list(read_maps(path))
    assert len(wafers) == 1, path
    return wafers[0]


def manifest_lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="module")
def val_arrays(val_npz: Path):
    return load_labelled_arrays(val_npz)


def test_the_writable_formats() -> None:
    assert {"stdf", "tsk", "e142", "csv"} <= set(writable_formats())
    assert MIXED not in writable_formats()


# ------------------------------------------------------------------ formats and read-back
@pytest.mark.parametrize(
    ("fmt", "gz"), [("stdf", False), ("tsk", False), ("e142", True), ("csv", False)]
)
def test_dataset_maps_read_back_with_the_same_dies_and_bins(
    fmt: str, gz: bool, val_npz: Path, val_arrays, tmp_path: Path
) -> None:
    out = tmp_path / "in"
    sim = Sim(
        [val_npz], [Output(out, fmt, "T-07", gzip=gz)], rate=None, count=5, shuffle=True, seed=3
    )
    files = list(sim)
    assert len(files) == 5 and sim.stats.stopped_by == "count"
    for written in files:
        assert written.path.parent == out and written.format == fmt
        assert written.path.name.endswith(delivery.file_extension(fmt) + (".gz" if gz else ""))
        back = read_one(written.path)
        assert back.provenance.format == fmt
        grid = val_arrays.maps[written.source_index]
        assert written.labels == val_arrays.labels_of(written.source_index)
        rows, cols = np.nonzero(grid)
        assert sorted(zip(back.dies.x.tolist(), back.dies.y.tolist(), strict=True)) == sorted(
            zip(cols.tolist(), rows.tolist(), strict=True)
        )  # the same coordinates, not only the same picture
        state = back.to_dense("state")
        expected = WaferMap.from_dense(grid, provenance=back.provenance).to_dense("state")
        assert np.array_equal(state, expected)
        bins = back.to_dense("hard_bin")
        if not (fmt == "tsk" and back.fail_count == 0):  # TSK: all category 0 reads as no bins
            assert np.array_equal(bins, np.where(state == 1, 1, np.where(state == 2, 2, -1)))
        assert (back.info.lot_id, back.info.wafer_id) == (written.lot_id, written.wafer_id)
        if fmt != "e142":  # E142 has no tester field
            assert back.info.tester_id == "T-07"
        assert back.orientation.mark is Side.DOWN
        assert back.labels == ()  # the ground truth stays in the manifest


def test_tester_files_from_a_folder_replay_in_every_format(
    tester_dir: Path, tmp_path: Path
) -> None:
    manifest = tmp_path / "m.jsonl"
    sim = Sim([tester_dir], [Output(tmp_path / "in", MIXED)], rate=None, manifest=manifest)
    assert any(s.endswith("a595_ascii_datalog.data.gz") for s in sim.skipped)
    stats = sim.run()
    assert stats.stopped_by == "end" and stats.written == len(sim.selection) >= 15
    originals: dict[str, list[WaferMap]] = {}
    formats = set()
    for line in manifest_lines(manifest):
        source = str(line["source"])
        if source not in originals:
            originals[source] = list(read_maps(source))
        original = next(
            w for w in originals[source] if w.provenance.wafer_index == line["source_index"]
        )
        back = read_one(Path(str(line["path"])))
        formats.add(back.provenance.format)
        assert back.provenance.format == line["format"]
        assert back.die_count == original.die_count
        assert np.array_equal(back.to_dense("state"), original.to_dense("state")), line
        known = original.dies.hard_bin >= 0
        if known.all() and back.die_count:  # real bins are kept (E142 may shift coordinates)
            assert back.bin_counts("hard") == original.bin_counts("hard"), line
    assert formats == {"stdf", "tsk", "e142", "csv"}


def test_mixedwm38_patterns_select_multi_label_maps(data_dir: Path, tmp_path: Path) -> None:
    npz = data_dir / "mixedwm38" / "val.npz"
    sim = Sim([npz], [Output(tmp_path / "in", "csv")], rate=None, patterns=["donut"], limit=4)
    files = list(sim)
    assert len(files) == 4
    assert all("Donut" in f.labels for f in files)
    assert read_one(files[0].path).die_count > 0


# ------------------------------------------------------------------ identities
def test_ids_are_fresh_and_unique(val_npz: Path, tmp_path: Path) -> None:
    outputs = [Output(tmp_path / "a", "stdf"), Output(tmp_path / "b", "tsk", "PROBER-9")]
    sim = Sim([val_npz], outputs, rate=None, count=60, lot_prefix="LT")
    files = list(sim)
    assert sim.stats.per_output == (30, 30)
    assert len({(f.lot_id, f.wafer_id) for f in files}) == 60
    assert len({f.path for f in files}) == 60
    assert {f.tester_id for f in files if f.output == 0} == {"SIM-T01"}
    assert {f.tester_id for f in files if f.output == 1} == {"PROBER-9"}
    for k in (0, 1):
        mine = [f for f in files if f.output == k]
        assert [f.wafer_id for f in mine] == [f"{n:02d}" for n in [*range(1, 26), *range(1, 6)]]
        assert len({f.lot_id for f in mine}) == 2
    assert len({f.lot_id for f in files}) == 4  # no lot is shared between testers
    assert all(f.lot_id.startswith("LT-") for f in files)


def test_one_map_replayed_gives_different_bytes(val_npz: Path, tmp_path: Path) -> None:
    sim = Sim([val_npz], [Output(tmp_path / "in", "stdf")], rate=None, limit=1, loop=True, count=3)
    files = list(sim)
    assert {f.source_index for f in files} == {0}
    digests = {hashlib.sha256(f.path.read_bytes()).hexdigest() for f in files}
    assert len(digests) == 3  # an edge would otherwise reject repeats as duplicates


# ------------------------------------------------------------------ atomic delivery
def test_no_partial_file_is_ever_visible_under_its_final_name(
    val_npz: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "in"
    out.mkdir()
    renames: list[tuple[Path, Path]] = []
    real_replace = os.replace

    def spy(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        renames.append((Path(src), Path(dst)))
        real_replace(src, dst)

    monkeypatch.setattr(delivery.os, "replace", spy)
    seen: dict[str, set[int]] = {}
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            for entry in os.scandir(out):
                if not entry.name.startswith("."):
                    with contextlib.suppress(FileNotFoundError):
                        seen.setdefault(entry.name, set()).add(entry.stat().st_size)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        # big maps (train and val hold 200 x 200 ones) as CSV: the writes take a while
        sim = Sim([val_npz], [Output(out, "csv")], rate=None, count=40, shuffle=True)
        files = list(sim)
    finally:
        done.set()
        watcher.join()
    final = {f.path.name: f.size for f in files}
    assert seen, "the watcher saw nothing"
    for name, sizes in seen.items():
        assert sizes == {final[name]}, name  # only ever seen complete
    for src, dst in renames:
        assert src.parent == dst.parent  # same folder, same file system: an atomic rename
        assert src.name == f".{dst.name}.part"  # a dot-file with an ignored suffix
    assert sorted(p.name for p in out.iterdir()) == sorted(final)  # no temporary left


def test_a_failed_write_leaves_no_temporary_file(
    val_npz: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "in"
    sim = Sim([val_npz], [Output(out, "stdf")], rate=None, count=2)

    def refuse(src: object, dst: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(delivery.os, "replace", refuse)
    with pytest.raises(SimulatorError, match="cannot write: No space left on device"):
        sim.run()
    assert list(out.iterdir()) == []
    assert sim.stats.stopped_by == "error"


# ------------------------------------------------------------------ pacing
def test_the_schedule_follows_the_monotonic_clock_without_drift(
    val_npz: Path, tmp_path: Path
) -> None:
    clock = FakeClock()
    sim = Sim(
        [val_npz],
        [Output(tmp_path / "a", "stdf"), Output(tmp_path / "b", "csv")],
        rate=50.0,
        count=20,
        clock=clock,
        sleep=clock.sleep,
    )
    files: list[WrittenFile] = []

    def stall(written: WrittenFile) -> None:
        files.append(written)
        if len(files) == 5:
            clock.now += 0.1  # one slow write: five periods late

    stats = sim.run(on_file=stall)
    assert stats.written == 20 and stats.per_output == (10, 10)
    assert [f.due_s for f in files] == pytest.approx([i / 50 for i in range(20)])
    for f in files:
        assert f.due_s is not None and f.elapsed_s >= f.due_s
    late = [f.elapsed_s - (f.due_s or 0.0) for f in files]
    assert max(late[:5]) < 0.01  # on time
    assert max(late[5:10]) > 0.02  # behind after the stall, catching up without sleeping
    assert max(late[11:]) < 0.01  # back on the schedule: the stall did not shift it
    assert stats.max_lag_s == pytest.approx(0.1, abs=0.02)
    assert len(clock.sleeps) >= 8
    assert stats.elapsed_s == pytest.approx(19 / 50, abs=0.02)  # not 20 periods plus work


def test_duration_and_rate_below_one_per_second(val_npz: Path, tmp_path: Path) -> None:
    clock = FakeClock()
    sim = Sim(
        [val_npz],
        [Output(tmp_path / "a", "tsk")],
        rate=0.25,
        duration_s=10.0,
        clock=clock,
        sleep=clock.sleep,
    )
    stats = sim.run()
    assert stats.written == 3 and stats.stopped_by == "duration"  # due at 0, 4 and 8 s
    assert clock.now == pytest.approx(8.0, abs=0.01)


def test_real_time_window_generous_bounds(val_npz: Path, tmp_path: Path) -> None:
    started = time.monotonic()
    sim = Sim([val_npz], [Output(tmp_path / "a", "stdf")], rate=40.0, duration_s=0.5)
    stats = sim.run()
    took = time.monotonic() - started
    assert stats.written == 20 and stats.stopped_by == "duration"  # due 0 .. 0.475 s
    assert 0.45 <= took < 10.0
    assert len(list((tmp_path / "a").iterdir())) == 20


def test_a_stop_event_ends_a_looping_run_during_its_wait(val_npz: Path, tmp_path: Path) -> None:
    stop = threading.Event()
    sim = Sim([val_npz], [Output(tmp_path / "a", "stdf")], rate=0.5, loop=True)
    threading.Timer(0.2, stop.set).start()
    started = time.monotonic()
    stats = sim.run(stop)
    assert time.monotonic() - started < 1.9  # not the 2 s until the next wafer
    assert stats.written == 1 and stats.stopped_by == "stop"


def test_the_iterator_can_be_left_early(val_npz: Path, tmp_path: Path) -> None:
    sim = Sim([val_npz], [Output(tmp_path / "a", "e142")], rate=None, loop=True)
    it = sim.files()
    first = [next(it), next(it)]
    it.close()
    assert [f.wafer_id for f in first] == ["01", "02"]
    assert sim.stats.written == 2 and sim.stats.stopped_by == "stop"


# ------------------------------------------------------------------ bad input
def test_bad_input_raises_one_typed_error(val_npz: Path, tmp_path: Path) -> None:
    out = [Output(tmp_path / "in", "stdf")]
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"\x00\x01garbage" * 40)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    cases: list[tuple[dict[str, object], str]] = [
        ({"outputs": [Output(tmp_path / "in", "pdf")]}, "cannot write format 'pdf'"),
        ({"sources": [tmp_path / "missing.npz"]}, "missing.npz: no such file"),
        ({"sources": [junk]}, "junk.bin: not a wafer map"),
        ({"patterns": ["Nope"]}, "no wafer carries the pattern 'Nope'"),
        ({"outputs": [Output(blocker / "in", "stdf")]}, "output folder is not writable"),
        ({"outputs": []}, "at least one output"),
        ({"rate": 0.0}, "rate: must be a positive number"),
        ({"count": 0}, "count: must be at least 1"),
        ({"outputs": [Output(tmp_path / "in", "csv", "bad/id")]}, "not a valid tester id"),
    ]
    for changes, message in cases:
        kwargs: dict[str, object] = {"sources": [val_npz], "outputs": out, **changes}
        with pytest.raises(SimulatorError, match=message):
            Sim(**kwargs)  # type: ignore[arg-type]
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(SimulatorError, match="holds no files"):
        Sim([empty], out)


def test_a_corrupt_source_is_the_readers_error_naming_the_file(
    val_npz: Path, tmp_path: Path
) -> None:
    written = next(iter(Sim([val_npz], [Output(tmp_path / "x", "e142")], rate=None)))
    data = written.path.read_bytes()
    cut = tmp_path / "cut.xml"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(FormatError, match=r"cut\.xml: line \d+: e142 XML ends early"):
        Sim([cut], [Output(tmp_path / "in", "csv")])


# ------------------------------------------------------------------ the command
def test_cli_end_to_end(val_npz: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    manifest = tmp_path / "m.jsonl"
    args = ["simulate-tester", str(val_npz), "-o", str(tmp_path / "a"), "-o", str(tmp_path / "b")]
    args += ["--to", "tsk", "--to", "mixed", "--tester", "TA", "--tester", "TB", "--burst"]
    args += ["-n", "8", "-p", "Scratch", "--shuffle", "--seed", "7", "--gzip"]
    args += ["--manifest", str(manifest)]
    assert main(args) == 0
    err = capsys.readouterr().err
    assert "8 wafers" in err and "ended by count" in err
    lines = manifest_lines(manifest)
    assert len(lines) == 8
    assert {line["label"] for line in lines} == {"Scratch"}
    assert {line["tester"] for line in lines} == {"TA", "TB"}
    assert {line["format"] for line in lines if line["tester"] == "TA"} == {"tsk"}
    assert {line["format"] for line in lines if line["tester"] == "TB"} == {
        "stdf",
        "e142",
        "tsk",
        "csv",
    }
    for line in lines:
        path = Path(str(line["path"]))
        assert path.name.endswith(".gz")
        back = read_one(path)
        assert (back.info.lot_id, back.info.wafer_id) == (line["lot"], line["wafer"])
    assert main([*args[:-2], "--quiet"]) == 0
    assert capsys.readouterr().err == ""


def test_cli_help_lists_the_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    assert "simulate-tester" in capsys.readouterr().out
    assert main(["simulate-tester", "--help"]) == 0
    assert "--burst" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--to", "pdf"], "cannot write format 'pdf'"),
        (["--pattern", "Nope"], "no wafer carries the pattern"),
        (["--to", "csv", "--to", "tsk", "--to", "stdf"], "--to: give it once"),
        (["--rate", "-1"], "rate: must be a positive number"),
    ],
)
def test_cli_bad_input_is_one_line_and_exit_1(
    extra: list[str],
    message: str,
    val_npz: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    rc = main(["simulate-tester", str(val_npz), "-o", str(tmp_path / "a"), *extra])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1
    assert len(err) == 1 and err[0].startswith("waferscope: error:") and message in err[0]


def test_cli_unreadable_source(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    junk = tmp_path / "junk.stdf"
    junk.write_bytes(b"\x00garbage\xff" * 50)
    rc = main(["simulate-tester", str(junk), "-o", str(tmp_path / "a")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and len(err) == 1 and "junk.stdf" in err[0]
