"""The release registry API: register signed releases, refuse bad ones, list, download by Range."""

from __future__ import annotations

import hashlib
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hub_testing import add_role_users, bearer, hub_config
from litestar.testing import TestClient
from release_keys import Signer, make_signer, rewrite

from waferscope.hub.app import Hub
from waferscope.hub.web.api_releases import SHA256_HEADER

URL = "/api/v1/releases"
OCTETS = {"Content-Type": "application/octet-stream"}


@pytest.fixture
def signer(tmp_path: Path) -> Signer:
    return make_signer(tmp_path / "keys")


@pytest.fixture
def release_hub(tmp_path: Path, signer: Signer) -> Iterator[Hub]:
    h = Hub(hub_config(tmp_path, releases={"trusted_root_keys": [str(signer.root_pub)]}))
    add_role_users(h)
    yield h
    h.stop()


def _post(client: TestClient, hub: Hub, path: Path, role: str = "engineer"):  # type: ignore[no-untyped-def]
    return client.post(URL, content=path.read_bytes(), headers={**OCTETS, **bearer(hub, role)})


def test_register_list_read_and_download_with_resume(
    release_hub: Hub, signer: Signer, bundle_dir: Path, tmp_path: Path
) -> None:
    rel = signer.sign(bundle_dir, tmp_path / "r1.wsrelease", 3, channel="stable")
    data = rel.read_bytes()
    with TestClient(release_hub.web_app()) as client:
        res = _post(client, release_hub, rel)
        assert res.status_code == 201, res.text
        body = res.json()
        assert body["channel"] == "stable" and body["version"] == 3
        assert body["sha256"] == hashlib.sha256(data).hexdigest() and body["size"] == len(data)
        assert body["model_version"] and isinstance(body["metrics"], dict)
        again = _post(client, release_hub, rel, role="admin")  # the same file: no new release
        assert again.status_code == 200 and again.json()["release_id"] == body["release_id"]

        view = bearer(release_hub, "operator")
        listed = client.get(URL, headers=view).json()["releases"]
        assert [r["release_id"] for r in listed] == [body["release_id"]]
        one = client.get(f"{URL}/{body['release_id']}", headers=view)
        assert one.json() == body
        assert client.get(f"{URL}/nope", headers=view).status_code == 404

        whole = client.get(f"{URL}/{body['release_id']}/file", headers=view)
        assert whole.status_code == 200 and whole.content == data
        assert whole.headers[SHA256_HEADER] == body["sha256"]
        # a download cut at 1000 bytes resumes where it stopped
        head = client.get(
            f"{URL}/{body['release_id']}/file", headers={**view, "Range": "bytes=0-999"}
        )
        assert head.status_code == 206 and head.content == data[:1000]
        tail = client.get(
            f"{URL}/{body['release_id']}/file", headers={**view, "Range": "bytes=1000-"}
        )
        assert tail.status_code == 206
        assert tail.headers["content-range"] == f"bytes 1000-{len(data) - 1}/{len(data)}"
        assert hashlib.sha256(head.content + tail.content).hexdigest() == body["sha256"]
        bad = client.get(
            f"{URL}/{body['release_id']}/file",
            headers={**view, "Range": f"bytes={len(data)}-"},
        )
        assert bad.status_code == 416

        audit = client.get("/api/v1/audit?action=release.register", headers=view)
        assert audit.status_code == 403  # operators do not read the audit log
        entries = client.get(
            "/api/v1/audit?action=release.register", headers=bearer(release_hub, "engineer")
        ).json()["entries"]
        assert [(e["actor"], e["target"]) for e in entries] == [("engineer1", body["release_id"])]


def test_multipart_upload_from_the_registry_page(
    release_hub: Hub, signer: Signer, bundle_dir: Path, tmp_path: Path
) -> None:
    rel = signer.sign(bundle_dir, tmp_path / "r.wsrelease", 1)
    with TestClient(release_hub.web_app()) as client:
        res = client.post(
            URL,
            files={"release": ("r.wsrelease", rel.read_bytes(), "application/octet-stream")},
            headers=bearer(release_hub, "engineer"),
        )
        assert res.status_code == 201, res.text
        assert res.json()["version"] == 1


