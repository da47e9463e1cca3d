"""TLS on both sides of the hub: HTTPS for the UI/API, TLS to the MQTT broker (real Mosquitto)."""

from __future__ import annotations

import json
import shutil
import signal
import ssl
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from hub_data import results
from hub_support import MOSQUITTO, Broker, Publisher, free_port, wait_for
from hub_testing import JWT_SECRET, hub_config
from sqlalchemy import func, select

from waferscope.hub.app import Hub
from waferscope.hub.db.schema import Result
from waferscope.protocols import messages, topics

OPENSSL = shutil.which("openssl")
pytestmark = pytest.mark.skipif(OPENSSL is None, reason="the openssl command is not installed")


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    """A self-signed certificate for localhost / 127.0.0.1 (its own CA)."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            str(OPENSSL),
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return cert, key


def test_https(tmp_path: Path, certificate: tuple[Path, Path]) -> None:
    cert, key = certificate
    port = free_port()
    config = tmp_path / "hub.toml"
    config.write_text(
        f'data_dir = "state"\n[mqtt]\nenabled = false\n[http]\nport = {port}\n'
        f'[http.tls]\ncert_file = "{cert}"\nkey_file = "{key}"\n'
        f'[auth]\njwt_secret = "{JWT_SECRET}"\n'
    )
    exe = str(Path(sys.executable).parent / "waferscope")
    proc = subprocess.Popen(
        [exe, "hub", "run", "--config", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    context = ssl.create_default_context(cafile=str(cert))
    try:

        def healthy() -> bool:
            try:
                url = f"https://localhost:{port}/healthz"
                with urllib.request.urlopen(url, context=context, timeout=2) as r:
                    return bool(json.load(r)["status"] == "ok")
            except OSError:
                return False

        wait_for(healthy, 60, interval=0.3, what="HTTPS /healthz")
        with pytest.raises(OSError):  # plain HTTP on the TLS port does not work
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)


def test_mqtt_over_tls(tmp_path: Path, certificate: tuple[Path, Path], data_dir: Path) -> None:
    if MOSQUITTO is None:
        pytest.skip("the mosquitto binary is not installed")
    cert, key = certificate
    broker = Broker(
        tmp_path / "broker", extra_conf=f"certfile {cert}\nkeyfile {key}\nallow_anonymous true\n"
    )
    broker.start()
    hub = Hub(
        hub_config(
            tmp_path,
            mqtt={
                "enabled": True,
                "host": "localhost",
                "port": broker.port,
                "tls": {"enabled": True, "ca_file": str(cert)},
            },
        )
    )
    hub.start_background(services=False)
    try:
        wait_for(hub.ingest.subscribed.is_set, 20, what="subscription over TLS")  # type: ignore[union-attr]
        pub = Publisher(broker.port, client_id="edge-01", tls_ca=cert)
        try:
            assert pub.connected.wait(10)
            msg = next(results(data_dir, 1))
            pub.publish(topics.result_topic("edge-01"), messages.encode(msg), msg.result_id)

            def stored() -> int:
                with hub.db.session() as s:
                    return int(s.scalar(select(func.count()).select_from(Result)) or 0)

            wait_for(lambda: stored() == 1, 20, what="the result over TLS")
        finally:
            pub.close()
    finally:
        hub.stop()
        broker.stop()
