"""Release files over HTTPS from the hub: a resumable, SHA-256-checked download (httpx).

The client keeps what it received in a ``.part`` file beside the destination and asks for the
rest with ``Range: bytes=<size>-``: a ``206 Partial Content`` answer is appended (its
``Content-Range`` must start where the file ends and name the announced total), a ``200`` answer
means the server ignored the range and the download restarts from byte 0, a ``416`` (the partial
file reaches past the served one) drops the partial file. An ``X-Content-SHA256`` header (hex)
naming another digest, or a served file of another size, refuses the download and drops the
partial file before a byte is written. A broken connection, a timeout or a 5xx is retried with
exponential backoff; what arrived stays for the next try (or the next deploy command). The
server's certificate is checked against a configured CA file (or the system's roots); a bearer
token is sent when configured. Plain ``http://`` is refused unless explicitly allowed, and then
only to a loopback host (tests). The finished file must have the announced size and SHA-256 or it
is deleted; every refusal is a :class:`~waferscope.protocols.release.transfer.ReleaseTransferError`.
"""

from __future__ import annotations

import ipaddress
import re
import ssl
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Final
from urllib.parse import urlsplit

import httpx

from waferscope.protocols.release.transfer import ReleaseTransferError, finish_part

SHA256_HEADER: Final = "X-Content-SHA256"
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+)")
_HEX_SHA256 = re.compile(r"[0-9a-f]{64}")  # the header is compared only when it is hex SHA-256


@dataclass(frozen=True)
class HttpFetchOptions:
    """How release files are fetched over HTTPS (the edge's ``[release]`` settings)."""

    ca_file: Path | None = None  # PEM bundle the server's certificate must chain to; None: system
    token: str | None = None  # sent as 'Authorization: Bearer <token>'
    allow_plain_http: bool = False  # http:// to a loopback host only (tests)
    max_bytes: int = 2 * 1024**3  # larger announced releases are refused before any byte
    timeout_s: float = 30.0  # connect / read / write timeout of one request
    retries: int = 3  # further tries after a broken connection, a timeout or a 5xx
    backoff_s: float = 0.5  # first wait between tries; doubled each time, at most 30 s


def _check_url(url: str, options: HttpFetchOptions) -> None:
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return
    if parts.scheme == "http" and parts.hostname:
        if not options.allow_plain_http:
            raise ReleaseTransferError(f"{url}: plain http is not allowed for release downloads")
        host = parts.hostname
        try:
            loopback = ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = host == "localhost"
        if loopback:
            return
        raise ReleaseTransferError(f"{url}: plain http is allowed to a loopback host only")
    raise ReleaseTransferError(f"{url}: not an https:// URL of a release file")


def _ssl_context(options: HttpFetchOptions) -> ssl.SSLContext:
    if options.ca_file is None:
        return ssl.create_default_context()
    try:
        return ssl.create_default_context(cafile=str(options.ca_file))
    except (OSError, ssl.SSLError) as exc:
        raise ReleaseTransferError(
            f"release.hub_ca_file {options.ca_file}: not a readable PEM CA bundle ({exc})"
        ) from None


def _certificate_refused(exc: BaseException) -> ssl.SSLCertVerificationError | None:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLCertVerificationError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def _start_offset(response: httpx.Response, offset: int, size: int, url: str) -> int | str:
    """Where the body of ``response`` starts in the file (0 when the server ignored the range),
    or why another try is needed."""
    if response.status_code == 200:
        length = response.headers.get("Content-Length")
        if length is not None and int(length) != size:
            raise ReleaseTransferError(
                f"{url}: the server's file has {length} bytes, the release {size}"
            )
        return 0
    match = _CONTENT_RANGE.fullmatch(response.headers.get("Content-Range", ""))
    if match is None:
        return f"206 without a usable Content-Range at byte {offset}"
    start, total = int(match.group(1)), int(match.group(3))
    if total != size:
        raise ReleaseTransferError(
            f"{url}: the server's file has {total} bytes, the release {size}"
        )
    if start != offset:
        return f"206 from byte {start} when byte {offset} was asked for"
    return start