def test_only_engineers_and_admins_register(
    release_hub: Hub, signer: Signer, bundle_dir: Path, tmp_path: Path
) -> None:
    rel = signer.sign(bundle_dir, tmp_path / "r.wsrelease", 1)
    with TestClient(release_hub.web_app()) as client:
        for role in ("operator", "reviewer"):
            assert _post(client, release_hub, rel, role=role).status_code == 403
        assert client.post(URL, content=rel.read_bytes(), headers=OCTETS).status_code == 401
        assert client.get(URL, headers=bearer(release_hub, "engineer")).json()["releases"] == []


def _flip(members):  # type: ignore[no-untyped-def]
    def flip(data: bytes) -> bytes:
        return data[:100] + bytes([data[100] ^ 1]) + data[101:]

    return [(i, flip(d) if i.name.endswith(".onnx") else d) for i, d in members]


def test_bad_releases_are_refused_with_the_reason(
    release_hub: Hub, signer: Signer, bundle_dir: Path, tmp_path: Path
) -> None:
    tampered = rewrite(signer.sign(bundle_dir, tmp_path / "t.wsrelease", 5), _flip)
    foreign = make_signer(tmp_path / "other").sign(bundle_dir, tmp_path / "f.wsrelease", 5)
    stale_key = make_signer(signer.folder, delegation_days=-1)
    key_expired = stale_key.sign(bundle_dir, tmp_path / "k.wsrelease", 5)
    short = signer.sign(bundle_dir, tmp_path / "e.wsrelease", 5, days=1.5 / 86400)
    junk = tmp_path / "junk.wsrelease"
    junk.write_bytes(b"not a tar at all" * 100)
    time.sleep(1.6)  # the short release expires
    cases = [
        (tampered, "sha256"),
        (foreign, "unknown key"),
        (key_expired, "release key .* expired"),
        (short, "release 5 expired"),
        (junk, "not a release file"),
    ]
    with TestClient(release_hub.web_app()) as client:
        for path, reason in cases:
            res = _post(client, release_hub, path)
            assert res.status_code == 422, (path.name, res.text)
            assert re.search(reason, res.json()["detail"]), res.text
        empty = client.post(URL, content=b"", headers={**OCTETS, **bearer(release_hub, "admin")})
        assert empty.status_code == 400
        assert client.get(URL, headers=bearer(release_hub, "admin")).json()["releases"] == []


def test_a_version_not_above_the_channel_highest_is_a_downgrade(
    release_hub: Hub, signer: Signer, bundle_dir: Path, tmp_path: Path
) -> None:
    v4 = signer.sign(bundle_dir, tmp_path / "v4.wsrelease", 4)
    v3 = signer.sign(bundle_dir, tmp_path / "v3.wsrelease", 3)
    changed = tmp_path / "changed"
    shutil.copytree(bundle_dir, changed)
    (changed / "NOTES.txt").write_text("another build\n")
    v4b = signer.sign(changed, tmp_path / "v4b.wsrelease", 4)  # same version, other content
    other_channel = signer.sign(bundle_dir, tmp_path / "c.wsrelease", 1, channel="canary")
    with TestClient(release_hub.web_app()) as client:
        assert _post(client, release_hub, v4).status_code == 201
        for path in (v3, v4b):
            res = _post(client, release_hub, path)
            assert res.status_code == 409, res.text
            assert "not above the highest registered release 4" in res.json()["detail"]
        assert _post(client, release_hub, other_channel).status_code == 201


def test_a_hub_without_root_keys_registers_nothing(
    sqlite_hub: Hub, signer: Signer, bundle_dir: Path, tmp_path: Path
) -> None:
    rel = signer.sign(bundle_dir, tmp_path / "r.wsrelease", 1)
    with TestClient(sqlite_hub.web_app()) as client:
        res = _post(client, sqlite_hub, rel)
        assert res.status_code == 400 and "trusted_root_keys" in res.json()["detail"]
