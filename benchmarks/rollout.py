"""Time to roll a release out to N edges, the bytes moved, and wafers/s during the swap.

A private Mosquitto, the hub (SQLite, its rollout engine and BundleTransfer gRPC service) and N
edge agents (in this process, each with its own store, slots and MQTT session) running the
shipped INT8 engine. A release of the same engine under a new model version is registered and
rolled out in two waves (canary 1, then 100 %). Per N:

* rollout time: from the POST that starts the rollout to its state ``completed``;
* bytes moved: release bytes the hub's gRPC service streamed (and the release size × N);
* wafers/s: K real WM-811K maps dropped as E142 files into every edge's hot folder at once,
  timed to the last result committed at the hub — once in steady state, once at the moment the
  rollout starts (the swap); every wafer must reach the hub once (no loss, no duplicate).

    .venv/bin/python benchmarks/rollout.py --edges 1 3 6 --wafers 40

Prints a Markdown table; JSON in benchmarks/.work/rollout.json.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "benchmarks" / ".work" / "rollout"
sys.path.insert(0, str(ROOT / "tests" / "edge"))
sys.path.insert(0, str(ROOT / "tests" / "hub"))
sys.path.insert(0, str(ROOT / "tests" / "support"))

from edge_test_support import (  # noqa: E402
    Broker,
    agent_toml,
    drop,
    free_port,
    start_agent,
    wafer_bytes,
    wait_for,
)
from hub_testing import add_role_users, bearer, hub_config  # noqa: E402
from litestar.testing import TestClient  # noqa: E402
from release_keys import candidate, make_signer, release_toml  # noqa: E402
from sample_wafers import dataset_wafers  # noqa: E402
from sqlalchemy import func, select  # noqa: E402

from waferscope.edge.bundles import default_bundle_path  # noqa: E402
from waferscope.hub.app import Hub  # noqa: E402
from waferscope.hub.db.schema import Device, Result  # noqa: E402


def data_dir() -> Path:
    return ROOT.parent / "shared" / "data"


def committed(hub: Hub) -> tuple[int, int]:
    """(results, distinct (device, sequence)) at the hub."""
    with hub.db.session() as s:
        n = s.scalar(select(func.count()).select_from(Result)) or 0
        distinct = s.execute(
            select(func.count()).select_from(
                select(Result.device_id, Result.sequence).distinct().subquery()
            )
        ).scalar_one()
    return int(n), int(distinct)


def feed(agents: list[Any], wafers: list[Any], tag: str) -> None:
    files = [wafer_bytes(w) for w in wafers]
    for w in agents:
        folder = w.config.ingest.hot_folder.path
        for i, data in enumerate(files):
            drop(folder, f"{tag}{i:03d}.e142", data)


def run(n: int, wafers: int, work: Path) -> dict[str, Any]:
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    val = data_dir() / "wm811k" / "val.npz"
    keys = make_signer(work / "keys")
    new = candidate(default_bundle_path(), work / "new", val, "shipped-r2")
    release = keys.sign(new, work / "r2.wsrelease", 2)
    broker = Broker(work / "broker")
    broker.start()
    hub = Hub(
        hub_config(
            work,
            mqtt={"enabled": True, "port": broker.port, "client_id": "bench-hub"},
            releases={
                "trusted_root_keys": [str(keys.root_pub)],
                "transfer_bind": f"127.0.0.1:{free_port()}",
                "rollout_tick_s": 0.2,
            },
        )
    )
    add_role_users(hub)
    hub.start_background()
    agents = []
    try:
        for i in range(n):
            folder = work / f"edge-{i:02d}"
            folder.mkdir()
            toml = agent_toml(
                folder,
                default_bundle_path(),
                broker.port,
                release_toml(keys, shadow_wafers=0),
                device_id=f"edge-{i:02d}",
                tester_id=f"T-{i:02d}",
            )
            agents.append(start_agent(toml))

        def online() -> bool:
            with hub.db.session() as s:
                return sum(d.state == "online" for d in s.query(Device)) >= n

        wait_for(online, 60, what="edges online")
        maps = list(dataset_wafers(val, wafers, start=1000))
        other = list(dataset_wafers(val, wafers, start=2000))  # new bytes: not deduplicated
        began = time.perf_counter()
        feed(agents, maps, "steady")
        wait_for(lambda: committed(hub)[0] >= n * wafers, 600, what="steady wafers")
        steady_s = time.perf_counter() - began
        with TestClient(hub.web_app()) as client:
            rid = client.post(
                "/api/v1/releases",
                content=release.read_bytes(),
                headers={"Content-Type": "application/octet-stream", **bearer(hub, "engineer")},
            ).json()["release_id"]
            began = time.perf_counter()
            res = client.post(
                "/api/v1/rollouts",
                json={"release_id": rid, "waves": [{"canary": 1}, {"percent": 100}]},
                headers=bearer(hub, "engineer"),
            )
            feed(agents, other, "swap")
            rollout_id = res.json()["rollout_id"]

            def state() -> str:
                body = client.get(
                    f"/api/v1/rollouts/{rollout_id}", headers=bearer(hub, "operator")
                ).json()
                return str(body["state"])

            wait_for(lambda: state() in ("completed", "rolled_back"), 600, what="rollout")
            rollout_s = time.perf_counter() - began
            final = state()
            wait_for(lambda: committed(hub)[0] >= 2 * n * wafers, 600, what="swap wafers")
            swap_s = time.perf_counter() - began
        total, distinct = committed(hub)
        assert hub.rollouts is not None
        assert hub.rollouts.servicer is not None
        return {
            "edges": n,
            "state": final,
            "rollout_s": round(rollout_s, 2),
            "release_bytes": release.stat().st_size,
            "bytes_moved": hub.rollouts.servicer.bytes_sent,
            "steady_wafers_per_s": round(n * wafers / steady_s, 1),
            "swap_wafers_per_s": round(n * wafers / swap_s, 1),
            "results": total,
            "distinct": distinct,
            "expected": 2 * n * wafers,
            "on_new_engine": sum(a.slot.current.version == "shipped-r2" for a in agents),
        }
    finally:
        for a in agents:
            a.agent.stop()
        hub.stop()
        broker.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--edges", type=int, nargs="+", default=[1, 3, 6])
    parser.add_argument("--wafers", type=int, default=40, help="maps per edge per phase")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    rows = [run(n, args.wafers, WORK / f"n{n}") for n in args.edges]
    print(
        "| edges | rollout | time to completed | release | bytes moved | wafers/s steady "
        "| wafers/s during swap | results (distinct / expected) | on new engine |"
    )
    print("| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        print(
            f"| {r['edges']} | {r['state']} | {r['rollout_s']} s | {r['release_bytes']:,} B "
            f"| {r['bytes_moved']:,} B | {r['steady_wafers_per_s']} | {r['swap_wafers_per_s']} "
            f"| {r['results']} ({r['distinct']} / {r['expected']}) | {r['on_new_engine']} |"
        )
    WORK.mkdir(parents=True, exist_ok=True)
    (WORK.parent / "rollout.json").write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
