"""The pieces of the federated app in-process: settings, strategies, FedProx, privacy budget,
partitions, credentials, resumable server state, and the edge's federated command."""

from __future__ import annotations

import subprocess
import sys
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch
from cryptography import x509
from cryptography.hazmat.primitives.serialization import load_ssh_private_key, load_ssh_public_key
from flwr.serverapp.strategy import DifferentialPrivacyServerSideFixedClipping, FedAvg, FedProx

from waferscope.edge.federated import FederatedClientError, supernode_argv
from waferscope.protocols.datasets import load_labelled_arrays
from waferscope.trainer.config import load_config
from waferscope.trainer.federated.credentials import make_node_keys, make_tls
from waferscope.trainer.federated.node_training import NodeDataError, NodeDataset, NodeTrainer
from waferscope.trainer.federated.privacy import epsilon_spent
from waferscope.trainer.federated.server_app import (
    FederatedSettings,
    NodeReports,
    build_strategy,
)
from waferscope.trainer.federated.server_state import FederatedRun, FederatedRunError, RoundRecord

from .conftest import MAJOR, MINOR, server_config

RUN_CONFIG = {"train-config": "x.toml", "num-rounds": 3, "local-steps": 5}


def test_settings_and_strategies() -> None:
    avg = build_strategy(FederatedSettings.from_run_config(RUN_CONFIG), NodeReports())
    assert type(avg) is FedAvg
    prox = FederatedSettings.from_run_config(
        RUN_CONFIG | {"strategy": "FedProx", "proximal-mu": 0.1}
    )
    strategy = build_strategy(prox, NodeReports())
    assert isinstance(strategy, FedProx) and strategy.proximal_mu == 0.1
    dp = FederatedSettings.from_run_config(
        RUN_CONFIG | {"dp-noise-multiplier": 1.0, "dp-clipping-norm": 5.0}
    )
    assert isinstance(build_strategy(dp, NodeReports()), DifferentialPrivacyServerSideFixedClipping)
    with pytest.raises(FederatedRunError, match="strategy 'fedsgd'"):
        FederatedSettings.from_run_config(RUN_CONFIG | {"strategy": "fedsgd"})
    with pytest.raises(FederatedRunError, match="local-steps"):
        FederatedSettings.from_run_config({"train-config": "x.toml", "num-rounds": 1})
    with pytest.raises(FederatedRunError, match="dp-clipping-norm"):
        FederatedSettings.from_run_config(RUN_CONFIG | {"dp-noise-multiplier": 1.0})


def test_privacy_budget_grows_with_rounds_and_shrinks_with_noise() -> None:
    # sigma = 1, one round, delta = 1e-5: min over orders a of a/2 + ln(1e5)/(a-1) ~ 5.30
    assert epsilon_spent(1.0, 1, 1e-5) == pytest.approx(5.30, abs=0.02)
    assert epsilon_spent(1.0, 10, 1e-5) > epsilon_spent(1.0, 2, 1e-5)
    assert epsilon_spent(2.0, 10, 1e-5) < epsilon_spent(1.0, 10, 1e-5)
    with pytest.raises(ValueError, match="delta"):
        epsilon_spent(1.0, 1, 0.0)


def test_partitions_are_skewed_disjoint_and_cover_every_class(partitions: list[Path]) -> None:
    counts = []
    for path in partitions:
        arrays = load_labelled_arrays(path)
        counts.append(np.bincount(np.asarray(arrays.targets), minlength=9))
        assert len(arrays.class_names) == 9
    table = np.stack(counts)
    assert set(np.unique(table)) <= {MAJOR, MINOR}
    assert (table.max(axis=0) == MAJOR).all()  # every class is some node's major class
    assert ((table == MAJOR).sum(axis=1) == 3).all()


def test_credentials_load_as_flower_reads_them(tmp_path: Path) -> None:
    tls = make_tls(tmp_path)
    ca = x509.load_pem_x509_certificate(tls.ca_cert.read_bytes())
    server = x509.load_pem_x509_certificate(tls.server_cert.read_bytes())
    server.verify_directly_issued_by(ca)
    sans = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "localhost" in sans.get_values_for_type(x509.DNSName)
    keys = make_node_keys(tmp_path, "edge-1")
    private = load_ssh_private_key(keys.private_key.read_bytes(), None)
    public = load_ssh_public_key(keys.public_key.read_bytes())
    assert private.public_key().public_numbers() == public.public_numbers()  # type: ignore[union-attr]
    assert keys.private_key.stat().st_mode & 0o777 == 0o600


