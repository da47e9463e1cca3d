"""TesterIngest over TLS and mutual TLS (ingest.grpc.tls), certificates made in the test."""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from edge_test_support import Broker, agent_toml

from waferscope.edge.app import Wiring, build_agent
from waferscope.edge.config_loader import load_config
from waferscope.protocols.pb import ingest_pb2, ingest_pb2_grpc

Key = ec.EllipticCurvePrivateKey


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _cert(
    cn: str,
    key: Key,
    issuer: tuple[x509.Name, Key] | None,
    *,
    ca: bool = False,
    server: bool = False,
) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    issuer_name, issuer_key = issuer or (_name(cn), key)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        ).add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
    elif not ca:
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
        )
    return builder.sign(issuer_key, hashes.SHA256())


def _pem(obj: x509.Certificate | Key) -> bytes:
    if isinstance(obj, x509.Certificate):
        return obj.public_bytes(serialization.Encoding.PEM)
    return obj.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


class Pki:
    """A CA, a server certificate for 127.0.0.1, a client certificate, and a stranger's pair."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir()
        ca_key = ec.generate_private_key(ec.SECP256R1())
        self.ca = _pem(_cert("test CA", ca_key, None, ca=True))
        ca = (_name("test CA"), ca_key)
        server_key = ec.generate_private_key(ec.SECP256R1())
        client_key = ec.generate_private_key(ec.SECP256R1())
        other_key = ec.generate_private_key(ec.SECP256R1())
        self.client = (_pem(client_key), _pem(_cert("tester T-01", client_key, ca)))
        self.stranger = (_pem(other_key), _pem(_cert("tester X", other_key, None)))
        self.files = {
            "cert_file": folder / "server.pem",
            "key_file": folder / "server.key",
            "client_ca_file": folder / "ca.pem",
        }
        self.files["cert_file"].write_bytes(_pem(_cert("edge", server_key, ca, server=True)))
        self.files["key_file"].write_bytes(_pem(server_key))
        self.files["client_ca_file"].write_bytes(self.ca)


def _agent(tmp_path: Path, bundle_dir: Path, broker: Broker, tls_lines: str) -> Wiring:
    extra = f'[ingest.grpc]\nenabled = true\nlisten = "127.0.0.1:0"\n[ingest.grpc.tls]\n{tls_lines}'
    w = build_agent(
        load_config(agent_toml(tmp_path, bundle_dir, broker.port, extra), environ={}).config
    )
    w.agent.start()
    return w


def _submit(channel: grpc.Channel) -> ingest_pb2.SubmitResponse:
    """One real call: a file no reader knows (answered REJECTED, nothing classified)."""
    stub = ingest_pb2_grpc.TesterIngestStub(channel)
    return stub.Submit(ingest_pb2.WaferFile(file_name="x.bin", content=b"not a map"), timeout=15)


def _refused(channel: grpc.Channel) -> None:
    with channel, pytest.raises(grpc.RpcError) as info:
        _submit(channel)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE  # type: ignore[attr-defined]


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return Pki(tmp_path / "pki")


@pytest.fixture
def tls_agent(tmp_path: Path, bundle_dir: Path, broker: Broker, pki: Pki) -> Iterator[Wiring]:
    lines = f'cert_file = "{pki.files["cert_file"]}"\nkey_file = "{pki.files["key_file"]}"\n'
    w = _agent(tmp_path, bundle_dir, broker, lines)
    yield w
    w.agent.stop()


def test_tls_refuses_plaintext_and_serves_tls(tls_agent: Wiring, pki: Pki) -> None:
    assert tls_agent.ingest is not None and tls_agent.ingest.tls
    address = tls_agent.ingest.address
    _refused(grpc.insecure_channel(address))
    _refused(grpc.secure_channel(address, grpc.ssl_channel_credentials(pki.stranger[1])))
    with grpc.secure_channel(address, grpc.ssl_channel_credentials(pki.ca)) as channel:
        answer = _submit(channel)
    assert answer.status == ingest_pb2.SUBMIT_STATUS_REJECTED and answer.file_name == "x.bin"


def test_mutual_tls_wants_a_client_certificate_of_the_ca(
    tmp_path: Path, bundle_dir: Path, broker: Broker, pki: Pki
) -> None:
    lines = "".join(f'{k} = "{v}"\n' for k, v in pki.files.items())
    w = _agent(tmp_path, bundle_dir, broker, lines)
    try:
        assert w.ingest is not None
        address = w.ingest.address
        _refused(grpc.insecure_channel(address))
        _refused(grpc.secure_channel(address, grpc.ssl_channel_credentials(pki.ca)))
        stranger = grpc.ssl_channel_credentials(pki.ca, *pki.stranger)
        _refused(grpc.secure_channel(address, stranger))
        client = grpc.ssl_channel_credentials(pki.ca, *pki.client)
        with grpc.secure_channel(address, client) as channel:
            assert _submit(channel).status == ingest_pb2.SUBMIT_STATUS_REJECTED
    finally:
        w.agent.stop()


def test_tls_options_come_in_pairs(tmp_path: Path, bundle_dir: Path, broker: Broker) -> None:
    from waferscope.edge.config_loader import ConfigError

    for lines in ('cert_file = "a.pem"\n', 'client_ca_file = "ca.pem"\n'):
        extra = f"[ingest.grpc]\nenabled = true\n[ingest.grpc.tls]\n{lines}"
        with pytest.raises(ConfigError, match="tls"):
            load_config(agent_toml(tmp_path, bundle_dir, broker.port, extra), environ={})
