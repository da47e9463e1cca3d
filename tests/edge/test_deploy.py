"""Deploy commands over a real broker, release bytes over real gRPC and HTTPS on loopback."""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from edge_test_support import Broker, Subscriber, agent_toml, start_agent, wait_for
from https_release_server import Behaviour, ReleaseHttpsServer, make_tls
from paho.mqtt.enums import CallbackAPIVersion
from release_keys import Signer, candidate, release_toml, rewrite

from waferscope.edge.release_ledger import ReleaseState
from waferscope.protocols import messages, topics
from waferscope.protocols.bundle import sha256_file
from waferscope.protocols.pb import deploy_pb2 as pb
from waferscope.protocols.release.transfer import ReleaseTransferError, download, serve


def command(
    device: str,
    release: Path,
    port: int,
    action: pb.DeployAction.ValueType = pb.DEPLOY_ACTION_INSTALL,
    *,
    fetch_method: pb.FetchMethod.ValueType = pb.FETCH_METHOD_GRPC,
    location: str = "",
) -> pb.DeployCommand:
    cmd = pb.DeployCommand(
        schema_version=1,
        command_id=str(uuid.uuid4()),
        device_id=device,
        action=action,
        bundle=pb.BundleRef(
            sha256=sha256_file(release),
            size_bytes=release.stat().st_size,
            fetch_method=fetch_method,
            location=location or f"127.0.0.1:{port}",
        ),
    )
    cmd.issued_time.GetCurrentTime()
    return cmd


def publish(port: int, cmd: pb.DeployCommand, site: str = "fab3") -> None:
    hub = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    hub.connect("127.0.0.1", port)
    hub.loop_start()
    info = hub.publish(
        topics.deploy_topic(cmd.device_id, site=site), messages.encode(cmd), qos=1, retain=False
    )
    info.wait_for_publish(10)
    hub.loop_stop()
    hub.disconnect()


def test_resumable_download_checks_every_byte(
    tmp_path: Path, bundle_dir: Path, keys: Signer
) -> None:
    served = tmp_path / "served"
    served.mkdir()
    release = keys.sign(bundle_dir, served / "r1.wsrelease", 1)
    digest, size = sha256_file(release), release.stat().st_size
    server, port = serve(served, chunk_bytes=16 * 1024)
    try:
        dest = tmp_path / "got" / "r.wsrelease"
        part = download(f"127.0.0.1:{port}", digest, size, dest, max_chunks=1)
        assert part.name.endswith(".part") and 0 < part.stat().st_size < size
        download(f"127.0.0.1:{port}", digest, size, dest)  # resumes from the .part file
        assert dest.read_bytes() == release.read_bytes() and not part.exists()
        with pytest.raises(ReleaseTransferError, match="NOT_FOUND"):
            download(f"127.0.0.1:{port}", "0" * 64, size, tmp_path / "none.wsrelease")
        (tmp_path / "bad.wsrelease.part").write_bytes(b"x" * 10)  # a foreign partial file
        with pytest.raises(ReleaseTransferError, match="does not match"):
            download(f"127.0.0.1:{port}", digest, size, tmp_path / "bad.wsrelease")
        assert not (tmp_path / "bad.wsrelease.part").exists()
    finally:
        server.stop(0)


def test_deploy_command_installs_acks_and_runs_once(
    tmp_path: Path,
    bundle_dir: Path,
    val_npz: Path,
    keys: Signer,
    broker: Broker,
    subscriber: Subscriber,
) -> None:
    served = tmp_path / "served"
    served.mkdir()
    new = candidate(bundle_dir, tmp_path / "new", val_npz, "tiny-test-2")
    release = keys.sign(new, served / "r3.wsrelease", 3)
    server, grpc_port = serve(served)
    w = start_agent(
        agent_toml(tmp_path, bundle_dir, broker.port, release_toml(keys, shadow_wafers=0))
    )
    try:
        wait_for(lambda: w.link_state.connected, 20, what="agent connected")
        cmd = command("edge-01", release, grpc_port)
        publish(broker.port, cmd)
        publish(broker.port, cmd)  # a duplicate delivery: executed once
        wait_for(lambda: w.slot.current.version == "tiny-test-2", 60, what="the new engine")
        wait_for(
            lambda: any(
                a.payload["status"] == "DEPLOY_STATUS_ACTIVATED"
                for a in subscriber.of_kind("deploy-ack")
            ),
            20,
            what="ACTIVATED ack",
        )
        acks = [a.payload for a in subscriber.of_kind("deploy-ack")]
        assert [a["status"] for a in acks] == [
            "DEPLOY_STATUS_RECEIVED",
            "DEPLOY_STATUS_IN_PROGRESS",
            "DEPLOY_STATUS_ACTIVATED",
        ]
        assert [int(a["sequence"]) for a in acks] == [1, 2, 3]
        assert acks[-1]["activeModelVersion"] == "tiny-test-2"
        # a tampered file served under its own digest is refused, the engine keeps serving
        bad = served / "bad.wsrelease"
        shutil.copy(keys.sign(new, tmp_path / "r4.wsrelease", 4), bad)
        rewrite(
            bad,
            lambda ms: [
                (i, d[:-8] + b"tampered" if i.name.endswith(".onnx") else d) for i, d in ms
            ],
        )
        publish(broker.port, command("edge-01", bad, grpc_port))
        wait_for(
            lambda: any(
                a.payload["status"] == "DEPLOY_STATUS_REJECTED"
                for a in subscriber.of_kind("deploy-ack")
            ),
            30,
            what="REJECTED ack",
        )
        rejected = [a.payload for a in subscriber.of_kind("deploy-ack")][-1]
        assert rejected["error"]["code"] in {"ReleaseFileError", "ReleaseFormatError"}
        assert w.slot.current.version == "tiny-test-2"
        # the hub asks for a rollback: back to the configured engine
        publish(
            broker.port, command("edge-01", release, grpc_port, action=pb.DEPLOY_ACTION_ROLLBACK)
        )
        wait_for(lambda: w.slot.current.version == "tiny-test-1", 30, what="rollback")
        assert w.releases.ledger.all()[-1].state is ReleaseState.ROLLED_BACK
    finally:
        w.agent.stop()
        server.stop(0)