def _check_status(response: httpx.Response, url: str, part: Path) -> str | None:
    """None when the body is (part of) the file, why another try is needed, or a refusal."""
    code = response.status_code
    if code in (200, 206):
        return None
    if code == 416:
        part.unlink(missing_ok=True)
        return "416 Range Not Satisfiable: the partial file was dropped"
    if code in (401, 403):
        raise ReleaseTransferError(
            f"{url}: the hub refused the release download ({code}); check release.hub_token"
        )
    if code in {408, 429} or code >= 500:
        return f"HTTP {code}"
    raise ReleaseTransferError(f"{url}: HTTP {code} {response.reason_phrase}")


def _one_try(client: httpx.Client, url: str, sha256: str, size: int, part: Path) -> str | None:
    """Fetch what ``part`` lacks: None when it is complete, else why another try is needed
    (ReleaseTransferError when no try can mend it; httpx.TransportError when the link broke)."""
    offset = part.stat().st_size if part.exists() else 0
    if offset > size:
        part.unlink()
        offset = 0
    if offset == size:
        return None
    headers = {"Range": f"bytes={offset}-"} if offset else {}
    with client.stream("GET", url, headers=headers) as response:
        retry = _check_status(response, url, part)
        if retry is not None:
            return retry
        try:  # the served file is not the announced one: what was kept of it is worthless
            announced = response.headers.get(SHA256_HEADER, "").strip().lower()
            if _HEX_SHA256.fullmatch(announced) and announced != sha256.lower():
                raise ReleaseTransferError(
                    f"{url}: the server's file has sha256 {announced[:12]}, "
                    f"the release {sha256[:12]}"
                )
            start = _start_offset(response, offset, size, url)
        except ReleaseTransferError:
            part.unlink(missing_ok=True)
            raise
        if isinstance(start, str):
            part.unlink(missing_ok=True)  # the next try starts from byte 0
            return start
        with part.open("r+b" if part.exists() else "wb") as out:
            out.seek(start)
            out.truncate()
            written = start
            for block in response.iter_raw():  # as received: a cut body keeps every byte
                written += len(block)
                if written > size:
                    out.close()
                    part.unlink()
                    raise ReleaseTransferError(f"{url}: the server sent more than {size} bytes")
                out.write(block)
    return f"the body ended at byte {written} of {size}" if written < size else None


def download(
    url: str,
    sha256: str,
    size: int,
    dest: Path,
    *,
    options: HttpFetchOptions | None = None,
    device_id: str = "",
) -> Path:
    """Fetch a release file over HTTPS into ``dest`` (resuming ``dest.part``).

    ReleaseTransferError when it is refused, does not arrive within the retries (the partial
    file stays to be resumed) or does not have the announced size and SHA-256 (deleted).
    """
    opts = options or HttpFetchOptions()
    _check_url(url, opts)
    if size <= 0 or size > opts.max_bytes:
        raise ReleaseTransferError(
            f"{url}: announced size {size} bytes is outside 1..{opts.max_bytes} "
            "(release.max_download_bytes)"
        )
    part = dest.with_name(dest.name + ".part")
    part.parent.mkdir(parents=True, exist_ok=True)
    # identity: ranges and the digest are of the file's bytes, never of a compressed encoding
    headers = {"User-Agent": "waferscope-edge", "Accept-Encoding": "identity"}
    if device_id:
        headers["X-Device-Id"] = device_id
    if opts.token:
        headers["Authorization"] = f"Bearer {opts.token}"
    with httpx.Client(
        verify=_ssl_context(opts),
        timeout=httpx.Timeout(opts.timeout_s),
        headers=headers,
        follow_redirects=False,
        trust_env=False,  # the configuration is the one source of CA and proxy settings
    ) as client:
        reason = ""
        for attempt in range(opts.retries + 1):
            if attempt:
                time.sleep(min(opts.backoff_s * 2 ** (attempt - 1), 30.0))
            try:
                retry = _one_try(client, url, sha256, size, part)
            except httpx.TransportError as exc:
                refused = _certificate_refused(exc)
                if refused is not None:
                    raise ReleaseTransferError(
                        f"{url}: the server's TLS certificate was refused ({refused.verify_message}"
                        "); check release.hub_ca_file"
                    ) from None
                reason = f"{type(exc).__name__}: {exc}"
                continue
            if retry is None:
                return finish_part(part, dest, sha256, size, url)
            reason = retry
    kept = part.stat().st_size if part.exists() else 0
    raise ReleaseTransferError(
        f"{url}: download of {sha256[:12]} failed after {opts.retries + 1} tries ({reason}); "
        f"{kept} of {size} bytes kept to resume"
    )