def test_node_dataset_errors(tmp_path: Path) -> None:
    with pytest.raises(NodeDataError, match="'data-path' is not set"):
        NodeDataset.from_node_config(None)
    with pytest.raises(NodeDataError, match="no such file"):
        NodeDataset.from_node_config(str(tmp_path / "missing.npz"))


def test_fedprox_term_keeps_local_weights_near_the_global_ones(
    tmp_path: Path, data_dir: Path, partitions: list[Path]
) -> None:
    torch.set_num_threads(1)
    cfg = load_config(server_config(tmp_path, data_dir))
    drift = {}
    for mu in (0.0, 5.0):
        node = NodeTrainer(cfg, NodeDataset((partitions[0],)))
        start = node.weights()
        result = node.fit(start, 8, proximal_mu=mu, seed=1)
        drift[mu] = sum(
            float(((result.weights[k].float() - v.float()) ** 2).sum())
            for k, v in start.items()
            if v.is_floating_point()
        )
        assert result.num_examples > 0 and 0.0 <= result.val.macro_f1 <= 1.0
    assert drift[5.0] < drift[0.0]


def test_server_state_resumes_after_a_round(tmp_path: Path, data_dir: Path) -> None:
    cfg = load_config(server_config(tmp_path, data_dir))
    run = FederatedRun(cfg)
    weights = run.weights()
    record = RoundRecord(1, [7, 8], {"7": "a" * 64}, {}, {}, {}, 0.0, 1.0, 10, 10)
    run.finish_round(record, weights)
    assert (run.run_dir / "best.pt").is_file() and run.best_round == 1
    again = FederatedRun(cfg)
    assert again.round == 1 and again.best_score == run.best_score
    assert again.history[0]["nodes"] == [7, 8]
    for key, value in again.weights().items():
        assert torch.equal(value, weights[key])
    (run.run_dir / "server_state.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(FederatedRunError, match="cannot resume"):
        FederatedRun(cfg)


def test_server_state_warm_starts_from_a_checkpoint(tmp_path: Path, data_dir: Path) -> None:
    cfg = load_config(server_config(tmp_path, data_dir))
    donor = FederatedRun(cfg).weights()
    donor = OrderedDict((k, v + 0.01 if v.is_floating_point() else v) for k, v in donor.items())
    torch.save({"model": donor}, tmp_path / "warm.pt")
    run = FederatedRun(cfg, initial_weights=tmp_path / "warm.pt")
    assert run.initial_score is not None and 0.0 <= run.initial_score <= 1.0
    for key, value in run.weights().items():
        assert torch.equal(value, donor[key])
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(FederatedRunError, match=r"initial-weights .*bad\.pt"):
        FederatedRun(cfg, initial_weights=tmp_path / "bad.pt")
    settings = FederatedSettings.from_run_config(
        {"train-config": "x.toml", "num-rounds": 1, "local-steps": 1, "initial-weights": "w.pt"}
    )
    assert settings.initial_weights == Path("w.pt")


def test_edge_federated_command(tmp_path: Path, partitions: list[Path]) -> None:
    tls = make_tls(tmp_path)
    keys = make_node_keys(tmp_path, "edge-1")
    cmd, env = supernode_argv("hub:9092", 9094, [partitions[0]], tls.ca_cert, keys.private_key, 2)
    assert Path(cmd[0]).name == "flower-supernode"
    assert cmd[cmd.index("--root-certificates") + 1] == str(tls.ca_cert)
    assert cmd[cmd.index("--auth-supernode-private-key") + 1] == str(keys.private_key)
    assert f'data-path="{partitions[0].resolve()}" threads=2' in cmd
    assert "--insecure" not in cmd and "--allow-runtime-dependency-installation" not in cmd
    assert str(Path(sys.executable).parent) in env["PATH"]
    with pytest.raises(FederatedClientError, match=r"missing\.npz: no such file"):
        supernode_argv("hub:9092", 9094, [tmp_path / "missing.npz"], None, None, 1)
    cli = [sys.executable, "-m", "waferscope.protocols.cli.main", "edge", "federated"]
    done = subprocess.run(
        [*cli, "--superlink", "hub:9092", "--data", str(partitions[0])],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode != 0 and "--ca-cert and --key are required" in done.stderr


def test_edge_store_labels_export_to_the_trainer_layout(tmp_path: Path) -> None:
    from waferscope.edge.federated import export_store_labels
    from waferscope.edge.labels import label_counts, record_label
    from waferscope.edge.store import Store
    from waferscope.protocols import messages
    from waferscope.protocols.pb import label_pb2, result_pb2

    classes = ("Center", "Donut", "none")
    store = Store(tmp_path / "edge.db")
    grids = {}
    for seq, pattern in enumerate(["Donut", "Center", "Unknown-class", "none"], start=1):
        rid = messages.new_message_id()
        grid = np.ones((5 + seq, 6), np.uint8)
        grid[0, :seq] = 2
        grids[rid] = (grid, pattern)
        result = result_pb2.WaferResult(result_id=rid, device_id="edge-1", sequence=seq)
        result.map.CopyFrom(messages.pack_states(grid))
        with store.transaction() as conn:
            conn.execute(
                "INSERT INTO results (result_id, sequence, message) VALUES (?, ?, ?)",
                (rid, seq, result.SerializeToString()),
            )
        label = label_pb2.WaferLabel(
            label_id=messages.new_message_id(),
            device_id="edge-1",
            result_id=rid,
            pattern=pattern,
            source=label_pb2.LABEL_SOURCE_HUB_REVIEW,
        )
        assert record_label(store, label)
        assert not record_label(store, label)  # a repeated delivery changes nothing
    gone = label_pb2.WaferLabel(  # a label of a pruned result: kept, without a map
        label_id=messages.new_message_id(),
        device_id="edge-1",
        result_id=messages.new_message_id(),
        pattern="Donut",
        source=label_pb2.LABEL_SOURCE_HUB_REVIEW,
    )
    assert record_label(store, gone)
    assert label_counts(store) == {"hub-review": 5, "with_map": 4}
    store.close()
    out = tmp_path / "export" / "labels.npz"
    assert export_store_labels(tmp_path / "edge.db", out, classes) == 3
    arrays = load_labelled_arrays(out)
    assert tuple(arrays.class_names) == classes
    exported = sorted(
        (classes[int(t)], m.shape, int((m == 2).sum()))
        for m, t in zip(arrays.maps, arrays.targets, strict=True)
    )
    expected = sorted((p, g.shape, int((g == 2).sum())) for g, p in grids.values() if p in classes)
    assert exported == expected
    with pytest.raises(FederatedClientError, match="no such file"):
        export_store_labels(tmp_path / "missing.db", out, classes)


def test_edge_federated_extra_brings_the_trainer_only_when_asked() -> None:
    from importlib.metadata import distribution

    from packaging.requirements import Requirement

    reqs = [Requirement(r) for r in distribution("waferscope-edge").requires or []]
    trainer = [r for r in reqs if r.name == "waferscope-trainer"]
    assert len(trainer) == 1 and trainer[0].extras == {"federated"}
    assert trainer[0].marker is not None
    assert trainer[0].marker.evaluate({"extra": "federated"})
    assert not trainer[0].marker.evaluate({"extra": ""})


def test_supernode_supervisor_retries_only_connection_errors(tmp_path: Path) -> None:
    import io

    from waferscope.trainer.federated.deployment import supervise_supernode

    count = tmp_path / "starts"
    script = f"import pathlib, sys; p = pathlib.Path({str(count)!r}); "
    script += "p.write_text(p.read_text() + 'x' if p.exists() else 'x'); "
    script += "print(sys.argv[1]); sys.exit(1)"
    env = {"PATH": ""}
    out = io.StringIO()
    refused = [sys.executable, "-c", script, "Exit Code: 305"]  # how flwr says it, status 1
    assert supervise_supernode(refused, env, retry_for=1.0, backoff=(0.1, 0.1), out=out) == 1
    assert len(count.read_text()) >= 2  # started again while refused, until the window closed
    assert "again in" in out.getvalue() and "Exit Code: 305" in out.getvalue()
    count.unlink()
    other = [sys.executable, "-c", script, "Exit Code: 300"]
    assert supervise_supernode(other, env, retry_for=10, out=io.StringIO()) == 1
    assert count.read_text() == "x"  # any other failure is not retried
