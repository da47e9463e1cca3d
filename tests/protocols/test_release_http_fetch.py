"""Release downloads over real HTTPS on loopback: resume, ignored ranges, refusals, nothing left."""

from __future__ import annotations

from pathlib import Path

import pytest
from https_release_server import Behaviour, ReleaseHttpsServer, Tls, make_tls
from release_keys import make_signer

from waferscope.protocols.bundle import sha256_file
from waferscope.protocols.release.http_fetch import HttpFetchOptions, download
from waferscope.protocols.release.transfer import ReleaseTransferError

PATH = "/api/v1/releases/7/file"
TOKEN = "device-token-0123456789"


@pytest.fixture(scope="module")
def release(bundle_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("release")
    return make_signer(folder / "keys").sign(bundle_dir, folder / "r7.wsrelease", 7)


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Tls:
    return make_tls(tmp_path_factory.mktemp("tls"))


def options(tls: Tls, **changes: object) -> HttpFetchOptions:
    settings: dict[str, object] = {"ca_file": tls.ca_file, "token": TOKEN, "backoff_s": 0.0}
    settings.update(changes)
    return HttpFetchOptions(**settings)  # type: ignore[arg-type]


def serving(release: Path, **knobs: object) -> Behaviour:
    return Behaviour(files={PATH: release.read_bytes()}, token=TOKEN, **knobs)


def test_full_download_sends_the_token_and_leaves_no_part(
    tmp_path: Path, release: Path, tls: Tls
) -> None:
    behaviour = serving(release)
    with ReleaseHttpsServer(tls, behaviour) as srv:
        dest = tmp_path / "got" / "r.wsrelease"
        got = download(
            srv.url(PATH),
            sha256_file(release),
            release.stat().st_size,
            dest,
            options=options(tls),
            device_id="edge-01",
        )
    assert got == dest and dest.read_bytes() == release.read_bytes()
    assert not dest.with_name("r.wsrelease.part").exists()
    [request] = behaviour.requests
    assert request["Authorization"] == f"Bearer {TOKEN}" and "Range" not in request
    assert request["X-Device-Id"] == "edge-01"


def test_a_cut_body_is_kept_and_the_next_try_resumes_with_range(
    tmp_path: Path, release: Path, tls: Tls
) -> None:
    digest, size = sha256_file(release), release.stat().st_size
    dest = tmp_path / "r.wsrelease"
    part = tmp_path / "r.wsrelease.part"
    behaviour = serving(release, cut_after=10_000)
    with ReleaseHttpsServer(tls, behaviour) as srv:
        with pytest.raises(ReleaseTransferError, match=r"10000 of \d+ bytes kept to resume"):
            download(srv.url(PATH), digest, size, dest, options=options(tls, retries=0))
        assert part.stat().st_size == 10_000 and not dest.exists()
        download(srv.url(PATH), digest, size, dest, options=options(tls, retries=0))
        # within one call: the connection is cut again, the retry continues from the new size
        behaviour.cut_after = 20_000
        again = tmp_path / "again.wsrelease"
        download(srv.url(PATH), digest, size, again, options=options(tls, retries=1))
    assert dest.read_bytes() == release.read_bytes() and not part.exists()
    assert again.read_bytes() == release.read_bytes()
    ranges = [r.get("Range") for r in behaviour.requests]
    assert ranges == [None, "bytes=10000-", None, "bytes=20000-"]


def test_5xx_answers_and_a_stalled_body_are_retried(
    tmp_path: Path, release: Path, tls: Tls
) -> None:
    behaviour = serving(release, fail_with=[503, 502], stall_s=1.5)
    dest = tmp_path / "r.wsrelease"
    with ReleaseHttpsServer(tls, behaviour) as srv:
        download(
            srv.url(PATH),
            sha256_file(release),
            release.stat().st_size,
            dest,
            options=options(tls, timeout_s=0.5, retries=3),
        )
    assert dest.read_bytes() == release.read_bytes()
    assert len(behaviour.requests) == 4  # 503, 502, the stalled one (read timeout), the good one
    with (
        ReleaseHttpsServer(tls, serving(release, fail_with=[500] * 3)) as srv,
        pytest.raises(ReleaseTransferError, match=r"failed after 2 tries \(HTTP 500\)"),
    ):
        download(
            srv.url(PATH),
            sha256_file(release),
            release.stat().st_size,
            tmp_path / "b.wsrelease",
            options=options(tls, retries=1),
        )


def test_a_server_ignoring_the_range_restarts_from_zero(
    tmp_path: Path, release: Path, tls: Tls
) -> None:
    dest = tmp_path / "r.wsrelease"
    dest.with_name("r.wsrelease.part").write_bytes(b"x" * 5000)  # not even a prefix of the file
    behaviour = serving(release, ignore_range=True)
    with ReleaseHttpsServer(tls, behaviour) as srv:
        download(
            srv.url(PATH), sha256_file(release), release.stat().st_size, dest, options=options(tls)
        )
    assert dest.read_bytes() == release.read_bytes()
    assert [r.get("Range") for r in behaviour.requests] == ["bytes=5000-"]


def test_a_partial_file_longer_than_the_served_one_is_dropped_on_416(
    tmp_path: Path, release: Path, tls: Tls
) -> None:
    body = release.read_bytes()
    dest = tmp_path / "r.wsrelease"
    behaviour = Behaviour(files={PATH: body[:1000]}, token=TOKEN, sha256_header=False)
    with ReleaseHttpsServer(tls, behaviour) as srv:
        dest.with_name("r.wsrelease.part").write_bytes(body[:2000])
        with pytest.raises(ReleaseTransferError, match="server's file has 1000 bytes"):
            download(srv.url(PATH), sha256_file(release), len(body), dest, options=options(tls))
    assert [r.get("Range") for r in behaviour.requests] == ["bytes=2000-", None]
    assert not dest.exists() and not dest.with_name("r.wsrelease.part").exists()


@pytest.mark.parametrize("header", [True, False], ids=["announced", "unannounced"])
def test_a_wrong_sha256_is_refused_and_nothing_is_left(
    tmp_path: Path, release: Path, tls: Tls, header: bool
) -> None:
    dest = tmp_path / "r.wsrelease"
    with (
        ReleaseHttpsServer(tls, serving(release, sha256_header=header)) as srv,
        pytest.raises(ReleaseTransferError, match="sha256"),
    ):
        download(srv.url(PATH), "ab" * 32, release.stat().st_size, dest, options=options(tls))
    assert list(tmp_path.iterdir()) == []


def test_a_certificate_from_another_ca_is_refused(tmp_path: Path, release: Path, tls: Tls) -> None:
    other = make_tls(tmp_path / "other", ca_name="someone else's CA")
    behaviour = serving(release)
    with (
        ReleaseHttpsServer(tls, behaviour) as srv,
        pytest.raises(ReleaseTransferError, match="TLS certificate was refused"),
    ):
        download(
            srv.url(PATH),
            sha256_file(release),
            release.stat().st_size,
            tmp_path / "r.wsrelease",
            options=options(other, retries=2),
        )
    assert behaviour.requests == []  # refused at the handshake, not retried into the server
    assert not (tmp_path / "r.wsrelease.part").exists()


@pytest.mark.parametrize("token", [None, "a-wrong-token-0123456789"], ids=["missing", "wrong"])
def test_a_missing_or_wrong_token_is_a_typed_401(
    tmp_path: Path, release: Path, tls: Tls, token: str | None
) -> None:
    behaviour = serving(release)
    with (
        ReleaseHttpsServer(tls, behaviour) as srv,
        pytest.raises(ReleaseTransferError, match=r"refused the release download \(401\)"),
    ):
        download(
            srv.url(PATH),
            sha256_file(release),
            release.stat().st_size,
            tmp_path / "r.wsrelease",
            options=options(tls, token=token),
        )
    assert len(behaviour.requests) == 1  # not retried


def test_oversized_releases_are_refused(tmp_path: Path, release: Path, tls: Tls) -> None:
    size = release.stat().st_size
    behaviour = serving(release)
    with ReleaseHttpsServer(tls, behaviour) as srv:
        with pytest.raises(ReleaseTransferError, match=r"outside 1\.\.1000"):
            download(
                srv.url(PATH),
                sha256_file(release),
                size,
                tmp_path / "a.wsrelease",
                options=options(tls, max_bytes=1000),
            )
        assert behaviour.requests == []
        # the command announces less than the server sends: refused, nothing kept
        with pytest.raises(ReleaseTransferError, match=f"server's file has {size} bytes"):
            download(
                srv.url(PATH),
                sha256_file(release),
                size - 1,
                tmp_path / "b.wsrelease",
                options=options(tls),
            )
    assert list(tmp_path.iterdir()) == []


def test_plain_http_only_when_allowed_and_only_to_loopback(tmp_path: Path, release: Path) -> None:
    behaviour = Behaviour(files={PATH: release.read_bytes()})
    digest, size = sha256_file(release), release.stat().st_size
    with ReleaseHttpsServer(None, behaviour) as srv:
        with pytest.raises(ReleaseTransferError, match="plain http is not allowed"):
            download(srv.url(PATH), digest, size, tmp_path / "r.wsrelease")
        allowed = HttpFetchOptions(allow_plain_http=True)
        download(srv.url(PATH), digest, size, tmp_path / "r.wsrelease", options=allowed)
    assert (tmp_path / "r.wsrelease").read_bytes() == release.read_bytes()
    with pytest.raises(ReleaseTransferError, match="loopback host only"):
        download("http://hub.example:8000" + PATH, digest, size, tmp_path / "x", options=allowed)
    with pytest.raises(ReleaseTransferError, match="not an https:// URL"):
        download("127.0.0.1:50051", digest, size, tmp_path / "x")
