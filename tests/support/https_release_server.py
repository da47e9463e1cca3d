"""A real HTTPS file server on loopback for release-download tests: a CA and a server certificate
made with ``cryptography``, ``Range: bytes=N-`` answered with 206, a bearer token checked, and
knobs for the failures a client must survive (a cut body, an ignored range)."""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
import ssl
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True)
class Tls:
    ca_file: Path
    cert_file: Path
    key_file: Path


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _pem(folder: Path, name: str, data: bytes) -> Path:
    path = folder / name
    path.write_bytes(data)
    return path


def make_tls(folder: Path, ca_name: str = "waferscope test CA") -> Tls:
    """A CA and a certificate for 127.0.0.1 / localhost signed by it, as PEM files in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name(ca_name))
        .issuer_name(_name(ca_name))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .add_extension(ca_ski, critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("127.0.0.1"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    return Tls(
        ca_file=_pem(folder, "ca.pem", ca.public_bytes(pem)),
        cert_file=_pem(folder, "server.pem", cert.public_bytes(pem)),
        key_file=_pem(
            folder,
            "server.key",
            key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()),
        ),
    )


@dataclass
class Behaviour:
    """What the server does; ``requests`` records the headers of every request it answered."""

    files: dict[str, bytes] = field(default_factory=dict)  # URL path -> body
    token: str | None = None  # required bearer token; None: no authentication
    cut_after: int | None = None  # send only this many body bytes, then close (once)
    ignore_range: bool = False  # answer 200 with the whole file even when a range is asked
    sha256_header: bool = True  # send X-Content-SHA256
    fail_with: list[int] = field(default_factory=list)  # answer these statuses first, in turn
    stall_s: float = 0.0  # wait this long before the body (once)
    requests: list[dict[str, str]] = field(default_factory=list)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        return

    def _refuse(self, code: int) -> None:
        self.send_response(code)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self) -> None:
        b = self.server.behaviour
        b.requests.append(dict(self.headers.items()))
        if b.token is not None and self.headers.get("Authorization") != f"Bearer {b.token}":
            self._refuse(401)
            return
        if b.fail_with:
            self._refuse(b.fail_with.pop(0))
            return
        body = b.files.get(self.path)
        if body is None:
            self._refuse(404)
            return
        asked = self.headers.get("Range", "")
        start = 0
        if asked.startswith("bytes=") and asked.endswith("-") and not b.ignore_range:
            start = int(asked[len("bytes=") : -1])
            if start >= len(body):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(body)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(body) - start))
        self.send_header("Accept-Ranges", "bytes")
        if b.sha256_header:
            self.send_header("X-Content-SHA256", hashlib.sha256(body).hexdigest())
        self.end_headers()
        if b.stall_s:
            stall, b.stall_s = b.stall_s, 0.0
            time.sleep(stall)
            self.close_connection = True
            return
        if b.cut_after is not None:
            self.wfile.write(body[start : start + b.cut_after])
            b.cut_after = None
            self.close_connection = True
            return
        self.wfile.write(body[start:])


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    behaviour: Behaviour


class ReleaseHttpsServer:
    """``with ReleaseHttpsServer(tls, behaviour) as srv: srv.url("/x")`` (plain http if no tls)."""

    def __init__(self, tls: Tls | None, behaviour: Behaviour) -> None:
        self.server = _Server(("127.0.0.1", 0), _Handler)
        self.server.behaviour = behaviour
        self.scheme = "http"
        if tls is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(tls.cert_file, tls.key_file)
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
            self.scheme = "https"
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def url(self, path: str) -> str:
        return f"{self.scheme}://127.0.0.1:{self.server.server_address[1]}{path}"

    def __enter__(self) -> ReleaseHttpsServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