def test_deploy_command_over_https_installs_and_s3_is_rejected(
    tmp_path: Path,
    bundle_dir: Path,
    val_npz: Path,
    keys: Signer,
    broker: Broker,
    subscriber: Subscriber,
) -> None:
    new = candidate(bundle_dir, tmp_path / "new", val_npz, "tiny-test-2")
    release = keys.sign(new, tmp_path / "r5.wsrelease", 5)
    tls = make_tls(tmp_path / "tls")
    token_file = tmp_path / "hub.token"
    token_file.write_text("device-token-0123456789\n", encoding="utf-8")
    path = "/api/v1/releases/5/file"
    behaviour = Behaviour(files={path: release.read_bytes()}, token="device-token-0123456789")
    settings = release_toml(
        keys, shadow_wafers=0, hub_ca_file=f'"{tls.ca_file}"', hub_token_file=f'"{token_file}"'
    )
    w = start_agent(agent_toml(tmp_path, bundle_dir, broker.port, settings))
    try:
        wait_for(lambda: w.link_state.connected, 20, what="agent connected")
        with ReleaseHttpsServer(tls, behaviour) as srv:
            s3 = command("edge-01", release, 0, fetch_method=pb.FETCH_METHOD_S3, location="s3://x")
            publish(broker.port, s3)
            publish(
                broker.port,
                command(
                    "edge-01",
                    release,
                    0,
                    fetch_method=pb.FETCH_METHOD_HTTPS,
                    location=srv.url(path),
                ),
            )
            wait_for(lambda: w.slot.current.version == "tiny-test-2", 60, what="the new engine")
            wait_for(
                lambda: any(
                    a.payload["status"] == "DEPLOY_STATUS_ACTIVATED"
                    for a in subscriber.of_kind("deploy-ack")
                ),
                20,
                what="ACTIVATED ack",
            )
            # the hub no longer accepts this device's token: a typed failure, the engine stays
            behaviour.token = "a-rotated-token-0123456789"
            publish(
                broker.port,
                command(
                    "edge-01",
                    release,
                    0,
                    fetch_method=pb.FETCH_METHOD_HTTPS,
                    location=srv.url(path),
                ),
            )
            wait_for(
                lambda: any(
                    a.payload["status"] == "DEPLOY_STATUS_FAILED"
                    for a in subscriber.of_kind("deploy-ack")
                ),
                30,
                what="FAILED ack",
            )
        acks = [a.payload for a in subscriber.of_kind("deploy-ack")]
        failed = acks.pop()
        assert failed["error"]["code"] == "download_failed"
        assert "(401)" in failed["error"]["message"]
        assert w.slot.current.version == "tiny-test-2"
        assert [a["status"] for a in acks[-2:]] == [
            "DEPLOY_STATUS_RECEIVED",
            "DEPLOY_STATUS_IN_PROGRESS",
        ]
        acks = acks[:-2]
        assert [a["status"] for a in acks] == [
            "DEPLOY_STATUS_RECEIVED",
            "DEPLOY_STATUS_REJECTED",
            "DEPLOY_STATUS_RECEIVED",
            "DEPLOY_STATUS_IN_PROGRESS",
            "DEPLOY_STATUS_ACTIVATED",
        ]
        assert acks[1]["error"]["code"] == "unsupported_fetch_method"
        assert "FETCH_METHOD_S3" in acks[1]["error"]["message"]
        request = behaviour.requests[0]
        assert request["Authorization"] == "Bearer device-token-0123456789"
        assert request["X-Device-Id"] == "edge-01"
        assert not list((w.releases.slots_dir / "downloads").iterdir())
    finally:
        w.agent.stop()
