"""Sustained throughput of the edge agent from the hot folder to a broker on loopback.

Run from the repository root::

    .venv/bin/python benchmarks/edge_throughput.py [--wafers 3000] [--threads 1 2] [--format tsk] \
        [--model {default,tiny}] [--bundle PATH]

A private Mosquitto is started on a free port, a subscriber on loopback records every result, and
``waferscope edge run`` runs as its own process (SQLite store, Grad-CAM on, heatmaps inline, QoS 1
with PUBACK bookkeeping — the production path). Once the agent is online, N different files
(real 25 x 27 WM-811K maps, each written as one tester file) are renamed into the hot folder at
once; the figure is N divided by the time from the first rename to the last result at the
subscriber. The agent's CPU time and peak RSS come from /proc.
"""

from __future__ import annotations

import argparse
import os
import shutil
import time

from edge_common import (
    WORK,
    AgentProcess,
    Broker,
    TimedSubscriber,
    add_model_arguments,
    agent_config,
    as_bytes,
    bundle,
    typical_wafers,
    wait_for,
)


def run(wafers: int, threads: int, fmt: str, bundle_dir: os.PathLike[str]) -> dict[str, float]:
    base = WORK / f"throughput-{threads}"
    shutil.rmtree(base, ignore_errors=True)
    broker = Broker(base / "broker")
    broker.start()
    sub = TimedSubscriber(broker.port)
    staging = base / "staging"
    staging.mkdir(parents=True)
    for i, wafer in enumerate(typical_wafers(wafers)):
        (staging / f"w{i:05d}.{fmt}").write_bytes(as_bytes(wafer, fmt))
    names = sorted(p.name for p in staging.iterdir())
    config = agent_config(base, bundle_dir, broker.port, threads)  # type: ignore[arg-type]
    agent = AgentProcess(config)
    try:
        if not sub.online.wait(120):
            raise SystemExit(f"the agent did not come online; see {agent.log}")
        incoming = base / "data" / "incoming"
        wait_for(incoming.is_dir, 30)
        cpu0 = agent.cpu_seconds()
        start = time.perf_counter()
        for name in names:
            os.replace(staging / name, incoming / name)
        wait_for(lambda: sub.count() >= len(names), 900, interval=0.05, what="all results")
        last = max(t for t, _ in sub.arrivals.values())
        elapsed = last - start
        cpu = agent.cpu_seconds() - cpu0
        return {
            "wafers": len(names),
            "seconds": elapsed,
            "wafers_per_s": len(names) / elapsed,
            "agent_cpu_s": cpu,
            "agent_cpu_ms_per_wafer": cpu / len(names) * 1000,
            "peak_rss_mb": agent.peak_rss_mb(),
        }
    finally:
        agent.stop()
        sub.close()
        broker.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--wafers", type=int, default=3000)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--format", default="tsk", choices=["tsk", "e142", "csv", "stdf"])
    add_model_arguments(parser)
    args = parser.parse_args()
    bundle_dir, what = bundle(args.model, args.bundle)
    short = args.bundle.name if args.bundle else args.model
    print(
        f"model: {what}; {args.wafers} files of one 25x27 map ({args.format}); "
        f"cpus: {os.cpu_count()}"
    )
    print(
        "| model | model threads | wafers | seconds | wafers/s | agent CPU ms/wafer "
        "| agent peak RSS MB |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for threads in args.threads:
        r = run(args.wafers, threads, args.format, bundle_dir)
        print(
            f"| {short} | {threads} | {r['wafers']:.0f} | {r['seconds']:.2f} | "
            f"{r['wafers_per_s']:.0f} | "
            f"{r['agent_cpu_ms_per_wafer']:.2f} | {r['peak_rss_mb']:.0f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
