"""Signed releases: sign and verify a real bundle, and every attack refused with its own error."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tarfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from release_keys import Signer, make_signer, rewrite
from sample_wafers import encoded_maps

from waferscope.protocols.pb.release_pb2 import ReleaseManifest
from waferscope.protocols.release import (
    AcceptedRelease,
    AgentTooOldError,
    ReleaseDowngradeError,
    ReleaseExpiredError,
    ReleaseFileError,
    ReleaseFormatError,
    ReleaseKeyExpiredError,
    ReleaseSignatureError,
    UnknownReleaseKeyError,
    envelope,
    verify_release,
)
from waferscope.protocols.release.golden import add_golden, golden_parity
from waferscope.protocols.release.layout import MAX_ENVELOPE_BYTES


@pytest.fixture
def signer(tmp_path: Path) -> Signer:
    return make_signer(tmp_path / "keys")


@pytest.fixture
def release(signer: Signer, bundle_dir: Path, tmp_path: Path) -> Path:
    return signer.sign(bundle_dir, tmp_path / "r.wsrelease", 3, min_agent_version="0.2")


def test_round_trip_extracts_the_bundle_byte_for_byte(
    signer: Signer, release: Path, bundle_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "x"
    done = verify_release(release, signer.roots, agent_version="0.2.1", extract_to=out)  # type: ignore[arg-type]
    assert done.version == 3 and done.manifest.channel == "stable"
    names = sorted(p.relative_to(bundle_dir).as_posix() for p in bundle_dir.rglob("*"))
    assert sorted(f.path for f in done.manifest.files) == names
    for name in names:
        assert (out / name).read_bytes() == (bundle_dir / name).read_bytes()
    # the same release again is fine (idempotent re-install), a higher one too
    verify_release(release, signer.roots, accepted=done.accepted)  # type: ignore[arg-type]


def _bundle_member(name: str, edit):  # type: ignore[no-untyped-def]
    def change(members):  # type: ignore[no-untyped-def]
        return [(i, edit(d) if i.name == name else d) for i, d in members]

    return change


def test_tampered_file_is_refused_and_nothing_is_left(
    signer: Signer, release: Path, tmp_path: Path
) -> None:
    def flip(data: bytes) -> bytes:
        return data[:100] + bytes([data[100] ^ 1]) + data[101:]

    rewrite(release, _bundle_member("bundle/model.int8.onnx", flip))
    out = tmp_path / "x"
    with pytest.raises(ReleaseFileError, match=r"model.int8.onnx sha256"):
        verify_release(release, signer.roots, extract_to=out)  # type: ignore[arg-type]
    assert not out.exists()


def test_resized_missing_and_extra_files_are_refused(signer: Signer, release: Path) -> None:
    original = release.read_bytes()
    rewrite(release, _bundle_member("bundle/head.npz", lambda d: d + b"x"))
    with pytest.raises(ReleaseFileError, match=r"head.npz is"):
        verify_release(release, signer.roots)  # type: ignore[arg-type]
    release.write_bytes(original)
    rewrite(release, lambda ms: [(i, d) for i, d in ms if i.name != "bundle/head.npz"])
    with pytest.raises(ReleaseFileError, match=r"missing: head.npz"):
        verify_release(release, signer.roots)  # type: ignore[arg-type]
    release.write_bytes(original)
    extra = tarfile.TarInfo("bundle/extra.onnx")
    rewrite(release, lambda ms: [*ms, (extra, b"evil")])
    with pytest.raises(ReleaseFileError, match=r"extra.onnx is not listed"):
        verify_release(release, signer.roots)  # type: ignore[arg-type]


def test_edited_manifest_fails_its_signature(signer: Signer, release: Path) -> None:
    def bump(data: bytes) -> bytes:
        env = envelope.from_bytes(data, "t")
        doc = json.loads(env.payload)
        doc["version"] = "99"
        env.payload = json.dumps(doc).encode()
        return envelope.to_bytes(env)

    rewrite(release, _bundle_member("release.json", bump))
    with pytest.raises(ReleaseSignatureError, match=r"does not verify"):
        verify_release(release, signer.roots)  # type: ignore[arg-type]


def test_expired_manifest_and_expired_key(signer: Signer, bundle_dir: Path, tmp_path: Path) -> None:
    r = signer.sign(bundle_dir, tmp_path / "a.wsrelease", 1, days=1)
    later = datetime.now(UTC) + timedelta(days=2)
    with pytest.raises(ReleaseExpiredError, match=r"release 1 expired"):
        verify_release(r, signer.roots, now=later)  # type: ignore[arg-type]
    short = make_signer(signer.folder, delegation_days=1)
    r = short.sign(bundle_dir, tmp_path / "b.wsrelease", 1, days=30)
    with pytest.raises(ReleaseKeyExpiredError, match=r"release key .* expired"):
        verify_release(r, signer.roots, now=later)  # type: ignore[arg-type]


def test_unknown_root_unknown_release_key_and_foreign_channel(
    signer: Signer, bundle_dir: Path, tmp_path: Path
) -> None:
    r = signer.sign(bundle_dir, tmp_path / "a.wsrelease", 1)
    other = make_signer(tmp_path / "other")
    with pytest.raises(UnknownReleaseKeyError, match=r"unknown key"):
        verify_release(r, other.roots)  # type: ignore[arg-type]
    # a release key the trusted root never certified, with a delegation from an untrusted root
    rogue = Signer(other.folder, other.root, other.release)
    r2 = rogue.sign(bundle_dir, tmp_path / "b.wsrelease", 2)
    with pytest.raises(UnknownReleaseKeyError):
        verify_release(r2, signer.roots)  # type: ignore[arg-type]
    # the trusted delegation spliced into a release signed by another key
    with tarfile.open(r, "r:") as tar:
        good_delegation = tar.extractfile("delegation.json").read()  # type: ignore[union-attr]
    rewrite(r2, _bundle_member("delegation.json", lambda _: good_delegation))
    with pytest.raises(UnknownReleaseKeyError, match=r"release.json: signed by unknown key"):
        verify_release(r2, signer.roots)  # type: ignore[arg-type]
    r3 = signer.sign(bundle_dir, tmp_path / "c.wsrelease", 1, channel="beta", channels=("stable",))
    with pytest.raises(UnknownReleaseKeyError, match=r"not 'beta'"):
        verify_release(r3, signer.roots)  # type: ignore[arg-type]


def test_downgrade_replay_and_old_agent(signer: Signer, release: Path, bundle_copy: Path) -> None:
    with pytest.raises(ReleaseDowngradeError, match=r"older than the accepted release 4"):
        verify_release(release, signer.roots, accepted=AcceptedRelease(4, "x"))  # type: ignore[arg-type]
    first = verify_release(release, signer.roots)  # type: ignore[arg-type]
    (bundle_copy / "MODEL_CARD.extra").write_text("different content")
    same_number = signer.sign(bundle_copy, release.with_name("s.wsrelease"), 3)
    with pytest.raises(ReleaseDowngradeError, match=r"accepted before with other content"):
        verify_release(same_number, signer.roots, accepted=first.accepted)  # type: ignore[arg-type]
    with pytest.raises(AgentTooOldError, match=r"needs agent >= 0.2, this agent is 0.1.9"):
        verify_release(release, signer.roots, agent_version="0.1.9")  # type: ignore[arg-type]


def test_truncated_corrupt_and_huge_release_files(signer: Signer, release: Path) -> None:
    original = release.read_bytes()
    release.write_bytes(original[: len(original) // 2])
    with pytest.raises(ReleaseFormatError, match=r"truncated"):
        verify_release(release, signer.roots)  # type: ignore[arg-type]
    release.write_bytes(b"\x00garbage" * 100)
    with pytest.raises(ReleaseFormatError):
        verify_release(release, signer.roots)  # type: ignore[arg-type]
    release.write_bytes(original)
    rewrite(release, _bundle_member("release.json", lambda d: d[: len(d) // 2]))
    with pytest.raises(ReleaseFormatError, match=r"not a signed envelope"):
        verify_release(release, signer.roots)  # type: ignore[arg-type]
    release.write_bytes(original)
    huge = b"{" + b" " * (MAX_ENVELOPE_BYTES + 1) + b"}"
    rewrite(release, _bundle_member("release.json", lambda _: huge))
    with pytest.raises(ReleaseFormatError, match=r"over the .*-byte limit"):
        verify_release(release, signer.roots)  # type: ignore[arg-type]


def test_path_traversal_and_links_are_refused(
    signer: Signer, release: Path, tmp_path: Path
) -> None:
    original = release.read_bytes()

    def escape(ms):  # type: ignore[no-untyped-def]
        out = []
        for info, data in ms:
            if info.name == "bundle/head.npz":
                info.name = "bundle/../../evil.npz"
            out.append((info, data))
        return out

    rewrite(release, escape)
    with pytest.raises(ReleaseFormatError, match=r"not a safe relative path"):
        verify_release(release, signer.roots, extract_to=tmp_path / "x")  # type: ignore[arg-type]
    assert not (tmp_path / "evil.npz").exists()
    release.write_bytes(original)
    link = tarfile.TarInfo("bundle/head.npz")
    link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
    rewrite(release, lambda ms: [(link, b"") if i.name == link.name else (i, d) for i, d in ms])
    with pytest.raises(ReleaseFormatError, match=r"link or special file"):
        verify_release(release, signer.roots)  # type: ignore[arg-type]
    # a validly signed manifest that names a path outside the bundle
    manifest = ReleaseManifest(schema_version=1, channel="stable", version=9)
    manifest.expires_time.FromDatetime(datetime.now(UTC) + timedelta(days=1))
    manifest.files.add(path="../outside", sha256="0" * 64, size_bytes=1)
    signed = envelope.to_bytes(envelope.sign(manifest, envelope.RELEASE_TYPE, signer.release))
    release.write_bytes(original)
    rewrite(release, _bundle_member("release.json", lambda _: signed))
    with pytest.raises(ReleaseFormatError, match=r"'../outside' is not a safe relative path"):
        verify_release(release, signer.roots)  # type: ignore[arg-type]


def test_golden_set_parity_on_a_real_engine(bundle_copy: Path, val_npz: Path) -> None:
    from waferscope.protocols.inference import OnnxRuntimeRunner, load_bundle

    runner = OnnxRuntimeRunner(load_bundle(bundle_copy).engine_path)
    x, _ = encoded_maps(val_npz, 16)
    add_golden(bundle_copy, x, lambda b: runner.run(b).pattern_logits)
    load_bundle(bundle_copy)  # the manifest lists golden.npz: still a valid bundle
    parity = golden_parity(bundle_copy, lambda b: runner.run(b).pattern_logits)
    assert parity.count == len(x) and parity.top1_agreement == 1.0 and parity.max_abs_diff < 1e-4
    shifted = golden_parity(
        bundle_copy, lambda b: runner.run(b).pattern_logits + np.eye(len(x), 9, 3)
    )
    assert shifted.max_abs_diff >= 1.0
    runner.close()


def test_cli_keygen_sign_verify(bundle_dir: Path, tmp_path: Path, tester_dir: Path) -> None:
    exe = [sys.executable, "-m", "waferscope.protocols.cli.main"]
    keys = tmp_path / "keys"

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*exe, *args], check=False, capture_output=True, text=True, timeout=120
        )

    assert run("release", "keygen", str(keys), "--name", "root").returncode == 0
    cert = run(
        "release", "keygen", str(keys), "--name", "rel", "--root-key", str(keys / "root.key")
    )
    assert cert.returncode == 0, cert.stderr
    out = tmp_path / "r.wsrelease"
    stdf = sorted((tester_dir / "stdf").glob("*.stdf*"))[0]
    signed = run(
        "release", "sign", str(bundle_dir), "--key", str(keys / "rel.key"),
        "--delegation", str(keys / "rel.delegation.json"), "--version", "7",
        "--golden-maps", str(stdf), "-o", str(out),
    )  # fmt: skip
    assert signed.returncode == 0, signed.stderr
    ok = run("release", "verify", str(out), "--root", str(keys / "root.pub"))
    assert ok.returncode == 0, ok.stderr
    doc = json.loads(ok.stdout)
    assert doc["manifest"]["version"] == "7"
    assert "golden.npz" in {f["path"] for f in doc["manifest"]["files"]}
    low = run("release", "verify", str(out), "--root", str(keys / "root.pub"), "--min-version", "8")
    assert low.returncode == 1 and "older than the accepted release 8" in low.stderr
    shutil.copy(keys / "rel.pub", tmp_path / "wrong.pub")
    bad = run("release", "verify", str(out), "--root", str(tmp_path / "wrong.pub"))
    assert bad.returncode == 1 and "unknown key" in bad.stderr
