"""The signed edge image: build, verify with stdlib + openssl, install offline, refuse tampering.

Slow: the agent's wheels (≈ 30 packages) are built once with ``pip wheel`` into the test cache
(``$WAFERSCOPE_TEST_CACHE/image-wheels``) and reused; the install itself is offline
(``pip install --no-index``) into a fresh virtualenv.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from release_keys import make_signer, rewrite

from waferscope.protocols.release import delegate, envelope, trusted_roots, verify_release

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "firmware_images"))

import build_image  # noqa: E402


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The third-party wheels from the test cache (built once), this checkout's own fresh."""
    default = Path(tempfile.gettempdir()) / "waferscope-test-cache"
    cached = Path(os.environ.get("WAFERSCOPE_TEST_CACHE", default)) / "image-wheels"
    if not any(cached.glob("onnxruntime-*.whl")):
        part = cached.with_name("image-wheels.part")
        shutil.rmtree(part, ignore_errors=True)
        build_image.build_wheels(part)
        shutil.rmtree(cached, ignore_errors=True)
        part.replace(cached)
    folder = tmp_path_factory.mktemp("wheels")
    for wheel in cached.glob("*.whl"):
        if not wheel.name.startswith("waferscope_"):
            shutil.copy2(wheel, folder / wheel.name)
    own = [str(REPO / "protocols"), str(REPO / "edge")]
    pip = [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(folder)]
    subprocess.run([*pip, *own], check=True, timeout=300)
    return folder


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_image_verifies_installs_offline_and_refuses_tampering(
    tmp_path: Path, wheels: Path
) -> None:
    keys = make_signer(tmp_path / "keys")
    delegation = tmp_path / "keys" / "release.delegation.json"
    doc = delegate(
        keys.root, keys.release.public_key(), expires=datetime.now(UTC) + timedelta(days=9)
    )
    delegation.write_bytes(envelope.to_bytes(doc))
    image = build_image.build_image(
        tmp_path / "image.tar",
        key=keys.folder / "release.key",
        delegation=delegation,
        version=12,
        wheels=wheels,
    )
    unpacked = tmp_path / "image"
    with tarfile.open(image) as tar:
        assert sorted(tar.getnames()) == ["image.wsrelease", "install.sh", "verify_image.py"]
        tar.extractall(unpacked, filter="data")
    signed, verifier = unpacked / "image.wsrelease", unpacked / "verify_image.py"
    # the stdlib + openssl verifier and the reference one agree
    done = verify_release(signed, trusted_roots([keys.root_pub]))
    assert done.version == 12 and any(f.path.startswith("wheels/") for f in done.manifest.files)
    check = subprocess.run(
        [sys.executable, str(verifier), "--root", str(keys.root_pub), str(signed)],
        check=False, capture_output=True, text=True,
    )  # fmt: skip
    assert check.returncode == 0, check.stderr
    assert "verified release 12" in check.stdout

    prefix = tmp_path / "venv"
    install = subprocess.run(
        ["sh", str(unpacked / "install.sh"), "--root", str(keys.root_pub), "--prefix", str(prefix),
         "--python", sys.executable],
        check=False, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert install.returncode == 0, install.stdout + install.stderr
    helped = subprocess.run(
        [str(prefix / "bin" / "waferscope"), "edge", "--help"],
        check=False, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert helped.returncode == 0 and "install-release" in helped.stdout

    # a wheel changed after signing: refused before anything is installed
    def flip(members):  # type: ignore[no-untyped-def]
        out = []
        for info, data in members:
            if info.name.startswith("bundle/wheels/waferscope_edge-"):
                out.append((info, data[:-10] + bytes([data[-10] ^ 1]) + data[-9:]))
            else:
                out.append((info, data))
        return out

    rewrite(signed, flip)
    other = tmp_path / "venv2"
    refused = subprocess.run(
        ["sh", str(unpacked / "install.sh"), "--root", str(keys.root_pub), "--prefix", str(other),
         "--python", sys.executable],
        check=False, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert refused.returncode == 1
    assert "sha256 differs from the signed manifest" in refused.stderr
    assert not other.exists()
    wrong = make_signer(tmp_path / "other-keys")
    untrusted = subprocess.run(
        [sys.executable, str(verifier), "--root", str(wrong.root_pub), str(signed)],
        check=False, capture_output=True, text=True,
    )  # fmt: skip
    assert untrusted.returncode == 1 and "unknown key" in untrusted.stderr


def run_verifier(release: Path, root: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, str(REPO / "firmware_images" / "verify_image.py"), "--root", str(root)]
    return subprocess.run([*cmd, *extra, str(release)], check=False, capture_output=True, text=True)


def test_stdlib_verifier_agrees_with_the_reference(tmp_path: Path, bundle_dir: Path) -> None:
    """The fast check: no wheels, an engine release."""
    keys = make_signer(tmp_path / "keys")
    release = keys.sign(bundle_dir, tmp_path / "r.wsrelease", 4)
    out = tmp_path / "out"
    ok = run_verifier(release, keys.root_pub, "--extract", str(out))
    assert ok.returncode == 0, ok.stderr
    reference = verify_release(release, trusted_roots([keys.root_pub]))
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == sorted(
        f.path for f in reference.manifest.files
    )

    def edit(members):  # type: ignore[no-untyped-def]
        return [(i, d + b"x" if i.name == "bundle/head.npz" else d) for i, d in members]

    rewrite(release, edit)
    bad = run_verifier(release, keys.root_pub, "--extract", str(tmp_path / "bad"))
    assert bad.returncode == 1 and "head.npz has the wrong size" in bad.stderr
    assert not (tmp_path / "bad").exists()


def test_the_verifier_reads_a_whole_image_tar(tmp_path: Path, bundle_dir: Path) -> None:
    """Ansible verifies the image file as shipped: the release is its image.wsrelease member."""
    keys = make_signer(tmp_path / "keys")
    release = keys.sign(bundle_dir, tmp_path / "r.wsrelease", 5)
    image = tmp_path / "image.tar"
    with tarfile.open(image, "w", format=tarfile.PAX_FORMAT) as tar:
        for name in build_image.IMAGE_SCRIPTS:
            tar.add(REPO / "firmware_images" / name, arcname=name)
        tar.add(release, arcname="image.wsrelease")
    ok = run_verifier(image, keys.root_pub, "--extract", str(tmp_path / "out"))
    assert ok.returncode == 0, ok.stderr
    assert "verified release 5" in ok.stdout
    assert (tmp_path / "out" / "head.npz").read_bytes() == (bundle_dir / "head.npz").read_bytes()

    wrong = make_signer(tmp_path / "other-keys")
    untrusted = run_verifier(image, wrong.root_pub, "--extract", str(tmp_path / "no"))
    assert untrusted.returncode == 1 and "unknown key" in untrusted.stderr
    assert not (tmp_path / "no").exists()

    other = tmp_path / "other.tar"
    with tarfile.open(other, "w") as tar:
        tar.add(REPO / "firmware_images" / "install.sh", arcname="install.sh")
    neither = run_verifier(other, keys.root_pub)
    assert neither.returncode == 1 and "neither a release nor an image" in neither.stderr
