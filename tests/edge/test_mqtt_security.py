"""The MQTT link over TLS with a user name and password, against a real Mosquitto."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from edge_test_support import MOSQUITTO, Broker, Subscriber, agent_toml, drop, wafer_bytes, wait_for
from sample_wafers import dataset_wafers

from waferscope.edge.app import build_agent
from waferscope.edge.config_loader import load_config

pytestmark = pytest.mark.skipif(MOSQUITTO is None, reason="the mosquitto binary is not installed")


def make_certificates(folder: Path) -> None:
    """A throw-away CA and a server certificate for localhost / 127.0.0.1 (openssl CLI)."""
    folder.mkdir(parents=True, exist_ok=True)

    def ssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=folder, check=True, capture_output=True, timeout=60)

    ssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "2",
        "-subj",
        "/CN=waferscope test CA",
    )
    ssl(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=localhost",
    )
    (folder / "san.ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    ssl(
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.crt",
        "-days",
        "2",
        "-extfile",
        "san.ext",
    )


def test_tls_and_password(tmp_path: Path, bundle_dir: Path, val_npz: Path) -> None:
    certs = tmp_path / "certs"
    make_certificates(certs)
    passwd = tmp_path / "passwd"
    for user, password in (("edge-01", "s3cret"), ("reader", "r3ad")):
        args = ["mosquitto_passwd", "-b", str(passwd), user, password]
        if not passwd.exists():
            args.insert(1, "-c")
        subprocess.run(args, check=True, capture_output=True, timeout=30)
    broker = Broker(
        tmp_path / "broker",
        f"allow_anonymous false\npassword_file {passwd}\ncafile {certs}/ca.crt\n"
        f"certfile {certs}/server.crt\nkeyfile {certs}/server.key\n",
    )
    broker.start()
    (tmp_path / "mqtt.pw").write_text("s3cret\n")
    extra = f'[mqtt.tls]\nenabled = true\nca_file = "{certs}/ca.crt"\n'
    config = agent_toml(tmp_path, bundle_dir, broker.port, extra)
    text = config.read_text().replace(
        "[mqtt]\n", '[mqtt]\nhost = "localhost"\nusername = "edge-01"\npassword_file = "mqtt.pw"\n'
    )
    config.write_text(text)
    sub = Subscriber(
        broker.port, ca_file=certs / "ca.crt", username="reader", password="r3ad", host="localhost"
    )
    w = build_agent(load_config(config, environ={}).config)
    w.agent.start()
    try:
        wait_for(lambda: w.link_state.connected, 20, what="TLS connection")
        incoming = w.config.ingest.hot_folder.path
        assert incoming is not None
        for i, wafer in enumerate(dataset_wafers(val_npz, 3)):
            drop(incoming, f"tls{i}.xml", wafer_bytes(wafer))
        wait_for(lambda: len(sub.unique_results()) == 3, 30, what="results over TLS")
    finally:
        w.agent.stop()
        sub.close()

    # a wrong password: no link, results wait in the outbox
    (tmp_path / "mqtt.pw").write_text("wrong\n")
    w = build_agent(load_config(config, environ={}).config)
    w.agent.start()
    try:
        incoming = w.config.ingest.hot_folder.path
        assert incoming is not None
        drop(incoming, "late.xml", wafer_bytes(next(dataset_wafers(val_npz, 1, start=9))))
        wait_for(lambda: w.store.outbox_depth() >= 1, 20, what="stored")
        assert not w.link_state.connected
        assert re.search("authori|password", w.link_state.last_error, re.I), w.link_state.last_error
    finally:
        w.agent.stop()
        broker.stop()
