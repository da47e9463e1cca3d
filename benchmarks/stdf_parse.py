"""STDF parse throughput: waferscope's STDF V4 reader against pystdf and Semi-ATE STDF.

Run from the repository root (the competitors are installed for the benchmark only, see
``benchmarks/requirements-stdf.txt``)::

    .venv/bin/pip install -r benchmarks/requirements-stdf.txt
    .venv/bin/python benchmarks/stdf_parse.py

What it does, in one run:

1. Generates (once; reused while the parameters are unchanged) with waferscope's STDF writer,
   from a fixed seed, into ``benchmarks/.work/``: a large multi-wafer lot file (default 40
   wafers of ~26,500 dies, ~1.08 M PRRs with 2 % retests, 4 sites, 8 PTRs per die like a
   parametric test program, ~275 MB) and a *medium* file holding the first wafers of the same
   lot (same seed, same content), for competitors too slow for the large one.
2. Decompresses the real ``tester/stdf/lot2.stdf.gz`` (from ``$WAFER_DATA_DIR`` or
   ``../shared/data``) into the work folder, so every contender parses plain bytes.
3. Runs every contender on every file, each run in its own fresh subprocess, and measures
   inside the child the parse wall time and CPU time (file open to last die collected;
   interpreter start-up and imports excluded) and, from the parent, the child's peak RSS
   (``os.wait4`` resource usage). A contender that runs past ``--timeout`` seconds is stopped
   and reported as such. The CPU time is the steadier figure on a shared machine.
4. Prints one markdown table (MB/s, PRRs/s, wall and CPU time, peak RSS, speed-up over pystdf
   on the same file, from wall and from CPU time).

Each contender does the work a wafer-map reader needs: walk the whole file and collect, per
PRR, head, site, flags, hard/soft bin and X/Y, plus the wafer and lot records.

* **waferscope**: ``StdfFormat().read`` with ``RetestPolicy.ALL`` (every PRR kept), i.e. the
  finished WaferMaps.
* **pystdf**: ``pystdf.IO.Parser`` with a sink that keeps the PRR fields (pystdf decodes every
  record it meets).
* **Semi-ATE STDF**: ``Semi_ATE.STDF.utils.records_from_file(path, of_interest=[...])`` with the
  records a map needs; it reads every record's bytes and unpacks only those, then
  ``get_value`` per PRR field.
"""

from __future__ import annotations

import argparse
import gzip
import importlib
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "benchmarks" / ".work"
MAP_RECORDS = ["FAR", "MIR", "SDR", "WCR", "WIR", "WRR", "PRR", "HBR", "SBR"]
SAME_WORK_NOTE = "each PRR's head, site, flags, bins and X/Y collected"


