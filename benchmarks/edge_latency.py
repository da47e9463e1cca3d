"""Per-wafer latency of the edge agent by stage, and end to end from file to broker.

Run from the repository root::

    .venv/bin/python benchmarks/edge_latency.py [--count 300] [--big-count 60] [--threads 1 2] \
        [--model {default,tiny}] [--bundle PATH]

For each map size (a typical 25 x 27 WM-811K map; the real 254 x 265 TSK prober map with
49,631 dies) and each model thread count, ``waferscope edge run`` runs as its own process with a
private Mosquitto on loopback. Files are dropped one at a time into the hot folder (rename-in),
the next only after the previous result reached the subscriber, so the figures are latencies
without queueing. Every file is a different tester file (distinct lot/wafer ids), written as TSK.

* stages: the ``timings`` every published WaferResult carries (parse, validate, encode, infer,
  Grad-CAM, store, publish; infer and Grad-CAM are per wafer of the batch, store is the commit
  time per wafer, publish is building the payload);
* end to end: from the rename into the hot folder to the result arriving at the subscriber
  (detection, read and digest, the stages, the commit with its sync to disk, the MQTT hop).

The first 10 wafers of each run are warm-up and not counted.
"""

from __future__ import annotations

import argparse
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import replace

import numpy as np
from edge_common import (
    WORK,
    AgentProcess,
    Broker,
    TimedSubscriber,
    add_model_arguments,
    agent_config,
    as_bytes,
    big_tsk_wafer,
    bundle,
    pct,
    typical_wafers,
)

from waferscope.protocols.wafermap import WaferMap

STAGES = ("parse", "validate", "encode", "infer", "explain", "store", "publish")
WARMUP = 10


def big_maps(count: int) -> Iterator[WaferMap]:
    wafer = big_tsk_wafer()
    for i in range(count):
        yield wafer.with_(info=replace(wafer.info, wafer_id=f"B{i:04d}"))


def run(
    label: str, wafers: list[WaferMap], threads: int, bundle_dir: os.PathLike[str]
) -> dict[str, float]:
    base = WORK / f"latency-{label}-{threads}"
    shutil.rmtree(base, ignore_errors=True)
    broker = Broker(base / "broker")
    broker.start()
    sub = TimedSubscriber(broker.port)
    files = [as_bytes(w, "tsk") for w in wafers]
    config = agent_config(base, bundle_dir, broker.port, threads)  # type: ignore[arg-type]
    agent = AgentProcess(config)
    e2e: list[float] = []
    stages: dict[str, list[float]] = {s: [] for s in STAGES}
    try:
        if not sub.online.wait(120):
            raise SystemExit(f"the agent did not come online; see {agent.log}")
        incoming = base / "data" / "incoming"
        while not incoming.is_dir():
            time.sleep(0.05)
        for i, data in enumerate(files):
            before = sub.count()
            tmp = base / f".{i}.part"
            tmp.write_bytes(data)
            start = time.perf_counter()
            os.replace(tmp, incoming / f"m{i:05d}.tsk")
            deadline = start + 60
            while sub.count() == before:
                if time.perf_counter() > deadline:
                    raise SystemExit(f"no result for file {i}; see {agent.log}")
                time.sleep(0.0005)
            if i < WARMUP:
                continue
            with sub.lock:
                arrived, doc = max(sub.arrivals.values(), key=lambda a: a[0])
            e2e.append((arrived - start) * 1000)
            for s in STAGES:
                stages[s].append(float(doc["timings"].get(f"{s}Ms", 0.0)))
    finally:
        agent.stop()
        sub.close()
        broker.stop()
    out = {"n": float(len(e2e)), "e2e_p50": pct(e2e, 50), "e2e_p99": pct(e2e, 99)}
    for s in STAGES:
        out[f"{s}_p50"] = pct(stages[s], 50)
        out[f"{s}_p99"] = pct(stages[s], 99)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=300)
    parser.add_argument("--big-count", type=int, default=60)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    add_model_arguments(parser)
    args = parser.parse_args()
    bundle_dir, what = bundle(args.model, args.bundle)
    short = args.bundle.name if args.bundle else args.model
    print(f"model: {what}; cpus: {os.cpu_count()}; numpy {np.__version__}")
    typical = list(typical_wafers(args.count + WARMUP))
    big = list(big_maps(args.big_count + WARMUP))
    head = (
        "| model | map | threads | n | "
        + " | ".join(f"{s} p50/p99" for s in STAGES)
        + " | end to end p50 | p99 |"
    )
    print(head)
    print("| --- | --- | ---: | ---: | " + " | ".join("---:" for _ in STAGES) + " | ---: | ---: |")
    for label, wafers in (("25x27", typical), ("254x265 TSK", big)):
        for threads in args.threads:
            r = run(label.split()[0], wafers, threads, bundle_dir)
            cells = " | ".join(f"{r[f'{s}_p50']:.2f} / {r[f'{s}_p99']:.2f}" for s in STAGES)
            print(
                f"| {short} | {label} | {threads} | {r['n']:.0f} | {cells} | "
                f"{r['e2e_p50']:.1f} ms | {r['e2e_p99']:.1f} ms |",
                flush=True,
            )


if __name__ == "__main__":
    main()
