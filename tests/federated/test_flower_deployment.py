"""A real federation on loopback: SuperLink with TLS and node authentication, three SuperNodes on
skewed WM-811K partitions, one killed and restarted mid-round, an unregistered node refused; the
run completes and writes a candidate bundle, and the federated model (fine-tuned from a shared
warm start) scores higher on the gate set than every node's local-only model of the same budget."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from local_services import wait_for

from waferscope.protocols import bundle as contract
from waferscope.trainer.export import load_checkpoint

from .conftest import LOCAL_STEPS, ROUNDS, local_only_scores, server_config
from .flower_processes import Federation

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1500)]

# Federated beats local-only by at least this much gate macro-F1 (measured: federated 0.228 and
# 0.260 in two runs vs local-only 0.157 / 0.113 / 0.139, warm start 0.334).
MARGIN = 0.05


def node_id(log: str) -> int:
    line = next(x for x in log.splitlines() if "SuperNode ID:" in x)
    return int(line.rsplit(":", 1)[1])


def test_federation_over_tls_with_node_auth(
    tmp_path: Path, data_dir: Path, partitions: list[Path], warm_start: Path
) -> None:
    cfg_path = server_config(tmp_path, data_dir)
    fed = Federation(tmp_path / "federation")
    try:
        fed.start_link()
        nodes = [fed.add_node(f"node-{i}", p, register=True) for i, p in enumerate(partitions)]
        intruder = fed.add_node("intruder", partitions[0], register=False)
        for node in nodes:
            fed.start_node(node)
        fed.start_node(intruder, max_wait_time=10)
        run = fed.run(
            {
                "train-config": str(cfg_path),
                "num-rounds": ROUNDS,
                "local-steps": LOCAL_STEPS,
                "strategy": "fedavg",
                "min-train-nodes": 2,
                # every round starts with all three connected: the rounds after the kill wait
                # for the restarted node (an idle machine finishes them before it is let back
                # in, about 60 s, and the check below that it trains again would be left to luck)
                "min-available-nodes": 3,
                "fraction-evaluate": 0.34,
                "min-evaluate-nodes": 1,
                "round-timeout": 300.0,
                "initial-weights": str(warm_start),
            }
        )
        victim = nodes[2]
        wait_for(lambda: "Receiving: train message" in victim.log_text(), 240, "a train message")
        victim_id = node_id(victim.log_text())
        fed.kill_node(victim)  # mid-round: it took the message and will never answer it
        # Flower refuses the same key until the dead session expires (about 60 s); the edge's
        # command keeps restarting the SuperNode until it is let in.
        fed.start_edge_command(victim, retry_for=240)
        assert run.wait(1200) == 0, (fed.root / "flwr-run.log").read_text()[-4000:]
        assert node_id(victim.log_text()) == victim_id  # same key, same node
        assert "could not connect or activate; again in" in victim.log_text()
        assert intruder.process is not None and intruder.process.wait(60) != 0
        assert "No SuperNode found with the given public key" in fed.link_log.read_text()
    finally:
        fed.stop()
    run_dir = tmp_path / "runs" / "federated"
    rows = [json.loads(line) for line in (run_dir / "history.jsonl").read_text().splitlines()]
    assert [r["round"] for r in rows] == list(range(1, ROUNDS + 1))
    assert victim_id not in rows[0]["nodes"] and len(rows[0]["nodes"]) == 2
    # the restarted node receives runs again (the known Flower failure is that it does not)
    assert "Sending: train message" in victim.log_text()
    assert any(victim_id in r["nodes"] for r in rows[1:])  # and its update is aggregated
    assert all(r["bytes_up"] > 0 for r in rows)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["rounds"] == ROUNDS
    manifest = contract.verify(run_dir / "bundle")
    assert manifest.metrics["pattern_macro_f1"] > 0
    assert load_checkpoint(run_dir / "best.pt").meta["federated"]["best_round"] >= 1
    assert 0.0 <= summary["best_score"] <= 1.0
    # the federated model, after the same ROUNDS x LOCAL_STEPS per node, beats each node alone
    local = local_only_scores(cfg_path, warm_start, partitions)
    federated = rows[-1]["score"]
    print(
        f"gate macro-F1: warm start {summary['initial_score']:.4f}, federated {federated:.4f},"
        f" local-only {[round(x, 4) for x in local]}"
    )
    assert federated > max(local) + MARGIN, (federated, local)