# --------------------------------------------------------------------------- synthetic lot
def synthetic_lot(wafers: int, radius: int, seed: int) -> list[Any]:
    """A lot of round wafers with random and clustered fails, 4 sites and 2 % retests."""
    import numpy as np

    from waferscope.protocols.wafermap import (
        DieTable,
        Orientation,
        Provenance,
        Side,
        WaferInfo,
        WaferMap,
    )

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[-radius : radius + 1, -radius : radius + 1]
    inside = xx**2 + yy**2 <= radius**2
    x0, y0 = xx[inside].astype(np.int32), yy[inside].astype(np.int32)
    r = np.hypot(x0, y0) / radius
    maps = []
    for w in range(wafers):
        # Serpentine probing order (row by row, alternating direction) like a prober.
        order = np.lexsort((np.where(y0 % 2 == 0, x0, -x0), y0))
        x, y = x0[order], y0[order]
        fail_p = 0.04 + 0.25 * (r[order] > 0.93)  # random fails plus an edge ring
        if w % 3 == 0:  # a scratch-like cluster on every third wafer
            fail_p = fail_p + 0.8 * (np.abs(x - y + w % 20) < 2) * (np.abs(x) < radius // 2)
        failed = rng.random(x.shape[0]) < fail_p
        hard_bin = np.where(failed, rng.integers(2, 9, x.shape[0]), 1)
        soft_bin = np.where(failed, hard_bin * 10 + rng.integers(0, 3, x.shape[0]), 1)
        # Retest 2 % of the dies at the end of the wafer; half of them pass the second time.
        again = rng.choice(x.shape[0], size=x.shape[0] // 50, replace=False)
        passed_again = rng.random(again.shape[0]) < 0.5
        xs = np.r_[x, x[again]]
        ys = np.r_[y, y[again]]
        passed = np.r_[~failed, passed_again]
        hard = np.r_[hard_bin, np.where(passed_again, 1, hard_bin[again])]
        soft = np.r_[soft_bin, np.where(passed_again, 1, soft_bin[again])]
        site = ((xs % 2) + 2 * (ys % 2)).astype(np.int16)
        maps.append(
            WaferMap(
                dies=DieTable.build(
                    xs,
                    ys,
                    passed,
                    hard_bin=hard,
                    soft_bin=soft,
                    site=site,
                    head=np.ones(xs.shape[0], np.int16),
                ),
                provenance=Provenance("synthetic", "stdf", wafer_index=w),
                info=WaferInfo(
                    lot_id="BENCH-LOT",
                    wafer_id=f"BENCH-{w + 1:02d}",
                    tester_id="sim-tester",
                    program="bench_prog",
                    part_type="BENCH8",
                    wafer_size_mm=200.0,
                    die_width_um=1000.0,
                    die_height_um=1000.0,
                    extra={"probe_card_id": "PC-0001", "sublot_id": "S1"},
                ),
                orientation=Orientation(
                    mark=Side.DOWN, x_increases=Side.RIGHT, y_increases=Side.DOWN
                ),
            )
        )
    return maps


def parametric_tests(count: int) -> list[Any]:
    from waferscope.protocols.formats.stdf.writer import ParametricTest

    return [
        ParametricTest(1000 + 10 * k, f"IDD_{k:02d}", "mA", 10.0 + k, 40.0 + k)
        for k in range(count)
    ]


def generate(path: Path, wafers: int, radius: int, tests: int, seed: int) -> dict[str, Any]:
    """Write the synthetic lot unless an identical one exists; the writing runs in a child
    process so that this (measuring) process stays small: on Linux a child's peak RSS as
    ``wait4`` reports it starts from the parent's peak."""
    params = {"wafers": wafers, "radius": radius, "tests": tests, "seed": seed, "version": 1}
    meta_path = path.with_suffix(".json")
    if path.exists() and meta_path.exists():
        meta = json.loads(meta_path.read_text())
        if meta.get("params") == params:
            return dict(meta)
    argv = [sys.executable, __file__, "--generate", str(path)]
    argv += [str(v) for v in (wafers, radius, tests, seed)]
    subprocess.run(argv, check=True, env=child_env())
    return dict(json.loads(meta_path.read_text()))


def generate_child(path: Path, wafers: int, radius: int, tests: int, seed: int) -> None:
    from waferscope.protocols.formats.stdf.writer import write_stdf

    params = {"wafers": wafers, "radius": radius, "tests": tests, "seed": seed, "version": 1}
    meta_path = path.with_suffix(".json")
    t0 = time.perf_counter()
    maps = synthetic_lot(wafers, radius, seed)
    with path.open("wb") as f:
        size = write_stdf(maps, f, byte_order="<", tests=parametric_tests(tests), seed=seed)
    meta = {
        "params": params,
        "bytes": size,
        "prrs": sum(m.die_count for m in maps),
        "wafers": wafers,
        "write_s": round(time.perf_counter() - t0, 1),
    }
    meta_path.write_text(json.dumps(meta, indent=1))


# --------------------------------------------------------------------------- contenders
def run_waferscope(path: str) -> tuple[int, int]:
    from waferscope.protocols.formats.base import ReadOptions, RetestPolicy, Source
    from waferscope.protocols.formats.stdf.reader import StdfFormat

    with Source.open(path) as source:
        maps = list(StdfFormat().read(source, ReadOptions(retest=RetestPolicy.ALL)))
    return sum(m.die_count for m in maps), len(maps)


def run_pystdf(path: str) -> tuple[int, int]:
    from pystdf.IO import Parser

    class MapSink:
        def __init__(self) -> None:
            self.prrs: list[tuple[Any, ...]] = []
            self.wafers = 0

        def after_send(self, _source: object, data: tuple[Any, list[Any]]) -> None:
            rec, fields = data
            name = type(rec).__name__
            if name == "Prr":  # HEAD, SITE, PART_FLG, NUM_TEST, HARD_BIN, SOFT_BIN, X, Y
                self.prrs.append(tuple(fields[:8]))
            elif name == "Wir":
                self.wafers += 1

    sink = MapSink()
    with open(path, "rb") as f:
        parser = Parser(inp=f)
        parser.addSink(sink)
        parser.parse()
    return len(sink.prrs), sink.wafers


def run_semi_ate(path: str) -> tuple[int, int]:
    from Semi_ATE.STDF.utils import records_from_file

    prrs: list[tuple[Any, ...]] = []
    wafers = 0
    fields = ("HEAD_NUM", "SITE_NUM", "PART_FLG", "HARD_BIN", "SOFT_BIN", "X_COORD", "Y_COORD")
    for rec in records_from_file(path, of_interest=MAP_RECORDS):
        if rec is None:
            continue
        if rec.id == "PRR":
            prrs.append(tuple(rec.get_value(f) for f in fields))
        elif rec.id == "WIR":
            wafers += 1
    return len(prrs), wafers


CONTENDERS = {"waferscope": run_waferscope, "pystdf": run_pystdf, "Semi-ATE STDF": run_semi_ate}


# Modules each contender needs, imported before the clock starts.
IMPORTS = {
    "waferscope": ["waferscope.protocols.formats.base", "waferscope.protocols.formats.stdf.reader"],
    "pystdf": ["pystdf.IO", "pystdf.V4"],
    "Semi-ATE STDF": ["Semi_ATE.STDF.utils"],
}


def child_main(name: str, path: str) -> None:
    for module in IMPORTS[name]:
        importlib.import_module(module)
    t0, c0 = time.perf_counter(), time.process_time()
    prrs, wafers = CONTENDERS[name](path)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    print(json.dumps({"wall_s": wall, "cpu_s": cpu, "prrs": prrs, "wafers": wafers}))


def child_env() -> dict[str, str]:
    src = str(ROOT / "protocols" / "src")
    return dict(os.environ, PYTHONPATH=os.pathsep.join([src, os.environ.get("PYTHONPATH", "")]))


def measure(name: str, path: Path, timeout: float) -> dict[str, Any]:
    """Run one contender in a fresh subprocess; times from the child, peak RSS via wait4."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(
            [sys.executable, __file__, "--child", name, str(path)],
            stdout=out,
            stderr=err,
            env=child_env(),
        )
        deadline = time.monotonic() + timeout
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                proc.kill()
                _, status, usage = os.wait4(proc.pid, 0)
                return {"timeout": timeout, "rss_mb": usage.ru_maxrss / 1024}
            time.sleep(0.05)
        proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(), err.read().decode(errors="replace")
    if proc.returncode != 0:
        return {"error": stderr.strip().splitlines()[-1] if stderr.strip() else "failed"}
    result: dict[str, Any] = json.loads(stdout.strip().splitlines()[-1])
    result["rss_mb"] = usage.ru_maxrss / 1024  # Linux reports KiB
    return result


# --------------------------------------------------------------------------- report
def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, Python {sys.version.split()[0]}"


def table(rows: list[dict[str, Any]]) -> str:
    head = (
        "| file | size | contender | parse wall s | MB/s | PRRs/s | parse CPU s | peak RSS MB "
        "| speed-up vs pystdf (wall / CPU) |\n"
        "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |"
    )
    lines = [head]
    for r in rows:
        res = r["result"]
        size_mb = r["bytes"] / 1e6
        if "wall_s" in res:
            wall = res["wall_s"]
            ratio = r.get("ratio")
            speedup = "" if ratio is None else f"{ratio[0]:,.1f}x / {ratio[1]:,.1f}x"
            lines.append(
                f"| {r['file']} | {size_mb:,.1f} MB | {r['name']} | {wall:,.2f} | "
                f"{size_mb / wall:,.1f} | {res['prrs'] / wall:,.0f} | {res['cpu_s']:,.2f} | "
                f"{res['rss_mb']:,.0f} | {speedup} |"
            )
        else:
            what = (
                f"stopped after {res['timeout']:.0f} s"
                if "timeout" in res
                else f"error: {res.get('error')}"
            )
            lines.append(f"| {r['file']} | {size_mb:,.1f} MB | {r['name']} | {what} | | | | | |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--wafers", type=int, default=40, help="wafers in the large file")
    ap.add_argument("--medium-wafers", type=int, default=4, help="wafers in the medium file")
    ap.add_argument("--radius", type=int, default=92, help="wafer radius in dies")
    ap.add_argument("--tests", type=int, default=8, help="PTRs per die")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--timeout", type=float, default=900.0, help="seconds per contender run")
    ap.add_argument(
        "--large-for",
        default=",".join(CONTENDERS),
        help="comma-separated contenders to run on the large file (the others run on lot2 and "
        "the medium file only)",
    )
    ap.add_argument(
        "--data-dir", default=os.environ.get("WAFER_DATA_DIR", str(ROOT.parent / "shared" / "data"))
    )
    ap.add_argument("--child", nargs=2, metavar=("CONTENDER", "PATH"), help=argparse.SUPPRESS)
    ap.add_argument("--generate", nargs=5, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child_main(*args.child)
        return
    if args.generate:
        path, *numbers = args.generate
        generate_child(Path(path), *(int(v) for v in numbers))
        return
    WORK.mkdir(parents=True, exist_ok=True)
    files: list[tuple[str, Path]] = []
    lot2 = Path(args.data_dir) / "tester" / "stdf" / "lot2.stdf.gz"
    if lot2.exists():
        plain = WORK / "lot2.stdf"
        with gzip.open(lot2) as src, plain.open("wb") as dst:
            shutil.copyfileobj(src, dst)
        files.append(("lot2.stdf (real, big-endian)", plain))
    medium = WORK / f"lot_medium_{args.medium_wafers}w.stdf"
    large = WORK / f"lot_large_{args.wafers}w.stdf"
    for path, wafers in ((medium, args.medium_wafers), (large, args.wafers)):
        meta = generate(path, wafers, args.radius, args.tests, args.seed)
        print(
            f"{path.name}: {meta['bytes'] / 1e6:,.1f} MB, {meta['prrs']:,} PRRs, "
            f"{meta['wafers']} wafers (written in {meta['write_s']} s)",
            file=sys.stderr,
        )
        label = "large" if path == large else "medium"
        files.append((f"{path.name} (synthetic {label}, little-endian)", path))
    large_for = set(args.large_for.split(","))
    rows: list[dict[str, Any]] = []
    for label, path in files:
        base: tuple[float, float] | None = None
        for name in CONTENDERS:
            if path == large and name not in large_for:
                continue
            print(f"running {name} on {path.name} ...", file=sys.stderr)
            res = measure(name, path, args.timeout)
            row = {"file": label, "bytes": path.stat().st_size, "name": name, "result": res}
            rows.append(row)
            if name == "pystdf" and "wall_s" in res:
                base = (res["wall_s"], res["cpu_s"])
        for row in rows:
            res = row["result"]
            if row["file"] == label and base and "wall_s" in res:
                row["ratio"] = (base[0] / res["wall_s"], base[1] / res["cpu_s"])
    print(f"\nMachine: {machine()}\n")
    print(table(rows))


if __name__ == "__main__":
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    main()
